"""Event figures of a bundle on a data set: per-recording streams through the device's event rule.

``evaluate`` (and the benchmarks) score windows; for an event class that is not the question. Here
each recording's windows become a stream, in time order, with the probabilities the variant gave
and each window's impact time computed as the device does (the acceleration peak inside the
window, :func:`edge_har.core.events.impact_time`); a recording whose windows are of the event
class holds one event, its impact the strongest peak among those windows. Then
:mod:`edge_har.core.event_metrics` sweeps thresholds and run lengths (k), picks the rule for a
false-alarm target, and the curve is drawn as false alarms per hour against sensitivity.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_har.core.event_metrics import EventFigures, Stream, choose, sweep
from edge_har.core.events import impact_time
from edge_har.core.preprocessing import Preprocessing

__all__ = ["event_streams", "per_hour_report", "plot_sweep"]


def event_streams(
    x_physical: np.ndarray,
    probabilities: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    pre: Preprocessing,
    labels: Sequence[str],
    positive: str,
    names: Sequence[str] | None = None,
) -> list[Stream]:
    """One :class:`Stream` per recording: windows in the order they were cut (``stride`` apart)."""
    positive_index = list(labels).index(positive)
    rate, stride, window = float(pre.sample_rate_hz), int(pre.stride), int(pre.window)
    sample_t = np.arange(window, dtype=np.float64) / rate
    streams: list[Stream] = []
    for g in np.unique(groups):
        member = np.flatnonzero(groups == g)
        starts = np.arange(len(member), dtype=np.float64) * stride / rate
        ends = starts + (window - 1) / rate
        impacts = [impact_time(starts[j] + sample_t, x_physical[i], pre.channels) for j, i in enumerate(member)]
        is_event = bool((y[member] == positive_index).any())
        impact_ts = None
        if is_event:
            hits = [impacts[j] for j, i in enumerate(member) if y[i] == positive_index]
            impact_ts = max(hits, key=lambda pair: pair[0])[1]
        streams.append(
            Stream(
                name=str(names[int(g)]) if names is not None else f"recording {int(g)}",
                probabilities=np.asarray(probabilities[member], dtype=np.float64),
                ts=ends,
                event=positive if is_event else None,
                impact_ts=impact_ts,
                duration_s=float(ends[-1] - starts[0]) + 1.0 / rate if len(member) else 0.0,
                impacts=impacts,
            )
        )
    return streams


def _point(f: EventFigures) -> dict[str, Any]:
    doc = f.to_json()
    return {
        "threshold": doc["rule"]["threshold"],
        "k": doc["rule"]["k"],
        "sensitivity": doc["sensitivity"],
        "false_alarms_per_hour": doc["false_alarms_per_hour"],
        "false_alarms": doc["false_alarms"],
        "delay_median_s": doc["delay_s"]["median"],
    }


def per_hour_report(
    streams: Sequence[Stream],
    positive: str,
    labels: Sequence[str],
    *,
    target_per_hour: float = 1.0,
    refractory_s: float = 30.0,
    before_s: float = 2.0,
    after_s: float = 10.0,
    ks: Sequence[int] = (1, 2, 3, 4),
) -> dict[str, Any]:
    """The sweep, the rule chosen for ``target_per_hour`` with its full figures, and the curve's points."""
    curve = sweep(streams, positive, labels, ks=ks, refractory_s=refractory_s, before_s=before_s, after_s=after_s)
    chosen = choose(curve, target_per_hour)
    return {
        "event": positive,
        "target_false_alarms_per_hour": target_per_hour,
        "match_span_s": [before_s, after_s],
        "event_recordings": chosen.event_recordings,
        "other_hours": round(chosen.other_hours, 4),
        "chosen": chosen.to_json(),
        "curve": [_point(f) for f in curve],
    }


def plot_sweep(report: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """False alarms per hour (x, log) against sensitivity (y), one line per k, the chosen rule marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    points = report["curve"]
    floor = 0.5 / max(report["other_hours"], 1e-9)  # zero false alarms drawn at half of one per the hours seen
    for k in sorted({p["k"] for p in points}):
        row = sorted((p for p in points if p["k"] == k), key=lambda p: p["threshold"])
        xs = [max(p["false_alarms_per_hour"] or 0.0, floor) for p in row]
        ys = [100 * (p["sensitivity"] or 0.0) for p in row]
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, label=f"k = {k}")
    chosen = report["chosen"]
    if chosen["sensitivity"] is not None:
        ax.scatter(
            [max(chosen["false_alarms_per_hour"] or 0.0, floor)],
            [100 * chosen["sensitivity"]],
            s=120,
            facecolors="none",
            edgecolors="black",
            label=f"chosen: p >= {chosen['rule']['threshold']:g}, k = {chosen['rule']['k']}",
        )
    ax.axvline(report["target_false_alarms_per_hour"], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(f"false alarms per hour of other data ({report['other_hours']:.2f} h; 0 drawn at {floor:.2g})")
    ax.set_ylabel(f"{report['event']} recordings detected (%)")
    ax.set_ylim(-2, 102)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or f"{report['event']}: sensitivity against false alarms")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _figures_line(c: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"

    delay = c["delay_s"]
    return (
        f"p >= {c['rule']['threshold']:g} for k = {c['rule']['k']} window(s), refractory {c['rule']['refractory_s']:g} s: "
        f"{c['detected']}/{c['event_recordings']} recordings detected ({pct(c['sensitivity'])}), "
        f"{c['false_alarms']} false alarm(s) in {c['other_hours']:.2f} h of other data "
        f"({c['false_alarms_per_hour'] if c['false_alarms_per_hour'] is not None else '-'}/h), "
        f"delay from the impact median {delay['median']} s, p90 {delay['p90']} s"
        + (f"; missed: {', '.join(c['missed'][:5])}" if c["missed"] else "")
        + (f"; falsely flagged: {', '.join(c['falsely_flagged'][:5])}" if c["falsely_flagged"] else "")
    )


def format_per_hour(report: dict[str, Any]) -> str:
    """The bundle's own rule (when it ships one) and the best rule for the target on this data."""
    lines = []
    if report.get("bundle_rule"):
        lines.append(f"events ({report['event']!r}, the bundle's rule): {_figures_line(report['bundle_rule'])}")
    lines.append(
        f"events ({report['event']!r}, best on this data for <= {report['target_false_alarms_per_hour']:g} "
        f"false alarm(s)/h): {_figures_line(report['chosen'])}"
    )
    return "\n".join(lines)
