"""Home Assistant MQTT discovery against a real mosquitto: retained, correct, re-sent on HA's birth."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_har.mqtt.client import topics
from edge_har.mqtt.config import HomeAssistantConfig, MqttConfig
from edge_har.mqtt.discovery import activity_sensor_config, discovery_topic, node_id
from edge_har.mqtt.payloads import prediction_payload
from edge_har.mqtt.publisher import Publisher

DEVICE = "pi-test"
LABELS = ["Walk", "Sit", "Climb_stairs"]
CONFIG_TOPIC = f"homeassistant/sensor/{DEVICE}/activity/config"


@pytest.fixture
def ha_publisher(mosquitto_broker):
    cfg = MqttConfig(
        host=mosquitto_broker.host,
        port=mosquitto_broker.port,
        keepalive=5,
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
        home_assistant={"enabled": True},
    )
    publisher = Publisher(cfg, DEVICE, "hmp-cnn-lstm-test", LABELS)
    yield publisher
    publisher.stop(timeout=2.0)


def announce_ha_online(broker) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="fake-home-assistant")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish("homeassistant/status", b"online", qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_discovery_is_retained_describes_the_sensor_and_is_resent_when_ha_starts(
    mosquitto_broker, mqtt_listener, ha_publisher
):
    ha_publisher.start()
    assert ha_publisher.wait_connected(10)
    # Once a subscriber has the config, the broker holds it (the connection does not wait for it).
    mqtt_listener(mosquitto_broker, ["homeassistant/sensor/#"]).wait_count(CONFIG_TOPIC, 1)

    # A subscriber arriving later (Home Assistant starting) finds the retained config.
    listener = mqtt_listener(mosquitto_broker, ["homeassistant/sensor/#"])
    first = listener.wait_count(CONFIG_TOPIC, 1)[0]
    assert first.retain
    config = first.json()
    t = topics(ha_publisher.cfg, DEVICE)
    assert config["state_topic"] == t.prediction and config["json_attributes_topic"] == t.prediction
    assert config["availability_topic"] == t.status
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    assert config["device"]["model"] == "hmp-cnn-lstm-test" and config["device"]["identifiers"] == [
        f"edge_har_{DEVICE}"
    ]
    assert config["device_class"] == "enum" and config["options"] == LABELS + ["unknown"]
    assert config["unique_id"] == f"edge_har_{DEVICE}_activity"

    # HA restarts and announces itself: the device publishes the config again (a live, non-retained copy).
    announce_ha_online(mosquitto_broker)
    again = listener.wait_count(CONFIG_TOPIC, 2)[1]
    assert again.json() == config

    # Something else on homeassistant/status (HA going offline) does not trigger a re-send.
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="fake-ha-2")
    client.connect(mosquitto_broker.host, mosquitto_broker.port)
    client.loop_start()
    client.publish("homeassistant/status", b"offline", qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
    time.sleep(0.3)
    assert len(listener.on(CONFIG_TOPIC)) == 2


def test_discovery_is_resent_after_a_broker_restart_without_persistence(mosquitto_factory, mqtt_listener):
    broker = mosquitto_factory(persistence=False)
    cfg = MqttConfig(
        host=broker.host,
        port=broker.port,
        keepalive=5,
        reconnect_min_s=0.1,
        reconnect_max_s=0.3,
        home_assistant={"enabled": True},
    )
    publisher = Publisher(cfg, DEVICE, "m", LABELS)
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        broker.stop()
        broker.start()  # retained messages are gone with the broker's memory ...
        deadline = time.monotonic() + 10
        while publisher.counters()["reconnects"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        listener = mqtt_listener(broker, ["homeassistant/sensor/#", f"edge-har/{DEVICE}/status"])
        # ... and the device re-published both on reconnect.
        assert listener.wait_count(CONFIG_TOPIC, 1)[0].retain
        assert listener.wait_count(f"edge-har/{DEVICE}/status", 1)[0].payload == b"online"
    finally:
        publisher.stop(timeout=2.0)


def test_templates_render_a_prediction_as_home_assistant_would():
    jinja2 = pytest.importorskip("jinja2")
    cfg = MqttConfig(home_assistant={"enabled": True, "node_name": "Kitchen Pi"})
    config = activity_sensor_config(
        cfg.home_assistant, topics(cfg, DEVICE), device_id=DEVICE, model_id="m", labels=LABELS
    )
    payload = prediction_payload(
        device_id=DEVICE,
        model_id="m",
        seq=7,
        window_end_ts=1.7e9,
        label="Sit",
        confidence=0.8,
        probabilities={"Walk": 0.1, "Sit": 0.8, "Climb_stairs": 0.1},
        inference_ms=0.9,
        e2e_ms=3.0,
    )
    env = jinja2.Environment()
    env.filters["tojson"] = json.dumps  # HA's tojson
    value_json = json.loads(json.dumps(payload))
    assert env.from_string(config["value_template"]).render(value_json=value_json) == "Sit"
    attributes = json.loads(env.from_string(config["json_attributes_template"]).render(value_json=value_json))
    assert attributes["confidence"] == 0.8 and attributes["probabilities"]["Sit"] == 0.8 and attributes["seq"] == 7
    assert config["device"]["name"] == "Kitchen Pi"
    # Availability as HA decides it: the template's result against payload_available / _not_available.
    available = env.from_string(config["availability_template"])
    for status, shown in (("online", "available"), ("stopped", "unavailable"), ("offline", "unavailable")):
        result = available.render(value=status)
        assert result in (config["payload_available"], config["payload_not_available"]), (status, result)
        assert ("available" if result == config["payload_available"] else "unavailable") == shown, status
    assert available.render(value="rebooting") == config["payload_not_available"]
    assert node_id(cfg.home_assistant, DEVICE) == "Kitchen_Pi"
    assert discovery_topic(cfg.home_assistant, DEVICE) == "homeassistant/sensor/Kitchen_Pi/activity/config"


def test_discovery_prefix_is_configurable():
    ha = HomeAssistantConfig(enabled=True, discovery_prefix="ha-test")
    assert discovery_topic(ha, "pi-1") == "ha-test/sensor/pi-1/activity/config"
    with pytest.raises(ValueError):
        HomeAssistantConfig(discovery_prefix="home/#")


def test_a_clean_stop_makes_the_entity_unavailable(mosquitto_broker, mqtt_listener, ha_publisher):
    """The retained status after Publisher.stop() is "stopped", which HA must read as unavailable."""
    jinja2 = pytest.importorskip("jinja2")
    ha_publisher.start()
    assert ha_publisher.wait_connected(10)
    listener = mqtt_listener(mosquitto_broker, ["homeassistant/sensor/#"])
    config = listener.wait_count(CONFIG_TOPIC, 1)[0].json()
    ha_publisher.stop(timeout=5)
    status = mqtt_listener(mosquitto_broker, [config["availability_topic"]]).wait_count(config["availability_topic"], 1)
    assert status[0].retain and status[0].payload == b"stopped"
    rendered = (
        jinja2.Environment().from_string(config["availability_template"]).render(value=status[0].payload.decode())
    )
    assert rendered == config["payload_not_available"]
