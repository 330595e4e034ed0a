/**
 * Display decimation in the browser: the same rule as livestream/views/decimate.py, so a chart a
 * page streams by itself costs pixels, not rows.
 *
 * Per pixel column (bucket) of the plot: the first and last row, the rows of the lowest and
 * highest y, and the first gap (a NaN x or y), in row order; the newest `tail` rows always.
 * Buckets are equal slices of the x range when x is non-decreasing, else of the row positions.
 * {@link SeriesDecimator} keeps one series' window and its overview incrementally (completed
 * buckets are remembered) and draws a zoomed range in detail.
 */

/** Pixel columns assumed when the plot's width is not known. */
export const DEFAULT_BUCKETS = 1000;
/** Newest rows of a series always drawn exactly. */
export const DEFAULT_TAIL = 200;
/** Rows kept per bucket at most: first, last, minimum, maximum and one gap. */
export const POINTS_PER_BUCKET = 5;

/** The most rows {@link m4Indices} returns. */
export function maxPoints(buckets: number, tail: number = DEFAULT_TAIL): number {
  return POINTS_PER_BUCKET * buckets + tail;
}

function monotone(x: ArrayLike<number>, from = 0, to = x.length): boolean {
  let last = -Infinity;
  for (let i = from; i < to; i++) {
    const v = x[i];
    if (v !== v) continue; // NaN
    if (v < last) return false;
    last = v;
  }
  return true;
}

/**
 * M4 picks (+ first gap) of rows [from, to) cut by `bucketOf(i)` (non-decreasing along the rows).
 * Pushes row indices, in order and unique, to `out`.
 */
function m4Into(x: ArrayLike<number>, y: ArrayLike<number>, from: number, to: number,
                bucketOf: (i: number) => number, out: number[]): void {
  let i = from;
  while (i < to) {
    const b = bucketOf(i);
    const start = i;
    let imin = -1, imax = -1, igap = -1;
    let vmin = Infinity, vmax = -Infinity;
    for (; i < to && bucketOf(i) === b; i++) {
      const v = y[i];
      if (v !== v || x[i] !== x[i]) {
        if (igap < 0) igap = i;
        if (v !== v) continue;
      }
      if (v < vmin) { vmin = v; imin = i; }
      if (v > vmax) { vmax = v; imax = i; }
    }
    const last = i - 1;
    // the (up to) five picks, sorted and unique
    const picks = [start, last, imin, imax, igap].filter((p) => p >= 0).sort((a, c) => a - c);
    let prev = -1;
    for (const p of picks) if (p !== prev) out.push((prev = p));
  }
}

/** Bucket function over rows [from, to): equal x slices of [lo, hi] when x is sorted, else positions. */
function bucketFn(x: ArrayLike<number>, from: number, to: number, buckets: number,
                  lo?: number, hi?: number): (i: number) => number {
  const n = to - from;
  if (!monotone(x, from, to)) return (i) => Math.floor(((i - from) * buckets) / n);
  let first = NaN, last = NaN;
  for (let i = from; i < to; i++) if (x[i] === x[i]) { first = x[i]; break; }
  for (let i = to - 1; i >= from; i--) if (x[i] === x[i]) { last = x[i]; break; }
  if (first !== first) return (i) => Math.floor(((i - from) * buckets) / n);
  const a = lo ?? first;
  const span = (hi ?? last) - a;
  const scale = span > 0 ? buckets / span : 0;
  // a NaN x takes the bucket of the row before it (remembered while scanning in order)
  let prevBucket = 0;
  return (i) => {
    const v = x[i];
    if (v !== v) return prevBucket;
    const b = Math.min(buckets - 1, Math.max(0, Math.floor((v - a) * scale)));
    prevBucket = b;
    return b;
  };
}

/**
 * Rows of (x, y) to draw at `buckets` pixel columns, in row order (see the module doc). All rows
 * when there are no more than {@link maxPoints}.
 */
export function m4Indices(x: ArrayLike<number>, y: ArrayLike<number>, buckets: number,
                          opts: { tail?: number; lo?: number; hi?: number } = {}): Int32Array {
  const n = x.length;
  if (y.length !== n) throw new Error(`x has ${n} rows but y has ${y.length}`);
  if (!(buckets >= 1)) throw new Error("buckets must be a positive number of pixel columns");
  const tail = Math.max(0, Math.floor(opts.tail ?? DEFAULT_TAIL));
  if (n <= maxPoints(buckets, tail)) return Int32Array.from({ length: n }, (_, i) => i);
  const head = n - tail;
  const out: number[] = [];
  m4Into(x, y, 0, head, bucketFn(x, 0, head, buckets, opts.lo, opts.hi), out);
  for (let i = head; i < n; i++) out.push(i);
  return Int32Array.from(out);
}

/** One series' rows (the last `window`) with an incrementally kept overview and zoomed detail. */
export class SeriesDecimator {
  readonly window: number;
  readonly buckets: number;
  readonly tail: number;
  private xs: Float64Array;
  private ys: Float64Array;
  private lo = 0;
  private hi = 0;
  private base = 0; // absolute row number of buffer position 0
  private sorted = true;
  private lastX = -Infinity;
  private width = 0; // bucket width of the overview grid (0: not chosen)
  private picks: number[] = []; // absolute rows picked in complete buckets
  private done = 0; // absolute row where the newest (incomplete) bucket starts

  constructor(window: number, buckets: number = DEFAULT_BUCKETS, tail: number = DEFAULT_TAIL) {
    if (!(window >= 1)) throw new Error("window must be a positive number of points");
    if (!(buckets >= 1)) throw new Error("buckets must be a positive number of pixel columns");
    this.window = Math.floor(window);
    this.buckets = Math.floor(buckets);
    this.tail = Math.max(0, Math.floor(tail));
    const cap = Math.max(1024, Math.min(2 * this.window, 1 << 16));
    this.xs = new Float64Array(cap);
    this.ys = new Float64Array(cap);
  }

  get length(): number {
    return this.hi - this.lo;
  }

  /** The window's x (a view; do not keep it across appends). */
  get x(): Float64Array {
    return this.xs.subarray(this.lo, this.hi);
  }

  get y(): Float64Array {
    return this.ys.subarray(this.lo, this.hi);
  }

  get firstRow(): number {
    return this.base + this.lo;
  }

  get endRow(): number {
    return this.base + this.hi;
  }

  clear(): void {
    this.lo = this.hi = this.base = 0;
    this.sorted = true;
    this.lastX = -Infinity;
    this.width = 0;
    this.picks = [];
    this.done = 0;
  }

  append(x: ArrayLike<number>, y: ArrayLike<number>): void {
    let n = x.length;
    if (n === 0) return;
    let from = 0;
    if (n > this.window) {
      from = n - this.window;
      this.base += this.hi + from;
      this.lo = this.hi = 0;
      n = this.window;
    }
    if (this.sorted) {
      for (let i = from; i < x.length; i++) {
        const v = x[i];
        if (v !== v) continue;
        if (v < this.lastX) { this.sorted = false; break; }
        this.lastX = v;
      }
    }
    if (this.hi + n > this.xs.length) {
      const keep = Math.min(this.length, this.window - n);
      const start = this.hi - keep;
      if (2 * (keep + n) > this.xs.length && this.xs.length < 2 * this.window) {
        const cap = Math.min(2 * this.window, Math.max(2 * (keep + n), 2 * this.xs.length));
        const nx = new Float64Array(cap);
        const ny = new Float64Array(cap);
        nx.set(this.xs.subarray(start, this.hi));
        ny.set(this.ys.subarray(start, this.hi));
        this.xs = nx;
        this.ys = ny;
      } else {
        this.xs.copyWithin(0, start, this.hi);
        this.ys.copyWithin(0, start, this.hi);
      }
      this.base += start;
      this.lo = 0;
      this.hi = keep;
    }
    for (let i = 0; i < n; i++) {
      this.xs[this.hi + i] = Number(x[from + i]);
      this.ys[this.hi + i] = Number(y[from + i]);
    }
    this.hi += n;
    if (this.length > this.window) this.lo = this.hi - this.window;
  }

  /** The finite x range of the window, or null. */
  extent(): [number, number] | null {
    let a = Infinity, b = -Infinity;
    if (this.sorted) {
      for (let i = this.lo; i < this.hi; i++) if (this.xs[i] === this.xs[i]) { a = this.xs[i]; break; }
      for (let i = this.hi - 1; i >= this.lo; i--) if (this.xs[i] === this.xs[i]) { b = this.xs[i]; break; }
    } else {
      for (let i = this.lo; i < this.hi; i++) {
        const v = this.xs[i];
        if (v < a) a = v;
        if (v > b) b = v;
      }
    }
    return a <= b ? [a, b] : null;
  }

  /** Whether the window holds more rows than an overview draws. */
  decimating(): boolean {
    return this.length > maxPoints(this.buckets, this.tail);
  }

  /** Window positions (0 = oldest) of the overview's rows, in order. */
  overviewRows(): Int32Array {
    const n = this.length;
    if (n <= maxPoints(this.buckets, this.tail)) return Int32Array.from({ length: n }, (_, i) => i);
    const ext = this.extent();
    const want = ext ? (ext[1] - ext[0]) / this.buckets : 0;
    if (!this.sorted || !(want > 0) || !Number.isFinite(want)) {
      return m4Indices(this.x, this.y, this.buckets, { tail: this.tail });
    }
    if (!(this.width > 0) || !(0.5 * this.width <= want && want <= 1.25 * this.width)) {
      this.width = want;
      this.picks = [];
      this.done = this.firstRow;
    }
    const first = this.firstRow;
    const w = this.width;
    const xs = this.xs, ys = this.ys, base = this.base;
    this.done = Math.max(this.done, first);
    const grid = (i: number) => Math.floor(xs[i] / w);
    // the newest bucket starts after the last row whose bucket is below the newest x's
    let lastB = NaN;
    for (let i = this.hi - 1; i >= this.done - base; i--) if (xs[i] === xs[i]) { lastB = grid(i); break; }
    let complete = this.done - base;
    if (lastB === lastB) {
      let i = this.hi - 1;
      while (i >= this.done - base && (xs[i] !== xs[i] || grid(i) >= lastB)) i--;
      complete = i + 1;
    }
    if (complete > this.done - base) {
      let prev = 0;
      const fn = (i: number) => (xs[i] === xs[i] ? (prev = grid(i)) : prev);
      const out: number[] = [];
      m4Into(xs, ys, this.done - base, complete, fn, out);
      for (const p of out) this.picks.push(p + base);
      this.done = complete + base;
    }
    // the oldest bucket has partly rolled out: take its picks again from what is left
    let edge = this.lo;
    if (xs[this.lo] === xs[this.lo]) {
      const end = (grid(this.lo) + 1) * w;
      while (edge < this.done - base && !(xs[edge] >= end)) edge++;
    }
    const rows: number[] = [this.lo];
    m4Into(xs, ys, this.lo, edge, () => 0, rows);
    let k = 0;
    while (k < this.picks.length && this.picks[k] < edge + base) k++;
    if (k > 0) this.picks = this.picks.slice(k);
    for (const p of this.picks) rows.push(p - base);
    m4Into(xs, ys, this.done - base, this.hi, () => 0, rows);
    for (let i = Math.max(this.lo, this.hi - this.tail); i < this.hi; i++) rows.push(i);
    rows.sort((a, c) => a - c);
    const out: number[] = [];
    let prev = -1;
    for (const r of rows) if (r !== prev) out.push((prev = r) - this.lo);
    return Int32Array.from(out);
  }

  /** x and y of the overview (the whole window at `buckets` columns). */
  overview(): { x: Float64Array; y: Float64Array } {
    return this.take(this.overviewRows(), 0);
  }

  /** x and y of the rows in [x0, x1] (one more either side) at `buckets` columns. */
  detail(x0: number, x1: number): { x: Float64Array; y: Float64Array } {
    const x = this.x, y = this.y;
    if (this.sorted) {
      // binary search (x is sorted; NaN x makes the split approximate, never wrong in order)
      const firstAbove = (v: number, strict: boolean): number => {
        let l = 0, h = x.length;
        while (l < h) {
          const m = (l + h) >> 1;
          if (strict ? x[m] > v : x[m] >= v) h = m;
          else l = m + 1;
        }
        return l;
      };
      const a = Math.max(0, firstAbove(x0, false) - 1);
      const b = Math.min(x.length, firstAbove(x1, true) + 1);
      const sx = x.subarray(a, b), sy = y.subarray(a, b);
      const rows = m4Indices(sx, sy, this.buckets, { tail: b === x.length ? this.tail : 0, lo: x0, hi: x1 });
      return this.take(rows, a);
    }
    const keep: number[] = [];
    for (let i = 0; i < x.length; i++) if (x[i] >= x0 && x[i] <= x1) keep.push(i);
    const kx = Float64Array.from(keep, (i) => x[i]);
    const ky = Float64Array.from(keep, (i) => y[i]);
    const rows = m4Indices(kx, ky, this.buckets, { tail: 0 });
    return { x: Float64Array.from(rows, (r) => kx[r]), y: Float64Array.from(rows, (r) => ky[r]) };
  }

  private take(rows: Int32Array, offset: number): { x: Float64Array; y: Float64Array } {
    const x = this.x, y = this.y;
    return { x: Float64Array.from(rows, (r) => x[r + offset]), y: Float64Array.from(rows, (r) => y[r + offset]) };
  }
}
