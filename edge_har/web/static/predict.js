// edge-har serve, Predict page: upload (drop or pick) -> POST /api/predict -> the recording's majority
// label, the class bars, a timeline of windows and the table of segments (runs of one label).
// Plain JavaScript, no build step, nothing fetched from elsewhere.
//
// The headline is what most windows said and how many said it ("Sit — 12 of 20 windows"), the same
// label the bars and the segments show; a single window's confidence is never put beside a bar of
// the mean. Colours come from palette.js, so a label has the same colour here as on the Live page.
//
// For a sensor bundle a window of the timeline is clickable: the page sends the File it uploaded again
// to POST /api/explain with the window's index and draws the answer with explain.js (the signal per
// channel with a heat band of the occlusion attribution under it, and what it cost).
"use strict";

const $ = (id) => document.getElementById(id);
const SEGMENT_ROWS = 500; // a long recording's table shows this many segments, then says how many more
let bundles = [];
let lastUpload = null; // {file, model_id} of the result shown: what a click on a window explains
let explaining = 0; // the newest explain request; an older answer arriving late is dropped

const colourFor = (label) => window.EdgeHarPalette.colourFor(label);
const seconds = (s) => `${s.toFixed(1)} s`;

function current() {
  return bundles.find((b) => b.model_id === $("model").value) || bundles[0];
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function showModel() {
  const b = current();
  if (!b) return;
  $("model-info").textContent =
    `${b.kind} · ${b.labels.length} labels · window ${b.window_seconds} s · ${b.variant} · ${b.interpreter.backend}`;
  $("model-line").textContent = b.model_id;
  $("accepts").textContent = "accepts " + b.accepts.join(", ");
  $("file").setAttribute("accept", b.accepts.join(","));
}

async function loadInfo() {
  try {
    const reply = await fetch("/api/info");
    if (!reply.ok) throw new Error(`GET /api/info: ${reply.status}`);
    const info = await reply.json();
    bundles = info.bundles;
    const select = $("model");
    select.replaceChildren(...bundles.map((b) => el("option", { value: b.model_id }, `${b.model_id} (${b.kind})`)));
    if (!bundles.length) {
      $("model-line").textContent = "no bundle loaded";
      $("accepts").textContent = "start edge-har serve with --bundle DIR";
    }
    showModel();
  } catch (err) {
    showError(String(err));
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function render(result) {
  const b = bundles.find((x) => x.model_id === result.model_id) || current();
  const labels = b ? b.labels : Object.keys(result.probabilities);
  const n = result.windows.length;
  const mine = result.summary.majority_windows ?? result.windows.filter((w) => w.label === result.label).length;
  $("label").textContent = result.label;
  $("label").style.color = colourFor(result.label);
  $("majority").textContent = n > 1 ? `— ${mine} of ${n} windows` : `${(100 * result.confidence).toFixed(1)} %`;
  $("majority").title = n > 1 ? `the label most windows say: ${mine} of the recording's ${n} windows` : "confidence";
  $("confidence").textContent = n > 1
    ? `mean confidence of those ${mine} windows ${(100 * result.confidence).toFixed(1)} %`
    : "";
  const lat = result.summary;
  $("latency").textContent = result.windows.length > 1
    ? `${lat.p50_latency_ms.toFixed(2)} ms per window (p50) · ${result.total_ms.toFixed(0)} ms in all`
    : `${result.windows[0].latency_ms.toFixed(2)} ms`;
  $("source").textContent = `${result.filename} · ${result.input} · ${result.windows.length} window(s) · ${result.model_id} (${result.variant})`;

  $("bars-title").textContent = result.windows.length > 1
    ? `class probabilities, mean over ${result.windows.length} windows`
    : "class probabilities";
  const bars = $("bars");
  bars.replaceChildren();
  for (const label of labels) {
    const p = result.probabilities[label] || 0;
    const row = el("div", { class: "bar" + (label === result.label ? " top" : ""), "data-label": label });
    row.append(el("span", { class: "name", title: label }, label));
    const track = el("span", { class: "track" });
    const fill = el("span", { class: "fill" });
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    fill.style.background = colourFor(label);
    track.append(fill);
    row.append(track, el("span", { class: "value" }, `${(100 * p).toFixed(1)} %`));
    bars.append(row);
  }

  const many = result.windows.length > 1;
  $("timeline-section").hidden = !many;
  if (many) {
    const strip = $("timeline");
    const explainable = result.kind === "sensor";
    strip.classList.toggle("clickable", explainable);
    strip.replaceChildren(...result.windows.map((w) => {
      const hint = explainable ? " (click: why)" : "";
      const cell = el("span", { title: `${w.start_s.toFixed(1)}–${w.end_s.toFixed(1)} s: ${w.label} ${(100 * w.confidence).toFixed(0)} %${hint}`, "data-label": w.label, "data-index": String(w.index) });
      cell.style.background = colourFor(w.label);
      if (explainable) cell.addEventListener("click", () => explain(w.index));
      return cell;
    }));
    $("explain-hint").hidden = !explainable;
    $("axis-end").textContent = `${result.windows[result.windows.length - 1].end_s.toFixed(1)} s`;
    $("legend").replaceChildren(...labels.map((label) => {
      const item = el("span");
      const swatch = el("i");
      swatch.style.background = colourFor(label);
      item.append(swatch, document.createTextNode(`${label} ${(100 * (result.summary.shares[label] || 0)).toFixed(0)} %`));
      return item;
    }));
    $("summary").textContent =
      `${result.summary.majority_label} in ${(100 * result.summary.majority_share).toFixed(0)} % of ${result.summary.windows} windows`;
    renderSegments(result.segments || []);
  }
  $("result").hidden = false;
}

function renderSegments(segments) {
  const rows = segments.slice(0, SEGMENT_ROWS).map((s) => {
    const row = el("tr", { "data-label": s.label });
    const name = el("td", { class: "seg-label" });
    const swatch = el("i", { class: "swatch" });
    swatch.style.background = colourFor(s.label);
    name.append(swatch, document.createTextNode(s.label));
    row.append(
      name,
      el("td", { class: "num start" }, seconds(s.start_s)),
      el("td", { class: "num end" }, seconds(s.end_s)),
      el("td", { class: "num duration" }, seconds(s.duration_s)),
      el("td", { class: "num windows" }, String(s.windows)),
      el("td", { class: "num mean" }, `${(100 * s.mean_confidence).toFixed(1)} %`),
    );
    return row;
  });
  $("segments").tBodies[0].replaceChildren(...rows);
  $("segments-more").textContent = segments.length > SEGMENT_ROWS
    ? `and ${segments.length - SEGMENT_ROWS} more segments (the whole list is in the API's reply)`
    : "";
}

function clearExplanation() {
  explaining += 1;
  for (const id of ["explain", "explain-busy", "explain-error"]) $(id).hidden = true;
  $("explain").replaceChildren();
  for (const cell of document.querySelectorAll("#timeline > span.picked")) cell.classList.remove("picked");
}

async function explain(index) {
  if (!lastUpload) return;
  clearExplanation();
  const mine = explaining;
  const cell = document.querySelector(`#timeline > span[data-index="${index}"]`);
  if (cell) cell.classList.add("picked");
  $("explain-busy").hidden = false;
  const form = new FormData();
  form.append("file", lastUpload.file, lastUpload.file.name);
  form.append("model_id", lastUpload.model_id);
  form.append("window", String(index));
  try {
    const reply = await fetch("/api/explain", { method: "POST", body: form });
    const body = await reply.json().catch(() => ({ detail: `HTTP ${reply.status}` }));
    if (mine !== explaining) return;
    if (!reply.ok) {
      $("explain-error").textContent = `${reply.status}: ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`;
      $("explain-error").hidden = false;
      return;
    }
    const title = `Window ${body.index + 1} of ${body.windows} · ${body.start_s.toFixed(1)}–${body.end_s.toFixed(1)} s`;
    window.EdgeHarExplain.render($("explain"), body, title);
  } catch (err) {
    if (mine !== explaining) return;
    $("explain-error").textContent = `the server did not answer: ${err}`;
    $("explain-error").hidden = false;
  } finally {
    if (mine === explaining) $("explain-busy").hidden = true;
  }
}

async function upload(file) {
  if (!file) return;
  $("error").hidden = true;
  $("result").hidden = true;
  $("busy").hidden = false;
  clearExplanation();
  lastUpload = null;
  const form = new FormData();
  form.append("file", file, file.name);
  const b = current();
  if (b) form.append("model_id", b.model_id);
  try {
    const reply = await fetch("/api/predict", { method: "POST", body: form });
    const body = await reply.json().catch(() => ({ detail: `HTTP ${reply.status}` }));
    if (!reply.ok) {
      showError(`${reply.status}: ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`);
      return;
    }
    lastUpload = { file, model_id: body.model_id };
    render(body);
  } catch (err) {
    showError(`the server did not answer: ${err}`);
  } finally {
    $("busy").hidden = true;
  }
}

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => {
    upload(e.target.files[0]);
    e.target.value = "";  // the same file again is a new upload
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => {
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) upload(files[0]);
  });
  $("model").addEventListener("change", showModel);
}

wire();
// the server's label order first, so each label has the colour it has on every other page
window.EdgeHarPalette.load().finally(loadInfo);
