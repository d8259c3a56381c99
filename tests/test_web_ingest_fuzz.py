"""Property tests of serve's ingest (check + store) with arbitrary MQTT messages, into SQLite and PostgreSQL.

Messages are valid predictions (the daemon's own payload builder), the same mutated (any field given any
JSON value, huge numbers, NaN, removed, unknown ones added), random JSON, numbers no store keeps, JSON
nested far too deep, random bytes, status and stats messages, on random topics and device ids. For
every batch the properties are the same: nothing escapes (no internal error, the loop never fails), no
row reaches the database that it refuses (no ``db_rejected``: the checks are complete), every valid
prediction is stored, and every message is accounted for exactly once::

    received == stored + duplicates + sum(rejected) + statuses + stats + events + event_duplicates
                (once nothing is queued)

``test_..._decode_and_store`` drives the ingest's own hand-over (``_on_message``, then its loop's
steps) many times a second; ``test_..._through_a_real_broker`` publishes through mosquitto to a
running serve app. ``EDGE_HAR_FUZZ_EXAMPLES`` raises the number of examples (default 120 and 15).
"""

from __future__ import annotations

import json
import os
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

import sqlalchemy as sa  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_har.core.events import Event  # noqa: E402
from edge_har.mqtt.config import MqttConfig  # noqa: E402
from edge_har.mqtt.payloads import event_payload, prediction_payload  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.ingest import Hub, Ingest  # noqa: E402
from edge_har.web.ingest_checks import DEVICE_ID, MAX_PAYLOAD_BYTES  # noqa: E402
from edge_har.web.store import events, open_store_url, predictions  # noqa: E402
from tests.ingest_helpers import Devices, serve_config, wait_until  # noqa: E402

pytest_plugins = ["tests.plugins.db"]

EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "120"))
BROKER_EXAMPLES = max(5, EXAMPLES // 8)
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
LABELS = ["Sit", "Walk", "Wave"]
HUGE = [10**400, 2**63, 2**64, -(2**63) - 1, 10**20]

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(HUGE)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", "\x00", "\ud800", "L" * 300, "Walk"])
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
good_ids = st.sampled_from(["pi-f", "pi-g", "pi.\u00e9t\u00e9", "d" * 128])
any_ids = good_ids | st.text(max_size=140) | st.sampled_from(["", " ", "pi f", "d" * 129, "pi\tx"])


@st.composite
def valid_prediction(draw: Any, device: str) -> dict[str, Any]:
    label = draw(st.sampled_from(LABELS))
    payload = prediction_payload(
        device_id="placeholder",
        model_id=draw(st.sampled_from(["m", "tiny-model", "m" * 256])),
        variant=draw(st.sampled_from([None, "int8", "v" * 64])),
        run_id=draw(st.none() | st.text("0123456789abcdef", min_size=12, max_size=12)),
        seq=draw(st.integers(0, 2**63 - 1)),
        window_end_ts=draw(st.floats(0, 1e10)),
        label=label,
        confidence=draw(st.floats(0, 1)),
        probabilities={name: draw(st.floats(0, 1)) for name in LABELS},
        inference_ms=draw(st.floats(0, 1e6)),
        e2e_ms=draw(st.floats(0, 1e6)),
    )
    return {**payload, "device_id": device}  # any id: the topic's, which the checks judge


@st.composite
def valid_event(draw: Any, device: str) -> dict[str, Any]:
    first = draw(st.integers(0, 2**62))
    impact = draw(st.floats(0, 1e10 - 10))
    event = Event(
        draw(st.sampled_from(LABELS + ["fall", "f" * 128])),
        impact,
        impact + draw(st.floats(0, 10)),
        draw(st.floats(0, 1)),
        first,
        first + draw(st.integers(0, 999)),
    )
    payload = event_payload(
        device_id="placeholder",
        model_id=draw(st.sampled_from(["m", "m" * 256])),
        variant=draw(st.sampled_from([None, "int8"])),
        run_id=draw(st.none() | st.text("0123456789abcdef", min_size=12, max_size=12)),
        event=event.to_json(),
    )
    return {**payload, "device_id": device}


def _routable(c: str) -> bool:
    """A character mosquitto takes in a topic (MQTT: no wildcards there, no control or non-characters)."""
    code = ord(c)
    return not (
        c in "/+#"
        or code < 0x20
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or 0xFDD0 <= code <= 0xFDEF
        or (code & 0xFFFF) >= 0xFFFE
    )


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@st.composite
def message(draw: Any, routable: bool = False) -> tuple[str, bytes, bool]:
    """(topic, payload, a valid prediction or event that must be stored)."""
    device = draw(any_ids)
    kind = draw(st.sampled_from(["prediction", "prediction", "status", "stats", "event"]))
    if routable:
        device = "".join(c for c in device if _routable(c))
        topic = f"edge-har/{device}/{kind}"
    else:
        topic = draw(
            st.sampled_from([f"edge-har/{device}/{kind}"] * 4 + [f"edge-har/{device}/other", "edge-har/x", device])
        )
    shape = draw(
        st.sampled_from(["valid", "valid", "mutated", "mutated", "json", "number", "deep", "bytes", "large", "status"])
    )
    base = draw(valid_event(device) if kind == "event" else valid_prediction(device))
    if shape == "valid":
        valid = kind in ("prediction", "event") and topic == f"edge-har/{device}/{kind}" and DEVICE_ID.match(device)
        return topic, _dumps(base), bool(valid)
    if shape == "mutated":
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from([*base, "x"]))
            if draw(st.booleans()):
                base.pop(key, None)
            else:
                base[key] = draw(json_value)
        return topic, _dumps(base), False
    if shape == "json":
        return topic, _dumps(draw(json_value)), False
    if shape == "number":
        field = draw(st.sampled_from(sorted(base)))
        literal = draw(st.sampled_from(["1" + "0" * 400, "1e400", "-1e400", "NaN", "Infinity", str(2**64), "-0"]))
        text = json.dumps({**base, field: "__N__"}).replace('"__N__"', literal)
        return topic, text.encode(), False
    if shape == "deep":
        n = draw(st.integers(1, 3000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        return topic, (opener * n + "1" + closer * n).encode(), False
    if shape == "bytes":
        return topic, draw(st.binary(max_size=200)), False
    if shape == "large":
        return topic, b"[" + b"1," * (MAX_PAYLOAD_BYTES // 2) + b"1]", False
    return topic, draw(st.text(max_size=40)).encode("utf-8", "surrogatepass"), False


def _stored(store: Any, payload: dict[str, Any]) -> bool:
    if "event_type" in payload:
        e = events.c
        query = sa.select(sa.func.count()).where(
            e.device_id == payload["device_id"],
            e.run_id == (payload.get("run_id") or ""),
            e.event_type == payload["event_type"],
            e.last_seq == payload["last_seq"],
        )
        with store.engine.connect() as conn:
            return bool(conn.execute(query).scalar())
    c = predictions.c
    query = sa.select(sa.func.count()).where(
        c.device_id == payload["device_id"], c.run_id == (payload.get("run_id") or ""), c.seq == payload["seq"]
    )
    with store.engine.connect() as conn:
        return bool(conn.execute(query).scalar())


def _check_books(status: dict[str, Any], sent: int) -> None:
    assert status["queued"] == 0 and status["loop_errors"] == 0, status
    assert "internal_error" not in status["rejected"], status["samples"]
    assert "db_rejected" not in status["rejected"], status["samples"]
    assert status["received"] == sent
    accounted = status["stored"] + status["duplicates"] + sum(status["rejected"].values())
    events = status["events"] + status["event_duplicates"]
    assert status["received"] == accounted + status["statuses"] + status["stats"] + events + status["dropped_full"], (
        status
    )


@pytest.fixture
def fuzz_store(db_url):
    store = open_store_url(db_url)
    yield store
    store.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH)
@given(batch=st.lists(message(), min_size=1, max_size=8))
def test_any_message_is_accounted_for_and_valid_ones_stored_decode_and_store(fuzz_store, batch):
    ingest = Ingest(ServeConfig(mqtt=MqttConfig()), fuzz_store, Hub(), flush_s=0.0)
    for topic, payload, _ in batch:
        ingest._on_message(None, None, SimpleNamespace(topic=topic, payload=payload, qos=0))
    steps = {"sweep": float("inf"), "prune": float("inf")}
    for _ in range(50):
        if not ingest.status()["queued"]:
            break
        ingest._step(steps)  # raises if anything escapes the per-message guards
    _check_books(ingest.status(), len(batch))
    for topic, payload, valid in batch:
        if valid:
            assert _stored(fuzz_store, json.loads(payload)), (topic, payload[:200])


@pytest.fixture
def running_serve(web_server, mosquitto_broker, db_url):
    server = web_server(serve_config(mosquitto_broker, db_url, client_id=f"fuzz-{uuid.uuid4().hex[:6]}"))
    assert server.app.state.live.ingest.ready.wait(10)
    devices = Devices(mosquitto_broker, "fuzz-devices")
    yield server, devices
    devices.close()


@settings(max_examples=BROKER_EXAMPLES, deadline=None, suppress_health_check=HEALTH)
@given(batch=st.lists(message(routable=True), min_size=1, max_size=6))
def test_any_message_is_accounted_for_and_valid_ones_stored_through_a_real_broker(running_serve, batch):
    server, devices = running_serve
    ingest = server.app.state.live.ingest
    before = ingest.status()
    for topic, payload, _ in batch:
        devices.send(topic, payload)
    status = wait_until(
        lambda: (lambda s: s if s["received"] - before["received"] == len(batch) and not s["queued"] else None)(
            ingest.status()
        ),
        what="every message received and accounted for",
    )
    assert ingest._thread is not None and ingest._thread.is_alive()
    delta = {
        key: status[key] - before[key]
        for key in (
            "received",
            "stored",
            "duplicates",
            "statuses",
            "stats",
            "events",
            "event_duplicates",
            "dropped_full",
            "loop_errors",
        )
    }
    rejected = {k: v - before["rejected"].get(k, 0) for k, v in status["rejected"].items()}
    _check_books({**delta, "queued": 0, "rejected": rejected, "samples": status["samples"]}, len(batch))
    for topic, payload, valid in batch:
        if valid:
            assert _stored(server.app.state.live.store, json.loads(payload)), (topic, payload[:200])
