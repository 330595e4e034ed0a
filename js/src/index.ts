/**
 * livestream's TypeScript client (browser and Node): see docs/protocol.md for the protocol.
 *
 * ```js
 * const client = Livestream.connect("ws://localhost:8765/ws");
 * const trades = client.subscribe("trades", {
 *   window: 50_000,
 *   onUpdate: (ev) => ev.reset ? (source.data = trades.window.columns)
 *                              : source.stream(ev.batch.columns, 50_000),
 *   onGap: (gap) => console.warn("lost rows", gap),
 * });
 * ```
 */

export { Client, ConnectionClosedError, RemoteError, VERSION, connect } from "./client.js";
export type { ClientEvents, ClientOptions, ClientState, PublishData } from "./client.js";
export { Subscription, DEFAULT_WINDOW } from "./subscription.js";
export type { SubscribeOptions, SubscriptionState, SubscriptionStats, UpdateEvent } from "./subscription.js";
export type { Batch, Column } from "./columns.js";
export { decodeArrow, decodeJsonColumns, sliceBatch } from "./columns.js";
export { KeyedTable, RollingWindow } from "./window.js";
export { bindColumnDataSource } from "./bokeh.js";
export type { BindOptions, ColumnDataSourceLike } from "./bokeh.js";
export {
  CloseCode, ERROR_CODES, PROTOCOL_VERSION, backoffDelay, packBinary, unpackBinary,
} from "./protocol.js";
export type {
  AckMessage, DataHeader, DataKind, Encoding, ErrorMessage, Field, GapMessage, GapReason,
  RefreshedMessage, SubscribedMessage, TopicMode, WelcomeMessage,
} from "./protocol.js";
export {
  attachChart, normalizeSpec, pyStr, seedColors, seriesColor, tzOffsetMs, DOWN_COLOR, UP_COLOR,
} from "./bokehChart.js";
export type {
  AttachedChart, AttachOptions, ChartKind, ChartModels, ChartSpec, ColorRule, PlotLike, RendererLike, SourceLike,
} from "./bokehChart.js";
export { attachTable } from "./bokehTable.js";
export { DEFAULT_BUCKETS, DEFAULT_TAIL, SeriesDecimator, m4Indices, maxPoints } from "./decimate.js";
export type { AttachedTable, TableModels, TableSpec } from "./bokehTable.js";
export { pageClient, plain, startChart, startTable } from "./bokehPage.js";
export type { ServerOptions } from "./bokehPage.js";
