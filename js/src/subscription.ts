/**
 * A subscription: the live state of one topic on a client connection, with the resume and
 * dedupe rules of docs/protocol.md §10.
 */

import { type Batch, decodeArrow, decodeJsonColumns, emptyBatch, sliceBatch } from "./columns.js";
import { Emitter } from "./emitter.js";
import type { DataHeader, Field, GapMessage, SubscribedMessage, TopicMode, DataKind } from "./protocol.js";
import { KeyedTable, RollingWindow } from "./window.js";

export type SubscriptionState = "connecting" | "waiting" | "live" | "closed";

/** What `onUpdate` / the `update` event receives. */
export interface UpdateEvent {
  subscription: Subscription;
  /** snapshot, append, upsert or replace */
  kind: DataKind;
  /** The rows of this update only (already trimmed of rows held before). */
  batch: Batch;
  /**
   * True when the whole state was replaced (snapshot, replace): redraw from `subscription.window`
   * instead of streaming `batch`.
   */
  reset: boolean;
  epoch: string;
  /** Offset of the first row of `batch` (append/upsert); the message's offset otherwise. */
  offset: number;
  /** The resume point after this update. */
  next: number;
  /** Server time of the update (ms since the epoch). */
  ts: number;
  /** Upserts: for each row of `batch`, its row index in `subscription.window` after the update. */
  positions?: number[];
}

export interface SubscribeOptions {
  /** Rows kept for append topics (default 100,000; `Infinity` keeps all). */
  window?: number;
  /** Token for this subscription (else the connection's). */
  token?: string;
  onUpdate?: (ev: UpdateEvent) => void;
  onGap?: (gap: GapMessage, sub: Subscription) => void;
  onError?: (err: Error & { code?: string }, sub: Subscription) => void;
}

export interface SubscriptionEvents {
  update: (ev: UpdateEvent) => void;
  gap: (gap: GapMessage, sub: Subscription) => void;
  error: (err: Error & { code?: string }, sub: Subscription) => void;
  state: (state: SubscriptionState, sub: Subscription) => void;
}

/** Counters of a subscription. */
export interface SubscriptionStats {
  messages: number;
  rows: number;
  /** Rows received that were already held (dropped by offset). */
  duplicates: number;
  gaps: number;
  resyncs: number;
  errors: number;
}

/** The connection-side hooks a subscription needs. */
export interface SubscriptionHost {
  _sendSubscribe(sub: Subscription): void;
  _sendUnsubscribe(sub: Subscription): void;
}

export const DEFAULT_WINDOW = 100_000;

export class Subscription extends Emitter<SubscriptionEvents> {
  readonly topic: string;
  readonly maxRows: number;
  readonly token: string | undefined;
  mode: TopicMode | null = null;
  key: string[] = [];
  schema: Field[] | null = null;
  /** The epoch of the rows held, or null before the first data message. */
  epoch: string | null = null;
  /** The next offset expected: the resume point (`next` of the last applied message). */
  offset: number | null = null;
  state: SubscriptionState = "connecting";
  readonly stats: SubscriptionStats = { messages: 0, rows: 0, duplicates: 0, gaps: 0, resyncs: 0, errors: 0 };
  /** Every gap event received (most recent last, at most 100). */
  readonly gaps: GapMessage[] = [];

  private host: SubscriptionHost;
  private rolling: RollingWindow | null = null;
  private keyed: KeyedTable | null = null;
  private table: Batch | null = null; // replace topics, and snapshots of a topic of unknown mode
  private tableStart = 0;
  private gapPending = false;
  private resyncing = false;
  private version = 0;
  private cached: { version: number; view: Batch } | null = null;

  constructor(host: SubscriptionHost, topic: string, opts: SubscribeOptions = {}) {
    super();
    this.host = host;
    this.topic = topic;
    const w = opts.window ?? DEFAULT_WINDOW;
    if (!(w >= 1)) throw new Error("window must be a positive number of rows (or Infinity)");
    this.maxRows = w;
    this.token = opts.token;
    if (opts.onUpdate) this.on("update", opts.onUpdate);
    if (opts.onGap) this.on("gap", opts.onGap);
    if (opts.onError) this.on("error", opts.onError);
  }

  /** The current state as columns: the rolling window, keyed table or replaced table. */
  get window(): Batch {
    if (this.cached && this.cached.version === this.version) return this.cached.view;
    let view: Batch;
    if (this.keyed) view = this.keyed.toBatch();
    else if (this.rolling) view = this.rolling.toBatch();
    else if (this.table) view = sliceBatch(this.table, 0);
    else view = this.schema ? emptyBatch(this.schema) : { columns: {}, length: 0 };
    this.cached = { version: this.version, view };
    return view;
  }

  /** Rows currently held. */
  get length(): number {
    if (this.keyed) return this.keyed.length;
    if (this.rolling) return this.rolling.length;
    return this.table ? this.table.length : 0;
  }

  get closed(): boolean {
    return this.state === "closed";
  }

  /** The (epoch, offset) to resume from, or null when nothing was received yet. */
  resumePoint(): { epoch: string; offset: number } | null {
    return this.epoch !== null && this.offset !== null ? { epoch: this.epoch, offset: this.offset } : null;
  }

  /** Stop receiving; releases the state. */
  close(): void {
    if (this.state === "closed") return;
    this.host._sendUnsubscribe(this);
    this._markClosed();
  }

  // -- fed by the client ------------------------------------------------------------------

  _setState(state: SubscriptionState): void {
    if (this.state === state || this.state === "closed") return;
    this.state = state;
    this.emit("state", state, this);
  }

  _markClosed(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.rolling = this.keyed = null;
    this.table = null;
    this.version++;
    this.emit("state", "closed", this);
  }

  _subscribed(msg: SubscribedMessage): void {
    this.resyncing = false;
    if (msg.mode) this.mode = msg.mode;
    if (msg.mode === "keyed" && msg.key?.length) this.key = msg.key.slice();
    if (msg.schema) this.schema = msg.schema;
    this.adoptMode();
    this._setState(msg.exists && msg.schema ? "live" : "waiting");
  }

  _gap(msg: GapMessage): void {
    this.gapPending = true;
    this.recordGap(msg);
  }

  _error(err: Error & { code?: string }): void {
    this.stats.errors++;
    this.emit("error", err, this);
  }

  /** A data message; `payload` is the Arrow IPC stream of a binary frame, else null (JSON). */
  _data(msg: DataHeader, payload: Uint8Array | null): void {
    if (this.state === "closed") return;
    const kind = msg.type;
    this.stats.messages++;
    if (kind === "snapshot") return this.applySnapshot(msg, payload);
    if (kind === "replace") {
      this.mode = "replace";
      const batch = this.decode(msg, payload);
      this.table = batch;
      this.tableStart = msg.offset;
      this.rolling = this.keyed = null;
      this.commit(msg, batch, true, msg.offset);
      return;
    }
    // append / upsert
    if (this.mode === null) this.mode = kind === "upsert" ? "keyed" : "append";
    if (kind === "upsert" && this.key.length === 0) {
      // We do not know the key (servers send it in `subscribed`, docs/protocol.md §5.4; an older
      // server may not): resubscribe from our resume point; the reply carries mode and key.
      return this.resync();
    }
    const held = this.offset;
    if (held === null || msg.epoch !== this.epoch) return this.resync();
    if (msg.next <= held) {
      this.stats.duplicates += msg.rows;
      return;
    }
    if (msg.offset > held) return this.resync(); // a hole: never produced by a conforming server
    let batch = this.decode(msg, payload);
    let first = msg.offset;
    if (msg.offset < held) {
      this.stats.duplicates += held - msg.offset;
      batch = sliceBatch(batch, held - msg.offset);
      first = held;
    }
    this.adoptMode();
    let positions: number[] | undefined;
    if (this.keyed) positions = this.keyed.upsert(batch);
    else {
      if (!this.rolling) this.rolling = new RollingWindow(this.schema ?? [], this.maxRows, first);
      this.rolling.append(batch);
    }
    this.commit(msg, batch, false, first, positions);
  }

  // -- internals --------------------------------------------------------------------------

  private applySnapshot(msg: DataHeader, payload: Uint8Array | null): void {
    const batch = this.decode(msg, payload);
    if (!this.gapPending && this.epoch !== null && msg.epoch !== this.epoch && this.offset !== null) {
      // History was lost without a gap message (docs/protocol.md §10: a snapshot of another epoch
      // means the same as a gap): say so.
      this.recordGap({
        type: "gap", topic: this.topic, epoch: this.epoch, offset: this.offset, new_epoch: msg.epoch,
        until: msg.offset, reason: "epoch", synthetic: true,
      });
    }
    this.gapPending = false;
    this.rolling = this.keyed = null;
    this.table = batch;
    this.tableStart = msg.offset;
    this.adoptMode();
    this.commit(msg, batch, true, msg.offset);
  }

  /** Move a held table into the storage of the (now known) mode. */
  private adoptMode(): void {
    if (!this.schema || this.table === null) return;
    if (this.mode === "keyed" && this.key.length) {
      const t = new KeyedTable(this.schema, this.key);
      t.upsert(this.table);
      this.keyed = t;
      this.table = null;
      this.version++;
    } else if (this.mode === "append") {
      const w = new RollingWindow(this.schema, this.maxRows, this.tableStart);
      w.append(this.table);
      this.rolling = w;
      this.table = null;
      this.version++;
    }
  }

  private decode(msg: DataHeader, payload: Uint8Array | null): Batch {
    if (msg.schema) this.schema = msg.schema;
    const schema = this.schema;
    if (payload !== null) return decodeArrow(payload, schema);
    if (!schema) throw new Error(`rows of ${this.topic} arrived before its schema`);
    return decodeJsonColumns(msg.columns, schema, msg.rows);
  }

  private commit(msg: DataHeader, batch: Batch, reset: boolean, first: number, positions?: number[]): void {
    this.epoch = msg.epoch;
    this.offset = msg.next;
    this.version++;
    this.stats.rows += batch.length;
    if (this.state !== "live") this._setState("live");
    const ev: UpdateEvent = {
      subscription: this, kind: msg.type, batch, reset, epoch: msg.epoch, offset: first,
      next: msg.next, ts: msg.ts,
    };
    if (positions) ev.positions = positions;
    this.emit("update", ev);
  }

  private recordGap(msg: GapMessage): void {
    this.gaps.push(msg);
    if (this.gaps.length > 100) this.gaps.shift();
    this.stats.gaps++;
    this.emit("gap", msg, this);
  }

  private resync(): void {
    if (this.resyncing) return;
    this.resyncing = true;
    this.stats.resyncs++;
    this.host._sendSubscribe(this);
  }
}
