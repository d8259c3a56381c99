"""A real uvicorn serving an app in a background thread: for the tests' browser and HTTP checks and the benchmarks.

``edge-har serve`` itself runs uvicorn in the main thread (signals, a clean stop on SIGTERM); a
test or a benchmark needs the same server beside its own code, on a free loopback port, started
only once it answers and stopped with the app's lifespan shutdown run.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Optional

from edge_har.core.errors import EdgeHarError
from edge_har.web.config import GRACEFUL_SHUTDOWN_S


class ServerError(EdgeHarError):
    """The background server did not start, answer or stop in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS's pick; another process could take it before us)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """``uvicorn.Server`` for ``app`` on ``host:port`` in a daemon thread; ``start()`` waits until it answers."""

    def __init__(self, app: Any, port: Optional[int] = None, host: str = "127.0.0.1", probe: str = "/static/app.css"):
        self.app = app
        self.host = host
        self.port = port or free_port(host)
        self.probe = probe
        self.server: Any = None
        self.thread: Optional[threading.Thread] = None
        self.errors: list[BaseException] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        import uvicorn

        from edge_har.web.http_server import uvicorn_options_for

        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="warning",
            # The host process (a benchmark, a test) owns logging: uvicorn's dictConfig would close and
            # replace its handlers, and a later record then writes to a stream that is gone.
            log_config=None,
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,  # open event streams never end by themselves
            **uvicorn_options_for(self.app),  # the slow-client deadlines `edge-har serve` runs with
        )
        self.server = uvicorn.Server(config)

        def run() -> None:
            try:
                self.server.run()
            except BaseException as exc:  # reported by start()
                self.errors.append(exc)

        self.thread = threading.Thread(target=run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.errors or not self.thread.is_alive():
                raise ServerError(f"the web server on port {self.port} did not start: {self.errors!r}")
            if self.server.started and self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"the web server on port {self.port} did not answer within {timeout:g} s")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.url + self.probe, timeout=2).close()
        except urllib.error.HTTPError:
            return True  # it answered (a 401 behind auth is an answer)
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """Ask uvicorn to finish (the app's lifespan shutdown runs), then join the thread."""
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():
                self.server.force_exit = True
                self.thread.join(5)
            if self.thread.is_alive():
                raise ServerError(f"the web server on port {self.port} did not stop")

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
