"""The JSON payloads edge-har publishes, built and checked in one place.

Subscribers (Home Assistant templates, Node-RED flows, ``edge-har subscribe``, cloud rules)
depend on these field names, so they are versioned: a change that breaks a subscriber bumps
``schema_version``. Adding a field does not.

``prediction`` (topic ``<prefix>/<device_id>/prediction``, QoS 1, not retained)::

    {"schema_version": 1, "device_id": "pi-kitchen", "model_id": "hmp-cnn-lstm-20261121-1a2b3c4d",
     "variant": "int8", "run_id": "3f9c2a71b0de", "seq": 4211, "window_end_ts": 1763731200.52, "label": "Walk",
     "confidence": 0.913, "probabilities": {"Walk": 0.913, "Climb_stairs": 0.061, ...},
     "inference_ms": 0.82, "e2e_ms": 3.4}

``stats`` (topic ``<prefix>/<device_id>/stats``, every ``stats_interval_s``, QoS 0)::

    {"schema_version": 1, "device_id": "pi-kitchen", "model_id": "...", "run_id": "3f9c2a71b0de",
     "ts": 1763731230.0,
     "uptime_s": 3600.2, "windows_total": 112000, "windows_per_s": 31.1,
     "inference_ms": {"p50": 0.8, "p90": 1.1, "p99": 2.3, "max": 7.9},
     "e2e_ms": {"p50": 3.1, "p90": 4.0, "p99": 6.2, "max": 15.0},
     "samples_total": 3584000, "samples_dropped": {"nan": 2, "columns": 1},
     "queue_depth": 0, "rss_mb": 61.5,
     "mqtt": {"connected": true, "queued": 0, "dropped_offline": 0, "published": 111990, ...}}

Run id: every prediction and stats payload carries ``run_id``, a short random id (12 hex digits,
:func:`new_run_id`) made once per daemon run. ``seq`` restarts at 0 when the daemon restarts
(systemd after a crash, a SIGKILL, a reboot), so ``seq`` alone cannot tell two runs apart: a
subscriber keys on ``(device_id, run_id, seq)``. A new ``run_id`` for a device means it restarted;
the same ``(device_id, run_id, seq)`` twice is a QoS 1 re-delivery. Payloads from devices older than
the run id have no ``run_id``; they still validate (adding a field does not bump the schema), and a
subscriber falls back to ``(device_id, seq, window_end_ts)`` for them.

``status`` (topic ``<prefix>/<device_id>/status``, retained) is plain text, not JSON, so Home
Assistant availability and simple scripts need no parsing: ``online`` while running (MQTT 5: with a
Message Expiry Interval, refreshed every stats interval), ``stopped`` after a clean stop, ``offline``
(the Last Will) when the device died or lost its link. How a consumer decides that an ``online``
device is really gone (stale) is :mod:`edge_har.mqtt.liveness`; stats carry ``stats_interval_s``
for it.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from typing import Any, Mapping, Optional

__all__ = [
    "PREDICTION_FIELDS",
    "PREDICTION_SCHEMA_VERSION",
    "STATS_FIELDS",
    "STATS_SCHEMA_VERSION",
    "STATUS_OFFLINE",
    "STATUS_ONLINE",
    "STATUS_STOPPED",
    "STATUSES",
    "UNKNOWN_LABEL",
    "encode",
    "examples",
    "new_run_id",
    "prediction_payload",
    "stats_payload",
    "validate_prediction",
]

PREDICTION_SCHEMA_VERSION = 1
STATS_SCHEMA_VERSION = 1
STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"  # the Last Will: crashed, powered off, network lost
STATUS_STOPPED = "stopped"  # a clean stop (Frigate's word for it)
STATUSES = (STATUS_ONLINE, STATUS_STOPPED, STATUS_OFFLINE)
# The label published when the smoothed confidence is under the configured threshold.
UNKNOWN_LABEL = "unknown"

# A run id: what new_run_id makes; validation accepts any short id of letters, digits, '-' and '_'
# so other publishers (a bench's simulated devices, a future firmware) can use their own scheme.
RUN_ID_LENGTH = 12
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Field -> meaning. The README's payload table and the tests are generated from / checked against these.
PREDICTION_FIELDS: dict[str, str] = {
    "schema_version": f"int, {PREDICTION_SCHEMA_VERSION}; bumped only for changes that break subscribers",
    "device_id": "str, the publishing device (also the second topic level)",
    "model_id": "str, bundle.json model_id of the model that made the prediction",
    "variant": "str or null, bundle variant that ran (float32, dynamic_range, int8, ...)",
    "run_id": "str, 12 hex digits made once per daemon run; a new one means the device restarted "
    "(absent from devices older than the run id)",
    "seq": "int >= 0, per-run sequence number of the window; restarts at 0 when the daemon restarts (with a new "
    "run_id). QoS 1 is at-least-once, so a subscriber may see a seq twice after a reconnect: de-duplicate on "
    "(device_id, run_id, seq)",
    "window_end_ts": "float, Unix time (seconds, UTC) of the last sample in the window",
    "label": f"str, the (smoothed) activity, or '{UNKNOWN_LABEL}' under the confidence threshold",
    "confidence": "float in [0, 1], the probability behind label (after smoothing)",
    "probabilities": "object label -> float in [0, 1], per-class probabilities (after smoothing), every label of the model",
    "inference_ms": "float >= 0, time spent in the interpreter for this window",
    "e2e_ms": "float >= 0, from the window's last sample arriving to the prediction being handed to MQTT",
    "extra": "object, optional, source-specific additions (e.g. the camera id); absent when empty",
}

STATS_FIELDS: dict[str, str] = {
    "schema_version": f"int, {STATS_SCHEMA_VERSION}",
    "device_id": "str, the publishing device",
    "model_id": "str, the model running",
    "run_id": "str, the daemon run's id, the same as in its predictions",
    "ts": "float, Unix time the stats were taken",
    "stats_interval_s": "float, seconds between stats messages: a consumer calls an online device stale after "
    "3 intervals without stats (edge_har.mqtt.liveness)",
    "uptime_s": "float, seconds since the daemon started",
    "windows_total": "int, windows inferred since start",
    "windows_per_s": "float, windows inferred per second over the last interval",
    "inference_ms": "object p50/p90/p99/max over the last interval (absent before the first window)",
    "e2e_ms": "object p50/p90/p99/max over the last interval (absent before the first window)",
    "samples_total": "int, samples read from the source since start",
    "samples_dropped": "object reason -> count of malformed samples dropped since start (or an int total)",
    "queue_depth": "int, windows waiting for inference",
    "rss_mb": "float or null, resident memory of the daemon in MiB",
    "mqtt": "object, the publisher's counters: connected, queued, dropped_offline, dropped_unconfirmed "
    "(dropped after the link died unacknowledged: may have arrived), published, reconnects, "
    "last_error (the current problem, null once connected again) with last_error_ts, last_resolved_error, ...",
    "extra": "object, optional additions",
}

_LATENCY_DIGITS = 3
_PROBABILITY_DIGITS = 6


def new_run_id() -> str:
    """A fresh run id: 12 random hex digits (48 bits; two runs of one device collide about once in 10^14)."""
    return uuid.uuid4().hex[:RUN_ID_LENGTH]


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON. NaN/inf are refused (they are not JSON and break subscribers)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _head(device_id: str, model_id: str, variant: Optional[str], run_id: Optional[str]) -> dict[str, Any]:
    """The fields every device message starts with: schema, device, model, variant, and the run when known."""
    head: dict[str, Any] = {
        "schema_version": PREDICTION_SCHEMA_VERSION,
        "device_id": str(device_id),
        "model_id": str(model_id),
        "variant": None if variant is None else str(variant),
    }
    if run_id is not None:
        head["run_id"] = str(run_id)
    return head


def event_payload(
    *,
    device_id: str,
    model_id: str,
    event: Mapping[str, Any],
    variant: Optional[str] = None,
    run_id: Optional[str] = None,
) -> dict[str, Any]:
    """An event (``Event.to_json()``: event_type, impact_ts, detected_ts, confidence, first_seq, last_seq,
    windows) as published on ``<prefix>/<device>/event``, with the device, model and run it came from.

    ``event_type`` is the key Home Assistant's MQTT event entity reads; the rest become the
    event's attributes there.
    """
    payload = _head(device_id, model_id, variant, run_id) | dict(event)
    for key in ("impact_ts", "detected_ts", "confidence"):
        if not math.isfinite(float(payload[key])):
            raise ValueError(f"event {key} {payload[key]!r} is not a finite number")
    return payload


def prediction_payload(
    *,
    device_id: str,
    model_id: str,
    seq: int,
    window_end_ts: float,
    label: str,
    confidence: float,
    probabilities: Mapping[str, float],
    inference_ms: float,
    e2e_ms: float,
    variant: Optional[str] = None,
    extra: Optional[Mapping[str, Any]] = None,
    run_id: Optional[str] = None,
) -> dict[str, Any]:
    """Build a prediction payload (see module docstring and PREDICTION_FIELDS).

    ``run_id`` is normally the publisher's (``Publisher.run_id``); when it is None the field is left
    out here and :meth:`Publisher.publish_prediction` adds its own, so every published payload has one.

    Numbers are converted to plain Python types (numpy scalars are not JSON) and rounded
    (probabilities to 6 digits, latencies to 3) to keep messages small. Raises ValueError naming
    the field when a value would produce an invalid payload, because a bad payload is a bug in the
    caller that should surface in tests, not at a subscriber.
    """
    payload = _head(device_id, model_id, variant, run_id)
    payload |= {
        "seq": int(seq),
        "window_end_ts": float(window_end_ts),
        "label": str(label),
        "confidence": round(float(confidence), _PROBABILITY_DIGITS),
        "probabilities": {str(k): round(float(v), _PROBABILITY_DIGITS) for k, v in probabilities.items()},
        "inference_ms": round(float(inference_ms), _LATENCY_DIGITS),
        "e2e_ms": round(float(e2e_ms), _LATENCY_DIGITS),
    }
    if extra:
        payload["extra"] = dict(extra)
    problems = validate_prediction(payload)
    if problems:
        raise ValueError("invalid prediction payload: " + "; ".join(problems))
    return payload


def stats_payload(
    *,
    device_id: str,
    model_id: str,
    uptime_s: float,
    windows_total: int,
    windows_per_s: float,
    inference_ms: Optional[Mapping[str, float]] = None,
    e2e_ms: Optional[Mapping[str, float]] = None,
    samples_total: int = 0,
    samples_dropped: Mapping[str, int] | int = 0,
    queue_depth: int = 0,
    rss_mb: Optional[float] = None,
    mqtt: Optional[Mapping[str, Any]] = None,
    ts: Optional[float] = None,
    extra: Optional[Mapping[str, Any]] = None,
    run_id: Optional[str] = None,
    stats_interval_s: Optional[float] = None,
) -> dict[str, Any]:
    """Build a stats payload (see STATS_FIELDS). ``mqtt`` is normally ``Publisher.counters()``;
    :meth:`Publisher.publish_stats` fills it in when left out, and ``run_id`` and ``stats_interval_s``
    (its ``mqtt.stats_interval_s``) likewise."""
    payload: dict[str, Any] = {
        "schema_version": STATS_SCHEMA_VERSION,
        "device_id": str(device_id),
        "model_id": str(model_id),
    }
    if run_id is not None:
        payload["run_id"] = str(run_id)
    payload["ts"] = float(time.time() if ts is None else ts)
    if stats_interval_s is not None:
        payload["stats_interval_s"] = float(stats_interval_s)
    payload |= {
        "uptime_s": round(float(uptime_s), 3),
        "windows_total": int(windows_total),
        "windows_per_s": round(float(windows_per_s), 3),
    }
    for name, summary in (("inference_ms", inference_ms), ("e2e_ms", e2e_ms)):
        if summary:
            payload[name] = {str(k): _finite_or_none(v, _LATENCY_DIGITS) for k, v in summary.items()}
    payload["samples_total"] = int(samples_total)
    if isinstance(samples_dropped, Mapping):
        payload["samples_dropped"] = {str(k): int(v) for k, v in samples_dropped.items()}
    else:
        payload["samples_dropped"] = int(samples_dropped)
    payload["queue_depth"] = int(queue_depth)
    payload["rss_mb"] = None if rss_mb is None else round(float(rss_mb), 2)
    if mqtt is not None:
        payload["mqtt"] = dict(mqtt)
    if extra:
        payload["extra"] = dict(extra)
    return payload


def _finite_or_none(value: Any, digits: int) -> Optional[float]:
    number = float(value)
    return round(number, digits) if math.isfinite(number) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Absent in a valid payload: extra when empty; run_id from devices older than it (see the module docstring).
_OPTIONAL_PREDICTION_FIELDS = ("extra", "run_id")


def validate_prediction(payload: Any) -> list[str]:
    """Problems with a prediction payload, one line per field; empty when it follows schema 1.

    ``run_id`` may be absent (a device older than it), but when present must be a short id."""
    if not isinstance(payload, Mapping):
        return [f"payload must be a JSON object, got {type(payload).__name__}"]
    problems: list[str] = []
    allowed = set(PREDICTION_FIELDS)
    for key in payload:
        if key not in allowed:
            problems.append(
                f"{key}: unknown field (schema {PREDICTION_SCHEMA_VERSION} has {', '.join(PREDICTION_FIELDS)})"
            )
    required = [k for k in PREDICTION_FIELDS if k not in _OPTIONAL_PREDICTION_FIELDS]
    for key in required:
        if key not in payload:
            problems.append(f"{key}: missing")
    if problems and any(p.endswith(": missing") for p in problems):
        return problems

    if payload["schema_version"] != PREDICTION_SCHEMA_VERSION:
        problems.append(f"schema_version: {payload['schema_version']!r}, expected {PREDICTION_SCHEMA_VERSION}")
    for key in ("device_id", "model_id", "label"):
        if not isinstance(payload[key], str) or not payload[key]:
            problems.append(f"{key}: must be a non-empty string, got {payload[key]!r}")
    if "run_id" in payload and not (isinstance(payload["run_id"], str) and _RUN_ID.match(payload["run_id"])):
        problems.append(f"run_id: must be 1-64 letters, digits, '-' or '_', got {payload['run_id']!r}")
    if payload["variant"] is not None and not isinstance(payload["variant"], str):
        problems.append(f"variant: must be a string or null, got {payload['variant']!r}")
    seq = payload["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        problems.append(f"seq: must be an integer >= 0, got {seq!r}")
    if not _is_number(payload["window_end_ts"]) or payload["window_end_ts"] < 0:
        problems.append(f"window_end_ts: must be a Unix time in seconds, got {payload['window_end_ts']!r}")
    confidence = payload["confidence"]
    if not _is_number(confidence) or not 0.0 <= confidence <= 1.0:
        problems.append(f"confidence: must be a number in [0, 1], got {confidence!r}")
    probabilities = payload["probabilities"]
    if not isinstance(probabilities, Mapping) or not probabilities:
        problems.append(f"probabilities: must be a non-empty object label -> probability, got {probabilities!r}")
    else:
        for name, value in probabilities.items():
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                problems.append(f"probabilities.{name}: must be a number in [0, 1], got {value!r}")
        label = payload["label"]
        if isinstance(label, str) and label != UNKNOWN_LABEL and label not in probabilities:
            problems.append(f"label: {label!r} is neither one of the probabilities' labels nor '{UNKNOWN_LABEL}'")
    for key in ("inference_ms", "e2e_ms"):
        if not _is_number(payload[key]) or payload[key] < 0:
            problems.append(f"{key}: must be a number of milliseconds >= 0, got {payload[key]!r}")
    if "extra" in payload and not isinstance(payload["extra"], Mapping):
        problems.append(f"extra: must be an object, got {payload['extra']!r}")
    return problems


def examples(device_id: str = "pi-kitchen") -> dict[str, Any]:
    """One realistic payload per topic, built by the functions above: for the README and docs,
    so the documented examples cannot drift from what the daemon sends."""
    labels = ["Walk", "Climb_stairs", "Sit_down", "Drink_glass"]
    probabilities = dict(zip(labels, [0.913, 0.061, 0.018, 0.008]))
    prediction = prediction_payload(
        device_id=device_id,
        model_id="hmp-cnn-lstm-20261121-1a2b3c4d",
        variant="int8",
        run_id="3f9c2a71b0de",
        seq=4211,
        window_end_ts=1763731200.52,
        label="Walk",
        confidence=0.913,
        probabilities=probabilities,
        inference_ms=0.82,
        e2e_ms=3.4,
    )
    stats = stats_payload(
        device_id=device_id,
        model_id="hmp-cnn-lstm-20261121-1a2b3c4d",
        run_id="3f9c2a71b0de",
        ts=1763731230.0,
        stats_interval_s=30.0,
        uptime_s=3600.2,
        windows_total=112000,
        windows_per_s=31.1,
        inference_ms={"p50": 0.8, "p90": 1.1, "p99": 2.3, "max": 7.9},
        e2e_ms={"p50": 3.1, "p90": 4.0, "p99": 6.2, "max": 15.0},
        samples_total=3584000,
        samples_dropped={"nan": 2, "columns": 1},
        queue_depth=0,
        rss_mb=61.5,
        mqtt={
            "connected": True,
            "queued": 0,
            "inflight": 1,
            "dropped_offline": 0,
            "dropped_unconfirmed": 0,
            "published": 111990,
            "reconnects": 2,
            "requeued": 3,
            "stats_skipped": 0,
            "refused_by_broker": 0,
            "last_error": None,
            "last_error_ts": None,
            "last_resolved_error": "connection lost: keepalive timeout",
        },
    )
    return {"prediction": prediction, "stats": stats, "status": STATUS_ONLINE}
