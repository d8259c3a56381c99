"""Passwords, TLS and the example broker config, against a real mosquitto; config errors."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from edge_har.mqtt.client import make_client, topics
from edge_har.mqtt.config import MqttConfig, MqttConfigError
from edge_har.mqtt.payloads import prediction_payload
from edge_har.mqtt.publisher import Publisher
from tests.plugins.broker import TEST_USERS, MosquittoBroker, free_port, write_password_file

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = REPO / "firmware_configs" / "mosquitto"
DEVICE = "pi-test"
PASSWORD = TEST_USERS[DEVICE]


def cfg_for(broker, **overrides) -> MqttConfig:
    values = dict(host=broker.host, port=broker.port, keepalive=5, reconnect_min_s=0.1, reconnect_max_s=0.3)
    values.update(overrides)
    return MqttConfig(**values)


def pred(seq: int, device: str = DEVICE) -> dict:
    return prediction_payload(
        device_id=device,
        model_id="m",
        seq=seq,
        window_end_ts=1.7e9 + seq,
        label="Sit",
        confidence=0.9,
        probabilities={"Sit": 0.9, "Walk": 0.1},
        inference_ms=1.0,
        e2e_ms=2.0,
    )


@pytest.fixture
def publishers():
    made: list[Publisher] = []

    def make(cfg: MqttConfig, device: str = DEVICE, **kwargs) -> Publisher:
        publisher = Publisher(cfg, device, "m", ["Sit", "Walk"], **kwargs)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.stop(timeout=2.0)


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# ====================================================================== passwords


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_wrong_password_is_refused_with_one_clear_log_line(
    mosquitto_auth_broker, publishers, monkeypatch, caplog, protocol
):
    monkeypatch.setenv("EDGE_HAR_TEST_PW", "not-the-password")
    caplog.set_level(logging.DEBUG, logger="edge_har")
    links: list[bool] = []
    publisher = publishers(
        cfg_for(mosquitto_auth_broker, protocol=protocol, username=DEVICE, password_env="EDGE_HAR_TEST_PW"),
        on_link_change=links.append,
    )
    publisher.start()
    publisher.publish_prediction(pred(0))
    assert wait_until(lambda: "refused" in (publisher.counters()["last_error"] or ""))
    time.sleep(0.8)  # several more attempts with the 0.1-0.3 s backoff
    counters = publisher.counters()
    assert counters["connected"] is False and counters["queued"] == 1 and links == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "refused the connection" in errors[0] and str(mosquitto_auth_broker.port) in errors[0]
    assert "Not authorized" in errors[0] or "Bad user name or password" in errors[0]
    assert "password" in errors[0]  # the hint says where the password comes from ...
    assert "not-the-password" not in caplog.text  # ... never what it is
    assert sum("refused the connection" in r.getMessage() for r in caplog.records) > 1, "repeats logged at DEBUG"


def test_right_password_from_a_file_connects(mosquitto_auth_broker, mqtt_listener, publishers, tmp_path, caplog):
    secret = tmp_path / "mqtt.pass"
    secret.write_text(PASSWORD + "\n")
    caplog.set_level(logging.DEBUG, logger="edge_har")
    listener = mqtt_listener(mosquitto_auth_broker, ["edge-har/#"], username="viewer", password=TEST_USERS["viewer"])
    cfg = cfg_for(mosquitto_auth_broker, username=DEVICE, password_file=secret)
    publisher = publishers(cfg)
    publisher.start()
    assert publisher.wait_connected(10), publisher.counters()
    publisher.publish_prediction(pred(0))
    assert listener.wait_count(f"edge-har/{DEVICE}/prediction", 1)[0].json()["seq"] == 0
    assert PASSWORD not in caplog.text and PASSWORD not in repr(cfg) and PASSWORD not in cfg.model_dump_json()


def test_password_file_written_without_mosquitto_passwd_is_accepted(mosquitto_factory, publishers, monkeypatch):
    """The fixture's fallback hash ($7$, PBKDF2-SHA512) must be what mosquitto expects."""
    broker = mosquitto_factory(users={DEVICE: PASSWORD}, password_file_via_cli=False)
    assert "$7$" in broker.password_file.read_text()
    monkeypatch.setenv("EDGE_HAR_TEST_PW", PASSWORD)
    publisher = publishers(cfg_for(broker, username=DEVICE, password_env="EDGE_HAR_TEST_PW"))
    publisher.start()
    assert publisher.wait_connected(10), publisher.counters()


def test_password_settings_fail_early_naming_the_key_not_its_value(tmp_path, monkeypatch):
    # The variable's name and the file's path are not echoed: either may be the password in the wrong key.
    monkeypatch.delenv("EDGE_HAR_NOPE", raising=False)
    cfg = MqttConfig(username="u", password_env="EDGE_HAR_NOPE")
    with pytest.raises(MqttConfigError, match="mqtt.password_env: the environment variable named in .* is not set"):
        make_client(cfg, "x")
    with pytest.raises(MqttConfigError, match=r"mqtt.password_file: the file named in .* does not exist"):
        MqttConfig(username="u", password_file=tmp_path / "missing.pass").resolve_password()
    empty = tmp_path / "empty.pass"
    empty.write_text("\n")
    with pytest.raises(MqttConfigError, match="is empty"):
        MqttConfig(username="u", password_file=empty).resolve_password()
    with pytest.raises(ValidationError, match="either password_env or password_file"):
        MqttConfig(username="u", password_env="A", password_file=empty)
    with pytest.raises(ValidationError, match="needs a username"):
        MqttConfig(password_env="A")


def test_config_rejects_typos_and_bad_values():
    with pytest.raises(ValidationError, match="hots"):
        MqttConfig.model_validate({"hots": "broker"})
    with pytest.raises(ValidationError, match="wildcards"):
        MqttConfig(topic_prefix="edge-har/+")
    with pytest.raises(ValidationError, match="reconnect_max_s"):
        MqttConfig(reconnect_min_s=5, reconnect_max_s=1)
    with pytest.raises(ValidationError, match="qos.prediction|prediction"):
        MqttConfig.model_validate({"qos": {"prediction": 3}})
    with pytest.raises(ValidationError, match="key_file"):
        MqttConfig.model_validate({"tls": {"key_file": "k.pem"}})
    assert MqttConfig.model_validate({"protocol": 5}).protocol == "5"  # YAML's `protocol: 5`
    assert MqttConfig.model_validate({"protocol": "3.1.1"}).protocol == "3.1.1"
    for name, field in MqttConfig.model_fields.items():
        assert field.description, f"mqtt.{name} has no description"
    with pytest.raises(ValueError, match="topic level"):
        topics(MqttConfig(), "kitchen/pi")


# ====================================================================== TLS


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_with_the_ca_the_test_made(mosquitto_tls_broker, tls_files, mqtt_listener, publishers, host):
    listener = mqtt_listener(mosquitto_tls_broker, ["edge-har/#"], ca_file=tls_files.ca_file)
    cfg = cfg_for(mosquitto_tls_broker, host=host, tls={"ca_file": tls_files.ca_file})
    publisher = publishers(cfg)
    publisher.start()
    assert publisher.wait_connected(10), publisher.counters()
    publisher.publish_prediction(pred(3))
    assert listener.wait_count(f"edge-har/{DEVICE}/prediction", 1)[0].json()["seq"] == 3


def test_tls_refuses_a_broker_signed_by_another_ca(mosquitto_tls_broker, tls_files, publishers, caplog):
    caplog.set_level(logging.WARNING, logger="edge_har")
    publisher = publishers(cfg_for(mosquitto_tls_broker, tls={"ca_file": tls_files.other_ca_file}))
    publisher.start()
    assert wait_until(lambda: publisher.counters()["last_error"] is not None)
    time.sleep(0.5)
    assert not publisher.connected
    assert "CERTIFICATE_VERIFY_FAILED" in publisher.counters()["last_error"]
    lines = [r.getMessage() for r in caplog.records if "cannot reach broker" in r.getMessage()]
    assert len(lines) == 1 and "TLS" in lines[0] and "SSLCertVerificationError" in lines[0]


def test_mutual_tls_needs_the_client_certificate(mosquitto_factory, tls_files, publishers):
    broker = mosquitto_factory(tls=tls_files, require_certificate=True)
    without = publishers(cfg_for(broker, tls={"ca_file": tls_files.ca_file}), device="pi-nocert")
    without.start()
    with_cert = publishers(
        cfg_for(
            broker,
            tls={"ca_file": tls_files.ca_file, "cert_file": tls_files.client_cert, "key_file": tls_files.client_key},
        )
    )
    with_cert.start()
    assert with_cert.wait_connected(10), with_cert.counters()
    assert wait_until(lambda: without.counters()["last_error"] is not None)
    assert not without.connected
    assert "certificate" in without.counters()["last_error"].lower()


def test_missing_tls_file_is_a_config_error_naming_the_key(tmp_path):
    cfg = MqttConfig(tls={"ca_file": tmp_path / "nope.crt"})
    assert cfg.missing_files() == [f"mqtt.tls.ca_file: {tmp_path / 'nope.crt'} does not exist"]
    with pytest.raises(MqttConfigError, match="mqtt.tls.ca_file"):
        make_client(cfg, "x")


def test_tls_insecure_warns(tls_files, caplog):
    with caplog.at_level(logging.WARNING, logger="edge_har.mqtt"):
        make_client(MqttConfig(tls={"ca_file": tls_files.ca_file, "insecure": True}), "x")
    assert any("NOT checked" in r.getMessage() for r in caplog.records)


# ====================================================================== the shipped example broker config


def example_broker(tmp_path: Path, tls_files, users: dict[str, str]) -> MosquittoBroker:
    """firmware_configs/mosquitto/mosquitto.conf with its paths and ports pointed at tmp_path."""
    plain, secure = free_port(), free_port()
    passwd = write_password_file(tmp_path / "edge-har.passwd", users)
    replacements = {
        "password_file /etc/mosquitto/edge-har.passwd": f"password_file {passwd}",
        "acl_file /etc/mosquitto/edge-har.acl": f"acl_file {EXAMPLE_DIR / 'edge-har.acl'}",
        "listener 1883 127.0.0.1": f"listener {plain} 127.0.0.1",
        "listener 8883": f"listener {secure} 127.0.0.1",
        "cafile /etc/mosquitto/certs/ca.crt": f"cafile {tls_files.ca_file}",
        "certfile /etc/mosquitto/certs/server.crt": f"certfile {tls_files.server_cert}",
        "keyfile /etc/mosquitto/certs/server.key": f"keyfile {tls_files.server_key}",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {tmp_path}/",
        "log_dest file /var/log/mosquitto/mosquitto.log": "log_dest stderr",
    }
    lines = (EXAMPLE_DIR / "mosquitto.conf").read_text().splitlines()
    for old, new in replacements.items():
        hits = [i for i, line in enumerate(lines) if line.strip() == old]
        assert len(hits) == 1, f"example mosquitto.conf no longer has the line {old!r}: update this test with it"
        lines[hits[0]] = new
    if os.geteuid() == 0:
        lines.append("user root")
    broker = MosquittoBroker(tmp_path, port=plain, config_text="\n".join(lines) + "\n")
    broker.tls_port = secure  # type: ignore[attr-defined]
    return broker


def test_example_broker_config_enforces_passwords_tls_and_the_acl(
    tmp_path, tls_files, mqtt_listener, publishers, request, monkeypatch, caplog
):
    users = {"pi-test": PASSWORD, "pi-other": "other-pw", "viewer": "viewer-pw"}
    broker = example_broker(tmp_path, tls_files, users).start()
    request.node._edge_har_brokers = [broker]
    try:
        viewer = mqtt_listener(broker, ["edge-har/#"], username="viewer", password="viewer-pw")

        # anonymous clients are refused
        anonymous = publishers(cfg_for(broker), device="pi-anon")
        anonymous.start()
        assert wait_until(lambda: "refused" in (anonymous.counters()["last_error"] or ""))

        # a device over TLS on the second listener, with its own username: allowed
        device_cfg = cfg_for(
            broker,
            port=broker.tls_port,
            username="pi-test",
            password_env="EDGE_HAR_EXAMPLE_PW",
            tls={"ca_file": tls_files.ca_file},
        )
        monkeypatch.setenv("EDGE_HAR_EXAMPLE_PW", PASSWORD)
        device = publishers(device_cfg)
        device.start()
        assert device.wait_connected(10), device.counters()
        device.publish_prediction(pred(1))
        viewer.wait_count("edge-har/pi-test/prediction", 1)
        viewer.wait_for(lambda ms: any(m.topic == "edge-har/pi-test/status" and m.payload == b"online" for m in ms))

        # the same login may not publish under another device's topics (nor overwrite its status)
        raw = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="acl-probe")
        raw.username_pw_set("pi-test", PASSWORD)
        raw.connect(broker.host, broker.port)
        raw.loop_start()
        try:
            raw.publish("edge-har/pi-other/prediction", b'{"spoofed": true}', qos=1).wait_for_publish(5)
            raw.publish("edge-har/pi-other/status", b"offline", qos=1, retain=True).wait_for_publish(5)
            raw.publish("edge-har/pi-test/stats", b'{"marker": true}', qos=1).wait_for_publish(5)
        finally:
            raw.disconnect()
            raw.loop_stop()
        viewer.wait_count("edge-har/pi-test/stats", 1)  # same connection, in order: the denied ones came first
        assert viewer.on("edge-har/pi-other/prediction") == [] and viewer.on("edge-har/pi-other/status") == []

        # over MQTT 5 the broker says so in the PUBACK: logged once, counted
        spoofer = publishers(
            cfg_for(broker, protocol="5", username="pi-test", password_env="EDGE_HAR_EXAMPLE_PW"), device="pi-other"
        )
        with caplog.at_level(logging.WARNING, logger="edge_har.mqtt"):
            spoofer.start()
            assert spoofer.wait_connected(10)
            for seq in range(3):
                spoofer.publish_prediction(pred(seq, "pi-other"))
            # its retained "online" and the 3 predictions
            assert wait_until(lambda: spoofer.counters()["refused_by_broker"] == 4), spoofer.counters()
        refusals = [r.getMessage() for r in caplog.records if "refused a message" in r.getMessage()]
        assert len(refusals) == 1 and "Not authorized" in refusals[0]
        assert viewer.on("edge-har/pi-other/prediction") == []

        # the viewer reads but cannot write: the device's retained status stays "online"
        viewer.client.publish("edge-har/pi-test/status", b"offline", qos=1, retain=True).wait_for_publish(5)
        late = mqtt_listener(broker, ["edge-har/pi-test/status"], username="viewer", password="viewer-pw")
        time.sleep(0.2)
        assert [m.payload for m in late.on("edge-har/pi-test/status")] == [b"online"]
    finally:
        broker.stop()
