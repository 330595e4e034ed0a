/**
 * Starting live Bokeh views from a page: what the `CustomJS` on a document's `DocumentReady`
 * event calls (livestream/dashboard/static.py, livestream/notebook/direct.py).
 *
 * ```js
 * Livestream.startChart({url: "ws://host:8765/ws", token, spec, plot, sources, templates, legend});
 * Livestream.startTable({url, spec, source});
 * ```
 *
 * Every view of a page that names the same server (url, token, encoding) shares one connection.
 * Started views are listed in `globalThis.__livestream_views__` (for inspection and tests).
 */

import { type Client, connect } from "./client.js";
import type { Encoding } from "./protocol.js";
import { type AttachedChart, type AttachOptions, attachChart, type ChartModels, type ChartSpec } from "./bokehChart.js";
import { type AttachedTable, attachTable, type TableModels, type TableSpec } from "./bokehTable.js";

export interface ServerOptions {
  /** The livestream server, `ws://host:port/ws` or `wss://…`. */
  url: string;
  token?: string | null;
  /** Wire encoding (default "arrow"). */
  encoding?: Encoding;
}

const CLIENTS_KEY = "__livestream_clients__";
const VIEWS_KEY = "__livestream_views__";

/** The page's shared client for a server (one connection per url, token and encoding). */
export function pageClient(opts: ServerOptions): Client {
  const g = globalThis as unknown as Record<string, Map<string, Client> | undefined>;
  let clients = g[CLIENTS_KEY];
  if (!clients) clients = g[CLIENTS_KEY] = new Map();
  const encoding = opts.encoding ?? "arrow";
  const key = `${opts.url}\u0000${opts.token ?? ""}\u0000${encoding}`;
  let c = clients.get(key);
  if (!c || c.state === "closed") {
    c = connect(opts.url, { encoding, ...(opts.token ? { token: opts.token } : {}) });
    clients.set(key, c);
  }
  return c;
}

/**
 * Bokeh decodes Python dicts handed to a CustomJS as `Map`s: turn maps (recursively, not models)
 * into plain objects, and parse JSON strings given for a spec.
 */
export function plain<T>(v: unknown): T {
  if (typeof v === "string") return JSON.parse(v) as T;
  return toPlain(v) as T;
}

function toPlain(v: unknown): unknown {
  if (v instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of v) out[String(k)] = toPlain(x);
    return out;
  }
  if (Array.isArray(v)) return v.map(toPlain);
  if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = toPlain(x);
    return out;
  }
  return v;
}

function register(view: AttachedChart | AttachedTable): void {
  const g = globalThis as unknown as Record<string, Array<AttachedChart | AttachedTable> | undefined>;
  (g[VIEWS_KEY] ??= []).push(view);
}

/** Start a live chart: subscribe and stream into the figure's sources (see bokehChart.ts). */
export function startChart(args: ServerOptions & ChartModels & { spec: ChartSpec | string; options?: AttachOptions }): AttachedChart {
  const models: ChartModels = {
    ...args,
    sources: args.sources ? plain<ChartModels["sources"]>(args.sources) : {},
    renderers: args.renderers ? plain<ChartModels["renderers"]>(args.renderers) : {},
    templates: args.templates ? Array.from(args.templates) : [],
  };
  const view = attachChart(pageClient(args), plain<ChartSpec>(args.spec), models, args.options);
  register(view);
  return view;
}

/** Start a live table: subscribe and keep the DataTable's source current (see bokehTable.ts). */
export function startTable(args: ServerOptions & TableModels & { spec: TableSpec | string; options?: AttachOptions }): AttachedTable {
  const view = attachTable(pageClient(args), plain<TableSpec>(args.spec), args, args.options);
  register(view);
  return view;
}
