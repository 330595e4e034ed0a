/**
 * Wire-level definitions of livestream protocol version 1 (docs/protocol.md).
 * Pure: no sockets, no timers.
 */

export const PROTOCOL_VERSION = 1;

export type Encoding = "json" | "arrow";
export type TopicMode = "append" | "keyed" | "replace";
export type DataKind = "snapshot" | "append" | "upsert" | "replace";
export type GapReason = "epoch" | "retention" | "slow_consumer" | "hole";

/** One column of a topic's schema: its name and logical type (docs/protocol.md §6.1). */
export interface Field {
  name: string;
  type: string;
}

/** WebSocket close codes the server uses (docs/protocol.md §7.2). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SLOW_CONSUMER: 4000,
  UNSUPPORTED_VERSION: 4001,
  TOO_MANY_ERRORS: 4002,
  UNAUTHORIZED: 4003,
} as const;

/** Error codes of `error` frames (docs/protocol.md §7.1). */
export const ERROR_CODES = [
  "bad_json",
  "bad_message",
  "unknown_type",
  "bad_frame",
  "bad_topic_name",
  "unknown_topic",
  "unauthorized",
  "schema_mismatch",
  "too_many_subscriptions",
  "too_many_rows",
  "limit_exceeded",
  "not_subscribed",
  "derived_topic",
  "derive_failed",
  "unsupported_version",
  "unsupported_encoding",
  "bad_resume",
  "internal",
  "too_many_topics",
] as const;

export interface WelcomeMessage {
  type: "welcome";
  v: number;
  server: string;
  session: string;
  encoding: Encoding;
  heartbeat: number;
  limits: Record<string, unknown>;
  /** When the connection's token expires (seconds since the epoch), or null/absent. */
  exp?: number | null;
}

/** The answer to `refresh`: the new token's expiry (seconds since the epoch), or null. */
export interface RefreshedMessage {
  type: "refreshed";
  exp: number | null;
  id?: string | number;
}

export interface SubscribedMessage {
  type: "subscribed";
  topic: string;
  id?: string | number;
  exists: boolean;
  mode: TopicMode | null;
  key: string[];
  schema: Field[] | null;
  epoch: string | null;
  offset?: number;
  next?: number;
  resumed: boolean;
}

export interface DataHeader {
  type: DataKind;
  topic: string;
  epoch: string;
  offset: number;
  next: number;
  rows: number;
  ts: number;
  schema?: Field[];
  categories?: Record<string, string[]>;
  columns?: Record<string, unknown[]>;
}

export interface GapMessage {
  type: "gap";
  topic: string;
  epoch: string | null;
  offset: number | null;
  new_epoch: string;
  until: number;
  reason: GapReason;
  /** Set by this client when it inferred the gap itself (never sent by the server). */
  synthetic?: boolean;
}

export interface AckMessage {
  type: "ack";
  topic: string;
  offset: number;
  next: number;
  rows: number;
  id?: string | number;
}

export interface ErrorMessage {
  type: "error";
  code: string;
  message: string;
  id?: string | number;
  topic?: string;
  column?: string;
}

export interface PongMessage {
  type: "pong";
  server_t: number;
  id?: string | number;
  t?: unknown;
}

export type ServerMessage =
  | WelcomeMessage
  | SubscribedMessage
  | DataHeader
  | GapMessage
  | AckMessage
  | ErrorMessage
  | PongMessage
  | { type: "unsubscribed"; topic: string; id?: string | number };

export const DATA_KINDS: ReadonlySet<string> = new Set(["snapshot", "append", "upsert", "replace"]);

/** Split a binary frame: 4-byte big-endian header length, JSON header, Arrow IPC stream. */
export function unpackBinary(frame: Uint8Array): { header: Record<string, unknown>; payload: Uint8Array } {
  if (frame.byteLength < 4) throw new Error("binary frame shorter than its 4-byte header length");
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const n = view.getUint32(0, false);
  if (n > frame.byteLength - 4) throw new Error("binary frame header length exceeds the frame");
  const text = new TextDecoder().decode(frame.subarray(4, 4 + n));
  const header = JSON.parse(text);
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new Error("binary frame header must be a JSON object");
  }
  return { header, payload: frame.subarray(4 + n) };
}

/** Build a binary frame from a header object and an Arrow IPC payload. */
export function packBinary(header: object, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(4 + h.byteLength + payload.byteLength);
  new DataView(out.buffer).setUint32(0, h.byteLength, false);
  out.set(h, 4);
  out.set(payload, 4 + h.byteLength);
  return out;
}

/**
 * Delay before reconnect attempt `attempt` (0-based), in ms: capped exponential backoff with
 * jitter, `min(cap, base·2^attempt) · (0.5 + 0.5·random)` (docs/protocol.md §10).
 */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const d = Math.min(capMs, baseMs * Math.pow(2, Math.min(attempt, 52)));
  return d * (0.5 + 0.5 * random());
}
