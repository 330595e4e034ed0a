/**
 * The livestream client: one WebSocket connection to a livestream server, reconnecting by itself
 * and resuming every subscription by (epoch, offset) — docs/protocol.md.
 */

import { Emitter } from "./emitter.js";
import {
  type AckMessage,
  backoffDelay,
  CloseCode,
  DATA_KINDS,
  type DataHeader,
  type Encoding,
  type ErrorMessage,
  type Field,
  type GapMessage,
  type PongMessage,
  PROTOCOL_VERSION,
  type RefreshedMessage,
  type SubscribedMessage,
  unpackBinary,
  type WelcomeMessage,
} from "./protocol.js";
import { isNodeWs, resolveWebSocket, type SocketFactory, type SocketLike } from "./socket.js";
import { type SubscribeOptions, Subscription, type SubscriptionHost } from "./subscription.js";

export const VERSION = "0.1.0";

export type ClientState = "connecting" | "live" | "reconnecting" | "closed";

export interface ClientOptions {
  /** Wire encoding of data messages: "arrow" (default, exact 64-bit values) or "json". */
  encoding?: Encoding;
  /** Token sent in `hello` (and as `Authorization: Bearer` in Node). */
  token?: string;
  /** Reconnect after the connection drops (default true). */
  reconnect?: boolean;
  /** Backoff before reconnect attempts, ms: `min(capMs, baseMs·2^n)·(0.5+0.5·random)`. */
  backoff?: { baseMs?: number; capMs?: number };
  /** Give up a connection attempt after this many ms (default 10,000). */
  connectTimeoutMs?: number;
  /** A WebSocket constructor (default: the platform's, else the `ws` package). */
  WebSocket?: SocketFactory;
  /** Extra handshake headers (Node `ws` only; browsers cannot set them). */
  headers?: Record<string, string>;
  /** Largest incoming frame accepted, bytes (Node `ws` only; default 1 GiB). */
  maxPayload?: number;
  /** Name sent in `hello`. */
  clientName?: string;
  /** Random source for the backoff jitter (tests). */
  random?: () => number;
}

export interface ClientEvents {
  state: (state: ClientState, client: Client) => void;
  welcome: (msg: WelcomeMessage, client: Client) => void;
  /** Server `error` frames not tied to a request, and transport failures. */
  error: (err: RemoteError | Error, client: Client) => void;
}

/** An `error` frame from the server. */
export class RemoteError extends Error {
  readonly code: string;
  readonly topic?: string;
  readonly column?: string;
  constructor(msg: ErrorMessage) {
    super(`${msg.code}: ${msg.message}`);
    this.name = "RemoteError";
    this.code = msg.code;
    if (msg.topic !== undefined) this.topic = msg.topic;
    if (msg.column !== undefined) this.column = msg.column;
  }
}

/** The connection was lost or closed before a reply arrived. */
export class ConnectionClosedError extends Error {
  readonly code = "closed";
  constructor(message = "connection closed") {
    super(message);
    this.name = "ConnectionClosedError";
  }
}

/** Rows to publish: column arrays, row objects, or an array of row objects. */
export type PublishData =
  | { columns: Record<string, ArrayLike<unknown>>; categories?: Record<string, string[]> }
  | { rows: Array<Record<string, unknown>> }
  | Array<Record<string, unknown>>;

interface Pending {
  resolve: (v: any) => void;
  reject: (e: Error) => void;
}

/** Drop the URL's encoding parameter and set ours (the server reads `?encoding=`). */
function withEncoding(url: string, encoding: Encoding): string {
  const [base, query = ""] = url.split("?", 2);
  const params = query.split("&").filter((p) => p && !p.startsWith("encoding="));
  params.push(`encoding=${encoding}`);
  return `${base}?${params.join("&")}`;
}

function jsonValue(v: unknown): unknown {
  if (typeof v === "number") {
    if (Number.isNaN(v)) return null;
    if (v === Infinity) return "Infinity";
    if (v === -Infinity) return "-Infinity";
    return v;
  }
  if (typeof v === "bigint") return Number(v);
  if (v instanceof Date) return v.toISOString();
  return v === undefined ? null : v;
}

export class Client extends Emitter<ClientEvents> implements SubscriptionHost {
  readonly url: string;
  readonly encoding: Encoding;
  state: ClientState = "connecting";
  /** The latest `welcome` message, or null before the first. */
  welcome: WelcomeMessage | null = null;
  readonly subscriptions = new Map<string, Subscription>();
  readonly stats = { connects: 0, reconnects: 0, messages: 0, bytes: 0, gaps: 0, errors: 0 };
  lastError: string | null = null;
  /** Whether the connection was ever live (a page's views tell "refused" from "lost"). */
  everLive = false;

  private opts: ClientOptions;
  private ws: SocketLike | null = null;
  private gen = 0;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private watchdog: ReturnType<typeof setInterval> | null = null;
  private lastRx = 0;
  private ids = 1;
  private pending = new Map<number, Pending>();
  private subscribeIds = new Map<number, string>();
  private closedByUser = false;

  constructor(url: string, opts: ClientOptions = {}) {
    super();
    if (!/^wss?:\/\//.test(url)) throw new Error(`livestream URLs start with ws:// or wss://, got ${url}`);
    const enc = opts.encoding ?? "arrow";
    if (enc !== "json" && enc !== "arrow") throw new Error("encoding must be 'json' or 'arrow'");
    this.url = url;
    this.encoding = enc;
    this.opts = opts;
    void this.open();
  }

  /** The current WebSocket (advanced: tests cut it with `terminate()`); null while disconnected. */
  get socket(): SocketLike | null {
    return this.ws;
  }

  /** Resolves when the connection is live (welcomed); rejects if it closes first. */
  ready(): Promise<Client> {
    if (this.state === "live") return Promise.resolve(this);
    if (this.state === "closed") return Promise.reject(new ConnectionClosedError());
    return new Promise((resolve, reject) => {
      const off = this.on("state", (s) => {
        if (s === "live") {
          off();
          resolve(this);
        } else if (s === "closed") {
          off();
          reject(new ConnectionClosedError());
        }
      });
    });
  }

  /**
   * Subscribe to `topic`. Returns at once; the subscription fills in the background and survives
   * reconnects (resuming by epoch and offset). Subscribing twice returns the same subscription.
   */
  subscribe(topic: string, opts: SubscribeOptions = {}): Subscription {
    if (this.state === "closed") throw new ConnectionClosedError();
    const existing = this.subscriptions.get(topic);
    if (existing && !existing.closed) return existing;
    const sub = new Subscription(this, topic, opts);
    this.subscriptions.set(topic, sub);
    this._sendSubscribe(sub);
    return sub;
  }

  /** Publish rows to `topic`; resolves with the server's `ack`, rejects with a RemoteError. */
  publish(topic: string, data: PublishData, opts: { schema?: Field[]; token?: string } = {}): Promise<AckMessage> {
    const msg: Record<string, unknown> = { type: "publish", topic };
    if (Array.isArray(data)) msg.rows = data.map((r) => mapRow(r));
    else if ("rows" in data) msg.rows = data.rows.map((r) => mapRow(r));
    else {
      const cols: Record<string, unknown[]> = {};
      for (const [name, values] of Object.entries(data.columns)) cols[name] = Array.from(values, jsonValue);
      msg.columns = cols;
      if (data.categories) msg.categories = data.categories;
    }
    if (opts.schema) msg.schema = opts.schema;
    const token = opts.token ?? this.opts.token;
    if (token) msg.token = token;
    return this.request(msg);
  }

  /**
   * Give the connection a new token before the current one expires (docs/protocol.md §4.10):
   * sent as `refresh` when live, and used for every later (re)connect. Resolves with the
   * server's `refreshed` (null when not connected); rejects with a RemoteError if the server
   * refuses the token (the connection then keeps its current one).
   */
  refreshToken(token: string): Promise<RefreshedMessage | null> {
    if (typeof token !== "string" || token === "") return Promise.reject(new Error("token must be a non-empty string"));
    this.opts = { ...this.opts, token };
    if (this.state !== "live" || !this.ws) return Promise.resolve(null);
    return this.request<RefreshedMessage>({ type: "refresh", token });
  }

  /** Application-level round trip to the server, in ms. */
  async ping(): Promise<number> {
    const t0 = now();
    await this.request<PongMessage>({ type: "ping", t: Date.now() });
    return now() - t0;
  }

  /** Close the connection and every subscription. Safe to call twice. */
  close(): void {
    if (this.state === "closed") return;
    this.closedByUser = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    this.gen++;
    if (ws) {
      try {
        ws.close(CloseCode.NORMAL, "client closed");
      } catch {
        /* already closing */
      }
    }
    this.rejectPending(new ConnectionClosedError("closed by the user"));
    for (const sub of this.subscriptions.values()) sub._markClosed();
    this.setState("closed");
  }

  /** Skip the remaining backoff and reconnect now (e.g. when the browser comes back online). */
  reconnectNow(): void {
    if (this.state !== "reconnecting" || this.ws !== null) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    void this.open();
  }

  // -- SubscriptionHost ---------------------------------------------------------------------

  _sendSubscribe(sub: Subscription): void {
    if (!this.ws || this.ws.readyState !== 1) return; // sent on (re)connect
    const id = this.ids++;
    const msg: Record<string, unknown> = { type: "subscribe", topic: sub.topic, id };
    const rp = sub.resumePoint();
    if (rp) {
      msg.epoch = rp.epoch;
      msg.offset = rp.offset;
    }
    if (sub.token) msg.token = sub.token;
    this.subscribeIds.set(id, sub.topic);
    this.send(msg);
  }

  _sendUnsubscribe(sub: Subscription): void {
    if (this.subscriptions.get(sub.topic) === sub) this.subscriptions.delete(sub.topic);
    if (this.ws && this.ws.readyState === 1) this.send({ type: "unsubscribe", topic: sub.topic });
  }

  // -- connection lifecycle ---------------------------------------------------------------

  private setState(state: ClientState): void {
    if (this.state === state) return;
    this.state = state;
    if (state === "live") this.everLive = true;
    this.emit("state", state, this);
  }

  private async open(): Promise<void> {
    if (this.closedByUser) return;
    const gen = ++this.gen;
    let Ctor: SocketFactory;
    try {
      Ctor = await resolveWebSocket(this.opts.WebSocket);
    } catch (err) {
      this.lastError = String(err);
      this.emit("error", err as Error, this);
      this.close();
      return;
    }
    if (gen !== this.gen || this.closedByUser) return;
    const url = withEncoding(this.url, this.encoding);
    let ws: SocketLike;
    try {
      if (isNodeWs(Ctor)) {
        const headers: Record<string, string> = { ...(this.opts.headers ?? {}) };
        if (this.opts.token) headers.Authorization = `Bearer ${this.opts.token}`;
        ws = new Ctor(url, undefined, { headers, maxPayload: this.opts.maxPayload ?? 1024 * 1024 * 1024, perMessageDeflate: false });
      } else {
        ws = new Ctor(url);
      }
    } catch (err) {
      this.lastError = String(err);
      this.scheduleReconnect(gen);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.connectTimer = setTimeout(() => {
      if (gen === this.gen && ws.readyState !== 1) this.drop(ws);
    }, this.opts.connectTimeoutMs ?? 10_000);
    ws.onopen = () => {
      if (gen !== this.gen) return;
      if (this.connectTimer) clearTimeout(this.connectTimer);
      this.connectTimer = null;
      this.lastRx = now();
      const hello: Record<string, unknown> = {
        type: "hello", v: PROTOCOL_VERSION, encoding: this.encoding,
        client: this.opts.clientName ?? `livestream-js/${VERSION}`,
      };
      if (this.opts.token) hello.token = this.opts.token;
      this.send(hello);
      for (const sub of this.subscriptions.values()) if (!sub.closed) this._sendSubscribe(sub);
    };
    ws.onmessage = (ev: { data: unknown }) => {
      if (gen !== this.gen) return;
      this.onFrame(ev.data);
    };
    ws.onerror = () => {
      /* a close event follows */
    };
    ws.onclose = (ev: { code?: number; reason?: string }) => this.onClosed(gen, ev.code ?? 1006, ev.reason ?? "");
    const nodeWs = ws as unknown as { on?: (ev: string, fn: () => void) => void };
    if (typeof nodeWs.on === "function") nodeWs.on("ping", () => (this.lastRx = now()));
  }

  private onClosed(gen: number, code: number, reason: string): void {
    if (gen !== this.gen) return;
    this.ws = null;
    this.clearTimers();
    this.rejectPending(new ConnectionClosedError(`connection lost (${code}${reason ? `: ${reason}` : ""})`));
    if (this.closedByUser) return;
    this.lastError = `closed (${code}${reason ? `: ${reason}` : ""})`;
    for (const sub of this.subscriptions.values()) sub._setState("connecting");
    const fatal = code === CloseCode.UNSUPPORTED_VERSION || code === CloseCode.UNAUTHORIZED;
    if (fatal || this.opts.reconnect === false) {
      if (fatal) this.emit("error", new Error(`server closed the connection: ${this.lastError}`), this);
      this.close();
      return;
    }
    this.scheduleReconnect(gen);
  }

  private scheduleReconnect(gen: number): void {
    if (gen !== this.gen || this.closedByUser) return;
    this.ws = null;
    this.setState("reconnecting");
    const b = this.opts.backoff ?? {};
    const delay = backoffDelay(this.attempt++, b.baseMs ?? 100, b.capMs ?? 10_000, this.opts.random);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.open();
    }, delay);
  }

  /** Drop a connection without ceremony (a dead peer will not answer a close handshake). */
  private drop(ws: SocketLike): void {
    if (typeof ws.terminate === "function") ws.terminate();
    else {
      try {
        ws.close(4100 as number, "client timeout");
      } catch {
        /* closing */
      }
    }
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.connectTimer) clearTimeout(this.connectTimer);
    if (this.watchdog) clearInterval(this.watchdog);
    this.retryTimer = this.connectTimer = this.watchdog = null;
  }

  /** Liveness: ping when idle for a heartbeat, drop when silent for three. */
  private startWatchdog(heartbeatS: number): void {
    if (this.watchdog) clearInterval(this.watchdog);
    if (!(heartbeatS > 0)) return;
    const ms = heartbeatS * 1000;
    const ws = this.ws;
    this.watchdog = setInterval(() => {
      if (!ws || ws !== this.ws) return;
      const idle = now() - this.lastRx;
      if (idle > 3 * ms) this.drop(ws);
      else if (idle > ms) this.send({ type: "ping", t: Date.now() });
    }, ms);
    const t = this.watchdog as unknown as { unref?: () => void };
    if (typeof t.unref === "function") t.unref();
  }

  private send(msg: object): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return;
    try {
      ws.send(JSON.stringify(msg));
    } catch (err) {
      this.lastError = String(err);
    }
  }

  private request<T>(msg: Record<string, unknown>): Promise<T> {
    if (!this.ws || this.ws.readyState !== 1 || this.state !== "live") {
      return Promise.reject(new ConnectionClosedError("not connected; try again when live"));
    }
    const id = this.ids++;
    msg.id = id;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.send(msg);
    });
  }

  private rejectPending(err: Error): void {
    const p = [...this.pending.values()];
    this.pending.clear();
    this.subscribeIds.clear();
    for (const { reject } of p) reject(err);
  }

  // -- incoming -----------------------------------------------------------------------------

  private onFrame(data: unknown): void {
    this.lastRx = now();
    this.stats.messages++;
    let msg: Record<string, any>;
    let payload: Uint8Array | null = null;
    try {
      if (typeof data === "string") {
        this.stats.bytes += data.length;
        msg = JSON.parse(data);
      } else {
        // (not `instanceof`: the buffer may come from another realm, e.g. an iframe or a vm)
        const isBuffer = Object.prototype.toString.call(data) === "[object ArrayBuffer]";
        const bytes = isBuffer ? new Uint8Array(data as ArrayBuffer)
          : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
          : null;
        if (bytes === null) throw new Error("unexpected frame data");
        this.stats.bytes += bytes.byteLength;
        const u = unpackBinary(bytes);
        msg = u.header;
        payload = u.payload;
      }
      this.handle(msg, payload);
    } catch (err) {
      this.stats.errors++;
      this.lastError = `bad frame: ${String(err)}`;
      this.emit("error", err as Error, this);
    }
  }

  private handle(msg: Record<string, any>, payload: Uint8Array | null): void {
    const type = msg.type;
    const sub = typeof msg.topic === "string" ? this.subscriptions.get(msg.topic) : undefined;
    if (DATA_KINDS.has(type)) {
      if (sub && !sub.closed) sub._data(msg as DataHeader, payload);
      return;
    }
    switch (type) {
      case "welcome": {
        this.welcome = msg as WelcomeMessage;
        this.attempt = 0;
        this.stats.connects++;
        if (this.stats.connects > 1) this.stats.reconnects++;
        this.startWatchdog(Number(msg.heartbeat));
        this.setState("live");
        this.emit("welcome", msg as WelcomeMessage, this);
        return;
      }
      case "subscribed":
        if (typeof msg.id === "number") this.subscribeIds.delete(msg.id);
        if (sub && !sub.closed) sub._subscribed(msg as SubscribedMessage);
        return;
      case "gap":
        if (sub && !sub.closed) {
          this.stats.gaps++;
          sub._gap(msg as GapMessage);
        }
        return;
      case "deleted":
        // docs/protocol.md §4.11: the subscription stays, like one to a topic not created
        // yet; a re-created topic comes as subscribed, a gap (epoch) and a snapshot
        if (sub && !sub.closed) sub._setState("waiting");
        return;
      case "ack":
      case "pong":
      case "refreshed": {
        const p = this.pending.get(msg.id);
        if (p) {
          this.pending.delete(msg.id);
          p.resolve(msg);
        }
        return;
      }
      case "error": {
        this.stats.errors++;
        const err = new RemoteError(msg as ErrorMessage);
        this.lastError = err.message;
        const p = typeof msg.id === "number" ? this.pending.get(msg.id) : undefined;
        if (p) {
          this.pending.delete(msg.id);
          p.reject(err);
          return;
        }
        const subTopic = typeof msg.id === "number" ? this.subscribeIds.get(msg.id) : undefined;
        if (subTopic !== undefined) this.subscribeIds.delete(msg.id);
        const target = this.subscriptions.get(subTopic ?? msg.topic);
        if (target && !target.closed) target._error(err);
        else this.emit("error", err, this);
        return;
      }
      default:
        return; // unsubscribed, and types of later protocol revisions
    }
  }
}

function mapRow(r: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) out[k] = jsonValue(v);
  return out;
}

function now(): number {
  return typeof performance !== "undefined" ? performance.now() : Date.now();
}

/** Open a connection to a livestream server (returns at once; connects in the background). */
export function connect(url: string, opts: ClientOptions = {}): Client {
  return new Client(url, opts);
}
