"""Streaming accuracy: what a device would publish over time, scored against the ground truth.

Whole labelled test recordings are replayed back to back, in chunks, through
the daemon's own code between its source and its publisher:
``edge_har.device.runtime.Windowing`` (the shared ``StreamPreprocessor``: scaling,
resampling, windowing, normalisation; restarted at every recording, as the
replay source marks each one a new segment) and ``Runtime.predict`` (the
interpreter and the ``Smoother``). Only MQTT is left out; ``bench e2e`` covers
that.

Scored per mode (no smoothing, the daemon's default smoothing, or the user's):

* per window: the published label of each window against the label of the
  recording it came from (``unknown`` counts as wrong), and the rate of
  ``unknown``;
* over time: a dashboard shows the last published label until the next one.
  At every instant from the first prediction to the end of the stream, is the
  label on display the activity going on? This also charges the lag after a
  change of activity: the previous recording's last label stays up until the
  first full window of the new one has been inferred (and smoothed);
* switch delay: after each change of activity, the seconds until the label on
  display first equals the new activity.

The no-smoothing mode should score exactly what the offline evaluation of the
same variant scores per window: the streaming path makes the same windows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_har.benchmarks import report

log = logging.getLogger(__name__)

CHUNK_SAMPLES = 256  # the replay source's as-fast-as-possible chunk (edge_har.device.sources.replay.FAST_CHUNK)


@dataclass(frozen=True)
class SmoothingMode:
    name: str
    method: str
    window: int
    threshold: float


def default_modes(
    method: str | None = None, window: int | None = None, threshold: float | None = None
) -> list[SmoothingMode]:
    """No smoothing, and the daemon's default smoothing (edge_har.device.config.SmoothingConfig), with overrides."""
    from edge_har.device.config import SmoothingConfig

    d = SmoothingConfig()
    smoothed = SmoothingMode(
        "smoothed", method or d.method, window or d.window, d.threshold if threshold is None else threshold
    )
    return [SmoothingMode("raw", "mean_prob", 1, 0.0), smoothed]


@dataclass
class Published:
    """One prediction as a subscriber would see it, with the truth and the time on the stream's clock."""

    t: float  # stream seconds of the window's last sample
    label: str
    truth: str
    recording: int


def replay(
    runtime: Any, recordings: Sequence[Any], rate_hz: float, chunk: int = CHUNK_SAMPLES
) -> tuple[list[Published], list[tuple[float, float, str]]]:
    """Push recordings back to back through Windowing + Runtime.predict.

    Returns the published predictions and the stream's timeline as
    (start s, end s, label) per recording. A recording's sample k sits at
    ``offset + k / rate``; the next recording starts one sample period after
    the previous one's last sample.
    """
    from edge_har.device.sources.base import Chunk

    published: list[Published] = []
    timeline: list[tuple[float, float, str]] = []
    offset = 0.0
    for index, rec in enumerate(recordings):
        rate = float(rec.sample_rate_hz or rate_hz)
        windowing = runtime.windowing(rate)
        samples = np.asarray(rec.samples, dtype=np.float32)
        for start in range(0, len(samples), chunk):
            part = samples[start : start + chunk]
            last_t = offset + (start + len(part) - 1) / rate
            c = Chunk(part, time.perf_counter(), last_t, label=rec.label, segment_start=start == 0)
            for window in windowing.push(c):
                p = runtime.predict(window)
                published.append(Published(window.end_ts, p.label, rec.label, index))
        end = offset + len(samples) / rate
        timeline.append((offset, end, rec.label))
        offset = end
    return published, timeline


def score(
    published: Sequence[Published],
    timeline: Sequence[tuple[float, float, str]],
    labels: Sequence[str],
    unknown_label: str,
) -> dict[str, Any]:
    """Per-window and time-weighted accuracy, unknown rate, per-class F1 and switch delays."""
    from edge_har.core.metrics import per_class_scores

    n = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    out: dict[str, Any] = {"windows": len(published)}
    if not published:
        return {**out, "window_accuracy": None, "time_accuracy": None}
    truth = np.array([index[p.truth] for p in published])
    pred = np.array([index.get(p.label, n) for p in published])  # n: unknown (or a label the model lacks)
    correct = pred == truth
    known = pred < n
    cm = np.zeros((n + 1, n + 1), dtype=np.int64)
    np.add.at(cm, (truth, pred), 1)
    scores = per_class_scores(cm)
    scored = (cm[:n].sum(axis=1) + cm[:, :n].sum(axis=0)[:n]) > 0
    out.update(
        {
            "window_accuracy": float(correct.mean()),
            "window_accuracy_known": float(correct[known].mean()) if known.any() else None,
            "unknown_rate": float((~known).mean()),
            "macro_f1": float(scores["f1"][:n][scored].mean()) if scored.any() else None,
            "per_class_f1": {label: float(scores["f1"][i]) for i, label in enumerate(labels)},
        }
    )
    # Over time: the displayed label is the last published one; score every instant from the first prediction.
    times = np.array([p.t for p in published])
    order = np.argsort(times, kind="stable")
    times, shown = times[order], pred[order]
    span_start = float(times[0])
    right = wrong = unknown = 0.0
    for start, end, label in timeline:
        lo, hi = max(start, span_start), end
        if hi <= lo:
            continue
        # breakpoints: predictions inside [lo, hi), each shows from its time on
        inside = np.flatnonzero((times > lo) & (times < hi))
        edges = np.concatenate([[lo], times[inside], [hi]])
        first = np.searchsorted(times, lo, side="right") - 1  # the prediction on display at lo
        values = np.concatenate([[shown[first]], shown[inside]])
        durations = np.diff(edges)
        truth_i = index[label]
        right += float(durations[values == truth_i].sum())
        unknown += float(durations[values == n].sum())
        wrong += float(durations[values != truth_i].sum())
    total = right + wrong
    out["time_accuracy"] = right / total if total > 0 else None
    out["time_unknown_rate"] = unknown / total if total > 0 else None
    out["seconds_scored"] = total
    out.update(_switch_delays(times, shown, timeline, index))
    return out


def _switch_delays(
    times: np.ndarray, shown: np.ndarray, timeline: Sequence[tuple[float, float, str]], index: dict[str, int]
) -> dict[str, Any]:
    delays: list[float] = []
    never = 0
    switches = 0
    for (start, end, label), (_, _, previous) in zip(timeline[1:], timeline[:-1]):
        if label == previous:
            continue
        switches += 1
        inside = np.flatnonzero((times >= start) & (times < end) & (shown == index[label]))
        if len(inside):
            delays.append(float(times[inside[0]] - start))
        else:
            never += 1
    arr = np.asarray(delays)
    return {
        "switches": switches,
        "switch_delay_p50_s": float(np.median(arr)) if arr.size else None,
        "switch_delay_p90_s": float(np.percentile(arr, 90)) if arr.size else None,
        "switches_never_correct": never,
    }


def run_streaming(
    bundle: Any,
    dataset: Any,
    test_indices: np.ndarray,
    settings: Any,
    progress: bool = True,
    modes: Sequence[SmoothingMode] | None = None,
) -> dict[str, Any]:
    """Score each smoothing mode on the test recordings, replayed through the daemon's runtime."""
    from edge_har.device.runtime import Runtime

    variant = getattr(settings, "stream_variant", None) or bundle.default_variant
    modes = list(
        modes
        or default_modes(
            getattr(settings, "smoothing_method", None),
            getattr(settings, "smoothing_window", None),
            getattr(settings, "threshold", None),
        )
    )
    recordings = [dataset.recordings[int(i)] for i in test_indices]
    bundle_labels = set(bundle.labels)
    unknown = [r.label for r in recordings if r.label not in bundle_labels]
    if unknown:
        raise ValueError(
            f"{dataset.root}: test recordings labelled {sorted(set(unknown))}, which the model does not know"
        )
    out: dict[str, Any] = {
        "status": "ok",
        "variant": variant,
        "recordings": len(recordings),
        "seconds_of_data": float(
            sum(len(r.samples) / float(r.sample_rate_hz or dataset.sample_rate_hz) for r in recordings)
        ),
        "path": "edge_har.device.runtime: Windowing (StreamPreprocessor) + Runtime.predict (interpreter + Smoother), "
        f"chunks of {CHUNK_SAMPLES} samples, recordings back to back, each a new segment",
        "modes": [],
    }
    for mode in modes:
        started = time.perf_counter()
        try:
            runtime = Runtime.load(
                bundle.root,
                variant,
                backend=getattr(settings, "runtime", "auto"),
                num_threads=1,
                smoothing=mode.method,
                smoothing_window=mode.window,
                threshold=mode.threshold,
            )
            published, timeline = replay(runtime, recordings, float(dataset.sample_rate_hz))
            row = {
                "name": mode.name,
                "status": "ok",
                "method": mode.method,
                "smoothing_window": mode.window,
                "threshold": mode.threshold,
            }
            row.update(score(published, timeline, bundle.labels, runtime.smoother.unknown_label))
        except Exception as exc:
            log.warning("streaming mode %s failed: %s: %s", mode.name, type(exc).__name__, exc)
            log.debug("streaming mode %s failed", mode.name, exc_info=True)
            row = {"name": mode.name, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
        row["seconds"] = time.perf_counter() - started
        out["modes"].append(row)
    return out


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _s(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_streaming(streaming: dict[str, Any]) -> str:
    if streaming.get("status") != "ok":
        return f"Streaming accuracy: {streaming.get('status')}: {streaming.get('error')}"
    headers = [
        "mode",
        "smoothing",
        "windows",
        "per-window acc",
        "acc (known only)",
        "unknown",
        "time-weighted acc",
        "macro-F1",
        "switch delay p50 s",
        "p90 s",
        "never right",
    ]
    table = []
    for m in streaming["modes"]:
        if m.get("status") != "ok":
            table.append([m["name"], f"error: {m.get('error')}"[:60]] + ["-"] * 9)
            continue
        smoothing = "none" if m["smoothing_window"] == 1 else f"{m['method']} over {m['smoothing_window']}"
        if m.get("threshold"):
            smoothing += f", threshold {m['threshold']:g}"
        table.append(
            [
                m["name"],
                smoothing,
                str(m["windows"]),
                _pct(m.get("window_accuracy")),
                _pct(m.get("window_accuracy_known")),
                _pct(m.get("unknown_rate")),
                _pct(m.get("time_accuracy")),
                "-" if m.get("macro_f1") is None else f"{m['macro_f1']:.4f}",
                _s(m.get("switch_delay_p50_s")),
                _s(m.get("switch_delay_p90_s")),
                f"{m.get('switches_never_correct')}/{m.get('switches')}",
            ]
        )
    title = (
        f"Streaming accuracy: variant {streaming['variant']}, {streaming['recordings']} test recordings "
        f"({streaming['seconds_of_data']:.0f} s) replayed back to back through edge_har.device.runtime"
    )
    return report.format_table(headers, table, title=title)
