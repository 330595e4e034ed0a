/**
 * Live Bokeh charts driven from the browser: the JavaScript half of a livestream chart whose
 * page subscribes by itself (static pages saved by `dash.save()`, and `sub.chart(direct=True)`
 * in a notebook).
 *
 * The Python side builds the figure (same look as a notebook `LiveChart`) and hands this module
 * a JSON-able chart spec plus the figure's BokehJS models: a ColumnDataSource per existing series,
 * hidden *template* renderers to clone for series that appear later (`by=` values), the legend.
 * {@link attachChart} then subscribes with the livestream client and, at most `fps` times a second,
 * applies what arrived since the last frame as one `source.stream(batch, rollover)` per series —
 * the same coalescing, rollover and colour rule as the notebook chart (livestream/notebook/chart.py):
 *
 * - append topics: new rows are split by `by` (or by y column), filtered by `where`, trimmed to
 *   the window and streamed; snapshots and gaps redraw from the subscription's window;
 * - keyed and replace topics: redrawn in place from the current table (sorted by x);
 * - categorical bar charts: one bar per x value, aggregated over the window each frame;
 * - datetimes are milliseconds (tz-aware columns keep their wall-clock time, as in Python);
 * - the chart's title shows reconnecting / closed / gaps / errors;
 * - line, step and scatter series over a numeric x are decimated when `spec.decimate` (pixel
 *   columns) is set and a series holds more rows than that many columns show (./decimate.ts,
 *   the rule of livestream/views/decimate.py): the source gets the overview, redrawn as
 *   `source.data = ...`; when the user zooms or pans (the x range changed interactively) the
 *   visible range is drawn in detail from the window, and a reset returns to the overview.
 */

import type { Client, ClientState } from "./client.js";
import { DEFAULT_TAIL, SeriesDecimator } from "./decimate.js";
import type { Batch, Column } from "./columns.js";
import type { Field, GapMessage } from "./protocol.js";
import type { Subscription, UpdateEvent } from "./subscription.js";

export type ChartKind = "line" | "scatter" | "step" | "bar" | "candlestick";

/** The colour rule of `series_color` in chart.py: values of a column take palette colours in order of first appearance. */
export interface ColorRule {
  /** The palette, cycled. */
  palette: string[];
  /** Colours already given out by Python: column → value (as a string) → colour. */
  assigned?: Record<string, Record<string, string>>;
  /** Next palette index per column (values seen by Python so far). */
  next?: Record<string, number>;
}

/** What a chart draws: the JSON spec of a chart (ChartCore.spec on the Python side). */
export interface ChartSpec {
  topic: string;
  /** x column; null plots against the row offset. */
  x: string | null;
  /** y columns (candlestick: open, high, low, close). */
  ys: string[];
  by?: string | null;
  kind?: ChartKind;
  /** Points kept per series (rollover). */
  window: number;
  /** Rows the subscription keeps (default: `window`). */
  rows?: number;
  /** Frames a second at most (default 20). */
  fps?: number;
  /** Candlestick columns (default open/high/low/close). */
  ohlc?: string[];
  /** Draw only rows whose column's value (as a string) is one of these. */
  where?: Record<string, string[]>;
  /** "offset" when x is null (the row offset). */
  x_type?: "linear" | "datetime" | "categorical" | "offset";
  /** "replace": redraw the whole table each frame; "append": stream (also follows the topic's mode). */
  mode?: "append" | "replace";
  /** Bar charts over a categorical x: "last", "count", "sum", "mean", "min", "max", "first". */
  agg?: string;
  /** The fixed colour of a single-series chart. */
  color?: string | null;
  /**
   * Colours: a {@link ColorRule}, or (ChartCore.spec's form) value → colour of `color_column`
   * with `palette` and `next_color`.
   */
  colors?: ColorRule | Record<string, string>;
  palette?: string[];
  color_column?: string | null;
  next_color?: number;
  /** The title without status (default: the figure's title at attach time). */
  title?: string;
  /** Pixel columns a series is decimated to (0 or absent: every row is drawn). */
  decimate?: number;
  /** Newest rows of a decimated series drawn exactly (default 200). */
  decimate_tail?: number;
}

/** The part of a BokehJS ColumnDataSource used here. */
export interface SourceLike {
  data: Record<string, unknown>;
  stream(data: Record<string, ArrayLike<unknown>>, rollover?: number): void;
}

/** The part of a BokehJS GlyphRenderer used here. */
export interface RendererLike {
  data_source: SourceLike;
  glyph: GlyphLike;
  visible: boolean;
  name?: string | null;
  [k: string]: unknown;
}

export interface GlyphLike {
  [k: string]: unknown;
}

export interface TitleLike {
  text: string;
  text_color: unknown;
}

export interface PlotLike {
  renderers: unknown[];
  title?: TitleLike | string | null;
  x_range?: RangeLike | null;
}

/** The part of a BokehJS range used here (`have_updated_interactively`: a DataRange1d zoomed by a tool). */
export interface RangeLike {
  factors?: string[];
  start?: number;
  end?: number;
  have_updated_interactively?: boolean;
}

export interface LegendLike {
  items: unknown[];
}

/** The BokehJS models of a chart (CustomJS `args` on the Python side). */
export interface ChartModels {
  plot: PlotLike;
  /** Series key (by value, y column, "" for a single series) → its source. */
  sources?: Record<string, SourceLike>;
  /** Series key → its renderers (optional: only needed for the legend of existing series). */
  renderers?: Record<string, RendererLike[]>;
  /** Hidden renderers cloned for a new series (candlestick: segment and bar). */
  templates?: RendererLike[];
  legend?: LegendLike | null;
  /**
   * The source of the chart's hidden renderer that gives its auto ranges an extent while no
   * series holds a point (Python's `ChartCore.empty_ranges`): emptied when data comes, given
   * its points again when every series is empty.
   */
  emptyRanges?: SourceLike | null;
  /** Makes a legend item: default `new (Bokeh.Models.get("LegendItem"))(attrs)`. */
  makeLegendItem?: (attrs: { label: { value: string }; renderers: RendererLike[] }) => unknown;
}

export interface AttachOptions {
  /** Timer (tests): default setTimeout. */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  /** Clock in ms (tests): default performance.now / Date.now. */
  now?: () => number;
}

/** A chart bound to a subscription; `detach()` stops it. */
export interface AttachedChart {
  readonly spec: ChartSpec;
  readonly subscription: Subscription;
  /** Series key → source (grows with new `by` values). */
  readonly sources: Map<string, SourceLike>;
  readonly stats: { frames: number; rows: number; streams: number; resets: number; decimated: number };
  /** The x range drawn in detail (null: the overview). */
  zoom(): [number, number] | null;
  /** Apply what is pending now (tests; normally the timer does it). */
  flush(): void;
  /** The title's status text ("" when all is well). */
  status(): string;
  detach(): void;
}

export const UP_COLOR = "#26a69a";
export const DOWN_COLOR = "#ef5350";
const DEFAULT_PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

// -- colours -------------------------------------------------------------------------------

interface ColorState {
  map: Map<string, string>;
  next: number;
}

const COLORS_KEY = "__livestream_colors__";

function colorRegistry(): Map<string, ColorState> {
  const g = globalThis as unknown as Record<string, Map<string, ColorState> | undefined>;
  let reg = g[COLORS_KEY];
  if (!reg) reg = g[COLORS_KEY] = new Map();
  return reg;
}

/** Merge what Python already assigned into the page's colour registry. */
export function seedColors(rule: ColorRule | undefined): void {
  if (!rule) return;
  const reg = colorRegistry();
  const columns = new Set([...Object.keys(rule.assigned ?? {}), ...Object.keys(rule.next ?? {})]);
  for (const col of columns) {
    let st = reg.get(col);
    if (!st) reg.set(col, (st = { map: new Map(), next: 0 }));
    for (const [v, c] of Object.entries(rule.assigned?.[col] ?? {})) if (!st.map.has(v)) st.map.set(v, c);
    st.next = Math.max(st.next, rule.next?.[col] ?? 0, st.map.size);
  }
}

/** The stable colour of `value` in `column` (page-wide, continuing Python's assignment). */
export function seriesColor(column: string | null | undefined, value: unknown, palette: string[] = DEFAULT_PALETTE): string {
  const reg = colorRegistry();
  const col = column ?? "";
  let st = reg.get(col);
  if (!st) reg.set(col, (st = { map: new Map(), next: 0 }));
  const key = pyStr(value);
  let c = st.map.get(key);
  if (c === undefined) {
    c = palette[st.next % palette.length];
    st.next++;
    st.map.set(key, c);
  }
  return c;
}

/** `str(value)` as Python prints it for the values a column can hold. */
export function pyStr(v: unknown): string {
  if (v === null || v === undefined) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "nan";
    if (v === Infinity) return "inf";
    if (v === -Infinity) return "-inf";
    return String(v);
  }
  return String(v);
}

// -- columns -------------------------------------------------------------------------------

const TZ_RE = /^datetime64\[\w+, (.+)\]$/;
const tzFormatters = new Map<string, Intl.DateTimeFormat>();
const tzOffsets = new Map<string, number>();

/** Offset (ms) of time zone `tz` from UTC at UTC time `ms`, cached per 15 minutes. */
export function tzOffsetMs(tz: string, ms: number): number {
  const bucket = Math.floor(ms / 900_000);
  const key = `${tz}|${bucket}`;
  const hit = tzOffsets.get(key);
  if (hit !== undefined) return hit;
  let fmt = tzFormatters.get(tz);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat("en-US", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric",
      hour: "numeric", minute: "numeric", second: "numeric",
    });
    tzFormatters.set(tz, fmt);
  }
  const t = bucket * 900_000;
  const p: Record<string, number> = {};
  for (const part of fmt.formatToParts(new Date(t))) if (part.type !== "literal") p[part.type] = Number(part.value);
  const wall = Date.UTC(p.year, p.month - 1, p.day, p.hour % 24, p.minute, p.second);
  const off = wall - t;
  if (tzOffsets.size > 10_000) tzOffsets.clear();
  tzOffsets.set(key, off);
  return off;
}

/** A column as float64 for Bokeh: numbers as they are, booleans 0/1, tz-aware datetimes as wall-clock ms. */
function toFloat(col: Column, type: string | undefined, idx: Int32Array | null): Float64Array {
  const n = idx ? idx.length : col.length;
  const out = new Float64Array(n);
  const tz = type ? TZ_RE.exec(type)?.[1] : undefined;
  if (col instanceof Float64Array) {
    if (idx) for (let i = 0; i < n; i++) out[i] = col[idx[i]];
    else out.set(col);
    if (tz && tz !== "UTC") for (let i = 0; i < n; i++) if (out[i] === out[i]) out[i] += tzOffsetMs(tz, out[i]);
    return out;
  }
  for (let i = 0; i < n; i++) {
    const v = col[idx ? idx[i] : i];
    out[i] = v === null || v === undefined ? NaN : typeof v === "boolean" ? (v ? 1 : 0) : Number(v);
  }
  return out;
}

function labels(col: Column, idx: Int32Array | null): string[] {
  const n = idx ? idx.length : col.length;
  const out = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const v = col[idx ? idx[i] : i];
    out[i] = v === null || v === undefined || (typeof v === "number" && Number.isNaN(v)) ? "" : pyStr(v);
  }
  return out;
}

function concatBatches(batches: Batch[], names: string[]): Batch {
  if (batches.length === 1) return batches[0];
  const length = batches.reduce((a, b) => a + b.length, 0);
  const columns: Record<string, Column> = {};
  for (const name of names) {
    const parts = batches.map((b) => b.columns[name]);
    if (parts.every((p) => p instanceof Float64Array)) {
      const out = new Float64Array(length);
      let at = 0;
      for (const p of parts as Float64Array[]) {
        out.set(p, at);
        at += p.length;
      }
      columns[name] = out;
    } else {
      const out: unknown[] = [];
      for (const p of parts) for (let i = 0; i < p.length; i++) out.push(p[i]);
      columns[name] = out;
    }
  }
  return { columns, length };
}

// -- the chart -----------------------------------------------------------------------------

interface Series {
  key: string;
  source: SourceLike;
  renderers: RendererLike[];
}

const OFFSET = "__offset__";
const SINGLE = "";

/** Normalise a spec: defaults, and the tolerant names Python may use. */
export function normalizeSpec(raw: ChartSpec & Record<string, unknown>): Required<Pick<ChartSpec, "topic" | "ys" | "window" | "fps" | "kind" | "colors">> & ChartSpec {
  const kind = (raw.kind ?? "line") as ChartKind;
  let ys = raw.ys ?? (raw.y === undefined || raw.y === null ? [] : Array.isArray(raw.y) ? (raw.y as string[]) : [raw.y as string]);
  if (kind === "candlestick") ys = raw.ohlc ?? (ys.length === 4 ? ys : ["open", "high", "low", "close"]);
  const window = Number(raw.window ?? 10_000);
  let colors = raw.colors as ColorRule | Record<string, string> | undefined;
  if (colors === undefined || !("palette" in colors || "assigned" in colors || "next" in colors)) {
    // ChartCore.spec: {palette, color_column, colors: {value: colour}, next_color}
    const col = raw.color_column ?? null;
    const flat = (colors ?? {}) as Record<string, string>;
    colors = {
      palette: raw.palette?.length ? raw.palette : DEFAULT_PALETTE,
      assigned: col !== null ? { [col]: flat } : {},
      next: col !== null ? { [col]: Number(raw.next_color ?? 0) } : {},
    };
  }
  return {
    ...raw,
    colors,
    kind,
    ys,
    x: raw.x ?? null,
    by: raw.by ?? null,
    window,
    rows: Number(raw.rows ?? window),
    fps: Number(raw.fps ?? 20),
    x_type: (raw.x_type ?? (raw.xType as ChartSpec["x_type"]) ?? "linear"),
    agg: raw.agg ?? "last",
  };
}

/**
 * What to tell the reader of a page opened from a file whose connection never opened: its
 * WebSocket origin is "null", which a livestream server refuses (HTTP 403) unless told to
 * accept it. Browsers give a page no reason for a failed handshake, so this is a hint.
 */
export function refusedHint(client: Client): string | null {
  const loc = (globalThis as { location?: { protocol?: string } }).location;
  if (loc?.protocol !== "file:" || client.everLive) return null;
  return "cannot connect: a page opened from a file has origin null; start the server with --allow-origin null";
}

function titleOf(plot: PlotLike): TitleLike | null {
  const t = plot.title;
  return t && typeof t === "object" ? t : null;
}

function defaultLegendItem(attrs: Record<string, unknown>): unknown {
  const B = (globalThis as unknown as { Bokeh?: { Models: { get(name: string): new (a: unknown) => unknown } } }).Bokeh;
  if (!B) throw new Error("window.Bokeh is not loaded");
  const LegendItem = B.Models.get("LegendItem");
  return new LegendItem(attrs);
}

/** Set every plain colour of a glyph (not a field or a transform) to `color`. */
function recolor(glyph: unknown, color: string): void {
  if (!glyph || typeof glyph !== "object") return;
  const g = glyph as Record<string, unknown>;
  for (const prop of ["line_color", "fill_color"]) {
    if (!(prop in g)) continue;
    const v = g[prop];
    if (v === null || v === undefined || typeof v === "string" || (typeof v === "object" && "value" in (v as object))) {
      g[prop] = { value: color };
    }
  }
}

const GLYPHS = ["glyph", "nonselection_glyph", "selection_glyph", "hover_glyph", "muted_glyph"] as const;

/**
 * A visible copy of a hidden template renderer drawing `source`, built from the template's classes
 * and set properties (not `model.clone()`: BokehJS 3.9 cannot clone a renderer's view state, nor
 * glyphs with unset properties).
 */
function newRenderer(tmpl: RendererLike, source: SourceLike, name: string, color: string | null): RendererLike {
  const attrs: Record<string, unknown> = { data_source: source, visible: true, name };
  for (const g of GLYPHS) {
    const v = tmpl[g] as { dirty_attributes?: Record<string, unknown> } | string | null | undefined;
    if (v && typeof v === "object") {
      // a new glyph of the same class with the properties Python set (shared sub-models such
      // as colour mappers are referenced, not copied)
      const G = v.constructor as new (a: Record<string, unknown>) => unknown;
      const copy = new G({ ...(v.dirty_attributes ?? v) });
      if (color !== null) recolor(copy, color);
      attrs[g] = copy;
    } else if (v !== undefined && v !== null) attrs[g] = v;
  }
  for (const p of ["x_range_name", "y_range_name", "level"]) if (tmpl[p] !== undefined) attrs[p] = tmpl[p];
  const R = tmpl.constructor as new (a: Record<string, unknown>) => RendererLike;
  return new R(attrs);
}

/**
 * Subscribe `spec.topic` on `client` and keep the chart's sources up to date (see the module
 * doc). Returns a handle; the chart keeps running until `detach()`.
 */
export function attachChart(client: Client, rawSpec: ChartSpec, models: ChartModels, opts: AttachOptions = {}): AttachedChart {
  const spec = normalizeSpec(rawSpec as ChartSpec & Record<string, unknown>);
  const setTimer = opts.setTimer ?? ((fn: () => void, ms: number) => setTimeout(fn, ms));
  const clearTimer = opts.clearTimer ?? ((h: unknown) => clearTimeout(h as ReturnType<typeof setTimeout>));
  const now = opts.now ?? (() => (typeof performance !== "undefined" ? performance.now() : Date.now()));
  const interval = spec.fps > 0 ? 1000 / spec.fps : 50;
  const rule = spec.colors as ColorRule;
  const palette = rule.palette?.length ? rule.palette : DEFAULT_PALETTE;
  seedColors(rule);

  const plot = models.plot;
  const title = titleOf(plot);
  const titleBase = spec.title ?? (title ? title.text : "");
  const titleColor = title ? title.text_color : null;
  const legend = models.legend ?? null;
  const makeLegendItem = models.makeLegendItem ?? defaultLegendItem;
  const series = new Map<string, Series>();
  const sources = new Map<string, SourceLike>();
  for (const [key, source] of Object.entries(models.sources ?? {})) {
    series.set(key, { key, source, renderers: models.renderers?.[key] ?? [] });
    sources.set(key, source);
  }
  const emptyRanges = models.emptyRanges ?? null;
  const emptyExtent: Record<string, unknown> = emptyRanges ? { ...emptyRanges.data } : {};
  let emptyShown = emptyRanges !== null && Object.values(emptyExtent).some((c) => (c as ArrayLike<unknown>)?.length > 0);
  const where = Object.entries(spec.where ?? {}).map(([col, vals]) => [col, new Set(vals.map(String))] as const);
  const barCat = spec.kind === "bar" && spec.x_type === "categorical";

  const sub = client.subscribe(spec.topic, { window: Math.max(spec.rows ?? spec.window, 1) });
  const stats = { frames: 0, rows: 0, streams: 0, resets: 0, decimated: 0 };
  const buckets = Math.max(0, Math.floor(Number(spec.decimate ?? 0)));
  const tail = Number(spec.decimate_tail ?? DEFAULT_TAIL);
  const decim = new Map<string, SeriesDecimator>();
  let zoom: [number, number] | null = null;
  const zoomDrawn = new Map<string, string>(); // series key → the zoom its source shows
  const zoomKey = () => (zoom ? `${zoom[0]},${zoom[1]}` : "");
  let zoomTimer: unknown = null;
  let pending: Batch[] = [];
  let pendingFirst: number[] = [];
  let pendingRows = 0;
  let reset = sub.length > 0;
  let timer: unknown = null;
  let lastFrame = -Infinity;
  let gaps = 0;
  let lastError = "";
  let statusText: string | null = null; // null: the title has not been set yet
  let detached = false;

  const replaceMode = () =>
    sub.key.length > 0 || sub.mode === "keyed" || sub.mode === "replace" || (sub.mode === null && spec.mode === "replace");
  const decimating = () =>
    buckets > 0 && !barCat && spec.x_type !== "categorical" && !replaceMode()
    && (spec.kind === "line" || spec.kind === "step" || spec.kind === "scatter");

  /** The zoom the user set: the x range when a tool changed it and it does not cover the window. */
  function readZoom(): [number, number] | null {
    const xr = plot.x_range;
    if (!xr || xr.have_updated_interactively === false) return null;
    const a = Number(xr.start), b = Number(xr.end);
    if (!Number.isFinite(a) || !Number.isFinite(b)) return null;
    let lo = Infinity, hi = -Infinity;
    for (const d of decim.values()) {
      const e = d.extent();
      if (e) { lo = Math.min(lo, e[0]); hi = Math.max(hi, e[1]); }
    }
    if (!(lo <= hi)) return null;
    const x0 = Math.min(a, b), x1 = Math.max(a, b);
    return x0 <= lo && x1 >= hi ? null : [x0, x1];
  }

  function viewOf(d: SeriesDecimator): { x: Float64Array; y: Float64Array } {
    return zoom ? d.detail(zoom[0], zoom[1]) : d.overview();
  }

  /** Follow the x range: redraw decimated series whose source does not show the current zoom. */
  function checkZoom(): void {
    if (decim.size === 0) return;
    zoom = readZoom();
    const k = zoomKey();
    for (const [key, d] of decim) {
      const s = series.get(key);
      if (!s || zoomDrawn.get(key) === k) continue;
      s.source.data = !zoom && !d.decimating() ? { x: d.x.slice(), y: d.y.slice() } : viewOf(d);
      zoomDrawn.set(key, k);
      stats.decimated++;
    }
  }

  function pollZoom(): void {
    if (zoomTimer !== null || detached) return;
    zoomTimer = setTimer(() => {
      zoomTimer = null;
      if (detached) return;
      try {
        checkZoom();
      } catch (err) {
        lastError = String((err as Error)?.message ?? err);
        updateStatus();
      }
      pollZoom();
    }, Math.max(interval, 100));
  }
  const types = (): Record<string, string> => {
    const t: Record<string, string> = {};
    for (const f of (sub.schema ?? []) as Field[]) t[f.name] = f.type;
    return t;
  };

  function schedule(): void {
    if (timer !== null || detached) return;
    const wait = Math.max(0, lastFrame + interval - now());
    timer = setTimer(() => {
      timer = null;
      flush();
    }, wait);
  }

  function statusNow(): [string, boolean] {
    const parts: string[] = [];
    let bad = false;
    const cs: ClientState = client.state;
    if (sub.closed || cs === "closed") {
      parts.push("closed");
      bad = true;
    } else if (cs === "reconnecting") {
      parts.push(refusedHint(client) ?? "reconnecting");
      bad = true;
    } else if (sub.state === "waiting") {
      parts.push("waiting");
    }
    if (gaps > 0) {
      parts.push(`⚠ ${gaps} gap${gaps > 1 ? "s" : ""}: rows lost, redrawn from snapshot`);
      bad = true;
    }
    if (lastError) {
      parts.push(`⚠ ${lastError}`);
      bad = true;
    }
    return [parts.join(" · "), bad];
  }

  function updateStatus(): void {
    const [text, bad] = statusNow();
    if (text === statusText) return;
    statusText = text;
    if (!title) return;
    title.text = text ? `${titleBase} — ${text}` : titleBase;
    title.text_color = bad ? DOWN_COLOR : titleColor;
  }

  /**
   * BokehJS logs "could not set initial ranges" at each paint of a plot whose auto ranges have
   * no data: the hidden ranges renderer holds its points exactly while no series holds one.
   */
  function syncEmptyRanges(): void {
    if (emptyRanges === null) return;
    let empty = true;
    for (const s of series.values()) {
      const x = s.source.data.x as ArrayLike<unknown> | undefined;
      if (x && x.length > 0) {
        empty = false;
        break;
      }
    }
    if (empty === emptyShown) return;
    emptyShown = empty;
    const data: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(emptyExtent)) data[k] = empty ? v : new Float64Array(0);
    emptyRanges.data = data;
  }

  function rowIndex(b: Batch): Int32Array | null {
    if (where.length === 0) return null;
    const keep: number[] = [];
    const cols = where.map(([c, set]) => [b.columns[c], set] as const);
    outer: for (let i = 0; i < b.length; i++) {
      for (const [col, set] of cols) {
        if (col === undefined) continue;
        if (!set.has(pyStr(col[i]))) continue outer;
      }
      keep.push(i);
    }
    return Int32Array.from(keep);
  }

  /** Rows of `b` (indices into it) per series key, in order of first appearance. */
  function split(b: Batch, idx: Int32Array | null): Array<[string, string | null, Int32Array | null]> {
    if (spec.by && b.columns[spec.by] !== undefined) {
      const col = b.columns[spec.by];
      const groups = new Map<string, number[]>();
      const n = idx ? idx.length : b.length;
      for (let k = 0; k < n; k++) {
        const i = idx ? idx[k] : k;
        const v = col[i];
        if (v === null || v === undefined || (typeof v === "number" && Number.isNaN(v))) continue;
        const key = pyStr(v);
        let g = groups.get(key);
        if (!g) groups.set(key, (g = []));
        g.push(i);
      }
      return [...groups].map(([key, rows]) => [key, null, Int32Array.from(rows)]);
    }
    if (spec.ys.length > 1 && spec.kind !== "candlestick") return spec.ys.map((y) => [y, y, idx]);
    return [[SINGLE, spec.ys[0] ?? null, idx]];
  }

  function columnsOf(b: Batch, ycol: string | null, rows: Int32Array | null, t: Record<string, string>): Record<string, Float64Array> {
    const xname = spec.x ?? OFFSET;
    const data: Record<string, Float64Array> = { x: toFloat(b.columns[xname], t[xname], rows) };
    if (spec.kind === "candlestick") {
      const [o, h, l, c] = spec.ys.map((name) => toFloat(b.columns[name], t[name], rows));
      const inc = new Float64Array(o.length);
      for (let i = 0; i < o.length; i++) inc[i] = c[i] >= o[i] ? 1 : 0;
      Object.assign(data, { open: o, high: h, low: l, close: c, inc });
    } else {
      const y = ycol ?? spec.ys[0];
      data.y = toFloat(b.columns[y], t[y], rows);
    }
    return data;
  }

  function lastRows(rows: Int32Array | null, n: number, w: number): Int32Array | null {
    if (n <= w) return rows;
    if (rows) return rows.subarray(rows.length - w);
    const out = new Int32Array(w);
    for (let i = 0; i < w; i++) out[i] = n - w + i;
    return out;
  }

  function addSeries(key: string, data: Record<string, unknown>): Series {
    const templates = models.templates ?? [];
    if (templates.length === 0) throw new Error("no template renderer to draw a new series");
    let color = spec.color ?? palette[0];
    if (spec.by) color = seriesColor(spec.by, key, palette);
    else if (spec.ys.length > 1) color = seriesColor("__y__", key, palette);
    const Source = templates[0].data_source.constructor as new (attrs: { data: Record<string, unknown> }) => SourceLike;
    const source = new Source({ data });
    const renderers = templates.map((t) => newRenderer(t, source, key, spec.kind === "candlestick" ? null : color));
    plot.renderers = [...plot.renderers, ...renderers];
    if (legend) legend.items = [...legend.items, makeLegendItem({ label: { value: key }, renderers })];
    const s = { key, source, renderers };
    series.set(key, s);
    sources.set(key, source);
    return s;
  }

  /** Draw `b` (rows `first`… of the topic) as appended (stream) or as the whole state (reset). */
  function drawFrame(b: Batch, segments: Array<[number, number]>, isReset: boolean): void {
    const t = types();
    if (spec.x === null) {
      // x = row offset: segments are (first offset, rows) of the batches b was made of
      const xs = new Float64Array(b.length);
      let at = 0;
      for (const [first, n] of segments) for (let i = 0; i < n; i++) xs[at++] = first + i;
      b = { columns: { ...b.columns, [OFFSET]: xs }, length: b.length };
    }
    const idx = rowIndex(b);
    const parts = split(b, idx);
    const w = spec.window;
    if (isReset) {
      const drawn = new Set(parts.map((p) => p[0]));
      for (const [key, s] of series) {
        const x = s.source.data.x as ArrayLike<unknown> | undefined;
        if (!drawn.has(key) && x && x.length) {
          const empty: Record<string, Float64Array> = {};
          for (const k of Object.keys(s.source.data)) empty[k] = new Float64Array(0);
          s.source.data = empty;
        }
        if (!drawn.has(key)) decim.get(key)?.clear();
      }
    }
    const dec = decimating();
    for (const [key, ycol, rows] of parts) {
      const n = rows ? rows.length : b.length;
      if (!isReset && n === 0) continue;
      const data = columnsOf(b, ycol, lastRows(rows, n, w), t);
      const s = series.get(key);
      if (dec) {
        let d = decim.get(key);
        if (d === undefined) {
          decim.set(key, (d = new SeriesDecimator(w, buckets, tail)));
          pollZoom();
        }
        if (isReset) d.clear();
        d.append(data.x, data.y);
        if (d.decimating() || zoom) {
          const k = zoomKey();
          if (!isReset && zoom && s && zoomDrawn.get(key) === k && data.x.length && data.x[0] > zoom[1]) continue;
          const v = viewOf(d);
          zoomDrawn.set(key, k);
          stats.decimated++;
          if (s === undefined) addSeries(key, v);
          else s.source.data = v;
          continue;
        }
        zoomDrawn.set(key, "");
      }
      if (s === undefined) {
        if (n > 0) addSeries(key, data);
        continue;
      }
      if (isReset) s.source.data = data;
      else {
        s.source.stream(data, w);
        stats.streams++;
      }
    }
  }

  function drawBars(b: Batch): void {
    const t = types();
    const x = spec.x as string;
    if (b.columns[x] === undefined) return;
    const idx = rowIndex(b);
    const xs = labels(b.columns[x], idx);
    const ycol = spec.ys[0];
    const ys = ycol !== undefined && b.columns[ycol] !== undefined ? toFloat(b.columns[ycol], t[ycol], idx) : null;
    const groups = new Map<string, number[]>();
    for (let i = 0; i < xs.length; i++) {
      let g = groups.get(xs[i]);
      if (!g) groups.set(xs[i], (g = []));
      g.push(i);
    }
    const agg = replaceMode() && spec.agg === "last" ? "last" : spec.agg ?? "last";
    const out: Array<[string, number]> = [];
    for (const [label, rows] of groups) {
      let v = NaN;
      if (agg === "count") v = rows.length;
      else if (ys) {
        const vals = rows.map((r) => ys[r]);
        const finite = vals.filter((q) => !Number.isNaN(q));
        switch (agg) {
          case "last": v = vals[vals.length - 1]; break;
          case "first": v = vals[0]; break;
          case "sum": v = finite.reduce((a, q) => a + q, 0); break;
          case "mean": v = finite.length ? finite.reduce((a, q) => a + q, 0) / finite.length : NaN; break;
          case "min": v = finite.length ? Math.min(...finite) : NaN; break;
          case "max": v = finite.length ? Math.max(...finite) : NaN; break;
          default: v = vals[vals.length - 1];
        }
      }
      out.push([label, v]);
    }
    out.sort((a, c) => (a[0] < c[0] ? -1 : a[0] > c[0] ? 1 : 0));
    const factors = out.map((o) => o[0]);
    const data = {
      x: factors, y: Float64Array.from(out.map((o) => o[1])), color: factors.map((f) => seriesColor(x, f, palette)),
    };
    const xr = plot.x_range;
    if (xr && Array.isArray(xr.factors) && (xr.factors.length !== factors.length || xr.factors.some((f, i) => f !== factors[i]))) {
      xr.factors = factors;
    }
    const s = series.get(SINGLE) ?? [...series.values()][0];
    if (s) s.source.data = data;
  }

  function sortedByX(b: Batch): Batch {
    if (spec.x === null || spec.x_type === "categorical" || b.length < 2) return b;
    const xs = b.columns[spec.x];
    if (!xs) return b;
    const order = Array.from({ length: b.length }, (_, i) => i);
    order.sort((i, j) => {
      const a = Number(xs[i]);
      const c = Number(xs[j]);
      return a < c ? -1 : a > c ? 1 : i - j;
    });
    const columns: Record<string, Column> = {};
    for (const [name, col] of Object.entries(b.columns)) {
      if (col instanceof Float64Array) columns[name] = Float64Array.from(order, (i) => col[i]);
      else columns[name] = order.map((i) => col[i]);
    }
    return { columns, length: b.length };
  }

  function flush(): void {
    if (detached) return;
    if (timer !== null) {
      clearTimer(timer);
      timer = null;
    }
    lastFrame = now();
    stats.frames++;
    try {
      updateStatus();
      if (sub.closed) return;
      if (decim.size) zoom = readZoom();
      if (barCat) {
        if (reset || pending.length) drawBars(sub.window);
      } else if (replaceMode()) {
        if (reset || pending.length) {
          const win = sub.window;
          const start = (sub.offset ?? win.length) - win.length;
          drawFrame(sortedByX(win), [[start, win.length]], true);
          stats.resets++;
        }
      } else if (reset) {
        const win = sub.window;
        drawFrame(win, [[(sub.offset ?? win.length) - win.length, win.length]], true);
        stats.resets++;
      } else if (pending.length) {
        const names = Object.keys(pending[0].columns);
        drawFrame(concatBatches(pending, names), pending.map((p, j) => [pendingFirst[j], p.length]), false);
      }
      checkZoom();
      syncEmptyRanges();
    } catch (err) {
      lastError = String((err as Error)?.message ?? err);
      updateStatus();
    } finally {
      pending = [];
      pendingFirst = [];
      pendingRows = 0;
      reset = false;
    }
  }

  const offs: Array<() => void> = [];
  offs.push(sub.on("update", (ev: UpdateEvent) => {
    stats.rows += ev.batch.length;
    if (ev.reset || ev.kind !== "append") reset = true;
    else if (!reset) {
      pending.push(ev.batch);
      pendingFirst.push(ev.offset);
      pendingRows += ev.batch.length;
      if (pendingRows > sub.maxRows) {
        // more than the window arrived in one frame: redraw from the window instead
        reset = true;
        pending = [];
        pendingFirst = [];
        pendingRows = 0;
      }
    }
    schedule();
  }));
  offs.push(sub.on("gap", (_g: GapMessage) => {
    gaps++;
    schedule();
  }));
  offs.push(sub.on("error", (err) => {
    lastError = err.message;
    schedule();
  }));
  offs.push(sub.on("state", () => schedule()));
  offs.push(client.on("state", () => schedule()));
  if (reset) schedule();

  return {
    spec,
    subscription: sub,
    sources,
    stats,
    flush,
    zoom: () => zoom,
    status: () => statusNow()[0],
    detach(): void {
      if (detached) return;
      detached = true;
      if (timer !== null) clearTimer(timer);
      timer = null;
      if (zoomTimer !== null) clearTimer(zoomTimer);
      zoomTimer = null;
      for (const off of offs) off();
    },
  };
}
