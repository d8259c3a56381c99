// edge-har serve, Live page: every device on the broker, updated by server-sent events.
// Plain JavaScript, no build step and no library. The page keeps no truth of its own: on every
// (re)connect of the stream it re-reads /api/devices, each device's last hour and today's summary,
// then applies the pushed events on top, so a server restart or a slow tab loses nothing.
"use strict";

const HOUR_S = 3600;
const GAP_CAP_S = 5; // as the server's store: a longer silence is an outage, not activity
const SUMMARY_EVERY_MS = 10000;
const REDRAW_EVERY_MS = 5000;
const TIMELINE_STEP_S = 2;
const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
  "#4f46e5", "#65a30d", "#0d9488", "#7c3aed", "#e11d48", "#475569"];
const LIVENESS_PILL = { online: "ok", stale: "warn", stopped: "", offline: "bad", unknown: "" };

const devices = new Map(); // device_id -> {view, points: [[ts, label, conf]], card, summary}
const colours = new Map();
let source = null;
let loading = null;
let clockSkew = 0; // server now - browser now, so "seconds ago" is right on a badly set laptop

function colour(label) {
  if (label === "unknown") return "#9ca3af";
  if (!colours.has(label)) {
    let h = 0;
    for (const ch of label) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    let pick = PALETTE[h % PALETTE.length];
    const used = new Set(colours.values());
    for (let i = 0; used.has(pick) && i < PALETTE.length; i++) pick = PALETTE[(h + i) % PALETTE.length];
    colours.set(label, pick);
  }
  return colours.get(label);
}

function now() { return Date.now() / 1000 + clockSkew; }
function utcOffsetMin() { return -new Date().getTimezoneOffset(); }
function fmt(value, digits, unit) {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}${unit || ""}`;
}
function duration(s) {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

// ------------------------------------------------------------------ state from the API

function load() {
  if (!loading) loading = reload().finally(() => { loading = null; });
  return loading;
}

async function reload() {
  const body = await getJSON("/api/devices");
  clockSkew = body.now - Date.now() / 1000;
  showBroker(body.broker);
  const since = body.now - HOUR_S;
  await Promise.all(body.devices.map(async (view) => {
    const device = ensure(view.device_id);
    device.view = view;
    // one point per TIMELINE_STEP_S is all a card's width can show of an hour (7 windows/s would be 25,000)
    const history = await getJSON(
      `/api/devices/${encodeURIComponent(view.device_id)}/history?since=${since}&step_s=${TIMELINE_STEP_S}`);
    device.points = history.predictions.map((p) => [p.ts, p.label, p.confidence, p.run_id, p.seq]);
    await loadSummary(device);
    render(device);
  }));
  document.getElementById("empty").hidden = devices.size > 0;
}

async function loadSummary(device) {
  const id = encodeURIComponent(device.view.device_id);
  try {
    device.summary = await getJSON(`/api/devices/${id}/summary?utc_offset_min=${utcOffsetMin()}`);
  } catch (err) {
    device.summary = null;
  }
}

function ensure(id) {
  let device = devices.get(id);
  if (!device) {
    const card = document.getElementById("device-template").content.firstElementChild.cloneNode(true);
    card.dataset.device = id;
    card.querySelector(".name").textContent = id;
    const list = document.getElementById("devices");
    const after = [...list.children].find((el) => el.dataset.device > id);
    list.insertBefore(card, after || null);
    device = { view: { device_id: id, liveness: "unknown", stats: null, activity: null }, points: [], card, summary: null };
    devices.set(id, device);
    document.getElementById("empty").hidden = true;
  }
  return device;
}

// ------------------------------------------------------------------ drawing

function render(device) {
  const { view, card } = device;
  const liveness = view.liveness || "unknown";
  card.className = `panel device ${liveness}`;
  const pill = card.querySelector(".liveness");
  pill.textContent = liveness;
  pill.dataset.liveness = liveness;
  pill.className = `pill liveness ${LIVENESS_PILL[liveness] || ""}`;
  card.querySelector(".model").textContent = view.model_id || "";
  const activity = view.activity;
  card.querySelector(".now .label").textContent = activity ? activity.label : "–";
  card.querySelector(".now .label").style.color = activity && liveness === "online" ? colour(activity.label) : "";
  card.querySelector(".now .conf").textContent = activity ? `${Math.round(activity.confidence * 100)} %` : "";
  renderAge(device);
  const stats = view.stats || {};
  card.querySelector(".wps").textContent = fmt(stats.windows_per_s, 1);
  card.querySelector(".p50").textContent = fmt(stats.inference_p50_ms, 2, " ms");
  card.querySelector(".queue").textContent = fmt(stats.queue_depth, 0);
  card.querySelector(".reconnects").textContent = fmt(stats.reconnects, 0);
  renderTimeline(device);
  renderToday(device);
}

function renderAge(device) {
  const activity = device.view.activity;
  device.card.querySelector(".age").textContent = activity ? `${duration(Math.max(0, now() - activity.ts))} ago` : "";
}

function renderTimeline(device) {
  const svg = device.card.querySelector("svg.hour");
  const end = now();
  const start = end - HOUR_S;
  device.points = device.points.filter((p) => p[0] > start - GAP_CAP_S);
  const parts = [];
  const seen = new Set();
  let span = null; // [x0, x1, label]: consecutive windows of one label drawn as one rectangle
  const flush = () => { if (span) parts.push(rect(span)); span = null; };
  const rect = ([x0, x1, label]) =>
    `<rect x="${x0.toFixed(1)}" y="0" width="${Math.max(1, x1 - x0).toFixed(1)}" height="10" fill="${colour(label)}"><title>${escapeHtml(label)}</title></rect>`;
  device.points.forEach((p, i) => {
    const next = device.points[i + 1];
    const sameRun = next && next[3] === p[3];
    const lasts = sameRun ? Math.min(next[0] - p[0], GAP_CAP_S) : 0.5;
    const x0 = Math.max(0, p[0] - start);
    const x1 = Math.min(HOUR_S, p[0] - start + lasts);
    if (x1 <= 0) return;
    seen.add(p[1]);
    if (span && span[2] === p[1] && x0 - span[1] < 0.01 + GAP_CAP_S / 10) span[1] = x1;
    else { flush(); span = [x0, x1, p[1]]; }
  });
  flush();
  svg.innerHTML = parts.join("");
  device.card.querySelector(".legend").innerHTML = [...seen].sort()
    .map((label) => `<span><i style="background:${colour(label)}"></i>${escapeHtml(label)}</span>`).join("");
}

function renderToday(device) {
  const box = device.card.querySelector(".today");
  const seconds = device.summary ? device.summary.seconds : {};
  const entries = Object.entries(seconds).filter(([, s]) => s > 0);
  if (!entries.length) {
    box.innerHTML = '<span class="muted">nothing yet today</span>';
    return;
  }
  const most = Math.max(...entries.map(([, s]) => s));
  box.innerHTML = entries.map(([label, s]) => `
    <div class="bar" data-label="${escapeHtml(label)}">
      <span class="name">${escapeHtml(label)}</span>
      <span class="track"><span class="fill" style="display:block;width:${(100 * s / most).toFixed(1)}%;background:${colour(label)}"></span></span>
      <span class="value">${duration(s)}</span>
    </div>`).join("");
}

function showBroker(broker) {
  const box = document.getElementById("broker");
  if (!broker.configured) {
    box.className = "panel";
    box.innerHTML = '<strong>No broker is configured.</strong> <span class="muted">This page shows what the store holds; ' +
      "start <code>edge-har serve --broker HOST:PORT</code> to follow devices live.</span>";
    return;
  }
  box.className = broker.connected ? "panel" : "panel bad";
  const state = broker.connected ? '<span class="pill ok">connected</span>' : '<span class="pill bad">not connected</span>';
  const problem = !broker.connected && broker.last_problem ? ` <span class="muted">${escapeHtml(broker.last_problem)}</span>` : "";
  box.innerHTML = `Broker <code>${escapeHtml(broker.address)}</code> ${state}${problem}`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// ------------------------------------------------------------------ the stream

function streamState(text, down) {
  const el = document.getElementById("stream-state");
  el.textContent = text;
  el.classList.toggle("down", down);
}

function connect() {
  source = new EventSource("/api/stream");
  source.addEventListener("hello", () => {
    streamState("live", false);
    load().catch((err) => streamState(`live (reload failed: ${err.message})`, true));
  });
  source.onerror = () => {
    streamState("reconnecting…", true);
    // EventSource retries by itself after the server's retry: delay, unless the answer was an
    // error status (a proxy's 502 while the server restarts): then it gives up, so start anew.
    if (source.readyState === EventSource.CLOSED) {
      source = null;
      setTimeout(connect, 2000);
    }
  };
  source.addEventListener("predictions", (e) => {
    const touched = new Set();
    let unknown = false;
    for (const p of JSON.parse(e.data).items) {
      if (!devices.has(p.device_id)) unknown = true;
      const device = ensure(p.device_id);
      const last = device.points[device.points.length - 1];
      if (!last || p.ts > last[0]) device.points.push([p.ts, p.label, p.confidence, p.run_id, p.seq]);
      else if (!device.points.some((q) => q[3] === p.run_id && q[4] === p.seq)) {
        device.points.push([p.ts, p.label, p.confidence, p.run_id, p.seq]);
        device.points.sort((a, b) => a[0] - b[0]);
      }
      if (!device.view.activity || p.ts >= device.view.activity.ts) {
        device.view.activity = { label: p.label, confidence: p.confidence, ts: p.ts };
        device.view.run_id = p.run_id;
        device.view.model_id = p.model_id;
      }
      touched.add(device);
    }
    touched.forEach(render);
    if (unknown) load(); // a new device: fetch its stats and status too
  });
  source.addEventListener("status", (e) => {
    const m = JSON.parse(e.data);
    const device = ensure(m.device_id);
    device.view.status = m.status;
    device.view.liveness = m.liveness;
    render(device);
  });
  source.addEventListener("liveness", (e) => {
    const m = JSON.parse(e.data);
    const device = ensure(m.device_id);
    device.view.liveness = m.liveness;
    render(device);
  });
  source.addEventListener("stats", (e) => {
    const m = JSON.parse(e.data);
    const device = ensure(m.device_id);
    device.view.stats = m.stats;
    device.view.liveness = m.liveness;
    render(device);
  });
  source.addEventListener("broker", (e) => showBroker(JSON.parse(e.data)));
  source.addEventListener("resync", () => load());
}

setInterval(() => devices.forEach((d) => { renderAge(d); renderTimeline(d); }), REDRAW_EVERY_MS);
setInterval(() => devices.forEach((d) => loadSummary(d).then(() => renderToday(d))), SUMMARY_EVERY_MS);
connect();
