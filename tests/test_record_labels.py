"""Labels of ``edge-har record``: the label/set and record/set parsers (fuzzed), class matching, the
terminal's keys and lines over a real pipe, and a recorder on a pty whose unknown labels arriving
over a real mosquitto are refused without touching the recording."""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_har.core.recording_layout import read_labels, read_parts, session_dirs
from edge_har.device.recording.label_input import (
    MAX_PAYLOAD_BYTES,
    ClassSet,
    Command,
    KeyEditor,
    LabelControl,
    PayloadError,
    TerminalLabels,
    check_class_names,
    parse_label_payload,
    parse_record_payload,
    parse_terminal_line,
)
from tests.record_helpers import FakeMicrocontroller, Feeder, write_config

# ====================================================================== payload parsers


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"walk", "walk"),
        (b"  walk\n", "walk"),
        (b'"walk"', "walk"),
        (b'{"label": "walk"}', "walk"),
        (b'{"label": "walk", "ts": 12}', "walk"),
        (b"", None),
        (b"none", None),
        (b"NONE", None),
        (b'{"label": null}', None),
        (b'{"label": ""}', None),
        ("gehen \u00fcber".encode(), "gehen \u00fcber"),
    ],
)
def test_label_payloads(payload, expected):
    assert parse_label_payload(payload) == expected


@pytest.mark.parametrize(
    "payload, words",
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"x" * (MAX_PAYLOAD_BYTES + 1), "bytes"),
        (b'{"name": "walk"}', '"label" key'),
        (b'{"label": 3}', "text or null"),
        (b"[1, 2]", "not JSON"),  # starts with neither { nor ": a bare name with a bracket is refused below
        (b'{"label": "walk"', "not JSON"),
        (b"a" * 65, "at most 64"),
        (b"wa\x00lk", "control character"),
        (b'{"label": {"label": {"label": {"label": {"label": 1}}}}}', "nested"),
    ],
)
def test_bad_label_payloads_are_one_line_errors(payload, words):
    if payload == b"[1, 2]":
        assert parse_label_payload(payload) == "[1, 2]"  # a name; refused later as not a class
        return
    with pytest.raises(PayloadError, match=words):
        parse_label_payload(payload)


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"ON", True),
        (b"on", True),
        (b"Start", True),
        (b'"ON"', True),
        (b'{"action": "start"}', True),
        (b'{"recording": true}', True),
        (b"OFF", False),
        (b" stop\n", False),
        (b'{"action": "stop"}', False),
        (b'{"recording": false}', False),
    ],
)
def test_record_payloads(payload, expected):
    assert parse_record_payload(payload) is expected


@pytest.mark.parametrize("payload", [b"", b"maybe", b"1", b'{"action": "pause"}', b"\xff", b'{"recording": 1}'])
def test_bad_record_payloads(payload):
    with pytest.raises(PayloadError, match="record/set"):
        parse_record_payload(payload)


_TEXTISH = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=120).map(str.encode),
    st.builds(
        lambda v: (__import__("json").dumps({"label": v})).encode(),
        st.one_of(st.none(), st.text(max_size=80), st.integers(), st.floats(), st.booleans(), st.lists(st.integers())),
    ),
    st.sampled_from([b"ON", b"off", b"none", b"{", b'"', b'{"action": null}', b"\x00", b"x" * 2000]),
)


@settings(max_examples=50, deadline=None)
@given(_TEXTISH)
def test_label_parser_returns_a_bounded_name_or_refuses(payload):
    try:
        name = parse_label_payload(payload)
    except PayloadError as exc:
        assert str(exc).startswith("label/set: ") and "\n" not in str(exc)
        return
    assert name is None or (0 < len(name) <= 64 and name == name.strip() and name.casefold() != "none")
    assert name is None or not any(ord(c) < 32 or ord(c) == 127 for c in name)


@settings(max_examples=50, deadline=None)
@given(_TEXTISH)
def test_record_parser_returns_a_bool_or_refuses(payload):
    try:
        value = parse_record_payload(payload)
    except PayloadError as exc:
        assert str(exc).startswith("record/set: ") and "\n" not in str(exc)
        return
    assert isinstance(value, bool)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=80))
def test_a_label_never_reaches_the_recorder_unless_it_is_a_class(text):
    got: list[Command] = []
    errors: list[dict] = []
    control = LabelControl(ClassSet(["sit", "walk"]), got.append, errors.append)
    control.on_label(text.encode())
    assert len(got) + len(errors) == 1
    if got:
        assert got[0].label in (None, "sit", "walk")
    else:
        assert set(errors[0]) == {"error", "label"}


# ====================================================================== classes and the terminal


def test_class_names_are_checked():
    assert check_class_names(["sit", "walk"]) == ["sit", "walk"]
    for bad, words in (
        (["a,b"], "comma"),
        (["none"], "ends the current segment"),
        (["a", "a"], "twice"),
        ([" a"], "spaces"),
        ([], "no classes"),
        (["x" * 65], "longer than 64"),
    ):
        with pytest.raises(PayloadError, match=words):
            check_class_names(bad)


def test_class_matching_is_exact_first_then_one_case_insensitive_match():
    classes = ClassSet(["Walk", "walk", "Sit"])
    assert classes.resolve("walk") == "walk" and classes.resolve("Walk") == "Walk"
    assert classes.resolve("WALK") is None  # two case-insensitive matches: ambiguous
    assert classes.resolve("sit") == "Sit" and classes.resolve("stand") is None
    assert classes.by_number(1) == "Walk" and classes.by_number(3) == "Sit" and classes.by_number(4) is None
    ten = ClassSet([f"c{i}" for i in range(1, 12)])
    assert ten.by_number(0) == "c10" and "0 c10" in ten.menu() and "c11" in ten.menu()


def test_key_editor_takes_a_digit_or_dash_at_once_and_a_name_on_enter():
    editor = KeyEditor()
    assert editor.feed("2") == "2"
    assert editor.feed("-") == "-"
    assert [editor.feed(c) for c in "wak"] == [None, None, None]
    assert editor.feed("\x7f") is None and editor.feed("l") is None and editor.feed("k") is None
    assert editor.feed("\n") == "walk"
    assert [editor.feed(c) for c in "run2"] == [None] * 4  # a digit inside a name is part of it
    assert editor.feed("\r") == "run2"
    assert editor.feed("\n") is None


def test_terminal_lines_pick_by_number_or_name_and_refuse_the_rest():
    got: list[Command] = []
    errors: list[dict] = []
    control = LabelControl(ClassSet(["sit", "walk"]), got.append, errors.append)
    assert parse_terminal_line("2", control, 1.0).label == "walk"
    assert parse_terminal_line(" Sit ", control, 2.0).label == "sit"
    assert parse_terminal_line("-", control, 3.0).label is None
    assert parse_terminal_line("", control, 4.0) is None
    assert parse_terminal_line("7", control, 5.0) is None and "no class 7" in errors[-1]["error"]
    assert parse_terminal_line("jog", control, 6.0) is None and errors[-1]["label"] == "jog"
    assert [(c.label, c.ts, c.origin) for c in got] == [
        ("walk", 1.0, "terminal"),
        ("sit", 2.0, "terminal"),
        (None, 3.0, "terminal"),
    ]


def test_terminal_labels_read_lines_from_a_real_pipe(tmp_path):
    got: list[Command] = []
    control = LabelControl(ClassSet(["sit", "walk"]), got.append)
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd) as stream, open(tmp_path / "terminal.txt", "w") as out:
        terminal = TerminalLabels(control, stream=stream, out=out)
        terminal.start()
        os.write(write_fd, b"1\nwa")
        time.sleep(0.3)
        os.write(write_fd, b"lk\n-\n")
        os.close(write_fd)  # end of input: the thread ends by itself
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        terminal.stop()
    assert [c.label for c in got] == ["sit", "walk", None]
    assert "1 sit  2 walk" in (tmp_path / "terminal.txt").read_text()


# ====================================================================== refused labels on a live recorder


@pytest.fixture
def mcu(tmp_path):
    pytest.importorskip("serial", reason="pyserial is not installed (pip install 'edge-har[device]')")
    device = FakeMicrocontroller(tmp_path)
    yield device
    device.unplug()


def test_unknown_labels_are_refused_on_label_error_and_the_recording_goes_on(
    tmp_path, mcu, mosquitto_broker, mqtt_listener, caplog
):
    from edge_har.device.recording.record_mqtt import RecordLink
    from edge_har.device.recording.record_setup import plan_record
    from edge_har.device.recording.recorder import Recorder, RecordOptions
    from edge_har.device.sources import make_source

    cfg_path = write_config(tmp_path, mcu.port, broker=mosquitto_broker)
    plan = plan_record(cfg_path, channels=3, rate_hz=50.0, classes="sit,walk")
    source = make_source(plan.config, 3, 50.0, "test-record")
    options = RecordOptions(
        out=tmp_path / "rec", device_id=plan.device_id, channels=plan.channels, rate_hz=50.0, classes=plan.classes
    )
    recorder = Recorder(
        options,
        source,
        make_link=lambda control, will: RecordLink(plan.config.mqtt, plan.device_id, control, will),
        install_signal_handlers=False,
    )
    base = "edge-har/pi-rec"
    listener = mqtt_listener(mosquitto_broker, [f"{base}/#"])
    # A retained request from some earlier client: stale, ignored at every connect.
    listener.client.publish(f"{base}/label/set", "sit", qos=1, retain=True).wait_for_publish(5)
    caplog.set_level(logging.INFO)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(recorder.run()), daemon=True)
    thread.start()
    feeder = Feeder(mcu)
    try:
        listener.wait_for(lambda ms: any(m.topic == f"{base}/record/state" and m.json()["recording"] for m in ms), 15)
        feeder.start()
        time.sleep(0.3)
        listener.client.publish(f"{base}/label/set", "walk", qos=1).wait_for_publish(5)
        listener.wait_last(f"{base}/label/state", b"walk")
        for _ in range(20):  # a flood of the same typo, and a few others
            listener.client.publish(f"{base}/label/set", "wlak", qos=1)
        for payload in ("jump", '{"label": "run"}', '{"label": 5}', "x" * 200):
            listener.client.publish(f"{base}/label/set", payload, qos=1)
        listener.wait_count(f"{base}/label/error", 24, timeout=10)
        time.sleep(0.5)
        feeder.stop()
        time.sleep(0.3)
    finally:
        feeder.stop()
        recorder.request_stop("test done")
        thread.join(10)
    assert result == [0]
    errors = listener.payloads(f"{base}/label/error")
    assert {e["label"] for e in errors} >= {"wlak", "jump", "run"}
    assert all("error" in e and "\n" not in e["error"] for e in errors)
    refusals = [r for r in caplog.records if "refused a label" in r.getMessage()]
    assert sum("'wlak'" in r.getMessage() for r in refusals) == 1  # logged once per name
    assert any("retained message" in r.getMessage() for r in caplog.records)
    (session,) = session_dirs(tmp_path / "rec")
    assert [s.label for s in read_labels(session)] == ["walk"]  # never "sit" (retained), nothing refused
    np.testing.assert_array_equal(read_parts(session)[1], feeder.values())  # nothing lost
    listener.wait_last(f"{base}/label/state", b"walk")


# ====================================================================== Home Assistant's templates


def test_the_select_and_switch_templates_render_as_home_assistant_renders_them():
    jinja2 = pytest.importorskip("jinja2")
    from edge_har.device.recording import ha_discovery
    from edge_har.mqtt.config import HomeAssistantConfig

    ha = HomeAssistantConfig(enabled=True, node_name="Kitchen Pi")
    t = "edge-har/pi-1"
    switch = ha_discovery.recording_switch_config(
        ha, device_id="pi-1", record_set=f"{t}/record/set", record_state=f"{t}/record/state"
    )
    select = ha_discovery.label_select_config(
        ha,
        device_id="pi-1",
        classes=["sit", "walk"],
        label_set=f"{t}/label/set",
        label_state=f"{t}/label/state",
        record_state=f"{t}/record/state",
    )
    assert ha_discovery.switch_topic(ha, "pi-1") == "homeassistant/switch/Kitchen_Pi/recording/config"
    assert ha_discovery.select_topic(ha, "pi-1") == "homeassistant/select/Kitchen_Pi/activity_label/config"
    assert select["name"] == "pi-1 activity label" and switch["name"] == "pi-1 recording"
    assert select["options"] == ["sit", "walk", "none"] and select["device"] == switch["device"]
    env = jinja2.Environment()
    state = env.from_string(switch["value_template"])
    assert state.render(value_json={"recording": True}) == switch["state_on"] == "ON"
    assert state.render(value_json={"recording": False}) == switch["state_off"] == "OFF"
    for config in (select, switch):
        available = env.from_string(config["availability_template"])
        assert available.render(value_json={"error": None}) == config["payload_available"]
        assert available.render(value_json={"error": "disk full"}) == config["payload_available"]
        assert available.render(value_json={"error": ha_discovery.OFFLINE_ERROR}) == config["payload_not_available"]


def test_a_broker_outage_leaves_the_recording_alone_and_labels_work_again_after_it(
    tmp_path, mcu, mosquitto_factory, mqtt_listener
):
    from edge_har.device.recording.record_mqtt import RecordLink
    from edge_har.device.recording.record_setup import plan_record
    from edge_har.device.recording.recorder import Recorder, RecordOptions
    from edge_har.device.sources import make_source

    broker = mosquitto_factory(persistence=False)
    plan = plan_record(write_config(tmp_path, mcu.port, broker=broker), channels=3, rate_hz=50.0, classes="sit,walk")
    options = RecordOptions(
        out=tmp_path / "rec", device_id=plan.device_id, channels=plan.channels, rate_hz=50.0, classes=plan.classes
    )
    recorder = Recorder(
        options,
        make_source(plan.config, 3, 50.0, "test-record"),
        make_link=lambda control, will: RecordLink(plan.config.mqtt, plan.device_id, control, will),
        install_signal_handlers=False,
    )
    base = "edge-har/pi-rec"
    thread = threading.Thread(target=recorder.run, daemon=True)
    thread.start()
    feeder = Feeder(mcu)
    try:
        listener = mqtt_listener(broker, [f"{base}/#"])
        listener.wait_for(lambda ms: any(m.topic == f"{base}/record/state" for m in ms), 15, "a state")
        feeder.start()
        listener.client.publish(f"{base}/label/set", "walk", qos=1).wait_for_publish(5)
        listener.wait_last(f"{base}/label/state", b"walk")

        def label_states(ms: list) -> int:
            return sum(m.topic == f"{base}/label/state" for m in ms)

        before = label_states(listener.messages)
        broker.stop()  # no persistence: the retained states are gone with it
        time.sleep(1.0)
        broker.start()
        # The recorder sends its retained states again once it is back (live, or retained if it was first).
        listener.wait_for(lambda ms: label_states(ms) > before, 15, "the states again")
        time.sleep(0.3)
        listener.client.publish(f"{base}/label/set", "sit", qos=1).wait_for_publish(5)
        listener.wait_last(f"{base}/label/state", b"sit", timeout=15)
        time.sleep(0.3)
        feeder.stop()
        time.sleep(0.3)
    finally:
        feeder.stop()
        recorder.request_stop("test done")
        thread.join(10)
    (session,) = session_dirs(tmp_path / "rec")
    assert [s.label for s in read_labels(session)] == ["walk", "sit"]
    np.testing.assert_array_equal(read_parts(session)[1], feeder.values())  # nothing lost during the outage


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_any_keys_give_entries_that_are_classes_or_refusals(keys):
    got: list[Command] = []
    errors: list[dict] = []
    control = LabelControl(ClassSet(["sit", "walk", "Wave"]), got.append, errors.append)
    editor = KeyEditor()
    entries = [e for e in (editor.feed(ch) for ch in keys) if e is not None]
    assert len(editor.buffer) <= 64
    for entry in entries:
        parse_terminal_line(entry, control, 1.0)
    assert all(c.label in (None, "sit", "walk", "Wave") for c in got)
    assert len(got) + len(errors) <= len(entries)


def test_terminal_labels_on_a_real_tty_take_a_digit_without_enter(tmp_path):
    import termios

    got: list[Command] = []
    control = LabelControl(ClassSet(["sit", "walk"]), got.append)
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    try:
        with os.fdopen(slave, closefd=False) as stream, open(tmp_path / "terminal.txt", "w") as out:
            terminal = TerminalLabels(control, stream=stream, out=out)
            terminal.start()
            assert not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak while it runs
            os.write(master, b"2")  # no Enter
            deadline = time.monotonic() + 5
            while not got and time.monotonic() < deadline:
                time.sleep(0.02)
            os.write(master, b"si\x7fit\r-")
            while len(got) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            terminal.stop()
        assert [c.label for c in got] == ["walk", "sit", None]
        assert termios.tcgetattr(slave) == before  # the terminal is given back as it was
    finally:
        os.close(master)
        os.close(slave)


def test_a_digit_that_is_not_ascii_is_a_name_not_a_number():
    """'¹' is a digit to str.isdigit but not to int(): it crashed the terminal thread."""
    got: list[Command] = []
    errors: list[dict] = []
    control = LabelControl(ClassSet(["sit", "walk"]), got.append, errors.append)
    editor = KeyEditor()
    assert editor.feed("\u00b9") is None and editor.feed("\n") == "\u00b9"
    assert parse_terminal_line("\u00b9", control, 1.0) is None and errors[-1]["label"] == "\u00b9"
    assert parse_terminal_line("\u0663", control, 1.0) is None and not got
