// The committed browser bundle (livestream/static/livestream.js) works as a classic script: it
// defines the global `Livestream` and uses the platform's WebSocket (here `ws`, standing in for
// the browser's) — no `ws` import inside.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import { WebSocket } from "ws";
import { checkSeqWindow, startServer, subscriptionAt } from "./helpers.mjs";

const bundle = fileURLToPath(new URL("../../livestream/static/livestream.js", import.meta.url));

test("the browser IIFE bundle subscribes with a global WebSocket, in both encodings", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  await srv.cmd({ cmd: "append", topic: "t", n: 20 });
  const sandbox = {
    WebSocket, TextDecoder, TextEncoder, setTimeout, clearTimeout, setInterval, clearInterval,
    performance, console, URL, queueMicrotask,
  };
  sandbox.globalThis = sandbox;
  vm.createContext(sandbox);
  vm.runInContext(readFileSync(bundle, "utf8"), sandbox, { filename: "livestream.js" });
  const Livestream = sandbox.Livestream;
  assert.equal(typeof Livestream.connect, "function");
  for (const encoding of ["json", "arrow"]) {
    const client = Livestream.connect(srv.url, { encoding });
    t.after(() => client.close());
    const sub = client.subscribe("t", { window: 1000 });
    await subscriptionAt(sub, 20);
    checkSeqWindow(assert, sub.window, 0, 20);
  }
});
