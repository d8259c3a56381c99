// One colour per activity label on every page (Live, device, Predict).
//
// The colours are picked for the pages' two themes at once: each has a contrast of at least 3:1 on the
// light and on the dark panel (WCAG's minimum for graphics and large text), which leaves a band of
// mid lightness; within it the first 16 are spread as far apart as CIEDE2000 allows (every pair at
// least 12 apart) and at least 20 from UNKNOWN's grey. tests/test_web_palette.py checks all of that.
// A label's colour is its position in the server's label list (GET /api/labels: the loaded models'
// classes in their order, then labels seen in the store), so the same label has the same colour on
// every page and in every browser; a label the list does not hold yet (a new model's class arriving
// live) takes the next free colour.
"use strict";

(function () {
  const PALETTE = [
    "#2563eb", "#d9480f", "#2f9e44", "#ae3ec9", "#d6336c", "#0f8c96", "#a07a00", "#cc7878",
    "#fc48a8", "#607800", "#00846c", "#d87800", "#fc003c", "#9c6030", "#a86090", "#fc0cfc",
    "#909048", "#b45448", "#7848fc", "#d8009c",
  ];
  const UNKNOWN = "#878e99";
  const UNKNOWN_LABELS = new Set(["unknown", ""]);
  const assigned = new Map();

  function setLabels(labels) {
    for (const label of labels) {
      if (!UNKNOWN_LABELS.has(label) && !assigned.has(label)) assigned.set(label, PALETTE[assigned.size % PALETTE.length]);
    }
  }

  function colourFor(label) {
    if (UNKNOWN_LABELS.has(label)) return UNKNOWN;
    if (!assigned.has(label)) setLabels([label]);
    return assigned.get(label);
  }

  async function load(fetchImpl) {
    // The server's list first, so the colours match every other page; without it, labels take colours in order seen.
    try {
      const r = await (fetchImpl || fetch)("/api/labels", { cache: "no-store" });
      if (r.ok) setLabels((await r.json()).labels || []);
    } catch (e) {
      /* the server is away: colours follow the order labels are seen */
    }
  }

  window.EdgeHarPalette = { PALETTE, UNKNOWN, colourFor, setLabels, load };
})();
