"""``edge-har bench web-predict``: the latency of ``POST /api/predict`` over HTTP on loopback.

What is measured, precisely: a real uvicorn serves ``edge_har.web.app.create_app`` in a thread of
this process (:class:`~edge_har.web.background.BackgroundServer`, on a free 127.0.0.1 port); one
client on one keep-alive connection uploads the same recording N times, one request after the
other, as a browser's Predict page does (multipart/form-data, a white-space text file). Per
request three times are kept:

* **http**: the client's wall time from sending the request to having read the whole JSON reply:
  multipart parsing, the recording reader, windowing and normalisation, the interpreter, the reply's
  JSON and the loopback round trip;
* **server**: the reply's ``total_ms`` (the server's time after the upload arrived);
* **interpreter**: the reply's per-window ``latency_ms`` (the model alone).

The recording is ``--seconds`` long (default 3 s: one window of an HMP bundle), taken from
``--recording FILE`` or, without one, drawn at random in the bundle's own value range (its
normalisation mean and std mapped back to raw codes): the latency does not depend on the values.
The first ``--warmup`` requests are not counted.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edge_har.benchmarks import report
from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

BOUNDARY = "edge-har-bench-boundary"


class WebPredictError(EdgeHarError, RuntimeError):
    """The suite cannot run (a bundle that is not a sensor bundle, a recording too short, a failing request)."""


@dataclass
class WebPredictSettings:
    requests: int = 300
    warmup: int = 20
    seconds: float = 3.0
    variant: Optional[str] = None
    recording: Optional[Path] = None

    @classmethod
    def quick_settings(cls) -> WebPredictSettings:
        return cls(requests=40, warmup=5)


def recording_text(bundle: Any, seconds: float, recording: Optional[Path] = None, seed: int = 0) -> tuple[str, int]:
    """(white-space text of the upload, its number of samples) at the bundle's rate."""
    pre = bundle.preprocessing
    n = int(round(seconds * pre.sample_rate_hz))
    if n < pre.window:
        raise WebPredictError(
            f"--seconds {seconds:g} gives {n} samples, fewer than one window ({pre.window} samples, "
            f"{pre.window_seconds:g} s) of {bundle.model_id}"
        )
    if recording is not None:
        from edge_har.core.recordings import read_samples

        samples = read_samples(recording, n_channels=pre.n_channels)
        if len(samples) < n:
            raise WebPredictError(f"--recording {recording}: {len(samples)} samples, {n} needed for {seconds:g} s")
        samples = samples[:n]
    else:
        rng = np.random.default_rng(seed)
        c = pre.n_channels
        mean = np.asarray(pre.mean if pre.mean is not None else [0.0] * c, np.float64)
        std = np.asarray(pre.std if pre.std is not None else [1.0] * c, np.float64)
        scale = np.broadcast_to(np.asarray(pre.scale, np.float64), (c,))
        offset = np.broadcast_to(np.asarray(pre.offset, np.float64), (c,))
        values = mean + std * rng.standard_normal((n, c))
        samples = (values - offset) / scale
    return "\n".join(" ".join(f"{v:.5g}" for v in row) for row in samples) + "\n", n


def _multipart(filename: str, text: str, model_id: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model_id"\r\n\r\n{model_id}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: text/plain\r\n\r\n{text}\r\n--{BOUNDARY}--\r\n"
    ).encode()


def run_web_predict(bundle: Any, settings: WebPredictSettings, progress: bool = True) -> dict[str, Any]:
    """Serve ``bundle``, upload the recording ``settings.requests`` times, return the results section."""
    from edge_har.web.app import create_app
    from edge_har.web.background import BackgroundServer
    from edge_har.web.config import ServeConfig
    from edge_har.web.predict import LoadedModel

    if bundle.kind != "sensor":
        raise WebPredictError(f"{bundle.root}: a {bundle.kind} bundle; this suite uploads sensor recordings")
    section = report.suite_header("web-predict", bundle)
    started = time.perf_counter()
    variant = settings.variant or bundle.default_variant
    text, n_samples = recording_text(bundle, settings.seconds, settings.recording)
    model = LoadedModel.load(bundle.root, variant)
    body = _multipart("bench.txt", text, model.model_id)
    with tempfile.TemporaryDirectory(prefix="edge-har-bench-web-") as tmp:
        cfg = ServeConfig(bundles=(bundle.root,), variant=variant, db_path=Path(tmp) / "bench.sqlite3")
        with BackgroundServer(create_app(cfg, [model])) as server:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.connect()
            # As browsers do: no Nagle delay between the request's head and its body (two writes).
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            http_ms: list[float] = []
            server_ms: list[float] = []
            model_ms: list[float] = []
            windows = 0
            headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Connection": "keep-alive"}
            total = settings.warmup + settings.requests
            measured_started = 0.0
            for i in range(total):
                if i == settings.warmup:
                    measured_started = time.perf_counter()
                t0 = time.perf_counter()
                conn.request("POST", "/api/predict", body=body, headers=headers)
                reply = conn.getresponse()
                raw = reply.read()
                elapsed = (time.perf_counter() - t0) * 1000.0
                if reply.status != 200:
                    raise WebPredictError(f"POST /api/predict answered {reply.status}: {raw[:300]!r}")
                if i < settings.warmup:
                    continue
                doc = json.loads(raw)
                http_ms.append(elapsed)
                server_ms.append(doc["total_ms"])
                model_ms.extend(w["latency_ms"] for w in doc["windows"])
                windows = len(doc["windows"])
                if progress and (i + 1) % max(1, total // 10) == 0:
                    report.stderr(f"web-predict: {i + 1}/{total} requests")
            measured_s = time.perf_counter() - measured_started
            conn.close()
    section.update(
        {
            "settings": {**asdict(settings), "recording": str(settings.recording) if settings.recording else None},
            "variant": variant,
            "interpreter": {"backend": model.backend, "version": model.backend_version},
            "upload": {
                "seconds": settings.seconds,
                "samples": n_samples,
                "bytes": len(body),
                "windows_per_request": windows,
                "window_seconds": bundle.preprocessing.window_seconds,
                "source": str(settings.recording) if settings.recording else "synthetic (bundle's value range)",
            },
            "http": report.latency_summary(http_ms),
            "server": report.latency_summary(server_ms),
            "interpreter_per_window": report.latency_summary(model_ms),
            "requests_per_s": settings.requests / measured_s if measured_s > 0 else None,
        }
    )
    return report.finish_section(section, started)


def format_web_predict(section: dict[str, Any]) -> str:
    up = section["upload"]
    rows = [
        [name, s["n"], s["p50_ms"], s["p95_ms"], s["mean_ms"], s["max_ms"]]
        for name, s in (
            ("HTTP round trip (client)", section["http"]),
            ("server (after upload)", section["server"]),
            ("interpreter per window", section["interpreter_per_window"]),
        )
    ]
    title = (
        f"POST /api/predict on loopback: {section['bundle']['model_id']} ({section['variant']}, "
        f"{section['interpreter']['backend']}), a {up['seconds']:g} s recording ({up['samples']} samples, "
        f"{up['windows_per_request']} window(s) of {up['window_seconds']:g} s, {up['bytes']} bytes)"
    )
    table = report.format_table(["time", "n", "p50 ms", "p95 ms", "mean ms", "max ms"], rows, title)
    rate = section.get("requests_per_s")
    return f"{report.context_lines(section)}\n\n{table}\n\nsequential requests per second: {report.fmt(rate, 1)}"


def comparison_rows(section: dict[str, Any], previous: dict[str, Any]) -> list[list[Any]]:
    """Rows of ``--compare``: p50 and p95 of each time, then and now, and requests per second."""
    rows: list[list[Any]] = []
    for key, name in (("http", "HTTP round trip"), ("server", "server"), ("interpreter_per_window", "interpreter")):
        for figure in ("p50_ms", "p95_ms"):
            a, b = (previous.get(key) or {}).get(figure), (section.get(key) or {}).get(figure)
            rows.append([name, figure.replace("_ms", " ms"), a, b, f"{b / a:.2f}x" if a and b else "-"])
    a, b = previous.get("requests_per_s"), section.get("requests_per_s")
    rows.append(["sequential", "requests/s", a, b, f"{b / a:.2f}x" if a and b else "-"])
    return rows
