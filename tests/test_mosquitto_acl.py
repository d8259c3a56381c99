"""The example broker config ties a device's client id to its login: one device's credentials cannot kick another off.

MQTT brokers disconnect the older of two connections with the same client id. Without a tie
between client id and username, anyone holding *some* device's password could connect as
``edge-har-pi-a`` and knock ``pi-a`` off the broker (and its reconnect would knock them off, in
a loop). ``firmware_configs/mosquitto/mosquitto.conf`` sets ``use_username_as_clientid true`` on
the network (TLS) listener, so there the broker-side client id *is* the username. Checked here
against a real mosquitto started from the shipped file (paths and ports pointed at tmp_path).
"""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_har.mqtt.publisher import Publisher
from tests.test_mqtt_tls_auth import EXAMPLE_DIR, cfg_for, example_broker, pred

USERS = {"pi-a": "pw-a-123", "pi-b": "pw-b-456", "viewer": "viewer-pw"}


def _intruder(broker, port: int, client_id: str, tls_ca=None) -> dict:
    """pi-b's credentials connecting with ``client_id``, publishing to pi-a's topics, staying a moment."""
    result: dict = {"connected": threading.Event(), "reason": None}
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set("pi-b", USERS["pi-b"])
    if tls_ca:
        client.tls_set(ca_certs=str(tls_ca))

    def on_connect(c, userdata, flags, reason_code, properties):
        result["reason"] = str(reason_code)
        if not reason_code.is_failure:
            result["connected"].set()

    client.on_connect = on_connect
    client.connect(broker.host, port, keepalive=10)
    client.loop_start()
    try:
        assert result["connected"].wait(10), f"pi-b could not log in at all: {result['reason']}"
        client.publish("edge-har/pi-a/prediction", b'{"spoofed": true}', qos=1).wait_for_publish(5)
        client.publish("edge-har/pi-a/status", b"offline", qos=1, retain=True).wait_for_publish(5)
        time.sleep(0.5)
    finally:
        client.disconnect()
        client.loop_stop()
    return result


def test_example_config_ties_client_id_to_username_on_the_network_listener(
    tmp_path, tls_files, mqtt_listener, request, monkeypatch
):
    assert "use_username_as_clientid true" in (EXAMPLE_DIR / "mosquitto.conf").read_text().splitlines()
    broker = example_broker(tmp_path, tls_files, USERS).start()
    request.node._edge_har_brokers = [broker]
    publisher = None
    try:
        viewer = mqtt_listener(broker, ["edge-har/#"], username="viewer", password="viewer-pw")
        monkeypatch.setenv("EDGE_HAR_ACL_PW", USERS["pi-a"])
        # pi-a, the daemon's own Publisher with its default client id (edge-har-pi-a), over TLS
        cfg = cfg_for(
            broker,
            port=broker.tls_port,
            username="pi-a",
            password_env="EDGE_HAR_ACL_PW",
            tls={"ca_file": tls_files.ca_file},
        )
        publisher = Publisher(cfg, "pi-a", "m", ["Sit", "Walk"])
        publisher.start()
        assert publisher.wait_connected(10), publisher.counters()
        publisher.publish_prediction(pred(0, "pi-a"))
        viewer.wait_count("edge-har/pi-a/prediction", 1)
        # on this listener the broker knows pi-a by its username, whatever client id it sent
        assert "as pi-a" in broker.log_text() and "as edge-har-pi-a" not in broker.log_text()

        # pi-b's login reusing pi-a's client id, as the daemon sends it and as the broker holds it
        for client_id in ("edge-har-pi-a", "pi-a"):
            _intruder(broker, broker.tls_port, client_id, tls_ca=tls_files.ca_file)
        time.sleep(1.0)  # a kicked publisher would have reconnected by now (reconnect_min_s 0.1)
        counters = publisher.counters()
        assert counters["connected"] and counters["reconnects"] == 0, counters
        publisher.publish_prediction(pred(1, "pi-a"))
        viewer.wait_count("edge-har/pi-a/prediction", 2)
        payloads = viewer.payloads("edge-har/pi-a/prediction")
        assert [p["seq"] for p in payloads] == [0, 1]  # nothing of pi-b's got through (the ACL)
        assert [m.payload for m in viewer.on("edge-har/pi-a/status")] == [b"online"]

        # The 127.0.0.1 listener keeps client ids as sent (services on the broker's own host):
        # there the same attempt does take pi-a's id over; this is what the network listener prevents.
        _intruder(broker, broker.port, "pi-a")
        deadline = time.monotonic() + 5
        while publisher.counters()["reconnects"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert publisher.counters()["reconnects"] >= 1
    finally:
        if publisher is not None:
            publisher.stop(timeout=2)
        broker.stop()


def test_example_acl_lets_home_assistant_and_serve_set_a_devices_label_and_no_other_device(
    tmp_path, tls_files, mqtt_listener, request
):
    """The record topics under the shipped ACL: the device reads its commands and writes its states;
    Home Assistant and serve may set a device's label; another device may not."""
    users = {"pi-a": "pw-a-123", "pi-b": "pw-b-456", "homeassistant": "ha-pw", "edge-har-serve": "serve-pw"}
    broker = example_broker(tmp_path, tls_files, users).start()
    request.node._edge_har_brokers = [broker]
    request.addfinalizer(broker.stop)  # its mosquitto goes with the test
    device = mqtt_listener(broker, ["edge-har/pi-a/label/set"], username="pi-a", password=users["pi-a"])
    viewer = mqtt_listener(broker, ["edge-har/pi-a/#"], username="homeassistant", password=users["homeassistant"])
    for user, label in (("homeassistant", "walk"), ("edge-har-serve", "sit"), ("pi-b", "spoofed")):
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{user}-acl-test")
        client.username_pw_set(user, users[user])
        client.connect(broker.host, broker.port, keepalive=10)
        client.loop_start()
        try:
            client.publish("edge-har/pi-a/label/set", label.encode(), qos=1).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()
    device.wait_count("edge-har/pi-a/label/set", 2)
    device.client.publish("edge-har/pi-a/record/state", b'{"recording": true}', qos=1).wait_for_publish(5)
    viewer.wait_count("edge-har/pi-a/record/state", 1)
    time.sleep(0.5)  # a spoofed label would have arrived by now
    assert [m.payload for m in device.on("edge-har/pi-a/label/set")] == [b"walk", b"sit"]


def test_example_acl_lets_a_device_publish_its_own_events_and_event_entity_only(
    tmp_path, tls_files, mqtt_listener, request
):
    users = {"pi-a": "pw-a-123", "pi-b": "pw-b-456", "homeassistant": "ha-pw"}
    broker = example_broker(tmp_path, tls_files, users).start()
    request.node._edge_har_brokers = [broker]
    request.addfinalizer(broker.stop)  # its mosquitto goes with the test
    ha = mqtt_listener(
        broker,
        ["edge-har/+/event", "homeassistant/event/#"],
        username="homeassistant",
        password=users["homeassistant"],
    )
    for user in ("pi-a", "pi-b"):
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{user}-event-test")
        client.username_pw_set(user, users[user])
        client.connect(broker.host, broker.port, keepalive=10)
        client.loop_start()
        try:
            body = f'{{"event_type": "fall", "from": "{user}"}}'.encode()
            client.publish("edge-har/pi-a/event", body, qos=1).wait_for_publish(5)
            client.publish("homeassistant/event/pi-a/events/config", body, qos=1, retain=True).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()
    ha.wait_count("edge-har/pi-a/event", 1)
    ha.wait_count("homeassistant/event/pi-a/events/config", 1)
    time.sleep(0.5)  # pi-b's would have arrived by now
    assert [m.json()["from"] for m in ha.on("edge-har/pi-a/event")] == ["pi-a"]
    assert [m.json()["from"] for m in ha.on("homeassistant/event/pi-a/events/config")] == ["pi-a"]


def test_example_acl_lets_serve_send_updates_and_only_a_device_report_its_own(
    tmp_path, tls_files, mqtt_listener, request
):
    users = {"pi-a": "pw-a-123", "pi-b": "pw-b-456", "edge-har-serve": "serve-pw", "viewer": "viewer-pw"}
    broker = example_broker(tmp_path, tls_files, users).start()
    request.node._edge_har_brokers = [broker]
    request.addfinalizer(broker.stop)  # its mosquitto goes with the test
    device = mqtt_listener(
        broker,
        ["edge-har/pi-a/update/set", "edge-har/group/ward-a/update/set"],
        username="pi-a",
        password=users["pi-a"],
    )
    viewer = mqtt_listener(broker, ["edge-har/+/update/state"], username="viewer", password=users["viewer"])

    def publish(user: str, topic: str, body: bytes) -> None:
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{user}-update-test")
        client.username_pw_set(user, users[user])
        client.connect(broker.host, broker.port, keepalive=10)
        client.loop_start()
        try:
            client.publish(topic, body, qos=1).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()

    for user in ("pi-b", "edge-har-serve"):  # another device may not tell pi-a what to run; serve may
        publish(user, "edge-har/pi-a/update/set", f'{{"from": "{user}"}}'.encode())
        publish(user, "edge-har/group/ward-a/update/set", f'{{"from": "{user}"}}'.encode())
    for user in ("pi-b", "pi-a"):  # only pi-a reports pi-a's update state
        publish(user, "edge-har/pi-a/update/state", f'{{"from": "{user}"}}'.encode())
    device.wait_count("edge-har/pi-a/update/set", 1)
    device.wait_count("edge-har/group/ward-a/update/set", 1)
    viewer.wait_count("edge-har/pi-a/update/state", 1)
    time.sleep(0.5)  # what the ACL let through wrongly would have arrived by now
    assert [m.json()["from"] for m in device.on("edge-har/pi-a/update/set")] == ["edge-har-serve"]
    assert [m.json()["from"] for m in device.on("edge-har/group/ward-a/update/set")] == ["edge-har-serve"]
    assert [m.json()["from"] for m in viewer.on("edge-har/pi-a/update/state")] == ["pi-a"]
