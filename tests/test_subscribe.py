"""``edge-har subscribe`` end to end: the real command in a subprocess against a real mosquitto."""

from __future__ import annotations

import io
import json
import os
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
            "--password-env: environment variable EDGE_HAR_UNSET_VAR",
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
