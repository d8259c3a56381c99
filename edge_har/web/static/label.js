// edge-har serve, the Label page: /label lists the recordings the server holds; /label/<device>/<session>
// shows one session's signal, the model's predictions under it, and its label segments to edit.
//
// The segments are the session's labels.csv as GET/PUT /api/recordings/{device}/{session}/labels read and
// write it: {label, start, end} in Unix seconds, start <= t < end, end null for a segment still open (it
// runs to the end of the recording). They are edited in the browser (drag on empty space to add one, drag
// an edge or a whole segment to move it; digits relabel, Delete removes) and written back with Save; a
// refusal is shown as the server's one line, naming the segment. Edits never let two segments overlap:
// an edge stops at its neighbour, and an edge shared with a neighbour moves that neighbour's edge too.
// A captured window (recording.json's capture) gets a panel to confirm the model's label or give another,
// which saves one segment spanning the window. "Explain" asks GET /api/recordings/{device}/{session}/explain
// for the model window at the selected segment's centre and draws it with explain.js (the signal per
// channel over a heat band of the occlusion attribution). Plain JavaScript, uPlot (vendored), colours
// from palette.js.
"use strict";

(function () {
  const MAX_POINTS = 2000; // signal points per request (the server decimates to min/max pairs)
  const GAP_CAP_S = 5; // as the server's store: a longer silence between predictions is not activity
  const EDGE_PX = 7; // a segment's edge handle, in CSS pixels
  const MIN_DRAG_PX = 4; // a press that moves less is a click
  const HISTORY_LIMIT = 5000;
  const $ = (id) => document.getElementById(id);

  const state = {
    device: "",
    session: "",
    rec: null, // this session's item of GET /api/recordings
    full: null, // {start, end} of the whole recording
    view: null, // {start, end} the chart shows
    signal: null, // {t, channels, cols, decimated}
    segments: [], // [{label, start, end|null}], sorted by start, never overlapping
    selected: -1,
    pen: null, // the label a new segment gets
    classes: [],
    predictions: null, // history rows, or null when the store has none for this device
    predictionStep: 0,
    dirty: false,
    saving: false,
    saves: 0, // successful saves (the browser test waits on it)
    loaded: false,
    error: "",
  };
  const charts = { signal: null };
  window.edgeHarLabel = {
    state,
    charts,
    x: (ts) => laneX(ts), // CSS pixels from the lane's left edge (the browser test drags with it)
  };

  // ------------------------------------------------------------------ formatting

  function pad(n) { return String(n).padStart(2, "0"); }
  function clock(ts, decimals) {
    const d = new Date(ts * 1000);
    const s = decimals ? (d.getSeconds() + (ts % 1 + 1) % 1).toFixed(decimals).padStart(3 + decimals, "0") : pad(d.getSeconds());
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${s}`;
  }
  function dayText(ts) {
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }
  function duration(s) {
    s = Math.max(0, s);
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  }
  function cssVar(name, fallback) {
    return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
  }

  // ------------------------------------------------------------------ requests

  class HttpError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  async function request(method, url, body) {
    const init = { method, cache: "no-store", headers: {} };
    if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new HttpError(0, "the server is not answering");
    }
    if (!response.ok) {
      let detail = `HTTP ${response.status}`;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      if (typeof detail !== "string") detail = detailText(detail);
      throw new HttpError(response.status, detail);
    }
    return response.json();
  }

  function detailText(detail) {
    // FastAPI's validation errors are a list of {loc, msg}: one line naming the field.
    if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    return JSON.stringify(detail);
  }

  function sessionApi(path) {
    return `/api/recordings/${encodeURIComponent(state.device)}/${encodeURIComponent(state.session)}${path}`;
  }

  function showError(text) {
    state.error = text || "";
    $("error").textContent = state.error;
    $("error").hidden = !state.error;
  }

  // ------------------------------------------------------------------ the list of recordings

  async function showList() {
    $("list-panel").hidden = false;
    $("title").textContent = "Recordings";
    const device = new URLSearchParams(location.search).get("device") || "";
    $("filter-device").value = device;
    $("filter").addEventListener("submit", (e) => {
      e.preventDefault();
      const d = $("filter-device").value.trim();
      history.replaceState(null, "", d ? `/label?device=${encodeURIComponent(d)}` : "/label");
      loadList(d);
    });
    await loadList(device);
  }

  async function loadList(device) {
    const q = new URLSearchParams({ limit: "1000" });
    if (device) q.set("device", device);
    let answer;
    try {
      answer = await request("GET", `/api/recordings?${q}`);
      showError("");
    } catch (err) {
      showError(`The recordings: ${err.message}`);
      return;
    }
    const body = $("recordings").querySelector("tbody");
    body.replaceChildren();
    const recs = answer.recordings || [];
    for (const r of recs) {
      const tr = document.createElement("tr");
      const cell = (text, cls) => {
        const td = document.createElement("td");
        if (cls) td.className = cls;
        if (text instanceof Node) td.append(text); else td.textContent = text;
        tr.append(td);
        return td;
      };
      cell(r.device_id, "mono");
      const a = document.createElement("a");
      a.href = `/label/${encodeURIComponent(r.device_id)}/${encodeURIComponent(r.session_id)}`;
      a.textContent = r.session_id;
      a.className = "mono";
      cell(a);
      const started = r.start ?? r.started;
      cell(started ? `${dayText(started)} ${clock(started)}` : "–");
      cell(r.start != null && r.end != null ? duration(r.end - r.start) : "–", "num");
      cell(`${duration(r.labelled_s || 0)} in ${r.labels || 0} segment${r.labels === 1 ? "" : "s"}`, "num");
      const kind = r.capture ? `capture: ${r.capture.reason || "?"}${r.capture.corrected ? ` → ${r.capture.corrected}` : ""}` : "recording";
      cell(r.error ? `${kind} (unreadable: ${r.error})` : kind);
      body.append(tr);
    }
    $("list-note").textContent = recs.length ? "" : device ? `No recordings of “${device}” on this server.` : "No recordings on this server yet: `edge-har record --push URL` uploads them.";
  }

  // ------------------------------------------------------------------ one session: loading

  async function loadSession() {
    $("session-view").hidden = false;
    $("title").textContent = `${state.device} · ${state.session}`;
    document.title = `edge-har · Label ${state.session}`;
    state.rec = await findRecording();
    if (!state.rec) throw new HttpError(404, `no recording ${state.device}/${state.session} on this server`);
    if (state.rec.error) showError(`This recording is partly unreadable: ${state.rec.error}`);
    const labels = await request("GET", sessionApi("/labels"));
    state.segments = normalise(labels.segments || []);
    const whole = await request("GET", sessionApi(`/signal?max_points=${MAX_POINTS}`));
    state.signal = columns(whole);
    state.full = fullRange();
    state.view = { ...state.full };
    collectClasses();
    showMeta(labels.edited);
    showCapture();
    drawChart();
    renderAll();
    loadPredictions();
    state.loaded = true;
  }

  async function findRecording() {
    // The session's own item (GET /api/recordings/{device}/{session}), else looked up in the device's list.
    try {
      const item = await request("GET", sessionApi(""));
      if (item && item.session_id === state.session) return item;
    } catch (err) {
      if (err.status === 0) throw err;
    }
    const list = await request("GET", `/api/recordings?${new URLSearchParams({ device: state.device, limit: "1000" })}`);
    return (list.recordings || []).find((r) => r.session_id === state.session) || null;
  }

  function normalise(segments) {
    return segments
      .map((s) => ({ label: String(s.label), start: Number(s.start), end: s.end === null || s.end === undefined ? null : Number(s.end) }))
      .sort((a, b) => a.start - b.start);
  }

  function columns(sig) {
    const t = sig.t || [];
    const channels = sig.channels || [];
    const values = sig.values || [];
    const perChannel = values.length === channels.length && values.every((v) => Array.isArray(v) && v.length === t.length);
    const cols = perChannel ? values : channels.map((_, c) => values.map((row) => (row ? row[c] : null)));
    return { t, channels, cols, decimated: Boolean(sig.decimated) };
  }

  function period() {
    const rate = state.rec && state.rec.sample_rate_hz;
    return rate > 0 ? 1 / rate : 0;
  }

  function fullRange() {
    // The first sample to just past the last one (a segment covers start <= t < end), widened to every segment.
    const t = state.signal.t;
    let start = state.rec.start ?? (t.length ? t[0] : state.rec.started);
    let end = (state.rec.end ?? (t.length ? t[t.length - 1] : start)) + period();
    for (const s of state.segments) {
      start = Math.min(start, s.start);
      if (s.end !== null) end = Math.max(end, s.end);
    }
    if (!(end > start)) end = start + 1;
    return { start, end };
  }

  function collectClasses() {
    const seen = [...state.classes];
    const add = (l) => { if (l && l !== "none" && !seen.includes(l)) seen.push(l); };
    const cap = state.rec && state.rec.capture;
    if (cap) {
      add(cap.predicted);
      add(cap.corrected);
      Object.keys(cap.probabilities || {}).forEach(add);
    }
    state.segments.forEach((s) => add(s.label));
    state.classes = seen;
    if (!state.pen && seen.length) state.pen = seen[0];
  }

  async function loadSignal() {
    const v = state.view;
    const q = new URLSearchParams({ start: v.start.toFixed(6), end: v.end.toFixed(6), max_points: String(MAX_POINTS) });
    const asked = { ...v };
    try {
      const sig = columns(await request("GET", sessionApi(`/signal?${q}`)));
      if (asked.start !== state.view.start || asked.end !== state.view.end) return; // a newer zoom won
      state.signal = sig;
      charts.signal.setData([sig.t, ...sig.cols], false);
      charts.signal.setScale("x", { min: v.start, max: v.end });
      showError("");
    } catch (err) {
      showError(`The signal: ${err.message}`);
    }
  }

  async function loadPredictions() {
    const { start, end } = state.view;
    const step = Math.max(0.01, Math.ceil(((end - start) / MAX_POINTS) * 1000) / 1000);
    const q = new URLSearchParams({ since: start.toFixed(3), until: end.toFixed(3), limit: String(HISTORY_LIMIT), step_s: String(step) });
    try {
      const h = await request("GET", `/api/devices/${encodeURIComponent(state.device)}/history?${q}`);
      state.predictions = h.predictions || [];
      state.predictionStep = h.step_s || 0;
      $("predictions-note").textContent = state.predictions.length ? "" : "The model made no predictions on this device during this time.";
    } catch (err) {
      state.predictions = null;
      $("predictions-note").textContent = err.status === 404
        ? `No predictions of “${state.device}” are stored on this server, so the model lane is empty.`
        : `The model's predictions: ${err.message}`;
    }
    drawPredictions();
    legend();
  }

  // ------------------------------------------------------------------ the header and the capture panel

  function showMeta(edited) {
    const r = state.rec;
    const parts = [];
    if (r.start != null) parts.push(`${dayText(r.start)} ${clock(r.start)} → ${clock(state.full.end)} (${duration(state.full.end - state.full.start)})`);
    if (r.sample_rate_hz) parts.push(`${r.sample_rate_hz} Hz`);
    if (r.channels) parts.push(`${r.channels.length} channels`);
    if (r.samples != null) parts.push(`${Number(r.samples).toLocaleString()} samples`);
    if (edited) parts.push("labels edited here");
    $("meta").textContent = parts.join(" · ");
  }

  function showCapture() {
    const cap = state.rec && state.rec.capture;
    $("capture").hidden = !cap;
    if (!cap) return;
    const conf = typeof cap.confidence === "number" ? `${Math.round(cap.confidence * 100)}%` : "?";
    const reasons = { unsure: "the model was unsure", near_tie: "two classes came close", corrected: "a person corrected it" };
    const text = [`The model predicted “${cap.predicted}” with ${conf} confidence; captured because ${reasons[cap.reason] || cap.reason}.`];
    if (cap.corrected) text.push(`Corrected to “${cap.corrected}”.`);
    $("capture-text").textContent = text.join(" ");
    const probs = $("capture-probs");
    probs.replaceChildren();
    for (const [label, p] of Object.entries(cap.probabilities || {}).sort((a, b) => b[1] - a[1])) {
      const span = document.createElement("span");
      const i = document.createElement("i");
      i.style.background = EdgeHarPalette.colourFor(label);
      span.append(i, `${label} ${Math.round(p * 100)}%`);
      probs.append(span);
    }
    const box = $("capture-buttons");
    box.replaceChildren();
    const button = (label, text, cls) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = `rec-label ${cls || ""}`;
      b.dataset.label = label;
      const i = document.createElement("i");
      i.style.background = EdgeHarPalette.colourFor(label);
      b.append(i, text);
      b.addEventListener("click", () => labelWindow(label));
      box.append(b);
    };
    if (cap.predicted) button(cap.predicted, `Confirm as ${cap.predicted}`, "rec-primary");
    for (const label of state.classes) if (label !== cap.predicted) button(label, `Relabel as ${label}`);
    markCapture();
  }

  function markCapture() {
    const one = state.segments.length === 1 ? state.segments[0].label : null;
    for (const b of $("capture-buttons").querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.label === one));
  }

  async function labelWindow(label) {
    state.segments = [{ label, start: state.full.start, end: state.full.end }];
    state.selected = 0;
    changed();
    await save();
  }

  // ------------------------------------------------------------------ the chart and its lanes

  function plotBox() {
    // The plotting area inside the chart, in CSS pixels from the chart's left edge.
    const over = charts.signal && charts.signal.over;
    return over ? { left: over.offsetLeft, width: over.clientWidth } : { left: 0, width: 1 };
  }
  function laneX(ts) {
    const v = state.view;
    return ((ts - v.start) / (v.end - v.start)) * plotBox().width;
  }
  function laneT(x) {
    const v = state.view;
    return v.start + (x / plotBox().width) * (v.end - v.start);
  }

  function chartWidth() { return Math.max(200, $("chart").clientWidth); }

  function drawChart() {
    if (charts.signal) { charts.signal.destroy(); charts.signal = null; $("chart").replaceChildren(); }
    const sig = state.signal;
    const axis = {
      stroke: cssVar("--muted", "#5f6975"),
      grid: { stroke: cssVar("--line", "#dde1e6"), width: 1 },
      ticks: { stroke: cssVar("--line", "#dde1e6"), width: 1 },
    };
    charts.signal = new uPlot({
      width: chartWidth(),
      height: 220,
      padding: [8, 12, 0, 0],
      legend: { show: false },
      cursor: { y: false, points: { show: false }, drag: { x: true, y: false, setScale: false } },
      select: { show: true },
      scales: { x: { time: true, auto: false, range: () => [state.view.start, state.view.end] } },
      axes: [
        { ...axis, size: 34, space: 80, values: (u, splits, _a, _s, incr) => splits.map((ts) => clock(ts, incr < 1 ? 1 : 0)) },
        { ...axis, size: 56 },
      ],
      series: [{}, ...sig.channels.map((c, i) => ({ label: c, stroke: channelColour(i), width: 1, points: { show: false } }))],
      hooks: { draw: [shadeSegments], setSelect: [zoomTo], setCursor: [hoverAt], setSize: [relayout], ready: [relayout] },
    }, [sig.t, ...sig.cols], $("chart"));
  }

  function relayout() {
    // uPlot sizes its plotting area after construction and on every resize: the lanes follow it.
    placeLanes();
    renderLane();
    drawPredictions();
  }

  function channelColour(i) {
    // Channels in greys and blues of the theme so the labels' colours stay the page's only loud ones.
    const light = !window.matchMedia("(prefers-color-scheme: dark)").matches;
    const tones = light ? ["#1d232b", "#5f6975", "#2563eb", "#8a94a3", "#0f8c96", "#a07a00"] : ["#e6e9ee", "#9ba5b2", "#60a5fa", "#6b7585", "#2bb5bf", "#d4a72c"];
    return tones[i % tones.length];
  }

  function shadeSegments(u) {
    const { ctx, bbox } = u;
    ctx.save();
    ctx.globalAlpha = 0.13;
    for (const s of state.segments) {
      const a = Math.max(bbox.left, u.valToPos(s.start, "x", true));
      const b = Math.min(bbox.left + bbox.width, u.valToPos(s.end ?? state.full.end, "x", true));
      if (b <= a) continue;
      ctx.fillStyle = EdgeHarPalette.colourFor(s.label);
      ctx.fillRect(a, bbox.top, b - a, bbox.height);
    }
    ctx.restore();
  }

  function placeLanes() {
    const { left, width } = plotBox();
    for (const id of ["lane", "predictions"]) {
      const el = $(id);
      el.style.marginLeft = `${left}px`;
      el.style.width = `${width}px`;
    }
    for (const name of document.querySelectorAll(".rec-lane-name")) name.style.width = `${left}px`;
  }

  function zoomTo(u) {
    const sel = u.select;
    if (!sel || sel.width < 5) return;
    const a = u.posToVal(sel.left, "x"), b = u.posToVal(sel.left + sel.width, "x");
    u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    if (b - a < Math.max(0.2, 10 * period())) return;
    setView({ start: a, end: b });
  }

  function setView(v) {
    state.view = v;
    $("reset-zoom").disabled = v.start <= state.full.start && v.end >= state.full.end;
    charts.signal.setScale("x", { min: v.start, max: v.end });
    renderLane();
    drawPredictions();
    loadSignal();
    loadPredictions();
  }

  function hoverAt(u) {
    const left = u.cursor.left;
    if (left === null || left === undefined || left < 0) return;
    hoverText(u.posToVal(left, "x"));
  }

  function hoverText(ts) {
    const parts = [clock(ts, 2), `+${(ts - state.full.start).toFixed(2)} s`];
    const seg = state.segments.find((s) => s.start <= ts && ts < (s.end ?? state.full.end));
    parts.push(`label: ${seg ? seg.label : "–"}`);
    const p = predictionAt(ts);
    if (p) parts.push(`model: ${p.label}${typeof p.confidence === "number" ? ` ${Math.round(p.confidence * 100)}%` : ""}`);
    $("hover").textContent = parts.join(" · ");
  }

  // ------------------------------------------------------------------ the model's predictions

  function predictionRuns() {
    // Each prediction covers the time since the one before (its window ends at ts), unless that was a silence.
    const rows = state.predictions || [];
    const gap = Math.max(GAP_CAP_S, state.predictionStep * 1.5);
    const out = [];
    let prev = null;
    for (const p of rows) {
      const joined = prev !== null && p.ts - prev.ts <= gap;
      const start = joined ? prev.ts : p.ts - Math.max(state.predictionStep, 1);
      const last = out[out.length - 1];
      if (last && joined && last.label === p.label) last.end = p.ts;
      else out.push({ label: p.label, start, end: p.ts });
      prev = p;
    }
    return out;
  }

  function predictionAt(ts) {
    const rows = state.predictions || [];
    let best = null;
    for (const p of rows) { if (p.ts >= ts) { best = p; break; } }
    return best && best.ts - ts <= Math.max(GAP_CAP_S, state.predictionStep * 1.5) ? best : null;
  }

  function drawPredictions() {
    const el = $("predictions");
    let canvas = el.querySelector("canvas");
    if (!canvas) { canvas = document.createElement("canvas"); el.append(canvas); }
    const ratio = window.devicePixelRatio || 1;
    const width = plotBox().width, height = el.clientHeight || 18;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, width, height);
    for (const run of predictionRuns()) {
      const a = Math.max(0, laneX(run.start)), b = Math.min(width, laneX(run.end));
      if (b <= a) continue;
      ctx.fillStyle = EdgeHarPalette.colourFor(run.label);
      ctx.fillRect(a, 0, Math.max(1, b - a), height);
    }
  }

  // ------------------------------------------------------------------ the label segments

  function segEnd(s) { return s.end ?? state.full.end; }

  function renderLane() {
    const lane = $("lane");
    lane.querySelectorAll(".rec-seg").forEach((n) => n.remove());
    const width = plotBox().width;
    state.segments.forEach((s, i) => {
      const a = laneX(s.start), b = laneX(segEnd(s));
      if (b < 0 || a > width) return;
      const div = document.createElement("div");
      div.className = `rec-seg${i === state.selected ? " rec-selected" : ""}${s.end === null ? " rec-open" : ""}`;
      div.dataset.index = String(i);
      div.style.left = `${a}px`;
      div.style.width = `${Math.max(2, b - a)}px`;
      div.style.background = EdgeHarPalette.colourFor(s.label);
      div.title = `${s.label}: ${clock(s.start, 2)} → ${s.end === null ? "end" : clock(s.end, 2)}`;
      const name = document.createElement("span");
      name.textContent = s.label;
      const l = document.createElement("b");
      l.className = "rec-edge rec-edge-start";
      l.dataset.edge = "start";
      const r = document.createElement("b");
      r.className = "rec-edge rec-edge-end";
      r.dataset.edge = "end";
      div.append(l, name, r);
      lane.append(div);
    });
  }

  function renderTable() {
    const body = $("segments").querySelector("tbody");
    body.replaceChildren();
    state.segments.forEach((s, i) => {
      const tr = document.createElement("tr");
      if (i === state.selected) tr.className = "rec-selected-row";
      const label = document.createElement("td");
      const sw = document.createElement("i");
      sw.className = "swatch";
      sw.style.background = EdgeHarPalette.colourFor(s.label);
      label.append(sw, s.label);
      const cells = [clock(s.start, 2), s.end === null ? "open (end)" : clock(s.end, 2), duration(segEnd(s) - s.start)];
      tr.append(label, ...cells.map((text, k) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (k === 2) td.className = "num";
        return td;
      }));
      tr.addEventListener("click", () => select(i));
      body.append(tr);
    });
    if (!state.segments.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 4;
      td.className = "muted";
      td.textContent = "No segments: drag on the labels lane to add one.";
      tr.append(td);
      body.append(tr);
    }
  }

  function renderButtons() {
    const box = $("labels");
    box.replaceChildren();
    state.classes.forEach((label, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "rec-label";
      b.dataset.label = label;
      const sw = document.createElement("i");
      sw.style.background = EdgeHarPalette.colourFor(label);
      const k = document.createElement("kbd");
      k.textContent = i < 9 ? String(i + 1) : "";
      b.append(sw, label, k);
      b.setAttribute("aria-pressed", String(label === currentLabel()));
      b.addEventListener("click", () => pickLabel(label));
      box.append(b);
    });
    const form = document.createElement("form");
    form.className = "rec-new-label";
    const input = document.createElement("input");
    input.placeholder = "another label";
    input.maxLength = 64;
    input.setAttribute("aria-label", "another label");
    const add = document.createElement("button");
    add.type = "submit";
    add.textContent = "Add";
    form.append(input, add);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const label = input.value.trim();
      if (!label) return;
      if (label === "none" || label.length > 64 || /[\u0000-\u001f\u007f]/.test(label)) {
        showError(`The label “${label.slice(0, 64)}” is not allowed: 1 to 64 characters, no control characters, not “none”.`);
        return;
      }
      if (!state.classes.includes(label)) state.classes.push(label);
      pickLabel(label);
    });
    box.append(form);
  }

  function currentLabel() {
    return state.selected >= 0 ? state.segments[state.selected].label : state.pen;
  }

  function renderAll() {
    renderButtons();
    renderLane();
    renderTable();
    markCapture();
    legend();
    $("delete").disabled = state.selected < 0;
    $("explain-segment").disabled = state.selected < 0;
    $("save").disabled = !state.dirty || state.saving;
    $("dirty").textContent = state.saving ? "saving…" : state.dirty ? "unsaved changes" : "";
    if (charts.signal) charts.signal.redraw(false);
  }

  function legend() {
    const el = $("legend");
    el.replaceChildren();
    const labels = new Set(state.segments.map((s) => s.label));
    for (const p of state.predictions || []) labels.add(p.label);
    for (const label of labels) {
      const span = document.createElement("span");
      const i = document.createElement("i");
      i.style.background = EdgeHarPalette.colourFor(label);
      span.append(i, label);
      el.append(span);
    }
  }

  function changed() {
    state.segments.sort((a, b) => a.start - b.start);
    state.dirty = true;
    $("saved-state").textContent = "";
    renderAll();
  }

  function select(i) {
    state.selected = i;
    renderAll();
  }

  function pickLabel(label) {
    state.pen = label;
    if (state.selected >= 0 && state.segments[state.selected].label !== label) {
      state.segments[state.selected].label = label;
      changed();
    } else {
      renderAll();
    }
  }

  function removeSelected() {
    if (state.selected < 0) return;
    state.segments.splice(state.selected, 1);
    state.selected = -1;
    changed();
  }

  // ------------------------------------------------------------------ dragging in the lane

  let drag = null;

  function minLength() { return Math.max(period(), 0.01); }

  function bounds(i) {
    // How far segment i may reach: its neighbours' edges, or the recording's ends.
    const prev = state.segments[i - 1], next = state.segments[i + 1];
    return { lo: prev ? segEnd(prev) : state.full.start, hi: next ? next.start : state.full.end };
  }

  function touching(a, b) { return Math.abs(a - b) < 1e-6; }

  function onPointerDown(e) {
    if (e.button !== 0 || !state.loaded) return;
    const lane = $("lane");
    const x0 = e.clientX - lane.getBoundingClientRect().left;
    const segEl = e.target.closest(".rec-seg");
    const i = segEl ? Number(segEl.dataset.index) : -1;
    if (i >= 0) {
      const s = state.segments[i];
      const edge = e.target.dataset.edge || edgeNear(segEl, e.clientX);
      drag = { mode: edge ? `edge-${edge}` : "move", i, x0, orig: { ...s }, moved: false };
      if (edge === "start" && state.segments[i - 1] && touching(segEnd(state.segments[i - 1]), s.start)) drag.linked = i - 1;
      if (edge === "end" && state.segments[i + 1] && touching(state.segments[i + 1].start, segEnd(s))) drag.linked = i + 1;
      if (drag.linked !== undefined) drag.linkedOrig = { ...state.segments[drag.linked] };
      if (state.selected !== i) select(i);
    } else {
      const t = laneT(x0);
      if (t < state.full.start || t > state.full.end) return;
      // the empty stretch the press is in: a new segment stays inside it
      let lo = state.full.start, hi = state.full.end;
      for (const s of state.segments) {
        if (segEnd(s) <= t) lo = Math.max(lo, segEnd(s));
        else if (s.start > t) hi = Math.min(hi, s.start);
        else return; // inside an open segment's tail
      }
      drag = { mode: "create", x0, t0: t, lo, hi, moved: false, i: -1 };
    }
    lane.setPointerCapture(e.pointerId);
    e.preventDefault();
  }

  function edgeNear(segEl, clientX) {
    const box = segEl.getBoundingClientRect();
    if (box.width < 3 * EDGE_PX) return null;
    if (clientX - box.left <= EDGE_PX) return "start";
    if (box.right - clientX <= EDGE_PX) return "end";
    return null;
  }

  function onPointerMove(e) {
    const lane = $("lane");
    const x = e.clientX - lane.getBoundingClientRect().left;
    if (!drag) {
      if (state.loaded) hoverText(laneT(x));
      return;
    }
    if (!drag.moved && Math.abs(x - drag.x0) < MIN_DRAG_PX) return;
    drag.moved = true;
    const t = laneT(x);
    const dt = t - laneT(drag.x0);
    const min = minLength();
    if (drag.mode === "create") {
      const a = Math.max(drag.lo, Math.min(drag.t0, t)), b = Math.min(drag.hi, Math.max(drag.t0, t));
      if (drag.i < 0) {
        if (!state.pen) { showError("Pick a label first (a label button, or type one and Add)."); drag = null; return; }
        drag.seg = { label: state.pen, start: a, end: Math.max(b, a + min) };
        state.segments.push(drag.seg);
        state.segments.sort((p, q) => p.start - q.start);
        drag.i = state.segments.indexOf(drag.seg);
      }
      drag.seg.start = a;
      drag.seg.end = Math.max(b, a + min);
      state.selected = state.segments.indexOf(drag.seg);
    } else {
      const s = state.segments[drag.i];
      const o = drag.orig;
      const linked = drag.linked !== undefined ? state.segments[drag.linked] : null;
      const lo = linked && drag.mode === "edge-start" ? drag.linkedOrig.start + min : bounds(drag.i).lo;
      const hi = linked && drag.mode === "edge-end" ? segEnd(drag.linkedOrig) - min : bounds(drag.i).hi;
      if (drag.mode === "edge-start") {
        s.start = Math.min(Math.max(lo, o.start + dt), segEnd(o) - min);
        if (linked) linked.end = s.start;
      } else if (drag.mode === "edge-end") {
        s.end = Math.max(Math.min(hi, segEnd(o) + dt), o.start + min);
        if (linked) linked.start = s.end;
      } else {
        const len = segEnd(o) - o.start;
        const start = Math.min(Math.max(lo, o.start + dt), hi - len);
        s.start = start;
        if (o.end !== null) s.end = start + len;
      }
    }
    state.dirty = true;
    renderLane();
    if (charts.signal) charts.signal.redraw(false);
  }

  function onPointerUp(e) {
    if (!drag) return;
    const was = drag;
    drag = null;
    try { $("lane").releasePointerCapture(e.pointerId); } catch (err) { /* already released */ }
    if (was.moved) changed();
    else if (was.mode === "create") select(-1);
  }

  // ------------------------------------------------------------------ saving

  async function save() {
    if (state.saving) return;
    state.saving = true;
    renderAll();
    const body = { segments: state.segments.map((s) => ({ label: s.label, start: round6(s.start), end: s.end === null ? null : round6(s.end) })) };
    try {
      const answer = await request("PUT", sessionApi("/labels"), body);
      state.dirty = false;
      state.saves += 1;
      if (answer && Array.isArray(answer.segments)) state.segments = normalise(answer.segments);
      else state.segments = normalise((await request("GET", sessionApi("/labels"))).segments || []);
      if (state.selected >= state.segments.length) state.selected = -1;
      showError("");
      $("saved-state").textContent = `saved ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      showError(`Not saved: ${err.message}`);
    } finally {
      state.saving = false;
      renderAll();
    }
  }

  function round6(x) { return Math.round(x * 1e6) / 1e6; }

  // ------------------------------------------------------------------ explaining the selected segment

  let explaining = 0; // the newest request; an older answer arriving late is dropped

  async function explainSelected() {
    if (state.selected < 0) return;
    const seg = state.segments[state.selected];
    const at = (seg.start + segEnd(seg)) / 2;
    const mine = ++explaining;
    $("explain-panel").hidden = false;
    $("explain-error").hidden = true;
    $("explain").hidden = true;
    $("explain-busy").hidden = false;
    try {
      const ex = await request("GET", sessionApi(`/explain?${new URLSearchParams({ at: at.toFixed(6) })}`));
      if (mine !== explaining) return;
      const title = `${seg.label} segment, model window ${clock(ex.start_ts ?? at, 1)} (+${(ex.end_s - ex.start_s).toFixed(1)} s)`;
      window.EdgeHarExplain.render($("explain"), ex, title);
    } catch (err) {
      if (mine !== explaining) return;
      $("explain-error").textContent = `No explanation: ${err.message}`;
      $("explain-error").hidden = false;
    } finally {
      if (mine === explaining) $("explain-busy").hidden = true;
    }
  }

  // ------------------------------------------------------------------ wiring

  function onKey(e) {
    if (!state.loaded || (e.target && /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName))) return;
    if (e.altKey || e.ctrlKey || e.metaKey) {
      if ((e.ctrlKey || e.metaKey) && e.key === "s") { e.preventDefault(); if (state.dirty) save(); }
      return;
    }
    if (/^[1-9]$/.test(e.key) && Number(e.key) <= state.classes.length) {
      pickLabel(state.classes[Number(e.key) - 1]);
    } else if (e.key === "Delete" || e.key === "Backspace") {
      removeSelected();
    } else if (e.key === "Escape") {
      select(-1);
    } else {
      return;
    }
    e.preventDefault();
  }

  function wire() {
    const lane = $("lane");
    lane.addEventListener("pointerdown", onPointerDown);
    lane.addEventListener("pointermove", onPointerMove);
    lane.addEventListener("pointerup", onPointerUp);
    lane.addEventListener("pointercancel", onPointerUp);
    $("delete").addEventListener("click", removeSelected);
    $("explain-segment").addEventListener("click", explainSelected);
    $("save").addEventListener("click", save);
    $("reset-zoom").addEventListener("click", () => setView({ ...state.full }));
    document.addEventListener("keydown", onKey);
    window.addEventListener("beforeunload", (e) => { if (state.dirty) { e.preventDefault(); e.returnValue = ""; } });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        if (!charts.signal) return;
        charts.signal.setSize({ width: chartWidth(), height: 220 });
      }, 100);
    });
    const scheme = window.matchMedia("(prefers-color-scheme: dark)");
    if (scheme.addEventListener) scheme.addEventListener("change", () => {
      if (!charts.signal) return;
      drawChart();
    });
  }

  async function start() {
    await EdgeHarPalette.load();
    const m = /^\/label\/([^/]+)\/([^/]+)\/?$/.exec(location.pathname);
    if (!m) { await showList(); return; }
    state.device = decodeURIComponent(m[1]);
    state.session = decodeURIComponent(m[2]);
    wire();
    try {
      state.classes = ((await request("GET", "/api/labels")).labels || []).filter((l) => l && l !== "none" && l !== "unknown");
    } catch (err) { /* the segments' and the capture's labels are still offered */ }
    try {
      await loadSession();
    } catch (err) {
      showError(`The recording ${state.device}/${state.session}: ${err.message}`);
    }
  }

  start();
})();
