"""``edge-har subscribe`` end to end: the real command in a subprocess against a real mosquitto."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_har.mqtt.config import MqttConfig
from edge_har.mqtt.payloads import prediction_payload, validate_prediction
from edge_har.mqtt.publisher import Publisher
from edge_har.subscribe import Viewer, parse_broker
from tests.plugins.broker import TEST_USERS

REPO = Path(__file__).resolve().parents[1]


def pred(seq: int, device: str, label: str = "Walk") -> dict:
    other = "Sit" if label != "Sit" else "Walk"
    return prediction_payload(
        device_id=device,
        model_id="test-model",
        seq=seq,
        window_end_ts=time.time(),
        label=label,
        confidence=0.875,
        probabilities={label: 0.875, other: 0.125},
        inference_ms=0.61,
        e2e_ms=4.25,
    )


class Subscribe:
    """``python -m edge_har subscribe ...`` with its stderr read live (to know when it listens)."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_har", "subscribe", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)},
        )
        self.err_lines: list[str] = []
        self.out_lines: list[str] = []
        self._listening = threading.Event()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err_lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)
            if "listening on" in line:
                self._listening.set()

    def wait_listening(self, timeout: float = 15.0) -> None:
        if not self._listening.wait(timeout):
            self.proc.kill()
            raise AssertionError(f"edge-har subscribe did not start listening: {''.join(self.err_lines)}")

    def finish(self, timeout: float = 20.0) -> tuple[int, str, str]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"edge-har subscribe did not exit; stdout:\n{''.join(self.out_lines)}\nstderr:\n{''.join(self.err_lines)}"
            ) from None
        for reader in self._readers:
            reader.join(5)
        return self.proc.returncode, "".join(self.out_lines), "".join(self.err_lines)


@pytest.fixture
def publisher_for(mosquitto_broker):
    made: list[Publisher] = []

    def make(device: str, **cfg) -> Publisher:
        config = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, keepalive=5, **cfg)
        publisher = Publisher(config, device, "test-model", ["Walk", "Sit"])
        publisher.start()
        assert publisher.wait_connected(10)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.stop(timeout=2.0)


def test_lines_mode_with_count_and_jsonl(mosquitto_broker, publisher_for, tmp_path):
    jsonl = tmp_path / "predictions.jsonl"
    jsonl.write_text('{"earlier": "line kept"}\n')  # --jsonl appends
    sub = Subscribe(
        "--broker",
        f"{mosquitto_broker.host}:{mosquitto_broker.port}",
        "--count",
        "4",
        "--jsonl",
        str(jsonl),
        "--timeout",
        "20",
    )
    sub.wait_listening()
    kitchen, hall = publisher_for("pi-kitchen"), publisher_for("pi-hall")
    kitchen.publish_prediction(pred(0, "pi-kitchen"))
    hall.publish_prediction(pred(0, "pi-hall", "Sit"))
    again = pred(1, "pi-kitchen")
    kitchen.publish_prediction(again)
    kitchen.publish_prediction(again)  # as a QoS 1 re-delivery would: shown and written once
    hall.publish_prediction(pred(1, "pi-hall", "Sit"))
    code, out, err = sub.finish()

    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 4, out
    assert sum("pi-kitchen" in line for line in lines) == 2 and sum("pi-hall" in line for line in lines) == 2
    hall_line = next(line for line in lines if "pi-hall" in line)
    assert "Sit" in hall_line and "0.875" in hall_line and "inf 0.61 ms" in hall_line and "e2e 4.25 ms" in hall_line
    assert "#0" in hall_line
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert records[0] == {"earlier": "line kept"}
    assert len(records) == 5 and all(validate_prediction(r) == [] for r in records[1:])
    assert {(r["device_id"], r["seq"]) for r in records[1:]} == {
        ("pi-kitchen", 0),
        ("pi-kitchen", 1),
        ("pi-hall", 0),
        ("pi-hall", 1),
    }


def test_table_mode_shows_each_devices_current_activity(mosquitto_broker, publisher_for):
    kitchen = publisher_for("pi-kitchen")  # its retained "online" is there before the viewer starts
    sub = Subscribe(
        "--broker",
        f"{mosquitto_broker.host}:{mosquitto_broker.port}",
        "--mode",
        "table",
        "--count",
        "3",
        "--timeout",
        "20",
    )
    sub.wait_listening()
    hall = publisher_for("pi-hall")
    kitchen.publish_prediction(pred(0, "pi-kitchen", "Walk"))
    hall.publish_prediction(pred(0, "pi-hall", "Sit"))
    kitchen.publish_prediction(pred(1, "pi-kitchen", "Sit"))
    code, out, err = sub.finish()
    assert code == 0, err
    final = out.strip().split("\n\n")[-1].splitlines()  # not a tty: plain tables, the last one at exit
    assert final[0].split()[:3] == ["DEVICE", "STATUS", "ACTIVITY"]
    rows = {line.split()[0]: line.split() for line in final[1:]}
    assert rows["pi-kitchen"][1:3] == ["online", "Sit"] and rows["pi-hall"][1:3] == ["online", "Sit"]
    assert "\x1b[" not in out


def test_probabilities_option_shows_every_class_in_lines_and_table(mosquitto_broker, publisher_for):
    """Without it only the top label showed, so a near tie (0.51 vs 0.49) looked like a sure answer."""
    publisher = publisher_for("pi-prob")
    close = {**pred(0, "pi-prob", "Walk"), "confidence": 0.51, "probabilities": {"Walk": 0.51, "Sit": 0.49}}
    for mode in ("lines", "table"):
        sub = Subscribe(
            "--broker",
            f"{mosquitto_broker.host}:{mosquitto_broker.port}",
            "--mode",
            mode,
            "--probabilities",
            "--count",
            "1",
            "--timeout",
            "20",
        )
        sub.wait_listening()
        publisher.publish_prediction({**close, "seq": 0 if mode == "lines" else 1})
        code, out, err = sub.finish()
        assert code == 0, err
        if mode == "lines":
            (line,) = out.strip().splitlines()
            assert line.endswith("#0  Walk 0.510 Sit 0.490"), line
        else:
            final = out.strip().split("\n\n")[-1].splitlines()
            assert final[0].endswith("MODEL  PROBABILITIES")
            row = next(r for r in final[1:] if r.startswith("pi-prob"))
            assert row.endswith("test-model  Walk 0.510 Sit 0.490"), row
    # and without the option, lines stay as they were (no probabilities)
    plain = io.StringIO()
    Viewer(mode="lines", out=plain).handle("edge-har/pi-prob/prediction", json.dumps(close).encode())
    assert plain.getvalue().rstrip().endswith("#0") and "0.490" not in plain.getvalue()


def edge_har(*args: str) -> int:
    """The same command in this process (no interpreter start-up): for the quick cases."""
    from edge_har.cli import main

    try:
        return main(list(args))
    except SystemExit as exc:  # argparse errors
        return int(exc.code or 0)


def test_timeout_before_count_exits_1(mosquitto_broker, capsys):
    code = edge_har(
        "subscribe", "--broker", f"{mosquitto_broker.host}:{mosquitto_broker.port}", "--count", "2", "--timeout", "1"
    )
    assert code == 1 and "timeout: 0 of 2 predictions arrived in 1 s" in capsys.readouterr().err


def test_auth_options_and_a_refused_login(mosquitto_auth_broker, tmp_path, monkeypatch, capsys):
    good = tmp_path / "viewer.pass"
    good.write_text(TEST_USERS["viewer"] + "\n")
    broker = f"{mosquitto_auth_broker.host}:{mosquitto_auth_broker.port}"
    code = edge_har(
        "subscribe", "--broker", broker, "--username", "viewer", "--password-file", str(good), "--timeout", "0.5"
    )
    assert code == 0 and "listening on" in capsys.readouterr().err

    monkeypatch.setenv("EDGE_HAR_SUB_PW", "wrong-pw")
    code = edge_har(
        "subscribe", "--broker", broker, "--username", "viewer", "--password-env", "EDGE_HAR_SUB_PW", "--timeout", "10"
    )
    err = capsys.readouterr().err
    assert code == 1 and "refused the connection" in err and "wrong-pw" not in err


def test_tls_options(mosquitto_tls_broker, tls_files, capsys):
    code = edge_har(
        "subscribe",
        "--broker",
        f"localhost:{mosquitto_tls_broker.port}",
        "--ca-file",
        str(tls_files.ca_file),
        "--timeout",
        "0.5",
    )
    err = capsys.readouterr().err
    assert code == 0 and "TLS" in err and "listening on" in err


def test_bad_arguments_exit_2_naming_the_option(capsys):
    for args, expected in (
        (["--broker", "host:notaport"], "--broker 'host:notaport': the port must be a number"),
        (["--password-env", "X"], "needs a username"),
        (["--count", "0"], "--count"),
        (["--ca-file", "/no/such_ca.crt"], "--ca-file: /no/such_ca.crt does not exist"),
        (
            ["--username", "u", "--password-env", "EDGE_HAR_UNSET_VAR"],
            "--password-env: the environment variable named in mqtt.password_env is not set",
        ),
    ):
        code = edge_har("subscribe", *args, "--timeout", "1")
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert expected in err, (args, err)


def test_parse_broker():
    assert parse_broker("127.0.0.1") == ("127.0.0.1", None, False)
    assert parse_broker("broker.lan:1884") == ("broker.lan", 1884, False)
    assert parse_broker("[::1]:1883") == ("::1", 1883, False)
    assert parse_broker("mqtts://broker.example.org") == ("broker.example.org", None, True)
    with pytest.raises(ValueError, match="port"):
        parse_broker("broker:70000")


def test_viewer_reports_payloads_that_break_the_schema(capsys):
    out = io.StringIO()
    viewer = Viewer(mode="lines", out=out)
    assert viewer.handle("edge-har/pi/prediction", json.dumps({"label": "Walk", "seq": -1}).encode()) is True
    assert viewer.invalid == 1 and "does not follow the schema" in capsys.readouterr().err
    assert viewer.handle("edge-har/pi/prediction", b"not json") is False
    assert viewer.handle("edge-har/pi/status", b"offline") is False
    assert "pi" in out.getvalue() and "is offline" in out.getvalue()


def test_viewer_reports_restarts_and_duplicates_by_run_id(capsys):
    out = io.StringIO()
    viewer = Viewer(mode="lines", out=out)
    first, second = {**pred(0, "pi-a"), "run_id": "run-one"}, {**pred(0, "pi-a"), "run_id": "run-two"}
    assert viewer.handle("edge-har/pi-a/prediction", json.dumps(first).encode())
    assert not viewer.handle("edge-har/pi-a/prediction", json.dumps(first).encode())  # same run, same seq
    # the device restarted: seq 0 again, with a new window time and a new run id: new, and a restart
    assert viewer.handle("edge-har/pi-a/prediction", json.dumps({**second, "window_end_ts": 5.0}).encode())
    # the same seq and window time under another run is not a duplicate either
    assert viewer.handle("edge-har/pi-a/prediction", json.dumps({**first, "run_id": "run-three"}).encode())
    # a late re-delivery from an older run is a duplicate, not another restart
    assert not viewer.handle("edge-har/pi-a/prediction", json.dumps(second | {"window_end_ts": 5.0}).encode())
    assert viewer.duplicates == 2 and viewer.restarts == 2 and viewer.predictions == 3
    assert "pi-a restarted: run run-one -> run-two" in out.getvalue()
    # a device older than the run id: de-duplicated on (device, seq, window_end_ts), never a "restart"
    old = pred(7, "pi-old")
    assert viewer.handle("edge-har/pi-old/prediction", json.dumps(old).encode())
    assert not viewer.handle("edge-har/pi-old/prediction", json.dumps(old).encode())
    assert viewer.duplicates == 3 and viewer.restarts == 2
    assert capsys.readouterr().err == ""  # all of them valid


def test_viewer_marks_an_online_device_without_stats_as_stale():
    out = io.StringIO()
    viewer = Viewer(mode="lines", out=out)
    viewer.handle("edge-har/pi-a/status", b"online")
    stats = {"device_id": "pi-a", "run_id": "r1", "ts": time.time(), "stats_interval_s": 2.0}
    viewer.handle("edge-har/pi-a/stats", json.dumps(stats).encode())
    at = viewer.devices["pi-a"].stats_at
    viewer.check_liveness(now=at + 5.9)  # under 3 x 2 s
    assert viewer.devices["pi-a"].liveness == "online"
    viewer.check_liveness(now=at + 6.1)
    assert viewer.devices["pi-a"].liveness == "stale" and "pi-a             is stale" in out.getvalue()
    viewer.handle("edge-har/pi-a/stats", json.dumps(stats).encode())  # stats again: online again
    assert viewer.devices["pi-a"].liveness == "online"
    viewer.handle("edge-har/pi-a/status", b"stopped")
    viewer.check_liveness(now=at + 1000)
    assert viewer.devices["pi-a"].liveness == "stopped"
    table = Viewer(mode="table", out=io.StringIO())
    table.handle("edge-har/pi-b/status", b"online")
    table.check_liveness(now=table.started_at + 91)  # no stats at all: the default 30 s interval
    assert table.render_table().splitlines()[1].split()[:2] == ["pi-b", "stale"]


def test_subscription_filters_share_predictions_but_not_status_or_stats():
    from edge_har.subscribe import subscription_filters

    assert subscription_filters(["edge-har/+/prediction"], mode="lines", share=None) == [
        "edge-har/+/prediction",
        "edge-har/+/event",
    ]
    assert subscription_filters(["edge-har/+/prediction"], mode="table", share="g1") == [
        "$share/g1/edge-har/+/prediction",
        "$share/g1/edge-har/+/event",  # an event, like a prediction, goes to one consumer of the group
        "edge-har/+/status",
        "edge-har/+/stats",
    ]
    assert subscription_filters(["edge-har/pi-1/stats"], mode="lines", share=None) == ["edge-har/pi-1/stats"]


def test_share_needs_mqtt5_and_a_plain_group_name(capsys):
    for args, expected in (
        (["--share", "g", "--protocol", "3.1.1"], "--share needs MQTT 5"),
        (["--share", "a/b"], "--share 'a/b'"),
        (["--share", ""], "--share ''"),
    ):
        assert edge_har("subscribe", *args, "--timeout", "1") == 2, args
        assert expected in capsys.readouterr().err, args


def test_two_shared_consumers_together_get_every_prediction_exactly_once(mosquitto_broker, publisher_for, tmp_path):
    """--share: a fleet's predictions split between consumers, none lost, none given to both."""
    broker = f"{mosquitto_broker.host}:{mosquitto_broker.port}"
    parts = [tmp_path / f"part-{i}.jsonl" for i in range(2)]
    subs = [Subscribe("--broker", broker, "--share", "archive", "--jsonl", str(p), "--timeout", "60") for p in parts]
    for sub in subs:
        sub.wait_listening()
    devices = [f"pi-{i}" for i in range(4)]
    per_device = 100
    publishers = [publisher_for(d, protocol="5") for d in devices]
    for seq in range(per_device):
        for device, publisher in zip(devices, publishers):
            publisher.publish_prediction(pred(seq, device))
    expected = {(d, p.run_id, s) for d, p in zip(devices, publishers) for s in range(per_device)}

    def received() -> list[list[tuple]]:
        got = []
        for path in parts:
            lines = path.read_text().splitlines() if path.exists() else []
            got.append([(r["device_id"], r["run_id"], r["seq"]) for r in map(json.loads, lines)])
        return got

    deadline = time.monotonic() + 20
    while sum(map(len, received())) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # nothing more may come
    for sub in subs:
        sub.proc.send_signal(signal.SIGINT)
        code, _, err = sub.finish()
        assert code == 0, err
    a, b = received()
    assert len(a) + len(b) == len(expected), (len(a), len(b))
    assert set(a) | set(b) == expected and not set(a) & set(b), "each message to exactly one consumer"
    assert len(set(a)) == len(a) and len(set(b)) == len(b)
    assert a and b, "both consumers took part"


_FULL_BACKLOG = """
import sys, time
import edge_har.subscribe as s
s.MAX_BACKLOG = 5
handle = s.Viewer.handle
def slow(self, *a):
    time.sleep(0.05)
    return handle(self, *a)
s.Viewer.handle = slow
from edge_har.cli import main
sys.exit(main(["subscribe", "--broker", sys.argv[1], "--mode", "lines"]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_ends_subscribe_while_its_backlog_is_full(mosquitto_broker, publisher_for, sig):
    """A flood fills the bounded backlog; the broker's disconnect callback must not wait for room in it."""
    broker = f"{mosquitto_broker.host}:{mosquitto_broker.port}"
    flooding = threading.Event()
    flooding.set()
    proc = subprocess.Popen(
        [sys.executable, "-c", _FULL_BACKLOG, broker],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening on" in line, line
        publisher = publisher_for("pi-flood")

        def flood() -> None:
            seq = 0
            while flooding.is_set():
                publisher.publish_prediction(pred(seq, "pi-flood"))
                seq += 1
                time.sleep(0.002)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        time.sleep(1.0)  # the backlog is full and stays full
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"subscribe did not stop within 10 s of {sig.name}: {err[-500:]}")
    finally:
        flooding.clear()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "dropped: more than 5 waited to be shown" in err


def test_events_get_a_line_and_the_table_the_last_one(capsys):
    import io as _io

    from edge_har.core.events import Event
    from edge_har.mqtt.payloads import event_payload

    event = Event(
        "fall", impact_ts=1_700_000_000.2, detected_ts=1_700_000_001.5, confidence=0.97, first_seq=40, last_seq=41
    )
    payload = json.dumps(event_payload(device_id="pi-7", model_id="m", event=event.to_json(), run_id="r1")).encode()
    out = _io.StringIO()
    lines = Viewer(mode="lines", out=out)
    assert lines.handle("edge-har/pi-7/event", payload) is False
    lines.handle("edge-har/pi-7/event", payload)  # a QoS 1 re-delivery: shown once
    (line,) = out.getvalue().splitlines()
    assert "pi-7" in line and "EVENT fall" in line and "0.970" in line and "detected 1.3 s later" in line
    assert "#40-41" in line and lines.events == {"fall": 1} and lines.duplicates == 1
    table = Viewer(mode="table", out=_io.StringIO())
    table.handle("edge-har/pi-7/prediction", json.dumps(pred(1, "pi-7")).encode())
    assert " - " in table.render_table().splitlines()[1]
    table.handle("edge-har/pi-7/event", payload)
    row = table.render_table().splitlines()[1]
    assert "fall 0s ago" in row
    bad = Viewer(mode="lines", out=_io.StringIO())
    bad.handle("edge-har/pi-7/event", b'{"confidence": 1}')
    assert bad.bad == {"schema": 1} and bad.events == {}


def test_subscribe_shows_an_event_from_a_real_broker(mosquitto_broker, publisher_for, tmp_path):
    from edge_har.core.events import Event
    from edge_har.mqtt.payloads import event_payload

    broker = f"{mosquitto_broker.host}:{mosquitto_broker.port}"
    sub = Subscribe("--broker", broker, "--count", "1", "--timeout", "20", "--jsonl", str(tmp_path / "out.jsonl"))
    sub.wait_listening()
    publisher = publisher_for("pi-fall")
    event = Event("fall", impact_ts=time.time() - 1.0, detected_ts=time.time(), confidence=0.9, first_seq=3, last_seq=4)
    publisher.publish_event(event_payload(device_id="pi-fall", model_id="m", event=event.to_json()))
    publisher.publish_prediction(pred(5, "pi-fall"))
    code, out, err = sub.finish()
    assert code == 0, err
    assert "EVENT fall" in out and "events: 1 fall" in err
    kinds = [
        ("event_type" in r, r.get("device_id"))
        for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
    ]
    assert kinds == [(True, "pi-fall"), (False, "pi-fall")]
