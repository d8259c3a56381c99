// edge-har serve, the device page (/device/<id>): one device's activity over a chosen range.
//
// Plain JavaScript, no build step; charts are uPlot (vendored under /static/vendor/uplot/) and label
// colours come from palette.js, so a label looks the same here as on the Live and Predict pages. The
// chosen range lives in the URL's query (range=1h|24h|7d|day|custom, day=, from=, to=, days=7|30), so a
// link or a reload shows the same thing; a custom range's ends are the viewer's local clock times, as
// the datetime-local inputs show them. Every failed request leaves what was drawn in place and says so
// in one line above it, and the page keeps retrying: a server restart heals by itself.
"use strict";

(function () {
  const GAP_CAP_S = 5; // as the server's store: a longer silence between windows is an outage, not activity
  const MAX_POINTS = 2000; // history points one range asks for at most (step_s thins the rest in the database)
  const VIEW_EVERY_MS = 10000; // the device's liveness and current activity
  const TICK_MS = 5000; // "for 12 min" keeps counting between reads
  const RANGES = { "1h": 3600, "24h": 86400, "7d": 7 * 86400 };
  const HISTORY_EVERY_MS = { "1h": 10000, "24h": 60000, "7d": 300000 }; // rolling ranges follow "now"
  const SUMMARY_EVERY_MS = 300000;
  const LIVENESS_PILL = { online: "ok", stale: "warn", offline: "bad" };
  const OUTAGE_NAMES = { no_data: "No data", stopped: "Stopped", offline: "Offline" };
  const EVENT_HIT_PX = 6; // the cursor this close to an event's mark shows the event
  const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  const $ = (id) => document.getElementById(id);
  const deviceId = readDeviceId();
  const api = `/api/devices/${encodeURIComponent(deviceId)}`;

  const state = {
    deviceId,
    range: { kind: "1h", day: "", from: "", to: "" },
    days: 7,
    bounds: null, // {since, until} of what the charts show
    view: null,
    viewAt: 0, // browser seconds when `view` arrived
    history: null,
    segments: [],
    summary: null,
    summaryUrl: "",
    historyAt: 0,
    summaryAt: 0,
    lastOk: 0,
    error: "",
    loads: 0,
  };
  const charts = { timeline: null, confidence: null, days: null };
  window.edgeHarDevice = { state, charts }; // for the browser tests and the curious

  // ------------------------------------------------------------------ formatting

  function pad(n) { return String(n).padStart(2, "0"); }
  function localDate(ts) { return new Date(ts * 1000); }
  function clock(ts, seconds) {
    const d = localDate(ts);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? `:${pad(d.getSeconds())}` : ""}`;
  }
  function dayName(d) { return `${DAYS[d.getDay()]} ${d.getDate()} ${MONTHS[d.getMonth()]}`; }
  function sameDay(a, b) {
    const x = localDate(a), y = localDate(b);
    return x.getFullYear() === y.getFullYear() && x.getMonth() === y.getMonth() && x.getDate() === y.getDate();
  }
  function when(ts, seconds, withDay) { return withDay ? `${dayName(localDate(ts))} ${clock(ts, seconds)}` : clock(ts, seconds); }
  function duration(s) {
    s = Math.max(0, s);
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) {
      const m = Math.floor(s / 60), r = Math.round(s % 60);
      return r && m < 10 ? `${m} min ${r} s` : `${Math.round(s / 60)} min`;
    }
    if (s < 86400) {
      const h = Math.floor(s / 3600), m = Math.round((s % 3600) / 60);
      return m ? `${h} h ${m} min` : `${h} h`;
    }
    const d = Math.floor(s / 86400), h = Math.round((s % 86400) / 3600);
    return h ? `${d} d ${h} h` : `${d} d`;
  }
  function hours(s) { return s >= 3600 ? `${(s / 3600).toFixed(1)} h` : duration(s); }
  function offsetText(date) {
    const off = -date.getTimezoneOffset();
    const sign = off < 0 ? "−" : "+";
    return `UTC${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  }
  function localInput(ts) { // datetime-local's value for a Unix time, in local time
    const d = localDate(ts);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }
  function isoDay(d) { return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`; }
  function parseDay(text) { // "YYYY-MM-DD" -> local midnight Date, or null
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text || "");
    if (!m) return null;
    const d = new Date(+m[1], +m[2] - 1, +m[3]);
    return isNaN(d) ? null : d;
  }
  function parseLocal(text) { // "YYYY-MM-DDTHH:MM" -> Unix seconds (local time), or null
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(text || "")) return null;
    const t = new Date(text).getTime();
    return isNaN(t) ? null : t / 1000;
  }
  function cssVar(name, fallback) {
    return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
  }

  function readDeviceId() {
    const m = /^\/device\/([^/]+)\/?$/.exec(location.pathname);
    if (m) return decodeURIComponent(m[1]);
    return new URLSearchParams(location.search).get("device") || "";
  }

  // ------------------------------------------------------------------ the range and the URL

  function readURL() {
    const q = new URLSearchParams(location.search);
    const kind = q.get("range");
    const r = state.range;
    if (kind === "day" && parseDay(q.get("day"))) Object.assign(r, { kind, day: q.get("day") });
    else if (kind === "custom" && parseLocal(q.get("from")) !== null && parseLocal(q.get("to")) !== null
      && parseLocal(q.get("from")) < parseLocal(q.get("to"))) Object.assign(r, { kind, from: q.get("from"), to: q.get("to") });
    else if (kind in RANGES) r.kind = kind;
    state.days = q.get("days") === "30" ? 30 : 7;
  }

  function writeURL() {
    const q = new URLSearchParams(location.search);
    for (const key of ["range", "day", "from", "to", "days"]) q.delete(key);
    const r = state.range;
    q.set("range", r.kind);
    if (r.kind === "day") q.set("day", r.day);
    if (r.kind === "custom") { q.set("from", r.from); q.set("to", r.to); }
    if (state.days !== 7) q.set("days", String(state.days));
    history.replaceState(null, "", `${location.pathname}?${q}${location.hash}`);
  }

  function bounds() {
    const r = state.range;
    const now = Date.now() / 1000;
    if (r.kind === "day") {
      const d = parseDay(r.day);
      return { since: d.getTime() / 1000, until: new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1).getTime() / 1000 };
    }
    if (r.kind === "custom") return { since: parseLocal(r.from), until: parseLocal(r.to) };
    return { since: now - RANGES[r.kind], until: now };
  }

  function setRange(changes) {
    Object.assign(state.range, changes);
    writeURL();
    showRangeControls();
    loadRange();
  }

  function showRangeControls() {
    const r = state.range;
    for (const b of document.querySelectorAll("[data-range]")) {
      b.setAttribute("aria-checked", String(b.dataset.range === r.kind));
    }
    for (const b of document.querySelectorAll("[data-days]")) {
      b.setAttribute("aria-checked", String(Number(b.dataset.days) === state.days));
    }
    $("pick-day").hidden = r.kind !== "day";
    $("pick-custom").hidden = r.kind !== "custom";
    $("day").max = isoDay(new Date());
    if (r.kind === "day") $("day").value = r.day;
    if (r.kind === "custom") { $("from").value = r.from; $("to").value = r.to; }
  }

  function showRangeLine() {
    const { since, until } = state.bounds;
    const withDay = !sameDay(since, until) || !sameDay(until, Date.now() / 1000);
    $("range-text").textContent = `${when(since, false, withDay)} → ${when(until, false, withDay)} (${duration(until - since)})`;
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
    $("tz").textContent = `${tz} (${offsetText(localDate(until))})`;
    updateCsvLink();
  }

  function updateCsvLink() {
    const { since, until } = state.range.kind in RANGES ? bounds() : state.bounds || bounds();
    const link = $("csv");
    link.href = `${api}/export.csv?since=${Math.floor(since)}&until=${Math.ceil(until)}`;
    const stamp = (ts) => localInput(ts).replace(/[-:]/g, "").replace("T", "-");
    link.download = `${deviceId}_${stamp(since)}_${stamp(until)}.csv`;
  }

  // ------------------------------------------------------------------ requests

  class HttpError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) {
      let detail = `HTTP ${response.status}`;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new HttpError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return response.json();
  }

  function failed(err) {
    let text;
    if (typeof err === "string") {
      text = err;
    } else if (err instanceof HttpError && err.status === 404) {
      text = `No device “${deviceId}” has been seen by this server.`;
    } else if (err instanceof HttpError) {
      text = `The server refused: ${err.message}`;
    } else {
      const kept = state.lastOk ? ` Showing what was loaded at ${clock(state.lastOk / 1000, true)}.` : "";
      text = `The server is not answering.${kept} Retrying every ${VIEW_EVERY_MS / 1000} s.`;
    }
    state.error = text;
    $("error-text").textContent = text;
    $("error").hidden = false;
    document.body.classList.add("dv-failed");
  }

  function succeeded() {
    state.error = "";
    state.lastOk = Date.now();
    $("error").hidden = true;
    document.body.classList.remove("dv-failed");
  }

  async function loadView() {
    state.view = await getJSON(api);
    state.viewAt = Date.now() / 1000;
    showView();
  }

  async function loadHistory() {
    const b = state.bounds;
    const span = b.until - b.since;
    const step = Math.max(0.01, Math.ceil((span / MAX_POINTS) * 1000) / 1000);
    const q = new URLSearchParams({ since: b.since.toFixed(3), until: b.until.toFixed(3), step_s: String(step),
      limit: String(MAX_POINTS + 100) });
    const history = await getJSON(`${api}/history?${q}`);
    state.history = history;
    state.historyAt = Date.now();
    state.segments = segmentsOf(history.predictions || [], history.step_s || 0);
    drawTimeline();
    drawConfidence();
  }

  async function loadSummary() {
    const end = localDate(state.bounds.until - 0.001);
    const first = new Date(end.getFullYear(), end.getMonth(), end.getDate() - state.days + 1);
    const after = new Date(end.getFullYear(), end.getMonth(), end.getDate() + 1);
    const q = new URLSearchParams({ since: String(first.getTime() / 1000), until: String(after.getTime() / 1000),
      by: "day", utc_offset_min: String(-end.getTimezoneOffset()) });
    state.summaryUrl = `${api}/summary?${q}`;
    state.summary = await getJSON(state.summaryUrl);
    state.summaryAt = Date.now();
    drawDays();
  }

  async function guarded(...jobs) {
    state.loads += 1;
    $("loading").hidden = Boolean(state.history); // the line only while nothing is drawn yet
    $("refreshed").textContent = "loading…";
    document.body.classList.add("dv-loading");
    try {
      await Promise.all(jobs.map((job) => job()));
      succeeded();
    } catch (err) {
      failed(err);
    } finally {
      state.loads -= 1;
      if (!state.loads) {
        $("loading").hidden = true;
        document.body.classList.remove("dv-loading");
        $("refreshed").textContent = state.lastOk ? `updated ${clock(state.lastOk / 1000, true)}` : "";
      }
    }
  }

  function loadRange() {
    state.bounds = bounds();
    showRangeLine();
    return guarded(loadView, loadHistory, loadSummary);
  }

  function refresh() {
    // The view always; a rolling range's history and the per-day bars when they are due; everything after an error.
    const now = Date.now();
    const jobs = [loadView];
    const rolling = state.range.kind in RANGES;
    if (state.error || (rolling && now - state.historyAt >= HISTORY_EVERY_MS[state.range.kind])) {
      if (rolling) { state.bounds = bounds(); showRangeLine(); }
      jobs.push(loadHistory);
    }
    if (state.error || now - state.summaryAt >= SUMMARY_EVERY_MS) jobs.push(loadSummary);
    return guarded(...jobs);
  }

  // ------------------------------------------------------------------ the device now

  function showView() {
    const v = state.view;
    const pill = $("liveness");
    pill.textContent = v.liveness || v.status || "unknown";
    pill.className = `pill ${LIVENESS_PILL[v.liveness] || ""}`;
    $("model").textContent = v.model_id || "";
    showCurrent();
  }

  function showCurrent() {
    const v = state.view;
    if (!v) return;
    const now = Date.now() / 1000;
    const online = v.liveness === "online";
    const current = v.current || null;
    const swatch = $("now-swatch");
    let text;
    if (current && current.label) {
      const grown = online ? Math.max(0, now - state.viewAt) : 0;
      const since = current.since;
      text = `${current.label} for ${duration((current.duration_s || 0) + grown)}, since ${when(since, false, !sameDay(since, now))}`;
      swatch.style.background = EdgeHarPalette.colourFor(current.label);
    } else if (v.activity) {
      text = `${v.activity.label} (last at ${when(v.activity.ts, false, !sameDay(v.activity.ts, now))})`;
      swatch.style.background = EdgeHarPalette.colourFor(v.activity.label);
    } else {
      text = "No activity yet";
      swatch.style.background = "transparent";
    }
    $("current").textContent = text;
    $("now").classList.toggle("dv-idle", !online);
    const parts = [];
    if (v.activity && v.activity.confidence !== null && v.activity.confidence !== undefined) {
      parts.push(`confidence ${Math.round(v.activity.confidence * 100)}%`);
    }
    if (!online) parts.push(`device ${v.liveness || v.status || "unknown"}`);
    if (v.last_seen) parts.push(`last seen ${duration(now - v.last_seen)} ago`);
    $("now-detail").textContent = parts.join(" · ");
  }

  // ------------------------------------------------------------------ the timeline

  function segmentsOf(points, step) {
    // Runs of one label: a window covers the time since the one before it when that is within the gap cap
    // (or the thinning step), else one step back; a longer silence ends the run.
    const gap = Math.max(GAP_CAP_S, step * 1.5);
    const out = [];
    let prev = null;
    let cur = null;
    for (const p of points) {
      const joined = prev !== null && p.ts - prev.ts <= gap;
      if (cur && joined && cur.label === p.label) {
        cur.end = p.ts;
      } else {
        cur = { label: p.label, start: joined ? prev.ts : p.ts - Math.max(step, 1), end: p.ts };
        out.push(cur);
      }
      prev = p;
    }
    return out;
  }

  function xAxis() {
    return {
      size: 34,
      stroke: cssVar("--dv-axis", "#66707c"),
      grid: { stroke: cssVar("--dv-grid", "#e5e7eb"), width: 1 },
      ticks: { stroke: cssVar("--dv-grid", "#e5e7eb"), width: 1 },
      values: (u, splits, _axis, _space, incr) => splits.map((ts) => {
        const d = localDate(ts);
        const midnight = d.getHours() === 0 && d.getMinutes() === 0;
        if (incr >= 86400 || midnight) return `${DAYS[d.getDay()]} ${d.getDate()}`;
        return clock(ts, incr < 60);
      }),
    };
  }

  function chartWidth(el) { return Math.max(200, el.clientWidth); }

  function hoverText(el, parts) {
    el.replaceChildren();
    if (!parts) { el.innerHTML = "&nbsp;"; return; }
    for (const [cls, text] of parts) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      el.append(span);
    }
  }

  function outageAt(ts) {
    return (state.history && state.history.outages || []).find((o) => o.start <= ts && ts < o.end) || null;
  }
  // The device's event (a fall) drawn nearest the cursor, within EVENT_HIT_PX pixels of it, or null.
  function eventAt(u, left) {
    let best = null;
    for (const e of state.history && state.history.events || []) {
      const d = Math.abs(u.valToPos(e.impact_ts, "x") - left);
      if (d <= EVENT_HIT_PX && (!best || d < best.d)) best = { d, e };
    }
    return best && best.e;
  }
  function segmentAt(ts) {
    return state.segments.find((s) => s.start <= ts && ts <= s.end) || null;
  }

  function timelineHover(u) {
    const left = u.cursor.left;
    const el = $("timeline-hover");
    if (left === null || left === undefined || left < 0) { hoverText(el, null); return; }
    const ts = u.posToVal(left, "x");
    const event = eventAt(u, left);
    if (event) {
      const withDay = !sameDay(event.impact_ts, Date.now() / 1000);
      hoverText(el, [
        ["dv-label dv-event", event.event_type],
        ["dv-start", when(event.impact_ts, true, withDay)],
        ["dv-duration", `${(event.confidence * 100).toFixed(1)} % · ${event.windows} windows`],
      ]);
      return;
    }
    const outage = outageAt(ts);
    const seg = outage ? null : segmentAt(ts);
    const hit = outage
      ? { label: OUTAGE_NAMES[outage.reason] || outage.reason, start: outage.start, end: outage.end, cls: "outage" }
      : seg && { label: seg.label, start: seg.start, end: seg.end, cls: "segment" };
    if (!hit) { hoverText(el, [["dv-what", `${when(ts, true, true)}: nothing recorded`]]); return; }
    const withDay = !sameDay(hit.start, hit.end) || !sameDay(hit.end, Date.now() / 1000);
    hoverText(el, [
      [`dv-label ${hit.cls}`, hit.label],
      ["dv-start", when(hit.start, true, withDay)],
      ["dv-sep", " → "],
      ["dv-end", when(hit.end, true, withDay)],
      ["dv-duration", duration(hit.end - hit.start)],
    ]);
  }

  function drawSegments(u) {
    const { ctx, bbox } = u;
    const x0 = bbox.left, x1 = bbox.left + bbox.width;
    const px = (ts) => Math.min(x1, Math.max(x0, u.valToPos(ts, "x", true)));
    ctx.save();
    ctx.fillStyle = cssVar("--dv-empty", "#eef0f3");
    ctx.fillRect(x0, bbox.top, bbox.width, bbox.height);
    for (const s of state.segments) {
      const a = px(s.start), b = px(s.end);
      ctx.fillStyle = EdgeHarPalette.colourFor(s.label);
      ctx.fillRect(a, bbox.top, Math.max(1, b - a), bbox.height);
    }
    for (const o of state.history && state.history.outages || []) {
      const a = px(o.start), b = px(o.end);
      if (b <= x0 || a >= x1) continue;
      ctx.fillStyle = cssVar(`--dv-outage-${o.reason}`, "rgba(100,110,125,0.55)");
      ctx.fillRect(a, bbox.top, Math.max(1, b - a), bbox.height);
      if (o.reason === "no_data") continue; // a silence is only greyed; a stopped or offline device is hatched too
      ctx.strokeStyle = cssVar("--dv-hatch", "rgba(255,255,255,0.6)");
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.rect(a, bbox.top, Math.max(1, b - a), bbox.height);
      ctx.clip();
      for (let x = a - bbox.height; x < b; x += 7) { ctx.moveTo(x, bbox.top + bbox.height); ctx.lineTo(x + bbox.height, bbox.top); }
      ctx.stroke();
      ctx.restore();
      ctx.save();
    }
    // events (a fall): a moment, drawn as a bar across the timeline with a notch above it
    ctx.fillStyle = cssVar("--dv-event", "#1d232b");
    for (const e of state.history && state.history.events || []) {
      const x = u.valToPos(e.impact_ts, "x", true);
      if (x < x0 - 1 || x > x1 + 1) continue;
      const w = 3 * devicePixelRatio;
      ctx.fillRect(x - w / 2, bbox.top, w, bbox.height);
      ctx.beginPath();
      ctx.moveTo(x - 2.5 * w, bbox.top);
      ctx.lineTo(x + 2.5 * w, bbox.top);
      ctx.lineTo(x, bbox.top + 2.5 * w);
      ctx.fill();
    }
    ctx.restore();
  }

  function drawTimeline() {
    const el = $("timeline");
    const { since, until } = state.bounds;
    const data = [[since, until], [null, null]];
    if (charts.timeline) {
      charts.timeline.setData(data, false);
      charts.timeline.setScale("x", { min: since, max: until });
    } else {
      charts.timeline = new uPlot({
        width: chartWidth(el),
        height: 70,
        padding: [4, 16, 0, 0],
        legend: { show: false },
        cursor: { y: false, points: { show: false }, sync: { key: "dv" }, drag: { x: true, y: false, setScale: false } },
        select: { show: true },
        scales: { x: { time: true, auto: false, range: () => [state.bounds.since, state.bounds.until] }, y: { auto: false, range: [0, 1] } },
        axes: [xAxis(), { size: 42, splits: () => [], values: () => [], grid: { show: false }, ticks: { show: false } }],
        series: [{}, { scale: "y", stroke: "transparent" }],
        hooks: {
          draw: [drawSegments],
          setCursor: [timelineHover],
          setSelect: [zoomTo],
        },
      }, data, el);
    }
    charts.timeline.redraw(false);
    const outages = state.history.outages || [];
    legend($("timeline-legend"), labelsOf(state.segments.map((s) => [s.label, s.end - s.start])),
      [...new Set(outages.map((o) => o.reason))]);
    const events = state.history.events || [];
    const types = [...new Set(events.map((e) => e.event_type))];
    for (const type of types) {
      const span = document.createElement("span");
      span.className = "dv-event-key";
      const i = document.createElement("i");
      i.style.background = cssVar("--dv-event", "#1d232b");
      const n = events.filter((e) => e.event_type === type).length;
      span.append(i, `${type} ×${n}`);
      $("timeline-legend").append(span);
    }
    const note = [];
    if (!state.segments.length) note.push("No predictions in this range.");
    if (state.history.truncated) note.push("Only the newest points of this range are shown: pick a shorter range for all of them.");
    note.push("Drag across the timeline to zoom in.");
    $("timeline-note").textContent = note.join(" ");
  }

  function zoomTo(u) {
    const sel = u.select;
    if (!sel || sel.width < 5) return;
    const from = u.posToVal(sel.left, "x"), to = u.posToVal(sel.left + sel.width, "x");
    u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    if (to - from < 60) return;
    setRange({ kind: "custom", from: localInput(from), to: localInput(Math.ceil(to / 60) * 60) });
  }

  function labelsOf(pairs) { // [[label, seconds]] -> labels, most time first
    const total = new Map();
    for (const [label, s] of pairs) total.set(label, (total.get(label) || 0) + s);
    return [...total.entries()].sort((a, b) => b[1] - a[1]).map(([label]) => label);
  }

  function legend(el, labels, reasons) {
    el.replaceChildren();
    const item = (text, colour, cls) => {
      const span = document.createElement("span");
      if (cls) span.className = cls;
      const i = document.createElement("i");
      i.style.background = colour;
      span.append(i, text);
      el.append(span);
    };
    for (const label of labels) item(label, EdgeHarPalette.colourFor(label));
    for (const reason of reasons || []) {
      item(OUTAGE_NAMES[reason] || reason, cssVar(`--dv-outage-${reason}`, "rgba(100,110,125,0.55)"), "dv-outage-key");
    }
  }

  // ------------------------------------------------------------------ confidence

  function drawConfidence() {
    const el = $("confidence");
    const points = state.history.predictions || [];
    const gap = Math.max(GAP_CAP_S, (state.history.step_s || 0) * 1.5);
    const xs = [], ys = [];
    let prev = null;
    for (const p of points) {
      if (prev !== null && p.ts - prev > gap) { xs.push((prev + p.ts) / 2); ys.push(null); } // a break in the line
      xs.push(p.ts);
      ys.push(p.confidence === null || p.confidence === undefined ? null : p.confidence * 100);
      prev = p.ts;
    }
    const data = [xs, ys];
    if (charts.confidence) {
      charts.confidence.setData(data, false);
      charts.confidence.setScale("x", { min: state.bounds.since, max: state.bounds.until });
      return;
    }
    charts.confidence = new uPlot({
      width: chartWidth(el),
      height: 140,
      padding: [10, 16, 0, 0],
      legend: { show: false },
      cursor: { y: false, sync: { key: "dv" }, drag: { x: false, y: false } },
      scales: { x: { time: true, auto: false, range: () => [state.bounds.since, state.bounds.until] }, y: { auto: false, range: [0, 100] } },
      axes: [xAxis(), {
        stroke: cssVar("--dv-axis", "#66707c"),
        grid: { stroke: cssVar("--dv-grid", "#e5e7eb"), width: 1 },
        ticks: { show: false },
        size: 42,
        splits: () => [0, 50, 100],
        values: (u, splits) => splits.map((v) => `${v}%`),
      }],
      hooks: { setCursor: [confidenceHover] },
      series: [{}, { label: "confidence", stroke: cssVar("--dv-line", "#2563eb"), width: 1.5, spanGaps: false,
        points: { show: false }, fill: cssVar("--dv-line-fill", "rgba(37,99,235,0.08)") }],
    }, data, el);
  }

  function confidenceHover(u) {
    const el = $("confidence-hover");
    const i = u.cursor.idx;
    const points = state.history && state.history.predictions || [];
    const ts = i === null || i === undefined ? null : u.data[0][i];
    const conf = ts === null ? null : u.data[1][i];
    if (ts === null || conf === null || conf === undefined) { hoverText(el, null); return; }
    const p = points.find((q) => q.ts === ts);
    const withDay = !sameDay(state.bounds.since, state.bounds.until);
    hoverText(el, [["dv-label", `${Math.round(conf)}%`], ["dv-start", when(ts, true, withDay)],
      ["dv-duration", p ? p.label : ""]]);
  }

  // ------------------------------------------------------------------ per-day stacked bars

  function drawDays() {
    const el = $("days");
    const summary = state.summary;
    const days = summary.days || [];
    const labels = Object.entries(summary.seconds || {}).sort((a, b) => b[1] - a[1]).map(([l]) => l);
    // Stacked by hand: series k is the first k labels' hours added up; drawn tallest first, so each
    // shorter one paints its own colour over the bottom of the one before.
    const xs = days.map((_, i) => i);
    const stacks = [];
    for (let k = labels.length; k >= 1; k--) {
      stacks.push(days.map((d) => labels.slice(0, k).reduce((sum, l) => sum + ((d.seconds || {})[l] || 0), 0) / 3600));
    }
    const top = Math.max(1, ...days.map((d) => (d.total_s || 0) / 3600));
    const series = [{}];
    for (let k = labels.length; k >= 1; k--) {
      const colour = EdgeHarPalette.colourFor(labels[k - 1]);
      series.push({ label: labels[k - 1], fill: colour, stroke: colour, width: 0,
        paths: uPlot.paths.bars({ size: [0.7, 48], gap: 1 }), points: { show: false } });
    }
    if (charts.days) { charts.days.destroy(); charts.days = null; } // the label set changes the series
    el.replaceChildren();
    charts.days = new uPlot({
      width: chartWidth(el),
      height: 200,
      padding: [10, 16, 0, 0],
      legend: { show: false },
      cursor: { y: false, points: { show: false }, drag: { x: false, y: false } },
      scales: { x: { time: false, range: [-0.6, Math.max(0.6, days.length - 0.4)] }, y: { auto: false, range: [0, Math.ceil(top * 1.1)] } },
      axes: [
        {
          size: 34,
          stroke: cssVar("--dv-axis", "#66707c"),
          grid: { show: false },
          ticks: { show: false },
          splits: () => xs,
          values: (u, splits) => splits.map((i) => dayTick(days[i], days.length, i, u.bbox.width / uPlot.pxRatio)),
        },
        {
          stroke: cssVar("--dv-axis", "#66707c"),
          grid: { stroke: cssVar("--dv-grid", "#e5e7eb"), width: 1 },
          ticks: { show: false },
          size: 42,
          values: (u, splits) => splits.map((v) => `${v} h`),
        },
      ],
      series,
      hooks: { setCursor: [daysHover] },
    }, [xs, ...stacks], el);
    charts.days.labels = labels;
    legend($("days-legend"), labels);
  }

  function dayTick(day, n, i, width) {
    // A name per bar where there is room (about 48 px each), else every 5th day counted back from the last.
    if (!day) return "";
    const d = parseDay(day.day);
    if (!d) return day.day;
    if (width / n >= 48) return `${DAYS[d.getDay()]} ${d.getDate()}`;
    if (width / n >= 24 && n <= 10) return String(d.getDate());
    return i % 5 === (n - 1) % 5 ? `${d.getDate()} ${MONTHS[d.getMonth()]}` : "";
  }

  function daysHover(u) {
    const el = $("days-hover");
    const i = u.cursor.idx;
    const days = state.summary && state.summary.days || [];
    if (i === null || i === undefined || !days[i]) { hoverText(el, null); return; }
    const day = days[i];
    const d = parseDay(day.day);
    const parts = [["dv-label", d ? dayName(d) : day.day]];
    const entries = Object.entries(day.seconds || {}).sort((a, b) => b[1] - a[1]);
    for (const [label, s] of entries) parts.push(["dv-part", `${label} ${hours(s)}`]);
    parts.push(["dv-duration", `total ${hours(day.total_s || 0)}`]);
    hoverText(el, parts);
  }

  // ------------------------------------------------------------------ wiring

  function resize() {
    for (const [name, chart] of Object.entries(charts)) {
      if (chart) chart.setSize({ width: chartWidth($(name)), height: chart.height });
    }
  }

  function rebuild() { // colours come from CSS variables: a scheme change draws everything again
    for (const name of ["timeline", "confidence"]) {
      if (charts[name]) { charts[name].destroy(); charts[name] = null; $(name).replaceChildren(); }
    }
    if (state.history) { drawTimeline(); drawConfidence(); }
    if (state.summary) drawDays();
  }

  function wire() {
    for (const b of document.querySelectorAll("[data-range]")) {
      b.addEventListener("click", () => {
        const kind = b.dataset.range;
        const now = Date.now() / 1000;
        if (kind === "day") {
          const day = state.range.day || isoDay(localDate(now));
          setRange({ kind, day });
          $("day").focus();
        } else if (kind === "custom") {
          const b0 = state.bounds || bounds();
          const from = state.range.from || localInput(b0.since), to = state.range.to || localInput(Math.ceil(b0.until / 60) * 60);
          setRange({ kind, from, to });
        } else {
          setRange({ kind });
        }
      });
    }
    $("day").addEventListener("change", () => {
      if (parseDay($("day").value)) setRange({ kind: "day", day: $("day").value });
    });
    $("pick-custom").addEventListener("submit", (e) => {
      e.preventDefault();
      const from = $("from").value, to = $("to").value;
      const a = parseLocal(from), b = parseLocal(to);
      if (a === null || b === null || a >= b) {
        failed("The custom range: From must be before To.");
        return;
      }
      setRange({ kind: "custom", from, to });
    });
    for (const b of document.querySelectorAll("[data-days]")) {
      b.addEventListener("click", () => {
        state.days = Number(b.dataset.days);
        writeURL();
        showRangeControls();
        guarded(loadSummary);
      });
    }
    $("retry").addEventListener("click", () => loadRange());
    $("csv").addEventListener("mousedown", updateCsvLink); // a rolling range's "now" is the moment of the click
    $("csv").addEventListener("keydown", updateCsvLink);
    for (const id of ["timeline", "confidence", "days"]) {
      $(id).addEventListener("mouseleave", () => hoverText($(`${id}-hover`), null));
    }
    let resizeTimer = null;
    window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(resize, 100); });
    const scheme = window.matchMedia("(prefers-color-scheme: dark)");
    if (scheme.addEventListener) scheme.addEventListener("change", rebuild);
    setInterval(showCurrent, TICK_MS);
    setInterval(() => { if (!state.loads && !document.hidden) refresh(); }, VIEW_EVERY_MS);
    document.addEventListener("visibilitychange", () => { if (!document.hidden && !state.loads) refresh(); });
  }

  async function start() {
    $("device-name").textContent = deviceId || "Device";
    document.title = `edge-har · ${deviceId || "Device"}`;
    if (!deviceId) {
      failed(new HttpError(404, "no device"));
      $("loading").hidden = true;
      return;
    }
    readURL();
    writeURL();
    showRangeControls();
    wire();
    await EdgeHarPalette.load();
    await loadRange();
  }

  start();
})();
