// The browser-side chart glue (attachChart / attachTable) against a real server, with stand-ins
// for the BokehJS models (the real ones are exercised in Chromium by tests/static/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { attachChart, attachTable, connect, pyStr, seriesColor, tzOffsetMs } from "../dist/livestream.mjs";
import { startServer, subscriptionAt, until } from "./helpers.mjs";

/** A stand-in for a BokehJS ColumnDataSource: `stream` concatenates with rollover, as BokehJS does. */
class FakeSource {
  constructor(attrs = {}) {
    this.streams = [];
    this._data = attrs.data ?? {};
  }
  stream(data, rollover) {
    this.streams.push({ rows: data.x.length, rollover });
    const out = {};
    for (const [k, v] of Object.entries(data)) {
      const all = [...Array.from(this._data[k] ?? []), ...Array.from(v)];
      out[k] = rollover !== undefined && all.length > rollover ? all.slice(all.length - rollover) : all;
    }
    this._data = out;
  }
  get data() {
    return this._data;
  }
  set data(d) {
    this._data = d;
  }
}

/** A stand-in for a glyph model: `dirty_attributes` are the properties set on it. */
class FakeGlyph {
  constructor(attrs) {
    Object.assign(this, attrs);
  }
  get dirty_attributes() {
    return { ...this };
  }
}

/** A stand-in for a GlyphRenderer (constructed from attributes, as BokehJS models are). */
class FakeRenderer {
  constructor(attrs) {
    Object.assign(this, attrs);
  }
}

function template() {
  return new FakeRenderer({
    visible: false, name: "__template__", data_source: new FakeSource({ data: { x: [], y: [] } }),
    glyph: new FakeGlyph({ line_color: { value: "#808080" } }),
    nonselection_glyph: new FakeGlyph({ line_color: { value: "#808080" }, line_alpha: 0.1 }),
    selection_glyph: "auto",
  });
}

function figure(titleText = "trades: price by sym") {
  const legendItems = [];
  return {
    plot: { renderers: [], title: { text: titleText, text_color: "#444444" }, x_range: { factors: [] } },
    legend: { items: legendItems },
    makeLegendItem: (attrs) => ({ ...attrs }),
  };
}

/** A timer that never fires by itself: the test calls chart.flush() (frames are explicit). */
const manual = { setTimer: () => 1, clearTimer: () => {} };

test("pyStr prints values as Python's str() does", () => {
  assert.equal(pyStr(null), "None");
  assert.equal(pyStr(true), "True");
  assert.equal(pyStr(1.5), "1.5");
  assert.equal(pyStr(NaN), "nan");
  assert.equal(pyStr("AAPL"), "AAPL");
});

test("series colours follow Python's rule and continue its assignment", async () => {
  const { seedColors } = await import("../dist/livestream.mjs");
  const palette = ["#a", "#b", "#c"];
  seedColors({ palette, assigned: { sym_t: { X: "#a" } }, next: { sym_t: 1 } });
  assert.equal(seriesColor("sym_t", "X", palette), "#a");
  assert.equal(seriesColor("sym_t", "Y", palette), "#b");
  assert.equal(seriesColor("sym_t", "Z", palette), "#c");
  assert.equal(seriesColor("sym_t", "W", palette), "#a"); // cycles
  assert.equal(seriesColor("sym_t", "Y", palette), "#b"); // stable
  assert.equal(seriesColor("other_t", "Y", palette), "#a"); // per column
});

test("ChartCore.spec's colour fields become a colour rule", async () => {
  const { normalizeSpec } = await import("../dist/livestream.mjs");
  const spec = normalizeSpec({
    topic: "t", x: "ts", ys: ["price"], by: "sym", window: 10, palette: ["#a", "#b"],
    color_column: "sym", colors: { AAPL: "#b" }, next_color: 2, x_type: "datetime", mode: "append",
  });
  assert.deepEqual(spec.colors, { palette: ["#a", "#b"], assigned: { sym: { AAPL: "#b" } }, next: { sym: 2 } });
  assert.equal(spec.fps, 20);
  assert.equal(spec.kind, "line");
});

test("tz offsets give wall-clock milliseconds", () => {
  // 2024-01-15T12:00Z is 13:00 in Paris (CET), 2024-07-15T12:00Z is 14:00 (CEST)
  assert.equal(tzOffsetMs("Europe/Paris", Date.UTC(2024, 0, 15, 12)), 3_600_000);
  assert.equal(tzOffsetMs("Europe/Paris", Date.UTC(2024, 6, 15, 12)), 7_200_000);
  assert.equal(tzOffsetMs("UTC", Date.UTC(2024, 6, 15, 12)), 0);
});

for (const encoding of ["json", "arrow"]) {
  test(`${encoding}: by= series appear from templates, appends stream once per series per frame with rollover`, async (t) => {
    const srv = await startServer();
    t.after(() => srv.stop());
    await srv.cmd({ cmd: "append", topic: "trades", n: 30 });
    const client = connect(srv.url, { encoding });
    t.after(() => client.close());
    const fig = figure();
    const tmpl = template();
    const spec = {
      topic: "trades", x: "ts", ys: ["price"], by: "sym", kind: "line", window: 40, rows: 1000, fps: 20,
      x_type: "datetime", colors: { palette: ["#111111", "#222222", "#333333", "#444444"], assigned: { sym: { b: "#222222" } }, next: { sym: 2 } },
    };
    const chart = attachChart(client, spec, { ...fig, templates: [tmpl] }, manual);
    t.after(() => chart.detach());
    await subscriptionAt(chart.subscription, 30);
    chart.flush();
    // the snapshot drew three series, in order of first appearance, with legend items
    assert.deepEqual([...chart.sources.keys()], ["a", "b", "c"]);
    assert.equal(fig.plot.renderers.length, 3);
    assert.deepEqual(fig.legend.items.map((i) => i.label.value), ["a", "b", "c"]);
    for (const r of fig.plot.renderers) assert.equal(r.visible, true);
    // colours: "b" kept Python's, "a" and "c" continue after Python's two
    const colours = Object.fromEntries(fig.plot.renderers.map((r) => [r.name, r.glyph.line_color.value]));
    assert.equal(colours.b, "#222222");
    assert.equal(colours.a, "#333333");
    assert.equal(colours.c, "#444444");
    assert.equal(fig.plot.renderers[0].nonselection_glyph.line_alpha, 0.1);
    assert.equal(fig.plot.renderers[0].nonselection_glyph.line_color.value, colours.a);
    assert.equal(fig.plot.renderers[0].selection_glyph, "auto");
    assert.equal(tmpl.glyph.line_color.value, "#808080", "the template keeps its colour");
    assert.equal(tmpl.visible, false, "the template stays hidden");
    assert.deepEqual(chart.sources.get("a").data.x.length, 10);
    // datetimes are ms: seq 0 is 2024-01-01T00:00:00
    assert.equal(chart.sources.get("a").data.x[0], Date.UTC(2024, 0, 1));
    // five appends arrive; one frame streams them as one call per series, with rollover = window
    let last;
    for (let i = 0; i < 5; i++) last = await srv.cmd({ cmd: "append", topic: "trades", n: 30 });
    await subscriptionAt(chart.subscription, last.next);
    const before = chart.stats.streams;
    chart.flush();
    assert.equal(chart.stats.streams - before, 3);
    for (const key of ["a", "b", "c"]) {
      const src = chart.sources.get(key);
      // 50 new rows per series: trimmed to the window before streaming, as in Python
      assert.deepEqual(src.streams.at(-1), { rows: 40, rollover: 40 });
      assert.equal(src.data.x.length, 40, `${key} rolled over to the window`);
    }
    // the newest point of "a" is the newest row of sym a (seq 177 → price 100 + 177/8)
    const a = chart.sources.get("a").data;
    assert.equal(a.y.at(-1), 100 + 177 / 8);
    assert.equal(chart.status(), "");
  });
}

test("x=None plots against offsets; where= filters; several ys are series", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  await srv.cmd({ cmd: "append", topic: "t", n: 9 });
  const client = connect(srv.url);
  t.after(() => client.close());
  const fig = figure("t");
  const spec = { topic: "t", x: null, ys: ["price", "seq"], window: 100, where: { sym: ["a"] } };
  const chart = attachChart(client, spec, { ...fig, templates: [template()] }, manual);
  t.after(() => chart.detach());
  await subscriptionAt(chart.subscription, 9);
  chart.flush();
  assert.deepEqual([...chart.sources.keys()], ["price", "seq"]);
  assert.deepEqual(Array.from(chart.sources.get("seq").data.x), [0, 3, 6]);
  assert.deepEqual(Array.from(chart.sources.get("seq").data.y), [0, 3, 6]);
  const last = await srv.cmd({ cmd: "append", topic: "t", n: 6 });
  await subscriptionAt(chart.subscription, last.next);
  chart.flush();
  assert.deepEqual(Array.from(chart.sources.get("seq").data.x), [0, 3, 6, 9, 12]);
});

test("keyed topics are redrawn in place, sorted by x; bars over a categorical x aggregate per value", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  await srv.cmd({ cmd: "topic", topic: "quotes", key: "sym" });
  await srv.cmd({ cmd: "upsert", topic: "quotes", n: 50, keys: 5, seed: 3 });
  const client = connect(srv.url);
  t.after(() => client.close());
  const scat = figure("quotes");
  const chart = attachChart(client, { topic: "quotes", x: "qty", ys: ["price"], kind: "scatter", window: 100 },
    { ...scat, templates: [template()] }, manual);
  const barFig = figure("bars");
  const barSource = new FakeSource({ data: { x: [], y: [], color: [] } });
  const bars = attachChart(client, { topic: "quotes", x: "sym", ys: ["price"], kind: "bar", x_type: "categorical", window: 100 },
    { ...barFig, sources: { "": barSource } }, manual);
  t.after(() => (chart.detach(), bars.detach()));
  await until(chart.subscription, ["update"], () => chart.subscription.length === 5, "5 keys");
  chart.flush();
  bars.flush();
  const src = chart.sources.get("");
  assert.equal(src.data.x.length, 5);
  const xs = Array.from(src.data.x);
  assert.deepEqual(xs, [...xs].sort((a, b) => a - b));
  assert.equal(src.streams.length, 0, "keyed topics are not streamed");
  assert.deepEqual(barSource.data.x, ["k0", "k1", "k2", "k3", "k4"]);
  assert.deepEqual(barFig.plot.x_range.factors, ["k0", "k1", "k2", "k3", "k4"]);
  const win = chart.subscription.window;
  const bySym = Object.fromEntries(win.columns.sym.map((s, i) => [s, win.columns.price[i]]));
  assert.deepEqual(Array.from(barSource.data.y), ["k0", "k1", "k2", "k3", "k4"].map((k) => bySym[k]));
  // an upsert redraws in place: still five points
  const last = await srv.cmd({ cmd: "upsert", topic: "quotes", n: 20, keys: 5, seed: 4 });
  await subscriptionAt(chart.subscription, last.next);
  chart.flush();
  assert.equal(src.data.x.length, 5);
});

test("an empty chart's ranges holder keeps its points until a series has one", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const client = connect(srv.url);
  t.after(() => client.close());
  const fig = figure("e: price");
  const emptyRanges = new FakeSource({ data: { px: [0, 1], py: [0, 1] } });
  const chart = attachChart(client, { topic: "e", x: "seq", ys: ["price"], by: "sym", window: 100 },
    { ...fig, templates: [template()], emptyRanges }, manual);
  t.after(() => chart.detach());
  await until(chart.subscription, ["state"], () => chart.subscription.state === "waiting", "waiting");
  chart.flush();
  assert.deepEqual(Array.from(emptyRanges.data.px), [0, 1], "no data: the extent stays");
  const last = await srv.cmd({ cmd: "append", topic: "e", n: 6 });
  await subscriptionAt(chart.subscription, last.next);
  chart.flush();
  assert.ok(chart.sources.size > 0);
  assert.equal(emptyRanges.data.px.length, 0, "data came: the ranges follow it alone");
  assert.equal(emptyRanges.data.py.length, 0);
});

test("the title shows gaps, reconnecting and closed", async (t) => {
  const srv = await startServer({ retention_rows: 10 });
  t.after(() => srv.stop());
  await srv.cmd({ cmd: "append", topic: "g", n: 5 });
  // a long backoff: the test reconnects explicitly, once the rows it missed are gone
  const client = connect(srv.url, { backoff: { baseMs: 600_000, capMs: 600_000 } });
  t.after(() => client.close());
  const fig = figure("g: price");
  const chart = attachChart(client, { topic: "g", x: "seq", ys: ["price"], window: 100 }, { ...fig, templates: [template()] }, manual);
  t.after(() => chart.detach());
  await subscriptionAt(chart.subscription, 5);
  chart.flush();
  assert.equal(fig.plot.title.text, "g: price");
  // cut the connection, publish more than the retention: the resume is a gap
  const reconnected = until(client, ["state"], () => client.state === "reconnecting", "reconnecting");
  client.socket.terminate();
  await reconnected;
  chart.flush();
  assert.match(fig.plot.title.text, /reconnecting/);
  assert.equal(fig.plot.title.text_color, "#ef5350");
  const last = await srv.cmd({ cmd: "append", topic: "g", n: 30 });
  client.reconnectNow();
  await subscriptionAt(chart.subscription, last.next);
  chart.flush();
  assert.match(fig.plot.title.text, /⚠ 1 gap: rows lost/);
  assert.equal(chart.sources.get("").data.x.length, 10, "redrawn from the snapshot");
  client.close();
  chart.flush();
  assert.match(fig.plot.title.text, /closed/);
});

test("attachTable shows the newest rows first", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  await srv.cmd({ cmd: "append", topic: "tt", n: 12 });
  const client = connect(srv.url);
  t.after(() => client.close());
  const source = new FakeSource();
  const table = attachTable(client, { topic: "tt", rows: 3, columns: ["seq", "sym", "ts"] }, { source }, manual);
  t.after(() => table.detach());
  await subscriptionAt(table.subscription, 12);
  table.flush();
  assert.deepEqual(Array.from(source.data.seq), [11, 10, 9]);
  assert.deepEqual(source.data.sym, ["c", "b", "a"]);
  assert.deepEqual(Object.keys(source.data), ["seq", "sym", "ts"]);
});

test("decimate: a series of more rows than pixel columns holds an overview; zooming draws the range in detail", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  let last = await srv.cmd({ cmd: "append", topic: "big", n: 30_000 });
  const client = connect(srv.url, { encoding: "arrow" });
  t.after(() => client.close());
  const fig = figure("big");
  fig.plot.x_range = { start: 0, end: 1, have_updated_interactively: false };
  const spec = {
    topic: "big", x: "ts", ys: ["price"], by: "sym", kind: "line", window: 50_000, rows: 50_000, fps: 20,
    x_type: "datetime", decimate: 50, decimate_tail: 20,
  };
  const chart = attachChart(client, spec, { ...fig, templates: [template()] }, manual);
  t.after(() => chart.detach());
  await subscriptionAt(chart.subscription, last.next);
  chart.flush();
  const bound = 2 * (5 * 50 + 20);
  const a = () => chart.sources.get("a").data;
  assert.ok(a().x.length <= bound, `${a().x.length} points for 10,000 rows`);
  assert.equal(Math.floor(a().x.at(-1)), Date.UTC(2024, 0, 1) + 29_997, "the newest row is drawn");
  // more rows: redrawn as a bounded overview, not streamed
  last = await srv.cmd({ cmd: "append", topic: "big", n: 9_000 });
  await subscriptionAt(chart.subscription, last.next);
  const streams = chart.stats.streams;
  chart.flush();
  assert.equal(chart.stats.streams, streams);
  assert.ok(a().x.length <= bound);
  assert.equal(Math.floor(a().x.at(-1)), Date.UTC(2024, 0, 1) + 38_997);
  const overview = Array.from(a().x);
  // the user zooms (a tool sets the range): the range is drawn from the window in detail
  const t0 = Date.UTC(2024, 0, 1) + 3_000, t1 = t0 + 3_000;
  fig.plot.x_range = { start: t0, end: t1, have_updated_interactively: true };
  chart.flush();
  assert.deepEqual(chart.zoom(), [t0, t1]);
  const inOverview = overview.filter((x) => x >= t0 && x <= t1).length;
  assert.ok(a().x.length > 3 * inOverview, `${a().x.length} vs ${inOverview}`);
  assert.ok(a().x[0] >= t0 - 3 && a().x.at(-1) <= t1 + 3);
  // reset: back to the overview of the whole window
  fig.plot.x_range = { start: 0, end: 1, have_updated_interactively: false };
  chart.flush();
  assert.equal(chart.zoom(), null);
  assert.ok(a().x.length <= bound && Math.floor(a().x.at(-1)) === Date.UTC(2024, 0, 1) + 38_997);
});

test("decimate: 0 streams every row as before", async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const last = await srv.cmd({ cmd: "append", topic: "big", n: 3_000 });
  const client = connect(srv.url);
  t.after(() => client.close());
  const fig = figure("big");
  const spec = { topic: "big", x: "seq", ys: ["price"], kind: "line", window: 50_000, decimate: 0 };
  const chart = attachChart(client, spec, { ...fig, templates: [template()] }, manual);
  t.after(() => chart.detach());
  await subscriptionAt(chart.subscription, last.next);
  chart.flush();
  assert.equal(chart.sources.get("").data.x.length, 3_000);
  assert.equal(chart.stats.decimated, 0);
});
