"""Counters and latency percentiles of a running daemon, for the periodic stats message.

Latencies are kept per interval (between two stats messages) so the percentiles describe
the recent past rather than the whole uptime, with a cap on the samples kept so a fast
replay cannot grow memory: past ``max_samples`` values a uniform reservoir sample is kept.
A run-wide copy (also capped) serves the daemon's exit summary and the benchmarks.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any, Optional

import numpy as np

PERCENTILES = (50, 90, 95, 99)


class Reservoir:
    """At most ``capacity`` values, a uniform sample of all added (Vitter's algorithm R)."""

    def __init__(self, capacity: int = 20000, seed: int = 0) -> None:
        self.capacity = capacity
        self.values: list[float] = []
        self.count = 0
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.count += 1
        if len(self.values) < self.capacity:
            self.values.append(value)
        else:
            j = self._rng.randrange(self.count)
            if j < self.capacity:
                self.values[j] = value

    def summary(self) -> Optional[dict[str, float]]:
        """p50/p90/p95/p99/max (and mean), or None when empty."""
        if not self.values:
            return None
        arr = np.asarray(self.values, dtype=np.float64)
        out = {f"p{p}": float(np.percentile(arr, p)) for p in PERCENTILES}
        out["max"] = float(arr.max())
        out["mean"] = float(arr.mean())
        return out


def rss_mb() -> Optional[float]:
    """Resident memory of this process in MiB (psutil, else /proc), or None where neither works."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / (1024 * 1024)
    except Exception:
        pass
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return None


class DaemonStats:
    """Thread-safe counters of one daemon run."""

    def __init__(self, max_samples: int = 20000) -> None:
        self._lock = threading.Lock()
        self.started_mono = time.monotonic()
        self.started_unix = time.time()
        self.max_samples = max_samples
        self.windows_total = 0
        self.windows_dropped = 0  # dropped from the full window queue
        self.predictions_published = 0
        self.first_prediction_s: Optional[float] = None  # since start
        self.truth_total = 0
        self.truth_correct = 0  # raw (unsmoothed) predictions equal to the replay's label
        self.truth_correct_smoothed = 0
        self._interval_start = time.monotonic()
        self._interval_windows = 0
        self._inference = Reservoir(max_samples)
        self._e2e = Reservoir(max_samples)
        self.run_inference = Reservoir(max_samples, seed=1)
        self.run_e2e = Reservoir(max_samples, seed=2)

    def uptime_s(self) -> float:
        return time.monotonic() - self.started_mono

    def window_dropped(self, n: int = 1) -> None:
        with self._lock:
            self.windows_dropped += n

    def prediction(self, inference_ms: float, e2e_ms: float, label: str, raw_label: str, truth: Optional[str]) -> None:
        with self._lock:
            self.windows_total += 1
            self._interval_windows += 1
            self._inference.add(inference_ms)
            self._e2e.add(e2e_ms)
            self.run_inference.add(inference_ms)
            self.run_e2e.add(e2e_ms)
            if self.first_prediction_s is None:
                self.first_prediction_s = self.uptime_s()
            if truth:
                self.truth_total += 1
                self.truth_correct += raw_label == truth
                self.truth_correct_smoothed += label == truth

    def take_interval(self) -> dict[str, Any]:
        """Windows/s and latency percentiles since the last call; starts the next interval."""
        with self._lock:
            now = time.monotonic()
            elapsed = max(now - self._interval_start, 1e-9)
            out = {
                "windows_per_s": self._interval_windows / elapsed,
                "inference_ms": self._inference.summary(),
                "e2e_ms": self._e2e.summary(),
            }
            self._interval_start = now
            self._interval_windows = 0
            self._inference = Reservoir(self.max_samples)
            self._e2e = Reservoir(self.max_samples)
            return out

    def accuracy(self) -> Optional[dict[str, Any]]:
        with self._lock:
            if not self.truth_total:
                return None
            return {
                "windows": self.truth_total,
                "raw": self.truth_correct / self.truth_total,
                "smoothed": self.truth_correct_smoothed / self.truth_total,
            }

    def run_summary(self) -> dict[str, Any]:
        """The whole run: for the exit log line, ``--summary-json`` and the benchmarks."""
        with self._lock:
            return {
                "uptime_s": self.uptime_s(),
                "windows_total": self.windows_total,
                "windows_dropped": self.windows_dropped,
                "first_prediction_s": self.first_prediction_s,
                "inference_ms": self.run_inference.summary(),
                "e2e_ms": self.run_e2e.summary(),
                "rss_mb": rss_mb(),
            }
