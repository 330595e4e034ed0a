/**
 * Live Bokeh DataTables driven from the browser (static pages and direct mode): the latest `rows`
 * rows of a topic, newest first, or a keyed/replaced topic's whole table, redrawn at most `fps`
 * times a second by replacing the table source's data.
 */

import type { Client } from "./client.js";
import type { Column } from "./columns.js";
import type { Field } from "./protocol.js";
import type { Subscription } from "./subscription.js";
import { refusedHint, tzOffsetMs, type AttachOptions, type SourceLike } from "./bokehChart.js";

export interface TableSpec {
  topic: string;
  /** Rows shown (append topics: the latest, newest first). Default 20. */
  rows?: number;
  /** Columns shown (default: every column of the topic). */
  columns?: string[] | null;
  /** Redraws a second at most (default 4). */
  fps?: number;
  /** Rows the subscription keeps (default: `rows`). */
  window?: number;
}

export interface TableModels {
  source: SourceLike;
  /** A Div whose text becomes "topic · N rows" (and the connection's trouble), as in the app. */
  caption?: { text: string } | null;
}

export interface AttachedTable {
  readonly spec: TableSpec;
  readonly subscription: Subscription;
  readonly stats: { frames: number; rows: number };
  flush(): void;
  detach(): void;
}

const TZ_RE = /^datetime64\[\w+, (.+)\]$/;

function pick(col: Column, idx: number[], type: string | undefined): unknown[] | Float64Array {
  if (col instanceof Float64Array) {
    const out = Float64Array.from(idx, (i) => col[i]);
    const tz = type ? TZ_RE.exec(type)?.[1] : undefined;
    if (tz && tz !== "UTC") for (let i = 0; i < out.length; i++) if (out[i] === out[i]) out[i] += tzOffsetMs(tz, out[i]);
    return out;
  }
  return idx.map((i) => (col[i] === undefined ? null : col[i]));
}

/** Keep `models.source` equal to the table view of `spec.topic`; returns a handle. */
export function attachTable(client: Client, spec: TableSpec, models: TableModels, opts: AttachOptions = {}): AttachedTable {
  const rows = Math.max(1, Number(spec.rows ?? 20));
  const fps = Number(spec.fps ?? 4);
  const interval = fps > 0 ? 1000 / fps : 250;
  const setTimer = opts.setTimer ?? ((fn: () => void, ms: number) => setTimeout(fn, ms));
  const clearTimer = opts.clearTimer ?? ((h: unknown) => clearTimeout(h as ReturnType<typeof setTimeout>));
  const now = opts.now ?? (() => (typeof performance !== "undefined" ? performance.now() : Date.now()));
  const sub = client.subscribe(spec.topic, { window: Math.max(rows, Number(spec.window ?? rows)) });
  const stats = { frames: 0, rows: 0 };
  let dirty = sub.length > 0;
  let timer: unknown = null;
  let lastFrame = -Infinity;
  let detached = false;

  function flush(): void {
    if (detached) return;
    if (timer !== null) clearTimer(timer);
    timer = null;
    lastFrame = now();
    if (!dirty || sub.closed) return;
    dirty = false;
    stats.frames++;
    const win = sub.window;
    const keyed = sub.key.length > 0 || sub.mode === "keyed" || sub.mode === "replace";
    let idx: number[];
    if (keyed) idx = Array.from({ length: Math.min(win.length, Math.max(rows, win.length)) }, (_, i) => i);
    else {
      const n = Math.min(rows, win.length);
      idx = Array.from({ length: n }, (_, i) => win.length - 1 - i);
    }
    const types: Record<string, string> = {};
    for (const f of (sub.schema ?? []) as Field[]) types[f.name] = f.type;
    const names = spec.columns?.length ? spec.columns : Object.keys(win.columns);
    const data: Record<string, unknown> = {};
    for (const name of names) if (win.columns[name] !== undefined) data[name] = pick(win.columns[name], idx, types[name]);
    models.source.data = data;
    caption();
  }

  function caption(): void {
    const el = models.caption;
    if (!el) return;
    const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    let text = `<b>${esc(spec.topic)}</b> · ${sub.length.toLocaleString("en-US")} rows`;
    const cs = client.state;
    if (sub.closed || cs === "closed") text += " · closed";
    else if (cs === "reconnecting") text += ` · ${refusedHint(client) ?? "reconnecting"}`;
    if (el.text !== text) el.text = text;
  }

  function schedule(): void {
    if (timer !== null || detached) return;
    timer = setTimer(() => {
      timer = null;
      flush();
    }, Math.max(0, lastFrame + interval - now()));
  }

  const off = sub.on("update", (ev) => {
    stats.rows += ev.batch.length;
    dirty = true;
    schedule();
  });
  if (dirty) schedule();
  const offState = client.on("state", () => caption());
  caption();
  return {
    spec,
    subscription: sub,
    stats,
    flush,
    detach(): void {
      detached = true;
      if (timer !== null) clearTimer(timer);
      off();
      offState();
    },
  };
}
