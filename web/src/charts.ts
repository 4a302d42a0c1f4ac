// Small SVG charts beside the map (no charting library: lines, bars, a time brush).
const NS = "http://www.w3.org/2000/svg";

export interface Series {
  name: string;
  color: string;
  t: ArrayLike<number>;
  v: ArrayLike<number>;
  dashed?: boolean;
}

function el<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function fmtTime(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getUTCMonth() + 1).padStart(2, "0")}-${String(d.getUTCDate()).padStart(2, "0")} ${String(d.getUTCHours()).padStart(2, "0")}:${String(d.getUTCMinutes()).padStart(2, "0")}`;
}

/** A line chart of time series; ``onBrush(t0, t1)`` when the user drags a time range. */
export function lineChart(
  host: HTMLElement,
  title: string,
  series: Series[],
  onBrush?: (t0: number, t1: number) => void,
): void {
  host.innerHTML = "";
  const W = 300;
  const H = 130;
  const P = { l: 34, r: 6, t: 16, b: 18 };
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", class: "chart" });
  const cap = el("text", { x: P.l, y: 11, class: "chart-title" });
  cap.textContent = title;
  svg.appendChild(cap);
  let t0 = Infinity, t1 = -Infinity, v0 = Infinity, v1 = -Infinity;
  let n = 0;
  for (const s of series)
    for (let i = 0; i < s.t.length; i++) {
      const v = s.v[i];
      if (!Number.isFinite(v)) continue;
      n++;
      t0 = Math.min(t0, s.t[i]); t1 = Math.max(t1, s.t[i]);
      v0 = Math.min(v0, v); v1 = Math.max(v1, v);
    }
  host.dataset.points = String(n);
  if (!n) {
    const e = el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-empty" });
    e.textContent = "—";
    svg.appendChild(e);
    host.appendChild(svg);
    return;
  }
  if (v0 === v1) { v0 -= 1; v1 += 1; }
  if (t0 === t1) t1 = t0 + 1;
  v0 = Math.min(0, v0);
  const X = (t: number) => P.l + ((t - t0) / (t1 - t0)) * (W - P.l - P.r);
  const Y = (v: number) => H - P.b - ((v - v0) / (v1 - v0)) * (H - P.t - P.b);
  svg.appendChild(el("line", { x1: P.l, y1: H - P.b, x2: W - P.r, y2: H - P.b, class: "axis" }));
  svg.appendChild(el("line", { x1: P.l, y1: P.t, x2: P.l, y2: H - P.b, class: "axis" }));
  for (const [v, y] of [[v1, Y(v1)], [v0, Y(v0)]]) {
    const tx = el("text", { x: P.l - 3, y: y + 3, "text-anchor": "end", class: "tick" });
    tx.textContent = v >= 100 ? v.toFixed(0) : v.toFixed(1);
    svg.appendChild(tx);
  }
  for (const [tt, anchor] of [[t0, "start"], [t1, "end"]] as const) {
    const tx = el("text", { x: X(tt), y: H - 5, "text-anchor": anchor, class: "tick" });
    tx.textContent = fmtTime(tt);
    svg.appendChild(tx);
  }
  let ly = P.t + 2;
  for (const s of series) {
    let d = "";
    for (let i = 0; i < s.t.length; i++) {
      const v = s.v[i];
      if (!Number.isFinite(v)) continue;
      d += `${d ? "L" : "M"}${X(s.t[i]).toFixed(1)},${Y(v).toFixed(1)}`;
    }
    svg.appendChild(el("path", { d, stroke: s.color, fill: "none", "stroke-width": 1.4, ...(s.dashed ? { "stroke-dasharray": "3 2" } : {}) }));
    const lg = el("text", { x: W - P.r - 2, y: ly + 6, "text-anchor": "end", fill: s.color, class: "legend" });
    lg.textContent = s.name;
    svg.appendChild(lg);
    ly += 10;
  }
  if (onBrush) {
    const rect = el("rect", { x: 0, y: P.t, width: 0, height: H - P.t - P.b, class: "brush" });
    svg.appendChild(rect);
    let start: number | null = null;
    const toT = (ev: MouseEvent) => {
      const b = svg.getBoundingClientRect();
      const x = ((ev.clientX - b.left) / b.width) * W;
      return { x, t: t0 + ((x - P.l) / (W - P.l - P.r)) * (t1 - t0) };
    };
    svg.addEventListener("mousedown", (ev) => { start = toT(ev).x; rect.setAttribute("x", String(start)); rect.setAttribute("width", "0"); });
    svg.addEventListener("mousemove", (ev) => {
      if (start === null) return;
      const x = toT(ev).x;
      rect.setAttribute("x", String(Math.min(start, x)));
      rect.setAttribute("width", String(Math.abs(x - start)));
    });
    svg.addEventListener("mouseup", (ev) => {
      if (start === null) return;
      const a = t0 + ((start - P.l) / (W - P.l - P.r)) * (t1 - t0);
      const b = toT(ev).t;
      start = null;
      if (Math.abs(b - a) > (t1 - t0) / 200) onBrush(Math.min(a, b), Math.max(a, b));
    });
  }
  host.appendChild(svg);
}

/** A horizontal bar chart (label, value in [0, max]). */
export function barChart(host: HTMLElement, title: string, bars: { label: string; value: number; color?: string }[], max?: number, fmt: (v: number) => string = (v) => v.toFixed(0)): void {
  host.innerHTML = "";
  const W = 300;
  const row = 14;
  const H = 18 + Math.max(bars.length, 1) * row;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", class: "chart" });
  const cap = el("text", { x: 4, y: 11, class: "chart-title" });
  cap.textContent = title;
  svg.appendChild(cap);
  const m = max ?? Math.max(1e-9, ...bars.map((b) => b.value));
  host.dataset.points = String(bars.length);
  bars.forEach((b, i) => {
    const y = 16 + i * row;
    const lab = el("text", { x: 96, y: y + 10, "text-anchor": "end", class: "tick" });
    lab.textContent = b.label;
    svg.appendChild(lab);
    const w = Math.max(0, (b.value / m) * (W - 140));
    svg.appendChild(el("rect", { x: 100, y: y + 2, width: w, height: row - 4, fill: b.color ?? "#4fa3ff" }));
    const v = el("text", { x: 104 + w, y: y + 10, class: "tick" });
    v.textContent = fmt(b.value);
    svg.appendChild(v);
  });
  host.appendChild(svg);
}
