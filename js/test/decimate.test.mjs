// The browser-side decimator (js/src/decimate.ts): the same guarantees as
// livestream/views/decimate.py — bounded by pixels, extremes and gaps kept, newest rows exact.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SeriesDecimator, m4Indices, maxPoints } from "../dist/livestream.mjs";

/** A random walk of n rows over x = 0 … n-1 (deterministic). */
function walk(n, seed = 1) {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  let v = 0;
  for (let i = 0; i < n; i++) {
    x[i] = i;
    v += rnd();
    y[i] = v;
  }
  return { x, y };
}

const max = (a) => a.reduce((m, v) => (v > m ? v : m), -Infinity);
const min = (a) => a.reduce((m, v) => (v < m ? v : m), Infinity);

test("the output is bounded by pixel columns, not rows", () => {
  const sizes = [];
  for (const n of [10_000, 100_000, 1_000_000]) {
    const { x, y } = walk(n);
    const idx = m4Indices(x, y, 500, { tail: 100 });
    assert.ok(idx.length <= maxPoints(500, 100), `${idx.length} points for ${n} rows`);
    sizes.push(idx.length);
  }
  assert.ok(Math.max(...sizes) < 1.25 * Math.min(...sizes));
});

test("few rows are kept as they are", () => {
  const { x, y } = walk(300);
  assert.deepEqual(Array.from(m4Indices(x, y, 100, { tail: 0 })), Array.from({ length: 300 }, (_, i) => i));
});

test("extremes, first/last and the newest rows are kept, in row order", () => {
  const { x, y } = walk(200_000, 7);
  y[123_457] = 1e9;
  y[77_777] = -1e9;
  const idx = m4Indices(x, y, 400, { tail: 250 });
  const picked = new Set(idx);
  assert.ok(picked.has(123_457) && picked.has(77_777) && picked.has(0));
  for (let i = 200_000 - 250; i < 200_000; i++) assert.ok(picked.has(i));
  for (let i = 1; i < idx.length; i++) assert.ok(idx[i] > idx[i - 1] && x[idx[i]] >= x[idx[i - 1]]);
});

test("gaps (NaN) stay visible", () => {
  const { x, y } = walk(100_000);
  for (let i = 40_000; i < 40_010; i++) y[i] = NaN;
  y[90_000] = NaN;
  const idx = m4Indices(x, y, 200, { tail: 0 });
  const nans = Array.from(idx).filter((i) => Number.isNaN(y[i]));
  assert.deepEqual(nans, [40_000, 90_000]);
});

test("bad arguments say what is wrong", () => {
  assert.throws(() => m4Indices(new Float64Array(3), new Float64Array(4), 10), /rows/);
  assert.throws(() => m4Indices(new Float64Array(3), new Float64Array(3), 0), /pixel columns/);
});

test("the incremental overview follows the window and stays bounded", () => {
  const d = new SeriesDecimator(50_000, 200, 50);
  const { x, y } = walk(400_000, 5);
  for (let s = 0; s < x.length; s += 3_000) {
    d.append(x.subarray(s, s + 3_000), y.subarray(s, s + 3_000));
    const o = d.overview();
    assert.ok(o.x.length <= 2 * maxPoints(200, 50), `${o.x.length} points`);
    const wx = d.x, wy = d.y;
    assert.equal(o.x[0], wx[0]);
    assert.equal(o.x[o.x.length - 1], wx[wx.length - 1]);
    assert.equal(max(o.y), max(wy));
    assert.equal(min(o.y), min(wy));
    for (let i = 1; i < o.x.length; i++) assert.ok(o.x[i] >= o.x[i - 1]);
    assert.deepEqual(Array.from(o.x.subarray(o.x.length - 50)), Array.from(wx.subarray(wx.length - 50)));
  }
  assert.equal(d.length, 50_000);
});

test("a zoomed range is drawn in finer detail than the overview", () => {
  const d = new SeriesDecimator(200_000, 100, 0);
  const { x, y } = walk(200_000);
  d.append(x, y);
  const o = d.overview();
  const z = d.detail(1_000, 3_000);
  const inside = Array.from(o.x).filter((v) => v >= 1_000 && v <= 3_000).length;
  assert.ok(z.x[0] >= 999 && z.x[z.x.length - 1] <= 3_001);
  assert.ok(z.x.length > 10 * inside, `${z.x.length} vs ${inside}`);
});
