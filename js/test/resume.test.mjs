// Resume across cut connections: no gap, no duplicate, in both encodings.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../dist/livestream.mjs";
import { checkSeqWindow, clientState, startServer, subscriptionAt, until } from "./helpers.mjs";

for (const encoding of ["json", "arrow"]) {
  test(`${encoding}: rows published while the TCP connection is cut arrive exactly once on resume`, async (t) => {
    const srv = await startServer();
    t.after(() => srv.stop());
    await srv.cmd({ cmd: "append", topic: "trades", n: 100 });
    // Reconnect only when told (reconnectNow), so the rows below are surely published while cut.
    const client = connect(srv.url, { encoding, backoff: { baseMs: 3_600_000, capMs: 3_600_000 } });
    t.after(() => client.close());
    const updates = [];
    const gaps = [];
    const sub = client.subscribe("trades", { window: 10_000, onUpdate: (ev) => updates.push(ev), onGap: (g) => gaps.push(g) });
    await subscriptionAt(sub, 100);
    assert.equal(updates[0].kind, "snapshot");
    let total = 100;
    for (let round = 0; round < 3; round++) {
      const held = sub.offset;
      const before = updates.length;
      client.socket.terminate(); // abrupt: destroys the TCP socket, no close handshake
      await clientState(client, "reconnecting");
      const ack = await srv.cmd({ cmd: "append", topic: "trades", n: 37 });
      assert.equal(ack.offset, held);
      total += 37;
      client.reconnectNow();
      await subscriptionAt(sub, total);
      const resumed = updates.slice(before);
      assert.equal(resumed.length, 1, "one message holds exactly the missed rows");
      assert.equal(resumed[0].kind, "append");
      assert.equal(resumed[0].offset, held);
      assert.equal(resumed[0].batch.length, 37);
      await srv.cmd({ cmd: "append", topic: "trades", n: 11 }); // live again
      total += 11;
      await subscriptionAt(sub, total);
    }
    assert.deepEqual(gaps, []);
    assert.equal(sub.stats.duplicates, 0);
    assert.equal(client.stats.reconnects, 3);
    checkSeqWindow(assert, sub.window, 0, total);
  });

  test(`${encoding}: automatic reconnect with backoff while publishing keeps the window contiguous`, async (t) => {
    const srv = await startServer();
    t.after(() => srv.stop());
    const client = connect(srv.url, { encoding, backoff: { baseMs: 5, capMs: 50 } });
    t.after(() => client.close());
    const gaps = [];
    const sub = client.subscribe("ticks", { window: 100_000, onGap: (g) => gaps.push(g) });
    await until(sub, ["state"], () => sub.state === "waiting", "subscription waiting for the topic");
    let total = 0;
    for (let round = 0; round < 6; round++) {
      await srv.cmd({ cmd: "append", topic: "ticks", n: 25 });
      total += 25;
      if (client.socket) client.socket.terminate();
      await srv.cmd({ cmd: "append", topic: "ticks", n: 25 }); // during the cut or just after
      total += 25;
    }
    await subscriptionAt(sub, total);
    assert.deepEqual(gaps, []);
    checkSeqWindow(assert, sub.window, 0, total);
  });
}

test("a rolling window keeps the newest rows", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  await srv.cmd({ cmd: "append", topic: "w", n: 30 });
  const client = connect(srv.url, { encoding: "arrow" });
  t.after(() => client.close());
  const sub = client.subscribe("w", { window: 20 });
  await subscriptionAt(sub, 30);
  checkSeqWindow(assert, sub.window, 10, 30);
  for (let i = 0; i < 5; i++) await srv.cmd({ cmd: "append", topic: "w", n: 7 });
  await subscriptionAt(sub, 65);
  checkSeqWindow(assert, sub.window, 45, 65);
});
