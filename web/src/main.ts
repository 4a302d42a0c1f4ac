// The CityOS digital twin: the city's own data as the basemap (districts, water, roads,
// POIs as MapLibre vector sources from the city's own tile service, with the user's token),
// every other layer fetched through the authorised API as Arrow IPC and drawn by deck.gl
// over MapLibre GL, the station forecast from the deployed model's predict endpoint;
// nothing loaded from any other host.
import * as maplibregl from "maplibre-gl";
import "maplibre-gl/dist/maplibre-gl.css";
// MapLibre's worker, bundled by Vite and served from /twin/assets (never a CDN)
import workerUrl from "maplibre-gl/dist/maplibre-gl-worker.mjs?worker&url";
import { MapboxOverlay } from "@deck.gl/mapbox";
import { ArcLayer, PathLayer, ScatterplotLayer, SolidPolygonLayer, TextLayer } from "@deck.gl/layers";
import { TripsLayer } from "@deck.gl/geo-layers";
import { HexagonLayer } from "@deck.gl/aggregation-layers";
import type { Layer, PickingInfo } from "@deck.gl/core";
import "./style.css";
import { ApiError, authorise, col, f64, getArrow, getJSON, login, logout, paths, postJSON, query, token, type LayerInfo, type Me, type ModelInfo, type PredictAnswer } from "./api";
import { barChart, lineChart, type Series } from "./charts";
import { getLang, setLang, t, type Lang } from "./i18n";

type RGBA = [number, number, number, number];
const HOUR = 3_600_000;
const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

// ---------------------------------------------------------------- state
interface Poly { id: unknown; name: string; ring: [number, number][]; cx: number; cy: number }
interface Road { id: number; path: Float64Array; cls: string }
interface Station { id: unknown; x: number; y: number; rows: Int32Array }
interface SeriesLayer { ds: string; field: string; unit: string; t: Float64Array; v: Float64Array; ids: unknown[]; stations: Station[]; win: [number, number] }
interface Forecast { ds: string; byId: Map<string, { t: number[]; v: number[] }> }
interface Moving {
  ds: string; win: [number, number]; n: number; total: number; truncated: boolean;
  t: Float64Array; x: Float64Array; y: Float64Array; kind: unknown[];
  objStart: Int32Array; ids: unknown[]; bytes: number; fetchMs: number;
}
interface GovEvent { id: string; x: number; y: number; status: string; title?: string; department?: string | null; version?: number; [k: string]: unknown }
interface GovWarning { id: string; x: number; y: number; severity: string; status: string; rule?: string; kind?: string; [k: string]: unknown }
interface FlowsAnswer { od: { origin: unknown; destination: unknown; trips: number; ox: number; oy: number; dx: number; dy: number }[]; regions: { id: unknown; name: string; x: number; y: number; inflow: number; outflow: number }[]; trips: number }

const S = {
  me: null as Me | null,
  infos: new Map<string, LayerInfo>(),
  districts: [] as Poly[],
  roads: [] as Road[],
  series: null as SeriesLayer | null,
  forecast: null as Forecast | null,
  moving: null as Moving | null,
  speeds: null as { ds: string; bins: number[]; byBin: Map<number, Map<number, number>> } | null,
  flows: null as FlowsAnswer | null,
  events: [] as GovEvent[],
  warnings: [] as GovWarning[],
  govern: "unknown" as "unknown" | "routes" | "dataset" | "absent",
  kpi: null as Record<string, number | null> | null,
  frac: 0,
  enabled: new Set<string>(),
  notes: new Map<string, string>(),
  selected: null as { kind: "event" | "warning" | "station"; id: string } | null,
  brush: null as [number, number, number, number] | null,
  theme: "all",
  playing: false,
  version: 0,
  lastFrame: 0,
};

// the layers the user can toggle, in drawing order
const LAYERS = ["districts", "water", "flows", "roads", "speed", "labels", "pois", "hexagon", "od", "trips", "vehicles", "series", "forecast", "events", "warnings"] as const;
type LayerKey = (typeof LAYERS)[number];
const THEMES: Record<string, LayerKey[]> = {
  all: ["districts", "water", "roads", "labels", "pois", "vehicles", "series", "forecast", "events", "warnings"],
  traffic: ["districts", "water", "roads", "speed", "labels", "vehicles", "trips", "hexagon", "od"],
  safety: ["districts", "water", "roads", "labels", "pois", "events", "warnings", "hexagon"],
  environment: ["districts", "water", "roads", "labels", "series", "forecast", "warnings"],
  hazmat: ["districts", "water", "roads", "labels", "pois", "vehicles", "trips", "warnings", "events"],
};
const HAZMAT_WORDS = ["chem", "fuel", "gas", "hazard", "plant", "factory"];
// the same test as a MapLibre expression over a tile feature's category
const HAZMAT_EXPR = ["any", ...HAZMAT_WORDS.map((w) => ["in", w, ["downcase", ["to-string", ["get", "category"]]]])] as unknown as maplibregl.ExpressionSpecification;
// the basemap: MapLibre layers over the vector tiles of each dataset (toggle key -> layer ids)
const BASEMAP: Record<string, string[]> = { districts: ["districts", "district-borders"], water: ["water", "water-edge"], roads: ["roads"], pois: ["pois"] };

// ---------------------------------------------------------------- colours
function ramp(v: number, lo: number, hi: number): RGBA {
  // green -> yellow -> red
  const u = Math.max(0, Math.min(1, (v - lo) / (hi - lo || 1)));
  const r = u < 0.5 ? Math.round(60 + 390 * u) : 255;
  const g = u < 0.5 ? 200 : Math.round(200 - 340 * (u - 0.5));
  return [r, Math.max(g, 30), 60, 230];
}
const KIND_COLOR: Record<string, RGBA> = { taxi: [255, 214, 80, 230], bus: [90, 200, 255, 230], truck: [200, 140, 255, 230], hazmat: [255, 70, 70, 255], pedestrian: [160, 255, 160, 230] };
const STATUS_COLOR: Record<string, RGBA> = {
  received: [255, 200, 0, 255], dispatched: [255, 140, 0, 255], accepted: [80, 170, 255, 255], in_progress: [60, 120, 255, 255],
  resolved: [80, 220, 120, 255], verified: [60, 200, 100, 255], closed: [130, 140, 150, 255], returned: [255, 80, 200, 255], reopened: [255, 60, 60, 255],
};
const SEVERITY_COLOR: Record<string, RGBA> = { info: [120, 180, 255, 255], warning: [255, 170, 0, 255], critical: [255, 40, 40, 255] };
const CLASS_WIDTH: Record<string, number> = { motorway: 4, primary: 3, secondary: 2, tertiary: 1.5, residential: 1 };

// ---------------------------------------------------------------- time
function windowOf(info: LayerInfo, span: number): [number, number] {
  const a = info.t_min ? Date.parse(info.t_min) : Date.now() - span;
  const b = info.t_max ? Date.parse(info.t_max) : Date.now();
  // the first 00:00 UTC in the data (08:00 in Beijing: the morning rush) when there is one
  const day = Math.ceil(a / (24 * HOUR)) * 24 * HOUR;
  const s = day + span <= b ? day : Math.max(a, b - span);
  return [s, s + span];
}
const at = (w: [number, number], f = S.frac) => w[0] + f * (w[1] - w[0]);
function fmt(ms: number): string {
  return new Date(ms).toISOString().slice(5, 16).replace("T", " ") + "Z";
}
function lowerBound(a: Float64Array, lo: number, hi: number, x: number): number {
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (a[m] <= x) lo = m + 1;
    else hi = m;
  }
  return lo;
}

// ---------------------------------------------------------------- loading
function note(key: string, text: string): void {
  S.notes.set(key, text);
  renderLayerList();
}
function failure(e: unknown): string {
  if (e instanceof ApiError) return e.status === 403 ? t("forbidden") : e.status === 404 ? t("unavailable") : `${e.status}: ${e.message}`;
  return String(e);
}
function status(text: string): void {
  $("status").textContent = text;
}

async function loadBase(): Promise<void> {
  // the basemap itself is drawn from vector tiles; districts also come as Arrow for what
  // deck.gl draws over them (labels at their centres, the in/out flow fill)
  for (const k of Object.keys(BASEMAP)) {
    const i = S.infos.get(k);
    note(k, i?.tiles ? `${i.rows} ${t("rows")}, ${t("tiles")}` : i ? t("unavailable") : t("forbidden"));
  }
  const d = S.infos.get("districts");
  if (!d) return;
  const { table } = await getArrow(d.arrow, { columns: "name" });
  const { flat, starts } = paths(table);
  const ids = col(table, "id");
  const names = col(table, "name");
  S.districts = ids.map((id, i) => {
    const ring: [number, number][] = [];
    let sx = 0, sy = 0;
    for (let k = starts[i]; k < starts[i + 1]; k++) {
      ring.push([flat[2 * k], flat[2 * k + 1]]);
      sx += flat[2 * k]; sy += flat[2 * k + 1];
    }
    const n = Math.max(ring.length, 1);
    return { id, name: String(names[i] ?? id), ring, cx: sx / n, cy: sy / n };
  });
}

/** Road geometries by id, for the speed layer only (the roads themselves are tiles). */
let roadsLoading: Promise<void> | null = null;
function ensureRoads(): Promise<void> {
  const r = S.infos.get("roads");
  if (!r || S.roads.length) return Promise.resolve();
  roadsLoading ??= (async () => {
    const { table } = await getArrow(r.arrow, { columns: "road_class" });
    const { flat, starts } = paths(table);
    const ids = f64(table, "id");
    const cls = col(table, "road_class");
    S.roads = Array.from(ids, (id, i) => ({ id, path: flat.subarray(2 * starts[i], 2 * starts[i + 1]), cls: String(cls[i] ?? "") }));
  })();
  return roadsLoading;
}

function pickSeries(): { info: LayerInfo; field: string } | null {
  const cands = [...S.infos.values()].filter((i) => i.kind === "series" && !i.fields.some((f) => f.name === "yhat"));
  cands.sort((a, b) => Number(b.name.includes("air")) - Number(a.name.includes("air")));
  for (const info of cands) {
    const nums = info.fields.filter((f) => f.type === "float64");
    const f = nums.find((f) => f.name === "pm25") ?? nums.find((f) => f.name === "value") ?? nums[0];
    if (f) return { info, field: f.name };
  }
  return null;
}

async function loadSeries(): Promise<void> {
  const pick = pickSeries();
  if (!pick) return note("series", t("unavailable"));
  const fc = [...S.infos.values()].find((i) => i.kind === "series" && i.fields.some((f) => f.name === "yhat"));
  let win: [number, number];
  if (fc && fc.t_min && fc.t_max) win = [Date.parse(fc.t_min) - 2 * 24 * HOUR, Date.parse(fc.t_max) + HOUR];
  else {
    const b = pick.info.t_max ? Date.parse(pick.info.t_max) : Date.now();
    win = [b - 3 * 24 * HOUR, b + 1];
  }
  const { table, masked } = await getArrow(pick.info.arrow, { start: win[0], end: win[1], columns: pick.field });
  const ids = col(table, "id");
  const tt = f64(table, "t"), v = f64(table, pick.field), x = f64(table, "x"), y = f64(table, "y");
  const stations: Station[] = [];
  let i = 0;
  while (i < ids.length) {
    let j = i;
    while (j < ids.length && ids[j] === ids[i]) j++;
    const rows = new Int32Array(j - i).map((_, k) => i + k);
    stations.push({ id: ids[i], x: x[i], y: y[i], rows });
    i = j;
  }
  const unit = pick.info.fields.find((f) => f.name === pick.field)?.unit ?? "";
  S.series = { ds: pick.info.name, field: pick.field, unit, t: tt, v, ids, stations, win };
  note("series", `${pick.info.name}.${pick.field}: ${stations.length} × ${table.numRows} ${t("rows")}${masked.length ? ` (${t("masked")}: ${masked.join(",")})` : ""}`);
  if (fc) {
    const f = await getArrow(fc.arrow, { start: win[0], end: win[1], columns: "yhat,horizon" });
    const fid = col(f.table, "id"), ft = f64(f.table, "t"), fy = f64(f.table, "yhat"), fh = f64(f.table, "horizon");
    const best = new Map<string, Map<number, [number, number]>>();
    for (let k = 0; k < fid.length; k++) {
      const key = String(fid[k]);
      let m = best.get(key);
      if (!m) best.set(key, (m = new Map()));
      const cur = m.get(ft[k]);
      if (!cur || fh[k] < cur[1]) m.set(ft[k], [fy[k], fh[k]]); // the shortest horizon per time
    }
    const byId = new Map<string, { t: number[]; v: number[] }>();
    for (const [key, m] of best) {
      const ts = [...m.keys()].sort((a, b) => a - b);
      byId.set(key, { t: ts, v: ts.map((q) => m.get(q)![0]) });
    }
    S.forecast = { ds: fc.name, byId };
    note("forecast", `${fc.name}: ${f.table.numRows} ${t("rows")}`);
  } else note("forecast", t("unavailable"));
}

function movingInfo(): LayerInfo | undefined {
  return S.infos.get("vehicles") ?? [...S.infos.values()].find((i) => i.kind === "moving" && i.name !== "events" && i.name !== "warnings");
}

async function loadMoving(win?: [number, number]): Promise<void> {
  const info = movingInfo();
  if (!info) return note("vehicles", t("unavailable"));
  const w = win ?? S.moving?.win ?? windowOf(info, HOUR);
  const t0 = performance.now();
  const bbox = viewBbox();
  const cols = info.fields.some((f) => f.name === "kind") ? "kind" : "id";
  const a = await getArrow(info.arrow, { start: Math.floor(w[0]), end: Math.ceil(w[1]), bbox, columns: cols, limit: 1_000_000 });
  const fetchMs = performance.now() - t0;
  const ids = col(a.table, "id");
  const starts: number[] = [];
  const uniq: unknown[] = [];
  for (let i = 0; i < ids.length; i++)
    if (i === 0 || ids[i] !== ids[i - 1]) {
      starts.push(i);
      uniq.push(ids[i]);
    }
  starts.push(ids.length);
  S.moving = {
    ds: info.name, win: w, n: a.table.numRows, total: a.total, truncated: a.truncated,
    t: f64(a.table, "t"), x: f64(a.table, "x"), y: f64(a.table, "y"), kind: col(a.table, "kind"),
    objStart: Int32Array.from(starts), ids: uniq, bytes: a.bytes, fetchMs,
  };
  note("vehicles", `${info.name}: ${uniq.length} ids, ${a.table.numRows} pts, ${(a.bytes / 1e6).toFixed(1)} MB Arrow, ${fetchMs.toFixed(0)} ms${a.truncated ? " (truncated)" : ""}`);
  note("trips", `${fmt(w[0])} – ${fmt(w[1])}`);
  note("hexagon", `10 min`);
}

async function loadSpeeds(): Promise<void> {
  const info = [...S.infos.values()].find((i) => i.kind === "network_series");
  if (!info) return note("speed", t("unavailable"));
  const field = info.fields.find((f) => f.name === "speed_kmh") ?? info.fields.find((f) => f.type === "float64");
  if (!field) return note("speed", t("unavailable"));
  const w = S.moving?.win ?? windowOf(info, HOUR);
  const { table } = await getArrow(info.arrow, { start: Math.floor(w[0]), end: Math.ceil(w[1]), columns: field.name });
  const ids = f64(table, "id"), tt = f64(table, "t"), v = f64(table, field.name);
  const byBin = new Map<number, Map<number, number>>();
  for (let i = 0; i < ids.length; i++) {
    let m = byBin.get(tt[i]);
    if (!m) byBin.set(tt[i], (m = new Map()));
    m.set(ids[i], v[i]);
  }
  S.speeds = { ds: info.name, bins: [...byBin.keys()].sort((a, b) => a - b), byBin };
  note("speed", `${info.name}: ${table.numRows} ${t("rows")}, ${S.speeds.bins.length} bins`);
}

async function loadFlows(): Promise<void> {
  const m = S.moving;
  if (!m || !S.infos.get("districts")) return note("flows", t("unavailable"));
  try {
    S.flows = await getJSON<FlowsAnswer>(`/twin/flows/${m.ds}` + query({ start: Math.floor(m.win[0]), end: Math.ceil(m.win[1]), regions: "districts" }));
    note("flows", `${S.flows.trips} trips`);
    note("od", `${S.flows.od.length} pairs`);
  } catch (e) {
    note("flows", failure(e));
    note("od", failure(e));
  }
}

function asList<T>(j: unknown, key: string): T[] {
  if (Array.isArray(j)) return j as T[];
  const o = j as Record<string, unknown>;
  for (const k of [key, "items", "results", "data"]) if (Array.isArray(o?.[k])) return o[k] as T[];
  return [];
}
function normalisePoint<T extends { x: number; y: number }>(o: Record<string, unknown>): T {
  const x = Number(o.x ?? o.lon ?? o.long ?? (o.location as number[] | undefined)?.[0]);
  const y = Number(o.y ?? o.lat ?? (o.location as number[] | undefined)?.[1]);
  return { ...o, x, y } as unknown as T;
}

async function loadGovern(): Promise<void> {
  try {
    const ev = await getJSON<unknown>("/govern/events" + query({ limit: 2000 }));
    S.events = asList<Record<string, unknown>>(ev, "events").map((o) => normalisePoint<GovEvent>(o));
    S.govern = "routes";
    note("events", `${S.events.length} ${t("rows")}`);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) return note("events", failure(e));
    const info = S.infos.get("events");
    if (info) {
      // no governance routes on this server: show the events dataset read-only
      const { table } = await getArrow(info.arrow, { columns: "status,title,department", limit: 5000 });
      const ids = col(table, "id"), st = col(table, "status"), ti = col(table, "title"), de = col(table, "department");
      const x = f64(table, "x"), y = f64(table, "y");
      S.events = ids.map((id, i) => ({ id: String(id), x: x[i], y: y[i], status: String(st[i]), title: String(ti[i] ?? ""), department: de[i] as string | null }));
      S.govern = "dataset";
      note("events", `${S.events.length} ${t("rows")} (read-only: /govern ${t("unavailable")})`);
    } else {
      S.govern = "absent";
      note("events", `/govern ${t("unavailable")}`);
    }
  }
  if (S.govern === "routes") {
    try {
      const w = await getJSON<unknown>("/govern/warnings");
      S.warnings = asList<Record<string, unknown>>(w, "warnings").map((o) => normalisePoint<GovWarning>(o));
      note("warnings", `${S.warnings.length} ${t("rows")}`);
    } catch (e) {
      note("warnings", failure(e));
    }
    await loadKpi();
    startStream();
  } else {
    const info = S.infos.get("warnings");
    if (info) {
      const { table } = await getArrow(info.arrow, { columns: "severity,status,rule,kind" });
      const ids = col(table, "id"), sv = col(table, "severity"), st = col(table, "status");
      const x = f64(table, "x"), y = f64(table, "y");
      S.warnings = ids.map((id, i) => ({ id: String(id), x: x[i], y: y[i], severity: String(sv[i]), status: String(st[i]) }));
      note("warnings", `${S.warnings.length} ${t("rows")} (read-only)`);
    } else note("warnings", `/govern ${t("unavailable")}`);
  }
}

async function loadKpi(): Promise<void> {
  try {
    S.kpi = await getJSON<Record<string, number | null>>("/govern/kpi");
  } catch {
    S.kpi = null;
  }
  try {
    const ev = await getJSON<unknown>("/govern/evaluation?level=department&min_sample=1");
    const rows = asList<Record<string, unknown>>(ev, "departments");
    const bars = rows.filter((r) => r.on_time_rate != null).slice(0, 12).map((r) => ({ label: String(r.department ?? r.name ?? r.key ?? "?").slice(0, 18), value: Number(r.on_time_rate) }));
    barChart($("chart-dept"), t("chart_dept"), bars, 1, (v) => `${(100 * v).toFixed(0)}%`);
  } catch {
    $("chart-dept").innerHTML = "";
  }
  renderKpis();
}

// ---------------------------------------------------------------- live
let stream: EventSource | null = null;
function startStream(): void {
  if (stream || !token()) return;
  stream = new EventSource(`/govern/stream?access_token=${encodeURIComponent(token()!)}`);
  const upsert = <T extends { id: string }>(list: T[], o: T) => {
    const i = list.findIndex((e) => e.id === o.id);
    if (i >= 0) list[i] = { ...list[i], ...o };
    else list.push(o);
  };
  const onEvent = (m: MessageEvent) => {
    const o = normalisePoint<GovEvent>(JSON.parse(m.data as string));
    upsert(S.events, o);
    if (S.selected?.kind === "event" && S.selected.id === o.id) void openEvent(o.id);
    void loadKpi();
    render();
  };
  const onWarning = (m: MessageEvent) => {
    const o = normalisePoint<GovWarning>(JSON.parse(m.data as string));
    upsert(S.warnings, o);
    if (S.selected?.kind === "warning" && S.selected.id === o.id) openWarning(o.id);
    void loadKpi();
    render();
  };
  stream.addEventListener("event.created", onEvent);
  stream.addEventListener("event.updated", onEvent);
  stream.addEventListener("warning.raised", onWarning);
  stream.addEventListener("warning.updated", onWarning);
}

let livePoll: number | null = null;
function setLive(on: boolean): void {
  if (livePoll !== null) clearInterval(livePoll);
  livePoll = null;
  if (!on) return;
  const tick = async () => {
    const infos = await getJSON<LayerInfo[]>("/twin/layers");
    const info = infos.find((i) => i.name === S.moving?.ds);
    if (!info?.t_max) return;
    const b = Date.parse(info.t_max);
    if (S.moving && b <= S.moving.win[1] - 1 && S.frac === 1) return;
    S.infos.set(info.name, info);
    await loadMoving([b - HOUR, b + 1]);
    S.frac = 1;
    ($("time") as HTMLInputElement).value = "1000";
    render();
  };
  void tick();
  livePoll = window.setInterval(() => void tick(), 3000);
}

// ---------------------------------------------------------------- map
let map: maplibregl.Map;
let overlay: MapboxOverlay;

function viewBbox(): string | undefined {
  if (!map) return undefined;
  const b = map.getBounds();
  const pad = 0.25;
  const dx = (b.getEast() - b.getWest()) * pad, dy = (b.getNorth() - b.getSouth()) * pad;
  return [b.getWest() - dx, b.getSouth() - dy, b.getEast() + dx, b.getNorth() + dy].map((v) => v.toFixed(5)).join(",");
}

function initialView(): { center: [number, number]; zoom: number } {
  const boxes = [...S.infos.values()].filter((i) => i.bbox && ["districts", "roads"].includes(i.name)).map((i) => i.bbox!);
  const all = boxes.length ? boxes : [...S.infos.values()].filter((i) => i.bbox).map((i) => i.bbox!);
  if (!all.length) return { center: [116.4, 39.91], zoom: 11 };
  const b = [Math.min(...all.map((q) => q[0])), Math.min(...all.map((q) => q[1])), Math.max(...all.map((q) => q[2])), Math.max(...all.map((q) => q[3]))];
  const span = Math.max(b[2] - b[0], b[3] - b[1], 1e-3);
  return { center: [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2], zoom: Math.max(3, Math.min(16, Math.log2(360 / span) + 0.2)) };
}

function basemapStyle(): maplibregl.StyleSpecification {
  const sources: Record<string, maplibregl.SourceSpecification> = {};
  const layers: maplibregl.LayerSpecification[] = [{ id: "background", type: "background", paint: { "background-color": "#0d1726" } }];
  const source = (name: string): boolean => {
    const i = S.infos.get(name);
    if (!i?.tiles) return false;
    sources[name] = { type: "vector", tiles: [location.origin + i.tiles], minzoom: 0, maxzoom: 14, ...(i.bbox ? { bounds: i.bbox } : {}) };
    return true;
  };
  if (source("districts"))
    layers.push({ id: "districts", type: "fill", source: "districts", "source-layer": "districts", paint: { "fill-color": "#283e60", "fill-opacity": 0.5 } },
      { id: "district-borders", type: "line", source: "districts", "source-layer": "districts", paint: { "line-color": "#7896c8", "line-width": 2, "line-opacity": 0.8 } });
  if (source("water"))
    layers.push({ id: "water", type: "fill", source: "water", "source-layer": "water", paint: { "fill-color": "#1d6fb8", "fill-opacity": 0.9 } },
      { id: "water-edge", type: "line", source: "water", "source-layer": "water", paint: { "line-color": "#5ab0f0", "line-width": 1 } });
  if (source("roads"))
    layers.push({
      id: "roads", type: "line", source: "roads", "source-layer": "roads", layout: { "line-cap": "round", "line-join": "round" },
      paint: { "line-color": "#96a0b4", "line-opacity": 0.65, "line-width": ["match", ["get", "road_class"], "motorway", 4, "arterial", 3, "primary", 2.5, "secondary", 2, "tertiary", 1.5, 1] },
    });
  if (source("pois"))
    layers.push({ id: "pois", type: "circle", source: "pois", "source-layer": "pois", paint: { "circle-radius": 5, "circle-color": ["case", HAZMAT_EXPR, "#ff5a28", "#c8c878"], "circle-opacity": 0.9 } });
  return { version: 8, sources, layers };
}

/** Show the basemap layers the user enabled (and only hazardous POIs in that view). */
function applyBasemap(): void {
  if (!map) return;
  for (const [k, ids] of Object.entries(BASEMAP))
    for (const id of ids) if (map.getLayer(id)) map.setLayoutProperty(id, "visibility", S.enabled.has(k) ? "visible" : "none");
  if (map.getLayer("pois")) map.setFilter("pois", hazmatOnly() ? (HAZMAT_EXPR as unknown as maplibregl.FilterSpecification) : null);
}
function basemapIds(): string[] {
  return Object.entries(BASEMAP).filter(([k, ids]) => S.enabled.has(k) && map?.getLayer(ids[0])).map(([k]) => k);
}

function createMap(): void {
  maplibregl.setWorkerUrl(workerUrl);
  const v = initialView();
  map = new maplibregl.Map({
    container: "map",
    // the city's own vector tiles, no glyphs, no sprites: nothing from another host
    style: basemapStyle(),
    // the user's token on every tile request, so tiles are read under the user's rights
    transformRequest: (url: string) => authorise(url),
    center: v.center,
    zoom: v.zoom,
    attributionControl: false,
    dragRotate: false,
    pitchWithRotate: false,
    canvasContextAttributes: { preserveDrawingBuffer: true },
  });
  overlay = new MapboxOverlay({
    interleaved: false,
    layers: [],
    onClick: (info: PickingInfo) => onPick(info),
    getTooltip: (info: PickingInfo) => tooltip(info),
    onAfterRender: () => {
      S.lastFrame = performance.now();
      frames++;
    },
  });
  map.addControl(overlay as unknown as maplibregl.IControl);
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.on("moveend", () => {
    // the moving-object layer is filtered by the viewport server-side
    if (S.moving && !S.playing) void loadMoving().then(render);
  });
  initBrush();
}
let frames = 0;

function tooltip(info: PickingInfo): string | null {
  const o = info.object as Record<string, unknown> | undefined;
  if (!o) {
    // the basemap is MapLibre's: ask it what is drawn under the pointer
    const ids = ["pois", "water", "districts"].filter((id) => map.getLayer(id) && S.enabled.has(id));
    const f = ids.length ? map.queryRenderedFeatures([info.x, info.y], { layers: ids })[0] : undefined;
    if (!f) return null;
    const p = f.properties as Record<string, unknown>;
    return f.layer.id === "pois" ? `${p.name} (${p.category})` : f.layer.id === "water" ? `${p.name} (${p.kind})` : String(p.name ?? "");
  }
  if (info.layer?.id === "events") return `${o.id} · ${o.status} · ${o.title ?? ""}`;
  if (info.layer?.id === "warnings") return `${o.id} · ${o.severity} · ${o.status}`;
  if (info.layer?.id === "series" || info.layer?.id === "forecast") return `${o.id}: ${Number(o.value).toFixed(1)}`;
  if (info.layer?.id === "pois") return `${o.name} (${o.category})`;
  if (info.layer?.id === "districts" || info.layer?.id === "flows") return String(o.name ?? "");
  return null;
}

// ---------------------------------------------------------------- layers
function stationValue(st: Station, tm: number): number {
  const s = S.series!;
  // the last reading at or before tm (within 3 h)
  let best = NaN, bt = -Infinity;
  for (const r of st.rows) {
    const tr = s.t[r];
    if (tr <= tm && tr > bt && Number.isFinite(s.v[r])) { bt = tr; best = s.v[r]; }
  }
  return tm - bt <= 3 * HOUR ? best : NaN;
}
function forecastValue(id: unknown, tm: number): number {
  const f = S.forecast?.byId.get(String(id));
  if (!f) return NaN;
  let best = NaN;
  for (let i = 0; i < f.t.length; i++) if (f.t[i] <= tm) best = f.v[i];
  return best;
}
function seriesRange(): [number, number] {
  const s = S.series!;
  const vals = Array.from(s.v).filter(Number.isFinite).sort((a, b) => a - b);
  if (!vals.length) return [0, 1];
  return [vals[Math.floor(vals.length * 0.05)], vals[Math.floor(vals.length * 0.95)]];
}

function vehiclePositions(tm: number): { pos: Float64Array; color: Uint8Array; n: number } {
  const m = S.moving!;
  const n = m.ids.length;
  const pos = new Float64Array(n * 2);
  const color = new Uint8Array(n * 4);
  let k = 0;
  for (let o = 0; o < n; o++) {
    const a = m.objStart[o], b = m.objStart[o + 1];
    const i = lowerBound(m.t, a, b, tm) - 1;
    if (i < a || tm - m.t[i] > 120_000) continue; // not seen in the last 2 minutes
    pos[2 * k] = m.x[i];
    pos[2 * k + 1] = m.y[i];
    const c = KIND_COLOR[String(m.kind[i])] ?? [255, 255, 255, 220];
    color.set(c, 4 * k);
    k++;
  }
  return { pos, color, n: k };
}

function tripsData(): { path: Float64Array; ts: Float32Array; kind: string }[] {
  const m = S.moving!;
  const out = [];
  for (let o = 0; o < m.ids.length; o++) {
    const a = m.objStart[o], b = m.objStart[o + 1];
    if (b - a < 2) continue;
    const path = new Float64Array((b - a) * 2);
    const ts = new Float32Array(b - a);
    for (let i = a; i < b; i++) {
      path[2 * (i - a)] = m.x[i];
      path[2 * (i - a) + 1] = m.y[i];
      ts[i - a] = (m.t[i] - m.win[0]) / 1000;
    }
    out.push({ path, ts, kind: String(m.kind[a]) });
  }
  return out;
}
let tripsCache: { key: unknown; data: ReturnType<typeof tripsData> } | null = null;

function speedAt(tm: number): Map<number, number> | null {
  const s = S.speeds;
  if (!s || !s.bins.length) return null;
  let b = s.bins[0];
  for (const x of s.bins) if (x <= tm) b = x;
  return s.byBin.get(b) ?? null;
}

function hazmatOnly(): boolean {
  return S.theme === "hazmat";
}

function buildLayers(): Layer[] {
  const L: Layer[] = [];
  const on = (k: LayerKey) => S.enabled.has(k);
  const tm = S.moving ? at(S.moving.win) : 0;
  // districts, water, roads and POIs are MapLibre's vector-tile basemap, under all of these
  if (on("flows") && S.flows) {
    const net = new Map(S.flows.regions.map((r) => [String(r.id), r.inflow - r.outflow]));
    const mx = Math.max(1, ...[...net.values()].map(Math.abs));
    L.push(new SolidPolygonLayer<Poly>({
      id: "flows", data: S.districts, getPolygon: (d) => d.ring, pickable: true,
      getFillColor: (d) => { const v = (net.get(String(d.id)) ?? 0) / mx; return v >= 0 ? [60, 160, 255, 40 + 180 * v] : [255, 120, 60, 40 - 180 * v]; },
      updateTriggers: { getFillColor: [S.flows] },
    }));
  }
  if (on("speed") && S.roads.length && S.speeds) {
    const sp = speedAt(tm);
    L.push(new PathLayer<Road>({
      id: "speed", data: S.roads, getPath: (d) => d.path, positionFormat: "XY", widthUnits: "pixels",
      getWidth: (d) => (CLASS_WIDTH[d.cls] ?? 1) + 1.5,
      getColor: (d) => { const v = sp?.get(d.id); return v === undefined ? [0, 0, 0, 0] : ramp(-v, -60, -5); },
      updateTriggers: { getColor: [sp] },
    }));
  }
  if (on("labels") && S.districts.length)
    L.push(new TextLayer<Poly>({ id: "labels", data: S.districts, getPosition: (d) => [d.cx, d.cy], getText: (d) => d.name, getSize: 13, getColor: [230, 236, 250, 255], fontFamily: "DejaVu Sans, WenQuanYi Micro Hei, Noto Sans CJK SC, sans-serif", characterSet: "auto", fontSettings: { buffer: 6, fontSize: 48 }, background: true, getBackgroundColor: [10, 18, 32, 150], backgroundPadding: [3, 1] }));
  if (S.moving && S.moving.n) {
    const m = S.moving;
    if (on("hexagon")) {
      const a = lowerWindow(tm - 10 * 60_000), idx: number[] = [];
      for (let o = 0; o < m.ids.length; o++) {
        const s = m.objStart[o], e = m.objStart[o + 1];
        for (let i = lowerBound(m.t, s, e, a); i < e && m.t[i] <= tm; i++) idx.push(i);
      }
      L.push(new HexagonLayer<number>({ id: "hexagon", data: idx, getPosition: (i) => [m.x[i], m.y[i]], radius: 350, extruded: false, opacity: 0.55, gpuAggregation: false, colorRange: [[255, 255, 178], [254, 217, 118], [254, 178, 76], [253, 141, 60], [240, 59, 32], [189, 0, 38]], pickable: true }));
    }
    if (on("od") && S.flows)
      L.push(new ArcLayer({ id: "od", data: S.flows.od.filter((d) => d.origin !== d.destination), getSourcePosition: (d: FlowsAnswer["od"][number]) => [d.ox, d.oy], getTargetPosition: (d: FlowsAnswer["od"][number]) => [d.dx, d.dy], getWidth: (d: FlowsAnswer["od"][number]) => Math.min(12, 1 + Math.sqrt(d.trips)), getSourceColor: [60, 170, 255, 220], getTargetColor: [255, 90, 160, 220], widthUnits: "pixels" }));
    if (on("trips")) {
      if (!tripsCache || tripsCache.key !== m) tripsCache = { key: m, data: tripsData() };
      const data = hazmatOnly() ? tripsCache.data.filter((d) => d.kind === "hazmat") : tripsCache.data;
      L.push(new TripsLayer({ id: "trips", data, getPath: (d: { path: Float64Array }) => d.path, positionFormat: "XY", getTimestamps: (d: { ts: Float32Array }) => d.ts, getColor: (d: { kind: string }) => KIND_COLOR[d.kind] ?? [255, 255, 255, 255], currentTime: (tm - m.win[0]) / 1000, trailLength: 300, fadeTrail: true, widthMinPixels: 2, capRounded: true, jointRounded: true }));
    }
    if (on("vehicles")) {
      const v = vehiclePositions(tm);
      L.push(new ScatterplotLayer({ id: "vehicles", data: { length: v.n, attributes: { getPosition: { value: v.pos, size: 2 }, getFillColor: { value: v.color, size: 4, normalized: true } } }, getRadius: 4, radiusUnits: "pixels", radiusMinPixels: 2, updateTriggers: { getPosition: [tm, m], getFillColor: [tm, m] } }));
    }
  }
  if (S.series) {
    const s = S.series;
    const tS = at(s.win);
    const [lo, hi] = seriesRange();
    const data = s.stations.map((st) => ({ id: st.id, x: st.x, y: st.y, value: stationValue(st, tS), predicted: forecastValue(st.id, tS) }));
    type D = (typeof data)[number];
    if (on("series"))
      L.push(new ScatterplotLayer<D>({ id: "series", data, getPosition: (d) => [d.x, d.y], getRadius: 11, radiusUnits: "pixels", getFillColor: (d) => (Number.isFinite(d.value) ? ramp(d.value, lo, hi) : [90, 90, 90, 160]), stroked: true, getLineColor: [10, 10, 10, 255], lineWidthMinPixels: 1, pickable: true, updateTriggers: { getFillColor: [tS, s] } }));
    if (on("forecast") && S.forecast)
      L.push(new ScatterplotLayer<D>({ id: "forecast", data: data.filter((d) => Number.isFinite(d.predicted)), getPosition: (d) => [d.x, d.y], getRadius: 16, radiusUnits: "pixels", filled: false, stroked: true, getLineColor: (d) => ramp(d.predicted, lo, hi), lineWidthMinPixels: 4, pickable: true, updateTriggers: { getLineColor: [tS, s] } }));
  }
  if (on("events") && S.events.length)
    L.push(new ScatterplotLayer<GovEvent>({ id: "events", data: S.events.filter((e) => Number.isFinite(e.x)), getPosition: (d) => [d.x, d.y], getRadius: 7, radiusUnits: "pixels", getFillColor: (d) => STATUS_COLOR[d.status] ?? [255, 255, 255, 255], stroked: true, getLineColor: [0, 0, 0, 255], lineWidthMinPixels: 1, pickable: true, updateTriggers: { getFillColor: [S.version] } }));
  if (on("warnings") && S.warnings.length)
    L.push(new ScatterplotLayer<GovWarning>({ id: "warnings", data: S.warnings.filter((w) => Number.isFinite(w.x)), getPosition: (d) => [d.x, d.y], getRadius: (d) => (d.severity === "critical" ? 14 : 10), radiusUnits: "pixels", stroked: true, getFillColor: (d) => { const c = SEVERITY_COLOR[d.severity] ?? [255, 255, 255, 255]; return [c[0], c[1], c[2], d.status === "open" ? 70 : 25]; }, getLineColor: (d) => { const c = SEVERITY_COLOR[d.severity] ?? [255, 255, 255, 255]; return d.status === "open" ? c : [c[0], c[1], c[2], 110]; }, lineWidthMinPixels: 3, pickable: true, updateTriggers: { getLineColor: [S.version], getFillColor: [S.version] } }));
  return L;
}
function lowerWindow(x: number): number {
  return x;
}

function render(): void {
  S.version++;
  applyBasemap();
  if (S.enabled.has("speed") && S.speeds && !S.roads.length) void ensureRoads().then(render);
  if (overlay) overlay.setProps({ layers: buildLayers() });
  renderTime();
  renderKpis();
}

// ---------------------------------------------------------------- panels
function renderLayerList(): void {
  const ul = $("layer-list");
  if (!ul) return;
  ul.innerHTML = "";
  for (const k of LAYERS) {
    const li = document.createElement("li");
    const id = `layer-${k}`;
    li.innerHTML = `<label><input type="checkbox" id="${id}" data-layer="${k}"> <span>${t("layer." + k)}</span></label><span class="note" id="note-${k}"></span>`;
    const cb = li.querySelector("input") as HTMLInputElement;
    cb.checked = S.enabled.has(k);
    cb.addEventListener("change", () => {
      if (cb.checked) S.enabled.add(k);
      else S.enabled.delete(k);
      if ((k === "flows" || k === "od") && cb.checked && !S.flows) void loadFlows().then(render);
      render();
    });
    (li.querySelector(".note") as HTMLElement).textContent = S.notes.get(k) ?? "";
    ul.appendChild(li);
  }
}

function renderThemes(): void {
  const nav = $("themes");
  nav.innerHTML = "";
  for (const th of Object.keys(THEMES)) {
    const b = document.createElement("button");
    b.type = "button";
    b.id = `theme-${th}`;
    b.textContent = t(th);
    b.className = S.theme === th ? "on" : "";
    b.addEventListener("click", () => setTheme(th));
    nav.appendChild(b);
  }
}

function setTheme(th: string): void {
  S.theme = th;
  S.enabled = new Set(THEMES[th]);
  if ((S.enabled.has("flows") || S.enabled.has("od")) && !S.flows) void loadFlows().then(render);
  renderThemes();
  renderLayerList();
  render();
}

function airNow(): number | null {
  if (!S.series) return null;
  const tS = at(S.series.win);
  const vals = S.series.stations.map((s) => stationValue(s, tS)).filter(Number.isFinite);
  return vals.length ? vals.reduce((a, b) => a + b, 0) / vals.length : null;
}

function renderKpis(): void {
  const k = S.kpi;
  const air = airNow();
  const items: [string, string, string][] = [
    ["events_today", "kpi_events_today", k?.events_today != null ? String(k.events_today) : "—"],
    ["overdue", "kpi_overdue", k?.overdue != null ? String(k.overdue) : "—"],
    ["open_warnings", "kpi_open_warnings", k?.open_warnings != null ? String(k.open_warnings) : S.govern === "routes" ? "—" : String(S.warnings.filter((w) => w.status === "open").length || "—")],
    ["air", "kpi_air", air != null ? `${air.toFixed(0)} ${S.series?.unit ?? ""}` : "—"],
  ];
  if (k?.on_time_rate != null) items.push(["on_time_rate", "kpi_on_time", `${(100 * Number(k.on_time_rate)).toFixed(0)}%`]);
  $("kpis").innerHTML = items.map(([id, key, v]) => `<div class="kpi" id="kpi-${id}"><b>${v}</b><small>${t(key)}</small></div>`).join("");
}

function renderTime(): void {
  const parts: string[] = [];
  if (S.moving) parts.push(`${t("layer.vehicles").split(" ")[0]} ${fmt(at(S.moving.win))}`);
  if (S.series) parts.push(`${S.series.ds} ${fmt(at(S.series.win))}`);
  $("time-label").textContent = parts.join(" · ");
}

// ---------------------------------------------------------------- charts for the selection
let modelsCache: ModelInfo[] | null = null;
/** The deployed (production) model forecasting the sensor series, if the AI routes serve one. */
async function stationModel(ds: string): Promise<ModelInfo | null> {
  if (!modelsCache) {
    try {
      modelsCache = await getJSON<ModelInfo[]>("/ai/models");
    } catch (e) {
      if (e instanceof ApiError && [401, 403, 404].includes(e.status)) modelsCache = [];
      else throw e;
    }
  }
  const mine = modelsCache.filter((m) => (m.feature_spec?.dataset ?? "") === ds || ds in (m.datasets ?? {}));
  return mine.find((m) => m.stage === "production") ?? null;
}

interface StationForecast { source: "predict" | "dataset" | "none"; t: number[]; v: number[]; label: string; note: string }

/** The forecast for one station from the slider's time on: the deployed model's predict
 * endpoint on demand; without a deployed model, the batch-scored forecast dataset, said so. */
async function stationForecast(id: unknown, tm: number): Promise<StationForecast> {
  const s = S.series!;
  let why = t("no_model");
  try {
    const m = await stationModel(s.ds);
    if (m) {
      const a = await postJSON<PredictAnswer>(`/ai/models/${encodeURIComponent(m.name)}/predict`, { ids: [String(id)], at: new Date(tm).toISOString() });
      const rows = a.predictions.filter((p) => p.id === String(id)).sort((x, y) => Date.parse(x.t) - Date.parse(y.t));
      return { source: "predict", t: rows.map((p) => Date.parse(p.t)), v: rows.map((p) => p.yhat), label: `${t("predicted")} (${a.model} v${a.version}, ${a.family})`, note: `${t("predicted_by")} ${a.model} v${a.version} · ${fmt(tm)}` };
    }
  } catch (e) {
    why = `${t("no_model")} (${failure(e)})`;
  }
  const f = S.forecast?.byId.get(String(id));
  if (f) return { source: "dataset", t: f.t, v: f.v, label: `${t("predicted")} (${S.forecast!.ds})`, note: `${why}; ${t("scored_fallback")} ${S.forecast!.ds}` };
  return { source: "none", t: [], v: [], label: t("predicted"), note: why };
}

let stationAsk = 0;
async function stationChart(id: unknown): Promise<void> {
  const s = S.series;
  if (!s) return;
  const st = s.stations.find((q) => String(q.id) === String(id));
  if (!st) return;
  const ask = ++stationAsk;
  const obs: Series = { name: `${t("observed")} ${s.field}`, color: "#6fd3ff", t: Array.from(st.rows, (r) => s.t[r]), v: Array.from(st.rows, (r) => s.v[r]) };
  const box = $("chart-station");
  const title = `${t("chart_station")} · ${id}`;
  box.dataset.station = String(id);
  box.dataset.forecast = "pending";
  lineChart(box, title, [obs]);
  const fc = await stationForecast(id, at(s.win));
  if (ask !== stationAsk) return; // another station was clicked meanwhile
  const series = [obs];
  if (fc.v.length) series.push({ name: fc.label, color: "#ff9f43", t: fc.t, v: fc.v, dashed: true });
  lineChart(box, title, series);
  const p = document.createElement("p");
  p.id = "station-note";
  p.className = fc.source === "predict" ? "note" : "note warn";
  p.textContent = fc.note;
  box.appendChild(p);
  box.dataset.forecast = fc.source;
  box.dataset.predicted = String(fc.v.length);
}

async function regionCharts(bbox: [number, number, number, number]): Promise<void> {
  const m = S.moving;
  if (!m) return;
  const bb = bbox.map((v) => v.toFixed(6)).join(",");
  // re-query the store for the region: vehicles seen per 5-minute bin, and the flows
  const a = await getArrow(`/twin/layers/${m.ds}.arrow`, { bbox: bb, start: Math.floor(m.win[0]), end: Math.ceil(m.win[1]), columns: "id" });
  const ids = col(a.table, "id"), tt = f64(a.table, "t");
  const bin = 5 * 60_000;
  const sets = new Map<number, Set<unknown>>();
  for (let i = 0; i < ids.length; i++) {
    const b = Math.floor(tt[i] / bin) * bin;
    let s = sets.get(b);
    if (!s) sets.set(b, (s = new Set()));
    s.add(ids[i]);
  }
  const bins = [...sets.keys()].sort((x, y) => x - y);
  const box = $("chart-region");
  box.dataset.bbox = bb;
  box.dataset.rows = String(a.table.numRows);
  lineChart(box, `${t("chart_region")} (${a.table.numRows} pts)`, [{ name: t("vehicles_in"), color: "#7ee787", t: bins, v: bins.map((b) => sets.get(b)!.size) }], (t0, t1) => {
    void loadMoving([t0, t1]).then(async () => {
      S.frac = 0;
      ($("time") as HTMLInputElement).value = "0";
      await Promise.all([loadSpeeds(), loadFlows()]);
      render();
      if (S.brush) await regionCharts(S.brush);
    });
  });
  try {
    const f = await getJSON<FlowsAnswer>(`/twin/flows/${m.ds}` + query({ start: Math.floor(m.win[0]), end: Math.ceil(m.win[1]), bbox: bb }));
    const top = f.regions.filter((r) => r.inflow + r.outflow > 0).sort((x, y) => y.inflow + y.outflow - x.inflow - x.outflow).slice(0, 6);
    const bars = top.flatMap((r) => [{ label: `${r.name} ${t("inflow")}`, value: r.inflow, color: "#4fa3ff" }, { label: `${r.name} ${t("outflow")}`, value: r.outflow, color: "#ff8a4f" }]);
    barChart($("chart-flows"), `${t("inflow")}/${t("outflow")} (${f.trips} trips)`, bars);
  } catch (e) {
    $("chart-flows").textContent = failure(e);
  }
}

function initBrush(): void {
  const btn = $("brush");
  const rect = $("brush-rect");
  const host = $("map");
  let on = false;
  let p0: [number, number] | null = null;
  btn.addEventListener("click", () => {
    on = !on;
    btn.classList.toggle("on", on);
    if (on) map.dragPan.disable();
    else map.dragPan.enable();
  });
  host.addEventListener("mousedown", (ev) => {
    if (!on) return;
    const b = host.getBoundingClientRect();
    p0 = [ev.clientX - b.left, ev.clientY - b.top];
    Object.assign(rect.style, { left: `${p0[0]}px`, top: `${p0[1]}px`, width: "0px", height: "0px" });
    rect.hidden = false;
    ev.stopPropagation();
  }, true);
  host.addEventListener("mousemove", (ev) => {
    if (!on || !p0) return;
    const b = host.getBoundingClientRect();
    const x = ev.clientX - b.left, y = ev.clientY - b.top;
    Object.assign(rect.style, { left: `${Math.min(x, p0[0])}px`, top: `${Math.min(y, p0[1])}px`, width: `${Math.abs(x - p0[0])}px`, height: `${Math.abs(y - p0[1])}px` });
  }, true);
  host.addEventListener("mouseup", (ev) => {
    if (!on || !p0) return;
    const b = host.getBoundingClientRect();
    const p1: [number, number] = [ev.clientX - b.left, ev.clientY - b.top];
    const a = map.unproject(p0), c = map.unproject(p1);
    p0 = null;
    S.brush = [Math.min(a.lng, c.lng), Math.min(a.lat, c.lat), Math.max(a.lng, c.lng), Math.max(a.lat, c.lat)];
    void regionCharts(S.brush);
  }, true);
}

// ---------------------------------------------------------------- acting from the map
function onPick(info: PickingInfo): void {
  const o = info.object as Record<string, unknown> | undefined;
  if (!o) return;
  const id = info.layer?.id;
  if (id === "events") void openEvent(String(o.id));
  else if (id === "warnings") openWarning(String(o.id));
  else if (id === "series" || id === "forecast") {
    S.selected = { kind: "station", id: String(o.id) };
    void stationChart(o.id);
  }
}

let deptCache: string[] | null = null;
async function departments(): Promise<string[]> {
  if (deptCache) return deptCache;
  const seen = new Set<string>();
  try {
    const ds = asList<Record<string, unknown>>(await getJSON<unknown>("/govern/departments"), "departments");
    for (const d of ds) seen.add(String(d.code ?? d.name ?? d));
  } catch {
    for (const e of S.events) if (e.department) seen.add(String(e.department));
  }
  deptCache = [...seen].sort();
  return deptCache;
}

function esc(s: unknown): string {
  return String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
}

async function openEvent(id: string): Promise<void> {
  S.selected = { kind: "event", id };
  const box = $("detail");
  box.hidden = false;
  let ev: Record<string, unknown> = S.events.find((e) => e.id === id) ?? { id };
  let history: Record<string, unknown>[] = [];
  if (S.govern === "routes") {
    try {
      const d = await getJSON<Record<string, unknown>>(`/govern/events/${encodeURIComponent(id)}`);
      ev = (d.event as Record<string, unknown>) ?? d;
      history = (d.history as Record<string, unknown>[]) ?? [];
    } catch (e) {
      status(failure(e));
    }
  }
  const rows = ["title", "status", "department", "category", "priority", "level", "due_at", "version"].filter((k) => ev[k] != null).map((k) => `<tr><td>${esc(k)}</td><td id="ev-${k}">${esc(ev[k])}</td></tr>`).join("");
  const hist = history.slice(-6).map((h) => `<tr><td>${esc(h.at ?? h.t ?? "")}</td><td>${esc(h.action ?? h.status ?? "")} ${esc(h.actor ?? "")}</td></tr>`).join("");
  const acting = S.govern === "routes";
  const depts = acting ? await departments() : [];
  box.innerHTML = `<h3>${esc(id)}</h3><table>${rows}${hist}</table>` +
    (acting ? `<div class="actions"><select id="ev-dept">${depts.map((d) => `<option ${d === ev.department ? "selected" : ""}>${esc(d)}</option>`).join("")}</select><input id="ev-dept-new" placeholder="${t("department")}" size="10">` +
      `<button type="button" id="ev-dispatch">${t("dispatch")}</button><button type="button" id="ev-reassign">${t("reassign")}</button>` +
      ["accept", "start", "resolve", "verify", "close", "return", "escalate", "reopen"].map((a) => `<button type="button" class="ev-action" data-action="${a}">${a}</button>`).join("") +
      `</div>` : `<p>/govern ${t("unavailable")}</p>`) + `<p class="error" id="ev-error"></p><button type="button" id="detail-close">${t("close")}</button>`;
  $("detail-close").addEventListener("click", () => { box.hidden = true; S.selected = null; });
  if (!acting) return;
  const dept = () => ($("ev-dept-new") as HTMLInputElement).value.trim() || ($("ev-dept") as HTMLSelectElement).value;
  const act = async (url: string, body: Record<string, unknown>) => {
    try {
      const r = await postJSON<Record<string, unknown>>(url, { version: ev.version, ...body });
      const updated = normalisePoint<GovEvent>((r.event as Record<string, unknown>) ?? r);
      const i = S.events.findIndex((e) => e.id === id);
      if (i >= 0) S.events[i] = { ...S.events[i], ...updated };
      render();
      await openEvent(id);
      void loadKpi();
    } catch (e) {
      $("ev-error").textContent = failure(e);
    }
  };
  $("ev-dispatch").addEventListener("click", () => void act(`/govern/events/${encodeURIComponent(id)}/dispatch`, { department: dept(), note: "from the map" }));
  $("ev-reassign").addEventListener("click", () => void act(`/govern/events/${encodeURIComponent(id)}/transition`, { action: "reassign", department: dept(), note: "from the map" }));
  for (const b of Array.from(box.querySelectorAll<HTMLButtonElement>(".ev-action")))
    b.addEventListener("click", () => void act(`/govern/events/${encodeURIComponent(id)}/transition`, { action: b.dataset.action, note: "from the map" }));
}

function openWarning(id: string): void {
  S.selected = { kind: "warning", id };
  const w = S.warnings.find((q) => q.id === id);
  const box = $("detail");
  box.hidden = false;
  if (!w) return;
  const rows = ["rule", "kind", "severity", "status", "event_id", "evidence"].filter((k) => w[k] != null).map((k) => `<tr><td>${k}</td><td id="w-${k}">${esc(w[k])}</td></tr>`).join("");
  const acting = S.govern === "routes";
  box.innerHTML = `<h3>${esc(id)}</h3><table>${rows}</table>` + (acting ? `<div class="actions"><button type="button" id="w-ack">${t("acknowledge")}</button><button type="button" id="w-open">${t("open_event")}</button></div>` : "") + `<p class="error" id="ev-error"></p><button type="button" id="detail-close">${t("close")}</button>`;
  $("detail-close").addEventListener("click", () => { box.hidden = true; S.selected = null; });
  if (!acting) return;
  const act = async (url: string, body: Record<string, unknown>) => {
    try {
      const r = await postJSON<Record<string, unknown>>(url, body);
      const o = (r.warning as Record<string, unknown>) ?? r;
      const i = S.warnings.findIndex((q) => q.id === id);
      if (i >= 0 && o.status) S.warnings[i] = { ...S.warnings[i], ...normalisePoint<GovWarning>({ ...S.warnings[i], ...o }) };
      if (r.event) S.events.push(normalisePoint<GovEvent>(r.event as Record<string, unknown>));
      render();
      openWarning(id);
      void loadKpi();
    } catch (e) {
      $("ev-error").textContent = failure(e);
    }
  };
  $("w-ack").addEventListener("click", () => void act(`/govern/warnings/${encodeURIComponent(id)}/acknowledge`, { note: "from the map" }));
  $("w-open").addEventListener("click", () => void act(`/govern/warnings/${encodeURIComponent(id)}/open-event`, {}));
}

// ---------------------------------------------------------------- time controls
let playT0 = 0, playF0 = 0;
function playStep(now: number): void {
  if (!S.playing) return;
  S.frac = playF0 + (now - playT0) / 30_000; // the window in 30 s
  if (S.frac >= 1) { S.frac = 1; setPlaying(false); }
  ($("time") as HTMLInputElement).value = String(Math.round(S.frac * 1000));
  render();
  requestAnimationFrame(playStep);
}
function setPlaying(on: boolean): void {
  S.playing = on;
  $("play").textContent = t(on ? "pause" : "play");
  $("play").dataset.i18n = on ? "pause" : "play";
  if (on) {
    if (S.frac >= 1) S.frac = 0;
    playT0 = performance.now();
    playF0 = S.frac;
    requestAnimationFrame(playStep);
  }
}

// ---------------------------------------------------------------- start
async function start(): Promise<void> {
  $("login").hidden = true;
  $("app").hidden = false;
  S.me = await getJSON<Me>("/auth/me");
  $("who").textContent = `${S.me.username}${S.me.department ? " · " + S.me.department : ""} (${S.me.roles.join(", ")})`;
  const infos = await getJSON<LayerInfo[]>("/twin/layers");
  S.infos = new Map(infos.map((i) => [i.name, i]));
  S.enabled = new Set(THEMES.all);
  renderThemes();
  renderLayerList();
  createMap();
  await new Promise<void>((res) => (map.loaded() ? res() : map.once("load", () => res())));
  const tasks: [string, () => Promise<void>][] = [["basemap", loadBase], ["series", loadSeries], ["vehicles", loadMoving], ["govern", loadGovern]];
  await Promise.all(tasks.map(async ([k, f]) => { try { await f(); } catch (e) { note(k, failure(e)); } }));
  try { await loadSpeeds(); } catch (e) { note("speed", failure(e)); }
  if (!S.kpi) renderKpis();
  render();
  if (S.series?.stations.length) void stationChart(S.series.stations[0].id);
  document.body.dataset.ready = "1";
  status(`${infos.length} layers`);
}

function wire(): void {
  for (const b of Array.from(document.querySelectorAll<HTMLButtonElement>("button.lang")))
    b.addEventListener("click", () => {
      setLang(b.dataset.lang as Lang);
      if (!$("app").hidden) { renderThemes(); renderLayerList(); render(); }
    });
  setLang(getLang());
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const u = ($("username") as HTMLInputElement).value, p = ($("password") as HTMLInputElement).value;
    login(u, p).then(start).catch((e) => ($("login-error").textContent = failure(e)));
  });
  $("logout").addEventListener("click", () => { logout(); location.reload(); });
  const slider = $("time") as HTMLInputElement;
  slider.addEventListener("input", () => { S.frac = Number(slider.value) / 1000; render(); });
  $("play").addEventListener("click", () => setPlaying(!S.playing));
  ($("live") as HTMLInputElement).addEventListener("change", (e) => setLive((e.target as HTMLInputElement).checked));
  if (token()) start().catch(() => { logout(); $("login").hidden = false; $("app").hidden = true; });
}

// for the browser tests and the benchmark: state, picking and projection
declare global {
  interface Window { twin: unknown }
}
window.twin = {
  state: S,
  frames: () => frames,
  project: (lon: number, lat: number) => { const p = map.project([lon, lat]); const b = $("map").getBoundingClientRect(); return [p.x + b.left, p.y + b.top]; },
  pick: (x: number, y: number, layerIds?: string[]) => { const b = $("map").getBoundingClientRect(); const i = overlay.pickObject({ x: x - b.left, y: y - b.top, radius: 4, layerIds }); return i ? { layer: i.layer?.id, object: i.object } : null; },
  map: () => map,
  layerIds: () => [...basemapIds(), ...buildLayers().map((l) => l.id)],
  /** resolves once MapLibre has drawn every tile in view */
  idle: () => new Promise<boolean>((res) => { if (map.loaded() && map.areTilesLoaded()) res(true); else map.once("idle", () => res(true)); map.triggerRepaint(); }),
  /** features of a basemap layer drawn on screen (from its vector tiles) */
  rendered: (id: string) => (map.getLayer(id) ? map.queryRenderedFeatures({ layers: [id] }).length : 0),
  /** only these layers on (for the tests' pixel checks) */
  only: (keys: string[]) => { S.enabled = new Set(keys); renderLayerList(); render(); },
  trips: () => (S.moving ? (at(S.moving.win) - S.moving.win[0]) / 1000 : null),
  setTime: (f: number) => { S.frac = f; ($("time") as HTMLInputElement).value = String(Math.round(f * 1000)); render(); },
  reload: async () => { await loadGovern(); render(); },
};

if (location.hash === "#bench") {
  // benchmarks/twin.py: a separate chunk, loaded only here
  void import("./bench").then((b) => { (window as unknown as { twinBench: unknown }).twinBench = b; document.body.dataset.bench = "1"; });
} else wire();
