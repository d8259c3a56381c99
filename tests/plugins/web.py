"""Fixtures for ``edge-har serve``: a real uvicorn server in a thread, a real headless Chromium page.

``web_server`` -> callable ``start(cfg: ServeConfig, app=None) -> WebServer``
    Serves ``create_app(cfg)`` (or ``app``) with uvicorn on 127.0.0.1 and a free port, in a
    background thread (:class:`edge_har.web.background.BackgroundServer`, which the benchmarks
    use too), and returns once the server answers HTTP. ``WebServer.url`` is its base URL
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

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest

from edge_har.web.background import BackgroundServer, free_port

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


class WebServer:
    """What ``web_server`` returns: ``cfg``, ``app``, ``port``, ``url``, ``server`` (the uvicorn.Server), ``stop()``.

    ``WebServer(cfg, app, port).start()`` starts another server by hand (a restart on the same
    port); stop it yourself.
    """

    def __init__(self, cfg: Any, app: Any, port: int) -> None:
        self.cfg = cfg
        self.background = BackgroundServer(app, port)

    @property
    def port(self) -> int:
        return self.background.port

    @property
    def url(self) -> str:
        return self.background.url

    @property
    def app(self) -> Any:
        return self.background.app

    @property
    def server(self) -> Any:
        return self.background.server

    def start(self) -> WebServer:
        self.background.start(START_TIMEOUT_S)
        return self

    def stop(self) -> None:
        self.background.stop()


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
