// Every logical type decodes to the same columns in both encodings; publishing from JS.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, RemoteError } from "../dist/livestream.mjs";
import { startServer, subscriptionAt, until } from "./helpers.mjs";

const ns = (v) => Number(BigInt(v)) / 1e6;
const EXPECTED = {
  b: [true, false, true],
  i8: [-128, 0, 127],
  u32: [0, 1, 4294967295],
  i64: [-(2 ** 53), 0, 2 ** 53],
  f32: [1.5, -0.25, 3],
  f64: [1.25, NaN, Infinity],
  f64n: [-Infinity, 0.5, 2],
  bb: [true, null, false],
  I64: [1, NaN, -3],
  F64: [0.5, NaN, 1.5],
  s: ["x", null, "zé"],
  c: ["u", null, "v"],
  t_s: [0, 1_700_000_000_000, NaN],
  t_ms: [1, 1_700_000_000_123, 2],
  t_us: [0.001, 1_700_000_000_123.456, 0.002],
  t_ns: [1, ns("1700000000123456789"), NaN],
  t_tz: [0, 1_700_000_000_000, 5],
};

for (const encoding of ["json", "arrow"]) {
  test(`${encoding}: every logical type decodes as documented`, async (t) => {
    const srv = await startServer();
    t.after(() => srv.stop());
    await srv.cmd({ cmd: "types", topic: "types" });
    const client = connect(srv.url, { encoding });
    t.after(() => client.close());
    const sub = client.subscribe("types");
    await subscriptionAt(sub, 3);
    const win = sub.window;
    assert.deepEqual(sub.schema.map((f) => f.name), Object.keys(EXPECTED));
    for (const [name, want] of Object.entries(EXPECTED)) {
      const got = Array.from(win.columns[name]);
      assert.deepEqual(got, want, `column ${name} (${sub.schema.find((f) => f.name === name).type})`);
    }
    assert.ok(win.columns.f64 instanceof Float64Array);
    assert.ok(win.columns.t_ns instanceof Float64Array);
  });
}

test("publish from the client: ack, rows reach subscribers, schema errors are rejected", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const client = connect(srv.url, { encoding: "arrow" });
  t.after(() => client.close());
  await client.ready();
  // A new topic's types are inferred from plain JSON values; ±Infinity needs the schema given.
  const schema = [{ name: "x", type: "float64" }, { name: "y", type: "string" }];
  const ack = await client.publish("pub", { columns: { x: new Float64Array([1.5, NaN, Infinity]), y: ["a", null, "c"] } }, { schema });
  assert.deepEqual([ack.type, ack.topic, ack.offset, ack.next, ack.rows], ["ack", "pub", 0, 3, 3]);
  const sub = client.subscribe("pub");
  await subscriptionAt(sub, 3);
  const ack2 = await client.publish("pub", [{ x: 4, y: "d" }]);
  assert.equal(ack2.next, 4);
  await subscriptionAt(sub, 4);
  assert.deepEqual(Array.from(sub.window.columns.x), [1.5, NaN, Infinity, 4]);
  assert.deepEqual(sub.window.columns.y, ["a", null, "c", "d"]);
  await assert.rejects(client.publish("pub", { columns: { x: [1], z: [2] } }), (err) => {
    assert.ok(err instanceof RemoteError);
    assert.equal(err.code, "schema_mismatch");
    assert.equal(err.column, "z");
    return true;
  });
  const rtt = await client.ping();
  assert.ok(rtt >= 0);
  const errors = [];
  const bad = client.subscribe("/bad", { onError: (e) => errors.push(e.code) });
  await until(bad, ["error"], () => errors.length === 1, "the subscribe error");
  assert.deepEqual(errors, ["bad_topic_name"]);
});
