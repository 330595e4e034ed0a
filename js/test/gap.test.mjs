// Gaps: beyond retention, and after the server's epoch changed (restart).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../dist/livestream.mjs";
import { checkSeqWindow, clientState, startServer, subscriptionAt, until } from "./helpers.mjs";

for (const encoding of ["json", "arrow"]) {
  test(`${encoding}: resuming beyond retention gives a gap event, then a fresh snapshot`, async (t) => {
    const srv = await startServer({ retention_rows: 50 });
    t.after(() => srv.stop());
    await srv.cmd({ cmd: "append", topic: "t", n: 100 });
    const client = connect(srv.url, { encoding, backoff: { baseMs: 3_600_000, capMs: 3_600_000 } });
    t.after(() => client.close());
    const log = [];
    const sub = client.subscribe("t", {
      onUpdate: (ev) => log.push(["update", ev.kind, ev.reset, ev.offset, ev.next]),
      onGap: (g) => log.push(["gap", g]),
    });
    await subscriptionAt(sub, 100);
    checkSeqWindow(assert, sub.window, 50, 100);
    const epoch = sub.epoch;
    client.socket.terminate();
    await clientState(client, "reconnecting");
    await srv.cmd({ cmd: "append", topic: "t", n: 200 });
    log.length = 0;
    client.reconnectNow();
    await subscriptionAt(sub, 300);
    assert.deepEqual(log, [
      ["gap", { type: "gap", topic: "t", epoch, offset: 100, new_epoch: epoch, until: 250, reason: "retention" }],
      ["update", "snapshot", true, 250, 300],
    ]);
    assert.equal(sub.stats.gaps, 1);
    checkSeqWindow(assert, sub.window, 250, 300);
  });
}

/** A client subscribed to 10 rows of "t", then the server restarted on the same port (a new
 * epoch) with the client reconnecting. Returns what the two restart tests need. */
async function restartedUnderSubscription(t, encoding) {
  const first = await startServer();
  const port = first.port;
  await first.cmd({ cmd: "append", topic: "t", n: 10 });
  const client = connect(first.url, { encoding, backoff: { baseMs: 3_600_000, capMs: 3_600_000 } });
  t.after(() => client.close());
  const gaps = [];
  const sub = client.subscribe("t", { onGap: (g) => gaps.push(g) });
  await subscriptionAt(sub, 10);
  const oldEpoch = sub.epoch;
  await first.stop();
  await clientState(client, "reconnecting");
  const srv = await startServer({ port });
  t.after(() => srv.stop());
  return { srv, client, sub, gaps, oldEpoch };
}

test("a server restart (new epoch) gives a gap with reason epoch", async (t) => {
  const { srv, client, sub, gaps, oldEpoch } = await restartedUnderSubscription(t, "arrow");
  const ack = await srv.cmd({ cmd: "append", topic: "t", n: 5 });
  client.reconnectNow();
  await until(sub, ["update"], () => sub.epoch === ack.epoch && sub.offset === 5, "the snapshot of the new epoch");
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0].reason, "epoch");
  assert.equal(gaps[0].epoch, oldEpoch);
  assert.equal(gaps[0].offset, 10);
  assert.equal(gaps[0].new_epoch, ack.epoch);
  checkSeqWindow(assert, sub.window, 0, 5);
});

// The server sends a gap between its second `subscribed` and the snapshot (docs/protocol.md
// §5.4); the client also reports a snapshot of another epoch as a gap by itself, and the two
// must not add up to two gaps.
test("a restart before the topic reappears: waiting, then one gap and the new epoch's snapshot", async (t) => {
  const { srv, client, sub, gaps, oldEpoch } = await restartedUnderSubscription(t, "json");
  client.reconnectNow();
  await until(sub, ["state"], () => sub.state === "waiting", "the subscription to wait for the topic");
  assert.deepEqual(gaps, []);
  const ack = await srv.cmd({ cmd: "append", topic: "t", n: 3 });
  await until(sub, ["update"], () => sub.epoch === ack.epoch, "the new epoch's snapshot");
  assert.equal(gaps.length, 1);
  assert.deepEqual(
    { reason: gaps[0].reason, epoch: gaps[0].epoch, offset: gaps[0].offset, new_epoch: gaps[0].new_epoch },
    { reason: "epoch", epoch: oldEpoch, offset: 10, new_epoch: ack.epoch },
  );
  checkSeqWindow(assert, sub.window, 0, 3);
});

test("a deleted topic's subscription waits, then takes the re-created topic's rows", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  await srv.cmd({ cmd: "append", topic: "t", n: 10 });
  const client = connect(srv.url, { encoding: "arrow" });
  t.after(() => client.close());
  const gaps = [];
  const sub = client.subscribe("t", { onGap: (g) => gaps.push(g) });
  await subscriptionAt(sub, 10);
  assert.equal(sub.state, "live");
  const oldEpoch = sub.epoch;
  const del = await srv.cmd({ cmd: "delete", topic: "t" });
  assert.equal(del.deleted, true);
  await until(sub, ["state"], () => sub.state === "waiting", "the subscription to wait");
  const ack = await srv.cmd({ cmd: "append", topic: "t", n: 5 });
  await until(sub, ["update"], () => sub.epoch === ack.epoch && sub.offset === 5, "the new topic's snapshot");
  assert.equal(sub.state, "live");
  assert.notEqual(ack.epoch, oldEpoch);
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0].reason, "epoch");
  checkSeqWindow(assert, sub.window, 0, 5);
});
