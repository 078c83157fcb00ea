# ruff: noqa: E501  (inline CSS and JavaScript, laid out for reading, not for Python's line length)
"""The page template of ``report``: inline CSS and script, no external resource of any kind.

``__DATA__`` is replaced by the JSON document (htmlreport.report_data), ``__TITLE__`` by the
title. The script only lays out numbers computed in Python; strings from the capture are
inserted with ``textContent`` (never ``innerHTML``).
"""

from __future__ import annotations

CSS = r"""
:root { --fg:#1d232a; --muted:#5c6670; --line:#d8dde2; --bg:#fff; --warn:#b00020; --accent:#1f5f99; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--fg);
  background: var(--bg); margin: 0 auto; max-width: 1100px; padding: 16px 20px 60px; }
h1 { font-size: 22px; margin: 4px 0 2px; } h2 { font-size: 18px; margin: 28px 0 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 4px; } .muted { color: var(--muted); }
.banner { background: #fde7ea; border: 2px solid var(--warn); color: var(--warn); padding: 8px 12px;
  margin: 10px 0; font-weight: 600; border-radius: 4px; }
dl.prov { display: grid; grid-template-columns: 150px 1fr; gap: 2px 12px; margin: 6px 0; font-size: 13px; }
dl.prov dt { color: var(--muted); } dl.prov dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0; }
th, td { padding: 2px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { cursor: pointer; background: #f3f5f7; user-select: none; } th.l, td.l { text-align: left; }
td.l { max-width: 420px; overflow: hidden; text-overflow: ellipsis; }
th.sorted-asc::after { content: " \25B2"; } th.sorted-desc::after { content: " \25BC"; }
svg { display: block; overflow: visible; } svg text { font-size: 11px; fill: var(--muted); }
.cell:hover { stroke: #000; stroke-width: 1; }
#tip { position: fixed; pointer-events: none; background: rgba(20,24,28,.93); color: #fff; padding: 6px 9px;
  border-radius: 4px; font-size: 12px; white-space: pre; display: none; z-index: 10; }
#cmdbox { position: sticky; bottom: 0; background: #f3f5f7; border: 1px solid var(--line); padding: 6px 10px;
  margin-top: 12px; font-size: 12px; }
#cmd { font-family: "DejaVu Sans Mono", monospace; user-select: all; white-space: pre-wrap; word-break: break-all; }
.legend { display: flex; gap: 14px; font-size: 12px; color: var(--muted); margin: 2px 0 6px 70px; align-items: center; }
.sw { display: inline-block; width: 18px; height: 3px; vertical-align: middle; margin-right: 4px; }
.slower { color: var(--warn); font-weight: 600; } .faster { color: #1b7a3a; font-weight: 600; }
table.t-diff td { white-space: normal; min-width: 70px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.small-multiples { display: flex; flex-wrap: wrap; gap: 8px 18px; }
"""

SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("aether-data").textContent);
const NS = "http://www.w3.org/2000/svg";
const tip = document.getElementById("tip");
const cmd = document.getElementById("cmd");

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function sv(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function fmtDur(ns) {
  if (ns === null || ns === undefined) return "-";
  const a = Math.abs(ns);
  const g3 = (v) => (v >= 100 ? v.toFixed(0) : Number(v.toPrecision(3)).toString());
  if (a < 1e3) return ns.toFixed(0) + "ns";
  if (a < 1e6) return g3(ns / 1e3) + "us";
  if (a < 1e9) return g3(ns / 1e6) + "ms";
  return g3(ns / 1e9) + "s";
}
function fmtCount(n) { return (n === null || n === undefined) ? "-" : Math.round(n).toLocaleString("en-US"); }
function fmtRate(n) { return (n === null || n === undefined) ? "-" : n.toLocaleString("en-US", {minimumFractionDigits: 1, maximumFractionDigits: 1}); }
function fmtBytes(n) {
  if (n === null || n === undefined) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let v = n, i = 0;
  while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return i === 0 ? v.toFixed(0) + "B" : v.toFixed(1) + u[i];
}
function fmtSec(s) { return "+" + s.toFixed(s < 10 ? 3 : 2) + " s"; }
function pct(x) { return (100 * x).toFixed(x < 0.001 ? 3 : 1) + " %"; }
function utc(ns) {
  if (ns === null || ns === undefined) return "";
  const d = new Date(Number(ns / 1e6));
  return d.toISOString().replace("T", " ").replace("Z", " UTC");
}

// colour: light yellow -> orange -> dark red, with a floor so one I/O is visible
const RAMP = [[255, 247, 188], [254, 196, 79], [236, 112, 20], [204, 46, 18], [110, 10, 10]];
function ramp(t) {
  t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
  const i = Math.min(Math.floor(t), RAMP.length - 2), f = t - i;
  const c = RAMP[i].map((v, k) => Math.round(v + f * (RAMP[i + 1][k] - v)));
  return "rgb(" + c.join(",") + ")";
}
function scaled(n, vmax) {
  if (n <= 0 || vmax <= 0) return 0;
  if (D.scale === "log") return Math.log1p(n) / Math.log1p(vmax);
  if (D.scale === "linear") return n / vmax;
  return Math.sqrt(n / vmax);
}
function shade(n, vmax) { return ramp(0.08 + 0.92 * scaled(n, vmax)); }

function rowLabel(edges, r) {
  if (r === 0) return "< " + fmtDur(edges[0]);
  if (r === edges.length) return ">= " + fmtDur(edges[edges.length - 1]);
  return fmtDur(edges[r - 1]) + " .. " + fmtDur(edges[r]);
}
function niceStep(span, n) {
  const raw = span / n, p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}
function xAxis(g, x0, w, y, seconds) {
  g.appendChild(sv("line", {x1: x0, x2: x0 + w, y1: y, y2: y, stroke: "#999"}));
  if (seconds <= 0) return;
  const step = niceStep(seconds, 8);
  for (let s = 0; s <= seconds + 1e-9; s += step) {
    const x = x0 + w * s / seconds;
    g.appendChild(sv("line", {x1: x, x2: x, y1: y, y2: y + 4, stroke: "#999"}));
    g.appendChild(sv("text", {x: x, y: y + 15, "text-anchor": "middle"}, (+s.toFixed(6)) + "s"));
  }
}
function lossMarks(g, sec, x0, w, y, seconds) {
  for (const l of sec.losses) {
    if (!l.real) continue;
    const x = x0 + w * Math.max(0, l.t_first) / seconds;
    const x2 = x0 + w * Math.max(l.t_first, l.t_last) / seconds;
    const m = sv("rect", {x: x, y: y, width: Math.max(2, x2 - x), height: 5, fill: "#b00020", class: "loss"});
    m.appendChild(sv("title", {}, "lost " + fmtCount(l.count) + " events on cpu" + l.cpu + " (" + l.kind + ")"));
    g.appendChild(m);
  }
}

const CW = 880, X0 = 84, RH = 11;
const heatIndex = [];  // [section][layer] -> {sec, lay, cols}

function drawHeat(parent, si, li, sec, lay, vmax, title) {
  const nrows = lay.edges.length + 1, ncols = sec.ncols, cw = CW / ncols;
  const H = nrows * RH, seconds = ncols * sec.width_ns / 1e9;
  const box = el("div", {class: "heatbox"});
  if (title) box.appendChild(el("div", {class: "muted"}, title));
  const s = sv("svg", {width: X0 + CW + 10, height: H + 48, class: "heatmap", "data-section": si, "data-layer": lay.name});
  const g = sv("g", {});
  s.appendChild(g);
  g.appendChild(sv("rect", {x: X0, y: 6, width: CW, height: H, fill: "#fafbfc", stroke: "#ccc"}));
  const step = Math.max(1, Math.ceil(nrows / 14));
  for (let r = 0; r < nrows; r++) {
    const y = 6 + (nrows - 1 - r) * RH;
    if (r % step === 0 || r === nrows - 1)
      g.appendChild(sv("text", {x: X0 - 4, y: y + RH - 2, "text-anchor": "end"}, rowLabel(lay.edges, r)));
  }
  // the under/overflow rows are set apart by dashed lines
  g.appendChild(sv("line", {x1: X0, x2: X0 + CW, y1: 6 + RH, y2: 6 + RH, stroke: "#999", "stroke-dasharray": "3,3"}));
  g.appendChild(sv("line", {x1: X0, x2: X0 + CW, y1: 6 + (nrows - 1) * RH, y2: 6 + (nrows - 1) * RH, stroke: "#999", "stroke-dasharray": "3,3"}));
  const cols = {};
  for (const [c, r, n] of lay.cells) {
    (cols[c] = cols[c] || new Array(nrows).fill(0))[r] = n;
    g.appendChild(sv("rect", {x: X0 + c * cw, y: 6 + (nrows - 1 - r) * RH, width: Math.max(cw, 1), height: RH,
      fill: shade(n, vmax), class: "cell", "data-c": c, "data-r": r, "data-n": n}));
  }
  xAxis(g, X0, CW, 6 + H, seconds);
  lossMarks(g, sec, X0, CW, 6 + H + 18, seconds);
  heatIndex[si] = heatIndex[si] || [];
  heatIndex[si][li] = {sec: sec, lay: lay, cols: cols};
  s.addEventListener("mousemove", (ev) => cellTip(ev, si, li));
  s.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  s.addEventListener("click", (ev) => cellClick(ev, si, li));
  box.appendChild(s);
  box.appendChild(legend(vmax));
  parent.appendChild(box);
}
function legend(vmax) {
  const w = 240, s = sv("svg", {width: X0 + w + 200, height: 30, class: "heat-legend"});
  const n = 24;
  for (let i = 0; i < n; i++) {
    // position i shows the count whose scaled value is i/n
    const t = (i + 0.5) / n;
    let cnt = D.scale === "log" ? Math.expm1(t * Math.log1p(vmax)) : D.scale === "linear" ? t * vmax : t * t * vmax;
    s.appendChild(sv("rect", {x: X0 + i * w / n, y: 2, width: w / n + 0.5, height: 10, fill: shade(Math.max(cnt, 1e-9), vmax)}));
  }
  s.appendChild(sv("text", {x: X0 - 4, y: 11, "text-anchor": "end"}, "I/Os per cell"));
  s.appendChild(sv("text", {x: X0, y: 26}, "1"));
  s.appendChild(sv("text", {x: X0 + w, y: 26, "text-anchor": "end"}, fmtCount(vmax)));
  s.appendChild(sv("text", {x: X0 + w + 8, y: 11}, D.scale + " scale"));
  return s;
}
function cellInfo(si, li, c, r) {
  const h = heatIndex[si][li], sec = h.sec, lay = h.lay;
  const counts = h.cols[c] || [], n = counts[r] || 0;
  const total = lay.col_totals[c] || 0;
  let cum = 0;
  for (let k = 0; k <= r; k++) cum += counts[k] || 0;
  const w = sec.width_ns / 1e9, t1 = c * w, t2 = (c + 1) * w;
  const start = sec.t0_real_ns;
  const lines = [
    lay.name + " layer" + (D.sections.length > 1 ? " (" + sec.label + ")" : ""),
    "time     " + fmtSec(t1) + " .. " + fmtSec(t2) + (start !== null ? "  (" + utc(start + t1 * 1e9) + ")" : ""),
    "latency  " + rowLabel(lay.edges, r),
    "count    " + fmtCount(n) + " I/Os",
    "percent  " + pct(total ? n / total : 0) + " of this interval",
    "cumul.   " + pct(total ? cum / total : 0) + " at or below this row",
  ];
  return lines.join("\n");
}
function cellExpr(si, li, c, r) {
  const h = heatIndex[si][li], sec = h.sec, lay = h.lay;
  const t0 = BigInt(sec.t0s) + BigInt(c) * BigInt(sec.width_ns);
  const parts = ["layer == " + lay.name, "ts >= " + t0, "ts < " + (t0 + BigInt(sec.width_ns))];
  if (r > 0) parts.push("lat >= " + lay.edges[r - 1]);
  if (r < lay.edges.length) parts.push("lat < " + lay.edges[r]);
  let e = parts.join(" and ");
  if (lay.where) e = "(" + lay.where + ") and " + e;
  return e;
}
function shq(s) { return "'" + String(s).replace(/'/g, "'\\''") + "'"; }
function cellAt(ev) {
  const t = ev.target;
  if (!t || !t.classList || !t.classList.contains("cell")) return null;
  return [Number(t.getAttribute("data-c")), Number(t.getAttribute("data-r"))];
}
function cellTip(ev, si, li) {
  const at = cellAt(ev);
  if (!at) { tip.style.display = "none"; return; }
  tip.textContent = cellInfo(si, li, at[0], at[1]);
  tip.style.display = "block";
  tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 360) + "px";
  tip.style.top = (ev.clientY + 14) + "px";
}
function cellClick(ev, si, li) {
  const at = cellAt(ev);
  if (!at) return;
  const sec = heatIndex[si][li].sec;
  cmd.textContent = "aether-rec filter " + shq(sec.provenance.file) + " -o cell.aio " + shq(cellExpr(si, li, at[0], at[1]));
  cmd.setAttribute("data-expr", cellExpr(si, li, at[0], at[1]));
}

function lineChart(parent, title, series, ncols, seconds, opts) {
  const W = CW, H = 150, s = sv("svg", {width: X0 + W + 10, height: H + 30, class: "chart"});
  parent.appendChild(el("h3", {}, title));
  let lo = Infinity, hi = -Infinity;
  for (const se of series) for (const v of se.values) if (v !== null && v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!isFinite(lo)) { parent.appendChild(el("div", {class: "muted"}, "no data")); return; }
  const log = opts.log;
  if (!log) lo = 0;
  if (hi <= lo) hi = lo + 1;
  const L = (v) => log ? Math.log(v) : v;
  const y = (v) => 4 + H - H * (L(v) - L(lo)) / (L(hi) - L(lo));
  s.appendChild(sv("rect", {x: X0, y: 4, width: W, height: H, fill: "#fafbfc", stroke: "#ccc"}));
  const ticks = log ? [lo, Math.sqrt(lo * hi), hi] : [0, hi / 2, hi];
  for (const t of ticks) {
    s.appendChild(sv("line", {x1: X0, x2: X0 + W, y1: y(t), y2: y(t), stroke: "#eee"}));
    s.appendChild(sv("text", {x: X0 - 4, y: y(t) + 4, "text-anchor": "end"}, opts.fmt(t)));
  }
  const cw = W / ncols;
  for (const se of series) {
    let pts = [];
    const flush = () => { if (pts.length) s.appendChild(sv("polyline", {points: pts.join(" "), fill: "none", stroke: se.color, "stroke-width": 1.5, "stroke-dasharray": se.dash || "none", class: "series " + se.name})); pts = []; };
    se.values.forEach((v, c) => { if (v === null || (log && v <= 0)) flush(); else pts.push((X0 + (c + 0.5) * cw).toFixed(1) + "," + y(v).toFixed(1)); });
    flush();
  }
  xAxis(s, X0, W, 4 + H, seconds);
  parent.appendChild(s);
  const lg = el("div", {class: "legend"});
  for (const se of series) { const i = el("span"); i.appendChild(el("span", {class: "sw", style: "background:" + se.color})); i.appendChild(document.createTextNode(se.name)); lg.appendChild(i); }
  parent.appendChild(lg);
}

function histChart(parent, title, edges, series) {
  const nrows = edges.length + 1, W = 400, H = 110, bw = W / nrows;
  const box = el("div", {class: "hist"});
  box.appendChild(el("div", {class: "muted"}, title));
  const s = sv("svg", {width: W + 60, height: H + 34});
  let hi = 0;
  for (const se of series) for (const v of se.values) hi = Math.max(hi, v);
  if (hi <= 0) hi = 1;
  s.appendChild(sv("rect", {x: 50, y: 2, width: W, height: H, fill: "#fafbfc", stroke: "#ccc"}));
  s.appendChild(sv("text", {x: 46, y: 12, "text-anchor": "end"}, series[0].fmt(hi)));
  series.forEach((se, k) => {
    if (se.bars) {
      se.values.forEach((v, r) => { if (v > 0) { const b = sv("rect", {x: 50 + r * bw, y: 2 + H - H * v / hi, width: Math.max(bw - 1, 1), height: H * v / hi, fill: se.color, class: "bar"}); b.appendChild(sv("title", {}, rowLabel(edges, r) + ": " + se.fmt(v))); s.appendChild(b); } });
    } else {
      const pts = se.values.map((v, r) => (50 + (r + 0.5) * bw).toFixed(1) + "," + (2 + H - H * v / hi).toFixed(1));
      s.appendChild(sv("polyline", {points: pts.join(" "), fill: "none", stroke: se.color, "stroke-width": 2}));
    }
  });
  for (const r of [0, Math.floor(nrows / 2), nrows - 1])
    s.appendChild(sv("text", {x: 50 + (r + 0.5) * bw, y: H + 16, "text-anchor": "middle"}, rowLabel(edges, r)));
  box.appendChild(s);
  parent.appendChild(box);
}

function sortable(table) {
  const ths = table.querySelectorAll("th");
  ths.forEach((th, i) => th.addEventListener("click", () => {
    const body = table.tBodies[0], rows = Array.from(body.rows);
    const desc = !th.classList.contains("sorted-desc");
    ths.forEach((x) => x.classList.remove("sorted-asc", "sorted-desc"));
    th.classList.add(desc ? "sorted-desc" : "sorted-asc");
    rows.sort((a, b) => {
      const x = a.cells[i].getAttribute("data-v"), y = b.cells[i].getAttribute("data-v");
      const nx = Number(x), ny = Number(y);
      const c = (x !== "" && y !== "" && !isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
      return desc ? -c : c;
    });
    rows.forEach((r) => body.appendChild(r));
  }));
}
function table(parent, cols, rows, cls) {
  const t = el("table", {class: "sortable " + (cls || "")});
  const hr = el("tr");
  for (const c of cols) hr.appendChild(el("th", {class: c.left ? "l" : ""}, c.title));
  t.appendChild(el("thead")).appendChild(hr);
  const tb = el("tbody");
  for (const r of rows) {
    const tr = el("tr");
    for (const c of cols) {
      const v = r[c.key];
      const td = el("td", {class: c.left ? "l" : "", "data-v": (v === null || v === undefined) ? "" : v}, c.fmt ? c.fmt(v, r) : v);
      if (c.left) td.setAttribute("title", String(v));
      tr.appendChild(td);
    }
    tb.appendChild(tr);
  }
  t.appendChild(tb);
  sortable(t);
  parent.appendChild(t);
}
const STATS = [["p50", "P50"], ["p90", "P90"], ["p99", "P99"], ["p99_9", "P99.9"], ["max", "MAX"]];

function provenance(parent, sec) {
  const p = sec.provenance, dl = el("dl", {class: "prov"});
  const add = (k, v) => { if (v !== null && v !== undefined && v !== "") { dl.appendChild(el("dt", {}, k)); dl.appendChild(el("dd", {}, v)); } };
  add("file", p.file); add("host", p.host); add("kernel", [p.kernel, p.arch, p.ncpu ? p.ncpu + " CPUs" : ""].filter(Boolean).join("  "));
  add("capture id", p.capture_id); add("recorded with", p.command); add("hooks", p.hooks); add("recorder filters", p.recorder_filters);
  add("time span", (p.start ? p.start + " .. " + p.end + "  " : "") + (p.seconds !== null ? "(" + p.seconds.toFixed(3) + " s)" : ""));
  add("selection", p.selection);
  add("time columns", sec.ncols + " x " + fmtDur(sec.width_ns));
  if (p.synthetic) add("synthetic", "yes: generated, not recorded");
  if (p.redacted) add("redacted", "yes: names and paths are keyed hashes");
  parent.appendChild(dl);
}
function lossBanner(parent, sec, id) {
  if (!sec.lost) return;
  const kinds = Array.from(new Set(sec.losses.filter((l) => l.real).map((l) => l.kind))).join(", ");
  const attrs = {class: "banner"};
  if (id) attrs.id = id;
  parent.appendChild(el("div", attrs,
    sec.label + ": this capture lost " + fmtCount(sec.lost) + " events (" + kinds + ") in " + sec.losses.filter((l) => l.real).length +
    " loss record(s): counts, rates and percentiles miss them. Red marks under the heatmaps show when."));
}
function layerViews(parent, si, sec, lay, li, vmax) {
  const seconds = sec.ncols * sec.width_ns / 1e9;
  parent.appendChild(el("h3", {}, lay.name + " layer: " + fmtCount(lay.events) + " I/Os, p50 " + fmtDur(lay.latency.p50) + ", p99 " + fmtDur(lay.latency.p99) + ", max " + fmtDur(lay.latency.max)));
  drawHeat(parent, si, li, sec, lay, vmax === undefined ? lay.vmax : vmax);
  lineChart(parent, "latency percentiles over time (" + lay.name + ")", [
    {name: "p50", values: lay.p50, color: "#1f77b4"}, {name: "p99", values: lay.p99, color: "#ff7f0e"}, {name: "max", values: lay.max, color: "#d62728", dash: "4,3"}],
    sec.ncols, seconds, {log: true, fmt: fmtDur});
  lineChart(parent, "IOPS over time (" + lay.name + ")", [{name: "IOPS", values: lay.iops, color: "#2ca02c"}], sec.ncols, seconds, {log: false, fmt: (v) => fmtCount(v)});
  lineChart(parent, "throughput over time (" + lay.name + ")", [{name: "bytes/s", values: lay.bps, color: "#9467bd"}], sec.ncols, seconds, {log: false, fmt: (v) => fmtBytes(v) + "/s"});
  const hm = el("div", {class: "small-multiples"});
  for (const op of lay.ops)
    histChart(hm, lay.name + " " + op.op + ": " + fmtCount(op.events) + " I/Os", lay.edges, [{values: op.rows, color: "#4c78a8", bars: true, fmt: fmtCount}]);
  parent.appendChild(el("h3", {}, "latency histograms (" + lay.name + ", per op)"));
  parent.appendChild(hm);
}
function sectionTables(parent, sec) {
  const lat = (v) => fmtDur(v);
  const cols = (name) => [{key: "key", title: name, left: true}, {key: "events", title: "EVENTS", fmt: fmtCount},
    {key: "bytes", title: "BYTES", fmt: fmtBytes}, {key: "errors", title: "ERRORS", fmt: fmtCount},
    {key: "p50", title: "P50", fmt: lat}, {key: "p99", title: "P99", fmt: lat}, {key: "max", title: "MAX", fmt: lat}];
  for (const [name, title] of [["comm", "per process (comm)"], ["path", "per file"], ["dev", "per device"]]) {
    const rows = sec.tables[name];
    if (!rows || !rows.length) continue;
    parent.appendChild(el("h3", {}, title));
    table(parent, cols(name.toUpperCase()), rows, "t-" + name);
  }
  if (sec.top && sec.top.length) {
    parent.appendChild(el("h3", {}, "slowest I/Os"));
    table(parent, [{key: "t", title: "TIME", fmt: (v) => fmtSec(v)}, {key: "lat", title: "LAT", fmt: lat},
      {key: "comm", title: "COMM", left: true}, {key: "pid", title: "PID"}, {key: "layer", title: "LAYER", left: true},
      {key: "op", title: "OP", left: true}, {key: "bytes", title: "BYTES", fmt: fmtBytes}, {key: "offset", title: "OFFSET"},
      {key: "result", title: "RESULT", fmt: (v, r) => r.error || String(v)}, {key: "path", title: "FILE/DEVICE", left: true, fmt: (v, r) => v || r.dev}],
      sec.top, "t-top");
  }
}
function summaryTable(parent, sec) {
  const rows = [];
  for (const lay of sec.layers) for (const op of lay.ops) {
    const r = {layer: lay.name, op: op.op, events: op.events, iops: op.iops, bytes: op.bytes, errors: op.errors};
    for (const [k] of STATS) r[k] = op.latency[k];
    rows.push(r);
  }
  const cols = [{key: "layer", title: "LAYER", left: true}, {key: "op", title: "OP", left: true}, {key: "events", title: "EVENTS", fmt: fmtCount},
    {key: "iops", title: "IOPS", fmt: fmtRate}, {key: "bytes", title: "BYTES", fmt: fmtBytes}, {key: "errors", title: "ERRORS", fmt: fmtCount}];
  for (const [k, t] of STATS) cols.push({key: k, title: t, fmt: fmtDur});
  table(parent, cols, rows, "t-summary");
}

function drawSections(root) {
  D.sections.forEach((sec, si) => {
    const s = el("section", {class: "capture", id: "section-" + si});
    s.appendChild(el("h2", {}, sec.label));
    lossBanner(s, sec);
    provenance(s, sec);
    s.appendChild(el("div", {}, fmtCount(sec.events) + " I/Os, " + fmtRate(sec.iops) + " IOPS, p50 " + fmtDur(sec.latency.p50) + ", p99 " + fmtDur(sec.latency.p99) + ", max " + fmtDur(sec.latency.max)));
    summaryTable(s, sec);
    sec.layers.forEach((lay, li) => layerViews(s, si, sec, lay, li));
    sectionTables(s, sec);
    for (const w of sec.warnings || []) s.appendChild(el("div", {class: "banner"}, "warning: " + w));
    root.appendChild(s);
  });
}

function drawCompare(root) {
  const [b, a] = D.sections, df = D.diff;
  const s = el("section", {class: "compare"});
  s.appendChild(el("h2", {}, b.label + "  vs  " + a.label));
  s.appendChild(el("div", {class: "muted"}, "test: " + df.test.name + " (" + df.test.description + "); alpha " + df.test.alpha));
  const rows = df.rows.map((r) => {
    const o = {what: r.layer + " " + r.op + (r.key ? " " + Object.values(r.key).join(" ") : ""), verdict: r.verdict, p: r.p_value, effect: r.effect,
      events: fmtCount(r.before.events) + " \u2192 " + fmtCount(r.after.events)};
    for (const [k] of STATS) { o[k] = r.ratio[k]; o[k + "_t"] = fmtDur(r.before[k]) + " -> " + fmtDur(r.after[k]); }
    return o;
  });
  const cols = [{key: "what", title: "LAYER OP", left: true}, {key: "events", title: "EVENTS"}];
  for (const [k, t] of STATS) cols.push({key: k, title: t, fmt: (v, r) => r[k + "_t"] + (v === null ? "" : " (" + v.toFixed(2) + "x)")});
  cols.push({key: "p", title: "P-VALUE", fmt: (v) => v === null ? "-" : v.toExponential(1)});
  cols.push({key: "effect", title: "P(after>before)", fmt: (v) => v === null ? "-" : v.toFixed(3)});
  cols.push({key: "verdict", title: "VERDICT", left: true});
  table(s, cols, rows, "t-diff");
  s.querySelectorAll("table.t-diff tbody tr").forEach((tr) => { const v = tr.lastChild.textContent; if (v === "slower" || v === "faster") tr.lastChild.className = "l " + v; });
  const names = Array.from(new Set(b.layers.concat(a.layers).map((l) => l.name)));
  for (const name of names) {
    const lb = b.layers.find((l) => l.name === name), la = a.layers.find((l) => l.name === name);
    s.appendChild(el("h3", {}, name + " layer: before and after on one colour scale"));
    const vmax = Math.max(lb ? lb.vmax : 0, la ? la.vmax : 0);
    if (lb) drawHeat(s, 0, b.layers.indexOf(lb), b, lb, vmax, b.label);
    if (la) drawHeat(s, 1, a.layers.indexOf(la), a, la, vmax, a.label);
    if (lb && la) {
      const frac = (lay) => { const t = new Array(lay.edges.length + 1).fill(0); let n = 0; for (const op of lay.ops) op.rows.forEach((v, r) => { t[r] += v; n += v; }); return t.map((v) => n ? v / n : 0); };
      histChart(s, name + ": share of I/Os per latency row (blue before, orange after)", lb.edges,
        [{values: frac(lb), color: "#1f77b4", fmt: pct}, {values: frac(la), color: "#ff7f0e", fmt: pct}]);
    }
  }
  root.appendChild(s);
}

function main() {
  const root = document.getElementById("root");
  const hdr = el("div", {class: "muted"}, "generated " + D.generated + " by aether-rec " + D.tool_version + (D.command ? ": " + D.command : ""));
  root.appendChild(hdr);
  D.sections.forEach((sec) => lossBanner(root, sec, document.getElementById("loss-banner") ? null : "loss-banner"));
  if (D.mode === "compare") drawCompare(root); else drawSections(root);
  document.body.setAttribute("data-ready", "1");
}
main();
"""

PAGE = (
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
    "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>__TITLE__</title>\n<style>" + CSS + "</style></head>\n<body>\n"
    "<h1>__TITLE__</h1>\n<div id=\"root\"></div>\n"
    "<div id=\"cmdbox\">Click a heatmap cell for the command that extracts its I/Os: "
    "<div id=\"cmd\" class=\"muted\">(no cell selected)</div></div>\n"
    "<div id=\"tip\"></div>\n"
    "<script type=\"application/json\" id=\"aether-data\">__DATA__</script>\n"
    "<script>" + SCRIPT + "</script>\n</body></html>\n"
)
