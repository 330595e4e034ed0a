// Pure parts: backoff, binary frames, rolling window, Bokeh binding.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, bindColumnDataSource, packBinary, RollingWindow, unpackBinary } from "../dist/livestream.mjs";

test("backoff is capped, exponential and jittered between half and full", () => {
  assert.equal(backoffDelay(0, 100, 10_000, () => 1), 100);
  assert.equal(backoffDelay(0, 100, 10_000, () => 0), 50);
  assert.equal(backoffDelay(3, 100, 10_000, () => 1), 800);
  assert.equal(backoffDelay(20, 100, 10_000, () => 1), 10_000);
  assert.equal(backoffDelay(2000, 100, 10_000, () => 0), 5_000);
});

test("binary frames round-trip: big-endian header length, JSON header, payload", () => {
  const frame = packBinary({ type: "append", rows: 2 }, new Uint8Array([1, 2, 3]));
  assert.deepEqual(Array.from(frame.subarray(0, 4)), [0, 0, 0, 26]);
  const { header, payload } = unpackBinary(frame);
  assert.deepEqual(header, { type: "append", rows: 2 });
  assert.deepEqual(Array.from(payload), [1, 2, 3]);
  assert.throws(() => unpackBinary(new Uint8Array([0, 0, 1])), /shorter/);
  assert.throws(() => unpackBinary(new Uint8Array([0, 0, 0, 9, 123])), /exceeds/);
});

test("rolling window keeps the last rows through many appends", () => {
  const w = new RollingWindow([{ name: "x", type: "int64" }, { name: "s", type: "string" }], 5, 10);
  for (let i = 0; i < 3000; i += 3) {
    w.append({ columns: { x: new Float64Array([i, i + 1, i + 2]), s: [`${i}`, `${i + 1}`, `${i + 2}`] }, length: 3 });
  }
  const b = w.toBatch();
  assert.deepEqual(Array.from(b.columns.x), [2995, 2996, 2997, 2998, 2999]);
  assert.deepEqual(b.columns.s, ["2995", "2996", "2997", "2998", "2999"]);
  assert.equal(w.endOffset, 3010);
  assert.equal(w.startOffset, 3005);
  w.append({ columns: { x: new Float64Array(7).fill(1), s: new Array(7).fill("z") }, length: 7 });
  assert.equal(w.length, 5);
});

test("bindColumnDataSource streams appends and resets on snapshots", () => {
  const listeners = [];
  const sub = {
    maxRows: 3, length: 0, window: { columns: { x: new Float64Array([7, 8]) }, length: 2 },
    on: (_ev, fn) => (listeners.push(fn), () => {}),
  };
  const calls = [];
  const source = { data: {}, stream: (data, rollover) => calls.push([data, rollover]) };
  bindColumnDataSource(sub, source, { schedule: (fn) => fn() });
  listeners[0]({ kind: "snapshot", reset: true, batch: sub.window });
  assert.deepEqual(source.data, { x: [7, 8] });
  listeners[0]({ kind: "append", reset: false, batch: { columns: { x: new Float64Array([9]) }, length: 1 } });
  assert.deepEqual(calls, [[{ x: [9] }, 3]]);
});
