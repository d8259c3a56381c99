"""Background upload of recorded sessions to ``edge-har serve``, resumable byte for byte.

For each session under ``DIR/<device>/`` the pusher asks serve what it holds
(``GET .../files`` -> ``{name: size}``) and appends only the missing bytes of each file
(``POST .../files/<name>?offset=<size>``); a 409 answer carries serve's size, from which it goes
on. Only files that no longer change are appended: ``recording.json``, the parts the writer has
rotated away from, and every part of a session that is no longer being written. ``labels.csv``
is rewritten as a whole on every change, so it is sent with ``PUT`` whenever it differs from what
was last sent. Nothing local is ever deleted or truncated here: serve holding a file is the only
thing that changes, and a server that goes away (refused, timed out, 5xx) is retried with
exponential backoff and jitter while recording goes on. Stdlib ``urllib`` only: the device extra
carries no HTTP client.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from edge_har.core.errors import EdgeHarError
from edge_har.core.recording_layout import LABELS_FILE, LAYOUT_FILE, PART_RE
from edge_har.mqtt.bounded_json import RejectedMessage, parse_message

__all__ = [
    "PASSWORD_ENV",
    "PushError",
    "Pusher",
    "ServeClient",
    "Transient",
    "answer_files",
    "answer_size",
    "read_token",
]

log = logging.getLogger(__name__)

PASSWORD_ENV = "EDGE_HAR_PASSWORD"
CHUNK_BYTES = 1 << 20  # per POST; halved on 413 down to MIN_CHUNK_BYTES
MIN_CHUNK_BYTES = 16 << 10
MAX_ANSWER_BYTES = 1 << 20  # a GET files answer lists a session's files: far below this
MAX_FILE_BYTES = 1 << 40


class PushError(EdgeHarError, ValueError):
    """A push setting that cannot work (an unreadable password file, a URL that is not http(s))."""


class Transient(Exception):
    """Serve cannot be reached or answers 5xx/429: try again later."""


class Refused(Exception):
    """Serve refuses one request for good (4xx other than 409/413/429): skip that file for this run."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


class Conflict(Exception):
    """409: the offset was not serve's size; ``size`` is serve's."""

    def __init__(self, size: int) -> None:
        super().__init__(f"serve holds {size} bytes")
        self.size = size


class TooLarge(Exception):
    """413: the body exceeds serve's --max-upload-bytes."""


def read_token(password_file: Optional[Path]) -> Optional[str]:
    """The bearer token: the first line of ``password_file``, else ``$EDGE_HAR_PASSWORD``, else None."""
    if password_file is not None:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PushError(f"--password-file {password_file}: cannot read it: {exc}") from None
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not token:
            raise PushError(f"--password-file {password_file}: the file is empty")
        return token
    return os.environ.get(PASSWORD_ENV) or None


def _parse(body: bytes) -> Any:
    """Serve's JSON answer within bounds (size, nesting, numbers); None when it is not such JSON."""
    try:
        return parse_message(body, max_bytes=MAX_ANSWER_BYTES, max_depth=4)
    except RejectedMessage:
        return None


def _detail(body: bytes) -> str:
    """One line for a log: an error answer's ``detail``, else the start of the body."""
    data = _parse(body)
    text = str(data["detail"]) if isinstance(data, dict) and "detail" in data else body[:200].decode("utf-8", "replace")
    return " ".join(text.split())[:200]


def answer_size(body: bytes) -> Optional[int]:
    """``size`` of a serve answer (an upload's result or a 409), or None when it has no usable one."""
    data = _parse(body)
    size = data.get("size") if isinstance(data, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= MAX_FILE_BYTES else None


def answer_files(body: bytes) -> Optional[dict[str, int]]:
    """``{name: size}`` of a GET files answer, or None when it is not one (sizes must be whole and >= 0)."""
    data = _parse(body)
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        return None
    out: dict[str, int] = {}
    for name, size in files.items():
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
            return None
        out[name] = size
    return out


class ServeClient:
    """The recording routes of serve's API (contract section 4), over urllib."""

    def __init__(self, base_url: str, token: Optional[str] = None, timeout_s: float = 15.0) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise PushError(f"--push {base_url!r}: not an http:// or https:// URL of edge-har serve")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def _url(self, device: str, session: str, tail: str = "") -> str:
        q = urllib.parse.quote
        return f"{self.base_url}/api/recordings/{q(device, safe='')}/{q(session, safe='')}/files{tail}"

    def _request(self, method: str, url: str, data: Optional[bytes] = None) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/octet-stream"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            status, body = int(exc.code), exc.read()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise Transient(f"{type(exc).__name__}: {reason}") from None
        if status >= 500 or status == 429:
            raise Transient(f"HTTP {status}: {_detail(body)}")
        if status in (401, 403):
            raise Transient(f"HTTP {status}: serve refuses the password; check --password-file or ${PASSWORD_ENV}")
        if status == 409:
            size = answer_size(body)
            if size is None:
                raise Refused(status, f"a 409 without a size: {_detail(body)}")
            raise Conflict(size)
        if status == 413:
            raise TooLarge()
        raise Refused(status, _detail(body))

    def files(self, device: str, session: str) -> dict[str, int]:
        """``{name: size}`` serve holds for the session; empty when it has none (404)."""
        try:
            _, body = self._request("GET", self._url(device, session))
        except Refused as exc:
            if exc.status == 404:
                return {}
            raise
        files = answer_files(body)
        if files is None:
            raise Refused(200, f"GET files answered something else than {{'files': {{name: size}}}}: {body[:100]!r}")
        return files

    def append(self, device: str, session: str, name: str, offset: int, data: bytes) -> int:
        """POST ``data`` at ``offset``; serve's new size. Raises Conflict with serve's size on a wrong offset."""
        _, body = self._request(
            "POST", self._url(device, session, f"/{urllib.parse.quote(name)}?offset={offset}"), data
        )
        size = answer_size(body)
        return offset + len(data) if size is None else size

    def put(self, device: str, session: str, name: str, data: bytes) -> dict[str, Any]:
        _, body = self._request("PUT", self._url(device, session, f"/{urllib.parse.quote(name)}"), data)
        answer = _parse(body)
        return answer if isinstance(answer, dict) else {}


@dataclass
class _Session:
    labels_sent: Optional[str] = None  # sha256 of the labels.csv last PUT (or found equal on serve)
    done: bool = False  # closed and every file confirmed on serve: not looked at again this run


class Pusher:
    """Uploads ``root`` (``DIR/<device>``) to serve in a thread; see the module docstring.

    The recorder tells it which session is being written (:meth:`set_active`) and which of its
    parts are finished (:meth:`note_finished`); :meth:`poke` asks for a pass soon (a label
    changed, a part was rotated). :meth:`stop` gives it ``drain_s`` to send what is left.
    """

    def __init__(
        self,
        client: ServeClient,
        root: Path,
        device_id: str,
        *,
        interval_s: float = 2.0,
        backoff_min_s: float = 1.0,
        backoff_max_s: float = 60.0,
        chunk_bytes: int = CHUNK_BYTES,
        rng: Optional[random.Random] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.root = Path(root)
        self.device_id = device_id
        self.interval_s = interval_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.chunk_bytes = chunk_bytes
        self.rng = rng or random.Random()
        self.clock = clock
        self.bytes_sent = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._active: Optional[Path] = None
        self._finished: set[str] = set()  # names of the active session's finished parts
        self._sessions: dict[Path, _Session] = {}
        self._skipped: set[tuple[Path, str]] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline: Optional[float] = None
        self._thread: Optional[threading.Thread] = None
        self._outage_since: Optional[float] = None
        self._delay = backoff_min_s

    # ---------------------------------------------------------------- from the recorder's thread

    def set_active(self, session_dir: Optional[Path]) -> None:
        with self._lock:
            self._active = Path(session_dir) if session_dir is not None else None
            self._finished = set()
        self.poke()

    def note_finished(self, parts: list[Path]) -> None:
        names = {p.name for p in parts}
        with self._lock:
            if names <= self._finished:
                return
            self._finished |= names
        self.poke()

    def poke(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edge-har-record-push", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 10.0) -> None:
        """One last pass of at most ``drain_s`` seconds (when serve answers), then the thread ends."""
        self._deadline = self.clock() + drain_s
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(drain_s + self.client.timeout_s + 1)

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                self.run_pass()
            except Transient as exc:
                self._failed(str(exc))
                if stopping:
                    return
                self._sleep(self._delay_with_jitter())
                continue
            except Exception:  # a bug must not end uploads silently; the next pass tries again
                log.exception("push: unexpected error in an upload pass")
            else:
                self._recovered()
            if stopping:
                return
            self._sleep(self.interval_s)

    def push_all(self, wait_s: float) -> bool:
        """Upload every session now, in this thread, retrying with backoff for at most ``wait_s`` seconds;
        True when serve holds all of them. For folders nothing writes any more (captures, old recordings)."""
        self._deadline = self.clock() + wait_s
        while True:
            try:
                if self.run_pass():
                    self._recovered()
                    return True
            except Transient as exc:
                self._failed(str(exc))
            if self._expired():
                return False
            self._stop.wait(min(self._delay_with_jitter(), max(0.0, self._deadline - self.clock())))

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _delay_with_jitter(self) -> float:
        delay = self._delay * self.rng.uniform(0.5, 1.0)
        self._delay = min(self._delay * 2, self.backoff_max_s)
        return delay

    def _failed(self, why: str) -> None:
        self.failures += 1
        if self._outage_since is None:
            self._outage_since = self.clock()
            log.warning(
                "push: serve at %s cannot take uploads (%s); keeping everything local, retrying with backoff %g..%g s",
                self.client.base_url,
                why,
                self.backoff_min_s,
                self.backoff_max_s,
            )

    def _recovered(self) -> None:
        self._delay = self.backoff_min_s
        if self._outage_since is not None:
            log.info(
                "push: serve at %s answers again after %.0f s", self.client.base_url, self.clock() - self._outage_since
            )
            self._outage_since = None

    def _expired(self) -> bool:
        return self._deadline is not None and self.clock() > self._deadline

    # ---------------------------------------------------------------- one pass

    def sessions(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p.parent for p in self.root.glob(f"*/{LAYOUT_FILE}"))

    def run_pass(self) -> bool:
        """Upload what is missing on serve; True when every session is complete there. Raises Transient."""
        complete = True
        for session in self.sessions():
            if self._expired():
                return False
            state = self._sessions.setdefault(session, _Session())
            if state.done:
                continue
            with self._lock:
                active = session == self._active
                finished = set(self._finished) if active else None
            if not self._push_session(session, state, finished):
                complete = False
            elif not active:
                state.done = True
            else:
                complete = False  # still being written
        return complete

    def _push_session(self, session: Path, state: _Session, finished: Optional[set[str]]) -> bool:
        sid = session.name
        try:
            on_serve = self.client.files(self.device_id, sid)
        except Refused as exc:
            self._skip(session, "files", str(exc))
            return False
        names = [LAYOUT_FILE] + sorted(
            p.name for p in session.iterdir() if PART_RE.match(p.name) and (finished is None or p.name in finished)
        )
        all_there = True
        for name in names:
            if (session, name) in self._skipped:
                all_there = False
                continue
            if not self._append_file(session, name, on_serve.get(name, 0)):
                all_there = False
        return self._push_labels(session, state, on_serve) and all_there

    def _append_file(self, session: Path, name: str, offset: int) -> bool:
        path = session / name
        try:
            size = path.stat().st_size
        except OSError as exc:  # removed or unreadable meanwhile: nothing to send, nothing to retry this run
            self._skip(session, name, f"cannot read it: {exc.strerror or exc}")
            return False
        if offset > size:
            self._skip(session, name, f"serve holds {offset} bytes, more than the {size} here; left as it is")
            return False
        chunk = size if name == LAYOUT_FILE else self.chunk_bytes  # recording.json: whole, validated by serve
        with open(path, "rb") as f:
            while offset < size:
                if self._expired():
                    return False
                f.seek(offset)
                data = f.read(min(chunk, size - offset))
                try:
                    new = self.client.append(self.device_id, session.name, name, offset, data)
                except Conflict as exc:
                    if exc.size > size:
                        self._skip(session, name, f"serve holds {exc.size} bytes, more than the {size} here")
                        return False
                    offset = exc.size
                    continue
                except TooLarge:
                    if chunk <= MIN_CHUNK_BYTES or name == LAYOUT_FILE:
                        self._skip(session, name, f"serve refuses even {len(data)} bytes (413)")
                        return False
                    chunk = max(MIN_CHUNK_BYTES, chunk // 2)
                    continue
                except Refused as exc:
                    self._skip(session, name, str(exc))
                    return False
                self.bytes_sent += max(0, new - offset)
                offset = new
        log.debug("push: %s/%s complete on serve (%d bytes)", session.name, name, size)
        return True

    def _push_labels(self, session: Path, state: _Session, on_serve: dict[str, int]) -> bool:
        path = session / LABELS_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return True
        digest = hashlib.sha256(data).hexdigest()
        if digest == state.labels_sent:
            return True
        if state.labels_sent is None and on_serve.get(LABELS_FILE) == len(data) and session != self._active:
            state.labels_sent = digest  # sent by an earlier run (or edited on serve: its edit wins anyway)
            return True
        try:
            answer = self.client.put(self.device_id, session.name, LABELS_FILE, data)
        except (Refused, TooLarge, Conflict) as exc:
            self._skip(session, LABELS_FILE, str(exc))
            return False
        state.labels_sent = digest
        if answer.get("edited"):
            log.info(
                "push: %s/labels.csv: a person edited the labels on serve; the device's are kept as %s",
                session.name,
                answer.get("stored_as", "labels.device.csv"),
            )
        return True

    def _skip(self, session: Path, name: str, why: str) -> None:
        if (session, name) not in self._skipped:
            self._skipped.add((session, name))
            log.error("push: %s/%s/%s not uploaded: %s", self.device_id, session.name, name, why)
