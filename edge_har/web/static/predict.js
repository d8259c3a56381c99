// edge-har serve, Predict page: upload (drop or pick) -> POST /api/predict -> label, bars, timeline.
// Plain JavaScript, no build step, nothing fetched from elsewhere.
"use strict";

const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04",
  "#db2777", "#4b5563", "#65a30d", "#7c3aed", "#0d9488", "#b91c1c", "#1d4ed8"];

const $ = (id) => document.getElementById(id);
let bundles = [];

function colourFor(labels, label) {
  const i = labels.indexOf(label);
  return i < 0 ? "#9ca3af" : PALETTE[i % PALETTE.length];
}

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
  $("label").textContent = result.label;
  $("confidence").textContent = `${(100 * result.confidence).toFixed(1)} %`;
  const mine = result.windows.filter((w) => w.label === result.label).length;
  $("confidence").title = result.windows.length > 1
    ? `mean confidence of the ${mine} windows labelled ${result.label}`
    : "confidence";
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
    fill.style.background = colourFor(labels, label);
    track.append(fill);
    row.append(track, el("span", { class: "value" }, `${(100 * p).toFixed(1)} %`));
    bars.append(row);
  }

  const many = result.windows.length > 1;
  $("timeline-section").hidden = !many;
  if (many) {
    const strip = $("timeline");
    strip.replaceChildren(...result.windows.map((w) => {
      const cell = el("span", { title: `${w.start_s.toFixed(1)}–${w.end_s.toFixed(1)} s: ${w.label} ${(100 * w.confidence).toFixed(0)} %`, "data-label": w.label });
      cell.style.background = colourFor(labels, w.label);
      return cell;
    }));
    $("axis-end").textContent = `${result.windows[result.windows.length - 1].end_s.toFixed(1)} s`;
    $("legend").replaceChildren(...labels.map((label) => {
      const item = el("span");
      const swatch = el("i");
      swatch.style.background = colourFor(labels, label);
      item.append(swatch, document.createTextNode(`${label} ${(100 * (result.summary.shares[label] || 0)).toFixed(0)} %`));
      return item;
    }));
    $("summary").textContent =
      `${result.summary.majority_label} in ${(100 * result.summary.majority_share).toFixed(0)} % of ${result.summary.windows} windows`;
  }
  $("result").hidden = false;
}

async function upload(file) {
  if (!file) return;
  $("error").hidden = true;
  $("result").hidden = true;
  $("busy").hidden = false;
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
loadInfo();
