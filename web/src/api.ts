// The authorised API: login with the city's identity, every layer through the bearer token.
import { tableFromIPC, type Table } from "apache-arrow";

const KEY = "cityos.twin.token";

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface LayerInfo {
  name: string;
  model: string;
  geometry_type: string;
  kind: string;
  description: string;
  rows: number;
  bbox: [number, number, number, number] | null;
  t_min: string | null;
  t_max: string | null;
  network: string | null;
  fields: { name: string; type: string; unit: string | null; personal: string | null }[];
  masked_fields: string[];
  arrow: string;
  /** the Mapbox Vector Tile template (``/tiles/{name}/{z}/{x}/{y}.mvt``), or null */
  tiles: string | null;
}

export interface ModelInfo {
  name: string;
  version: number;
  family: string;
  stage: string | null;
  datasets: Record<string, number>;
  feature_spec: { dataset?: string; target?: string };
}

export interface Prediction {
  id: string;
  t: string;
  horizon: number;
  yhat: number;
  lower: number | null;
  upper: number | null;
}

export interface PredictAnswer {
  model: string;
  version: number;
  family: string;
  mode: string;
  issued_at: string;
  predictions: Prediction[];
}

export interface Me {
  username: string;
  full_name: string | null;
  department: string | null;
  roles: string[];
}

export function token(): string | null {
  return sessionStorage.getItem(KEY);
}

export function logout(): void {
  sessionStorage.removeItem(KEY);
}

export async function login(username: string, password: string): Promise<void> {
  const body = new URLSearchParams({ username, password });
  const r = await fetch("/auth/token", { method: "POST", body });
  if (!r.ok) throw new ApiError(r.status, await detail(r));
  const j = (await r.json()) as { access_token: string };
  sessionStorage.setItem(KEY, j.access_token);
}

async function detail(r: Response): Promise<string> {
  try {
    const j = (await r.json()) as { detail?: unknown };
    return typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail ?? j);
  } catch {
    return `${r.status} ${r.statusText}`;
  }
}

/** The bearer token on MapLibre's requests for this server's vector tiles (its
 * ``transformRequest``): every tile is read with the user's rights, like every layer. */
export function authorise(url: string): { url: string; headers?: Record<string, string> } {
  const t = token();
  const own = url.startsWith(`${location.origin}/tiles/`);
  return own && t ? { url, headers: { Authorization: `Bearer ${t}` } } : { url };
}

function headers(extra?: Record<string, string>): Record<string, string> {
  const t = token();
  return { ...(t ? { Authorization: `Bearer ${t}` } : {}), ...(extra ?? {}) };
}

export async function getJSON<T>(url: string): Promise<T> {
  const r = await fetch(url, { headers: headers() });
  if (!r.ok) throw new ApiError(r.status, await detail(r));
  return (await r.json()) as T;
}

export async function postJSON<T>(url: string, body: unknown): Promise<T> {
  const r = await fetch(url, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new ApiError(r.status, await detail(r));
  return (await r.json()) as T;
}

export interface ArrowAnswer {
  table: Table;
  total: number;
  truncated: boolean;
  masked: string[];
  bytes: number;
}

export type Params = Record<string, string | number | undefined | null>;

export function query(params: Params): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

export async function getArrow(url: string, params: Params = {}): Promise<ArrowAnswer> {
  const r = await fetch(url + query(params), { headers: headers() });
  if (!r.ok) throw new ApiError(r.status, await detail(r));
  const buf = new Uint8Array(await r.arrayBuffer());
  const masked = (r.headers.get("X-Masked-Columns") ?? "").split(",").filter((s) => s);
  return {
    table: tableFromIPC(buf),
    total: Number(r.headers.get("X-Total-Count") ?? "0"),
    truncated: r.headers.get("X-Truncated") === "1",
    masked,
    bytes: buf.byteLength,
  };
}

/** A float64 column as a Float64Array (nulls as NaN). */
export function f64(t: Table, name: string): Float64Array {
  const c = t.getChild(name);
  const out = new Float64Array(t.numRows);
  if (!c) return out.fill(NaN);
  let i = 0;
  for (const d of c.data) {
    const v = d.values as ArrayLike<number | bigint>;
    for (let j = 0; j < d.length; j++, i++) {
      out[i] = d.getValid(j) ? Number(v[j]) : NaN;
    }
  }
  return out;
}

/** Any column as a plain array of JS values. */
export function col(t: Table, name: string): unknown[] {
  const c = t.getChild(name);
  if (!c) return new Array(t.numRows).fill(null);
  const out: unknown[] = new Array(t.numRows);
  let i = 0;
  for (const v of c) out[i++] = typeof v === "bigint" ? Number(v) : v;
  return out;
}

/** The ``path`` list column: flat interleaved xy and start indices (in vertices). */
export function paths(t: Table): { flat: Float64Array; starts: Uint32Array } {
  const c = t.getChild("path");
  const starts = new Uint32Array(t.numRows + 1);
  if (!c) return { flat: new Float64Array(0), starts };
  const chunks: Float64Array[] = [];
  let row = 0;
  let base = 0;
  for (const d of c.data) {
    const offs = d.valueOffsets as Int32Array;
    const child = d.children[0];
    const vals = child.values as Float64Array;
    const o0 = offs[d.offset];
    const o1 = offs[d.offset + d.length];
    chunks.push(vals.subarray(child.offset + o0, child.offset + o1));
    for (let j = 0; j < d.length; j++) starts[row++] = base + (offs[d.offset + j] - o0) / 2;
    base += (o1 - o0) / 2;
  }
  starts[row] = base;
  const flat = new Float64Array(base * 2);
  let k = 0;
  for (const ch of chunks) {
    flat.set(ch, k);
    k += ch.length;
  }
  return { flat, starts };
}
