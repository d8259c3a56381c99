"""Where labels and start/stop requests of ``edge-har record`` come from: MQTT payloads and the terminal.

Every input becomes a :class:`Command` for the recorder's one loop, which alone touches the
writer, so nothing here needs a lock on the recording. Payloads come from anyone on the broker:
they are parsed within bounds (size, JSON nesting, numbers; :mod:`edge_har.mqtt.bounded_json`)
and raise :class:`PayloadError` and nothing else. A label that is not one of the classes is
refused with one log line per name and a ``label/error`` message, and the recording goes on
unchanged: a typo on a phone must not end a session or lose a second of it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import sys
import threading
import time
from typing import IO, Any, Callable, Optional, Sequence

from edge_har.core.errors import EdgeHarError
from edge_har.mqtt.bounded_json import RejectedMessage, decode_text, parse_message

__all__ = [
    "MAX_LABEL_CHARS",
    "MAX_PAYLOAD_BYTES",
    "ClassSet",
    "Command",
    "KeyEditor",
    "LabelControl",
    "PayloadError",
    "TerminalLabels",
    "check_class_names",
    "parse_label_payload",
    "parse_record_payload",
    "parse_terminal_line",
]

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 1024  # a class name or {"label": ...}; anything longer is not a label
MAX_LABEL_CHARS = 64  # the layout's limit on a label in labels.csv
MAX_WARNED_NAMES = 1000  # unknown names remembered for "logged once per name" (a flood cannot grow it further)
NONE_WORDS = ("", "none")  # payloads that end the segment, compared case-insensitively
_ON = ("on", "start", "true")
_OFF = ("off", "stop", "false")


class PayloadError(EdgeHarError, ValueError):
    """A label/set or record/set payload that is not one; the message says why in one line."""


@dataclasses.dataclass(frozen=True)
class Command:
    """One request for the recorder's loop: a label change (``label``, None ends the segment) or a start/stop.

    ``ts`` is when it arrived (Unix seconds): the segment boundary, whatever the loop's delay.
    """

    kind: str  # "label" or "record"
    ts: float
    label: Optional[str] = None
    recording: Optional[bool] = None
    origin: str = ""


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def check_class_names(names: Sequence[str], where: str = "--classes") -> list[str]:
    """Class names fit for labels.csv and a Home Assistant select; raises PayloadError naming the bad one."""
    out: list[str] = []
    for name in names:
        if not name or name != name.strip():
            raise PayloadError(f"{where}: class {name!r} is empty or starts/ends with spaces")
        if len(name) > MAX_LABEL_CHARS:
            raise PayloadError(f"{where}: class {name[:20]!r}... is longer than {MAX_LABEL_CHARS} characters")
        if _has_control(name) or any(c in name for c in ',"'):
            raise PayloadError(f"{where}: class {name!r} holds a comma, a quote or a control character")
        if name.casefold() in NONE_WORDS:
            raise PayloadError(f"{where}: {name!r} cannot be a class: it ends the current segment")
        if name in out:
            raise PayloadError(f"{where}: class {name!r} is listed twice")
        out.append(name)
    if not out:
        raise PayloadError(f"{where}: no classes")
    return out


def _name_from_text(text: str, what: str) -> Optional[str]:
    name = text.strip()
    if name.casefold() in NONE_WORDS:
        return None
    if len(name) > MAX_LABEL_CHARS:
        raise PayloadError(f"{what}: a label of {len(name)} characters (at most {MAX_LABEL_CHARS})")
    if _has_control(name):
        raise PayloadError(f"{what}: the label holds a control character")
    return name


def parse_label_payload(payload: bytes) -> Optional[str]:
    """A ``label/set`` payload -> the class name asked for, or None to end the segment.

    Accepts a bare name (``walk``), a JSON string (``"walk"``) or ``{"label": "walk"}``;
    ``""``, ``none`` and ``{"label": null}`` end the segment. Raises :class:`PayloadError`.
    """
    try:
        text = decode_text(payload, max_bytes=MAX_PAYLOAD_BYTES)
        stripped = text.strip()
        if not stripped.startswith(("{", '"')):
            return _name_from_text(stripped, "label/set")
        data: Any = parse_message(stripped, max_bytes=MAX_PAYLOAD_BYTES, max_depth=4)
    except RejectedMessage as exc:
        raise PayloadError(f"label/set: {exc}") from None
    if isinstance(data, dict):
        if "label" not in data:
            raise PayloadError('label/set: a JSON object needs a "label" key, e.g. {"label": "walk"}')
        data = data["label"]
        if data is None:
            return None
    if not isinstance(data, str):
        raise PayloadError(f"label/set: the label must be text or null, got JSON {type(data).__name__}")
    return _name_from_text(data, "label/set")


def parse_record_payload(payload: bytes) -> bool:
    """A ``record/set`` payload -> True to start a session, False to stop it.

    ``ON``/``start``/``true`` and ``OFF``/``stop``/``false`` in any case, bare or as a JSON
    string; also ``{"action": "start"|"stop"}`` and ``{"recording": true|false}``.
    """
    try:
        text = decode_text(payload, max_bytes=MAX_PAYLOAD_BYTES).strip()
        data: Any = text
        if text.startswith(("{", '"')):
            data = parse_message(text, max_bytes=MAX_PAYLOAD_BYTES, max_depth=4)
    except RejectedMessage as exc:
        raise PayloadError(f"record/set: {exc}") from None
    if isinstance(data, dict):
        if isinstance(data.get("recording"), bool):
            return bool(data["recording"])
        data = data.get("action")
    if isinstance(data, str):
        word = data.strip().casefold()
        if word in _ON:
            return True
        if word in _OFF:
            return False
    shown = text[:40]
    raise PayloadError(f'record/set: {shown!r} is not ON/OFF, start/stop or {{"action": "start"|"stop"}}')


class ClassSet:
    """The classes a label may name; exact names first, else one unique case-insensitive match."""

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = list(classes)
        self._folded: dict[str, list[str]] = {}
        for c in self.classes:
            self._folded.setdefault(c.casefold(), []).append(c)

    def resolve(self, name: str) -> Optional[str]:
        """The class ``name`` means, or None when it is none of them."""
        if name in self.classes:
            return name
        matches = self._folded.get(name.casefold(), [])
        return matches[0] if len(matches) == 1 else None

    def by_number(self, number: int) -> Optional[str]:
        """Class ``number`` as the terminal menu shows it: 1..9, then 0 for the tenth."""
        index = 9 if number == 0 else number - 1
        return self.classes[index] if 0 <= index < len(self.classes) else None

    def menu(self) -> str:
        keys = [str(i + 1) if i < 9 else "0" if i == 9 else "" for i in range(len(self.classes))]
        shown = [f"{k} {c}" if k else c for k, c in zip(keys, self.classes)]
        return "  ".join(shown)


class LabelControl:
    """Turns label/set and record/set payloads into commands; refuses unknown classes.

    ``submit(command)`` hands a command to the recorder; ``publish_error(payload)`` sends a
    ``label/error`` message (not retained). Both are called from the caller's thread (paho's).
    """

    def __init__(
        self,
        classes: ClassSet,
        submit: Callable[[Command], None],
        publish_error: Callable[[dict[str, Any]], None] = lambda payload: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.classes = classes
        self.submit = submit
        self.publish_error = publish_error
        self.clock = clock
        self.refused = 0
        self._warned: set[str] = set()

    def on_label(self, payload: bytes, origin: str = "mqtt") -> Optional[Command]:
        ts = self.clock()
        try:
            name = parse_label_payload(payload)
        except PayloadError as exc:
            self._refuse(str(exc), payload[:MAX_LABEL_CHARS].decode("utf-8", "replace"))
            return None
        return self.label(name, ts, origin)

    def label(self, name: Optional[str], ts: float, origin: str) -> Optional[Command]:
        """A label asked for by name (None ends the segment): submitted, or refused when not a class."""
        if name is not None:
            known = self.classes.resolve(name)
            if known is None:
                self._refuse(
                    f"label {name!r} is not one of the classes ({', '.join(self.classes.classes)}); "
                    "the current label is unchanged",
                    name,
                )
                return None
            name = known
        command = Command("label", ts, label=name, origin=origin)
        self.submit(command)
        return command

    def on_record(self, payload: bytes, origin: str = "mqtt") -> Optional[Command]:
        ts = self.clock()
        try:
            recording = parse_record_payload(payload)
        except PayloadError as exc:
            log.warning("%s (from %s); ignored", exc, origin)
            return None
        command = Command("record", ts, recording=recording, origin=origin)
        self.submit(command)
        return command

    def _refuse(self, message: str, label: str) -> None:
        self.refused += 1
        if label not in self._warned:
            if len(self._warned) < MAX_WARNED_NAMES:
                self._warned.add(label)
            log.warning("refused a label: %s", message)
        self.publish_error({"error": message, "label": label})


def parse_terminal_line(line: str, control: LabelControl, ts: float) -> Optional[Command]:
    """One terminal entry: ``-`` ends the segment, a number picks class N of the menu, text names a class."""
    text = line.strip()
    if not text:
        return None
    if text == "-":
        return control.label(None, ts, "terminal")
    if text.isascii() and text.isdigit() and len(text) <= 3:  # "¹" and "٣" are digits to str.isdigit, not to int()
        name = control.classes.by_number(int(text))
        if name is None:
            control._refuse(f"there is no class {text} (the menu: {control.classes.menu()})", text)
            return None
        return control.label(name, ts, "terminal")
    try:
        name = _name_from_text(text, "terminal")
    except PayloadError as exc:
        control._refuse(str(exc), text[:MAX_LABEL_CHARS])
        return None
    return control.label(name, ts, "terminal")


class KeyEditor:
    """Keys of a terminal in cbreak mode -> entries for :func:`parse_terminal_line`.

    A digit or ``-`` typed first is an entry at once (no Enter); letters build a name that
    Enter submits; Backspace deletes. What it returns is what :meth:`feed` completed, else None.
    """

    def __init__(self) -> None:
        self.buffer = ""

    def feed(self, ch: str) -> Optional[str]:
        if ch in "\r\n":
            entry, self.buffer = self.buffer, ""
            return entry if entry else None
        if ch in "\x7f\b":
            self.buffer = self.buffer[:-1]
            return None
        if not self.buffer and ch in "0123456789-":
            return ch
        if ch.isprintable() and len(self.buffer) < MAX_LABEL_CHARS:
            self.buffer += ch
        return None


class TerminalLabels:
    """Reads labels from the terminal in a thread: keys at once on a TTY, whole lines from a pipe.

    The thread polls with a short timeout so :meth:`stop` ends it promptly; a TTY is put in
    cbreak mode only while it runs and restored at :meth:`stop` (also after Ctrl-C).
    """

    def __init__(self, control: LabelControl, stream: Optional[IO[str]] = None, out: Optional[IO[str]] = None):
        self.control = control
        self.stream = stream if stream is not None else sys.stdin
        self.out = out if out is not None else sys.stderr
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._saved_tty: Any = None

    def start(self) -> None:
        fd = self.stream.fileno()
        if os.isatty(fd):
            import termios
            import tty

            self._saved_tty = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        self.out.write(
            f"labels: {self.control.classes.menu()}   (a digit picks a class, a name + Enter, '-' ends the segment)\n"
        )
        self.out.flush()
        self._thread = threading.Thread(target=self._run, name="edge-har-record-keys", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        if self._saved_tty is not None:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None

    def _run(self) -> None:
        fd = self.stream.fileno()
        keys = self._saved_tty is not None
        editor = KeyEditor()
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(fd, 1024)
            if not data:  # end of input (a pipe closed): labels then come from MQTT only
                if pending.strip():
                    self._entry(pending.decode("utf-8", "replace"))
                return
            if keys:
                for ch in data.decode("utf-8", "replace"):
                    entry = editor.feed(ch)
                    if entry is not None:
                        self.out.write("\n")
                        self._entry(entry)
                    elif ch.isprintable():
                        self.out.write(ch)
                        self.out.flush()
                continue
            pending += data
            *lines, pending = pending.split(b"\n")
            if len(pending) > 4096:
                pending = b""
            for raw in lines:
                self._entry(raw.decode("utf-8", "replace"))

    def _entry(self, text: str) -> None:
        try:
            command = parse_terminal_line(text, self.control, time.time())
        except Exception:  # a bug here must not end the keyboard input of a running recording
            log.exception("terminal entry %r could not be handled", text[:MAX_LABEL_CHARS])
            return
        if command is not None:
            self.out.write(f"label: {command.label or 'none'}\n")
            self.out.flush()
