"""Events on the device: the daemon with a real bundle, a replay and a real mosquitto publishes each event once
(QoS 1, not retained) by the same rule evaluate runs, and Home Assistant gets an event entity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_har.core.events import EventRule, detect_events
from edge_har.device.config import check_files, load_config
from edge_har.device.daemon import Daemon
from edge_har.mqtt.client import topics
from edge_har.mqtt.config import HomeAssistantConfig, MqttConfig
from edge_har.mqtt.discovery import event_discovery_topic, event_entity_config
from edge_har.mqtt.payloads import event_payload

DEVICE = "pi-ev"


@pytest.fixture(scope="module")
def replay_dir(tmp_path_factory) -> Path:
    from edge_har.convert.synthetic import write_synthetic_imu_dataset
    from tests.plugins.bundle import TINY_CLASSES

    return write_synthetic_imu_dataset(
        tmp_path_factory.mktemp("events") / "data",
        classes=TINY_CLASSES,
        recordings_per_class=1,
        subjects=1,
        seconds=8.0,
        seed=11,
    )


def write_config(path: Path, bundle: Path, broker: Any, replay: Path, events: Any, **top: Any) -> Path:
    data = {
        "device_id": DEVICE,
        "bundle": str(bundle),
        "source": {"type": "replay", "path": str(replay), "realtime": False, "stop_at_end": True},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "stats_interval_s": 0.5,
            "home_assistant": {"enabled": True},
        },
        "smoothing": {"window": 1},
        "events": events,
        **top,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_daemon_publishes_each_event_once_by_the_shared_rule(
    tiny_bundle, replay_dir, mosquitto_broker, mqtt_listener, tmp_path
):
    listener = mqtt_listener(mosquitto_broker, [f"edge-har/{DEVICE}/#", "homeassistant/event/#"])
    rule = {"threshold": 0.5, "k": 1, "refractory_s": 3.0}
    cfg = write_config(tmp_path / "run.yaml", tiny_bundle, mosquitto_broker, replay_dir, {"Walk": rule})
    summary = tmp_path / "summary.json"
    assert Daemon(load_config(cfg), summary_json=summary, install_signal_handlers=False).run() == 0

    preds = listener.payloads(f"edge-har/{DEVICE}/prediction")
    received = listener.on(f"edge-har/{DEVICE}/event")
    assert received, "no event: the replay holds a walk recording the tiny model recognises"
    assert all(not m.retain and m.qos == 1 for m in received)
    events = [m.json() for m in received]
    # the offline rule over the published stream (k = 1: gaps between recordings cannot matter) gives the same
    labels = list(preds[0]["probabilities"])
    offline = detect_events(
        [[p["probabilities"][c] for c in labels] for p in preds],
        [p["window_end_ts"] for p in preds],
        [EventRule("Walk", **rule)],
        labels,
        seqs=[p["seq"] for p in preds],
    )
    assert [(e["first_seq"], e["last_seq"]) for e in events] == [(e.first_seq, e.last_seq) for e in offline]
    by_seq = {p["seq"]: p for p in preds}
    run_id = preds[0]["run_id"]
    for e in events:
        assert e["event_type"] == "Walk" and e["device_id"] == DEVICE and e["run_id"] == run_id
        assert e["model_id"] == preds[0]["model_id"] and e["windows"] == 1
        window = by_seq[e["last_seq"]]
        assert e["detected_ts"] == pytest.approx(window["window_end_ts"], abs=1e-3)
        assert e["confidence"] == pytest.approx(window["probabilities"]["Walk"], abs=1e-4)
        # the impact lies inside the window that fired (64 samples at 32 Hz end at window_end_ts)
        assert window["window_end_ts"] - 2.0 - 1e-3 <= e["impact_ts"] <= window["window_end_ts"] + 1e-3
    assert all(b["detected_ts"] - a["detected_ts"] >= 3.0 for a, b in zip(events, events[1:]))
    stats = [s for s in listener.payloads(f"edge-har/{DEVICE}/stats") if "events" in s.get("extra", {})]
    assert stats and stats[-1]["extra"]["events"]["fired"] == {"Walk": len(events)}
    # Home Assistant starting later finds a retained event entity listing the event classes
    late = mqtt_listener(mosquitto_broker, ["homeassistant/event/#"])
    (config_msg,) = late.wait_count(f"homeassistant/event/{DEVICE}/events/config", 1)
    assert config_msg.retain
    config = config_msg.json()
    assert config["event_types"] == ["Walk"] and config["state_topic"] == f"edge-har/{DEVICE}/event"
    check_against_ha_event_schema(config)
    for e in events:
        assert ha_fires(config, json.dumps(e).encode()) == ("Walk", {k: v for k, v in e.items() if k != "event_type"})


def test_a_bundle_without_events_removes_the_event_entity(
    tiny_bundle, replay_dir, mosquitto_broker, mqtt_listener, tmp_path
):
    """An earlier bundle with events left a retained entity; a run without events deletes it (empty config)."""
    events = {"Walk": {"threshold": 0.99}}
    first = write_config(tmp_path / "first.yaml", tiny_bundle, mosquitto_broker, replay_dir, events)
    assert Daemon(load_config(first), install_signal_handlers=False).run() == 0
    topic = f"homeassistant/event/{DEVICE}/events/config"
    assert mqtt_listener(mosquitto_broker, [topic]).wait_count(topic, 1)[0].json()["event_types"] == ["Walk"]

    listener = mqtt_listener(mosquitto_broker, [f"edge-har/{DEVICE}/#"])
    cfg = write_config(tmp_path / "run.yaml", tiny_bundle, mosquitto_broker, replay_dir, None)
    assert Daemon(load_config(cfg), install_signal_handlers=False).run() == 0
    assert listener.payloads(f"edge-har/{DEVICE}/prediction")
    assert not listener.on(f"edge-har/{DEVICE}/event")
    late = mqtt_listener(mosquitto_broker, ["homeassistant/#"])
    late.wait_count(f"homeassistant/sensor/{DEVICE}/activity/config", 1)  # retained: delivered at once
    assert not late.on(topic)  # no retained event entity any more


def test_an_event_class_the_bundle_lacks_is_named_with_file_and_line(tiny_bundle, replay_dir, tmp_path):
    broker = type("B", (), {"host": "127.0.0.1", "port": 1})()
    cfg = write_config(tmp_path / "run.yaml", tiny_bundle, broker, replay_dir, {"fall": {"threshold": 0.9}})
    errors, _ = check_files(load_config(cfg))
    (line,) = [e for e in errors if "events" in e]
    assert f"{cfg}:" in line and "events.fall: not one of the bundle's classes (Sit, Walk, Wave)" in line


@pytest.mark.parametrize(
    "events, fragment",
    [
        ({"Walk": {"threshold": 0}}, "greater than 0"),
        ({"Walk": {"k": 0}}, "greater than or equal to 1"),
        ({"Walk": {"refractory": 3}}, "refractory"),
    ],
)
def test_bad_event_rules_are_config_errors(tiny_bundle, replay_dir, tmp_path, events, fragment):
    from edge_har.device.config import ConfigError

    broker = type("B", (), {"host": "127.0.0.1", "port": 1})()
    cfg = write_config(tmp_path / "run.yaml", tiny_bundle, broker, replay_dir, events)
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "events.Walk" in str(err.value) and fragment in str(err.value)


# ---------------------------------------------------------------- Home Assistant's documented MQTT event schema

# https://www.home-assistant.io/integrations/event.mqtt: the configuration variables of an MQTT event
# entity (discovery uses the same names); state_topic and event_types are required.
_HA_EVENT_KEYS = {
    "availability": list,
    "availability_mode": str,
    "availability_template": str,
    "availability_topic": str,
    "device": dict,
    "device_class": str,
    "enabled_by_default": bool,
    "encoding": str,
    "entity_category": str,
    "entity_picture": str,
    "event_types": list,
    "icon": str,
    "json_attributes_template": str,
    "json_attributes_topic": str,
    "name": (str, type(None)),
    "object_id": str,
    "origin": dict,
    "payload_available": str,
    "payload_not_available": str,
    "platform": str,
    "qos": int,
    "state_topic": str,
    "unique_id": str,
    "value_template": str,
}
_HA_DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version", "hw_version", "connections"}


def check_against_ha_event_schema(config: dict) -> None:
    unknown = set(config) - set(_HA_EVENT_KEYS)
    assert not unknown, f"keys Home Assistant's MQTT event does not know: {unknown}"
    for key, kind in _HA_EVENT_KEYS.items():
        if key in config:
            assert isinstance(config[key], kind), (key, config[key])
    assert {"state_topic", "event_types"} <= set(config)
    assert config["event_types"] and all(isinstance(t, str) and t for t in config["event_types"])
    assert config.get("device_class") in (None, "button", "doorbell", "motion")
    assert config.get("qos", 0) in (0, 1, 2)
    assert set(config["device"]) <= _HA_DEVICE_KEYS and config["device"]["identifiers"]
    assert "+" not in config["state_topic"] and "#" not in config["state_topic"]


def ha_fires(config: dict, payload: bytes) -> tuple[str, dict]:
    """What Home Assistant's MQTT event entity does with a payload (no value_template): a JSON object whose
    ``event_type`` is one of ``event_types`` fires that event with the other keys as its attributes."""
    data = json.loads(payload)
    assert isinstance(data, dict) and data.get("event_type") in config["event_types"]
    return data["event_type"], {k: v for k, v in data.items() if k != "event_type"}


def test_the_event_entity_config_fits_the_schema_for_any_node_name():
    for node in ("pi-3", "care home/room 4", None):
        ha = HomeAssistantConfig(enabled=True, node_name=node)
        t = topics(MqttConfig(topic_prefix="homes/a"), "dev-1")
        config = event_entity_config(ha, t, device_id="dev-1", model_id="m", event_types=["fall", "fall", "stumble"])
        check_against_ha_event_schema(config)
        assert config["event_types"] == ["fall", "stumble"] and config["state_topic"] == "homes/a/dev-1/event"
        assert event_discovery_topic(ha, "dev-1").startswith("homeassistant/event/")
        assert " " not in event_discovery_topic(ha, "dev-1").split("/")[2]


def test_event_payload_refuses_non_finite_times():
    event = {"event_type": "fall", "impact_ts": float("nan"), "detected_ts": 1.0, "confidence": 0.9}
    with pytest.raises(ValueError, match="impact_ts"):
        event_payload(device_id="d", model_id="m", event=event)


def test_readmes_events_example_is_a_valid_section_and_payload():
    import re

    from edge_har.device.config import DeviceConfig

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    part = readme[readme.index("`event` (QoS 1, **not** retained)") :]
    block = re.search(r"```yaml\n(.*?)```", part, flags=re.S).group(1)  # type: ignore[union-attr]
    cfg = DeviceConfig.model_validate(
        {"bundle": "b", "source": {"type": "replay", "path": "p"}, **yaml.safe_load(block)}
    )
    assert cfg.events is not None and cfg.events["fall"].k == 2 and cfg.events["fall"].threshold == 0.8
    example = json.loads(re.search(r"```json\n(.*?)```", part, flags=re.S).group(1))  # type: ignore[union-attr]
    fields = set(
        event_payload(
            device_id="d",
            model_id="m",
            event={
                "event_type": "fall",
                "impact_ts": 1.0,
                "detected_ts": 2.0,
                "confidence": 0.5,
                "first_seq": 1,
                "last_seq": 2,
                "windows": 2,
            },
            variant="int8",
            run_id="r",
        )
    )
    assert set(example) == fields
