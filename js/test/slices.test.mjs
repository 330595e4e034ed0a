// Snapshots and resumes sent in slices (docs/protocol.md §5.6): a `snapshot` then `append`s with
// contiguous offsets; the client's window holds every row once. One server for both encodings.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../dist/livestream.mjs";
import { checkSeqWindow, clientState, startServer, subscriptionAt } from "./helpers.mjs";

test("a snapshot in slices, then a resume in slices, hold every row once (json, arrow)", async (t) => {
  const srv = await startServer({ snapshot_slice_bytes: 4096 });
  t.after(() => srv.stop());
  for (const encoding of ["json", "arrow"]) {
    const topic = `big-${encoding}`;
    await srv.cmd({ cmd: "append", topic, n: 2000 });
    const client = connect(srv.url, { encoding, backoff: { baseMs: 3_600_000, capMs: 3_600_000 } });
    t.after(() => client.close());
    const updates = [];
    const gaps = [];
    const sub = client.subscribe(topic, { window: 100_000, onUpdate: (ev) => updates.push(ev), onGap: (g) => gaps.push(g) });
    await subscriptionAt(sub, 2000);
    assert.equal(updates[0].kind, "snapshot");
    assert.ok(updates.length > 3, `${encoding}: sent in slices (${updates.length} messages)`);
    assert.ok(updates.slice(1).every((u) => u.kind === "append"));
    checkSeqWindow(assert, sub.window, 0, 2000);
    // the rows a resume missed come in slices too
    client.socket.terminate();
    await clientState(client, "reconnecting");
    await srv.cmd({ cmd: "append", topic, n: 1500 });
    const before = updates.length;
    client.reconnectNow();
    await subscriptionAt(sub, 3500);
    const resumed = updates.slice(before);
    assert.ok(resumed.length > 1 && resumed.every((u) => u.kind === "append"), `${encoding}: resumed in slices`);
    assert.equal(resumed[0].offset, 2000);
    checkSeqWindow(assert, sub.window, 0, 3500);
    assert.deepEqual(gaps, []);
    client.close();
  }
});
