"""Fixtures for ``edge-har serve``: a real uvicorn server in a thread, a real headless Chromium page.

``web_server`` -> callable ``start(cfg: ServeConfig, app=None) -> WebServer``
    Serves ``create_app(cfg)`` (or ``app``) with uvicorn on 127.0.0.1 and a free port, in a
    background thread, and returns once the server answers HTTP. ``WebServer.url`` is its base URL
    (``http://127.0.0.1:PORT``); ``WebServer.stop()`` shuts it down cleanly (the app's lifespan
    runs its shutdown), and every server still running is stopped at the end of the test.
    ``cfg.port`` is ignored (a free port is picked); ``WebServer.cfg`` has the one used. A
    ``cfg.db_path`` left at its default becomes a file in the test's tmp_path.
``browser_page`` -> callable ``new_page(**context_options) -> playwright Page``
    Debian's ``/usr/bin/chromium`` driven by Playwright's sync API, headless, with a fresh
    user-data dir per page under the test's tmp_path (no state leaks between tests). Keyword
    arguments go to the browser context (``http_credentials={"username": ..., "password": ...}``,
    ``viewport=...``). Pages are closed at the end of the test. Never needs ``playwright install``.
``screenshot`` -> callable ``screenshot(page, name) -> Path``
    A full-page PNG saved as ``<tmp_path>/screenshots/<name>.png`` (the test's output folder).

Chromium is installed by scripts/bootstrap.sh; where it is missing the browser tests fail with
that one line rather than skip, so CI cannot pass without having run them.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WebServer:
    """A uvicorn server running an edge-har app in a background thread."""

    cfg: Any
    app: Any
    port: int
    server: Any = None
    thread: Optional[threading.Thread] = None
    errors: list[BaseException] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebServer:
        import uvicorn

        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", access_log=False
        )
        self.server = uvicorn.Server(config)

        def run() -> None:
            try:
                self.server.run()
            except BaseException as exc:  # noqa: BLE001 - reported by start()/stop()
                self.errors.append(exc)

        self.thread = threading.Thread(target=run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.errors or not self.thread.is_alive():
                raise RuntimeError(f"the web server on port {self.port} did not start: {self.errors!r}")
            if self.server.started and self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the web server on port {self.port} did not answer within {START_TIMEOUT_S:g} s")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.url + "/static/app.css", timeout=2).close()
        except urllib.error.HTTPError:
            return True  # it answered (401 behind auth is an answer)
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 15.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():
                self.server.force_exit = True
                self.thread.join(5)
            assert not self.thread.is_alive(), f"the web server on port {self.port} did not stop"


@pytest.fixture
def web_server(tmp_path) -> Any:
    from edge_har.web.app import create_app
    from edge_har.web.config import DEFAULT_DB_PATH

    running: list[WebServer] = []

    def start(cfg: Any, app: Any = None) -> WebServer:
        port = free_port()
        cfg = replace(cfg, port=port)
        if cfg.db_url is None and cfg.db_path == DEFAULT_DB_PATH:  # never the working directory's file
            cfg = replace(cfg, db_path=tmp_path / f"web-{port}.sqlite3")
        server = WebServer(cfg, app if app is not None else create_app(cfg), port).start()
        running.append(server)
        return server

    yield start
    for server in reversed(running):
        server.stop()


@pytest.fixture
def browser_page(tmp_path) -> Any:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/bootstrap.sh does)")
    pw = sync_api.sync_playwright().start()
    contexts: list[Any] = []

    def new_page(**context_options: Any) -> Any:
        profile = tmp_path / f"chromium-profile-{len(contexts)}"
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            **{"viewport": {"width": 1100, "height": 800}, **context_options},
        )
        contexts.append(context)
        context.set_default_timeout(15_000)
        return context.pages[0] if context.pages else context.new_page()

    try:
        yield new_page
    finally:
        for context in contexts:
            try:
                context.close()
            except Exception:  # noqa: BLE001 - a browser that already died still lets the test report
                pass
        pw.stop()


@pytest.fixture
def screenshot(tmp_path) -> Callable[[Any, str], Path]:
    folder = tmp_path / "screenshots"

    def take(page: Any, name: str) -> Path:
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
