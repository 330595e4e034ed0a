// Tokens: refreshToken() renews the connection's token without reconnecting; a refused token
// is an error and changes nothing; the new token is the one a reconnect uses.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, RemoteError } from "../dist/livestream.mjs";
import { startServer, subscriptionAt, until } from "./helpers.mjs";

test("refreshToken sends refresh, keeps the connection, and is used on reconnect", async (t) => {
  const srv = await startServer({ subscribe_token: "sub-1", publish_token: "pub-2", admin_token: "adm-3" });
  t.after(() => srv.stop());
  await srv.cmd({ cmd: "append", topic: "trades", n: 10 });
  const client = connect(srv.url, { encoding: "json", token: "sub-1", backoff: { baseMs: 5, capMs: 50 } });
  t.after(() => client.close());
  const sub = client.subscribe("trades");
  await subscriptionAt(sub, 10);
  assert.equal(client.welcome.exp, null); // a static token does not expire
  await assert.rejects(client.publish("notes", { columns: { x: [1] } }),
    (err) => err instanceof RemoteError && err.code === "unauthorized");
  await assert.rejects(client.refreshToken("wrong"),
    (err) => err instanceof RemoteError && err.code === "unauthorized");
  const reply = await client.refreshToken("adm-3");
  assert.equal(reply.type, "refreshed");
  assert.equal(reply.exp, null);
  await srv.cmd({ cmd: "append", topic: "trades", n: 5 });
  await subscriptionAt(sub, 15);
  assert.equal(client.stats.reconnects, 0);
  // after a reconnect the refreshed (admin) token is the connection's: it may publish
  client.socket.terminate();
  await until(client, ["state"], () => client.stats.reconnects === 1 && client.state === "live", "the reconnect");
  const ack = await client.publish("notes", { columns: { x: [1, 2] } });
  assert.equal(ack.next, 2);
});
