// Keyed topics: upserts (with cut connections) end equal to the server's table.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../dist/livestream.mjs";
import { startServer, subscriptionAt, until } from "./helpers.mjs";

async function assertEqualsServerTable(srv, sub) {
  const table = await srv.cmd({ cmd: "table", topic: sub.topic });
  assert.equal(sub.offset, table.next);
  assert.equal(sub.epoch, table.epoch);
  const win = sub.window;
  assert.deepEqual(Object.keys(win.columns), table.schema.map((f) => f.name));
  assert.equal(win.length, table.columns.sym.length);
  assert.deepEqual(Array.from(win.columns.sym), table.columns.sym);
  assert.deepEqual(Array.from(win.columns.price), table.columns.price);
  assert.deepEqual(Array.from(win.columns.qty), table.columns.qty);
}

for (const encoding of ["json", "arrow"]) {
  test(`${encoding}: keyed upserts across cut connections end equal to the server table`, async (t) => {
    const srv = await startServer({ retention_rows: 100_000 });
    t.after(() => srv.stop());
    await srv.cmd({ cmd: "topic", topic: "quotes", key: "sym" });
    await srv.cmd({ cmd: "upsert", topic: "quotes", n: 40, keys: 30, seed: 1 });
    const client = connect(srv.url, { encoding, backoff: { baseMs: 5, capMs: 50 } });
    t.after(() => client.close());
    const gaps = [];
    const sub = client.subscribe("quotes", { onGap: (g) => gaps.push(g) });
    let last = await srv.cmd({ cmd: "upsert", topic: "quotes", n: 10, keys: 30, seed: 2 });
    await subscriptionAt(sub, last.next);
    assert.equal(sub.mode, "keyed");
    assert.deepEqual(sub.key, ["sym"]);
    for (let round = 0; round < 8; round++) {
      last = await srv.cmd({ cmd: "upsert", topic: "quotes", n: 50, keys: 30, seed: 10 + round });
      if (round % 2 === 0 && client.socket) client.socket.terminate();
    }
    await subscriptionAt(sub, last.next);
    assert.deepEqual(gaps, []);
    await assertEqualsServerTable(srv, sub);
  });
}

test("upsert events give the row positions of the window", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  await srv.cmd({ cmd: "topic", topic: "k", key: "sym" });
  await srv.cmd({ cmd: "upsert", topic: "k", n: 20, keys: 5, seed: 3 });
  const client = connect(srv.url, { encoding: "json" });
  t.after(() => client.close());
  const events = [];
  const sub = client.subscribe("k", { onUpdate: (ev) => events.push(ev) });
  const first = await srv.cmd({ cmd: "table", topic: "k" });
  await subscriptionAt(sub, first.next);
  const ack = await srv.cmd({ cmd: "upsert", topic: "k", n: 8, keys: 8, seed: 4 });
  await subscriptionAt(sub, ack.next);
  const ev = events.at(-1);
  assert.equal(ev.kind, "upsert");
  const win = sub.window;
  ev.positions.forEach((p, i) => {
    assert.equal(win.columns.sym[p], ev.batch.columns.sym[i]);
  });
  await assertEqualsServerTable(srv, sub);
});

test("subscribing before a keyed topic exists: waiting, then snapshot, then upserts", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const client = connect(srv.url, { encoding: "arrow" });
  t.after(() => client.close());
  const sub = client.subscribe("later");
  await until(sub, ["state"], () => sub.state === "waiting", "waiting for the topic");
  await srv.cmd({ cmd: "topic", topic: "later", key: "sym" });
  let ack = await srv.cmd({ cmd: "upsert", topic: "later", n: 30, keys: 10, seed: 5 });
  await subscriptionAt(sub, ack.next);
  assert.equal(sub.state, "live");
  for (let i = 0; i < 3; i++) ack = await srv.cmd({ cmd: "upsert", topic: "later", n: 30, keys: 15, seed: 6 + i });
  await subscriptionAt(sub, ack.next);
  assert.deepEqual(sub.key, ["sym"]);
  await assertEqualsServerTable(srv, sub);
});
