/**
 * Client-side state of a subscription: a rolling window of rows (append topics), a keyed table
 * (keyed topics) or a whole table (replace topics). Columnar, preallocated, no per-row objects.
 */

import { type Batch, type Column, emptyColumn, isNumericType } from "./columns.js";
import type { Field } from "./protocol.js";

const MIN_CAPACITY = 1024;

class Store {
  readonly names: string[];
  readonly types: string[];
  cols: Column[];
  cap: number;
  lo = 0;
  hi = 0;

  constructor(schema: Field[], capacity: number) {
    this.names = schema.map((f) => f.name);
    this.types = schema.map((f) => f.type);
    this.cap = capacity;
    this.cols = this.types.map((t) => emptyColumn(t, capacity));
  }

  get length(): number {
    return this.hi - this.lo;
  }

  /** Ensure room for `n` more rows at `hi`, keeping the last `keep` rows. */
  makeRoom(n: number, keep: number, maxCap: number): void {
    if (this.hi + n <= this.cap) return;
    const need = keep + n;
    let cap = this.cap;
    if (need > cap) cap = Math.min(Math.max(need, 2 * cap), Math.max(maxCap, need));
    const from = this.hi - keep;
    for (let c = 0; c < this.cols.length; c++) {
      const old = this.cols[c];
      if (cap !== this.cap) {
        const fresh = emptyColumn(this.types[c], cap);
        copyInto(fresh, 0, old, from, this.hi);
        this.cols[c] = fresh;
      } else {
        copyWithin(old, from, this.hi);
      }
    }
    this.cap = cap;
    this.lo = 0;
    this.hi = keep;
  }

  write(at: number, b: Batch, from = 0, to = b.length): void {
    for (let c = 0; c < this.names.length; c++) {
      const src = b.columns[this.names[c]];
      if (src === undefined) throw new Error(`column ${JSON.stringify(this.names[c])} missing from an update`);
      copyInto(this.cols[c], at, src, from, to);
    }
  }

  setRow(pos: number, b: Batch, i: number): void {
    for (let c = 0; c < this.names.length; c++) {
      (this.cols[c] as { [k: number]: unknown })[pos] = (b.columns[this.names[c]] as { [k: number]: unknown })[i];
    }
  }

  toBatch(): Batch {
    const columns: Record<string, Column> = {};
    for (let c = 0; c < this.names.length; c++) columns[this.names[c]] = this.cols[c].slice(this.lo, this.hi);
    return { columns, length: this.length };
  }

  value(c: number, i: number): unknown {
    return (this.cols[c] as { [k: number]: unknown })[this.lo + i];
  }
}

function copyInto(dst: Column, at: number, src: Column, from: number, to: number): void {
  if (dst instanceof Float64Array) {
    if (src instanceof Float64Array) dst.set(src.subarray(from, to), at);
    else for (let i = from; i < to; i++) dst[at + i - from] = Number(src[i]);
  } else {
    for (let i = from; i < to; i++) dst[at + i - from] = src[i];
  }
}

function copyWithin(col: Column, from: number, to: number): void {
  if (col instanceof Float64Array) col.copyWithin(0, from, to);
  else {
    for (let i = from; i < to; i++) col[i - from] = col[i];
    for (let i = to - from; i < to; i++) col[i] = undefined; // release references
  }
}

/** The last `maxRows` rows of an append topic, with their offsets. */
export class RollingWindow {
  readonly schema: Field[];
  readonly maxRows: number;
  private store: Store;
  /** Offset the next appended row will get. */
  endOffset: number;

  constructor(schema: Field[], maxRows: number = Infinity, startOffset = 0) {
    if (!(maxRows >= 1)) throw new Error("window must be at least 1 row");
    this.schema = schema;
    this.maxRows = maxRows;
    this.store = new Store(schema, Math.min(MIN_CAPACITY, isFinite(maxRows) ? 2 * maxRows : MIN_CAPACITY));
    this.endOffset = startOffset;
  }

  get length(): number {
    return this.store.length;
  }

  get startOffset(): number {
    return this.endOffset - this.length;
  }

  append(b: Batch): void {
    const n = b.length;
    if (n === 0) return;
    const s = this.store;
    const max = this.maxRows;
    if (n >= max) {
      s.makeRoom(max, 0, max);
      s.lo = 0;
      s.hi = 0;
      s.write(0, b, n - max, n);
      s.hi = max;
      this.endOffset += n;
      return;
    }
    const keep = Math.min(s.length, max - n);
    s.makeRoom(n, keep, isFinite(max) ? 2 * max : Infinity);
    s.write(s.hi, b);
    s.hi += n;
    if (s.length > max) s.lo = s.hi - max;
    this.endOffset += n;
  }

  reset(startOffset: number): void {
    this.store.lo = this.store.hi = 0;
    this.endOffset = startOffset;
  }

  toBatch(): Batch {
    return this.store.toBatch();
  }
}

function keyString(values: unknown[]): unknown {
  return values.length === 1 ? values[0] : JSON.stringify(values);
}

/** The current row of every key of a keyed topic, in first-seen order. */
export class KeyedTable {
  readonly schema: Field[];
  readonly key: string[];
  private store: Store;
  private pos = new Map<unknown, number>();
  private keyIdx: number[];

  constructor(schema: Field[], key: string[]) {
    if (key.length === 0) throw new Error("a keyed table needs key columns");
    this.schema = schema;
    this.key = key;
    const names = schema.map((f) => f.name);
    this.keyIdx = key.map((k) => {
      const i = names.indexOf(k);
      if (i < 0) throw new Error(`key column ${JSON.stringify(k)} is not in the schema`);
      return i;
    });
    this.store = new Store(schema, MIN_CAPACITY);
  }

  get length(): number {
    return this.store.length;
  }

  /**
   * Apply upserts in order (the last row of a key wins). Returns, for each row of `b`, the
   * position of its key in the table after the update.
   */
  upsert(b: Batch): number[] {
    const keyCols = this.key.map((k) => b.columns[k]);
    const positions = new Array<number>(b.length);
    const s = this.store;
    for (let i = 0; i < b.length; i++) {
      const k = keyString(keyCols.map((c) => normKey(c[i])));
      let p = this.pos.get(k);
      if (p === undefined) {
        p = s.length;
        s.makeRoom(1, s.length, Infinity);
        s.hi += 1;
        this.pos.set(k, p);
      }
      s.setRow(s.lo + p, b, i);
      positions[i] = p;
    }
    return positions;
  }

  toBatch(): Batch {
    return this.store.toBatch();
  }
}

function normKey(v: unknown): unknown {
  return typeof v === "number" && Number.isNaN(v) ? "NaN" : v;
}

export { isNumericType };
