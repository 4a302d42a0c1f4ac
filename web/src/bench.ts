// benchmarks/twin.py drives this page (/#bench): the same moving-object points drawn as an
// Arrow IPC layer by deck.gl and as GeoJSON in a MapLibre GeoJSON source, timed in the page.
import * as maplibregl from "maplibre-gl";
import workerUrl from "maplibre-gl/dist/maplibre-gl-worker.mjs?worker&url";
import { MapboxOverlay } from "@deck.gl/mapbox";
import { ScatterplotLayer } from "@deck.gl/layers";
import { DataFilterExtension } from "@deck.gl/extensions";
import { tableFromIPC } from "apache-arrow";
import { f64 } from "./api";

interface Result { fetchMs: number; parseMs: number; bytes: number; rows: number; firstFrameMs: number; panFrameMs: number[]; playFrameMs: number[] }

const raf = () => new Promise<number>((r) => requestAnimationFrame(r));

function newMap(center: [number, number], zoom: number): Promise<maplibregl.Map> {
  maplibregl.setWorkerUrl(workerUrl);
  document.body.innerHTML = '<div id="bench" style="position:fixed;inset:0"></div>';
  const map = new maplibregl.Map({
    container: "bench",
    style: { version: 8, sources: {}, layers: [{ id: "bg", type: "background", paint: { "background-color": "#0d1726" } }] },
    center, zoom, attributionControl: false, fadeDuration: 0,
  });
  return new Promise((res) => map.once("load", () => res(map)));
}

async function frames(n: number, step: (i: number) => void): Promise<number[]> {
  const out: number[] = [];
  let last = await raf();
  for (let i = 0; i < n; i++) {
    step(i);
    const now = await raf();
    out.push(now - last);
    last = now;
  }
  return out;
}

export async function arrow(url: string, token: string, center: [number, number], zoom: number, nFrames = 20): Promise<Result> {
  const map = await newMap(center, zoom);
  let rendered = 0;
  const overlay = new MapboxOverlay({ interleaved: false, layers: [], onAfterRender: () => { rendered = performance.now(); } });
  map.addControl(overlay as unknown as maplibregl.IControl);
  await raf();
  const t0 = performance.now();
  const r = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  const buf = new Uint8Array(await r.arrayBuffer());
  const t1 = performance.now();
  const table = tableFromIPC(buf);
  const x = f64(table, "x"), y = f64(table, "y"), t = f64(table, "t");
  const n = table.numRows;
  const pos = new Float64Array(2 * n);
  const ts = new Float32Array(n);
  const tmin = t.reduce((a, b) => Math.min(a, b), Infinity);
  for (let i = 0; i < n; i++) { pos[2 * i] = x[i]; pos[2 * i + 1] = y[i]; ts[i] = (t[i] - tmin) / 1000; }
  const t2 = performance.now();
  const tmax = ts.reduce((a, b) => Math.max(a, b), 0);
  const layer = (lo: number, hi: number) => new ScatterplotLayer({
    id: "pts", data: { length: n, attributes: { getPosition: { value: pos, size: 2 }, getFilterValue: { value: ts, size: 1 } } },
    getRadius: 2, radiusUnits: "pixels", getFillColor: [255, 180, 60, 200],
    extensions: [new DataFilterExtension({ filterSize: 1 })], filterRange: [lo, hi],
  } as never);
  overlay.setProps({ layers: [layer(0, tmax)] });
  // the first frame drawn with the layer in it
  const since = performance.now();
  while (rendered < since) await raf();
  const firstFrameMs = rendered - t0;
  const panFrameMs = await frames(nFrames, (i) => map.panBy([i % 10 < 5 ? 8 : -8, 0], { animate: false }));
  const playFrameMs = await frames(nFrames, (i) => { const lo = (i / nFrames) * tmax; overlay.setProps({ layers: [layer(lo, lo + tmax / 10)] }); });
  return { fetchMs: t1 - t0, parseMs: t2 - t1, bytes: buf.byteLength, rows: n, firstFrameMs, panFrameMs, playFrameMs };
}

export async function geojson(url: string, center: [number, number], zoom: number, nFrames = 20): Promise<Result> {
  const map = await newMap(center, zoom);
  await raf();
  const t0 = performance.now();
  const r = await fetch(url);
  const text = await r.text();
  const t1 = performance.now();
  const data = JSON.parse(text) as { features: { properties: { t: number } }[] };
  const t2 = performance.now();
  map.addSource("pts", { type: "geojson", data: data as never });
  map.addLayer({ id: "pts", type: "circle", source: "pts", paint: { "circle-radius": 2, "circle-color": "#ffb43c" } });
  await new Promise<void>((res) => map.once("idle", () => res()));
  const firstFrameMs = performance.now() - t0;
  const panFrameMs = await frames(nFrames, (i) => map.panBy([i % 10 < 5 ? 8 : -8, 0], { animate: false }));
  const ts = data.features.map((f) => f.properties.t);
  const tmin = Math.min(...ts.slice(0, 1000)), span = 3_600_000;
  const playFrameMs = await frames(nFrames, (i) => { const lo = tmin + (i / nFrames) * span; map.setFilter("pts", ["all", [">=", ["get", "t"], lo], ["<", ["get", "t"], lo + span / 10]]); });
  return { fetchMs: t1 - t0, parseMs: t2 - t1, bytes: text.length, rows: data.features.length, firstFrameMs, panFrameMs, playFrameMs };
}
