"""Soak suite: the real daemon at a high window rate for a long time, its resident memory sampled each second.

A daemon on a Pi runs for months under ``MemoryMax=300M``: memory that grows by a few MB an
hour is an outage in a week, and no short benchmark shows it. This suite runs ``edge-har run``
exactly as systemd does (``python -m edge_har run --config``, stopped with SIGTERM; the e2e
suite's :class:`~edge_har.benchmarks.e2e.DaemonProcess`) on a looping replay of synthetic
recordings in the bundle's units, paced at ``--speed`` x real time (or as fast as it goes with
``--unpaced``), against a private mosquitto, with a subscriber counting its predictions.

What is reported:

* **RSS samples**: ``psutil`` resident memory of the daemon process every ``--interval`` seconds
  (1 s), from its first prediction to the end.
* **slope**: the least-squares line through the samples after ``--warmup`` seconds, in MB per
  hour. The warm-up (240 s) covers the allocator's and interpreter's first minutes and the
  daemon's run-long latency reservoirs (``edge_har.device.stats``: 20,000 windows each, bounded),
  which at 100 windows/s fill for about 200 s and grow RSS by some 2 MB meanwhile; with its standard error, and the same
  over the second half of the run alone (a leak keeps its slope; a warm-up curve flattens).
  ``flat`` is true when the slope is at most ``--flat-mb-per-h``; ``hours_to_limit`` projects the
  slope to the systemd unit's ``MemoryMax`` (300 MB).
* **windows/s** received by the subscriber, the daemon's own counters (windows, drops) from its
  last stats message, and its CPU share.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edge_har.benchmarks import report
from edge_har.benchmarks.e2e import (
    DEVICE_ID,
    DaemonProcess,
    E2EError,
    E2ESettings,
    daemon_config,
    start_broker,
    synthetic_recordings,
    write_replay_folder,
)

log = logging.getLogger(__name__)

MEMORY_MAX_MB = 300.0  # firmware_configs/edge-har.service: MemoryMax=300M


class SoakError(E2EError):
    """The soak cannot run (no mosquitto, a daemon that does not start or dies); the message says why."""


@dataclass
class SoakSettings:
    duration_s: float = 600.0
    warmup_s: float = 240.0
    speed: float = 50.0
    unpaced: bool = False
    interval_s: float = 1.0
    variant: Optional[str] = None
    mosquitto: Optional[str] = None
    flat_mb_per_h: float = 1.0
    startup_timeout_s: float = 90.0
    progress_every_s: float = 60.0
    progress: bool = True

    def effective_warmup(self) -> float:
        """The warm-up, shortened for short runs so that at least 60% of the samples are fitted."""
        return min(self.warmup_s, 0.4 * self.duration_s)


# ====================================================================== the subscriber


class PredictionCounter:
    """Counts the daemon's predictions and keeps its last stats payload; holds no messages (a long run)."""

    def __init__(self, host: str, port: int, device_id: str, timeout: float = 10.0) -> None:
        import json

        from edge_har.mqtt.client import make_client, topics
        from edge_har.mqtt.config import MqttConfig

        cfg = MqttConfig(host=host, port=port)
        self.topics = topics(cfg, device_id)
        self.predictions = 0
        self.first_at: Optional[float] = None
        self.last_stats: Optional[dict[str, Any]] = None
        self.seqs_seen = 0
        self._highest = -1
        self.seq_gaps = 0
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = make_client(cfg, f"edge-har-bench-soak-{os.getpid()}")

        def on_connect(c: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
            if not reason_code.is_failure:
                c.subscribe([(self.topics.prediction, 1), (self.topics.stats, 0)])

        def on_message(c: Any, userdata: Any, message: Any) -> None:
            with self._lock:
                if message.topic == self.topics.prediction:
                    self.predictions += 1
                    if self.first_at is None:
                        self.first_at = time.time()
                    try:
                        seq = int(json.loads(message.payload)["seq"])
                    except (ValueError, KeyError, TypeError):
                        return
                    if seq > self._highest:
                        if self._highest >= 0:
                            self.seq_gaps += seq - self._highest - 1
                        self._highest = seq
                else:
                    try:
                        self.last_stats = json.loads(message.payload)
                    except ValueError:
                        pass

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = on_message
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()
        if not ready.wait(timeout):
            self.close()
            raise SoakError(f"could not subscribe to {self.topics.base}/# on {host}:{port}")

    def count(self) -> int:
        with self._lock:
            return self.predictions

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ====================================================================== the fit


def rss_slope(times_s: Sequence[float] | np.ndarray, rss_mb: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Least-squares slope of RSS over time in MB per hour, its standard error, and the fitted span."""
    t = np.asarray(times_s, dtype=np.float64)
    y = np.asarray(rss_mb, dtype=np.float64)
    if t.size < 3 or float(t.max() - t.min()) <= 0:
        return {"samples": int(t.size), "mb_per_h": None, "stderr_mb_per_h": None, "span_s": None}
    hours = (t - t[0]) / 3600.0
    slope, intercept = np.polyfit(hours, y, 1)
    residuals = y - (slope * hours + intercept)
    spread = float(np.sum((hours - hours.mean()) ** 2))
    stderr = math.sqrt(float(np.sum(residuals**2)) / (t.size - 2) / spread) if spread > 0 else math.nan
    return {
        "samples": int(t.size),
        "mb_per_h": float(slope),
        "stderr_mb_per_h": stderr,
        "span_s": float(t[-1] - t[0]),
        "intercept_mb": float(intercept),
        "fitted_growth_mb": float(slope * hours[-1]),
    }


# ====================================================================== the run


def _config_text(bundle: Any, settings: SoakSettings, broker: Any, replay: Path) -> str:
    import yaml

    e2e = E2ESettings(speed=settings.speed, variant=settings.variant)
    rate = float(bundle.preprocessing.sample_rate_hz)
    config = yaml.safe_load(daemon_config(bundle, e2e, broker, replay, rate, realtime=not settings.unpaced))
    if not settings.unpaced:
        # One stride of samples a chunk: the window rate of `speed` x real time without one wake-up per sample.
        config["source"]["chunk_samples"] = int(bundle.preprocessing.stride)
    config["mqtt"]["stats_interval_s"] = 5.0
    config["logging"] = {"level": "WARNING"}
    return yaml.safe_dump(config, sort_keys=False)


def run_soak(bundle: Any, settings: SoakSettings, work_dir: str | Path | None = None) -> dict[str, Any]:
    """One long daemon run against a private broker; returns the suite's results section."""
    started = time.perf_counter()
    section = report.suite_header("soak", bundle)
    section["settings"] = asdict(settings)
    warmup = settings.effective_warmup()
    section["definition"] = {
        "rss_mb": "psutil resident memory of the daemon process (all threads), sampled every interval_s from its "
        "first prediction",
        "slope": f"least-squares line through the samples after {warmup:g} s of warm-up, MB per hour; "
        "second_half: the same over the last half of the run only",
        "flat": f"slope <= flat_mb_per_h ({settings.flat_mb_per_h:g} MB/h)",
        "hours_to_limit": f"hours until the end RSS reaches the unit's MemoryMax ({MEMORY_MAX_MB:g} MB) at this slope",
        "windows_per_s": "predictions received by the subscriber per second of the run",
    }
    with tempfile.TemporaryDirectory(prefix="edge-har-soak-", dir=work_dir) as tmp:
        work = Path(tmp)
        recordings = synthetic_recordings(bundle, seconds=30.0)
        replay = write_replay_folder(work / "replay", recordings)
        section["replay"] = {
            "data": f"synthetic recordings, one per label ({len(recordings)} x 30 s), looped",
            "rate_hz": float(bundle.preprocessing.sample_rate_hz),
            "pacing": "as fast as possible (lossless)" if settings.unpaced else f"{settings.speed:g} x real time",
        }
        try:
            broker = start_broker(work, settings.mosquitto)
        except E2EError as exc:
            raise SoakError(str(exc)) from exc
        section["broker"] = {"binary": broker.binary, "port": broker.port}
        config = work / "soak.yaml"
        config.write_text(_config_text(bundle, settings, broker, replay))
        counter = PredictionCounter(broker.host, broker.port, DEVICE_ID)
        daemon = DaemonProcess(
            config,
            work / "daemon.log",
            work / "summary.json",
            max_seconds=settings.startup_timeout_s + settings.duration_s + 120,
        )
        try:
            deadline = time.monotonic() + settings.startup_timeout_s
            while counter.count() == 0:
                if not daemon.alive():
                    raise SoakError(
                        f"the daemon exited with status {daemon.proc.returncode} before its first prediction; "
                        f"its log:\n{daemon.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise SoakError(f"no prediction within {settings.startup_timeout_s:g} s; log:\n{daemon.log_tail()}")
                time.sleep(0.05)
            daemon.sample(True, settings.interval_s)
            t0 = time.time()
            n0 = counter.count()
            end = t0 + settings.duration_s
            next_note = t0 + settings.progress_every_s
            while time.time() < end:
                if not daemon.alive():
                    raise SoakError(
                        f"the daemon exited with status {daemon.proc.returncode} after "
                        f"{time.time() - t0:.0f} s of the soak; its log:\n{daemon.log_tail()}"
                    )
                if settings.progress and time.time() >= next_note:
                    next_note += settings.progress_every_s
                    samples = list(daemon.samples)
                    rss = samples[-1][2] if samples else float("nan")
                    report.stderr(
                        f"soak: {time.time() - t0:.0f}/{settings.duration_s:g} s, "
                        f"{(counter.count() - n0) / (time.time() - t0):.0f} windows/s, RSS {rss:.1f} MB"
                    )
                time.sleep(min(1.0, max(0.0, end - time.time())))
            t1 = time.time()
            n1 = counter.count()
            daemon.sample(False)
            samples = list(daemon.samples)
        finally:
            code = daemon.stop()
            counter.close()
            broker.stop()
        section["exit_status"] = code
        section["daemon_summary"] = daemon.summary()
        section["daemon_log_tail"] = daemon.log_tail(1500)
    section.update(_figures(samples, t0, t1, n1 - n0, warmup, settings))
    stats = counter.last_stats or {}
    section["daemon_stats"] = {
        k: stats.get(k) for k in ("windows_total", "windows_per_s", "samples_total", "samples_dropped", "rss_mb")
    }
    section["daemon_stats"]["windows_dropped"] = (stats.get("extra") or {}).get("windows_dropped")
    section["daemon_stats"]["mqtt"] = stats.get("mqtt")
    section["seq_gaps"] = counter.seq_gaps
    return report.finish_section(section, started)


def _figures(
    samples: Sequence[tuple[float, float, float]],
    t0: float,
    t1: float,
    predictions: int,
    warmup: float,
    settings: SoakSettings,
) -> dict[str, Any]:
    t = np.array([s[0] - t0 for s in samples], dtype=np.float64)
    cpu = np.array([s[1] for s in samples], dtype=np.float64)
    rss = np.array([s[2] for s in samples], dtype=np.float64)
    measured = t1 - t0
    out: dict[str, Any] = {
        "measured_s": measured,
        "predictions": predictions,
        "windows_per_s": predictions / measured if measured > 0 else None,
        "warmup_s": warmup,
        "samples": [[round(float(a), 3), round(float(b), 3)] for a, b in zip(t, rss)],
    }
    if rss.size:
        out["rss_mb"] = {
            "start": float(rss[0]),
            "end": float(rss[-1]),
            "max": float(rss.max()),
            "min": float(rss.min()),
            "mean": float(rss.mean()),
            "after_warmup_start": float(rss[t >= warmup][0]) if np.any(t >= warmup) else None,
        }
        out["cpu_percent_of_one_core"] = float(cpu.mean())
    fitted = t >= warmup
    slope = rss_slope(t[fitted], rss[fitted])
    half = t >= (warmup + measured) / 2
    slope["second_half"] = rss_slope(t[half], rss[half])
    out["slope"] = slope
    value = slope.get("mb_per_h")
    out["flat"] = None if value is None else bool(value <= settings.flat_mb_per_h)
    if value is not None and rss.size:
        out["hours_to_limit"] = (MEMORY_MAX_MB - float(rss[-1])) / value if value > 0 else None
    return out


# ====================================================================== output


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def format_soak(section: dict[str, Any]) -> str:
    parts = [report.context_lines(section)]
    replay = section.get("replay") or {}
    parts.append(f"replay: {replay.get('data')} at {replay.get('rate_hz'):g} Hz, {replay.get('pacing')}")
    rss = section.get("rss_mb") or {}
    slope = section.get("slope") or {}
    half = slope.get("second_half") or {}
    headers = [
        "minutes",
        "windows/s",
        "RSS start MB",
        "RSS end MB",
        "RSS max MB",
        "slope MB/h",
        "+/- MB/h",
        "2nd half MB/h",
        "flat",
        "h to 300 MB",
        "CPU % of a core",
        "seq gaps",
        "exit",
    ]
    row = [
        _f(section.get("measured_s", 0) / 60, 1),
        _f(section.get("windows_per_s"), 1),
        _f(rss.get("start")),
        _f(rss.get("end")),
        _f(rss.get("max")),
        _f(slope.get("mb_per_h"), 3),
        _f(slope.get("stderr_mb_per_h"), 3),
        _f(half.get("mb_per_h"), 3),
        "-" if section.get("flat") is None else ("yes" if section["flat"] else "NO"),
        _f(section.get("hours_to_limit"), 1) if section.get("hours_to_limit") else "never",
        _f(section.get("cpu_percent_of_one_core"), 1),
        str(section.get("seq_gaps", "-")),
        str(section.get("exit_status")),
    ]
    parts.append(
        report.format_table(
            headers,
            [row],
            title=f"Soak (daemon + mosquitto on loopback, warm-up {section.get('warmup_s', 0):g} s excluded "
            f"from the fit): {section['bundle']['model_id']}",
        )
    )
    return "\n\n".join(parts)


def soak_png(section: dict[str, Any], path: str | Path) -> Optional[Path]:
    """RSS over time with the fitted line after the warm-up."""
    samples = section.get("samples") or []
    if not samples:
        return None
    plt = report._pyplot()  # noqa: SLF001 - the suites' one matplotlib loader
    fig, ax = plt.subplots(figsize=(8, 3.5))
    try:
        t = np.array([s[0] for s in samples]) / 60.0
        rss = np.array([s[1] for s in samples])
        ax.plot(t, rss, lw=0.8, label="daemon RSS")
        slope = section.get("slope") or {}
        if slope.get("mb_per_h") is not None:
            warm = section.get("warmup_s", 0.0) / 60.0
            xs = np.array([warm, t[-1]])
            ys = slope["intercept_mb"] + slope["mb_per_h"] * (xs - warm) / 60.0
            ax.plot(xs, ys, "--", color="tab:red", label=f"fit after warm-up: {slope['mb_per_h']:+.3f} MB/h")
            ax.axvline(warm, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("minutes since the first prediction")
        ax.set_ylabel("resident memory, MB")
        ax.set_title(f"Soak: {section.get('windows_per_s') or 0:.0f} windows/s", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        return report.save_figure(fig, path)
    finally:
        plt.close(fig)
