"""What the serve ingest accepts from the broker: each field checked against the column it is stored in.

Four kinds of message arrive under ``<prefix>/<device_id>/``: predictions, status words, stats and events
(a fall: :func:`check_event`).

Anyone who may publish under the topic prefix can send anything, so a message is parsed within bounds
(:func:`edge_har.mqtt.bounded_json.parse_message`: size before decoding, nesting before parsing, every
integer within 64 bits, every number finite) and then held to what the store and the API can take:
strings no longer than their column and free of NUL and lone surrogates (PostgreSQL refuses both), a
device id the API accepts (one MQTT topic level, at most 128 characters), times a day summary can
bucket, at most :data:`MAX_CLASSES` probabilities. What fails raises
:class:`~edge_har.mqtt.bounded_json.RejectedMessage` with a short ``reason`` (the key it is counted
under) and a one-line ``detail`` naming the field, so one bad message costs one counter, never the
ingest thread.

The common case takes a fast path (:func:`check_prediction`): orjson parses the bytes and one function
checks a prediction's fields. It accepts only what the reference checks
(:func:`check_prediction_reference`: :func:`~edge_har.mqtt.bounded_json.parse_message` then
:func:`prediction_row`) accept with the same row, and hands everything else to them, so every rejection
keeps its reason and detail: a payload over the size limit, with a ``\\u`` escape (the only way JSON
spells a NUL or a lone surrogate), with a number of 2**63 or more (orjson reads integers beyond 64 bits as
floats, which the reference refuses), with ``extra`` (free nesting) or any key the schema does
not list, or that orjson refuses, is judged by the reference path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from edge_har.mqtt.bounded_json import INT64_MAX, RejectedMessage, decode_text, parse_message
from edge_har.mqtt.payloads import PREDICTION_FIELDS, PREDICTION_SCHEMA_VERSION, UNKNOWN_LABEL, validate_prediction

__all__ = [
    "COLUMN_LENGTHS",
    "DEVICE_ID",
    "KINDS",
    "MAX_CLASSES",
    "MAX_PAYLOAD_BYTES",
    "MAX_STATS_BYTES",
    "MAX_TS",
    "SeqRef",
    "Topic",
    "check_event",
    "check_prediction",
    "check_prediction_reference",
    "check_stats",
    "check_status",
    "parse_topic",
    "seq_ref",
]

# The store's column lengths (edge_har.web.store): SQLite would keep a longer string, PostgreSQL refuses it.
COLUMN_LENGTHS = {"device_id": 128, "label": 128, "model_id": 256, "variant": 64, "run_id": 64}
# The device ids the API serves (edge_har.web.live): one MQTT topic level, at most 128 characters.
DEVICE_ID = re.compile(r"^[^/+#\x00\s]{1,128}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KINDS = ("prediction", "status", "stats", "event")
MAX_PAYLOAD_BYTES = 256 * 1024  # a 1000-class prediction is about 40 KB
MAX_DEPTH = 16  # a real payload nests 3 deep (stats.mqtt, prediction.extra)
MAX_CLASSES = 1000
MAX_STATS_BYTES = 16 * 1024  # a real stats message is about 1.5 KB; the last one per device is stored whole
MAX_STATUS_LEN = 32
# window_end_ts is bucketed in milliseconds as a 64-bit integer by the history query: 1e10 s (the year 2286)
# keeps that far from overflow and is later than any real clock.
MAX_TS = 1e10
_BAD_TEXT = re.compile(r"[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class Topic:
    """``<prefix>/<device_id>/<kind>`` split; ``device_id`` is None when the API would refuse it."""

    device_id: Optional[str]
    kind: str


@dataclass(frozen=True)
class SeqRef:
    """Where a prediction sits in its device's sequence: what the gap books count."""

    device_id: str
    run_id: str
    seq: int


def parse_topic(topic: str, prefix: str) -> Topic:
    """The device and kind of ``topic``; :class:`RejectedMessage` (``topic``) for one ingest does not read."""
    rest = topic[len(prefix) + 1 :] if topic.startswith(prefix + "/") else None
    parts = rest.split("/") if rest is not None else []
    if len(parts) != 2 or parts[1] not in KINDS:
        raise RejectedMessage("topic", f"{_short(topic)}: not {prefix}/<device_id>/{'|'.join(KINDS)}")
    device_id = parts[0] if DEVICE_ID.match(parts[0]) else None
    return Topic(device_id, parts[1])


def _parse_object(payload: bytes, max_bytes: int) -> dict[str, Any]:
    data = parse_message(payload, max_bytes=max_bytes, max_depth=MAX_DEPTH)
    if not isinstance(data, dict):
        raise RejectedMessage("not_json", f"JSON but not an object ({type(data).__name__})")
    return data


def check_prediction(device_id: str, payload: bytes) -> dict[str, Any]:
    """The ``predictions`` row of a prediction message from ``device_id``'s topic, or RejectedMessage.

    The same answer as :func:`check_prediction_reference` for any bytes, about ten times faster on a
    well-formed prediction (see the module doc).
    """
    row = _fast_row(device_id, payload) if _orjson_loads is not None else None
    return row if row is not None else check_prediction_reference(device_id, payload)


def check_prediction_reference(device_id: str, payload: bytes) -> dict[str, Any]:
    """:func:`check_prediction` the long way: the bounded parser, then every field through the schema."""
    data = _parse_object(payload, MAX_PAYLOAD_BYTES)
    return prediction_row(device_id, data)


def _load_orjson() -> Optional[Callable[[bytes], Any]]:
    try:
        import orjson
    except ImportError:  # the reference path alone: correct, slower
        return None
    return orjson.loads


_orjson_loads = _load_orjson()
_REQUIRED = frozenset(k for k in PREDICTION_FIELDS if k not in ("extra", "run_id"))
_FAST_KEYS = _REQUIRED | {"run_id"}
# orjson reads an integer beyond 64 bits as a float, which the reference path refuses: no number this large
# passes here (the fields without a smaller bound are seq, inference_ms and e2e_ms).
_BIG = float(INT64_MAX)


def _fast_row(device_id: str, payload: bytes) -> Optional[dict[str, Any]]:
    """The row of a plainly well-formed prediction; None hands the payload to the reference checks.

    Every test here is one the reference path makes too (the same bounds), so what passes is what it
    would pass; strings need no NUL or surrogate test, since orjson refuses raw control characters and
    surrogates and a payload with a ``\\u`` escape never gets here.
    """
    if len(payload) > MAX_PAYLOAD_BYTES or b"\\u" in payload:
        return None
    try:
        data = _orjson_loads(payload)  # type: ignore[misc]
    except ValueError:  # orjson.JSONDecodeError: the reference path says why
        return None
    if type(data) is not dict or not (_REQUIRED <= data.keys() <= _FAST_KEYS):
        return None
    label, model_id, variant = data["label"], data["model_id"], data["variant"]
    seq, ts, confidence = data["seq"], data["window_end_ts"], data["confidence"]
    inference_ms, e2e_ms, probabilities = data["inference_ms"], data["e2e_ms"], data["probabilities"]
    run_id = data.get("run_id", "")
    if (
        data["schema_version"] != PREDICTION_SCHEMA_VERSION
        or not device_id
        or data["device_id"] != device_id
        or type(label) is not str
        or not 0 < len(label) <= COLUMN_LENGTHS["label"]
        or type(model_id) is not str
        or not 0 < len(model_id) <= COLUMN_LENGTHS["model_id"]
        or not (variant is None or (type(variant) is str and len(variant) <= COLUMN_LENGTHS["variant"]))
        or not ("run_id" not in data or (type(run_id) is str and _RUN_ID.match(run_id)))
        or type(seq) is not int
        or not 0 <= seq < _BIG
        or type(ts) not in _NUMBER
        or not 0 <= ts <= MAX_TS
        or type(confidence) not in _NUMBER
        or not 0 <= confidence <= 1
        or type(inference_ms) not in _NUMBER
        or not 0 <= inference_ms < _BIG
        or type(e2e_ms) not in _NUMBER
        or not 0 <= e2e_ms < _BIG
        or type(probabilities) is not dict
        or not 0 < len(probabilities) <= MAX_CLASSES
        or (label != UNKNOWN_LABEL and label not in probabilities)
    ):
        return None
    label_len = COLUMN_LENGTHS["label"]
    for name, value in probabilities.items():
        if len(name) > label_len or type(value) not in _NUMBER or not 0 <= value <= 1:
            return None
    return {
        "device_id": device_id,
        "run_id": run_id,
        "seq": seq,
        "ts": float(ts),
        "label": label,
        "confidence": float(confidence),
        "probabilities": {k: float(v) for k, v in probabilities.items()},
        "model_id": model_id,
        "variant": variant,
        "inference_ms": float(inference_ms),
    }


_NUMBER = (int, float)  # exact types: a bool is no number here, as in the schema


def prediction_row(device_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The row of an already parsed prediction (``received_at`` left to the caller), or RejectedMessage."""
    problems = validate_prediction(data)
    if problems:
        raise RejectedMessage("bad_field", "; ".join(problems[:3])[:300])
    if data["device_id"] != device_id:
        raise RejectedMessage("bad_device_id", f"device_id {_short(data['device_id'])!r} is not the topic's")
    run_id = data.get("run_id") or ""
    for key, value in (
        ("label", data["label"]),
        ("model_id", data["model_id"]),
        ("variant", data.get("variant")),
        ("run_id", run_id),
    ):
        _text(key, value, COLUMN_LENGTHS[key])
    seq = data["seq"]
    if not 0 <= seq <= INT64_MAX:
        raise RejectedMessage("bad_field", f"seq: {seq} does not fit a 64-bit integer")
    ts = float(data["window_end_ts"])
    if not 0.0 <= ts <= MAX_TS:
        raise RejectedMessage("bad_field", f"window_end_ts: {ts!r} is not a Unix time before {MAX_TS:g}")
    probabilities = data["probabilities"]
    if len(probabilities) > MAX_CLASSES:
        raise RejectedMessage("bad_field", f"probabilities: {len(probabilities)} classes (at most {MAX_CLASSES})")
    for name in probabilities:
        _text("probabilities key", name, COLUMN_LENGTHS["label"])
    return {
        "device_id": device_id,
        "run_id": run_id,
        "seq": int(seq),
        "ts": ts,
        "label": data["label"],
        "confidence": float(data["confidence"]),
        "probabilities": {str(k): float(v) for k, v in probabilities.items()},
        "model_id": data["model_id"],
        "variant": data.get("variant"),
        "inference_ms": float(data["inference_ms"]),
    }


def seq_ref(device_id: str, payload: bytes) -> Optional[SeqRef]:
    """The device, run and seq of a REJECTED prediction where they are readable and storable, else None.

    A rejected prediction still arrived: the gap books count its seq as accounted for (it is in
    ``rejected``), so ``published == stored + rejected + gaps`` holds for a device that sends a bad one.
    """
    try:
        data = parse_message(payload, max_bytes=MAX_PAYLOAD_BYTES, max_depth=MAX_DEPTH)
    except RejectedMessage:
        return None
    if not isinstance(data, dict) or data.get("device_id") != device_id:
        return None
    run_id, seq = data.get("run_id"), data.get("seq")
    if not (isinstance(run_id, str) and _RUN_ID.match(run_id)):
        return None
    if not (isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= INT64_MAX):
        return None
    return SeqRef(device_id, run_id, seq)


def check_status(payload: bytes) -> str:
    """The status word of a status message ('' for a cleared retained status), or RejectedMessage."""
    text = decode_text(payload, max_bytes=MAX_PAYLOAD_BYTES).strip()
    if len(text) > MAX_STATUS_LEN or text.startswith("{") or not text.isprintable():
        raise RejectedMessage(
            "bad_field", f"status is a short word (online, stopped, offline), got {_short(text, 40)!r}"
        )
    return text


_EVENT_NUMBERS = ("impact_ts", "detected_ts", "confidence")
_EVENT_SEQS = ("first_seq", "last_seq")
MAX_EVENT_WINDOWS = 1_000_000


def check_event(device_id: str, payload: bytes) -> dict[str, Any]:
    """The ``events`` row of an event message (:func:`edge_har.mqtt.payloads.event_payload`), or RejectedMessage.

    Fields the row does not keep are ignored (a newer device may add some); the ones it keeps are held
    to their columns, the times to what the history bucketing takes, the seqs to 64 bits.
    """
    data = _parse_object(payload, MAX_STATS_BYTES)
    if data.get("schema_version") != PREDICTION_SCHEMA_VERSION:
        raise RejectedMessage(
            "bad_field", f"schema_version: {_short(data.get('schema_version'), 20)} is not {PREDICTION_SCHEMA_VERSION}"
        )
    if data.get("device_id") != device_id:
        raise RejectedMessage("bad_device_id", f"device_id {_short(data.get('device_id'))!r} is not the topic's")
    event_type, model_id = data.get("event_type"), data.get("model_id")
    for key, value in (("event_type", event_type), ("model_id", model_id)):
        if not isinstance(value, str) or not value:
            raise RejectedMessage("bad_field", f"{key}: must be a non-empty string, got {_short(value, 40)}")
    run_id = data.get("run_id") or ""
    if run_id and not (isinstance(run_id, str) and _RUN_ID.match(run_id)):
        raise RejectedMessage("bad_field", f"run_id: must be 1-64 letters, digits, '-' or '_', got {_short(run_id)!r}")
    for key, column in (("event_type", "label"), ("model_id", "model_id"), ("variant", "variant")):
        _text(key, data.get(key), COLUMN_LENGTHS[column])
    numbers: dict[str, float] = {}
    for key in _EVENT_NUMBERS:
        value = data.get(key)
        top = 1.0 if key == "confidence" else MAX_TS
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= top:
            raise RejectedMessage("bad_field", f"{key}: must be a number within 0..{top:g}, got {_short(value, 40)}")
        numbers[key] = float(value)
    seqs: dict[str, int] = {}
    for key in _EVENT_SEQS:
        value = data.get(key)
        if type(value) is not int or not 0 <= value <= INT64_MAX:
            raise RejectedMessage(
                "bad_field", f"{key}: must be a whole number within 0..2**63-1, got {_short(value, 40)}"
            )
        seqs[key] = value
    if seqs["first_seq"] > seqs["last_seq"]:
        raise RejectedMessage("bad_field", f"first_seq {seqs['first_seq']} is after last_seq {seqs['last_seq']}")
    windows = data.get("windows", seqs["last_seq"] - seqs["first_seq"] + 1)
    if type(windows) is not int or not 1 <= windows <= MAX_EVENT_WINDOWS:
        raise RejectedMessage(
            "bad_field", f"windows: must be a whole number within 1..{MAX_EVENT_WINDOWS}, got {_short(windows, 40)}"
        )
    return {
        "device_id": device_id,
        "run_id": run_id,
        "event_type": event_type,
        **numbers,
        **seqs,
        "windows": windows,
        "model_id": model_id,
        "variant": data.get("variant"),
    }


def check_stats(device_id: str, payload: bytes) -> dict[str, Any]:
    """A stats message as it may be stored (bounded, every string storable), or RejectedMessage."""
    data = _parse_object(payload, MAX_STATS_BYTES)
    if data.get("device_id", device_id) != device_id:
        raise RejectedMessage("bad_device_id", f"device_id {_short(data.get('device_id'))!r} is not the topic's")
    if "run_id" in data and isinstance(data["run_id"], str) and not _RUN_ID.match(data["run_id"]):
        raise RejectedMessage(
            "bad_field", f"run_id: must be 1-64 letters, digits, '-' or '_', got {_short(data['run_id'])!r}"
        )
    if isinstance(data.get("model_id"), str):
        _text("model_id", data["model_id"], COLUMN_LENGTHS["model_id"])
    problem = _bad_text_anywhere(data, "")
    if problem is not None:
        raise RejectedMessage("bad_field", problem)
    return data


def _text(key: str, value: Any, max_len: int) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise RejectedMessage("bad_field", f"{key}: must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise RejectedMessage("bad_field", f"{key}: {len(value)} characters (at most {max_len})")
    if _BAD_TEXT.search(value):
        raise RejectedMessage("bad_field", f"{key}: contains NUL or a lone surrogate, which no store keeps")


def _bad_text_anywhere(node: Any, path: str) -> Optional[str]:
    """The first string or key in ``node`` PostgreSQL's json would refuse (NUL, lone surrogates)."""
    if isinstance(node, str):
        return f"{path or 'value'}: contains NUL or a lone surrogate" if _BAD_TEXT.search(node) else None
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{_short(key, 40)}" if path else _short(key, 40)
            if _BAD_TEXT.search(key):
                return f"{where}: a key with NUL or a lone surrogate"
            found = _bad_text_anywhere(value, where)
            if found:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _bad_text_anywhere(value, f"{path}[{i}]")
            if found:
                return found
    return None


def _short(value: Any, limit: int = 80) -> str:
    """``value`` as a detail line may show it: printable, at most ``limit`` characters."""
    full = value if isinstance(value, str) else repr(value)
    shown = "".join(c if c.isprintable() and not "\ud800" <= c <= "\udfff" else "?" for c in full[:limit])
    return shown + ("..." if len(full) > limit else "")
