"""``edge-har subscribe``: watch predictions from one or many devices arrive over MQTT.

A tool for people at a terminal (and for scripts and the README demo, through --count and
--timeout), so it prints. It builds its MQTT client through the same
:func:`edge_har.mqtt.client.make_client` as the daemon, so TLS and auth options behave alike.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

from edge_har.mqtt.cli_options import add_broker_options, build_config, option_message
from edge_har.mqtt.cli_options import parse_broker as parse_broker  # re-exported: callers and tests import it here

DEFAULT_TOPIC = "edge-har/+/prediction"
MAX_DEVICES = 10_000  # devices followed at most: distinct ids beyond it are shown but not tracked
MAX_BACKLOG = 10_000  # messages waiting to be shown; past it the newest are dropped and counted
BAD_LINE_EVERY_S = 10.0  # at most one line per reason of bad message this often (all are counted)
_DEVICE_ID_CHARS = 128  # a longer device id is cut to this for the device's key and display
# Why a message is counted as bad: bounded_json's reasons, and what subscribe checks itself.
BAD_REASONS: dict[str, str] = {
    "too_large": "over 256 KiB, dropped unread",
    "not_utf8": "not UTF-8 text",
    "too_deep": "JSON nested deeper than 32 levels",
    "not_json": "not JSON",
    "number": "a number no store can hold: an integer beyond 64 bits, 1e400, NaN or Infinity",
    "not_object": "JSON, but not an object",
    "schema": "a prediction or stats message whose fields break the schema (still shown)",
    "internal": "an error in subscribe itself on this message (a bug: please report it)",
}
_EPILOG = """\
examples:
  edge-har subscribe                                   # every device on the local broker, one line each
  edge-har subscribe --broker pi-gateway.local --mode table
  edge-har subscribe --broker 127.0.0.1:1883 --count 10 --timeout 60 --jsonl predictions.jsonl
  edge-har subscribe --share archivers --jsonl part-$HOSTNAME.jsonl   # N of these split a fleet
  edge-har subscribe --broker mqtts://broker.example.org --username viewer \\
      --password-file ~/.config/edge-har/viewer.pass --ca-file ca.crt

Lines mode prints, per prediction: the window's end time, device, label, confidence, inference
and end-to-end latency, and the sequence number; --probabilities adds every class's probability
(in the model's label order), in both modes, e.g. to see how close a second class came. Table mode shows each device's current activity,
how long it has lasted and whether the device is online (its retained status topic).
Events (a fall: <prefix>/<id>/event, beside each prediction topic) get an EVENT line with the impact
time and the detection delay in lines mode, and the LAST EVENT column ("fall 3m05s ago") in table mode.
A prediction seen twice (same device, run_id and seq: a QoS 1 re-delivery) is shown once and
counted; a new run_id for a device is reported as a restart. Table mode also follows status and
stats: a device whose status says online but that sent no stats for 3 stats intervals is shown as
'stale' (edge_har/mqtt/liveness.py).

A bad message (over 256 KiB, not UTF-8, not JSON, nested more than 32 deep, a number no store
can hold such as an integer beyond 64 bits or NaN, fields of the wrong type) never stops the
command: it is counted by reason, stderr gets one line per reason at most every 10 s, and the
counts are printed at exit (and under the table). A prediction that breaks the schema is still
shown, its problems on stderr.

--share GROUP (MQTT 5) subscribes to the prediction filters as $share/GROUP/<filter>: every
consumer started with the same GROUP gets its own part of the traffic, each message goes to one
of them. Status and stats filters stay plain subscriptions (every consumer needs every device's
status, and a broker sends no retained messages to a shared subscription).

Exit status: 0, or 1 when --count predictions did not arrive before --timeout or the broker
refused the connection, 2 for bad arguments.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "subscribe",
        description=(
            "Subscribe to edge-har predictions on an MQTT broker and show them live: one line per "
            "prediction, or a table of each device's current activity. Same TLS and auth options as "
            "the daemon's mqtt: config section."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_broker_options(parser)
    parser.add_argument(
        "--topic",
        action="append",
        type=str,
        metavar="FILTER",
        help=f"MQTT topic filter, repeatable (default: {DEFAULT_TOPIC}; + matches one device, # everything)",
    )
    parser.add_argument(
        "--mode", choices=["lines", "table"], default="lines", type=str, help="output style (default: lines)"
    )
    parser.add_argument(
        "--jsonl", type=Path, metavar="FILE", help="append every JSON payload received to FILE, one per line"
    )
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="show every class's probability, not only the top label (lines: after each line; table: a column)",
    )
    parser.add_argument("--count", type=_positive_int, metavar="N", help="exit after N predictions")
    parser.add_argument("--timeout", type=_positive_float, metavar="S", help="exit after S seconds")
    parser.add_argument("--qos", type=int, choices=[0, 1, 2], default=1, help="subscription QoS (default: 1)")
    parser.add_argument(
        "--client-id", type=str, metavar="ID", help="MQTT client id (default: edge-har-subscribe-<pid>)"
    )
    parser.add_argument(
        "--protocol",
        choices=["3.1.1", "5"],
        default=None,
        type=str,
        help="MQTT protocol version (default: 3.1.1; 5 with --share)",
    )
    parser.add_argument(
        "--share",
        type=str,
        metavar="GROUP",
        help="MQTT 5 shared subscription: consumers with the same GROUP split the predictions between them",
    )
    parser.set_defaults(func=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


# ====================================================================== what we show


@dataclass
class DeviceState:
    device_id: str
    status: str = "?"
    label: str = "-"
    confidence: Optional[float] = None
    since: Optional[float] = None  # window_end_ts of the first window with the current label
    last_ts: Optional[float] = None
    e2e_ms: Optional[float] = None
    model_id: str = "-"
    probabilities: Optional[dict[str, float]] = None
    seen_at: Optional[float] = None  # our clock when the last prediction arrived
    predictions: int = 0
    run_id: Optional[str] = None  # the newest run seen (predictions or stats)
    runs: set[str] = field(default_factory=set)  # every run seen, so a late re-delivery is not a "restart"
    restarts: int = 0
    stats_at: Optional[float] = None  # our monotonic clock when the last stats message arrived
    stats_interval_s: Optional[float] = None
    liveness: str = "?"  # what was last shown: online, stale, stopped, offline
    last_event: Optional[str] = None  # the type of the newest event (a fall)
    last_event_at: Optional[float] = None  # our monotonic clock when it arrived


@dataclass
class Viewer:
    """Turns messages into lines or a table; keeps no MQTT state, so it is easy to test."""

    mode: str
    out: TextIO
    jsonl: Optional[TextIO] = None
    tty: bool = False
    probabilities: bool = False  # show every class's probability (--probabilities)
    devices: dict[str, DeviceState] = field(default_factory=dict)
    predictions: int = 0
    events: Counter[str] = field(default_factory=Counter)  # events shown, by type
    duplicates: int = 0
    restarts: int = 0
    bad: Counter[str] = field(default_factory=Counter)  # bad messages by reason (BAD_REASONS)
    untracked_devices: int = 0  # messages of devices past MAX_DEVICES (shown, not followed)
    bad_line_every_s: float = BAD_LINE_EVERY_S
    started_at: float = field(default_factory=time.monotonic)  # when we started watching (for staleness)
    _seen: OrderedDict[tuple[Any, ...], None] = field(default_factory=OrderedDict)
    _dirty: bool = False
    _last_draw: float = 0.0
    _bad_line_at: dict[str, float] = field(default_factory=dict)
    _bad_unshown: Counter[str] = field(default_factory=Counter)

    @property
    def invalid(self) -> int:
        """Bad messages of every reason."""
        return sum(self.bad.values())

    def handle(self, topic: str, payload: bytes) -> bool:
        """Process one message; True when it was a (new) prediction.

        Never raises: whatever a device or anyone else on the broker sends is shown or counted
        as bad by reason (:data:`BAD_REASONS`), so one message cannot end the command.
        """
        try:
            return self._handle(topic, payload)
        except Exception as exc:  # a bug here must not end a watch: counted and shown as "internal"
            self.bad_message(topic, "internal", f"{type(exc).__name__}: {exc}")
            return False

    def _handle(self, topic: str, payload: bytes) -> bool:
        from edge_har.mqtt.bounded_json import RejectedMessage, decode_text, parse_message
        from edge_har.mqtt.payloads import validate_prediction

        try:
            text = decode_text(payload).strip()
            if topic.endswith("/status") and not text.startswith("{"):
                self._status(_device_from_topic(topic), text)
                return False
            data = parse_message(text)
        except RejectedMessage as exc:
            self.bad_message(topic, exc.reason, exc.detail)
            return False
        if not isinstance(data, dict):
            self.bad_message(topic, "not_object", f"JSON {_json_type(data)}, not an object")
            return False
        if topic.endswith("/event"):
            self._event(topic, data, text)
            return False
        is_prediction = topic.endswith("/prediction") or "label" in data
        if not is_prediction:
            self._write_jsonl(text)
            if topic.endswith("/stats"):
                problems = _stats_problems(data)
                if problems:
                    self.bad_message(topic, "schema", f"stats: {'; '.join(problems[:3])}")
                self._stats(_device(data, topic), data)
                if self.mode == "lines":
                    self._print(_stats_line(topic, data))
            return False
        run_id = data.get("run_id")
        # (device, run, seq) is unique per prediction; devices older than the run id: (device, seq, window end)
        device_id, seq = _hashable(data.get("device_id")), _hashable(data.get("seq"))
        key = (
            (device_id, _hashable(run_id), seq)
            if isinstance(run_id, str)
            else (device_id, None, seq, _hashable(data.get("window_end_ts")))
        )
        if key in self._seen:
            self.duplicates += 1
            return False
        self._seen[key] = None
        if len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        problems = validate_prediction(data)
        if problems:
            self.bad_message(topic, "schema", f"prediction does not follow the schema: {'; '.join(problems[:3])}")
        self._write_jsonl(text)
        self.predictions += 1
        device = _device(data, topic)
        self._run(device, run_id)
        if self.mode == "lines":
            line = _prediction_line(device, data)
            self._print(f"{line}  {_probabilities_text(data)}" if self.probabilities else line)
        else:
            self._update(device, data)
        return True

    def _event(self, topic: str, data: dict[str, Any], text: str) -> None:
        """An event (a fall): a line of its own in both modes' output, the newest per device in the table."""
        kind = data.get("event_type")
        if not isinstance(kind, str) or not kind:
            self.bad_message(topic, "schema", "event without an event_type")
            return
        key = (
            "event",
            _hashable(data.get("device_id")),
            _hashable(data.get("run_id")),
            kind,
            _hashable(data.get("last_seq")),
        )
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen[key] = None
        self._write_jsonl(text)
        self.events[kind] += 1
        device = _device(data, topic)
        state = self._state(device)
        if state is not None:
            state.last_event, state.last_event_at = kind, time.monotonic()
            self._dirty = True
        if self.mode == "lines":
            self._print(_event_line(device, data))

    # ------------------------------------------------------------------ bad messages

    def bad_message(self, topic: str, reason: str, detail: str) -> None:
        """Count a bad message; show it on stderr unless a line for ``reason`` was shown in the
        last ``bad_line_every_s`` seconds (then the next line says how many it stands for)."""
        self.bad[reason] += 1
        self._dirty = True
        now = time.monotonic()
        last = self._bad_line_at.get(reason)
        if last is not None and now - last < self.bad_line_every_s:
            self._bad_unshown[reason] += 1
            return
        self._bad_line_at[reason] = now
        unshown = self._bad_unshown.pop(reason, 0)
        _warn(
            f"{_clean(topic, 80)}: bad message ({reason}): {_clean(detail, 200)}"
            + (f" (+{unshown} more since the last line)" if unshown else "")
            + f"; {self.bad[reason]} {reason} so far, next line for it in {self.bad_line_every_s:g} s at the earliest"
        )

    def bad_summary(self) -> str:
        """``7 bad message(s): too_large 3, not_json 2, ...``, or "" when there were none."""
        if not self.bad:
            return ""
        reasons = ", ".join(f"{reason} {n}" for reason, n in self.bad.most_common())
        return f"{self.invalid} bad message(s): {reasons}"

    def _state(self, device: str) -> Optional[DeviceState]:
        """The device's state; None for a new device past MAX_DEVICES (its messages are not followed)."""
        state = self.devices.get(device)
        if state is None:
            if len(self.devices) >= MAX_DEVICES:
                self.untracked_devices += 1
                return None
            state = self.devices[device] = DeviceState(device)
        return state

    # ------------------------------------------------------------------ lines

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def _write_jsonl(self, text: str) -> None:
        if self.jsonl is not None:
            self.jsonl.write(text.replace("\n", " ") + "\n")
            self.jsonl.flush()

    def _status(self, device: str, text: str) -> None:
        state = self._state(device)
        if state is None:
            return
        text = _clean(text, 40)
        if state.status != text:
            state.status = text
            self._dirty = True
        self.check_liveness()

    def _stats(self, device: str, data: dict[str, Any]) -> None:
        state = self._state(device)
        if state is None:
            return
        state.stats_at = time.monotonic()
        interval = _number(data.get("stats_interval_s"))
        if interval is not None:
            state.stats_interval_s = interval
        run_id = data.get("run_id")
        self._run(device, run_id)
        self.check_liveness()

    def _run(self, device: str, run_id: Any) -> None:
        """Note the run a payload came from; a run id never seen before for a known device is a restart."""
        if not isinstance(run_id, str) or len(run_id) > 64:
            return
        state = self._state(device)
        if state is None or run_id in state.runs:
            return
        if state.runs:
            state.restarts += 1
            self.restarts += 1
            message = (
                f"{_clean(device, 40)} restarted: run {_clean(str(state.run_id), 64)} -> {_clean(run_id, 64)} "
                "(seq starts again at 0)"
            )
            if self.mode == "lines":
                self._print(f"{time.strftime('%H:%M:%S')}  {message}")
            self._dirty = True
        state.runs.add(run_id)
        state.run_id = run_id

    def check_liveness(self, now: Optional[float] = None) -> None:
        """Re-judge each device's liveness (edge_har.mqtt.liveness); lines mode prints each change."""
        from edge_har.mqtt.liveness import device_liveness

        now = time.monotonic() if now is None else now
        for device, state in self.devices.items():
            if state.status == "?":
                continue  # no status followed for it (lines mode without a status filter)
            shown = device_liveness(
                state.status,
                now=now,
                last_stats_at=state.stats_at,
                stats_interval_s=state.stats_interval_s,
                watching_since=self.started_at,
            )
            if shown != state.liveness:
                state.liveness = shown
                self._dirty = True
                if self.mode == "lines":
                    self._print(f"{time.strftime('%H:%M:%S')}  {_clean(device, 40):<16} is {shown}")

    # ------------------------------------------------------------------ table

    def _update(self, device: str, data: dict[str, Any]) -> None:
        state = self._state(device)
        if state is None:
            return
        label = _clean(str(data.get("label", "?")), 40)
        ts = _number(data.get("window_end_ts"))
        if label != state.label:
            state.since = ts
        state.label = label
        state.confidence = _number(data.get("confidence"))
        state.last_ts = ts
        state.e2e_ms = _number(data.get("e2e_ms"))
        state.model_id = _clean(str(data.get("model_id", "-")), 80)
        state.probabilities = _probabilities(data)
        state.seen_at = time.monotonic()
        state.predictions += 1
        self._dirty = True

    def render_table(self) -> str:
        now = time.monotonic()
        header = (
            f"{'DEVICE':<18} {'STATUS':<8} {'ACTIVITY':<18} {'CONF':>5} {'FOR':>7} {'E2E ms':>7} {'SEEN':>8}  "
            f"{'LAST EVENT':<18}  MODEL" + ("  PROBABILITIES" if self.probabilities else "")
        )
        rows = [header]
        for device in sorted(self.devices):
            s = self.devices[device]
            lasted = _duration(s.last_ts - s.since) if s.since is not None and s.last_ts is not None else "-"
            seen = f"{now - s.seen_at:.0f}s ago" if s.seen_at is not None else "-"
            status = s.liveness if s.liveness != "?" else ("online" if s.predictions else "?")
            event = (
                f"{_clean(s.last_event, 10)} {_duration(now - s.last_event_at)} ago"
                if s.last_event is not None and s.last_event_at is not None
                else "-"
            )
            rows.append(
                f"{_clean(device, 18):<18} {status[:8]:<8} {s.label[:18]:<18} "
                f"{_fmt(s.confidence, '.2f'):>5} {lasted:>7} {_fmt(s.e2e_ms, '.1f'):>7} {seen:>8}  {event:<18}  "
                f"{s.model_id}"
                + (f"  {_probabilities_text({'probabilities': s.probabilities})}" if self.probabilities else "")
            )
        if not self.devices:
            rows.append("(waiting for predictions)")
        if self.bad:
            rows.append(self.bad_summary() + " (see stderr)")
        if self.untracked_devices:
            rows.append(f"{self.untracked_devices} message(s) of devices past the first {MAX_DEVICES} not followed")
        return "\n".join(rows)

    def maybe_draw(self, force: bool = False) -> None:
        if self.mode != "table":
            return
        now = time.monotonic()
        if self.tty:
            # Redraw in place: often enough to look live, and each second for the "ago" column.
            if force or (self._dirty and now - self._last_draw >= 0.2) or now - self._last_draw >= 1.0:
                self.out.write("\x1b[H\x1b[2J" + self.render_table() + "\n")
                self.out.flush()
                self._last_draw, self._dirty = now, False
        elif force or (self._dirty and now - self._last_draw >= 1.0):
            # Not a terminal (a pipe, a log): plain tables, only when something changed, at most 1/s.
            self._print(self.render_table() + "\n")
            self._last_draw, self._dirty = now, False


def _prediction_line(device: str, data: dict[str, Any]) -> str:
    return (
        f"{_clock(_number(data.get('window_end_ts')))}  {_clean(device, 16):<16} "
        f"{_clean(str(data.get('label', '?')), 20):<20} "
        f"{_fmt(_number(data.get('confidence')), '.3f'):>5}  "
        f"inf {_fmt(_number(data.get('inference_ms')), '.2f')} ms  e2e {_fmt(_number(data.get('e2e_ms')), '.2f')} ms  "
        f"#{_clean(str(data.get('seq', '?')), 24)}"
    )


def _event_line(device: str, data: dict[str, Any]) -> str:
    impact, detected = _number(data.get("impact_ts")), _number(data.get("detected_ts"))
    delay = detected - impact if impact is not None and detected is not None else None
    return (
        f"{_clock(detected)}  {_clean(device, 16):<16} EVENT {_clean(str(data.get('event_type')), 14):<14} "
        f"{_fmt(_number(data.get('confidence')), '.3f'):>5}  impact {_clock(impact)}  "
        f"detected {_fmt(delay, '.1f')} s later  "
        f"#{_clean(str(data.get('first_seq', '?')), 12)}-{_clean(str(data.get('last_seq', '?')), 12)}"
    )


def _clock(ts: Optional[float]) -> str:
    """``HH:MM:SS.mmm`` local time of a Unix time; ``--:--:--`` for none or one no clock can show."""
    if ts is None:
        return "--:--:--"
    try:
        return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int((ts % 1) * 1000):03d}"
    except (OverflowError, OSError, ValueError):  # beyond time_t, or before/after what localtime takes
        return "--:--:--"


def _clean(text: str, width: int) -> str:
    """``text`` cut to ``width`` with every unprintable character (ESC, CR, newline, ...) as ``?``,
    so a device id or label cannot move the cursor, clear the screen or forge a line."""
    cut = text[:width]
    return cut if cut.isprintable() else "".join(c if c.isprintable() else "?" for c in cut)


def _device(data: dict[str, Any], topic: str) -> str:
    """The device a payload is from: its ``device_id`` when that is a non-empty string, else the topic's."""
    device = data.get("device_id")
    if not isinstance(device, str) or not device:
        device = _device_from_topic(topic)
    return device[:_DEVICE_ID_CHARS]


def _hashable(value: Any) -> Any:
    """``value`` as part of a de-duplication key, small and hashable: a number or None as it is, a
    string cut to 200 characters (10,000 keys are kept), anything else as its JSON text (a list as seq)."""
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return value[:200]
    return "json:" + json.dumps(value, sort_keys=True)[:200]


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


# What stats fields subscribe reads, and the JSON type each must have.
_STATS_TYPES: dict[str, tuple[type, ...]] = {
    "device_id": (str,),
    "run_id": (str,),
    "stats_interval_s": (int, float),
    "windows_per_s": (int, float),
    "e2e_ms": (dict,),
    "mqtt": (dict,),
}


def _stats_problems(data: dict[str, Any]) -> list[str]:
    """One ``field: must be ...`` per stats field subscribe reads that has the wrong type."""
    problems = []
    for key, types in _STATS_TYPES.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or isinstance(value, bool):
            wanted = "a number" if float in types else ("an object" if dict in types else "a string")
            problems.append(f"{key}: must be {wanted}, got {_json_type(value)}")
    return problems


def _probabilities(data: dict[str, Any]) -> Optional[dict[str, float]]:
    """The payload's class -> probability map (numbers only), in the order the device sent it."""
    raw = data.get("probabilities")
    if not isinstance(raw, dict):
        return None
    return {str(k): v for k, v in ((k, _number(v)) for k, v in raw.items()) if v is not None}


def _probabilities_text(data: dict[str, Any]) -> str:
    """``Walk 0.875 Sit 0.125``, or ``-`` when the payload has none."""
    probs = _probabilities(data)
    if not probs:
        return "-"
    return " ".join(f"{_clean(label, 40)} {p:.3f}" for label, p in probs.items())


def _stats_line(topic: str, data: dict[str, Any]) -> str:
    raw = data.get("mqtt")
    mqtt: dict[str, Any] = raw if isinstance(raw, dict) else {}
    e2e = data.get("e2e_ms")
    p99 = _number(e2e.get("p99")) if isinstance(e2e, dict) else None
    return (
        f"{time.strftime('%H:%M:%S')}  {_clean(_device(data, topic), 16):<16} stats: "
        f"{_fmt(_number(data.get('windows_per_s')), '.1f')} windows/s, "
        f"e2e p99 {_fmt(p99, '.1f')} ms, "
        f"queued {_clean(str(mqtt.get('queued', '-')), 20)}, "
        f"dropped offline {_clean(str(mqtt.get('dropped_offline', '-')), 20)}"
    )


def _device_from_topic(topic: str) -> str:
    return topic.split("/")[-2] if "/" in topic else topic


def _number(value: Any) -> Optional[float]:
    """A finite JSON number as a float; None for anything else (text, bool, an int beyond a float)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"


def _warn(message: str) -> None:
    print(f"edge-har subscribe: {message}", file=sys.stderr, flush=True)


# ====================================================================== the command


def run(args: argparse.Namespace) -> int:
    from edge_har.core.errors import CommandError
    from edge_har.mqtt.client import describe_broker, make_client
    from edge_har.mqtt.config import MqttConfigError

    cfg = build_config(args)
    filters = subscription_filters(args.topic or [DEFAULT_TOPIC], mode=args.mode, share=args.share)
    client_id = args.client_id or f"edge-har-subscribe-{os.getpid()}"
    try:
        client = make_client(cfg, client_id)
    except MqttConfigError as exc:
        # The message names the config key (mqtt.tls.ca_file); here the user typed an option.
        raise CommandError(option_message(str(exc))) from None

    # Messages: bounded, so a flood the terminal cannot keep up with costs counted drops, not all the
    # memory. Connection events: a queue of their own, never full, so the network thread never waits
    # on a backlog nobody drains (a disconnect at exit would otherwise block it, and loop_stop forever).
    events: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=MAX_BACKLOG)
    control: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    backlog_dropped = [0]

    def on_connect(client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            control.put(("refused", str(reason_code)))
            return
        client.subscribe([(f, args.qos) for f in filters])

    def on_subscribe(client: Any, userdata: Any, mid: Any, reason_codes: Any, properties: Any) -> None:
        refused = [f for f, rc in zip(filters, reason_codes) if rc.is_failure]
        control.put(("subscribed", refused))

    def on_connect_fail(client: Any, userdata: Any) -> None:
        control.put(("unreachable", getattr(client, "last_connect_error", None)))

    def on_disconnect(client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        control.put(("disconnected", str(reason_code)))

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # a broker that let a topic that is not UTF-8 through
            topic = bytes(message._topic).decode("utf-8", errors="replace")
        try:
            events.put_nowait(("message", (topic, bytes(message.payload))))
        except queue.Full:
            backlog_dropped[0] += 1

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_connect_fail = on_connect_fail
    client.on_disconnect = on_disconnect
    client.on_message = on_message

    jsonl = open(args.jsonl, "a", encoding="utf-8") if args.jsonl else None  # noqa: SIM115 - closed below
    viewer = Viewer(
        mode=args.mode, out=sys.stdout, jsonl=jsonl, tty=sys.stdout.isatty(), probabilities=args.probabilities
    )
    deadline = time.monotonic() + args.timeout if args.timeout else None
    status = 0
    last_problem = None
    last_liveness = time.monotonic()
    stop = threading.Event()
    restore = _stop_on_signals(stop)
    client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
    client.loop_start()
    try:
        while not stop.is_set():
            if args.count and viewer.predictions >= args.count:
                break
            wait = 0.2
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    if args.count:
                        _warn(
                            f"timeout: {viewer.predictions} of {args.count} predictions arrived in {args.timeout:g} s"
                        )
                        status = 1
                    break
            try:
                kind, value = control.get_nowait()
            except queue.Empty:
                try:
                    kind, value = events.get(timeout=wait)
                except queue.Empty:
                    viewer.check_liveness()
                    last_liveness = time.monotonic()
                    viewer.maybe_draw()
                    continue
            if time.monotonic() - last_liveness >= 1.0:
                viewer.check_liveness()
                last_liveness = time.monotonic()
            if kind == "message":
                viewer.handle(*value)  # never raises: a bad message is counted and shown
                viewer.maybe_draw()
            elif kind == "subscribed":
                for refused in value:
                    _warn(f"the broker refused the subscription to {refused} (ACL?)")
                _warn(f"listening on {describe_broker(cfg)} to {', '.join(filters)} (Ctrl-C to stop)")
                last_problem = None
                viewer.maybe_draw(force=True)
            elif kind == "refused":
                _warn(f"the broker {describe_broker(cfg)} refused the connection: {value}")
                status = 1
                break
            elif kind in ("unreachable", "disconnected"):
                problem = f"{value}" if value else "connection failed"
                if problem != last_problem:
                    _warn(f"waiting for the broker {describe_broker(cfg)}: {problem}")
                    last_problem = problem
    except KeyboardInterrupt:  # a Ctrl-C before the handler was in place
        pass
    finally:
        restore()
        client.disconnect()
        client.loop_stop()
        if jsonl is not None:
            jsonl.close()
    viewer.maybe_draw(force=True)
    if viewer.bad:
        _warn(viewer.bad_summary() + " (not shown, except schema: shown with a warning)")
    if backlog_dropped[0]:
        _warn(f"{backlog_dropped[0]} message(s) dropped: more than {MAX_BACKLOG} waited to be shown")
    if viewer.untracked_devices:
        _warn(f"{viewer.untracked_devices} message(s) of devices past the first {MAX_DEVICES} were not followed")
    if viewer.duplicates:
        _warn(
            f"{viewer.duplicates} duplicate prediction(s) (same device, run_id, seq: QoS 1 re-delivery) were shown once"
        )
    if viewer.restarts:
        _warn(f"{viewer.restarts} device restart(s) seen (a new run_id)")
    if viewer.events:
        _warn("events: " + ", ".join(f"{n} {kind}" for kind, n in sorted(viewer.events.items())))
    return status


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM set ``stop`` (the loop ends at its next turn, the files are closed, the summary
    printed) instead of raising wherever the main thread happens to be; returns what puts the old
    handlers back. Outside the main thread (a test calling :func:`run`) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def subscription_filters(topics: list[str], *, mode: str, share: Optional[str]) -> list[str]:
    """The filters to subscribe to: ``topics``; in table mode also each prediction filter's status
    and stats (for the STATUS column and staleness); with ``share``, ``$share/GROUP/`` before
    every filter except status and stats, which every consumer needs whole (and a shared
    subscription gets no retained status)."""
    filters = list(topics)
    for f in topics:
        if f.endswith("/prediction"):
            base = f[: -len("prediction")]
            filters.append(base + "event")  # events (a fall) belong with the predictions they came from
            if mode == "table":
                filters += [base + "status", base + "stats"]
    filters = list(dict.fromkeys(filters))
    if share is None:
        return filters
    return [
        f if f.endswith(("/status", "/stats")) or f.startswith("$share/") else f"$share/{share}/{f}" for f in filters
    ]
