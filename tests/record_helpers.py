"""Shared parts of the ``edge-har record`` tests: a serial microcontroller on a pty that sends known
lines, a device config for it, and a way to run the command (as a process or in a thread)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tests.test_sources import FakeMicrocontroller

__all__ = ["Feeder", "FakeMicrocontroller", "record_process", "write_bundle_json", "write_config"]

REPO = Path(__file__).resolve().parents[1]


def write_config(
    tmp_path: Path,
    port: Path,
    *,
    broker: Any = None,
    bundle: Optional[Path] = None,
    device_id: str = "pi-rec",
    home_assistant: bool = False,
    rate_hz: float = 50.0,
) -> Path:
    """A device config reading ``port`` at ``rate_hz``, with ``broker``'s MQTT section when given."""
    lines = [
        f"device_id: {device_id}",
        f"bundle: {bundle or tmp_path / 'no-bundle-yet'}",
        f"source: {{type: serial, port: {port}, rate_hz: {rate_hz}, timeout: 0, reconnect: {{min_s: 0.05, max_s: 0.2}}}}",
    ]
    if broker is not None:
        lines += [
            "mqtt:",
            f"  host: {broker.host}",
            f"  port: {broker.port}",
            "  reconnect_min_s: 0.1",
            "  reconnect_max_s: 1",
        ]
        if home_assistant:
            lines += ["  home_assistant: {enabled: true}"]
    path = tmp_path / "device.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_bundle_json(folder: Path, labels: list[str], channels: list[str], rate_hz: float = 32.0) -> Path:
    """A sensor bundle.json that Bundle.load accepts (its model file is never loaded by record)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.tflite").write_bytes(b"not loaded by record")
    c = len(channels)
    doc = {
        "schema_version": 1,
        "model_id": "tiny-test-model",
        "kind": "sensor",
        "labels": labels,
        "input": {"shape": [1, 64, c], "dtype": "float32"},
        "preprocessing": {
            "sample_rate_hz": rate_hz,
            "window": 64,
            "stride": 16,
            "channels": channels,
            "value_scaling": {"scale": [3 / 63], "offset": [-1.5], "units": "g"},
        },
        "default_variant": "float32",
        "variants": {
            "float32": {
                "file": "model.tflite",
                "sha256": "0" * 64,
                "size_bytes": 20,
                "quantization": "none",
                "input": {"shape": [1, 64, c], "dtype": "float32"},
                "output": {"shape": [1, len(labels)], "dtype": "float32"},
            }
        },
    }
    (folder / "bundle.json").write_text(json.dumps(doc))
    return folder


class Feeder:
    """Sends sample lines ``i, i/2, -i`` (exact in float32) to the pty at ``rate_hz`` in a thread."""

    def __init__(self, mcu: FakeMicrocontroller, rate_hz: float = 50.0, start: int = 0) -> None:
        self.mcu = mcu
        self.period = 1.0 / rate_hz
        self.next = start
        self.sent: list[tuple[float, list[float]]] = []  # (time.time() when sent, values)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> Feeder:
        self.mcu.send("\n")  # the source skips what precedes the first newline after opening
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        k = 0
        while not self._stop.is_set():
            i = self.next
            values = [float(i), i / 2, -float(i)]
            try:
                self.mcu.send(f"{i},{i / 2},{-i}\n")
            except OSError:
                return
            self.sent.append((time.time(), values))
            self.next += 1
            k += 1
            delay = t0 + k * self.period - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def values(self) -> np.ndarray:
        return np.array([v for _, v in self.sent], dtype=np.float32).reshape(-1, 3)


def record_process(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    """``python -m edge_har record ARGS`` with output captured as text."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "edge_har", "record", *args],
        cwd=kwargs.pop("cwd", REPO),
        env=env,
        stdin=kwargs.pop("stdin", subprocess.DEVNULL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
