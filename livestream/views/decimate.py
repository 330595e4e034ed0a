"""Display decimation: which rows of a series to draw so that drawing costs pixels, not rows.

A chart whose window holds a million rows cannot hand them all to the browser each frame:
BokehJS re-draws every point of a source on every change. :func:`m4_indices` picks, per
*pixel column* (bucket) of the plot, the rows a line drawn through all rows would touch at
that column — the first, the last, the lowest and the highest (the M4 rule of Jugel et al.,
"M4: a visualization-oriented time series data aggregation", VLDB 2014) — plus the first
gap (a NaN ``y`` or ``x``) of the bucket, so a line still breaks where the data has holes.
Drawn at the plot's width, the picked rows give the same pixels as all rows; the output
is bounded by the number of buckets, whatever the number of rows.

* **Extremes stay visible**: each bucket keeps its minimum and maximum.
* **Gaps stay visible**: each bucket with a NaN keeps one NaN row, in its place.
* **The newest rows stay exact**: the last ``tail`` rows are always kept.
* **Order**: the picked rows are returned in row order (x stays monotone when it was).

Buckets are equal slices of the x range when x is non-decreasing (a time axis), else
equal slices of the row positions. Everything is vectorised numpy: no Python per row.
:class:`SeriesDecimator` keeps one series' window and its overview incrementally, and draws
a zoomed range in detail. Nothing here knows Bokeh or Jupyter (docs/charts.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_BUCKETS", "DEFAULT_TAIL", "POINTS_PER_BUCKET", "SeriesDecimator", "bucket_ids",
           "m4_indices", "max_points", "visible_slice"]

#: Pixel columns assumed when a chart's width is not fixed (``sizing_mode="stretch_width"``).
DEFAULT_BUCKETS = 1000
#: Newest rows of a series always drawn exactly (not decimated).
DEFAULT_TAIL = 200
#: Rows kept per bucket at most: first, last, minimum, maximum and one gap.
POINTS_PER_BUCKET = 5


def max_points(buckets: int, tail: int = DEFAULT_TAIL) -> int:
    """The most points :func:`m4_indices` returns for ``buckets`` and ``tail``."""
    return POINTS_PER_BUCKET * int(buckets) + int(tail)


def _monotone(x: np.ndarray) -> bool:
    fx = x[np.isfinite(x)]
    return bool(len(fx) < 2 or np.all(fx[1:] >= fx[:-1]))


def bucket_ids(x: np.ndarray, buckets: int, lo: float | None = None,
               hi: float | None = None) -> np.ndarray:
    """The bucket (0 … ``buckets``-1) of each row, non-decreasing along the rows.

    Equal slices of [``lo``, ``hi``] (default: x's finite range) when x is non-decreasing,
    else equal slices of the row positions. A row with a non-finite x takes the bucket of the
    row before it (the first rows: bucket 0).
    """
    n = len(x)
    buckets = max(1, int(buckets))
    if n == 0:
        return np.empty(0, dtype=np.int64)
    finite = np.isfinite(x)
    if not finite.any() or not _monotone(x):
        return (np.arange(n, dtype=np.int64) * buckets) // n
    fx = x[finite]
    lo = float(fx[0]) if lo is None else float(lo)
    hi = float(fx[-1]) if hi is None else float(hi)
    span = hi - lo
    with np.errstate(invalid="ignore"):
        ids = np.floor((x - lo) * (buckets / span)) if span > 0 else np.zeros(n)
    ids = np.where(finite, ids, -1.0)
    ids = np.clip(ids, -1, buckets - 1).astype(np.int64)
    if not finite.all():
        # a non-finite x belongs to the bucket of the row before it
        pos = np.where(finite, np.arange(n), -1)
        pos = np.maximum.accumulate(pos)
        ids = np.where(pos >= 0, ids[np.maximum(pos, 0)], 0)
    return np.maximum(ids, 0)


def m4_indices(x: np.ndarray, y: np.ndarray, buckets: int, *, tail: int = DEFAULT_TAIL,
               lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Rows of (``x``, ``y``) to draw at ``buckets`` pixel columns, in row order.

    Per bucket (see :func:`bucket_ids`): the first and last row, the rows of the minimum and
    maximum ``y``, and the first row whose ``x`` or ``y`` is NaN (a gap). The last ``tail``
    rows are all kept. Returns int64 row indices, at most :func:`max_points` of them; all
    rows when there are no more than that.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x has {n} rows but y has {len(y)}")
    if buckets < 1:
        raise ValueError("buckets must be a positive number of pixel columns")
    tail = max(0, int(tail))
    if n <= max_points(buckets, tail):
        return np.arange(n, dtype=np.int64)
    head = n - tail
    picks = _m4_by_ids(x[:head], y[:head], bucket_ids(x[:head], buckets, lo, hi))
    return np.concatenate([picks, np.arange(head, n, dtype=np.int64)])


def visible_slice(x: np.ndarray, x0: float, x1: float) -> slice:
    """The rows of a non-decreasing ``x`` inside [``x0``, ``x1``], plus one row either side
    (so a line runs on to the plot's edges). ``slice(0, len(x))`` when x is not sorted."""
    n = len(x)
    if n == 0 or not _monotone(x) or not np.isfinite(x).all():
        return slice(0, n)
    a = int(np.searchsorted(x, x0, side="left"))
    b = int(np.searchsorted(x, x1, side="right"))
    return slice(max(0, a - 1), min(n, b + 1))


class SeriesDecimator:
    """One series' rows (x, y as float64, the last ``window`` of them) and its decimated views.

    :meth:`overview` is the whole window at ``buckets`` pixel columns, kept up to date
    incrementally: the x axis is cut into buckets of a fixed width (the window's x span over
    ``buckets``, chosen again when the span grows by a quarter or halves), the M4 picks of each
    completed bucket are remembered, and a frame only looks at the rows that arrived since.
    :meth:`detail` is a range [x0, x1] of the window at ``buckets`` columns (a zoomed view),
    computed from the rows in that range. Both keep the newest ``tail`` rows exactly.

    A non-decreasing x is the fast path; otherwise each overview is computed afresh over
    the rows in position buckets (cost grows with the rows, not with the page).
    """

    def __init__(self, window: int, buckets: int = DEFAULT_BUCKETS,
                 tail: int = DEFAULT_TAIL) -> None:
        if window < 1:
            raise ValueError("window must be a positive number of points")
        if buckets < 1:
            raise ValueError("buckets must be a positive number of pixel columns")
        self.window = int(window)
        self.buckets = int(buckets)
        self.tail = max(0, int(tail))
        cap = max(1024, 2 * self.window)
        self._x = np.empty(cap)
        self._y = np.empty(cap)
        self._lo = self._hi = 0
        self._base = 0  # absolute row number of buffer position 0
        self._monotone = True
        self._last_x = -np.inf
        self._width = 0.0  # bucket width of the overview grid (0: not chosen)
        self._picks = np.empty(0, dtype=np.int64)  # absolute rows picked in complete buckets
        self._done = 0  # absolute row where the unsettled rows start
        #: changes whenever the settled picks are recomputed from scratch
        self.generation = 0

    # -- rows ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._hi - self._lo

    @property
    def x(self) -> np.ndarray:
        """The window's x values (a view; do not keep it across appends)."""
        return self._x[self._lo:self._hi]

    @property
    def y(self) -> np.ndarray:
        """The window's y values (a view)."""
        return self._y[self._lo:self._hi]

    def clear(self) -> None:
        """Forget every row (a snapshot or a filter change redraws from scratch)."""
        self._lo = self._hi = 0
        self._base = 0
        self._monotone = True
        self._last_x = -np.inf
        self._width = 0.0
        self._picks = np.empty(0, dtype=np.int64)
        self._done = 0
        self.generation += 1

    def append(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add rows at the end; the oldest roll out beyond ``window``."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        n = len(x)
        if n == 0:
            return
        if n > self.window:
            x, y, dropped = x[n - self.window:], y[n - self.window:], n - self.window
            self._base += self._hi + dropped
            self._lo = self._hi = 0
            n = self.window
        if self._monotone:
            fx = x[np.isfinite(x)]
            if len(fx) and (fx[0] < self._last_x or not np.all(fx[1:] >= fx[:-1])):
                self._monotone = False
            elif len(fx):
                self._last_x = float(fx[-1])
        if self._hi + n > len(self._x):
            keep = min(len(self), self.window - n)
            start = self._hi - keep
            self._x[:keep] = self._x[start:self._hi]
            self._y[:keep] = self._y[start:self._hi]
            self._base += start
            self._lo, self._hi = 0, keep
        self._x[self._hi:self._hi + n] = x
        self._y[self._hi:self._hi + n] = y
        self._hi += n
        if len(self) > self.window:
            self._lo = self._hi - self.window

    @property
    def first_row(self) -> int:
        """Absolute number of the window's oldest row."""
        return self._base + self._lo

    @property
    def end_row(self) -> int:
        """Absolute number the next appended row will get."""
        return self._base + self._hi

    def extent(self) -> tuple[float, float] | None:
        """The finite x range of the window (None when it has no finite x)."""
        x = self.x
        if self._monotone and len(x) and np.isfinite(x[0]) and np.isfinite(x[-1]):
            return float(x[0]), float(x[-1])
        fx = x[np.isfinite(x)]
        if len(fx) == 0:
            return None
        if self._monotone:
            return float(fx[0]), float(fx[-1])
        return float(fx.min()), float(fx.max())

    # -- views --------------------------------------------------------------------------

    def decimating(self) -> bool:
        """Whether the window holds more rows than an overview draws."""
        return len(self) > max_points(self.buckets, self.tail)

    def _advance(self) -> bool:
        """Bring the settled picks up to date (buckets whose rows are all older than the exact
        tail). False when the grid cannot be used (x not sorted, no x span)."""
        if not self._monotone:
            return False
        ext = self.extent()
        span = 0.0 if ext is None else ext[1] - ext[0]
        want = span / self.buckets
        if want <= 0 or not np.isfinite(want):
            return False
        if self._width <= 0 or not (0.5 * self._width <= want <= 1.25 * self._width):
            self._width = want
            self._picks = np.empty(0, dtype=np.int64)
            self._done = self.first_row
            self.generation += 1
        first = self.first_row
        self._done = max(self._done, first)
        limit = max(self._done, self.end_row - self.tail)
        lo, hi = self._done - self._base, limit - self._base
        if hi > lo:
            # the bucket of the first exact row (or of the newest row) is not settled yet
            ref = self._x[hi] if hi < self._hi else self._x[self._hi - 1]
            x = self._x[lo:hi]
            grid = np.floor(x / self._width)
            if np.isfinite(ref):
                later = np.flatnonzero(grid >= np.floor(ref / self._width))
                settled = int(later[0]) if len(later) else len(x)
            else:
                settled = 0
            if settled > 0:
                ids = _fill_forward(np.floor(x[:settled] / self._width))
                picks = _m4_by_ids(x[:settled], self._y[lo:lo + settled], ids) + self._done
                self._picks = np.concatenate([self._picks, picks])
                self._done += settled
        self._picks = self._picks[self._picks >= first]
        return True

    def _volatile(self) -> np.ndarray:
        """Absolute rows after the settled buckets: the M4 picks of the rows before the exact
        tail (one bucket at most), then the tail. At most ``tail`` + 5 rows."""
        limit = max(self._done, self.end_row - self.tail)
        lo, hi = self._done - self._base, limit - self._base
        part = _m4_by_ids(self._x[lo:hi], self._y[lo:hi], None) + self._done
        return np.concatenate([part, np.arange(limit, self.end_row, dtype=np.int64)])

    def overview_rows(self) -> np.ndarray:
        """Window positions (0 = oldest row) of the overview's rows, in order."""
        n = len(self)
        if n <= max_points(self.buckets, self.tail):
            return np.arange(n, dtype=np.int64)
        if not self._advance():
            return m4_indices(self.x, self.y, self.buckets, tail=self.tail)
        first = self.first_row
        # the oldest bucket has partly rolled out: its picks are taken again from what is left
        wx = self.x
        edge = first
        if np.isfinite(wx[0]):
            edge = first + int(np.searchsorted(wx, (np.floor(wx[0] / self._width) + 1)
                                               * self._width, side="left"))
            edge = min(edge, self._done)
        head = _m4_by_ids(wx[:edge - first], self.y[:edge - first], None) + first
        rows = np.concatenate([[first], head, self._picks[self._picks >= edge],
                               self._volatile()])
        return np.unique(rows) - first

    def stream_parts(self) -> tuple[int, np.ndarray, np.ndarray] | None:
        """The overview as a source kept by appending: ``(generation, settled, volatile)``.

        ``settled``: window positions of the picks of settled buckets (only ever appended to
        as rows arrive, and dropped from the front as they roll out); ``volatile``: the
        positions after them (:meth:`_volatile`), which change every frame. ``generation``
        changes when the settled picks were recomputed (redraw everything). None when the
        overview cannot be kept this way (x not sorted, no x span): draw :meth:`overview`.
        The oldest pixel column is as it was picked (it may miss an extreme of rows that have
        rolled out); :meth:`overview` takes it again.
        """
        if not self._advance():
            return None
        first = self.first_row
        return self.generation, self._picks - first, self._volatile() - first

    def overview(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of the whole window at ``buckets`` pixel columns."""
        rows = self.overview_rows()
        return self.x[rows], self.y[rows]

    def detail(self, x0: float, x1: float) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of the rows in [x0, x1] (one more either side) at ``buckets`` columns."""
        if self._monotone:
            sl = visible_slice(self.x, x0, x1)
            x, y = self.x[sl], self.y[sl]
            rows = m4_indices(x, y, self.buckets, tail=self.tail if sl.stop == len(self) else 0,
                              lo=x0, hi=x1)
            return x[rows], y[rows]
        x, y = self.x, self.y
        keep = np.flatnonzero((x >= x0) & (x <= x1))
        rows = keep[m4_indices(x[keep], y[keep], self.buckets, tail=0)]
        return x[rows], y[rows]


def _fill_forward(ids: np.ndarray) -> np.ndarray:
    """Bucket ids with NaN (a non-finite x) replaced by the id of the row before."""
    bad = np.isnan(ids)
    if not bad.any():
        return ids
    pos = np.where(~bad, np.arange(len(ids)), -1)
    pos = np.maximum.accumulate(pos)
    first = ids[~bad][0] if (~bad).any() else 0.0
    return np.where(pos >= 0, ids[np.maximum(pos, 0)], first)


def _m4_by_ids(x: np.ndarray, y: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
    """M4 picks (+ first gap) of rows already cut into non-decreasing bucket ``ids`` (None:
    one bucket). Row indices into x, sorted, unique."""
    n = len(x)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if ids is None:
        starts = np.zeros(1, dtype=np.int64)
    else:
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], n]
    lens = ends - starts
    rows = np.arange(n, dtype=np.int64)
    finite = np.isfinite(y)
    gap = ~finite | ~np.isfinite(x)
    big = np.int64(n)
    ymin = np.minimum.reduceat(np.where(finite, y, np.inf), starts)
    ymax = np.maximum.reduceat(np.where(finite, y, -np.inf), starts)
    imin = np.minimum.reduceat(np.where(finite & (y == np.repeat(ymin, lens)), rows, big), starts)
    imax = np.minimum.reduceat(np.where(finite & (y == np.repeat(ymax, lens)), rows, big), starts)
    igap = np.minimum.reduceat(np.where(gap, rows, big), starts)
    picked = np.concatenate([starts, ends - 1, imin, imax, igap])
    return np.unique(picked[picked < n])
