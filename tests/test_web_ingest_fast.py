"""The ingest's fast paths against what they replace, on real parts.

* the orjson field checks give the reference checks' answer (the same row, or the same rejection reason
  and detail) for every message the hostile-payload strategy of ``test_web_ingest_fuzz`` makes;
* the driver-level insert tells new rows from re-deliveries (across batches and within one) and keeps the
  seq books, on SQLite and PostgreSQL;
* the buffered paho reader hands over every message whole and in order, whatever its size against the
  read chunk, and one write of a batch's PUBACKs acknowledges them all (a resumed session gets nothing
  again), on a real mosquitto under MQTT 5 and 3.1.1.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("orjson")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_har.mqtt.bounded_json import RejectedMessage  # noqa: E402
from edge_har.mqtt.config import MqttConfig  # noqa: E402
from edge_har.mqtt.payloads import prediction_payload  # noqa: E402
from edge_har.web import ingest_checks, queries  # noqa: E402
from edge_har.web.ingest_checks import check_prediction, check_prediction_reference  # noqa: E402
from edge_har.web.store import open_store_url  # noqa: E402
from tests.test_web_ingest_fuzz import message  # noqa: E402

pytest_plugins = ["tests.plugins.db", "tests.plugins.broker"]

EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "120"))


def _outcome(check: Any, device: str, payload: bytes) -> tuple[str, Any]:
    try:
        return "row", check(device, payload)
    except RejectedMessage as exc:
        return exc.reason, exc.detail


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message(), st.sampled_from(["pi-f", "pi-g", "pi.\u00e9t\u00e9", "d" * 128]))
def test_the_fast_checks_agree_with_the_reference_checks(msg: tuple[str, bytes, bool], device: str) -> None:
    _topic, payload, _valid = msg
    # the payload is judged as from its own device id where it names one, else as from another device
    try:
        named = json.loads(payload).get("device_id")
    except Exception:  # noqa: BLE001 - any bytes
        named = None
    for who in [device, *([named] if isinstance(named, str) else [])]:
        assert _outcome(check_prediction, who, payload) == _outcome(check_prediction_reference, who, payload)


def _payload(**change: Any) -> bytes:
    base = prediction_payload(
        device_id="pi-f",
        model_id="m",
        variant="int8",
        run_id="abcdef012345",
        seq=7,
        window_end_ts=1.7e9,
        label="Walk",
        confidence=0.9,
        probabilities={"Walk": 0.9, "Sit": 0.1},
        inference_ms=0.8,
        e2e_ms=3.0,
    )
    text = json.dumps({**base, **{k: f"__{k}__" for k in change}})
    for key, literal in change.items():
        text = text.replace(f'"__{key}__"', literal)
    return text.encode()


@pytest.mark.parametrize(
    "change",
    [
        {"inference_ms": str(2**64)},  # orjson reads it as a float; the reference refuses the integer
        {"e2e_ms": "1" + "0" * 30},
        {"seq": str(2**63)},
        {"seq": str(2**63 - 1)},
        {"label": '"W\\u0000"'},  # NUL, spelled as JSON can
        {"model_id": '"m\\ud800"'},  # a lone surrogate
        {"window_end_ts": "1e400"},
        {"confidence": "NaN"},
        {"variant": "true"},
        {"schema_version": "1.0"},
        {"schema_version": "true"},
        {"probabilities": '{"Walk": 1, "Sit": 0}'},
        {"probabilities": '{"Walk": true}'},
        {"extra": '{"a": [[[[1]]]]}'},
    ],
)
def test_each_number_and_text_the_fast_path_cannot_judge_gets_the_reference_answer(change: dict[str, str]) -> None:
    payload = _payload(**change)
    assert _outcome(check_prediction, "pi-f", payload) == _outcome(check_prediction_reference, "pi-f", payload)


def test_a_plain_prediction_takes_the_fast_path() -> None:
    """Not a fallback in disguise: the fast path alone builds the reference's row."""
    payload = _payload()
    assert ingest_checks._fast_row("pi-f", payload) == check_prediction_reference("pi-f", payload)


def _row(seq: int, run: str = "run1", device: str = "pi-a") -> dict[str, Any]:
    return {
        "device_id": device,
        "run_id": run,
        "seq": seq,
        "ts": 1.7e9 + seq * 0.5,
        "label": "Walk",
        "confidence": 0.9,
        "probabilities": {"Walk": 0.9, "Sit": 0.1},
        "model_id": "m",
        "variant": None,
        "inference_ms": 0.8,
        "received_at": time.time(),
    }


def test_the_fast_insert_tells_new_rows_from_redeliveries_and_keeps_the_books(db_url: str) -> None:
    store = open_store_url(db_url)
    try:
        first = store.write_predictions([_row(0), _row(1), _row(3)])
        assert first.new == [True, True, True]
        assert [(b.run_id, b.first_seq, b.high_seq, b.gaps) for b in first.books] == [("run1", 0, 3, 1)]
        # re-deliveries between new rows, and a repeat within the batch: new once, in order
        again = store.write_predictions([_row(1), _row(2), _row(3), _row(2), _row(4), _row(0, "run2")])
        assert again.new == [False, True, False, False, True, True]
        books = {b.run_id: (b.first_seq, b.high_seq, b.accounted, b.gaps) for b in again.books}
        assert books == {"run1": (0, 4, 5, 0), "run2": (0, 0, 1, 0)}
        assert store.counts()["predictions"] == 6
        (device,) = store.devices()
        assert device.activity is not None and device.activity.probabilities == {"Walk": 0.9, "Sit": 0.1}
        assert queries.history_range(store, "pi-a", 0.0, 1e10, 10)[0][-1]["seq"] == 4
    finally:
        store.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_the_buffered_reader_hands_over_every_message_whole_and_one_write_acks_them(
    mosquitto_broker: Any, protocol: str
) -> None:
    from edge_har.mqtt.client import make_client
    from edge_har.web.fast_mqtt import RECV_BYTES, ack_many, speed_up
    from tests.ingest_helpers import Devices, wait_until

    cfg = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, protocol=protocol)
    client_id = f"fast-{uuid.uuid4().hex[:6]}"
    got: list[tuple[str, bytes, int]] = []
    lock = threading.Lock()

    def subscriber() -> Any:
        client = speed_up(make_client(cfg, client_id, session_expiry_s=600, manual_ack=True))

        def on_connect(c: Any, *_: Any) -> None:
            c.subscribe("fast/#", qos=1)

        def on_message(_c: Any, _u: Any, m: Any) -> None:
            with lock:
                got.append((m.topic, bytes(m.payload), m.mid))

        client.on_connect, client.on_message = on_connect, on_message
        client.connect_async(cfg.host, cfg.port)
        client.loop_start()
        return client

    client = subscriber()
    wait_until(lambda: client.is_connected(), what="the subscriber's connection")
    time.sleep(0.3)  # the subscription is in place
    sizes = [0, 1, 127, 128, 16383, 16384, RECV_BYTES - 5, RECV_BYTES + 3, 2 * RECV_BYTES + 1, 5, 6, 7]
    sent = [(f"fast/{i}", bytes([i % 251]) * size) for i, size in enumerate(sizes)]
    devices = Devices(mosquitto_broker, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    try:
        for topic, payload in sent:
            devices.send(topic, payload)
        wait_until(lambda: len(got) >= len(sent), what="every message")
        assert [(t, p) for t, p, _ in got] == sent  # whole, in order
        ack_many(client, [mid for _, _, mid in got])
        time.sleep(0.5)  # the acknowledgements reach the broker before the link closes
        client.disconnect()
        client.loop_stop()
        got.clear()
        client = subscriber()  # the same session again: what was acknowledged is not sent again
        wait_until(lambda: client.is_connected(), what="the resumed connection")
        devices.send("fast/after", b"after")
        wait_until(lambda: got, what="the message after the resume")
        assert [(t, p) for t, p, _ in got] == [("fast/after", b"after")]
    finally:
        devices.close()
        client.disconnect()
        client.loop_stop()
