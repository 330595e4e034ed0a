// A client that stops reading for a while gets the appends it missed merged into fewer
// frames (docs/protocol.md §3.3): every row once, in order, with every column's values.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../dist/livestream.mjs";
import { checkSeqWindow, startServer, subscriptionAt } from "./helpers.mjs";

test("arrow: appends merged while the client did not read arrive whole and in order", async (t) => {
  const srv = await startServer({ send_queue_bytes: 256 * 1024 * 1024 });
  t.after(() => srv.stop());
  await srv.cmd({ cmd: "append", topic: "t", n: 10, plain: true });
  const client = connect(srv.url, { encoding: "arrow" });
  t.after(() => client.close());
  const sub = client.subscribe("t", { window: 1_000_000 });
  await subscriptionAt(sub, 10);
  const before = sub.stats.messages;
  client.socket._socket.pause(); // stop reading: the server's queue for this client fills
  const appends = 300;
  for (let i = 0; i < appends; i++) await srv.cmd({ cmd: "append", topic: "t", n: 500, plain: true });
  client.socket._socket.resume();
  const total = 10 + appends * 500;
  await subscriptionAt(sub, total);
  checkSeqWindow(assert, sub.window, 0, total);
  assert.ok(sub.stats.messages - before < appends, `${sub.stats.messages - before} messages for ${appends} appends`);
  const metrics = await (await fetch(`${srv.http}/metrics`)).text();
  const merged = Number(/^livestream_appends_merged_total (\d+)/m.exec(metrics)[1]);
  assert.ok(merged > 0, "the server merged appends");
});
