"""What the serve-ingest tests share: payloads, a publishing paho client, HTTP reads of a real server, the books.

Not a test module (no ``test_`` prefix): imported by tests/test_web_ingest_*.py, tests/test_web_sessions.py and tests/test_web_live*.py.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge_har.mqtt.config import MqttConfig
from edge_har.mqtt.payloads import prediction_payload, stats_payload
from edge_har.web.config import ServeConfig

LABELS = ["Sit", "Walk", "Wave"]
BASE = round(time.time()) - 600.0  # windows end at BASE + seq * 0.5: ten minutes ago, exact in binary


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        time.sleep(0.05)


def prediction(device: str, seq: int, run_id: str = "run000000001", label: str = "Walk") -> dict[str, Any]:
    return prediction_payload(
        device_id=device,
        model_id="tiny-model",
        variant="int8",
        run_id=run_id,
        seq=seq,
        window_end_ts=BASE + seq * 0.5,
        label=label,
        confidence=0.8,
        probabilities={name: (0.8 if name == label else 0.1) for name in LABELS},
        inference_ms=0.7,
        e2e_ms=2.0,
    )


def stats(device: str, interval: float = 30.0, reconnects: int = 2) -> dict[str, Any]:
    return stats_payload(
        device_id=device,
        model_id="tiny-model",
        run_id="run000000001",
        uptime_s=12.0,
        windows_total=40,
        windows_per_s=2.5,
        inference_ms={"p50": 0.75, "p90": 1.0, "p99": 1.2, "max": 2.0},
        queue_depth=3,
        mqtt={"connected": True, "reconnects": reconnects},
        ts=time.time(),
        stats_interval_s=interval,
    )


class Devices:
    """One paho client publishing for any number of simulated devices (QoS 1, waits for each PUBACK)."""

    def __init__(self, broker: Any, client_id: str = "test-devices") -> None:
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, topic: str, payload: Any, retain: bool = False, qos: int = 1) -> None:
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        info = self.client.publish(topic, data, qos=qos, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"{topic}: the broker did not acknowledge"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def serve_config(broker: Any, db_url: str, **extra: Any) -> ServeConfig:
    mqtt_fields = {k: extra.pop(k) for k in ("protocol", "reconnect_min_s", "reconnect_max_s") if k in extra}
    mqtt = MqttConfig(
        host=broker.host,
        port=broker.port,
        **{"reconnect_min_s": 0.1, "reconnect_max_s": 1.0, **mqtt_fields},
    )
    return ServeConfig(mqtt=mqtt, db_url=db_url, **extra)


def get_json(url: str) -> tuple[int, Any]:
    """(HTTP status, parsed body) of a GET; a 4xx/5xx is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body.decode(errors="replace")


def stored_seqs(url: str, device_id: str) -> list[int]:
    """The seqs ``/api/devices/<id>/history`` serves for a device (every one since 1970), [] before it is known."""
    code, body = get_json(f"{url}/api/devices/{device_id}/history?since=0")
    return [p["seq"] for p in body["predictions"]] if code == 200 else []


def wait_stored(url: str, device_id: str, seqs: list[int], timeout: float = 10.0) -> None:
    """Wait until exactly ``seqs`` of the device are served (what a dead ingest never gets to)."""
    wait_until(lambda: stored_seqs(url, device_id) == seqs, timeout, f"{device_id} seqs {seqs}")


def settled(url: str) -> dict[str, Any]:
    """``/api/ingest`` once nothing is queued (what arrived is all accounted for)."""
    return wait_until(
        lambda: (lambda s: s if s["queued"] == 0 else None)(get_json(f"{url}/api/ingest")[1]),
        what="the ingest to settle",
    )


def books_balance(status: dict[str, Any]) -> None:
    """Every message received is accounted for exactly once."""
    accounted = (
        status["stored"]
        + status["duplicates"]
        + sum(status["rejected"].values())
        + status["statuses"]
        + status["stats"]
        + status["events"]
        + status["event_duplicates"]
        + status["dropped_full"]
        + status["queued"]
    )
    assert status["received"] == accounted, status
