// The batchrunner dashboard: one WebSocket (/ws) pushes a snapshot a second; this draws it.
// No framework, no build step: the DOM by hand, the plots as SVG polylines. Text goes in as textContent.
"use strict";

const COLORS = ["#1971c2", "#f08c00", "#e03131", "#2f9e44", "#9c36b5", "#0c8599", "#5c940d"];
const SVG = "http://www.w3.org/2000/svg";
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
let socket = null;
let retry = 500;

function query() {
  const q = new URLSearchParams();
  if (params.get("token")) q.set("token", params.get("token"));
  if (params.get("run")) q.set("run", params.get("run"));
  const text = q.toString();
  return text ? "?" + text : "";
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/ws" + query());
  socket.onopen = () => { retry = 500; link("live", "live"); };
  socket.onmessage = (event) => draw(JSON.parse(event.data));
  socket.onclose = () => {  // the dashboard restarted, or the network went: try again, backing off
    link("down", "reconnecting…");
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 5000);
  };
}

function link(state, text) { const el = $("link"); el.dataset.state = state; el.textContent = text; }

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function rows(tbody, list, cells, empty) {
  tbody.replaceChildren();
  if (!list.length) { const tr = el("tr"); const td = el("td", empty, "none"); td.colSpan = 9; tr.append(td); tbody.append(tr); return; }
  for (const item of list) { const tr = el("tr"); for (const c of cells(item)) tr.append(el("td", c)); tbody.append(tr); }
}

function items(ul, list, text, empty) {
  ul.replaceChildren();
  if (!list.length) { ul.append(el("li", empty, "none")); return; }
  for (const item of list) ul.append(el("li", text(item)));
}

function usd(value) { return value === null || value === undefined ? "–" : "$" + Number(value).toFixed(4); }
function num(value) { return Number(value || 0).toLocaleString("en-US"); }
function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return Math.round(s) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}

function picker(runs, current) {
  const select = $("run");
  const names = runs.map((r) => r.name);
  if (select.dataset.names !== names.join("\n")) {
    select.replaceChildren(...runs.map((r) => { const o = el("option", r.name + " (" + num(r.jobs) + ")"); o.value = r.name; return o; }));
    select.dataset.names = names.join("\n");
  }
  if (current) select.value = current;
}

$("run").addEventListener("change", (event) => {
  params.set("run", event.target.value);
  history.replaceState(null, "", location.pathname + query());
  if (socket) { socket.onclose = null; socket.close(); }
  connect();
});

function draw(doc) {
  picker(doc.runs || [], doc.run);
  $("waiting").hidden = !doc.waiting;
  if (doc.waiting) { $("waiting").textContent = "waiting: " + doc.waiting; return; }
  const states = doc.states;
  const finished = states.succeeded + states.failed + states.cancelled;
  const figure = $("finished");
  figure.textContent = num(finished) + " / " + num(doc.total);
  figure.dataset.finished = finished;
  figure.dataset.total = doc.total;
  figure.dataset.succeeded = states.succeeded;
  const share = (n) => (doc.total ? (100 * n) / doc.total : 0) + "%";
  $("bar-succeeded").style.width = share(states.succeeded);
  $("bar-failed").style.width = share(states.failed);
  const tbody = $("states").tBodies[0];
  tbody.replaceChildren();
  const tr = el("tr");
  for (const [name, n] of Object.entries(states)) if (n) tr.append(el("td", name + " " + num(n)));
  tbody.append(tr);
  $("succeeded").textContent = num(states.succeeded);
  $("throughput").textContent = doc.throughput_per_s.toFixed(2) + " jobs/s";
  $("throughput-window").textContent = "throughput, last " + Math.round(doc.throughput_window_s) + " s";
  $("eta").textContent = duration(doc.eta_s);
  $("cost").textContent = usd(doc.cost_usd);
  $("projected").textContent = usd(doc.cost_projected_usd);
  $("tokens").textContent = num(doc.tokens.input) + " / " + num(doc.tokens.output);

  const s = doc.series;
  plot($("plot-jobs"), s, [["jobs/s", s.jobs_per_s]]);
  plot($("plot-tokens"), s, [["tokens/s", s.tokens_per_s]]);
  plot($("plot-latency"), s, Object.entries(s.latency_ms));
  plot($("plot-ttft"), s, Object.entries(s.ttft_ms || {}));
  plot($("plot-errors"), s, [["429", s.rate_limited], ...Object.entries(s.errors)]);

  rows($("runners").tBodies[0], doc.runners, (r) => [
    r.id.slice(0, 12), r.host + ":" + r.pid, r.alive ? "yes" : "no", r.jobs_held, limits(r.limits),
  ], "no runner");
  items($("pauses"), doc.pauses, (p) => p.provider + ": paused " + p.seconds_left + " s more", "none");
  rows($("batches").tBodies[0], doc.batches, (b) => [
    b.local_id, b.provider, b.state + (b.remote_status ? " (" + b.remote_status + ")" : ""), num(b.requests),
    num(b.succeeded) + " / " + num(b.errored),
  ], "none");
  items($("errors"), doc.latest_errors, (e) =>
    e.at.slice(11, 19) + "  " + e.custom_id + " #" + e.attempt + "  " + (e.status || "") + " " + e.error_class +
    (e.error ? "  " + e.error : ""), "none");
  $("outputs-box").hidden = !doc.outputs;
  if (doc.outputs) items($("outputs"), doc.outputs, (o) => o.custom_id + ": " + o.output, "none");
}

// A runner's limits as words: "concurrency 16, openai rpm 500 tpm 200k" (nested objects flattened).
function limits(value) {
  if (!value) return "";
  const said = (v) => v === null ? "none" : typeof v === "number" ? (Number.isInteger(v) && v < 1000 ? String(v) : short(v)) : typeof v === "object"
    ? Object.entries(v).map(([k, w]) => k + " " + said(w)).join(" ") : String(v);
  return Object.entries(value).map(([k, v]) => k + " " + said(v)).join(", ");
}

// A line plot of parallel series over the buckets' times: axes, a max label, one polyline a series.
function plot(svg, series, lines) {
  const W = 600, H = 150, L = 34, B = 16, T = 6;
  const values = lines.flatMap(([, v]) => v.filter((x) => x !== null));
  const top = Math.max(1e-9, ...values) * 1.1;
  const n = series.t.length;
  const x = (i) => L + ((W - L - 4) * i) / Math.max(n - 1, 1);
  const y = (v) => H - B - ((H - B - T) * v) / top;
  const parts = [];
  const axis = (x1, y1, x2, y2) => { const l = document.createElementNS(SVG, "line"); Object.entries({ x1, y1, x2, y2 }).forEach(([k, v]) => l.setAttribute(k, v)); l.setAttribute("class", "axis"); return l; };
  parts.push(axis(L, T, L, H - B), axis(L, H - B, W - 4, H - B));
  const label = (tx, ty, text, anchor) => { const t = document.createElementNS(SVG, "text"); t.setAttribute("x", tx); t.setAttribute("y", ty); t.setAttribute("text-anchor", anchor || "start"); t.textContent = text; return t; };
  parts.push(label(L - 3, T + 8, short(top / 1.1), "end"), label(L - 3, H - B, "0", "end"));
  if (n) parts.push(label(L, H - 3, series.t[0].slice(11, 16)), label(W - 4, H - 3, series.t[n - 1].slice(11, 19), "end"));
  let drawn = 0;
  let legend = L + 6;
  lines.forEach(([name, v], k) => {
    const points = [];
    v.forEach((value, i) => { if (value !== null) points.push(x(i).toFixed(1) + "," + y(value).toFixed(1)); });
    if (!points.length) return;
    drawn += points.length;
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("stroke", COLORS[k % COLORS.length]);
    line.dataset.series = name;
    parts.push(line);
    if (points.length === 1) {  // one point is no line: a dot
      const [cx, cy] = points[0].split(",");
      const dot = document.createElementNS(SVG, "circle");
      dot.setAttribute("cx", cx); dot.setAttribute("cy", cy); dot.setAttribute("r", 2.5);
      dot.setAttribute("fill", COLORS[k % COLORS.length]);
      parts.push(dot);
    }
    parts.push(label(legend, T + 8, name));
    legend += 12 + 6.5 * name.length;
    parts[parts.length - 1].setAttribute("fill", COLORS[k % COLORS.length]);
  });
  svg.replaceChildren(...parts);
  svg.dataset.points = drawn;
  svg.dataset.nonzero = values.filter((v) => v > 0).length;
}

function short(v) { return v >= 1000 ? (v / 1000).toFixed(1) + "k" : v >= 10 ? v.toFixed(0) : v.toFixed(2); }

connect();
