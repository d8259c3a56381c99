"""JSON from an MQTT message that anyone on the broker may have sent: parsed within bounds.

``json.loads`` alone is not safe on such bytes: ``[[[[...`` nested a few thousand deep raises
``RecursionError``, an integer of more than 4300 digits raises ``ValueError`` (not
``JSONDecodeError``), ``1e400`` becomes ``inf``, ``NaN`` and ``Infinity`` are accepted, and a
10 MB message is decoded and parsed whole before anything looks at it. A consumer then
crashes (a traceback in a CLI, a dead thread in a server) or passes on a number that no
store, no ``float()`` and no ``time.localtime()`` can take.

:func:`parse_message` checks the size before decoding, the nesting before parsing, and after
parsing requires every integer to fit a signed 64-bit integer and every number to be finite.
Whatever fails raises :class:`RejectedMessage` with a short ``reason`` (a counter's key) and a
one-line ``detail`` naming the field where there is one (``seq: integer of 21 digits does not
fit 64 bits``). Nothing else escapes it, whatever the bytes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "INT64_MAX",
    "INT64_MIN",
    "REASONS",
    "RejectedMessage",
    "decode_text",
    "parse_message",
]

# A prediction of a 100-class model is about 4 KB and a stats message 1 KB: 256 KiB leaves
# room for any real payload while a 10 MB one is dropped unread.
DEFAULT_MAX_BYTES = 256 * 1024
# A real payload nests 3 deep (stats.mqtt, prediction.extra); 32 allows a generous ``extra``.
DEFAULT_MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# The reasons a message is rejected for, with what each means (for summaries and docs).
REASONS: dict[str, str] = {
    "too_large": "over the size limit, dropped unread",
    "not_utf8": "not UTF-8 text",
    "too_deep": "JSON nested deeper than the limit",
    "not_json": "not JSON",
    "number": "a number that fits no store (integer beyond 64 bits, non-finite, NaN/Infinity)",
}

_SPECIAL = re.compile(r'["\\\[\]{}]')
_MAX_INT_DIGITS = 20  # 2**64 has 20 digits: longer integers are out of range whatever their value


class RejectedMessage(ValueError):
    """A message refused before or while parsing; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _OutOfRange:
    """What the parser returns for a number it refuses, so the check afterwards can name its field."""

    def __init__(self, text: str, why: str) -> None:
        self.text = text
        self.why = why


def decode_text(payload: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The payload as text, or :class:`RejectedMessage` (``too_large``, ``not_utf8``)."""
    if len(payload) > max_bytes:
        raise RejectedMessage("too_large", f"a message of {len(payload)} bytes (at most {max_bytes} are read)")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedMessage(
            "not_utf8", f"not UTF-8 (byte 0x{payload[exc.start]:02x} at offset {exc.start})"
        ) from None


def parse_message(
    payload: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """The parsed JSON value of one message, within the bounds in the module doc.

    Raises :class:`RejectedMessage` and nothing else for any input.
    """
    if isinstance(payload, str):
        if len(payload) > max_bytes:  # a character is at least one byte
            raise RejectedMessage("too_large", f"a message of {len(payload)} characters (at most {max_bytes})")
        text = payload
    else:
        text = decode_text(payload, max_bytes=max_bytes)
    if _depth(text, max_depth) > max_depth:
        raise RejectedMessage("too_deep", f"JSON nested deeper than {max_depth} levels")
    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise RejectedMessage("not_json", f"not JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # defence in depth: the bounds above leave none of these
        raise RejectedMessage("not_json", f"not JSON ({type(exc).__name__})") from None
    problem = _number_problem(data, ())
    if problem is not None:
        raise RejectedMessage("number", problem)
    return data


def _depth(text: str, limit: int) -> int:
    """How deep arrays and objects nest in ``text`` (brackets inside strings do not count); the
    scan stops as soon as it passes ``limit``. Linear in the text, whatever it holds."""
    if text.count("[") + text.count("{") <= limit:
        return 0  # cannot nest deeper than it has brackets: the common case, without a scan
    depth = deepest = 0
    in_string = False
    escaped_at = -1
    for match in _SPECIAL.finditer(text):
        pos = match.start()
        char = text[pos]
        if pos == escaped_at:
            continue
        if in_string:
            if char == "\\":
                escaped_at = pos + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif char in "]}":
            depth -= 1
    return deepest


def _parse_int(text: str) -> Any:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        return _OutOfRange(text, f"integer of {digits} digits does not fit 64 bits")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        return _OutOfRange(text, f"integer {value} does not fit 64 bits")
    return value


def _parse_float(text: str) -> Any:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else text[:21] + "..."
        return _OutOfRange(text, f"number {shown} is beyond the range of a float")
    return value


def _parse_constant(name: str) -> Any:
    return _OutOfRange(name, f"{name} is not a JSON number")


def _number_problem(node: Any, path: tuple[str, ...]) -> str | None:
    """The first refused number in ``node``, as ``field.path: why``; None when there is none."""
    if isinstance(node, _OutOfRange):
        return f"{'.'.join(path) or '(the whole message)'}: {node.why}"
    if isinstance(node, dict):
        for key, value in node.items():
            found = _number_problem(value, (*path, _short(key)))
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _number_problem(value, (*path, f"[{i}]") if not path else (*path[:-1], f"{path[-1]}[{i}]"))
            if found is not None:
                return found
    return None


def _short(key: str) -> str:
    key = "".join(c if c.isprintable() else "?" for c in key[:40])
    return key if key else '""'
