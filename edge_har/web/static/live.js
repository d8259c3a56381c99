// edge-har serve, Live page: the devices on the broker, a page at a time, updated by server-sent events.
// Plain JavaScript, no build step and no library. The page keeps no truth of its own: on every
// (re)connect of the stream it re-reads the devices it shows from /api/devices, each page of PAGE devices
// in ONE request that carries every card's last hour and today's summary too (never a request per
// device: a fleet of thousands costs what a fleet of three does), then applies the pushed events on top,
// so a server restart or a slow tab loses nothing. "Show more" adds a page; the filter box asks the
// server for the ids containing its text.
//
// What a card shows is only "now" while the device is online and the server answers: a stopped,
// offline or stale device's card is marked as its last known state ("last seen 14:03 · 2 h ago"),
// and while the server does not answer every card and the broker badge say so (a banner with the
// time it went away) instead of showing the last data as current. Colours come from palette.js, so
// a label has the same colour here as on every other page.
//
// Events (a fall) are moments, not states: the newest of the whole fleet are listed at the top (one
// request, /api/events), each card says when its device's last one of each type was ("last fall 3 min
// ago") and marks the last hour's on its timeline; the stream's `event` adds a new one as it arrives.
"use strict";

const HOUR_S = 3600;
const GAP_CAP_S = 5; // as the server's store: a longer silence is an outage, not activity
const PAGE = 24; // devices per request (the server allows at most 100 with timelines)
const TIMELINE_STEP_S = 10; // one point per 10 s is what a 470-pixel hour shows (3600 s / 470 px = 7.7 s a pixel)
const POINT_LASTS_S = Math.max(GAP_CAP_S, TIMELINE_STEP_S); // a thinned point stands for its whole step
const REFRESH_EVERY_MS = 10000; // today's summary, stats, gaps and rejections of the devices shown
const REDRAW_EVERY_MS = 5000;
const RELOAD_AT_MOST_EVERY_MS = 2000; // new devices arriving in a burst cost one reload, not one each
const FRESH_S = 30; // an online device's newest window younger than this: its current activity is still going on
const DOWN_RETRY_MS = 3000; // while the server does not answer, ask again this often
const LIVENESS_PILL = { online: "ok", stale: "warn", stopped: "", offline: "bad", unknown: "" };
const EVENTS_SHOWN = 20; // the newest events listed at the top of the page
const EVENT_RECENT_S = 3600; // a card's last event younger than this is drawn as a warning
const EVENT_MARK_S = 24; // a mark on the hour's timeline is this many seconds wide (about 3 pixels)

const devices = new Map(); // device_id -> {view, points: [[ts, label, conf, run_id, seq]], marks: [event], card, summary}
let events = []; // the newest events of the fleet, newest first (at most EVENTS_SHOWN)
let pages = 1; // how many pages of PAGE devices are shown ("Show more" adds one)
let nextAfter = null; // the cursor of the page after the shown ones (null: none)
let listComplete = false; // every device matching the filter is shown: a new one gets a card of its own
let filterText = "";
let total = 0; // devices matching the filter, as the server last counted them (plus new ones pushed since)
let source = null;
let loading = null;
let reloadTimer = null;
let clockSkew = 0; // server now - browser now, so "seconds ago" is right on a badly set laptop
let downSince = null; // when the server stopped answering (browser clock, ms), null while it answers
let downTimer = null;
let lastBroker = null;

const colour = (label) => window.EdgeHarPalette.colourFor(label);

function now() { return Date.now() / 1000 + clockSkew; }
function utcOffsetMin() { return -new Date().getTimezoneOffset(); }
function fmt(value, digits, unit) {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}${unit || ""}`;
}
function count(n) { return Number(n || 0).toLocaleString("en-US"); }
function duration(s) {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  const h = Math.floor(s / 3600);
  const min = Math.floor((s % 3600) / 60);
  return min ? `${h} h ${min} min` : `${h} h`;
}
// A time of day on the browser's clock and time zone; with the date when it is not today.
function hhmm(d) { return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`; }
function clock(ts) {
  const d = new Date((ts - clockSkew) * 1000);
  if (d.toDateString() === new Date().toDateString()) return hhmm(d);
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${hhmm(d)}`;
}
function timeZoneText() {
  const off = utcOffsetMin();
  const sign = off < 0 ? "−" : "+";
  const hhmm = `${String(Math.floor(Math.abs(off) / 60)).padStart(2, "0")}:${String(Math.abs(off) % 60).padStart(2, "0")}`;
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  return `Times in ${name} (UTC${sign}${hhmm})`;
}

// A failed request says why: `unreachable` (no answer at all) or the HTTP `status` the server gave.
async function getJSON(url) {
  let response;
  try {
    response = await fetch(url, { cache: "no-store" });
  } catch (err) {
    throw Object.assign(new Error(`${url}: no answer (${err.message})`), { unreachable: true });
  }
  if (!response.ok) throw Object.assign(new Error(`${url}: HTTP ${response.status}`), { status: response.status });
  return response.json();
}

// ------------------------------------------------------------------ state from the API

function load() {
  if (!loading) loading = reload(true).finally(() => { loading = null; });
  return loading;
}

function loadSoon() {
  if (reloadTimer === null) reloadTimer = setTimeout(() => { reloadTimer = null; load(); }, RELOAD_AT_MOST_EVERY_MS);
}

function pageURL(after, withHour) {
  const params = new URLSearchParams({ limit: PAGE, today: "true", utc_offset_min: utcOffsetMin() });
  if (withHour) params.set("hour_step_s", TIMELINE_STEP_S);
  if (filterText) params.set("q", filterText);
  if (after) params.set("after", after);
  return `/api/devices?${params}`;
}

// The shown pages, one request each, in order; `withHour` also replaces each card's timeline (on load
// and on reconnect; the periodic refresh keeps the timelines the stream extends).
async function reload(withHour) {
  const wanted = filterText;
  const shown = [];
  let after = null;
  let body = null;
  for (let page = 0; page < pages; page++) {
    body = await getJSON(pageURL(after, withHour));
    if (wanted !== filterText) return; // the filter changed meanwhile: its own load is on its way
    if (page === 0) {
      serverUp();
      clockSkew = body.now - Date.now() / 1000;
      showBroker(body.broker);
      showIngest(body.ingest);
    }
    for (const view of body.devices) shown.push(take(view).view.device_id);
    after = body.next;
    if (!after) break;
  }
  await loadEvents();
  nextAfter = after;
  listComplete = !after;
  // what the server no longer lists (pruned, or pushed past the shown pages) leaves the page
  const keep = new Set(shown);
  for (const [id, device] of devices) if (!keep.has(id)) { device.card.remove(); devices.delete(id); }
  const list = document.getElementById("devices");
  shown.forEach((id) => { const device = devices.get(id); list.appendChild(device.card); render(device); });
  showCount(shown.length, body ? body.total : 0, !listComplete);
}

// A device of an /api/devices page: its view, and its hour and today when the page carried them.
function take(view) {
  const device = ensure(view.device_id);
  const { hour, today, hour_events: marks, ...rest } = view;
  device.view = rest;
  if (hour) device.points = hour.map((p) => [p.ts, p.label, p.confidence, p.run_id, p.seq]);
  if (marks) device.marks = marks;
  if (today) device.summary = today;
  return device;
}

function ensure(id) {
  let device = devices.get(id);
  if (!device) {
    const card = document.getElementById("device-template").content.firstElementChild.cloneNode(true);
    card.dataset.device = id;
    const link = card.querySelector(".name");
    link.textContent = id;
    link.href = `/device/${encodeURIComponent(id)}`;
    link.title = `${id}: its own page (history, charts)`;
    const list = document.getElementById("devices");
    const after = [...list.children].find((el) => el.dataset.device > id);
    list.insertBefore(card, after || null);
    device = { view: { device_id: id, liveness: "unknown", stats: null, activity: null, current: undefined, gaps: 0, rejected: 0 },
      points: [], marks: [], card, summary: null };
    devices.set(id, device);
  }
  return device;
}

// A pushed event about a device the page does not show: a card for it only when the whole (filtered)
// list is shown; otherwise it is on a page not loaded, and the next refresh counts it in the total.
function shownDevice(id) {
  if (devices.has(id)) return devices.get(id);
  if (!listComplete || (filterText && !id.toLowerCase().includes(filterText.toLowerCase()))) return null;
  loadSoon(); // its stats, status, gaps and rejections
  const device = ensure(id);
  showCount(devices.size, total + 1, false);
  return device;
}

// ------------------------------------------------------------------ drawing

// A card shows the present only while its device is online and the server answers; otherwise it is
// the device's last known state ("past"), drawn muted.
function isPast(device) {
  return downSince !== null || (device.view.liveness || "unknown") !== "online";
}

function render(device) {
  const { view, card } = device;
  const liveness = downSince !== null ? "unknown" : view.liveness || "unknown";
  card.className = `panel device ${liveness}${isPast(device) ? " past" : ""}`;
  const pill = card.querySelector(".liveness");
  pill.textContent = liveness;
  pill.dataset.liveness = liveness;
  pill.title = downSince !== null ? `the server does not answer; last known: ${view.liveness || "unknown"}` : "";
  pill.className = `pill liveness ${LIVENESS_PILL[liveness] || ""}`;
  card.querySelector(".model").textContent = view.model_id || "";
  const activity = view.activity;
  card.querySelector(".now .label").textContent = activity ? activity.label : "–";
  card.querySelector(".now .label").style.color = activity && !isPast(device) ? colour(activity.label) : "";
  card.querySelector(".now .conf").textContent = activity ? `${Math.round(activity.confidence * 100)} %` : "";
  renderAge(device);
  const stats = view.stats || {};
  card.querySelector(".wps").textContent = fmt(stats.windows_per_s, 1);
  card.querySelector(".p50").textContent = fmt(stats.inference_p50_ms, 2, " ms");
  card.querySelector(".queue").textContent = fmt(stats.queue_depth, 0);
  card.querySelector(".reconnects").textContent = fmt(stats.reconnects, 0);
  for (const key of ["gaps", "rejected"]) {
    const cell = card.querySelector(`.${key}`);
    cell.textContent = count(view[key]);
    cell.parentElement.classList.toggle("warn", Number(view[key] || 0) > 0);
  }
  renderLastEvents(device);
  renderTimeline(device);
  renderToday(device);
}

// ------------------------------------------------------------------ events (a fall)

// One event's identity: a re-delivered one is the same event, not a second fall.
function eventKey(e) { return `${e.device_id}\u0000${e.run_id}\u0000${e.event_type}\u0000${e.last_seq}\u0000${e.detected_ts}`; }

async function loadEvents() {
  const params = new URLSearchParams({ limit: EVENTS_SHOWN });
  if (filterText) params.set("limit", 1000);
  const body = await getJSON(`/api/events?${params}`);
  events = body.events.filter(eventShown).slice(0, EVENTS_SHOWN);
  renderEvents();
}

function eventShown(e) { return !filterText || e.device_id.toLowerCase().includes(filterText.toLowerCase()); }

// A pushed event: listed (once), and its device's card told.
function addEvent(e) {
  const key = eventKey(e);
  if (eventShown(e) && !events.some((x) => eventKey(x) === key)) {
    events.push(e);
    events.sort((a, b) => b.impact_ts - a.impact_ts);
    events = events.slice(0, EVENTS_SHOWN);
    renderEvents();
  }
  const device = shownDevice(e.device_id);
  if (!device) return;
  const last = (device.view.last_events = device.view.last_events || {});
  if (!last[e.event_type] || e.impact_ts >= last[e.event_type].impact_ts) last[e.event_type] = e;
  if (!device.marks.some((x) => eventKey(x) === key)) device.marks.push(e);
  render(device);
}

// An event's confidence to a tenth of a percent: a rule's threshold is often 0.99 or more.
function percent(p) { return `${(Number(p) * 100).toFixed(1)} %`; }

function renderEvents() {
  const panel = document.getElementById("events-panel");
  panel.hidden = events.length === 0;
  document.getElementById("events").innerHTML = events.map((e) => `
    <li data-device="${escapeHtml(e.device_id)}" data-type="${escapeHtml(e.event_type)}">
      <span class="type">${escapeHtml(e.event_type)}</span>
      <a class="device" href="/device/${encodeURIComponent(e.device_id)}">${escapeHtml(e.device_id)}</a>
      <span>at ${clock(e.impact_ts)}</span>
      <span class="muted">${percent(e.confidence)} · ${e.windows} windows</span>
      <span class="muted ago">${duration(Math.max(0, now() - e.impact_ts))} ago</span>
    </li>`).join("");
}

// "last fall 3 min ago (14:03)", one part per event type the device has published.
function renderLastEvents(device) {
  const last = device.view.last_events || {};
  const parts = Object.values(last).sort((a, b) => b.impact_ts - a.impact_ts).map((e) => {
    const ago = Math.max(0, now() - e.impact_ts);
    const recent = ago < EVENT_RECENT_S ? " recent" : "";
    return `<span class="event${recent}" data-type="${escapeHtml(e.event_type)}">last ${escapeHtml(e.event_type)} ` +
      `${duration(ago)} ago (${clock(e.impact_ts)})</span>`;
  });
  device.card.querySelector(".last-events").innerHTML = parts.join(" · ");
}

// The stretch of the newest label: the server's `current` ({label, since, duration_s}), kept up by
// the stream; a server without the field gives none, and the page reads it off the last hour instead.
function currentStretch(device) {
  const { view } = device;
  if (view.current !== undefined) return view.current;
  const points = device.points;
  if (!view.activity || !points.length) return null;
  const last = points[points.length - 1];
  if (last[1] !== view.activity.label) return null;
  let first = last;
  for (let i = points.length - 2; i >= 0; i--) {
    const p = points[i];
    if (p[1] !== last[1] || p[3] !== last[3] || first[0] - p[0] > POINT_LASTS_S) break;
    first = p;
  }
  return { label: last[1], since: first[0], duration_s: last[0] - first[0], fromHour: true };
}

// How long the current activity has lasted, ticking between updates while the device is online and
// its newest window is fresh (an online device that has said nothing for a while keeps the length its
// newest window gave); a device no longer online says what it was doing, from when to when.
function renderAge(device) {
  const { view, card } = device;
  const activity = view.activity;
  const lastSeen = Math.max(view.last_seen || 0, activity ? activity.ts : 0);
  const past = isPast(device);
  const age = card.querySelector(".age");
  if (!lastSeen) age.textContent = "";
  else if (past) age.textContent = `last seen ${clock(lastSeen)} · ${duration(Math.max(0, now() - lastSeen))} ago`;
  else age.textContent = activity ? `${duration(Math.max(0, now() - activity.ts))} ago` : "";
  const box = card.querySelector(".current");
  const stretch = activity ? currentStretch(device) : null;
  if (!stretch || stretch.label !== activity.label) {
    box.textContent = "";
    return;
  }
  const going = !past && now() - activity.ts < FRESH_S;
  const lasted = going ? Math.max(stretch.duration_s, now() - stretch.since) : stretch.duration_s;
  const over = stretch.fromHour && stretch.since <= now() - HOUR_S + POINT_LASTS_S ? "over " : "";
  const label = escapeHtml(stretch.label);
  const length = lasted >= 1 ? ` <span class="for">for ${over}${duration(lasted)}</span>,` : "";
  const from = clock(stretch.since);
  const to = clock(activity.ts);
  box.innerHTML = !past
    ? `${label}${length} since ${from}`
    : `was ${label}${length} ${from === to ? `at ${from}` : `${from}–${to}`}`;
}

function renderTimeline(device) {
  const svg = device.card.querySelector("svg.hour");
  const end = now();
  const start = end - HOUR_S;
  device.points = device.points.filter((p) => p[0] > start - POINT_LASTS_S);
  const parts = [];
  const seen = new Set();
  let span = null; // [x0, x1, label]: consecutive windows of one label drawn as one rectangle
  const flush = () => { if (span) parts.push(rect(span)); span = null; };
  const rect = ([x0, x1, label]) =>
    `<rect x="${x0.toFixed(1)}" y="0" width="${Math.max(1, x1 - x0).toFixed(1)}" height="10" fill="${colour(label)}"><title>${escapeHtml(label)}</title></rect>`;
  device.points.forEach((p, i) => {
    const next = device.points[i + 1];
    const sameRun = next && next[3] === p[3];
    const lasts = sameRun ? Math.min(next[0] - p[0], POINT_LASTS_S) : 0.5;
    const x0 = Math.max(0, p[0] - start);
    const x1 = Math.min(HOUR_S, p[0] - start + lasts);
    if (x1 <= 0) return;
    seen.add(p[1]);
    if (span && span[2] === p[1] && x0 - span[1] < 0.01 + GAP_CAP_S / 10) span[1] = x1;
    else { flush(); span = [x0, x1, p[1]]; }
  });
  flush();
  device.marks = device.marks.filter((e) => e.impact_ts > start - EVENT_MARK_S);
  for (const e of device.marks) {
    const x = Math.max(0, Math.min(HOUR_S - EVENT_MARK_S, e.impact_ts - start - EVENT_MARK_S / 2));
    parts.push(`<rect class="event-mark" data-type="${escapeHtml(e.event_type)}" x="${x.toFixed(1)}" y="0" ` +
      `width="${EVENT_MARK_S}" height="10"><title>${escapeHtml(e.event_type)} at ${clock(e.impact_ts)} ` +
      `(${percent(e.confidence)})</title></rect>`);
  }
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

function showCount(shown, matching, more) {
  total = matching;
  const what = filterText ? `matching “${escapeHtml(filterText)}”` : "";
  document.getElementById("count").innerHTML = total === 0
    ? (filterText ? `No device ${what}.` : "")
    : `Showing <strong>${count(shown)}</strong> of <strong>${count(total)}</strong> devices ${what}`;
  const button = document.getElementById("more");
  button.hidden = !more;
  button.textContent = `Show ${Math.min(PAGE, Math.max(0, total - shown))} more`;
  document.getElementById("empty").hidden = total > 0 || Boolean(filterText);
}

function showBroker(broker) {
  lastBroker = broker;
  const box = document.getElementById("broker");
  const panel = document.getElementById("broker-panel");
  if (downSince !== null) {
    panel.className = "panel unknown";
    const address = broker && broker.address ? ` <code>${escapeHtml(broker.address)}</code>` : "";
    box.innerHTML = `Broker${address} <span class="pill" data-state="unknown">unknown</span> ` +
      '<span class="muted">the server does not answer, so whether it is connected is not known</span>';
    return;
  }
  if (!broker) return;
  if (!broker.configured) {
    panel.className = "panel";
    box.innerHTML = '<strong>No broker is configured.</strong> <span class="muted">This page shows what the store holds; ' +
      "start <code>edge-har serve --broker HOST:PORT</code> to follow devices live.</span>";
    return;
  }
  panel.className = broker.connected ? "panel" : "panel bad";
  const state = broker.connected ? '<span class="pill ok">connected</span>' : '<span class="pill bad">not connected</span>';
  const problem = !broker.connected && broker.last_problem ? ` <span class="muted">${escapeHtml(broker.last_problem)}</span>` : "";
  box.innerHTML = `Broker <code>${escapeHtml(broker.address)}</code> ${state}${problem}`;
}

// The ingest's books: what was stored, what a check rejected, what never arrived (seq gaps), the database.
function showIngest(ingest) {
  const line = document.getElementById("ingest");
  if (!line) return;
  if (!ingest) { line.innerHTML = ""; return; }
  const rejected = typeof ingest.rejected === "object" && ingest.rejected !== null
    ? Object.values(ingest.rejected).reduce((a, b) => a + Number(b || 0), 0)
    : Number(ingest.malformed || 0);
  const reasons = typeof ingest.rejected === "object" && ingest.rejected !== null
    ? Object.entries(ingest.rejected).filter(([, n]) => n > 0).map(([why, n]) => `${escapeHtml(why)} ${count(n)}`).join(", ")
    : "";
  const db = ingest.db || null;
  const parts = [
    `<span>stored <strong>${count(ingest.stored)}</strong></span>`,
    `<span class="${rejected ? "warn" : ""}">rejected <strong>${count(rejected)}</strong>${reasons ? ` (${reasons})` : ""}</span>`,
    `<span class="${ingest.gaps ? "warn" : ""}" title="predictions the devices published that never arrived">lost upstream <strong>${count(ingest.gaps)}</strong></span>`,
  ];
  if (ingest.events) parts.splice(1, 0, `<span title="events (a fall) the devices published">events <strong>${count(ingest.events)}</strong></span>`);
  if (db) {
    const state = db.state === "ok" ? '<span class="pill ok">ok</span>' : `<span class="pill bad">${escapeHtml(db.state)}</span>`;
    parts.push(`<span>database ${state}${db.set_aside ? ` set aside ${count(db.set_aside)}` : ""}</span>`);
  }
  line.innerHTML = `Ingest: ${parts.join(" · ")}`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// ------------------------------------------------------------------ the server's absence

// The server did not answer: keep what is shown, but mark it as the last known state, and ask again
// every few seconds until it answers (the stream's own reconnects may be slower).
// A request failed: the server does not answer (or answers with an error), unless the failure is the
// page's own (a bug is logged, not reported as an outage).
function failed(err) {
  if (err && (err.unreachable || err.status)) serverDown(err);
  else console.error("live page:", err);
}

function serverDown(err) {
  const first = downSince === null;
  if (first) downSince = Date.now();
  const banner = document.getElementById("down-banner");
  const why = err && err.status ? `answers HTTP ${err.status}` : "unreachable";
  banner.textContent = `Server ${why} since ${hhmm(new Date(downSince))} — retrying; what the page shows is as it was then.`;
  if (first) {
    document.body.classList.add("server-down");
    banner.hidden = false;
    streamState(`server ${why}`, true);
    showBroker(lastBroker);
    devices.forEach(render);
  }
  if (downTimer === null) {
    downTimer = setTimeout(() => {
      downTimer = null;
      load().catch(failed);
    }, DOWN_RETRY_MS);
  }
}

function serverUp() {
  if (downSince === null) return;
  downSince = null;
  clearTimeout(downTimer);
  downTimer = null;
  document.body.classList.remove("server-down");
  document.getElementById("down-banner").hidden = true;
  if (!source || source.readyState !== EventSource.OPEN) streamState("reconnecting…", true);
  showBroker(lastBroker);
  devices.forEach(render);
}

// ------------------------------------------------------------------ the controls

function setFilter(text) {
  filterText = text.trim().slice(0, 128);
  pages = 1;
  listComplete = false;
  for (const device of devices.values()) device.card.remove();
  devices.clear();
  load().catch(failed);
}

let filterTimer = null;
document.getElementById("filter").addEventListener("input", (e) => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => setFilter(e.target.value), 300);
});
// One more page: one request, after the last shown device (the refresh re-reads every shown page).
async function showMore() {
  if (!nextAfter || loading) return;
  const wanted = filterText;
  const body = await getJSON(pageURL(nextAfter, true));
  if (wanted !== filterText) return;
  const list = document.getElementById("devices");
  for (const view of body.devices) {
    const device = take(view);
    list.appendChild(device.card);
    render(device);
  }
  pages += 1;
  nextAfter = body.next;
  listComplete = !nextAfter;
  showCount(devices.size, body.total, !listComplete);
}

document.getElementById("more").addEventListener("click", () => {
  showMore().catch(failed);
});

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
    load().catch(failed);
  });
  source.onerror = () => {
    // the stream dropped: whether the server is gone or only the stream is, a request says
    if (downSince === null) streamState("reconnecting…", true);
    load().catch(failed);
    // EventSource retries by itself after the server's retry: delay, unless the answer was an
    // error status (a proxy's 502 while the server restarts): then it gives up, so start anew.
    if (source.readyState === EventSource.CLOSED) {
      source = null;
      setTimeout(connect, 2000);
    }
  };
  source.addEventListener("predictions", (e) => {
    const touched = new Set();
    for (const p of JSON.parse(e.data).items) {
      const device = shownDevice(p.device_id);
      if (!device) continue;
      const last = device.points[device.points.length - 1];
      if (!last || p.ts > last[0]) device.points.push([p.ts, p.label, p.confidence, p.run_id, p.seq]);
      else if (!device.points.some((q) => q[3] === p.run_id && q[4] === p.seq)) {
        device.points.push([p.ts, p.label, p.confidence, p.run_id, p.seq]);
        device.points.sort((a, b) => a[0] - b[0]);
      }
      if (!device.view.activity || p.ts >= device.view.activity.ts) {
        const current = device.view.current;
        if (current !== undefined) {
          device.view.current = current && current.label === p.label && p.run_id === device.view.run_id
            ? { ...current, duration_s: Math.max(current.duration_s, p.ts - current.since) }
            : { label: p.label, since: p.ts, duration_s: 0 };
        }
        device.view.activity = { label: p.label, confidence: p.confidence, ts: p.ts };
        device.view.last_seen = Math.max(device.view.last_seen || 0, p.ts);
        device.view.run_id = p.run_id;
        device.view.model_id = p.model_id;
      }
      touched.add(device);
    }
    touched.forEach(render);
  });
  const apply = (change) => (e) => {
    const m = JSON.parse(e.data);
    const device = shownDevice(m.device_id);
    if (!device) return;
    change(device.view, m);
    render(device);
  };
  source.addEventListener("status", apply((view, m) => { view.status = m.status; view.liveness = m.liveness; }));
  source.addEventListener("liveness", apply((view, m) => { view.liveness = m.liveness; }));
  source.addEventListener("stats", apply((view, m) => { view.stats = m.stats; view.liveness = m.liveness; }));
  source.addEventListener("event", (e) => addEvent(JSON.parse(e.data).event));
  source.addEventListener("broker", (e) => showBroker(JSON.parse(e.data)));
  source.addEventListener("resync", () => load());
}

setInterval(() => {
  devices.forEach((d) => { renderAge(d); renderLastEvents(d); renderTimeline(d); });
  renderEvents();
}, REDRAW_EVERY_MS);
setInterval(() => { if (!loading && source && downSince === null) reload(false).catch(failed); }, REFRESH_EVERY_MS);
document.getElementById("tz").textContent = timeZoneText();
// the server's label order first, so each label has the colour it has on every other page
window.EdgeHarPalette.load().finally(connect);
