"""``edge-har subscribe`` against what anyone on the broker can send: it counts, shows and goes on.

A float field given a 400-digit integer, a ``seq`` beyond 64 bits, JSON nested 50,000 deep,
a 10 MB message, bytes that are not UTF-8, stats whose fields have the wrong types: none of
them ends the command; each is counted by reason, shown on stderr (rate-limited), summed up at
exit, and the next valid prediction is still shown.
"""

from __future__ import annotations

import io
import json
import os
import re
import time

import paho.mqtt.publish as publish
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_har.mqtt.bounded_json import DEFAULT_MAX_BYTES, RejectedMessage, parse_message
from edge_har.subscribe import BAD_REASONS, Viewer
from tests.test_subscribe import Subscribe, pred

EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "200"))  # per property below


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _raw_pred(**changes: object) -> str:
    """A valid prediction's JSON with fields replaced by raw JSON text (numbers json.dumps cannot write)."""
    data = pred(5, "pi-bad")
    text = json.dumps(data)
    for key, raw in changes.items():
        text = re.sub(rf'"{key}": [^,}}]+', f'"{key}": {raw}', text, count=1)
    return text


# (topic, payload, the reason it is counted under)
HOSTILE = [
    ("edge-har/pi-bad/prediction", _raw_pred(confidence="9" * 400), "number"),
    ("edge-har/pi-bad/prediction", _raw_pred(seq=str(2**64 + 5)), "number"),
    ("edge-har/pi-bad/prediction", _raw_pred(window_end_ts="1" * 5000), "number"),  # past Python's 4300 digits
    ("edge-har/pi-bad/prediction", _raw_pred(confidence="NaN"), "number"),
    ("edge-har/pi-bad/prediction", _raw_pred(e2e_ms="1e400"), "number"),
    ("edge-har/pi-bad/prediction", "[" * 50_000 + "]" * 50_000, "too_deep"),
    ("edge-har/pi-bad/prediction", b'{"label": "' + b"x" * 10_000_000 + b'"}', "too_large"),
    ("edge-har/pi-bad/prediction", b'\xff\xfe{"label": "Walk"}', "not_utf8"),
    ("edge-har/pi-bad/prediction", "null", "not_object"),
    ("edge-har/pi-bad/prediction", "{not json", "not_json"),
    (
        "edge-har/pi-bad/stats",
        json.dumps({"device_id": "pi-bad", "e2e_ms": [1, 2], "mqtt": 5, "windows_per_s": "fast"}),
        "schema",
    ),
    ("edge-har/pi-bad/stats", '{"device_id": "pi-bad", "stats_interval_s": ' + "7" * 400 + "}", "number"),
]


def _expected_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for _topic, _payload, reason in HOSTILE:
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def _summary_counts(err: str) -> dict[str, int]:
    line = next(line for line in err.splitlines() if re.search(r"\d+ bad message\(s\): ", line))
    return {reason: int(n) for reason, n in re.findall(r"(\w+) (\d+)", line.split("bad message(s): ", 1)[1])}


def test_every_hostile_message_is_counted_and_the_next_prediction_still_shown(mosquitto_broker):
    """The real command and a real mosquitto: one valid prediction, every hostile message, one more valid."""
    sub = Subscribe(
        "--broker",
        f"{mosquitto_broker.host}:{mosquitto_broker.port}",
        "--topic",
        "edge-har/+/prediction",
        "--topic",
        "edge-har/+/stats",
        "--count",
        "2",
        "--timeout",
        "60",
    )
    sub.wait_listening()
    messages = [{"topic": "edge-har/pi-ok/prediction", "payload": _json(pred(0, "pi-ok")), "qos": 1}]
    messages += [{"topic": topic, "payload": payload, "qos": 1} for topic, payload, _ in HOSTILE]
    messages += [{"topic": "edge-har/pi-ok/prediction", "payload": _json(pred(1, "pi-ok")), "qos": 1}]
    publish.multiple(messages, hostname=mosquitto_broker.host, port=mosquitto_broker.port)
    code, out, err = sub.finish(timeout=60)

    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    shown = [line for line in out.splitlines() if "pi-ok" in line]
    assert len(shown) == 2 and "#0" in shown[0] and "#1" in shown[1], out
    assert "pi-bad" not in "".join(line for line in out.splitlines() if "stats" not in line), out
    assert _summary_counts(err) == _expected_counts(), err[-3000:]
    # one line per reason at first (the rest within 10 s are only counted), each naming the field
    assert "bad message (number): confidence: integer of 400 digits does not fit 64 bits" in err
    assert "seq: integer 18446744073709551621 does not fit 64 bits" not in err  # the second "number": counted only
    assert "bad message (too_large): a message of 10000013 bytes" in err
    assert "bad message (schema): stats: windows_per_s: must be a number, got string; e2e_ms: must be an object" in err


def test_each_hostile_message_alone_is_counted_under_its_reason(capsys):
    for topic, payload, reason in HOSTILE:
        for mode in ("lines", "table"):
            viewer = Viewer(mode=mode, out=io.StringIO())
            raw = payload if isinstance(payload, bytes) else payload.encode()
            assert viewer.handle(topic, raw) is False
            assert dict(viewer.bad) == {reason: 1}, (topic, raw[:80], dict(viewer.bad))
            viewer.render_table()
    assert "Traceback" not in capsys.readouterr().err


def test_what_breaks_formatting_is_shown_safely_and_never_as_an_escape_sequence(capsys):
    """Valid JSON numbers no clock can show, unhashable seqs, terminal escapes in ids and labels."""
    for mode in ("lines", "table"):
        out = io.StringIO()
        viewer = Viewer(mode=mode, out=out, probabilities=True)
        cases = [
            {**pred(1, "pi-far"), "window_end_ts": 1e300},
            {**pred(2, "pi-far"), "window_end_ts": -1e300, "seq": 3},
            {**pred(4, "pi-far"), "window_end_ts": 1e300, "seq": [1, 2]},
            {**pred(5, "pi-far"), "device_id": {"a": 1}, "seq": {"b": 2}},
            {**pred(6, "\x1b[2J\x1b[Hpi-evil"), "label": "Walk\r\nfake line", "model_id": "\x1b]0;title\x07"},
            {**pred(7, "pi-far"), "probabilities": {"\x1b[31mred": 0.5, "Walk": 0.5}},
        ]
        for data in cases:
            assert viewer.handle("edge-har/pi-far/prediction", _json(data)) is True
        viewer.handle("edge-har/\x1b[2Jpi-s/status", b"\x1b[2Jonline\r")
        viewer.handle(
            "edge-har/pi-far/stats", _json({"device_id": "pi-far", "mqtt": {"queued": "\x1b[2J"}, "e2e_ms": 3})
        )
        viewer.maybe_draw(force=True)
        text = out.getvalue()
        assert viewer.bad.get("internal", 0) == 0 and viewer.predictions == len(cases), dict(viewer.bad)
        assert "\x1b" not in text and "\r" not in text and "\x07" not in text, text
        assert not any(line.startswith("fake line") for line in text.splitlines()), text
        err = capsys.readouterr().err
        assert "\x1b" not in err and "Traceback" not in err


def test_bad_message_lines_are_rate_limited_per_reason_and_all_counted(capsys):
    viewer = Viewer(mode="lines", out=io.StringIO(), bad_line_every_s=0.3)
    for _ in range(50):
        viewer.handle("edge-har/pi/prediction", b"not json")
    viewer.handle("edge-har/pi/prediction", b"\xff")
    time.sleep(0.35)
    viewer.handle("edge-har/pi/prediction", b"still not json")
    err = capsys.readouterr().err.splitlines()
    not_json = [line for line in err if "(not_json)" in line]
    assert len(not_json) == 2 and "(+49 more since the last line); 51 not_json so far" in not_json[1], err
    assert sum("(not_utf8)" in line for line in err) == 1
    assert viewer.bad == {"not_json": 51, "not_utf8": 1} and viewer.invalid == 52
    assert viewer.bad_summary() == "52 bad message(s): not_json 51, not_utf8 1"
    table = Viewer(mode="table", out=io.StringIO())
    table.handle("edge-har/pi/prediction", b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[")
    assert "1 bad message(s): too_deep 1" in table.render_table()


def test_bounded_json_names_the_field_and_refuses_only_what_no_store_holds():
    assert parse_message(b'{"seq": 9223372036854775807, "x": [-9223372036854775808, 1.5e308]}') == {
        "seq": 2**63 - 1,
        "x": [-(2**63), 1.5e308],
    }
    assert parse_message('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[[[[[[[[[[[["}')["a"].startswith("[[[")
    for raw, reason, detail in [
        (b'{"a": {"b": [1, {"c": 9223372036854775808}]}}', "number", "a.b[1].c: integer 9223372036854775808"),
        (b'{"p": {"Walk": Infinity}}', "number", "p.Walk: Infinity is not a JSON number"),
        (b'"' + b'\\"' * 100_000, "not_json", "not JSON"),  # a linear depth scan, not a regex that backtracks
        (b"x" * (DEFAULT_MAX_BYTES + 1), "too_large", f"at most {DEFAULT_MAX_BYTES}"),
        (b"[" * 33 + b"]" * 33, "too_deep", "deeper than 32"),
    ]:
        started = time.perf_counter()
        try:
            parse_message(raw)
        except RejectedMessage as exc:
            assert exc.reason == reason and detail in exc.detail, (raw[:60], exc.reason, exc.detail)
        else:
            raise AssertionError(f"accepted {raw[:60]!r}")
        assert time.perf_counter() - started < 1.0
    assert parse_message(b"[" * 32 + b"]" * 32) is not None


# ---------------------------------------------------------------- property: handle never raises

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([0, -1, 2**63, 2**64 + 5, 1e308, -1e308, 5e-324]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=25,
)
PREDICTION_KEYS = list(pred(0, "x"))
STATS_KEYS = ["device_id", "run_id", "stats_interval_s", "windows_per_s", "e2e_ms", "mqtt", "ts"]


def _mutated(base_keys: list[str]) -> st.SearchStrategy[bytes]:
    return st.dictionaries(st.sampled_from(base_keys), values, max_size=len(base_keys)).map(
        lambda changes: json.dumps({**pred(3, "pi-f"), **changes}).encode()
    )


payloads = st.one_of(
    st.binary(max_size=300),
    values.map(lambda v: json.dumps(v).encode()),
    _mutated(PREDICTION_KEYS),
    st.dictionaries(st.sampled_from(STATS_KEYS), values, max_size=7).map(lambda d: json.dumps(d).encode()),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 6000).map(lambda n: b'{"label": "Walk", "seq": ' + b"9" * n + b"}"),
    st.text(max_size=60).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
)
topics = st.one_of(
    st.sampled_from(["edge-har/pi-f/prediction", "edge-har/pi-f/stats", "edge-har/pi-f/status", "x", "", "/"]),
    st.text(max_size=30),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(topics, payloads), min_size=1, max_size=6), st.sampled_from(["lines", "table"]))
def test_any_message_on_any_topic_is_shown_or_counted_and_never_raises(messages, mode):
    viewer = Viewer(mode=mode, out=io.StringIO(), probabilities=True, bad_line_every_s=3600)
    for topic, payload in messages:
        viewer.handle(topic, payload)  # raises nothing: handle's own catch-all counts "internal"
        viewer.check_liveness()
        viewer.render_table()
    assert viewer.bad.get("internal", 0) == 0, dict(viewer.bad)  # every bad message had a known reason
    assert set(viewer.bad) <= set(BAD_REASONS)
    assert viewer.predictions + viewer.duplicates + viewer.invalid <= len(messages) + viewer.bad["schema"]
