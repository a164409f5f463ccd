"""Preallocated 2-D ring buffers with O(1) running window sums.

One row per (series, bucket); one fixed-width window per row. Rows are stored so that reading
a row from ``head`` onwards gives its values oldest first with unused slots (zeros) in front,
which lets the block path treat "ring contents + new values" as one contiguous sequence.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class Rings:
    """``rows`` windows of ``width`` float64 values with their count, sum and sum of squares.

    Not thread-safe; the owning detector serializes access. Scalar methods take Python numbers
    and go through memoryviews (several times cheaper than numpy scalar indexing); block
    methods take index arrays. Both views alias the same buffers.
    """

    __slots__ = ("_buf", "_count", "_head", "_s1", "_s2", "buf", "count", "head", "s1", "s2", "width")

    def __init__(self, rows: int, width: int) -> None:
        self.width = width
        self.buf: F64 = np.zeros((rows, width))
        self.head: I64 = np.zeros(rows, dtype=np.int64)
        self.count: I64 = np.zeros(rows, dtype=np.int64)
        self.s1: F64 = np.zeros(rows)
        self.s2: F64 = np.zeros(rows)
        self._buf = memoryview(self.buf.reshape(-1)).cast("B").cast("d")
        self._head = memoryview(self.head).cast("B").cast("q")
        self._count = memoryview(self.count).cast("B").cast("q")
        self._s1 = memoryview(self.s1).cast("B").cast("d")
        self._s2 = memoryview(self.s2).cast("B").cast("d")

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

    def push(self, row: int, value: float) -> None:
        """Append one value, evicting the oldest once the window is full. O(1)."""
        head = self._head[row]
        width = self.width
        at = row * width + head
        if self._count[row] == width:
            old = self._buf[at]
            self._s1[row] += value - old
            self._s2[row] += value * value - old * old
        else:
            self._count[row] += 1
            self._s1[row] += value
            self._s2[row] += value * value
        self._buf[at] = value
        head += 1
        if head == width:
            head = 0
            # Once per lap, re-add exactly so add/subtract rounding never accumulates.
            window = self.buf[row]
            self._s1[row] = float(window.sum())
            self._s2[row] = float(np.dot(window, window))
        self._head[row] = head

    # ------------------------------------------------------------------ block path
    def ordered(self, rows: I64) -> F64:
        """Windows of ``rows`` oldest first, unused slots (zeros) in front: shape (len(rows), width)."""
        idx = (self.head[rows, None] + np.arange(self.width)) % self.width
        out: F64 = np.take_along_axis(self.buf[rows], idx, axis=1)
        return out

    def extend(self, rows: I64, values: F64, *, inclusive: bool = False) -> tuple[F64, F64, I64]:
        """Append ``values[r, :]`` to row ``rows[r]``; return per-value stats of the window
        *before* that value (ending *with* it if ``inclusive``): (sum, sum of squares, count),
        each shaped like ``values``.

        ``rows`` must be distinct. Cost O(len(rows) x (width + values.shape[1])).
        """
        width = self.width
        m = values.shape[1]
        seq = np.concatenate((self.ordered(rows), values), axis=1)
        c1 = np.zeros((len(rows), width + m + 1))
        c2 = np.zeros_like(c1)
        np.cumsum(seq, axis=1, out=c1[:, 1:])
        np.cumsum(seq * seq, axis=1, out=c2[:, 1:])
        shift = int(inclusive)
        hi = width + shift + np.arange(m)  # window of value j: seq[hi - width : hi]
        s1 = c1[:, hi] - c1[:, hi - width]
        s2 = c2[:, hi] - c2[:, hi - width]
        count0 = self.count[rows]
        cnt = np.minimum(count0[:, None] + shift + np.arange(m), width)
        tail = seq[:, m:]
        self.buf[rows] = tail
        self.head[rows] = 0
        self.count[rows] = np.minimum(count0 + m, width)
        self.s1[rows] = tail.sum(axis=1)
        self.s2[rows] = np.einsum("ij,ij->i", tail, tail)
        return s1, s2, cnt
