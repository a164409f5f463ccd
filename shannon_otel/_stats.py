"""O(1) running statistics with bounded memory, for reports over any number of observations."""

from __future__ import annotations

import math

# Log-spaced bins: 2% relative width from 1 us to ~3 days; quantiles are exact to within one bin.
_MIN = 1e-6
_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)
_SCALE = 1.0 / _LOG_GROWTH
_OFFSET = 1.0 - math.log(_MIN) * _SCALE  # bin of v = int(log(v / MIN) / log(GROWTH)) + 1
_BINS = int(math.log(3e5 / _MIN) / _LOG_GROWTH) + 2


class LogHistogram:
    """Count, sum, min, max and approximate quantiles of non-negative values.

    ``add`` is O(1); memory is fixed (~1,000 bins, allocated on first use). Quantiles are the
    geometric centre of the bin holding the rank, clamped to the observed min/max, so their
    relative error is below 1%. Values below 1 us share the first bin. A non-finite value (NaN,
    +-inf) is never added, only counted in ``rejected``: it would poison the sum and the bins, and
    ``add`` must never raise into the code that reports a task.
    """

    __slots__ = ("_bins", "count", "max", "min", "rejected", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._bins: list[int] | None = None
        self.rejected = 0

    def add(self, value: float) -> None:
        if not -math.inf < value < math.inf:  # False for NaN too
            self.rejected += 1
            return
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        bins = self._bins
        if bins is None:
            bins = self._bins = [0] * _BINS
        index = int(math.log(value) * _SCALE + _OFFSET) if value > _MIN else 0
        bins[index if index < _BINS else _BINS - 1] += 1

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def quantile(self, q: float) -> float:
        """The q-quantile (0 <= q <= 1), or NaN when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        if self._bins is None or self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self._bins):
            seen += n
            if seen >= rank:
                centre = _MIN * _GROWTH ** (index - 0.5) if index else self.min
                return min(max(centre, self.min), self.max)
        return self.max  # pragma: no cover - ranks never exceed count
