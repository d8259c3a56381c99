"""Fault suite: the real daemon against a real mosquitto that is killed, restarted, frozen, or not there.

Each scenario runs ``python -m edge_har run`` (as systemd starts it) on a looping replay, with a
subscriber on a persistent session (``clean_session`` false, QoS 1) on a broker with persistence,
applies its fault during the run, stops the daemon with SIGTERM and counts, from the daemon's
``--summary-json`` and from what the subscriber got:

``made``         predictions the daemon made (``windows_total``)
``delivered``    distinct (run_id, seq) the subscriber received
``dropped``      ``dropped_offline``: the offline queue (``mqtt.queue_size``) was full; never sent
``unconfirmed``  ``dropped_unconfirmed``: dropped when the queue was full after the link died before
                 the broker acknowledged them: each may or may not have been delivered
``duplicated``   repeats of a (run_id, seq) already received (QoS 1 after a reconnect)
``out_of_order`` first arrivals with a lower seq than one before
``queued``       still queued or in flight at the stop (the broker was gone)
``broker_lost``  made - delivered - dropped - queued - unconfirmed, between -unconfirmed and 0 when the
                 broker lost nothing; above 0: acknowledged by the broker (counted
                 ``published`` by the daemon) and lost when it was SIGKILLed with them in memory,
                 e.g. queued for a subscriber slower than the daemon since its last autosave. No
                 publisher can prevent that; at a rate the subscriber keeps up with it is 0.
``accounted``    whether made == published + dropped + unconfirmed + queued + inflight, the daemon's own books
``stop_s``       SIGTERM to exit (the unit's TimeoutStopSec is 20 s)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from edge_har.benchmarks import report
from edge_har.benchmarks.e2e import DaemonProcess, E2EError, synthetic_recordings, write_replay_folder
from edge_har.mqtt.local_broker import BrokerError, LocalBroker

log = logging.getLogger(__name__)

DEVICE_ID = "bench-faults"
SCENARIOS = (
    "broker_kill_full_speed",
    "broker_kill_80_per_s",
    "broker_restart_sigterm",
    "broker_frozen",
    "unresolvable_host",
    "wrong_port",
)


@dataclass
class FaultSettings:
    seconds: float = 15.0  # run length of each scenario after the first prediction
    kills: int = 3  # broker deaths per kill/restart scenario
    down_s: float = 1.5  # how long the broker stays away each time
    queue_size: int = 1000
    mosquitto: Optional[str] = None
    startup_timeout_s: float = 90.0
    scenarios: tuple[str, ...] = SCENARIOS
    quick: bool = False

    @classmethod
    def quick_settings(cls, **overrides: Any) -> FaultSettings:
        base: dict[str, Any] = dict(seconds=6.0, kills=2, down_s=1.0, quick=True)
        base.update(overrides)
        return cls(**base)


class PersistentSubscriber:
    """A QoS 1 subscriber with a persistent session: records (run_id, seq) of every prediction."""

    def __init__(self, host: str, port: int, topic: str, client_id: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.keys: list[tuple[Any, int]] = []
        self.last_at = time.monotonic()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.topic = topic
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()
        if not self._ready.wait(10):
            self.close()
            raise E2EError(f"could not subscribe to {topic} on {host}:{port}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            payload = json.loads(message.payload)
            key = (payload.get("run_id"), int(payload["seq"]))
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.keys.append(key)
            self.last_at = time.monotonic()

    def settle(self, quiet_s: float = 1.0, timeout: float = 30.0) -> None:
        """Wait until nothing arrived for ``quiet_s`` (the broker's backlog is delivered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and time.monotonic() - self.last_at < quiet_s:
            time.sleep(0.05)

    def ledger(self) -> dict[str, int]:
        with self._lock:
            keys = list(self.keys)
        first = list(dict.fromkeys(keys))
        seqs = [seq for _, seq in first]
        return {
            "received": len(keys),
            "delivered": len(first),
            "duplicated": len(keys) - len(first),
            "out_of_order": sum(1 for a, b in zip(seqs, seqs[1:]) if b < a),
            "runs": len({run for run, _ in first}),
        }

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def persistent_broker(
    work: Path, binary: Optional[str], port: Optional[int] = None, *, max_queued: int = 0
) -> LocalBroker:
    """mosquitto with persistence in ``work`` (autosave every second) and ``max_queued_messages``
    (0: no bound); a restart comes back with the same persistence file."""
    persistence = [
        "persistence true",
        f"persistence_location {work}/",
        "autosave_interval 1",
        f"max_queued_messages {max_queued}",
    ]
    if os.geteuid() == 0:
        persistence.append("user root")  # mosquitto would otherwise drop to 'mosquitto', who cannot write here
    return LocalBroker(work, port=port, binary=binary, extra_config=persistence)


def _config(bundle: Any, host: str, port: int, replay: Path, settings: FaultSettings, speed: Optional[float]) -> str:
    import yaml

    source: dict[str, Any] = {"type": "replay", "path": str(replay), "format": "folder", "loop": True}
    source["realtime"] = speed is not None
    if speed is not None:
        source["speed"] = float(speed)
    config = {
        "device_id": DEVICE_ID,
        "bundle": str(Path(bundle.root).resolve()),
        "source": source,
        "mqtt": {
            "host": host,
            "port": port,
            "keepalive": 5,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "stats_interval_s": 1.0,
            "queue_size": settings.queue_size,
        },
        "logging": {"level": "INFO"},
    }
    return yaml.safe_dump(config, sort_keys=False)


def _wait_log(daemon: DaemonProcess, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.log_tail(10**7):
        if not daemon.alive():
            raise E2EError(f"the daemon exited {daemon.proc.returncode}; its log:\n{daemon.log_tail()}")
        if time.monotonic() > deadline:
            raise E2EError(f"no {text!r} in the daemon's log within {timeout:g} s:\n{daemon.log_tail()}")
        time.sleep(0.05)


def run_scenario(name: str, bundle: Any, settings: FaultSettings, replay: Path, work: Path) -> dict[str, Any]:
    """One fault: broker and subscriber up (session saved), daemon started, the fault, SIGTERM, the books."""
    work.mkdir(parents=True, exist_ok=True)
    broker = persistent_broker(work, settings.mosquitto)
    try:
        broker.start()
    except BrokerError as exc:
        raise E2EError(str(exc)) from exc
    topic = f"edge-har/{DEVICE_ID}/prediction"
    sub = PersistentSubscriber(broker.host, broker.port, topic, f"bench-faults-{name}-{os.getpid()}")
    time.sleep(1.5)  # an autosave holds the subscription before any SIGKILL
    host, port = broker.host, broker.port
    speed = 40.0 if name == "broker_kill_80_per_s" else None
    if name == "unresolvable_host":
        host = "nonexistent.invalid"
    if name in ("unresolvable_host", "wrong_port"):
        broker.stop()  # SIGTERM: the session is saved; it comes back on the same port
    config = work / "daemon.yaml"
    config.write_text(_config(bundle, host, port, replay, settings, speed))
    daemon = DaemonProcess(config, work / "daemon.log", work / "summary.json", settings.startup_timeout_s + 600)
    row: dict[str, Any] = {"fault": name, "rate": "80/s" if speed else "full speed"}
    events: list[str] = []
    try:
        _wait_log(daemon, "first prediction", settings.startup_timeout_s)
        t0 = time.monotonic()
        _FAULTS[name](broker, settings, events)
        rest = settings.seconds - (time.monotonic() - t0)
        if rest > 0:
            time.sleep(rest)
        stop_t0 = time.monotonic()
        row["exit_status"] = daemon.stop(timeout=30.0)
        row["stop_s"] = time.monotonic() - stop_t0
        sub.settle()
    finally:
        if daemon.alive():
            daemon.stop(timeout=5.0)
        sub.close()
        broker.stop()
    summary = daemon.summary() or {}
    m = summary.get("mqtt") or {}
    made = int(summary.get("windows_total", 0))
    ledger = sub.ledger()
    queued = int(m.get("queued", 0)) + int(m.get("inflight", 0))
    dropped = int(m.get("dropped_offline", 0))
    unconfirmed = int(m.get("dropped_unconfirmed", 0))
    row.update(
        made=made,
        delivered=ledger["delivered"],
        dropped=dropped,
        unconfirmed=unconfirmed,
        duplicated=ledger["duplicated"],
        out_of_order=ledger["out_of_order"],
        queued=queued,
        broker_lost=made - ledger["delivered"] - dropped - queued - unconfirmed,
        accounted=bool(m) and made == int(m.get("published", -1)) + dropped + unconfirmed + queued,
        reconnects=m.get("reconnects"),
        last_error=m.get("last_error"),
        events=events,
        runs_seen=ledger["runs"],
        log_warnings=sum(" WARNING " in line or " ERROR " in line for line in daemon.log_tail(10**7).splitlines()),
        tracebacks=daemon.log_tail(10**7).count("Traceback"),
    )
    return row


def _outages(broker: LocalBroker, settings: FaultSettings, events: list[str], *, kill: bool) -> None:
    """``settings.kills`` outages of ``down_s`` spread over the run: SIGKILL (``kill``) or a clean SIGTERM."""
    gap = max(0.5, settings.seconds / (settings.kills + 1) - settings.down_s)
    for _ in range(settings.kills):
        time.sleep(gap)
        if kill:
            broker.kill()
        else:
            broker.stop()
        events.append("kill -9" if kill else "SIGTERM")
        time.sleep(settings.down_s)
        broker.start()


def _kill_restart(broker: LocalBroker, settings: FaultSettings, events: list[str]) -> None:
    _outages(broker, settings, events, kill=True)


def _sigterm_restart(broker: LocalBroker, settings: FaultSettings, events: list[str]) -> None:
    _outages(broker, settings, events, kill=False)


def _frozen(broker: LocalBroker, settings: FaultSettings, events: list[str]) -> None:
    time.sleep(1.0)
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)
    events.append(f"SIGSTOP {2 * settings.down_s:g} s")
    time.sleep(2 * settings.down_s)
    broker.kill()
    events.append("kill -9")
    broker.start()


def _absent(broker: LocalBroker, settings: FaultSettings, events: list[str]) -> None:
    events.append("no broker for the whole run")


def _wrong_port_then_up(broker: LocalBroker, settings: FaultSettings, events: list[str]) -> None:
    time.sleep(settings.seconds / 2)
    broker.start()
    events.append(f"broker up after {settings.seconds / 2:g} s")


_FAULTS: dict[str, Callable[[LocalBroker, FaultSettings, list[str]], None]] = {
    "broker_kill_full_speed": _kill_restart,
    "broker_kill_80_per_s": _kill_restart,
    "broker_restart_sigterm": _sigterm_restart,
    "broker_frozen": _frozen,
    "unresolvable_host": _absent,
    "wrong_port": _wrong_port_then_up,
}


def run_faults(bundle: Any, settings: FaultSettings, progress: bool = True) -> dict[str, Any]:
    """Every scenario in ``settings.scenarios``; returns the suite's results section."""
    started = time.perf_counter()
    section = report.suite_header("faults", bundle)
    section["settings"] = asdict(settings)
    section["definition"] = dict(_DEFINITIONS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-har-faults-") as tmp:
        work = Path(tmp)
        replay = write_replay_folder(work / "replay", synthetic_recordings(bundle, seconds=20.0))
        for name in settings.scenarios:
            if progress:
                report.stderr(f"faults: {name} ({settings.seconds:g} s) ...")
            try:
                rows.append(run_scenario(name, bundle, settings, replay, work / name))
            except E2EError as exc:
                log.warning("fault scenario %s failed: %s", name, exc)
                rows.append({"fault": name, "status": "error", "error": str(exc)})
            else:
                rows[-1]["status"] = "ok"
    section["rows"] = rows
    return report.finish_section(section, started)


_DEFINITIONS = dict(
    made="predictions the daemon made (summary windows_total)",
    delivered="distinct (run_id, seq) received by a persistent QoS 1 subscriber",
    dropped="dropped_offline: the offline queue was full (never sent)",
    unconfirmed="dropped_unconfirmed: dropped after a link died unacknowledged; may have been delivered",
    duplicated="repeats of a (run_id, seq) already received",
    out_of_order="first arrivals with a lower seq than an earlier one",
    queued="queued + inflight at the stop (undeliverable: no broker)",
    broker_lost="made - delivered - dropped - queued - unconfirmed: > 0 is acknowledged by the broker, lost in its "
    "SIGKILL; between -unconfirmed and 0 the broker lost nothing",
    accounted="made == published + dropped_offline + dropped_unconfirmed + queued + inflight (the daemon's books)",
    stop_s="SIGTERM to process exit",
)


def format_faults(section: dict[str, Any]) -> str:
    headers = [
        "fault",
        "rate",
        "made",
        "delivered",
        "dropped",
        "unconfirmed",
        "duplicated",
        "out of order",
        "still queued",
        "broker lost",
        "books add up",
        "stop s",
    ]
    rows = []
    for r in section.get("rows", []):
        if r.get("status") != "ok":
            rows.append([r["fault"], "error: " + str(r.get("error", ""))[:60]] + [""] * (len(headers) - 2))
            continue
        rows.append(
            [
                r["fault"],
                r["rate"],
                r["made"],
                r["delivered"],
                r["dropped"],
                r.get("unconfirmed", 0),
                r["duplicated"],
                r["out_of_order"],
                r["queued"],
                r["broker_lost"],
                "yes" if r["accounted"] else "NO",
                f"{r['stop_s']:.2f}",
            ]
        )
    s = section.get("settings", {})
    title = (
        f"Faults: {s.get('seconds')} s per scenario, {s.get('kills')} broker deaths of {s.get('down_s')} s, "
        f"queue_size {s.get('queue_size')}"
    )
    return report.format_table(headers, rows, title) + "\n\n" + report.context_lines(section)


__all__ = ["SCENARIOS", "FaultSettings", "format_faults", "run_faults", "run_scenario"]
