// One colour per activity label on every page (Live, device, Predict).
//
// Colours come from Kelly's list of maximum-contrast colours (grey, white and black left out), so the
// first 16 stay apart from each other and from UNKNOWN's grey. A label's colour is its position in the
// server's label list (GET /api/labels: the loaded models' classes in their order, then labels seen in
// the store), so the same label has the same colour on every page and in every browser; a label the
// list does not hold yet (a new model's class arriving live) takes the next free colour.
"use strict";

(function () {
  const PALETTE = [
    "#0067a5", "#f38400", "#008856", "#be0032", "#875692", "#f3c300", "#a1caf1", "#e68fac",
    "#882d17", "#8db600", "#604e97", "#f99379", "#dcd300", "#b3446c", "#654522", "#e25822",
    "#2b3d26", "#f6a600", "#c2b280",
  ];
  const UNKNOWN = "#9ca3af";
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
