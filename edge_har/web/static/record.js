// edge-har serve, the Record page (/record?device=<id>): start and stop a device's recording, set the
// label of what is being done now, and watch the signal arrive.
//
// Everything goes through the JSON API: GET /api/devices/{id}/record (the device's last record/state and
// the last ~30 s of its signal, polled twice a second), POST .../record {"action"} and POST .../label
// {"label"} (which the server publishes to the device over MQTT). The page trusts only what the device
// reports back: a clicked label is marked pending until the device's state names it. Every failure is one
// line above the controls (no broker, device not recording, server away) and polling carries on, so a
// restarted server or device heals by itself. Plain JavaScript, uPlot (vendored), colours from palette.js.
"use strict";

(function () {
  const POLL_MS = 500;
  const WINDOW_S = 30; // the signal chart's width in seconds
  const $ = (id) => document.getElementById(id);

  const state = {
    device: "",
    record: null, // the last GET .../record answer
    polls: 0, // answers received (the browser test waits on it)
    polling: false,
    pending: undefined, // a label asked for and not yet reported back (null = none)
    classes: [],
    serverLabels: [],
    error: "",
    notice: "",
    lastOk: 0,
  };
  const charts = { signal: null, channels: "" };
  window.edgeHarRecord = { state, charts };

  // ------------------------------------------------------------------ requests

  class HttpError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  async function request(method, url, body) {
    const init = { method, cache: "no-store", headers: {} };
    if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
    const response = await fetch(url, init);
    if (!response.ok) {
      let detail = `HTTP ${response.status}`;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new HttpError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return response.json();
  }

  function api(path) { return `/api/devices/${encodeURIComponent(state.device)}${path}`; }

  function explain(what, err) {
    // One line a person can act on; the server's own detail is kept in it.
    if (!(err instanceof HttpError)) return `${what}: the server is not answering (retrying every ${POLL_MS / 1000} s).`;
    const detail = err.message;
    if (err.status === 503 && /broker/i.test(detail)) return `${what}: no broker: ${detail}`;
    if (err.status === 503) return `${what}: the server cannot reach the devices: ${detail}`;
    if (err.status === 404) return `${what}: ${detail}`;
    if (err.status === 401) return `${what}: the server wants the password again (reload the page).`;
    return `${what}: the server refused: ${detail}`;
  }

  function showError(text) {
    state.error = text || "";
    const box = $("error");
    box.textContent = state.error || state.notice;
    box.hidden = !(state.error || state.notice);
    box.classList.toggle("rec-notice", !state.error && Boolean(state.notice));
  }

  function showNotice(text) {
    state.notice = text || "";
    showError(state.error);
  }

  // ------------------------------------------------------------------ devices

  async function loadDevices() {
    try {
      const page = await request("GET", "/api/devices?limit=1000");
      const list = $("devices");
      list.replaceChildren();
      for (const d of page.devices || []) {
        const o = document.createElement("option");
        o.value = d.device_id;
        list.append(o);
      }
      if (!state.device && (page.devices || []).length === 1) pick(page.devices[0].device_id);
    } catch (err) {
      showError(explain("The device list", err));
    }
  }

  function pick(device) {
    device = (device || "").trim();
    if (device === state.device) return;
    state.device = device;
    state.record = null;
    state.pending = undefined;
    $("device").value = device;
    const q = new URLSearchParams(location.search);
    if (device) q.set("device", device); else q.delete("device");
    history.replaceState(null, "", `${location.pathname}${device ? `?${q}` : ""}`);
    document.title = `edge-har · Record${device ? ` · ${device}` : ""}`;
    if (charts.signal) { charts.signal.destroy(); charts.signal = null; charts.channels = ""; $("chart").replaceChildren(); }
    showError("");
    showNotice("");
    render();
    poll();
  }

  // ------------------------------------------------------------------ polling

  async function poll() {
    if (!state.device || state.polling) return;
    state.polling = true;
    const device = state.device;
    try {
      const answer = await request("GET", api("/record"));
      if (device !== state.device) return;
      state.record = answer;
      state.polls += 1;
      state.lastOk = Date.now();
      const st = answer.state;
      if (st && state.pending !== undefined && (st.label || null) === state.pending) state.pending = undefined;
      if (answer.broker === false) showError("No broker: this server was started without --broker, so it cannot reach the devices.");
      else if (!st) showError(`No recorder state from “${device}” yet: is \`edge-har record\` running there, on this server's broker?`);
      else if (st.error) showError(`The device says: ${st.error}`);
      else showError("");
      render();
      drawSignal(answer.signal);
    } catch (err) {
      if (device === state.device) showError(explain(`Device “${device}”`, err));
    } finally {
      state.polling = false;
      $("polled").textContent = state.lastOk ? `updated ${new Date(state.lastOk).toLocaleTimeString()}` : "";
    }
  }

  // ------------------------------------------------------------------ what the device reports

  function bytesText(n) {
    if (n === null || n === undefined) return "–";
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  function classesOf(st) {
    const own = st && Array.isArray(st.classes) && st.classes.length ? st.classes : state.serverLabels;
    return own.filter((c) => c && c !== "none");
  }

  function render() {
    const st = state.record && state.record.state;
    const recording = Boolean(st && st.recording);
    $("start").disabled = !state.device || recording;
    $("stop").disabled = !state.device || !recording;
    const pill = $("rec-pill");
    pill.textContent = !state.device ? "–" : !st ? "no state" : recording ? "recording" : "stopped";
    pill.className = `pill ${recording ? "bad rec-live" : st ? "" : "warn"}`;
    $("session").textContent = (st && st.session_id) || "–";
    $("samples").textContent = st && st.samples !== undefined && st.samples !== null ? Number(st.samples).toLocaleString() : "–";
    $("bytes").textContent = st ? bytesText(st.bytes) : "–";
    let budget = "–";
    if (st && st.budget_bytes) {
      const used = Math.min(100, (100 * (st.bytes || 0)) / st.budget_bytes);
      budget = `${bytesText(st.budget_bytes)} (${used.toFixed(used < 10 ? 1 : 0)}% used)`;
    } else if (st) budget = "none";
    $("budget").textContent = budget;
    $("rate").textContent = st && st.sample_rate_hz ? `${st.sample_rate_hz} Hz` : "–";
    const link = $("session-link");
    link.replaceChildren();
    if (st && st.session_id) {
      const a = document.createElement("a");
      a.href = `/label/${encodeURIComponent(state.device)}/${encodeURIComponent(st.session_id)}`;
      a.textContent = "Label this session";
      link.append(a, " (once the device has pushed it)");
    }
    renderLabels(st);
  }

  function renderLabels(st) {
    const classes = classesOf(st);
    const box = $("labels");
    const key = JSON.stringify(classes);
    if (box.dataset.classes !== key) {
      box.dataset.classes = key;
      box.replaceChildren();
      const add = (label, text, digit) => {
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.label = label === null ? "" : label;
        b.className = "rec-label";
        const sw = document.createElement("i");
        sw.style.background = label === null ? "transparent" : EdgeHarPalette.colourFor(label);
        const k = document.createElement("kbd");
        k.textContent = String(digit);
        b.append(sw, text, k);
        b.addEventListener("click", () => setLabel(label));
        box.append(b);
      };
      classes.forEach((c, i) => add(c, c, i < 9 ? i + 1 : ""));
      add(null, "none", 0);
      if (!classes.length) {
        const p = document.createElement("p");
        p.className = "muted rec-note";
        p.textContent = "No classes known yet: the device reports its classes in its record state.";
        box.append(p);
      }
    }
    const current = st ? st.label || null : undefined;
    for (const b of box.querySelectorAll("button")) {
      const label = b.dataset.label || null;
      b.setAttribute("aria-pressed", String(current !== undefined && label === current));
      b.classList.toggle("rec-pending", state.pending !== undefined && label === state.pending && label !== current);
      b.disabled = !state.device;
    }
  }

  // ------------------------------------------------------------------ commands

  async function command(what, path, body) {
    try {
      await request("POST", api(path), body);
      return true;
    } catch (err) {
      showError(explain(what, err));
      return false;
    }
  }

  async function startStop(action) {
    if (!state.device) return;
    showNotice("");
    if (await command(action === "start" ? "Start" : "Stop", "/record", { action })) poll();
  }

  async function setLabel(label) {
    if (!state.device) return;
    const st = state.record && state.record.state;
    state.pending = label;
    render();
    if (await command(`Label ${label === null ? "none" : `“${label}”`}`, "/label", { label })) {
      showNotice(st && !st.recording && label !== null
        ? `The device is not recording: “${label}” is its current label, but nothing is written until you start.`
        : "");
      poll();
    } else {
      state.pending = undefined;
      render();
    }
  }

  // ------------------------------------------------------------------ the signal chart

  function columns(signal) {
    // The signal as [t, ch1[], ch2[], ...], whichever way round its values come (per channel or per sample).
    const t = (signal && signal.t) || [];
    const channels = (signal && signal.channels) || [];
    const values = (signal && signal.values) || [];
    const perChannel = values.length === channels.length && values.every((v) => Array.isArray(v) && v.length === t.length)
      && !(values.length === t.length && t.length !== channels.length);
    if (perChannel) return { t, channels, cols: values };
    const cols = channels.map((_, c) => values.map((row) => (Array.isArray(row) && row[c] !== undefined ? row[c] : null)));
    return { t, channels, cols };
  }

  function clock(ts) {
    const d = new Date(ts * 1000);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
  }

  function cssVar(name, fallback) {
    return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
  }

  function channelColour(i) { return EdgeHarPalette.PALETTE[i % EdgeHarPalette.PALETTE.length]; }

  function chartWidth() { return Math.max(200, $("chart").clientWidth); }

  function drawSignal(signal) {
    const { t, channels, cols } = columns(signal);
    const key = channels.join("\u0000");
    if (charts.signal && charts.channels !== key) { charts.signal.destroy(); charts.signal = null; $("chart").replaceChildren(); }
    const last = t.length ? t[t.length - 1] : Date.now() / 1000;
    const data = [t, ...cols];
    if (!charts.signal) {
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
        cursor: { drag: { x: false, y: false }, points: { show: false } },
        scales: { x: { time: true, auto: false, range: () => [charts.last - WINDOW_S, charts.last] } },
        axes: [{ ...axis, size: 34, space: 70, values: (u, splits) => splits.map(clock) }, { ...axis, size: 52 }],
        series: [{}, ...channels.map((c, i) => ({ label: c, stroke: channelColour(i), width: 1.25, points: { show: false } }))],
      }, [[], ...channels.map(() => [])], $("chart"));
      charts.channels = key;
      legend(channels);
    }
    charts.last = last;
    charts.signal.setData(data);
    $("chart-note").textContent = t.length ? "" : "No signal in the last 30 s: the device sends it only while it records.";
  }

  function legend(channels) {
    const el = $("chart-legend");
    el.replaceChildren();
    channels.forEach((c, i) => {
      const span = document.createElement("span");
      const sw = document.createElement("i");
      sw.style.background = channelColour(i);
      span.append(sw, c);
      el.append(span);
    });
  }

  // ------------------------------------------------------------------ wiring

  function onKey(e) {
    if (e.target && /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
    if (e.altKey || e.ctrlKey || e.metaKey || !/^[0-9]$/.test(e.key)) return;
    const classes = classesOf(state.record && state.record.state);
    const n = Number(e.key);
    if (n === 0) setLabel(null);
    else if (n <= classes.length) setLabel(classes[n - 1]);
    else return;
    e.preventDefault();
  }

  function wire() {
    $("pick").addEventListener("submit", (e) => { e.preventDefault(); pick($("device").value); });
    $("device").addEventListener("change", () => pick($("device").value));
    $("start").addEventListener("click", () => startStop("start"));
    $("stop").addEventListener("click", () => startStop("stop"));
    document.addEventListener("keydown", onKey);
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { if (charts.signal) charts.signal.setSize({ width: chartWidth(), height: 220 }); }, 100);
    });
    const scheme = window.matchMedia("(prefers-color-scheme: dark)");
    const rebuild = () => {
      if (charts.signal) { charts.signal.destroy(); charts.signal = null; charts.channels = ""; $("chart").replaceChildren(); }
      if (state.record) drawSignal(state.record.signal);
    };
    if (scheme.addEventListener) scheme.addEventListener("change", rebuild);
    setInterval(() => { if (!document.hidden) poll(); }, POLL_MS);
  }

  async function start() {
    wire();
    await EdgeHarPalette.load();
    try {
      state.serverLabels = (await request("GET", "/api/labels")).labels || [];
    } catch (err) { /* the device's own classes are used; the poll reports a server that is away */ }
    const device = new URLSearchParams(location.search).get("device");
    if (device) pick(device);
    else render();
    await loadDevices();
  }

  start();
})();
