// Test helpers: a real livestream server in a Python subprocess, and waiting without sleeps.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const PYTHON = process.env.LIVESTREAM_PYTHON || process.env.PYTHON || "python3";
const DEADLINE_MS = 30_000;

/** Start test/server.py with ServerConfig `options`; resolves once it serves. */
export async function startServer(options = {}) {
  const proc = spawn(PYTHON, [join(here, "server.py"), JSON.stringify(options)], {
    stdio: ["pipe", "pipe", "inherit"],
    cwd: join(here, "..", ".."),
  });
  const lines = createInterface({ input: proc.stdout });
  const waiting = new Map();
  let first;
  const ready = new Promise((resolve, reject) => {
    first = resolve;
    proc.once("exit", (code) => reject(new Error(`test server exited with ${code} before serving`)));
    proc.once("error", reject);
  });
  lines.on("line", (line) => {
    const msg = JSON.parse(line);
    if (first) {
      const f = first;
      first = null;
      f(msg);
      return;
    }
    const w = waiting.get(msg.id);
    if (w) {
      waiting.delete(msg.id);
      if (msg.error) w.reject(new Error(`server command failed: ${msg.error}`));
      else w.resolve(msg);
    }
  });
  const info = await withDeadline(ready, "the test server to start");
  let ids = 1;
  const server = {
    url: info.url,
    http: info.http,
    port: Number(new URL(info.http).port),
    proc,
    /** Send a command to the server; resolves with its reply. */
    cmd(obj) {
      const id = ids++;
      const p = new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
      proc.stdin.write(JSON.stringify({ ...obj, id }) + "\n");
      return withDeadline(p, `server command ${obj.cmd}`);
    },
    /** Stop the server and wait for the process to exit. */
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((resolve) => proc.once("exit", resolve));
      proc.stdin.end(JSON.stringify({ cmd: "quit" }) + "\n");
      try {
        await withDeadline(exited, "the test server to exit");
      } catch {
        proc.kill("SIGKILL");
        await exited;
      }
    },
  };
  return server;
}

/** Reject if `promise` has not settled by the deadline (a failure, not a synchronisation). */
export function withDeadline(promise, what, ms = DEADLINE_MS) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** Resolve when `cond()` is true, re-checking whenever `emitter` emits `events`; fail at the deadline. */
export function until(emitter, events, cond, what) {
  if (cond()) return Promise.resolve();
  const offs = [];
  const p = new Promise((resolve) => {
    for (const ev of events) {
      offs.push(
        emitter.on(ev, () => {
          if (cond()) resolve();
        }),
      );
    }
  });
  return withDeadline(p, what).finally(() => offs.forEach((off) => off()));
}

/** Resolve when the client reaches `state`. */
export function clientState(client, state) {
  return until(client, ["state"], () => client.state === state, `client state ${state}`);
}

/** Resolve when the subscription's resume point reaches `next`. */
export function subscriptionAt(sub, next) {
  return until(sub, ["update"], () => sub.offset === next, `subscription ${sub.topic} at offset ${next} (is ${sub.offset})`);
}

/** Expected `ts` in ms of sequence number i (test/server.py: 2024-01-01 + i ms + i ns). */
export function expectedTs(i) {
  return Number(1704067200000000000n + BigInt(i) * 1000001n) / 1e6;
}

/** Check that a window holds exactly seq from..to-1, with every column's values. */
export function checkSeqWindow(assert, win, from, to) {
  assert.equal(win.length, to - from, "window length");
  const c = win.columns;
  for (let k = 0; k < win.length; k++) {
    const i = from + k;
    assert.equal(c.seq[k], i, `seq at row ${k}`);
    assert.equal(c.ts[k], expectedTs(i), `ts of seq ${i}`);
    if (i % 7 === 3) assert.ok(Number.isNaN(c.price[k]), `price of seq ${i} is NaN`);
    else assert.equal(c.price[k], 100 + i / 8, `price of seq ${i}`);
    assert.equal(c.sym[k], ["a", "b", "c"][i % 3], `sym of seq ${i}`);
    assert.equal(c.note[k], i % 5 === 0 ? null : `n${i}`, `note of seq ${i}`);
  }
}
