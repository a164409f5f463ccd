"""Preallocated 2-D ring buffers with O(1) running window sums.

One row per (series, bucket); one fixed-width window per row. Rows are stored so that reading
a row from ``head`` onwards gives its values oldest first with unused slots (zeros) in front,
which lets the block path treat "ring contents + new values" as one contiguous sequence.
The block methods' large intermediates live in a :class:`Scratch`, reused from call to call.
"""

from __future__ import annotations

from typing import Protocol, cast

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
# A window's running sums are re-added exactly when evicting a value cancelled this much of them (its
# square above CANCEL x what remains): 1e8 then values of 1 would leave rounding noise of ~1 in the sum of
# squares until the lap ends, which no noise floor hides when ``noise_floor`` is 0. Amortized O(1): such a
# value entered the window once.
CANCEL = 2.0**20


class Floats(Protocol):
    """Scalar view of a float64 array: indexing gives Python floats without numpy boxing."""

    def __getitem__(self, i: int, /) -> float: ...
    def __setitem__(self, i: int, v: float, /) -> None: ...


class Ints(Protocol):
    def __getitem__(self, i: int, /) -> int: ...
    def __setitem__(self, i: int, v: int, /) -> None: ...


def floats(a: F64) -> Floats:
    return cast("Floats", memoryview(a.reshape(-1)).cast("B").cast("d"))  # type: ignore[arg-type]


def ints(a: I64) -> Ints:
    return cast("Ints", memoryview(a.reshape(-1)).cast("B").cast("q"))  # type: ignore[arg-type]


class Scratch:
    """Named float64 work buffers, reused from call to call up to ``KEEP`` values each (4 MiB):
    a larger request (a one-off backfill, say) gets a fresh array that is not kept."""

    __slots__ = ("_bufs",)
    KEEP = 1 << 19

    def __init__(self) -> None:
        self._bufs: dict[str, F64] = {}

    def __call__(self, name: str, rows: int, cols: int) -> F64:
        """A C-contiguous (rows, cols) array with undefined contents, valid until the next call."""
        size = rows * cols
        if size > self.KEEP:
            return np.empty((rows, cols))
        flat = self._bufs.get(name)
        if flat is None or flat.size < size:
            flat = self._bufs[name] = np.empty(max(size, 1))
        return flat[:size].reshape(rows, cols)


class Rings:
    """``rows`` windows of ``width`` float64 values with their count, sum and sum of squares.

    Not thread-safe; the owning detector serializes access. Scalar methods take Python numbers
    and go through memoryviews (several times cheaper than numpy scalar indexing); block
    methods take index arrays (some also slices). Both views alias the same buffers.
    """

    __slots__ = ("_buf", "_count", "_head", "_s1", "_s2", "buf", "count", "head", "s1", "s2", "width")

    def __init__(self, rows: int, width: int) -> None:
        self.width = width
        self.buf: F64 = np.zeros((rows, width))
        self.head: I64 = np.zeros(rows, dtype=np.int64)
        self.count: I64 = np.zeros(rows, dtype=np.int64)
        self.s1: F64 = np.zeros(rows)
        self.s2: F64 = np.zeros(rows)
        self._buf = floats(self.buf)
        self._head = ints(self.head)
        self._count = ints(self.count)
        self._s1 = floats(self.s1)
        self._s2 = floats(self.s2)

    def clear(self, rows: slice | I64) -> None:
        self.buf[rows] = 0.0
        self.head[rows] = 0
        self.count[rows] = 0
        self.s1[rows] = 0.0
        self.s2[rows] = 0.0

    # ------------------------------------------------------------------ scalar path
    def stats(self, row: int) -> tuple[int, float, float]:
        """(count, sum, sum of squares) of the row's window."""
        return self._count[row], self._s1[row], self._s2[row]

    def push(self, row: int, value: float) -> float:
        """Append one value, evicting the oldest once the window is full; return the new sum. O(1), but for an
        exact re-add (O(width)) once per lap and after an eviction that cancelled the sums (see ``CANCEL``)."""
        head = self._head[row]
        width = self.width
        at = row * width + head
        if self._count[row] == width:
            old = self._buf[at]
            self._s1[row] += value - old
            squared = old * old
            s2 = self._s2[row] + (value * value - squared)
            self._s2[row] = s2
            lost = squared > CANCEL * s2
        else:
            lost = False
            self._count[row] += 1
            self._s1[row] += value
            self._s2[row] += value * value
        self._buf[at] = value
        head += 1
        if head == width or lost:
            head = 0 if head == width else head
            # Once per lap (and after a cancelling eviction), re-add exactly so rounding never accumulates.
            self._s1[row], self._s2[row] = readd(self.buf, row)
        self._head[row] = head
        return self._s1[row]

    def views(self) -> tuple[Floats, Ints, Ints, Floats, Floats, int]:
        """The scalar views (buf flat, head, count, s1, s2) and the width, for a caller that writes
        :meth:`stats` and :meth:`push` out inline (``AnomalyDetector.update``)."""
        return self._buf, self._head, self._count, self._s1, self._s2, self.width

    # ------------------------------------------------------------------ block path
    def push_many(self, rows: I64 | slice, values: F64) -> tuple[F64, F64, I64]:
        """:meth:`push` one value into each of the distinct ``rows``, vectorized and O(1) per row.

        ``rows`` may be a slice (views instead of gathers). Returns the stats *before* the push:
        (sum, sum of squares, count), one per row.
        """
        width = self.width
        if isinstance(rows, slice):
            index = np.arange(rows.start, rows.stop, rows.step)
            head, count = self.head[rows], self.count[rows].copy()
            s1, s2 = self.s1[rows].copy(), self.s2[rows].copy()
        else:
            index = rows
            head, count = self.head[rows], self.count[rows]
            s1, s2 = self.s1[rows], self.s2[rows]
        full = count == width
        all_full = bool(full.all())  # the steady state
        at = index * width + head  # flat positions: cheaper than 2-D fancy indexing
        flat = self.buf.reshape(-1)
        old = flat.take(at) if all_full else np.where(full, flat.take(at), 0.0)
        flat.put(at, values)
        new1 = s1 + (values - old)
        squared = old * old
        new2 = s2 + (values * values - squared)
        head = head + 1
        lap = head == width
        redo = np.greater(squared, new2 * CANCEL)
        redo |= lap
        if redo.any():  # same exact re-add per lap (and after a cancelling eviction) as the scalar path
            head[lap] = 0
            window = self.buf[index[redo]]
            new1[redo] = window.sum(axis=1)
            new2[redo] = np.einsum("ij,ij->i", window, window)
        self.head[rows] = head
        if not all_full:
            self.count[rows] = count + ~full
        self.s1[rows], self.s2[rows] = new1, new2
        return s1, s2, count

    def ordered(self, rows: I64) -> F64:
        """Windows of ``rows`` oldest first, unused slots (zeros) in front: shape (len(rows), width)."""
        idx = (self.head[rows, None] + np.arange(self.width)) % self.width
        out: F64 = np.take_along_axis(self.buf[rows], idx, axis=1)
        return out

    def extend(
        self, rows: I64, values: F64, *, inclusive: bool = False, squares: bool = True
    ) -> tuple[F64, F64 | None, I64]:
        """Append ``values[r, :]`` to row ``rows[r]``; return per-value stats of the window
        *before* that value (ending *with* it if ``inclusive``): (sum, sum of squares, count),
        each shaped like ``values``; the sums of squares are skipped (None) unless ``squares``.

        ``rows`` must be distinct. Cost O(len(rows) x (width + values.shape[1])).
        """
        s1, s2, cnt = self.window_sums(rows, values, Scratch(), inclusive=inclusive, squares=squares)
        if cnt is None:
            cnt = np.full(values.shape, self.width, dtype=np.int64)
        return s1, s2, cnt

    def window_sums(
        self, rows: I64 | slice, values: F64, tmp: Scratch, *, inclusive: bool, squares: bool
    ) -> tuple[F64, F64 | None, I64 | None]:
        """:meth:`extend` with its results in ``tmp``'s buffers, ``rows`` possibly a slice (views
        instead of gathers), and the counts ``None`` when every window was already full.

        The window sums are differences of cumulative sums restarted every ``width`` values (a lap, as
        the scalar path re-adds its window once per lap), so a sum's rounding is that of at most two laps'
        values, whatever the block size, as on the other paths; those that a large value earlier in the
        window's laps cancelled (see ``CANCEL``) are re-added one by one. (One cumulative sum over the whole
        block rounded each window by all the values before it: a series at 1e6 with a spread of 1, whose first
        value was 0, had its windows' variance off by ~1 after 20,000 samples, scores off by up to 0.55.)
        """
        width = self.width
        n_rows, m = values.shape
        padded = (m // width + 2) * width  # whole laps, past the last window's end (position m + width)
        seq = tmp("seq", n_rows, padded)
        if self.head[rows].any():
            index = rows if not isinstance(rows, slice) else np.arange(rows.start, rows.stop, rows.step)
            seq[:, :width] = self.ordered(index)
        else:  # unrotated rows (always so after a block): a plain copy
            seq[:, :width] = self.buf[rows]
        seq[:, width : width + m] = values
        seq[:, width + m :] = 0.0
        shift = int(inclusive)
        s1, _ = _lap_sums(seq, width, shift, m, tmp, "s1")
        s2 = None
        if squares:
            s2, before = _lap_sums(np.multiply(seq, seq, out=tmp("sq", n_rows, padded)), width, shift, m, tmp, "s2")
            _resum_lost(seq[:, : width + m], np.add(before, s2, out=before), s1, s2, width, shift)
        count0 = self.count[rows]
        cnt = None
        if count0.min() < width:
            cnt = np.minimum(count0[:, None] + shift + np.arange(m), width)
        tail = seq[:, m : m + width]
        self.buf[rows] = tail
        self.head[rows] = 0
        self.count[rows] = np.minimum(count0 + m, width)
        self.s1[rows] = tail.sum(axis=1)
        self.s2[rows] = np.einsum("ij,ij->i", tail, tail)
        return s1, s2, cnt


def readd(buf: F64, row: int) -> tuple[float, float]:
    """The exact sum and sum of squares of ``buf[row]`` (the scalar path's re-add once per lap)."""
    window = buf[row]
    return float(_add_reduce(window)), float(_dot(window, window))  # = window.sum(), one call less


_add_reduce = np.add.reduce
_dot = np.dot


def _lap_sums(seq: F64, width: int, shift: int, m: int, tmp: Scratch, name: str) -> tuple[F64, F64]:
    """The sums of the ``m`` windows ``seq[:, j + shift : j + shift + width]`` (in ``tmp``'s buffer ``name``),
    and per window the sum of the values of its first lap before it (a view of ``tmp``'s ``"pre"`` buffer, valid
    until the next call; with the window's own sum, the sum of all the values it was taken from, which bounds its
    rounding: ``_resum_lost``). ``seq`` is whole laps, zeros past the values.

    A lap is ``width`` values of ``seq`` from a multiple of ``width``: window j, from position a = j + shift, is
    the end of lap a // width (its values from a on) and the start of the next (its values before a + width).
    O(size of seq), as one cumulative sum."""
    n_rows, n = seq.shape
    laps = n // width
    prefix = tmp("pre", n_rows, n)  # per position: the sum of its lap's values before it
    lap3, pre3 = seq.reshape(n_rows, laps, width), prefix.reshape(n_rows, laps, width)
    pre3[:, :, 0] = 0.0
    np.cumsum(lap3[:, :, :-1], axis=2, out=pre3[:, :, 1:])
    total = pre3[:, :, -1:] + lap3[:, :, -1:]
    rest = tmp("rest", n_rows, n)  # per position: the sum of its lap's values from it on
    np.subtract(total, pre3, out=rest.reshape(n_rows, laps, width))
    sums = np.add(rest[:, shift : shift + m], prefix[:, shift + width : shift + width + m],
                  out=tmp(name, n_rows, m))
    return sums, prefix[:, shift : shift + m]


def _resum_lost(seq: F64, ends: F64, s1: F64, s2: F64, width: int, shift: int) -> None:
    """Re-add exactly the window sums that a cumulative sum cancelled (``CANCEL``): those whose squares summed
    over the laps the window's sums were taken from (``ends``, see ``_lap_sums``) exceed CANCEL x the window's own,
    unless all its values are 0 (then the difference is exactly 0).
    Window j is ``seq[:, j + shift : j + shift + width]``."""
    lost = ends > CANCEL * s2
    if not lost.any():  # the usual case: one pass
        return
    nonzero = np.zeros((seq.shape[0], seq.shape[1] + 1), dtype=np.int64)
    np.cumsum(seq != 0.0, axis=1, out=nonzero[:, 1:])
    m = s1.shape[1]
    lost &= nonzero[:, width + shift : width + shift + m] > nonzero[:, shift : shift + m]
    rows, cols = np.nonzero(lost)
    span = np.arange(width)
    chunk = max(1, (1 << 16) // width)  # bounded memory, however many windows
    for lo in range(0, len(rows), chunk):
        r, c = rows[lo : lo + chunk], cols[lo : lo + chunk]
        window = seq[r[:, None], (c + shift)[:, None] + span]
        s1[r, c] = window.sum(axis=1)
        s2[r, c] = np.einsum("ij,ij->i", window, window)
