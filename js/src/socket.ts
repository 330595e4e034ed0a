/** Which WebSocket implementation to use: the platform's, else the `ws` package (Node). */

/** The subset of the WHATWG WebSocket this client uses (also satisfied by `ws`). */
export interface SocketLike {
  binaryType: string;
  readyState: number;
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  /** `ws` only: destroy the TCP connection at once. */
  terminate?: () => void;
}

export type SocketFactory = new (url: string, protocols?: string | string[], options?: any) => SocketLike;

let cached: SocketFactory | null = null;

export async function resolveWebSocket(given?: SocketFactory): Promise<SocketFactory> {
  if (given) return given;
  const g = (globalThis as { WebSocket?: SocketFactory }).WebSocket;
  if (typeof g === "function") return g;
  if (cached) return cached;
  // Node 20 has no global WebSocket (without --experimental-websocket): use `ws`.
  const mod: any = await import("ws");
  const ctor = (mod.WebSocket ?? mod.default) as SocketFactory | undefined;
  if (typeof ctor !== "function") {
    throw new Error("no WebSocket implementation: install the 'ws' package or pass options.WebSocket");
  }
  cached = ctor;
  return ctor;
}

/** True for the `ws` package's constructor (it takes an options object: headers, maxPayload). */
export function isNodeWs(ctor: SocketFactory): boolean {
  return typeof (ctor.prototype as { terminate?: unknown }).terminate === "function";
}
