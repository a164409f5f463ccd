"""O(1) running statistics with bounded memory, for reports over any number of observations."""

from __future__ import annotations

import math

# Log-spaced bins of magnitudes: 2% relative width from 1e-9 to 1e15 (durations, token counts and what
# users record() alike); quantiles are exact to within one bin. Negative values (record() allows them)
# have mirrored bins of their own, allocated when the first one comes.
_MIN = 1e-9
_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)
_SCALE = 1.0 / _LOG_GROWTH
_OFFSET = 1.0 - math.log(_MIN) * _SCALE  # bin of v = int(log(v / MIN) / log(GROWTH)) + 1
_BINS = int(math.log(1e15 / _MIN) / _LOG_GROWTH) + 2


def _bin(magnitude: float) -> int:
    index = int(math.log(magnitude) * _SCALE + _OFFSET) if magnitude > _MIN else 0
    return index if index < _BINS else _BINS - 1


class LogHistogram:
    """Count, sum, min, max and approximate quantiles of finite values.

    ``add`` is O(1); memory is fixed (~2,800 bins, allocated on first use; as many again for negative
    values, when one comes). Quantiles (nearest rank) are the geometric centre of the bin holding the
    rank, clamped to the observed min/max, so their relative error is below 1% for magnitudes from 1e-9
    to 1e15, and exact for the first and last ranks (the min and max themselves);
    magnitudes below 1e-9 share one bin with zero (reported as 0, clamped). A non-finite value (NaN,
    +-inf), or one the sum cannot take (it would overflow to +-inf), is never added, only counted in
    ``rejected``: it would poison the sum and the bins, and
    ``add`` must never raise into the code that reports a task.
    """

    __slots__ = ("_bins", "_negative", "count", "max", "min", "rejected", "total")

    def __init__(self) -> None:
        self.count: int = 0
        self.total: float = 0.0
        self.min: float = math.inf
        self.max: float = -math.inf
        self._bins: list[int] | None = None
        self._negative: list[int] | None = None  # bins of -value for values below -MIN
        self.rejected: int = 0

    def add(self, value: float) -> None:
        total = self.total + value
        if not -math.inf < total < math.inf:  # a non-finite value (NaN too), or finite ones whose sum overflows
            self.rejected += 1
            return
        self.count += 1
        self.total = total
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value > _MIN:
            index = int(math.log(value) * _SCALE + _OFFSET)
        elif value < -_MIN:  # off the common path: durations are never negative
            negative = self._negative
            if negative is None:
                negative = self._negative = [0] * _BINS
            negative[_bin(-value)] += 1
            return
        else:
            index = 0
        bins = self._bins
        if bins is None:
            bins = self._bins = [0] * _BINS
        bins[index if index < _BINS else _BINS - 1] += 1

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def quantile(self, q: float) -> float:
        """The q-quantile (0 <= q <= 1), or NaN when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q * self.count))
        if rank == self.count:  # the largest value (p99 of fewer than 100 values: of 100, rank 99): known exactly
            return self.max
        if rank == 1:
            return self.min
        seen = 0
        negative = self._negative
        if negative is not None:  # the most negative first; only the bins between min and max hold any
            low = _bin(-self.min)
            high = _bin(-self.max) if self.max < -_MIN else 1
            for index in range(low, max(high, 1) - 1, -1):
                seen += negative[index]
                if seen >= rank:
                    return self._clamp(-_MIN * _GROWTH ** (index - 0.5))
        bins = self._bins
        assert bins is not None  # count > 0 and not every value negative
        start = _bin(self.min) if self.min > 0 else 0
        for index in range(start, _bin(self.max) + 1):
            seen += bins[index]
            if seen >= rank:
                return self._clamp(_MIN * _GROWTH ** (index - 0.5) if index else 0.0)
        return self.max  # pragma: no cover - ranks never exceed count

    def _clamp(self, value: float) -> float:
        return min(max(value, self.min), self.max)
