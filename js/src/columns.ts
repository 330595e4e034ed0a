/**
 * Decoding rows into columnar batches: JSON columns (docs/protocol.md §6.2) and Arrow IPC streams
 * (§6.3). Pure.
 *
 * Column representation handed to applications (suitable for Bokeh `source.stream`):
 *
 * - every integer and float type (nullable or not): `Float64Array`, missing values as NaN
 *   (64-bit integers above 2^53 lose precision);
 * - datetimes: `Float64Array` of milliseconds since 1970-01-01T00:00:00Z (NaN for NaT);
 * - `bool` / `boolean`: `Array<boolean | null>`;
 * - `string` / `category`: `Array<string | null>`.
 */

import { tableFromIPC, Type, type Data, type DataType, type Vector } from "apache-arrow";
import type { Field } from "./protocol.js";

export type Column = Float64Array | Array<unknown>;

/** A columnar table: one array per column, all of `length` entries. */
export interface Batch {
  columns: Record<string, Column>;
  length: number;
}

const DATETIME_RE = /^datetime64\[(s|ms|us|ns)(?:, (.+))?\]$/;

/** A count of `unit`s since the epoch as milliseconds (division, not multiplication by 1e-6). */
function toMs(v: number, unit: string | number): number {
  switch (unit) {
    case "s": case 0: return v * 1000;
    case "ms": case 1: return v;
    case "us": case 2: return v / 1000;
    default: return v / 1e6;
  }
}

/** True when a logical type is carried as a Float64Array (numbers and datetimes). */
export function isNumericType(t: string): boolean {
  return t !== "bool" && t !== "boolean" && t !== "string" && t !== "category";
}

export function emptyColumn(t: string, n = 0): Column {
  return isNumericType(t) ? new Float64Array(n) : new Array(n);
}

export function emptyBatch(schema: Field[]): Batch {
  const columns: Record<string, Column> = {};
  for (const f of schema) columns[f.name] = emptyColumn(f.type);
  return { columns, length: 0 };
}

/** Rows `[start, end)` of a batch (copies). */
export function sliceBatch(b: Batch, start: number, end = b.length): Batch {
  const columns: Record<string, Column> = {};
  for (const [name, col] of Object.entries(b.columns)) columns[name] = col.slice(start, end);
  return { columns, length: Math.max(0, Math.min(end, b.length) - start) };
}

function floatValue(v: unknown): number {
  if (v === null || v === undefined) return NaN;
  if (typeof v === "number") return v;
  if (v === "Infinity") return Infinity;
  if (v === "-Infinity") return -Infinity;
  if (v === "NaN") return NaN;
  if (typeof v === "string") return Number(v);
  return NaN;
}

/** Decode one JSON column of logical type `t`. */
export function decodeJsonColumn(values: unknown[], t: string): Column {
  const n = values.length;
  const m = DATETIME_RE.exec(t);
  if (m) {
    const unit = m[1];
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      out[i] = typeof v === "number" ? toMs(v, unit) : typeof v === "string" ? Date.parse(v) : NaN;
    }
    return out;
  }
  if (isNumericType(t)) {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = floatValue(values[i]);
    return out;
  }
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = values[i] === undefined ? null : values[i];
  return out;
}

/** Decode the `columns` of a JSON data message with the topic's schema. */
export function decodeJsonColumns(columns: Record<string, unknown[]> | undefined, schema: Field[], rows: number): Batch {
  const out: Record<string, Column> = {};
  let length = rows;
  for (const f of schema) {
    const vals = columns?.[f.name];
    if (!Array.isArray(vals)) throw new Error(`column ${JSON.stringify(f.name)} is missing from the message`);
    out[f.name] = decodeJsonColumn(vals, f.type);
    length = vals.length;
  }
  return { columns: out, length };
}

// -- Arrow ---------------------------------------------------------------------------------

const TWO32 = 4294967296;

function isValid(bitmap: Uint8Array | null | undefined, offset: number, i: number): boolean {
  if (!bitmap || bitmap.length === 0) return true;
  const j = offset + i;
  return ((bitmap[j >> 3] >> (j & 7)) & 1) === 1;
}

/** 64-bit integers of a Data chunk as doubles, via their 32-bit halves (no BigInt per value). */
function int64Chunk(values: ArrayLike<unknown> & { buffer: ArrayBufferLike; byteOffset: number }, length: number, signed: boolean, out: Float64Array, at: number, unit: number | null): void {
  const words = new Uint32Array(values.buffer, values.byteOffset, length * 2);
  for (let i = 0; i < length; i++) {
    const lo = words[2 * i];
    const hiRaw = words[2 * i + 1];
    const hi = signed ? hiRaw | 0 : hiRaw;
    const v = hi * TWO32 + lo;
    out[at + i] = unit === null ? v : toMs(v, unit);
  }
}

/** Convert one Arrow column (all chunks) to the client's column representation. */
export function arrowColumn(vec: Vector): Column {
  const type = vec.type as DataType;
  const n = vec.length;
  const typeId = type.typeId;
  const numeric = typeId === Type.Int || typeId === Type.Float || typeId === Type.Timestamp || typeId === Type.Date ||
    typeId === Type.Decimal;
  if (numeric && typeId !== Type.Decimal) {
    const out = new Float64Array(n);
    let at = 0;
    for (const data of vec.data as Data[]) {
      const len = data.length;
      const t = data.type as DataType & { bitWidth?: number; isSigned?: boolean; unit?: number };
      const values = data.values as unknown as ArrayLike<number | bigint> & { buffer: ArrayBufferLike; byteOffset: number; BYTES_PER_ELEMENT: number };
      if (typeId === Type.Timestamp || (typeId === Type.Int && t.bitWidth === 64) || typeId === Type.Date) {
        // Arrow TimeUnit: SECOND 0, MILLISECOND 1, MICROSECOND 2, NANOSECOND 3; Date: DAY 0, MILLISECOND 1
        const unit = typeId === Type.Timestamp ? (t.unit ?? 1) : typeId === Type.Date ? 1 : null;
        if (typeId === Type.Date && t.unit === 0) {
          for (let i = 0; i < len; i++) out[at + i] = Number(values[i]) * 86400000;
        } else {
          // 8-byte values (BigInt64Array), or the stride-2 Int32 representation of them
          int64Chunk(values, len, typeId !== Type.Int || t.isSigned !== false, out, at, unit);
        }
      } else {
        for (let i = 0; i < len; i++) out[at + i] = Number(values[i]);
      }
      if (data.nullCount > 0) {
        for (let i = 0; i < len; i++) if (!isValid(data.nullBitmap, data.offset, i)) out[at + i] = NaN;
      }
      at += len;
    }
    return out;
  }
  if (typeId === Type.Bool) {
    const out = new Array<boolean | null>(n);
    let at = 0;
    for (const data of vec.data as Data[]) {
      const bits = data.values as unknown as Uint8Array;
      for (let i = 0; i < data.length; i++) {
        const j = data.offset + i;
        out[at + i] = isValid(data.nullBitmap, data.offset, i) ? ((bits[j >> 3] >> (j & 7)) & 1) === 1 : null;
      }
      at += data.length;
    }
    return out;
  }
  // strings, dictionaries (categories) and anything else: the library's own values
  const arr = vec.toArray() as ArrayLike<unknown>;
  const out = new Array<unknown>(n);
  for (let i = 0; i < n; i++) {
    const v = arr[i];
    out[i] = v === undefined ? null : typeof v === "bigint" ? Number(v) : v;
  }
  return out;
}

/** Decode an Arrow IPC stream (the payload of a binary data frame) into a batch. */
export function decodeArrow(payload: Uint8Array, schema: Field[] | null): Batch {
  if (payload.byteLength === 0) return schema ? emptyBatch(schema) : { columns: {}, length: 0 };
  const table = tableFromIPC(payload);
  const columns: Record<string, Column> = {};
  const names = schema ? schema.map((f) => f.name) : table.schema.fields.map((f) => f.name);
  for (const name of names) {
    const vec = table.getChild(name);
    if (vec === null) {
      if (schema) throw new Error(`column ${JSON.stringify(name)} is missing from the Arrow payload`);
      continue;
    }
    columns[name] = vec.length === 0 ? emptyColumn(schema?.find((f) => f.name === name)?.type ?? "float64") : arrowColumn(vec);
  }
  return { columns, length: table.numRows };
}

/** The logical type names of a schema, as a lookup. */
export function typeMap(schema: Field[]): Map<string, string> {
  return new Map(schema.map((f) => [f.name, f.type]));
}
