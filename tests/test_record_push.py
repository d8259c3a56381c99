"""``edge-har record --push``: resumable upload of sessions to a server speaking the recordings
API's files protocol (GET sizes, POST ?offset=, PUT labels.csv), which goes away mid-push and comes
back; nothing local is ever changed, and what the server ends up with equals the local files."""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_har.core.recording_layout import RecordingMeta, session_dirs
from edge_har.device.recording.push import (
    PASSWORD_ENV,
    Pusher,
    PushError,
    ServeClient,
    answer_files,
    answer_size,
    read_token,
)
from edge_har.device.recording.writer import RecordingWriter
from edge_har.web.background import free_port
from tests.record_helpers import FakeMicrocontroller, Feeder, record_process, write_config

TOKEN = "s3cret-serve"
DEVICE = "pi-push"


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = False  # server_close() waits for requests in flight: a stop is a stop


class FilesServer:
    """A real HTTP server with the recordings files protocol of serve (contract section 4), on a fixed
    port so it can stop and start again with the same storage. Counts what it received."""

    def __init__(self, root: Path, port: Optional[int] = None, token: str = TOKEN, delay_s: float = 0.0) -> None:
        self.root = root
        self.port = port or free_port()
        self.token = token
        self.delay_s = delay_s
        self.max_body = 1 << 20
        self.posts: list[tuple[str, int, int]] = []  # (name, offset, body bytes) of every applied append
        self.conflicts = 0
        self.puts: list[bytes] = []
        self.httpd: Optional[ThreadingHTTPServer] = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FilesServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self) -> Optional[tuple[Path, Optional[str], dict[str, list[str]]]]:
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    self._answer(401, {"detail": "Not authenticated"})
                    return None
                parsed = urllib.parse.urlsplit(self.path)
                parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
                if parts[:2] != ["api", "recordings"] or len(parts) not in (5, 6) or parts[4] != "files":
                    self._answer(404, {"detail": "no such route"})
                    return None
                folder = server.root / parts[2] / parts[3]
                return folder, (parts[5] if len(parts) == 6 else None), urllib.parse.parse_qs(parsed.query)

            def do_GET(self) -> None:
                route = self._route()
                if route is None:
                    return
                folder, _, _ = route
                files = {p.name: p.stat().st_size for p in folder.iterdir()} if folder.is_dir() else {}
                self._answer(200, {"files": files})

            def do_POST(self) -> None:
                route = self._route()
                if route is None:
                    return
                folder, name, query = route
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if len(body) > server.max_body:
                    self._answer(413, {"detail": "too large"})
                    return
                time.sleep(server.delay_s)
                assert name is not None
                with server.lock:
                    path = folder / name
                    size = path.stat().st_size if path.exists() else 0
                    offset = int(query["offset"][0])
                    if offset != size:
                        server.conflicts += 1
                        self._answer(409, {"detail": f"offset {offset} is not the size {size}", "size": size})
                        return
                    folder.mkdir(parents=True, exist_ok=True)
                    with open(path, "ab") as f:
                        f.write(body)
                    server.posts.append((name, offset, len(body)))
                    self._answer(200, {"name": name, "size": size + len(body)})

            def do_PUT(self) -> None:
                route = self._route()
                if route is None:
                    return
                folder, name, _ = route
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                folder.mkdir(parents=True, exist_ok=True)
                (folder / str(name)).write_bytes(body)
                server.puts.append(body)
                self._answer(200, {"name": name, "size": len(body), "kept": "device"})

        self.httpd = _Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def held(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())


@pytest.fixture
def files_server(tmp_path):
    servers: list[FilesServer] = []

    def make(**options: Any) -> FilesServer:
        server = FilesServer(tmp_path / "server", **options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def serve(tmp_path, web_server):
    """``serve(**ServeConfig options) -> (server, store)``: edge-har serve with the password TOKEN; ``store`` is
    its --recordings-dir. Skipped where serve has no recordings API."""
    pytest.importorskip("fastapi", reason="the web extra is not installed")
    pytest.importorskip("edge_har.web.recordings", reason="serve has no recordings API in this checkout")
    from edge_har.web.config import ServeConfig

    def start(**options: Any) -> tuple[Any, Path]:
        store = tmp_path / "serve-recordings"
        cfg = ServeConfig(password=TOKEN, db_path=tmp_path / "serve.sqlite3", recordings_dir=store, **options)
        return web_server(cfg), store

    return start


def same_files(local: Path, held: Path) -> bool:
    """Every local file of the session is on serve with the same bytes (serve may hold more, e.g. its own)."""
    mine = digests(local)
    return held.is_dir() and {k: v for k, v in digests(held).items() if k in mine} == mine


def write_session(root: Path, session_id: str, rows: int, rotate_bytes: int = 64 << 10) -> Path:
    """A closed session of ``rows`` samples in several parts, with two labels."""
    meta = RecordingMeta(DEVICE, session_id, 1.7e9, ["ax", "ay", "az"], 50.0, source="serial")
    writer = RecordingWriter(root / DEVICE / session_id, meta, rotate_bytes=rotate_bytes)
    rng = np.random.default_rng(0)
    t0 = 1.7e9
    for start in range(0, rows, 500):
        n = min(500, rows - start)
        writer.write(t0 + (start + np.arange(n)) / 50.0, rng.normal(size=(n, 3)).astype(np.float32))
        if start == 0:
            writer.set_label("walk", t0 + 1)
    writer.set_label("sit", t0 + rows / 100)
    writer.close()
    return writer.session_dir


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def wait_until(check, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def fast_pusher(server: FilesServer, root: Path, **options: Any) -> Pusher:
    options.setdefault("interval_s", 0.05)
    return Pusher(
        ServeClient(server.url, TOKEN, timeout_s=5),
        root / DEVICE,
        DEVICE,
        backoff_min_s=0.05,
        backoff_max_s=0.3,
        **options,
    )


# ====================================================================== resume across an outage


def test_push_resumes_from_the_servers_size_after_the_server_goes_away(tmp_path, files_server, caplog):
    local = tmp_path / "rec"
    session = write_session(local, "20261207T060000Z", rows=30_000)
    before = digests(session)
    total = sum(p.stat().st_size for p in session.iterdir())
    server = files_server(delay_s=0.01)
    pusher = fast_pusher(server, local, chunk_bytes=16 << 10)
    caplog.set_level(logging.INFO, logger="edge_har.device.recording.push")
    pusher.start()
    try:
        wait_until(lambda: server.held() > total // 4, what="a quarter on the server")
        server.stop()  # mid-push
        held_at_stop = server.held()
        assert held_at_stop < total
        wait_until(lambda: pusher.failures >= 2, what="failed attempts while the server is away")
        assert digests(session) == before  # nothing local touched
        posts_before = len(server.posts)
        server.start()  # the same port, the same storage
        server_folder = server.root / DEVICE / session.name
        wait_until(lambda: server_folder.is_dir() and digests(server_folder) == before, what="the whole session")
    finally:
        pusher.stop(drain_s=2)
    assert digests(session) == before
    appended = sum(n for _, _, n in server.posts)
    assert appended == total - len((session / "labels.csv").read_bytes())  # every byte appended once: resumed
    assert len(server.posts) > posts_before and server.conflicts == 0  # went on from the sizes GET files gave
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot take uploads" in m for m in messages) == 1  # one warning per outage
    assert any("answers again" in m for m in messages)


def test_push_sends_only_finished_parts_of_the_session_being_written_and_labels_on_change(tmp_path, files_server):
    local = tmp_path / "rec"
    server = files_server()
    meta = RecordingMeta(DEVICE, "20261207T070000Z", 1.7e9, ["a", "b", "c"], 50.0)
    writer = RecordingWriter(local / DEVICE / meta.session_id, meta, rotate_bytes=4096)
    pusher = fast_pusher(server, local)
    pusher.set_active(writer.session_dir)
    rng = np.random.default_rng(1)
    for k in range(10):
        writer.write(1.7e9 + k + np.arange(50) / 50, rng.normal(size=(50, 3)))
    writer.set_label("walk", 1.7e9 + 2)
    pusher.note_finished(writer.finished_parts())
    assert pusher.run_pass() is False  # still being written
    held = server.root / DEVICE / meta.session_id
    finished = {p.name for p in writer.finished_parts()}
    current = writer.part_path
    assert finished and current is not None
    assert {"recording.json", "labels.csv"} | finished == {p.name for p in held.iterdir()}
    assert (held / "labels.csv").read_bytes() == (writer.session_dir / "labels.csv").read_bytes()
    puts = len(server.puts)
    pusher.run_pass()
    assert len(server.puts) == puts  # unchanged labels are not sent again
    writer.set_label(None, 1.7e9 + 5)
    writer.close()
    pusher.set_active(None)
    assert pusher.run_pass() is True
    assert digests(held) == digests(writer.session_dir)
    assert len(server.puts) == puts + 1


def test_push_with_a_wrong_password_keeps_everything_local_and_says_why(tmp_path, serve, caplog):
    local = tmp_path / "rec"
    session = write_session(local, "20261207T080000Z", rows=600)
    before = digests(session)
    server, store = serve()
    pusher = Pusher(
        ServeClient(server.url, "not-the-password", timeout_s=5),
        local / DEVICE,
        DEVICE,
        interval_s=0.05,
        backoff_min_s=0.05,
        backoff_max_s=0.3,
    )
    caplog.set_level(logging.WARNING, logger="edge_har.device.recording.push")
    pusher.start()
    wait_until(lambda: pusher.failures >= 3, what="refusals")
    pusher.stop(drain_s=0.5)
    assert digests(session) == before and not (store / DEVICE).exists()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "HTTP 401" in warnings[0] and "--password-file" in warnings[0]


def test_push_leaves_a_file_the_server_holds_more_of_alone(tmp_path, files_server, caplog):
    local = tmp_path / "rec"
    session = write_session(local, "20261207T090000Z", rows=600)
    server = files_server()
    held = server.root / DEVICE / session.name
    held.mkdir(parents=True)
    (held / "part-00000.csv").write_bytes((session / "part-00000.csv").read_bytes() + b"extra,1,2,3\n")
    pusher = fast_pusher(server, local)
    assert pusher.run_pass() is False
    assert pusher.run_pass() is False  # logged once, skipped for this run
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "part-00000.csv" in errors[0] and "more than" in errors[0]
    assert (held / "recording.json").read_bytes() == (session / "recording.json").read_bytes()


def test_push_halves_its_chunks_when_the_server_limits_the_body(tmp_path, files_server, serve):
    local = tmp_path / "rec"
    session = write_session(local, "20261207T100000Z", rows=6000, rotate_bytes=1 << 20)
    server = files_server()
    server.max_body = 40_000
    pusher = fast_pusher(server, local, chunk_bytes=1 << 20)
    assert pusher.run_pass() is True
    assert digests(server.root / DEVICE / session.name) == digests(session)
    assert max(n for _, _, n in server.posts) <= 40_000
    real, store = serve(max_upload_bytes=40_000)  # serve's own --max-upload-mb answer (413)
    pusher = Pusher(ServeClient(real.url, TOKEN, timeout_s=5), local / DEVICE, DEVICE, chunk_bytes=1 << 20)
    assert pusher.run_pass() is True
    assert same_files(session, store / DEVICE / session.name)


def test_the_token_comes_from_the_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    assert read_token(None) is None
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert read_token(None) == "from-env"
    f = tmp_path / "pw"
    f.write_text("from-file\nsecond line\n")
    assert read_token(f) == "from-file"
    f.write_text("\n")
    with pytest.raises(PushError, match="empty"):
        read_token(f)
    with pytest.raises(PushError, match="cannot read"):
        read_token(tmp_path / "missing")
    with pytest.raises(PushError, match="not an http"):
        ServeClient("ftp://host/")


# ====================================================================== the command


@pytest.fixture
def mcu(tmp_path):
    pytest.importorskip("serial", reason="pyserial is not installed (pip install 'edge-har[device]')")
    device = FakeMicrocontroller(tmp_path)
    yield device
    device.unplug()


def test_record_push_uploads_earlier_and_current_sessions_and_drains_at_exit(tmp_path, serve, mcu):
    out = tmp_path / "rec"
    earlier = write_session(out, "20261201T000000Z", rows=2000)  # from a run while serve was away
    server, store = serve()
    cfg = write_config(tmp_path, mcu.port, device_id=DEVICE, rate_hz=500)
    (tmp_path / "pw").write_text(TOKEN + "\n")
    proc = record_process(
        ["--config", str(cfg), "--out", str(out), "--channels", "3", "--rate", "500", "--classes", "sit,walk"]
        + ["--no-mqtt", "--rotate-mb", "0.01", "--push", server.url, "--password-file", str(tmp_path / "pw")]
        + ["--duration", "60"]
    )
    feeder = Feeder(mcu, rate_hz=500)
    try:
        wait_until(lambda: len(list(out.glob(f"{DEVICE}/*/recording.json"))) == 2, what="the session")
        feeder.start()
        current = next(s for s in session_dirs(out) if s != earlier)
        wait_until(lambda: (store / DEVICE / current.name / "part-00001.csv").exists(), what="a rotated part")
        feeder.stop()
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        feeder.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    for session in (earlier, current):
        assert same_files(session, store / DEVICE / session.name)  # the last part too, at exit


# ====================================================================== serve's answers, fuzzed

_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
_ANSWERS = st.one_of(
    st.binary(max_size=200),
    _JSONISH.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["files", "size", "detail"]), _JSONISH, max_size=3).map(
        lambda v: json.dumps(v).encode()
    ),
    st.sampled_from([b'{"size": 1e400}', b'{"size": true}', b'{"files": {"a": -1}}', b"[" * 5000]),
)


@settings(max_examples=50, deadline=None)
@given(_ANSWERS)
def test_serve_answers_give_a_size_or_files_or_none(body):
    size = answer_size(body)
    assert size is None or (type(size) is int and size >= 0)
    files = answer_files(body)
    assert files is None or all(type(v) is int and v >= 0 for v in files.values())


def test_serve_answers_examples():
    assert answer_size(b'{"name": "part-00000.csv", "size": 12}') == 12
    assert answer_size(b'{"detail": "x", "size": 7}') == 7
    assert answer_size(b'{"size": -1}') is None and answer_size(b'{"size": 1.5}') is None
    assert answer_files(b'{"files": {"recording.json": 300, "part-00000.csv": 0}}') == {
        "recording.json": 300,
        "part-00000.csv": 0,
    }
    assert answer_files(b'{"files": []}') is None and answer_files(b"not json") is None


# ====================================================================== against edge-har serve itself


def test_push_to_edge_har_serve_resumes_after_serve_restarts(tmp_path, serve, caplog):
    from edge_har.web.app import create_app
    from tests.plugins.web import WebServer

    local = tmp_path / "rec"
    session = write_session(local, "20261207T110000Z", rows=40_000)
    before = digests(session)
    total = sum(p.stat().st_size for p in session.iterdir())
    server, store = serve()
    held = store / DEVICE / session.name

    def held_bytes() -> int:
        return sum(p.stat().st_size for p in held.iterdir() if p.name in before) if held.is_dir() else 0

    pusher = Pusher(
        ServeClient(server.url, TOKEN, timeout_s=5),
        local / DEVICE,
        DEVICE,
        interval_s=0.05,
        backoff_min_s=0.05,
        backoff_max_s=0.3,
        chunk_bytes=16 << 10,
    )
    caplog.set_level(logging.INFO, logger="edge_har.device.recording.push")
    pusher.start()
    restarted = None
    try:
        wait_until(lambda: held_bytes() > total // 5, what="a fifth on serve")
        server.stop()
        at_stop = held_bytes()
        assert at_stop < total
        wait_until(lambda: pusher.failures >= 2, what="failed attempts while serve is away")
        assert digests(session) == before
        sent_before = pusher.bytes_sent
        restarted = WebServer(server.cfg, create_app(server.cfg), server.port).start()
        wait_until(lambda: same_files(session, held), timeout=60, what="the whole session on serve")
    finally:
        pusher.stop(drain_s=2)
        if restarted is not None:
            restarted.stop()
    assert digests(session) == before
    labels = len((session / "labels.csv").read_bytes())
    # Every byte appended once (an append whose answer was lost at the stop is found by GET files, not re-sent).
    assert total - labels - (16 << 10) <= pusher.bytes_sent <= total - labels
    assert pusher.bytes_sent - sent_before <= total - labels - at_stop + (16 << 10)
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_labels_the_device_sends_after_a_persons_edit_are_kept_beside_it(tmp_path, serve, caplog):
    import urllib.request

    from edge_har.core.recording_layout import LabelSegment, read_labels, write_labels

    local = tmp_path / "rec"
    session = write_session(local, "20261207T120000Z", rows=1000)
    server, store = serve()
    assert Pusher(ServeClient(server.url, TOKEN), local / DEVICE, DEVICE).run_pass() is True
    held = store / DEVICE / session.name
    edit = {"segments": [{"label": "walk", "start": 1.7e9 + 2, "end": 1.7e9 + 9}]}
    request = urllib.request.Request(
        f"{server.url}/api/recordings/{DEVICE}/{session.name}/labels",
        data=json.dumps(edit).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).read()
    person = (held / "labels.csv").read_bytes()
    write_labels(session, [*read_labels(session), LabelSegment("sit", 1.7e9 + 30, 1.7e9 + 40)])  # the device's change
    caplog.set_level(logging.INFO, logger="edge_har.device.recording.push")
    assert Pusher(ServeClient(server.url, TOKEN), local / DEVICE, DEVICE).run_pass() is True  # a later run
    assert (held / "labels.csv").read_bytes() == person  # the person's edit wins
    assert (held / "labels.device.csv").read_bytes() == (session / "labels.csv").read_bytes()  # nothing lost
    assert any("a person edited the labels" in r.getMessage() for r in caplog.records)


# ====================================================================== --push-only: a folder nothing writes to


def test_push_only_uploads_a_finished_folder_and_says_when_serve_is_away(tmp_path, serve):
    """The daemon's captures (or an earlier run's recordings) go up with ``record --push-only``: exit 0 once serve
    holds every byte; with serve away, exit 4 after --push-wait with one line, nothing local touched."""
    out = tmp_path / "captures"
    sessions = [write_session(out, f"capture-{i}", rows=300 + 50 * i) for i in range(3)]
    before = {s.name: digests(s) for s in sessions}
    config = tmp_path / "device.yaml"
    config.write_text(f"device_id: {DEVICE}\nbundle: {tmp_path / 'no-bundle'}\nsource: {{type: replay, path: x}}\n")
    (tmp_path / "pw").write_text(TOKEN + "\n")
    args = ["--config", str(config), "--out", str(out), "--password-file", str(tmp_path / "pw"), "--push-only"]

    away = record_process([*args, "--push", f"http://127.0.0.1:{free_port()}", "--push-wait", "1"])
    _, err = away.communicate(timeout=60)
    assert away.returncode == 4, err[-2000:]
    assert "run it again" in err and {s.name: digests(s) for s in sessions} == before

    server, store = serve()
    done = record_process([*args, "--push", server.url, "--push-wait", "30"])
    _, err = done.communicate(timeout=90)
    assert done.returncode == 0, err[-2000:]
    assert "holds all 3 session(s)" in err
    for s in sessions:
        assert same_files(s, store / DEVICE / s.name)
    assert {s.name: digests(s) for s in sessions} == before

    missing = record_process([*args[:2], "--out", str(tmp_path / "nothing"), "--push", server.url, "--push-only"])
    _, err = missing.communicate(timeout=60)
    assert missing.returncode == 2 and f"no folder {tmp_path / 'nothing' / DEVICE}" in err
