"""End-to-end suite: the real daemon, a real mosquitto, a subscriber, on loopback.

What is measured, precisely:

* **sample in -> prediction received**: the replay source stamps each chunk
  with ``time.time()`` when it emits it (one sample per chunk in real time),
  the daemon carries the emission time of a window's last sample as
  ``window_end_ts`` in the prediction payload, and the subscriber here takes
  ``time.time()`` when the message arrives. Both clocks are the same machine's.
  The difference covers windowing, the window queue, inference, smoothing,
  JSON, the publisher's queue, the broker and the subscriber's network loop.
  The payload's own ``e2e_ms`` (sample arrival -> hand-off to MQTT) and
  ``inference_ms`` split it up.
* **windows/s**: predictions received per second. Phase 1 replays in real
  time (x ``--speed``): the rate a sensor at that speed produces, with the
  latency a device sees. Phase 2 replays as fast as possible (the daemon's
  lossless replay mode): the most the daemon sustains on this machine.
* **CPU share and resident memory of the daemon**: ``psutil`` samples the
  daemon process (all its threads) a few times a second during each phase.
  CPU is given in percent of one core, and as a share of the whole machine.

The daemon runs as its own process (``python -m edge_har run --config``),
exactly as systemd starts it, so nothing of this process (paho, numpy, the
subscriber's thread) is in its CPU or memory figures.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_har.benchmarks import report
from edge_har.core.errors import EdgeHarError
from edge_har.mqtt.local_broker import BrokerError, LocalBroker

log = logging.getLogger(__name__)

DEVICE_ID = "bench-e2e"


class E2EError(EdgeHarError, RuntimeError):
    """The suite cannot run here (no mosquitto, a daemon that does not start); the message says why."""


@dataclass
class E2ESettings:
    seconds: float = 30.0  # phase 1: real-time replay, measured after the first prediction
    throughput_seconds: float = 10.0  # phase 2: as fast as possible
    speed: float = 1.0
    settle_seconds: float = 1.0  # discarded after the first prediction (start-up transients)
    variant: str | None = None
    mosquitto: str | None = None
    num_threads: int = 1
    startup_timeout_s: float = 90.0
    sample_interval_s: float = 0.25
    max_recordings: int = 24
    quick: bool = False

    @classmethod
    def quick_settings(cls, **overrides: Any) -> E2ESettings:
        base: dict[str, Any] = dict(
            seconds=6.0,
            throughput_seconds=3.0,
            settle_seconds=0.5,
            quick=True,
            startup_timeout_s=60.0,
            max_recordings=6,
        )
        base.update(overrides)
        return cls(**base)


# ====================================================================== a private broker


def start_broker(work: Path, binary: str | None) -> LocalBroker:
    """The shared private-broker starter (edge_har.mqtt.local_broker), with this suite's error type."""
    if binary and not os.access(binary, os.X_OK):
        raise E2EError(f"--mosquitto {binary}: not an executable file")
    try:
        return LocalBroker(work, binary=binary).start()
    except BrokerError as exc:
        raise E2EError(
            f"{exc} (the e2e suite starts its own broker on a free loopback port; "
            "a running system broker is left alone)"
        ) from exc


# ====================================================================== the subscriber


@dataclass
class Received:
    at: float  # time.time() on arrival
    topic: str
    payload: dict[str, Any]


class Subscriber:
    """A paho client recording every message on the device's topics with its arrival time."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.topic = topic
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"edge-har-bench-{os.getpid()}",
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._ready.wait(10):
            self.close()
            raise E2EError(f"could not subscribe to {topic} on {host}:{port}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        at = time.time()
        try:
            payload = json.loads(message.payload)
        except (ValueError, UnicodeDecodeError):
            payload = {"text": message.payload.decode("utf-8", "replace")}
        if not isinstance(payload, dict):
            payload = {"value": payload}
        with self._lock:
            self.messages.append(Received(at, message.topic, payload))

    def on(self, suffix: str, since: float = 0.0) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix) and m.at >= since]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ====================================================================== replay data


def write_replay_folder(folder: Path, recordings: Sequence[tuple[str, np.ndarray]]) -> Path:
    """Recordings in the HMP layout the replay source reads: <folder>/<Label>/rec-NNN.txt, raw values."""
    for i, (label, samples) in enumerate(recordings):
        target = folder / label
        target.mkdir(parents=True, exist_ok=True)
        np.savetxt(target / f"rec-{i:03d}.txt", np.asarray(samples), fmt="%.6g")
    return folder


def synthetic_recordings(bundle: Any, seconds: float = 20.0, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """One synthetic wrist recording per label, in the bundle's raw units (its scaling inverted)."""
    from edge_har.convert.synthetic import CODES_PER_G, ZERO_G_CODE, pattern_for, synthesize_recording

    pre = bundle.preprocessing
    rng = np.random.default_rng(seed)
    n = int(seconds * pre.sample_rate_hz)
    scale = np.asarray(pre.scale, np.float64)
    offset = np.asarray(pre.offset, np.float64)
    out = []
    for label in bundle.labels:
        g = (synthesize_recording(pattern_for(label.lower()), n, pre.sample_rate_hz, rng) - ZERO_G_CODE) / CODES_PER_G
        channels = np.resize(g.T, (pre.n_channels, n)).T  # a model with other than 3 channels gets them repeated
        out.append((label, (channels - offset) / scale))
    return out


def dataset_recordings(bundle: Any, dataset: Any, limit: int) -> tuple[list[tuple[str, np.ndarray]], str]:
    """The bundle's test recordings when they can be found in ``dataset`` (else all), at most ``limit``."""
    from edge_har.convert.evaluate import EvaluationError, test_recording_indices

    try:
        indices = list(test_recording_indices(bundle, dataset))
        what = "test split"
    except EvaluationError:
        indices = list(range(len(dataset.recordings)))
        what = "whole data set"
    if len(indices) > limit:
        indices = [indices[int(i)] for i in np.linspace(0, len(indices) - 1, limit).round()]
    known = set(bundle.labels)
    recs = [
        (dataset.recordings[i].label, dataset.recordings[i].samples)
        for i in indices
        if dataset.recordings[i].label in known
    ]
    if not recs:
        raise E2EError(f"{dataset.root}: no recordings with the bundle's labels to replay")
    return recs, f"{len(recs)} recordings of {dataset.root} ({what})"


# ====================================================================== the daemon


def daemon_config(
    bundle: Any, settings: E2ESettings, broker: LocalBroker, replay: Path, rate_hz: float, realtime: bool
) -> str:
    """A device config (YAML) for the daemon: the replay, the private broker, fast stats."""
    import yaml

    source: dict[str, Any] = {
        "type": "replay",
        "path": str(replay),
        "format": "folder",
        "rate_hz": float(rate_hz),
        "realtime": realtime,
        "loop": True,
    }
    if realtime:
        source["speed"] = float(settings.speed)
    config = {
        "device_id": DEVICE_ID,
        "bundle": str(Path(bundle.root).resolve()),
        "interpreter": {"backend": "auto", "num_threads": settings.num_threads},
        "source": source,
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "client_id": f"{DEVICE_ID}-{os.getpid()}",
            "stats_interval_s": 1.0,
            "queue_size": 100000,
        },
        "logging": {"level": "INFO"},
    }
    if settings.variant:
        config["variant"] = settings.variant
    return yaml.safe_dump(config, sort_keys=False)


class DaemonProcess:
    """``python -m edge_har run --config`` with psutil sampling its CPU and memory on demand."""

    def __init__(self, config_path: Path, log_path: Path, summary_path: Path, max_seconds: float) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path = log_path
        self.summary_path = summary_path
        self.started = time.time()
        with open(log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "edge_har",
                    "run",
                    "--config",
                    str(config_path),
                    "--duration",
                    f"{max_seconds:.0f}",
                    "--summary-json",
                    str(summary_path),
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        import psutil

        self.ps = psutil.Process(self.proc.pid)
        self.samples: list[tuple[float, float, float]] = []  # (time, cpu % of one core, rss MiB)
        self._sampling = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, name="e2e-psutil", daemon=True)
        self._interval = 0.25
        self._thread.start()

    def _sample_loop(self) -> None:
        import psutil

        primed = False
        while not self._stop.wait(self._interval):
            try:
                cpu = self.ps.cpu_percent(None)  # since the previous call: the first one primes
                rss = self.ps.memory_info().rss / 2**20
            except psutil.Error:
                return
            if self._sampling.is_set():
                if primed:
                    self.samples.append((time.time(), cpu, rss))
                primed = True
            else:
                primed = False

    def sample(self, on: bool, interval: float = 0.25) -> None:
        self._interval = interval
        if on:
            self.samples.clear()
        (self._sampling.set if on else self._sampling.clear)()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as systemd stops it; SIGKILL if it does not exit in ``timeout``."""
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._thread.join(2)
        return int(self.proc.returncode)

    def summary(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.summary_path.read_text())
        except (OSError, ValueError):
            return None


# ====================================================================== the phases


def _wait_first_prediction(sub: Subscriber, daemon: DaemonProcess, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = sub.on("/prediction")
        if got:
            return got[0].at
        if not daemon.alive():
            raise E2EError(
                f"the daemon exited with status {daemon.proc.returncode} before its first prediction; "
                f"its log:\n{daemon.log_tail()}"
            )
        time.sleep(0.02)
    raise E2EError(f"no prediction within {timeout:g} s of starting the daemon; its log:\n{daemon.log_tail()}")


def _cpu_memory(samples: Sequence[tuple[float, float, float]]) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    if not samples:
        return {"cpu_percent_of_one_core": None, "cpu_share_of_machine": None, "rss_mb_mean": None, "rss_mb_peak": None}
    cpu = np.array([s[1] for s in samples])
    rss = np.array([s[2] for s in samples])
    return {
        "cpu_percent_of_one_core": float(cpu.mean()),
        "cpu_percent_of_one_core_p90": float(np.percentile(cpu, 90)),
        "cpu_share_of_machine": float(cpu.mean() / 100 / cores),
        "rss_mb_mean": float(rss.mean()),
        "rss_mb_peak": float(rss.max()),
        "psutil_samples": len(samples),
    }


def run_phase(
    name: str,
    bundle: Any,
    settings: E2ESettings,
    broker: LocalBroker,
    replay: Path,
    rate_hz: float,
    realtime: bool,
    seconds: float,
    work: Path,
) -> dict[str, Any]:
    """Start the daemon, wait for its first prediction, measure for ``seconds``, stop it with SIGTERM."""
    config = work / f"{name}.yaml"
    config.write_text(daemon_config(bundle, settings, broker, replay, rate_hz, realtime))
    from edge_har.mqtt.config import MqttConfig

    topic = f"{MqttConfig().topic_prefix}/{DEVICE_ID}/#"
    sub = Subscriber(broker.host, broker.port, topic)
    row: dict[str, Any] = {"phase": name, "realtime": realtime, "speed": settings.speed if realtime else None}
    launched = time.time()
    daemon = DaemonProcess(
        config,
        work / f"{name}-daemon.log",
        work / f"{name}-summary.json",
        max_seconds=settings.startup_timeout_s + seconds + settings.settle_seconds + 60,
    )
    try:
        first = _wait_first_prediction(sub, daemon, settings.startup_timeout_s)
        row["startup_s"] = first - launched  # process start to first prediction received
        time.sleep(settings.settle_seconds)
        daemon.sample(True, settings.sample_interval_s)
        t0 = time.time()
        time.sleep(seconds)
        t1 = time.time()
        daemon.sample(False)
        samples = list(daemon.samples)
    finally:
        code = daemon.stop()
        sub.close()
    row["exit_status"] = code
    row["measured_s"] = t1 - t0
    predictions = [m for m in sub.on("/prediction") if t0 <= m.at < t1]
    row["predictions"] = len(predictions)
    row["windows_per_s"] = len(predictions) / (t1 - t0)
    if realtime:
        pre = bundle.preprocessing
        row["windows_per_s_expected"] = rate_hz * settings.speed / (pre.stride * rate_hz / pre.sample_rate_hz)
        lat = np.array([1000 * (m.at - float(m.payload["window_end_ts"])) for m in predictions])
        row["latency_ms"] = _summary(lat)
        row["daemon_e2e_ms"] = _summary(np.array([float(m.payload.get("e2e_ms", np.nan)) for m in predictions]))
        row["inference_ms"] = _summary(np.array([float(m.payload.get("inference_ms", np.nan)) for m in predictions]))
    else:
        row["inference_ms"] = _summary(np.array([float(m.payload.get("inference_ms", np.nan)) for m in predictions]))
    seqs = [int(m.payload["seq"]) for m in predictions if "seq" in m.payload]
    if len(seqs) > 1:
        row["seq_gaps"] = int((max(seqs) - min(seqs) + 1) - len(set(seqs)))  # published windows never received
    truths = [(m.payload.get("label"), (m.payload.get("extra") or {}).get("truth")) for m in predictions]
    scored = [(label, truth) for label, truth in truths if truth]
    if scored:
        row["replay_accuracy"] = float(np.mean([label == truth for label, truth in scored]))
    row.update(_cpu_memory(samples))
    stats = [m.payload for m in sub.on("/stats")]
    if stats:
        last = stats[-1]
        row["daemon_stats"] = {
            k: last.get(k) for k in ("windows_total", "samples_total", "samples_dropped", "queue_depth", "rss_mb")
        }
        row["daemon_stats"]["windows_dropped"] = (last.get("extra") or {}).get("windows_dropped")
        row["daemon_stats"]["mqtt"] = last.get("mqtt")
    row["daemon_summary"] = daemon.summary()
    return row


def _summary(values_ms: np.ndarray) -> dict[str, Any]:
    values = values_ms[np.isfinite(values_ms)]
    return report.latency_summary(values)


def run_e2e(
    bundle: Any,
    settings: E2ESettings,
    dataset: Any | None = None,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Both phases against one private broker; returns the suite's results section."""
    started = time.perf_counter()
    section = report.suite_header("e2e", bundle)
    section["settings"] = asdict(settings)
    section["definition"] = {
        "latency_ms": "subscriber's time.time() at arrival minus the payload's window_end_ts (the replay's "
        "emission time of the window's last sample); same machine, same clock",
        "daemon_e2e_ms": "the daemon's own figure: last sample's arrival to the hand-off to MQTT",
        "windows_per_s": "predictions received per second of measurement",
        "startup_s": "daemon process start to its first prediction received; in real time this includes one "
        "window of samples arriving",
        "cpu": "psutil cpu_percent of the daemon process (all threads): 100 = one core busy",
    }
    if bundle.kind != "sensor":
        section["phases"] = []
        section["camera"] = {
            "status": "not measured",
            "detail": f"a {bundle.kind} bundle: the daemon runs sensor "
            "bundles only so far; frames/s will be measured when it has a camera source",
        }
        return report.finish_section(section, started)
    section["camera"] = {
        "status": "not applicable",
        "detail": "not a camera bundle (kind sensor): frames/s applies to camera bundles",
    }
    with tempfile.TemporaryDirectory(prefix="edge-har-e2e-") as tmp:
        work = Path(tmp)
        if dataset is not None:
            recordings, what = dataset_recordings(bundle, dataset, settings.max_recordings)
            rate = float(dataset.sample_rate_hz)
        else:
            recordings = synthetic_recordings(bundle, seconds=20.0)
            what = f"synthetic recordings, one per label ({len(recordings)} x 20 s)"
            rate = float(bundle.preprocessing.sample_rate_hz)
        replay = write_replay_folder(work / "replay", recordings)
        section["replay"] = {"data": what, "rate_hz": rate}
        broker = start_broker(work, settings.mosquitto)
        section["broker"] = {"binary": broker.binary, "port": broker.port, "version": _mosquitto_version(broker.binary)}
        phases = []
        try:
            for name, realtime, seconds in (
                ("realtime", True, settings.seconds),
                ("max_throughput", False, settings.throughput_seconds),
            ):
                if progress:
                    report.stderr(f"e2e: phase {name}: measuring {seconds:g} s after the first prediction ...")
                try:
                    phases.append(run_phase(name, bundle, settings, broker, replay, rate, realtime, seconds, work))
                except E2EError as exc:
                    log.warning("e2e phase %s failed: %s", name, exc)
                    phases.append({"phase": name, "status": "error", "error": str(exc)})
                else:
                    phases[-1]["status"] = "ok"
        finally:
            broker.stop()
    section["phases"] = phases
    return report.finish_section(section, started)


def _mosquitto_version(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5)
        first = (out.stdout or out.stderr).splitlines()[0]
        return first.strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


# ====================================================================== output


def _f(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_e2e(section: dict[str, Any]) -> str:
    parts = [report.context_lines(section)]
    replay = section.get("replay") or {}
    if replay:
        parts.append(
            f"replay: {replay.get('data')} at {replay.get('rate_hz'):g} Hz; broker: "
            f"{(section.get('broker') or {}).get('version')} on 127.0.0.1"
        )
    headers = [
        "phase",
        "status",
        "first prediction s",
        "windows/s",
        "expected/s",
        "latency p50 ms",
        "latency p99 ms",
        "daemon e2e p50 ms",
        "inference p50 ms",
        "CPU % of a core",
        "RSS MB peak",
        "lost",
    ]
    table = []
    for p in section.get("phases", []):
        if p.get("status") != "ok":
            table.append([p["phase"], f"error: {str(p.get('error'))[:80]}"] + ["-"] * 10)
            continue
        lat = p.get("latency_ms") or {}
        d = p.get("daemon_e2e_ms") or {}
        inf = p.get("inference_ms") or {}
        table.append(
            [
                p["phase"] + (f" x{p['speed']:g}" if p.get("speed") else ""),
                "ok",
                _f(p.get("startup_s")),
                _f(p.get("windows_per_s")),
                _f(p.get("windows_per_s_expected")),
                _f(lat.get("p50_ms"), 3),
                _f(lat.get("p99_ms"), 3),
                _f(d.get("p50_ms"), 3),
                _f(inf.get("p50_ms"), 3),
                _f(p.get("cpu_percent_of_one_core"), 1),
                _f(p.get("rss_mb_peak"), 1),
                str(p.get("seq_gaps", "-")),
            ]
        )
    parts.append(
        report.format_table(
            headers, table, title=f"End to end (daemon + mosquitto on loopback): {section['bundle']['model_id']}"
        )
    )
    camera = section.get("camera") or {}
    parts.append(
        report.format_table(["camera frames/s", "detail"], [[camera.get("status", "-"), camera.get("detail", "")]])
    )
    return "\n\n".join(parts)
