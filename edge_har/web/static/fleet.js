// edge-har serve, the Fleet page: the devices and the model each runs, the bundle store, staged rollouts.
// Plain JavaScript, no build step and no library. Every REFRESH_MS the page reads its three lists in one
// request each (/api/fleet, /api/bundles, /api/rollouts), never one per device, so a fleet of thousands
// costs what a fleet of three does; a list's HTML is replaced only when what it shows changed, so an open
// per-device list, the focus and a button under the pointer survive a refresh. Every string the server
// sends is escaped before it goes into HTML.
//
// Uploading a bundle POSTs the file's own bytes as the body (Content-Type application/gzip when it starts
// with gzip's magic bytes, else application/x-tar); starting a rollout POSTs its JSON; a refusal shows the
// server's one-line `detail`. While the server does not answer, a banner says since when and the lists
// keep what it last said.
"use strict";

(function () {
  const REFRESH_MS = 3000;
  const DEVICES_SHOWN = 200; // rows of the devices table (the filter box finds the others)
  const ROLLOUT_DEVICES_SHOWN = 50; // rows of a rollout's per-device list, the ones that need a look first
  const OPEN_UP_TO = 20; // a running or failed rollout of at most this many devices lists them unasked
  const $ = (id) => document.getElementById(id);

  const state = {
    fleet: null, // GET /api/fleet's devices
    bundles: null, // GET /api/bundles's bundles
    rollouts: null, // GET /api/rollouts's rollouts, newest first
    refreshes: 0, // completed refreshes (the browser test waits on it)
    clockSkew: 0, // server now - browser now, from the Date header, so "N min ago" is right on a badly set laptop
    downSince: null, // when the server stopped answering (browser clock, ms)
    filter: "",
    open: new Map(), // rollout id -> whether its per-device list is open (as the person left it)
    freshBundle: null, // the bundle this page just uploaded: highlighted, and picked in the rollout form
  };
  window.edgeHarFleet = { state };

  // ------------------------------------------------------------------ formatting

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }
  const esc = (value) => (value === null || value === undefined ? "" : escapeHtml(value));
  function now() { return Date.now() / 1000 + state.clockSkew; }
  function pad(n) { return String(n).padStart(2, "0"); }
  function clock(ts) {
    const d = new Date((ts - state.clockSkew) * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (d.toDateString() === new Date().toDateString()) return hm;
    return `${d.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" })} ${hm}`;
  }
  function fullTime(ts) {
    return typeof ts === "number" && isFinite(ts) ? new Date((ts - state.clockSkew) * 1000).toLocaleString() : "";
  }
  function ago(ts) {
    if (typeof ts !== "number" || !isFinite(ts)) return "–";
    const s = now() - ts;
    if (s < 5) return "just now";
    if (s < 60) return `${Math.floor(s)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }
  function bytes(n) {
    n = Number(n) || 0;
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
    return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
  }
  function count(n) { return Number(n || 0).toLocaleString("en-US"); }
  function plural(n, one, many) { return `${count(n)} ${n === 1 ? one : many || one + "s"}`; }

  // A device's own update steps (update/state) and a rollout's view of each device, in words.
  const STEP_WORDS = {
    pending: "waiting for its stage",
    sent: "update sent",
    downloading: "downloading",
    verifying: "verifying the download",
    testing: "self-testing",
    active: "running the new model",
    restarting: "restarting",
    passed: "passed",
    rolled_back: "rolled back",
    failed: "failed",
  };
  const STEP_PILL = { active: "ok", passed: "ok", failed: "bad", rolled_back: "bad", pending: "", sent: "run" };
  const STATUS_PILL = { online: "ok", offline: "bad", stopped: "" };
  const ROLLOUT_PILL = { running: "run", done: "ok", failed: "bad", stopped: "" };
  const STAGE_PILL = { running: "run", passed: "ok", failed: "bad", stopped: "", pending: "" };
  // a table's entry for a server string, never one of Object.prototype's ("constructor")
  function pick(table, key, fallback) {
    return typeof key === "string" && Object.prototype.hasOwnProperty.call(table, key) ? table[key] : fallback;
  }
  function stepPill(step) {
    return `<span class="pill ${pick(STEP_PILL, step, "run")}">${esc(pick(STEP_WORDS, step, step || "unknown"))}</span>`;
  }

  // ------------------------------------------------------------------ requests

  class HttpError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  function detailText(detail) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      // FastAPI's own type errors: a list of {loc, msg}
      return detail.map((e) => `${(e && e.loc ? e.loc.filter((p) => p !== "body").join(".") : "")}: ${e && e.msg}`).join("; ");
    }
    return detail === undefined ? "" : JSON.stringify(detail);
  }

  async function request(method, url, init) {
    let response;
    try {
      response = await fetch(url, Object.assign({ method, cache: "no-store" }, init || {}));
    } catch (err) {
      throw Object.assign(new Error(`the server did not answer (${err.message})`), { unreachable: true });
    }
    const date = Date.parse(response.headers.get("Date") || "");
    if (!isNaN(date)) {
      const skew = date / 1000 - Date.now() / 1000;
      state.clockSkew = Math.abs(skew) > 2 ? skew : 0; // the header has whole seconds: only a real skew counts
    }
    if (!response.ok) {
      let detail = "";
      try { detail = detailText((await response.json()).detail); } catch (e) { /* not JSON */ }
      if (response.status === 401) detail = "the server wants the password again (reload the page)";
      throw new HttpError(response.status, detail || `HTTP ${response.status}`);
    }
    return response.status === 204 ? null : response.json();
  }

  function setStatus(id, text, isError) {
    const box = $(id);
    box.textContent = text;
    box.classList.toggle("error", !!isError);
  }

  // Replace an element's HTML only when it changed (keeps focus, open lists and the button being pressed).
  function setHtml(el, html) {
    if (el.__html !== html) { el.innerHTML = html; el.__html = html; }
  }

  // ------------------------------------------------------------------ devices

  function updateCell(update) {
    if (!update) return '<span class="muted">no update yet</span>';
    const parts = [stepPill(update.state)];
    const when = typeof update.received_at === "number" ? update.received_at : null;
    const what = [update.model_id ? `<span class="mono">${esc(update.model_id)}</span>` : "", when ? esc(ago(when)) : ""]
      .filter(Boolean).join(" · ");
    if (what) parts.push(` <span class="muted small">${what}</span>`);
    if (update.reason) {
      const bad = update.state === "failed" || update.state === "rolled_back";
      const why = bad ? `${pick(STEP_WORDS, update.state, update.state)}: ${update.reason}` : update.reason;
      parts.push(`<span class="reason small block${bad ? " bad-text" : ""}">${esc(why.charAt(0).toUpperCase() + why.slice(1))}</span>`);
    }
    return parts.join("");
  }

  function renderDevices() {
    const all = state.fleet || [];
    const needle = state.filter.toLowerCase();
    const matching = needle ? all.filter((d) => String(d.device_id).toLowerCase().includes(needle)) : all;
    const sorted = matching.slice().sort((a, b) => (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0));
    const shown = sorted.slice(0, DEVICES_SHOWN);
    const rows = shown.map((d) => {
      const status = d.status || "unknown";
      const pill = pick(STATUS_PILL, status, "");
      return `<tr data-device="${esc(d.device_id)}">` +
        `<td data-label="Device"><span class="v"><a href="/device/${encodeURIComponent(d.device_id)}">${esc(d.device_id)}</a></span></td>` +
        `<td data-label="Model it runs" class="mono model"><span class="v">${d.model_id ? esc(d.model_id) : '<span class="muted">–</span>'}</span></td>` +
        `<td data-label="Status"><span class="v"><span class="pill ${pill}">${esc(status)}</span></span></td>` +
        `<td data-label="Last update" class="update"><span class="v">${updateCell(d.update)}</span></td>` +
        `<td data-label="Last seen" class="nowrap seen" title="${esc(fullTime(d.last_seen))}"><span class="v">${esc(ago(d.last_seen))}</span></td></tr>`;
    });
    setHtml(document.querySelector("#devices tbody"), rows.join(""));
    $("devices").hidden = shown.length === 0;
    $("devices-empty").hidden = all.length !== 0;
    const what = needle ? ` matching “${state.filter}”` : "";
    $("devices-count").textContent = state.fleet === null ? "" : `${plural(matching.length, "device")}${what}`;
    const more = $("devices-more");
    more.hidden = matching.length <= shown.length;
    more.textContent = more.hidden ? "" : `Showing the first ${count(shown.length)} of ${count(matching.length)}; filter by id to find the others.`;
  }

  // ------------------------------------------------------------------ bundles

  function renderBundles() {
    const bundles = state.bundles || [];
    const rows = bundles.map((b) => {
      const signed = b.signed_by ? `<span class="mono">${esc(b.signed_by)}</span>` : '<span class="muted">unsigned</span>';
      return `<tr data-bundle="${esc(b.id)}"${b.id === state.freshBundle ? ' class="fresh"' : ""}>` +
        `<td data-label="Model"><span class="v"><strong>${esc(b.model_id)}</strong> <span class="muted small">${esc(b.kind)}</span></span></td>` +
        `<td data-label="Id" class="mono id"><span class="v">${esc(b.id)}</span></td>` +
        `<td data-label="Size" class="nowrap"><span class="v">${esc(bytes(b.size_bytes))}</span></td>` +
        `<td data-label="Signed by" class="signed"><span class="v">${signed}</span></td>` +
        `<td data-label="Created" class="nowrap" title="${esc(fullTime(b.created_at))}"><span class="v">${esc(clock(b.created_at))} <span class="muted small">${esc(ago(b.created_at))}</span></span></td></tr>`;
    });
    setHtml(document.querySelector("#bundles tbody"), rows.join(""));
    $("bundles").hidden = bundles.length === 0;
    $("bundles-empty").hidden = bundles.length !== 0 || state.bundles === null;
    $("bundles-count").textContent = state.bundles === null ? "" : plural(bundles.length, "bundle");
    renderBundleSelect(bundles);
  }

  function renderBundleSelect(bundles) {
    const select = $("rollout-bundle");
    const key = bundles.map((b) => b.id).join("\n");
    const wanted = state.freshBundle && bundles.some((b) => b.id === state.freshBundle) ? state.freshBundle : null;
    if (select.__key === key && (!wanted || select.__picked === wanted)) return;
    const previous = select.value;
    select.textContent = "";
    if (!bundles.length) select.add(new Option("no bundle stored: upload one", ""));
    for (const b of bundles) {
      const signed = b.signed_by ? `signed ${b.signed_by}` : "unsigned";
      select.add(new Option(`${b.id} · ${bytes(b.size_bytes)} · ${signed}`, b.id)); // Option() sets text, not HTML
    }
    if (wanted) { select.value = wanted; select.__picked = wanted; }
    else if (previous && bundles.some((b) => b.id === previous)) select.value = previous;
    select.__key = key;
  }

  // ------------------------------------------------------------------ rollouts

  const DEVICE_ORDER = { failed: 0, rolled_back: 1, passed: 4, pending: 5 }; // the rest (in progress): 2

  function targetText(target) {
    if (!target) return "";
    if (target.all) return "all devices";
    if (target.group) return `group ${target.group}`;
    if (Array.isArray(target.devices)) return `devices ${target.devices.slice(0, 5).join(", ")}${target.devices.length > 5 ? ", …" : ""}`;
    return "";
  }

  function stageHtml(r, stage, i) {
    const n = r.stages.length;
    const total = stage.devices.length;
    const states = stage.devices.map((d) => (r.devices[d] || {}).state);
    const passed = states.filter((s) => s === "passed").length;
    const failed = states.filter((s) => s === "failed" || s === "rolled_back").length;
    const name = `Stage ${i + 1} of ${n}${i === 0 && n > 1 ? " · canary" : ""}`;
    const pct = (k) => (total ? (100 * k) / total : 0).toFixed(1);
    const current = r.state === "running" && i === r.stage ? " current" : "";
    const pill = pick(STAGE_PILL, stage.state, "");
    return `<div class="stage${current}" data-stage="${i}" data-state="${esc(stage.state)}">` +
      `<span class="name">${esc(name)}</span>` +
      `<span class="track" role="img" aria-label="${passed} of ${total} devices passed">` +
      `<span class="passed" style="width:${pct(passed)}%"></span><span class="failed" style="width:${pct(failed)}%"></span></span>` +
      `<span class="count">${count(passed)}/${count(total)} passed <span class="pill ${pill}">${esc(stage.state)}</span></span></div>`;
  }

  function healthText(h) {
    if (!h || typeof h.predictions !== "number") return "";
    const parts = [plural(h.predictions, "prediction")];
    if (typeof h.p99_ms === "number") parts.push(`p99 ${h.p99_ms.toFixed(2)} ms`);
    if (typeof h.confidence === "number") parts.push(`confidence ${h.confidence.toFixed(2)}`);
    if (typeof h.runs === "number") parts.push(plural(h.runs, "run"));
    return parts.join(", ");
  }

  function devicesHtml(r) {
    const entries = Object.entries(r.devices || {});
    const rank = (p) => pick(DEVICE_ORDER, p.state, 2);
    entries.sort((a, b) => rank(a[1]) - rank(b[1]) || a[1].stage - b[1].stage || (a[0] < b[0] ? -1 : 1));
    const tally = Object.create(null);
    for (const [, p] of entries) { const k = rank(p) === 2 ? "in progress" : p.state; tally[k] = (tally[k] || 0) + 1; }
    const summary = ["passed", "in progress", "failed", "rolled_back", "pending"]
      .filter((k) => tally[k]).map((k) => `${count(tally[k])} ${pick(STEP_WORDS, k, k)}`).join(", ")
      .replace("in progress", r.state === "running" ? "in progress" : "not finished");
    const rows = entries.slice(0, ROLLOUT_DEVICES_SHOWN).map(([device, p]) => {
      const active = typeof p.active_at === "number" ? `on it since ${clock(p.active_at)}`
        : p.cleared ? "the update was withdrawn before the device took it" : "";
      const notes = [p.reason ? `<span class="reason bad-text">${esc(p.reason)}</span>` : "",
        esc([active, healthText(p.health)].filter(Boolean).join("; "))].filter(Boolean).join("<br>");
      return `<tr data-device="${esc(device)}" data-state="${esc(p.state)}">` +
        `<td data-label="Device"><span class="v"><a href="/device/${encodeURIComponent(device)}">${esc(device)}</a></span></td>` +
        `<td data-label="Stage" class="nowrap"><span class="v">${esc(Number(p.stage) + 1)}</span></td>` +
        `<td data-label="State" class="state"><span class="v">${stepPill(p.state)}</span></td>` +
        `<td data-label="Reason, health" class="notes"><span class="v">${notes || '<span class="muted">–</span>'}</span></td></tr>`;
    });
    const more = entries.length > ROLLOUT_DEVICES_SHOWN
      ? `<p class="muted small">…and ${count(entries.length - ROLLOUT_DEVICES_SHOWN)} more (${esc(`GET /api/rollouts/${r.id}`)} has them all).</p>` : "";
    const open = state.open.has(r.id) ? state.open.get(r.id)
      : (r.state === "running" || r.state === "failed") && entries.length <= OPEN_UP_TO;
    return `<details data-rollout="${esc(r.id)}"${open ? " open" : ""}><summary>${esc(plural(entries.length, "device"))}: ${esc(summary)}</summary>` +
      `<table class="stack"><thead><tr><th>Device</th><th>Stage</th><th>State</th><th>Reason, health</th></tr></thead>` +
      `<tbody>${rows.join("")}</tbody></table>${more}</details>`;
  }

  function rolloutHtml(r) {
    const pill = pick(ROLLOUT_PILL, r.state, "");
    const n = Object.keys(r.devices || {}).length;
    const stop = r.state === "running"
      ? `<button type="button" class="danger stop" data-stop="${esc(r.id)}">Stop and roll back</button>` : "";
    const meta = [`<span class="mono">${esc(r.id)}</span>`, `started ${esc(clock(r.created_at))} (${esc(ago(r.created_at))})`,
      esc(plural(n, "device")), esc(targetText(r.target))].filter(Boolean).join(" · ");
    const reason = r.reason
      ? `<p class="reason${r.state === "failed" ? " bad-text" : " muted"}">${r.state === "failed" ? "Failed: " : "Why: "}${esc(r.reason)}</p>` : "";
    return `<section class="rollout ${esc(r.state)}" data-rollout="${esc(r.id)}" data-state="${esc(r.state)}">` +
      `<div class="head"><span class="model">${esc(r.model_id)}</span><span class="pill ${pill} rollout-state">${esc(r.state)}</span>` +
      `<span class="mono small muted bundle">${esc(r.bundle_id)}</span>${stop}</div>` +
      `<div class="meta muted">${meta}</div>${reason}` +
      `<div class="stages">${(r.stages || []).map((s, i) => stageHtml(r, s, i)).join("")}</div>` +
      `${devicesHtml(r)}</section>`;
  }

  function renderRollouts() {
    const rollouts = state.rollouts || [];
    setHtml($("rollouts"), rollouts.map(rolloutHtml).join(""));
    $("rollouts-empty").hidden = rollouts.length !== 0 || state.rollouts === null;
    const running = rollouts.filter((r) => r.state === "running").length;
    $("rollouts-count").textContent = state.rollouts === null ? "" : `${plural(rollouts.length, "rollout")}${running ? `, ${count(running)} running` : ""}`;
  }

  // ------------------------------------------------------------------ the refresh loop

  function render() { renderDevices(); renderBundles(); renderRollouts(); }

  async function refresh() {
    const lists = [["/api/fleet", "fleet", "devices"], ["/api/bundles", "bundles", "bundles"], ["/api/rollouts", "rollouts", "rollouts"]];
    const results = await Promise.allSettled(lists.map(([url]) => request("GET", url)));
    let problem = null;
    results.forEach((result, i) => {
      if (result.status === "fulfilled") state[lists[i][1]] = result.value[lists[i][2]];
      else if (!problem) problem = { url: lists[i][0], err: result.reason };
    });
    render();
    if (problem) serverDown(problem); else serverUp();
    state.refreshes += 1;
  }

  function serverUp() {
    state.downSince = null;
    $("down-banner").hidden = true;
    const d = new Date();
    $("refreshed").textContent = `updated ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function serverDown({ url, err }) {
    if (state.downSince === null) state.downSince = new Date();
    const since = `${pad(state.downSince.getHours())}:${pad(state.downSince.getMinutes())}:${pad(state.downSince.getSeconds())}`;
    const banner = $("down-banner");
    banner.textContent = err.unreachable
      ? `The server has not answered since ${since}; what is shown is what it last said. Asking again every ${REFRESH_MS / 1000} s.`
      : `${url}: ${err.message} (since ${since}); asking again every ${REFRESH_MS / 1000} s.`;
    banner.hidden = false;
    $("refreshed").textContent = err.unreachable ? "server not answering" : "server error";
  }

  let timer = null;
  let inFlight = false;
  let again = false;
  async function tick() {
    clearTimeout(timer);
    timer = null;
    if (inFlight) { again = true; return; }
    inFlight = true;
    try {
      if (!document.hidden || state.refreshes === 0) await refresh();
    } catch (err) {
      console.error("fleet: a refresh failed", err); // a bug of this page, not the server: try again anyway
    } finally {
      inFlight = false;
      if (again) { again = false; tick(); } else timer = setTimeout(tick, REFRESH_MS);
    }
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });

  // ------------------------------------------------------------------ actions

  async function isGzip(file) {
    const head = new Uint8Array(await file.slice(0, 2).arrayBuffer());
    return head.length === 2 && head[0] === 0x1f && head[1] === 0x8b;
  }

  $("upload").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("bundle-file");
    const file = input.files && input.files[0];
    if (!file) { setStatus("upload-status", "Choose a .tar or .tar.gz of a bundle folder first.", true); return; }
    const button = $("upload-button");
    button.disabled = true;
    setStatus("upload-status", `Uploading ${file.name} (${bytes(file.size)})…`);
    try {
      const type = (await isGzip(file)) ? "application/gzip" : "application/x-tar";
      const item = await request("POST", "/api/bundles", { body: file, headers: { "Content-Type": type } });
      state.freshBundle = item.id;
      const signed = item.signed_by ? `signed by ${item.signed_by}` : "unsigned";
      const labels = Array.isArray(item.labels) ? item.labels.join(", ") : "";
      setStatus("upload-status", `Stored ${item.model_id} as ${item.id}: ${bytes(item.size_bytes)}, ${signed}, ${item.kind}, labels ${labels}.`);
      input.value = "";
      tick();
    } catch (err) {
      setStatus("upload-status", `Upload refused: ${err.message}`, true);
    } finally {
      button.disabled = false;
    }
  });

  const TARGET_HINTS = {
    devices: ["Device ids, comma-separated", "pi-kitchen, pi-hall"],
    group: ["Group (as the devices report it)", "kitchen"],
    all: ["Every device the server knows", ""],
  };
  function showTargetKind() {
    const kind = $("target-kind").value;
    const [name, placeholder] = TARGET_HINTS[kind];
    $("target-name").textContent = name;
    $("target").placeholder = placeholder;
    $("target").disabled = kind === "all";
  }
  $("target-kind").addEventListener("change", showTargetKind);
  showTargetKind();

  function rolloutBody() {
    const body = { bundle_id: $("rollout-bundle").value };
    if (!body.bundle_id) throw new Error("pick a bundle (upload one first)");
    const kind = $("target-kind").value;
    const target = $("target").value.trim();
    if (kind === "devices") {
      body.devices = target.split(/[\s,]+/).filter(Boolean);
      if (!body.devices.length) throw new Error("give at least one device id");
    } else if (kind === "group") {
      if (!target) throw new Error("give the group's name");
      body.group = target;
    } else {
      body.all = true;
    }
    const canary = $("canary").value.trim() || "1";
    body.canary = /^[0-9]+$/.test(canary) ? Number(canary) : canary; // "10%" goes as it is; the server judges
    return body;
  }

  $("new-rollout").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let body;
    try { body = rolloutBody(); } catch (err) { setStatus("rollout-status", `Not started: ${err.message}.`, true); return; }
    const button = $("start-rollout");
    button.disabled = true;
    setStatus("rollout-status", "Starting…");
    try {
      const r = await request("POST", "/api/rollouts", { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
      const n = Object.keys(r.devices || {}).length;
      setStatus("rollout-status", `Started ${r.id}: ${r.model_id} to ${plural(n, "device")} in ${plural(r.stages.length, "stage")}.`);
      state.rollouts = [r].concat((state.rollouts || []).filter((x) => x.id !== r.id));
      renderRollouts();
      tick();
    } catch (err) {
      const prefix = err.status === 503 ? "Not started (no broker)" : "Not started";
      setStatus("rollout-status", `${prefix}: ${err.message}`, true);
    } finally {
      button.disabled = false;
    }
  });

  $("rollouts").addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-stop]");
    if (!button) return;
    const id = button.dataset.stop;
    if (!window.confirm(`Stop rollout ${id} and roll back every device that took its bundle?`)) return;
    button.disabled = true;
    try {
      const r = await request("POST", `/api/rollouts/${encodeURIComponent(id)}/stop?rollback=true`);
      state.rollouts = (state.rollouts || []).map((x) => (x.id === r.id ? r : x));
      renderRollouts();
      setStatus("rollout-status", `Stopped ${r.id}; the devices that took it are sent a rollback.`);
    } catch (err) {
      button.disabled = false;
      setStatus("rollout-status", `Not stopped: ${err.message}`, true);
    }
    tick();
  });

  // <details> "toggle" does not bubble: listen while it goes down
  $("rollouts").addEventListener("toggle", (ev) => {
    const details = ev.target;
    if (details.tagName === "DETAILS" && details.dataset.rollout) state.open.set(details.dataset.rollout, details.open);
  }, true);

  $("filter").addEventListener("input", () => { state.filter = $("filter").value.trim(); renderDevices(); });

  tick();
})();
