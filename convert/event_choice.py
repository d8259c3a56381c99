"""The event rule a bundle ships with, chosen on its validation split for a false-alarm target.

After ``convert`` has written a bundle, the default variant runs through the device's interpreter
over the validation recordings, read **whole** (without ``--event-focus``, so a fall trial is one
stream with its standing and lying, as the device will see it), and the device's own rule is
swept over thresholds and run lengths (:mod:`edge_har.convert.event_eval`). The most sensitive
rule within the target goes into ``bundle.json`` under ``events`` with the figures and the curve it
came from; the daemon applies it unless its config says otherwise. The test split stays untouched
for ``evaluate`` to report on.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path
from typing import Any

from edge_har.core.bundle import BUNDLE_FILE, Bundle
from edge_har.core.recording_layout import atomic_write

__all__ = ["choose_event_rule"]

log = logging.getLogger(__name__)


def choose_event_rule(bundle_dir: str | Path, args: argparse.Namespace, event_class: str) -> dict[str, Any]:
    """Choose, record in ``bundle.json`` and return the ``events`` entry for ``event_class``."""
    from edge_har.convert.datasets import dataset_from_args
    from edge_har.convert.evaluate import (
        EvaluationError,
        bundle_windows_grouped,
        evaluate_model,
        per_hour_events,
        relative_source,
    )
    from edge_har.convert.event_eval import plot_sweep
    from edge_har.core.preprocessing import denormalise

    bundle = Bundle.load(bundle_dir)
    if event_class not in bundle.labels:
        raise EvaluationError(f"--event-class {event_class!r}: not a class of the model ({', '.join(bundle.labels)})")
    whole = copy.copy(args)
    if getattr(whole, "event_focus", None) is not None:
        whole.event_focus, whole.event_rest = "-", None  # the validation trials as the device sees them
    dataset = dataset_from_args(whole)
    x, y, groups, info = bundle_windows_grouped(bundle, dataset, "val")
    model = bundle.load_model(bundle.default_variant, num_threads=1)
    evaluation = evaluate_model(model, x, y, bundle.labels, bundle.default_variant, progress=False)
    before, after = args.impact_span
    events = {
        "positive": event_class,
        "target_per_hour": args.target_false_alarms,
        "refractory_s": args.refractory,
        "before_s": before,
        "after_s": after,
    }
    names = [relative_source(r.source, dataset.root) for r in dataset.recordings]
    report = per_hour_events(
        bundle, denormalise(x, bundle.preprocessing), y, groups, evaluation.probabilities, events, names
    )
    chosen = report["chosen"]
    entry = {
        **chosen["rule"],
        "chosen_on": {
            "split": "val",
            "variant": bundle.default_variant,
            "recordings": info["recordings"],
            "target_false_alarms_per_hour": args.target_false_alarms,
            "match_span_s": [before, after],
            "figures": {k: chosen[k] for k in ("sensitivity", "false_alarms_per_hour", "false_alarms", "detected")}
            | {"event_recordings": chosen["event_recordings"], "other_hours": chosen["other_hours"]}
            | {"delay_s": chosen["delay_s"]},
        },
        "curve": report["curve"],
    }
    path = Path(bundle.root) / BUNDLE_FILE
    doc = json.loads(path.read_text())
    doc.setdefault("events", {})[event_class] = entry
    atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    Bundle.load(bundle.root)  # what was written must load
    plot = plot_sweep(
        report, Path(bundle.root) / "evaluation" / f"events_{event_class}_val.png", f"{event_class} (val)"
    )
    log.info(
        "events: %s fires at p >= %g for %d window(s) (chosen on the validation split: %s of %d event recordings, "
        "%s false alarm(s)/h over %.2f h); curve in %s",
        event_class,
        entry["threshold"],
        entry["k"],
        chosen["detected"],
        chosen["event_recordings"],
        chosen["false_alarms_per_hour"],
        chosen["other_hours"],
        plot,
    )
    return entry
