/**
 * Feeding a Bokeh ColumnDataSource from a subscription, coalesced to at most one change per
 * animation frame (docs: "Coalesce at the view").
 */

import type { Batch } from "./columns.js";
import type { Subscription, UpdateEvent } from "./subscription.js";

/** The part of a BokehJS `ColumnDataSource` this helper uses. */
export interface ColumnDataSourceLike {
  data: Record<string, unknown>;
  stream(data: Record<string, ArrayLike<unknown>>, rollover?: number): void;
}

export interface BindOptions {
  /** Keep at most this many rows in the source (default: the subscription's window). */
  rollover?: number;
  /** Schedule a flush (default: requestAnimationFrame, else setTimeout 50 ms). */
  schedule?: (fn: () => void) => void;
}

function toPlain(b: Batch): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const [k, v] of Object.entries(b.columns)) out[k] = Array.from(v as ArrayLike<unknown>);
  return out;
}

/**
 * Keep `source` equal to the subscription's window: appends are streamed with rollover, anything
 * else (snapshots, replaces, upserts) resets `source.data` from the window. Returns an unbind
 * function.
 */
export function bindColumnDataSource(sub: Subscription, source: ColumnDataSourceLike, opts: BindOptions = {}): () => void {
  const rollover = opts.rollover ?? (isFinite(sub.maxRows) ? sub.maxRows : undefined);
  const schedule = opts.schedule ??
    ((fn: () => void) => (typeof requestAnimationFrame === "function" ? requestAnimationFrame(() => fn()) : setTimeout(fn, 50)));
  let pending: Batch[] = [];
  let reset = sub.length > 0;
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (reset) {
      source.data = toPlain(sub.window);
    } else if (pending.length) {
      const names = Object.keys(pending[0].columns);
      const merged: Record<string, unknown[]> = {};
      for (const n of names) merged[n] = pending.flatMap((b) => Array.from(b.columns[n] as ArrayLike<unknown>));
      source.stream(merged, rollover);
    }
    pending = [];
    reset = false;
  };
  const off = sub.on("update", (ev: UpdateEvent) => {
    if (ev.reset || ev.kind !== "append") reset = true;
    else if (!reset) pending.push(ev.batch);
    if (!scheduled) {
      scheduled = true;
      schedule(flush);
    }
  });
  if (reset) {
    scheduled = true;
    schedule(flush);
  }
  return off;
}
