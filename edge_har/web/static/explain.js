// edge-har serve: one window's explanation (POST /api/explain, GET /api/recordings/.../explain) drawn on a
// <canvas>, shared by the Predict and Label pages. Per channel: the signal as the model saw it (physical
// units) as a line, and under it a band coloured by the occlusion attribution of each time segment on a
// diverging scale: --attr-pos (hiding the segment lowers the label's probability: it supports the label),
// --attr-neg (hiding it raises the probability: it speaks against the label), --attr-zero (no effect).
// The scale is symmetric around 0 and runs to the largest |value| of the window, stated in the legend.
// Colours are app.css variables, so both themes work; the drawing is redone when the scheme changes.
"use strict";

(function () {
  const ROW = 46; // CSS pixels of one channel's line
  const BAND = 12; // ... and of its heat band
  const GAP = 12;
  const LEFT = 56; // room for the channel's name
  const RIGHT = 8;

  // [r, g, b] of a CSS colour in #rgb, #rrggbb or rgb() form (what app.css's variables hold), else null.
  function parse(text) {
    let m = /^#([0-9a-f]{6})$/i.exec(text);
    if (m) return [0, 2, 4].map((i) => parseInt(m[1].slice(i, i + 2), 16));
    m = /^#([0-9a-f]{3})$/i.exec(text);
    if (m) return [0, 1, 2].map((i) => parseInt(m[1][i] + m[1][i], 16));
    m = /rgba?\(\s*(\d+)[ ,]+(\d+)[ ,]+(\d+)/.exec(text);
    return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
  }

  function cssColour(name, fallback) {
    return parse(getComputedStyle(document.body).getPropertyValue(name).trim()) || parse(fallback);
  }

  function mix(a, b, t) {
    return `rgb(${a.map((v, i) => Math.round(v + (b[i] - v) * t)).join(",")})`;
  }

  function colours() {
    return {
      pos: cssColour("--attr-pos", "#d9480f"),
      neg: cssColour("--attr-neg", "#1971c2"),
      zero: cssColour("--attr-zero", "#f1f3f5"),
      ink: getComputedStyle(document.body).getPropertyValue("--ink").trim() || "#1d232b",
      muted: getComputedStyle(document.body).getPropertyValue("--muted").trim() || "#5f6975",
      line: getComputedStyle(document.body).getPropertyValue("--line").trim() || "#dde1e6",
    };
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  }

  function pct(p) { return `${(100 * p).toFixed(1)} %`; }
  function points(p) { return `${(100 * p).toFixed(1)} points`; }

  // The largest |cell|: the ends of the colour scale (never 0, so an all-zero map draws as "no effect").
  function extent(cells) {
    let top = 0;
    for (const row of cells) for (const v of row) top = Math.max(top, Math.abs(v));
    return top > 0 ? top : 1e-9;
  }

  function draw(canvas, ex) {
    const c = colours();
    const channels = ex.channels.length;
    const width = Math.max(240, canvas.parentElement.clientWidth || 600);
    const height = channels * (ROW + BAND + GAP);
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    const cells = ex.attribution.cells, edges = ex.attribution.edges;
    const n = edges[edges.length - 1];
    const top = extent(cells);
    const plotW = width - LEFT - RIGHT;
    const x = (i) => LEFT + (plotW * i) / Math.max(1, n - 1);
    const xEdge = (i) => LEFT + (plotW * i) / n;
    g.font = "12px system-ui, sans-serif";
    g.textBaseline = "middle";
    for (let ch = 0; ch < channels; ch++) {
      const y0 = ch * (ROW + BAND + GAP);
      const values = ex.samples[ch];
      let lo = Math.min(...values), hi = Math.max(...values);
      if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
      g.fillStyle = c.muted;
      g.fillText(ex.channels[ch], 4, y0 + ROW / 2);
      g.strokeStyle = c.line;
      g.lineWidth = 1;
      g.strokeRect(LEFT + 0.5, y0 + 0.5, plotW - 1, ROW + BAND - 1);
      for (let s = 0; s + 1 < edges.length; s++) {
        const v = cells[s][ch];
        g.fillStyle = mix(c.zero, v >= 0 ? c.pos : c.neg, Math.min(1, Math.abs(v) / top));
        g.fillRect(xEdge(edges[s]), y0 + ROW, xEdge(edges[s + 1]) - xEdge(edges[s]), BAND);
      }
      g.strokeStyle = c.ink;
      g.lineWidth = 1.5;
      g.beginPath();
      values.forEach((v, i) => {
        const y = y0 + 3 + (ROW - 6) * (1 - (v - lo) / (hi - lo));
        if (i === 0) g.moveTo(x(i), y); else g.lineTo(x(i), y);
      });
      g.stroke();
    }
    canvas.dataset.drawn = String(Number(canvas.dataset.drawn || 0) + 1);
  }

  // Fills `box` with the explanation `ex` (an ExplainResponse); `title` is the line above it.
  function render(box, ex, title) {
    const c = colours();
    const top = extent(ex.attribution.cells);
    const head = el("div", { class: "explain-head" });
    head.append(el("strong", {}, title || `Window ${ex.index + 1} of ${ex.windows}`));
    const said = ex.explained === ex.label
      ? `why ${ex.label} (${pct(ex.explained_probability)})`
      : `why ${ex.explained} (${pct(ex.explained_probability)}), not the predicted ${ex.label} (${pct(ex.confidence)})`;
    head.append(el("span", { class: "explain-label" }, said));
    const legend = el("div", { class: "explain-legend" });
    const ramp = el("i", { class: "explain-ramp" });
    ramp.style.background = `linear-gradient(to right, ${mix(c.zero, c.neg, 1)}, ${mix(c.zero, c.zero, 0)}, ${mix(c.zero, c.pos, 1)})`;
    legend.append(
      el("span", {}, `against ${ex.explained}: hiding it raises p by up to ${points(top)}`),
      ramp,
      el("span", {}, `supports ${ex.explained}: hiding it lowers p by up to ${points(top)}`),
    );
    const note = el("div", { class: "explain-note muted" },
      `colour: how much ${ex.explained}'s probability drops when that stretch of the channel is hidden ` +
      "(set to its training mean); the line is the window as the model saw it" + (ex.units ? ` (${ex.units})` : ""));
    const wrap = el("div", { class: "explain-plot" });
    const canvas = el("canvas", { class: "explain-canvas", role: "img",
      "aria-label": `attribution of ${ex.explained} per channel and time segment` });
    wrap.append(canvas);
    const cost = el("div", { class: "explain-cost muted" },
      `occlusion: ${ex.calls} model calls, ${ex.ms.toFixed(1)} ms · ${ex.model_id} (${ex.variant})`);
    box.replaceChildren(head, legend, wrap, note, cost);
    box.hidden = false;
    box._explanation = ex;
    draw(canvas, ex);
  }

  function redrawAll() {
    for (const canvas of document.querySelectorAll("canvas.explain-canvas")) {
      const box = canvas.closest("[data-explain]");
      if (box && box._explanation) draw(canvas, box._explanation);
    }
  }

  const scheme = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  if (scheme && scheme.addEventListener) scheme.addEventListener("change", () => {
    for (const box of document.querySelectorAll("[data-explain]")) {
      if (box._explanation) render(box, box._explanation, box.querySelector(".explain-head strong").textContent);
    }
  });
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(redrawAll, 100); });

  window.EdgeHarExplain = { render };
})();
