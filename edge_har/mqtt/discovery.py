"""Home Assistant MQTT discovery for the activity sensor.

Home Assistant creates an entity from a retained JSON config on
``<discovery_prefix>/sensor/<node_id>/activity/config``. The entity's state is the ``label``
of each prediction, its attributes carry confidence and probabilities, and it is shown as
unavailable whenever the device's retained status is not ``online``: ``stopped`` (a clean stop),
``offline`` (its Last Will), or anything else. HA compares the status only with
``payload_available``/``payload_not_available`` and ignores other values (the entity would stay
available after a clean stop), so an ``availability_template`` maps every status but ``online``
to ``offline`` first.
The config is retained so HA finds it after a restart of HA or of the broker (with
persistence); it is also re-sent when HA announces ``online`` on ``<discovery_prefix>/status``,
which covers brokers without persistence.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from edge_har import __version__
from edge_har.mqtt.client import Topics
from edge_har.mqtt.config import HomeAssistantConfig
from edge_har.mqtt.payloads import STATUS_OFFLINE, STATUS_ONLINE, UNKNOWN_LABEL

__all__ = [
    "activity_sensor_config",
    "birth_topic",
    "discovery_topic",
    "event_discovery_topic",
    "event_entity_config",
    "node_id",
]

_NODE_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")

# The attributes shown under the entity in HA, taken from the prediction payload.
_ATTRIBUTES_TEMPLATE = (
    "{{ {'confidence': value_json.confidence, 'probabilities': value_json.probabilities, "
    "'seq': value_json.seq, 'inference_ms': value_json.inference_ms, 'e2e_ms': value_json.e2e_ms, "
    "'model_id': value_json.model_id, 'variant': value_json.variant} | tojson }}"
)

# Availability: online stays online; stopped, offline and any other status become unavailable.
AVAILABILITY_TEMPLATE = f"{{{{ '{STATUS_ONLINE}' if value == '{STATUS_ONLINE}' else '{STATUS_OFFLINE}' }}}}"


def node_id(ha: HomeAssistantConfig, device_id: str) -> str:
    """The discovery node id: node_name (or the device id) with characters HA rejects replaced by '_'."""
    return _NODE_ID_BAD.sub("_", ha.node_name or device_id)


def discovery_topic(ha: HomeAssistantConfig, device_id: str) -> str:
    return f"{ha.discovery_prefix}/sensor/{node_id(ha, device_id)}/activity/config"


def event_discovery_topic(ha: HomeAssistantConfig, device_id: str) -> str:
    """Where the ``event`` entity's config goes (the MQTT event platform)."""
    return f"{ha.discovery_prefix}/event/{node_id(ha, device_id)}/events/config"


def birth_topic(ha: HomeAssistantConfig) -> str:
    """Where Home Assistant publishes ``online`` when it (re)starts."""
    return f"{ha.discovery_prefix}/status"


def activity_sensor_config(
    ha: HomeAssistantConfig,
    topics: Topics,
    *,
    device_id: str,
    model_id: str,
    labels: Sequence[str],
) -> dict[str, Any]:
    """The discovery payload of the ``activity`` sensor (an enum sensor over the model's labels)."""
    node = node_id(ha, device_id)
    options = list(dict.fromkeys([*map(str, labels), UNKNOWN_LABEL]))
    return {
        "name": "Activity",
        "unique_id": f"edge_har_{node}_activity",
        "icon": "mdi:run",
        "device_class": "enum",
        "options": options,
        "state_topic": topics.prediction,
        "value_template": "{{ value_json.label }}",
        "json_attributes_topic": topics.prediction,
        "json_attributes_template": _ATTRIBUTES_TEMPLATE,
        "availability_topic": topics.status,
        "availability_template": AVAILABILITY_TEMPLATE,
        "payload_available": STATUS_ONLINE,
        "payload_not_available": STATUS_OFFLINE,
        "device": _device_block(ha, device_id, model_id),
        "origin": {"name": "edge-har", "sw_version": __version__},
    }


def _device_block(ha: HomeAssistantConfig, device_id: str, model_id: str) -> dict[str, Any]:
    node = node_id(ha, device_id)
    return {
        "identifiers": [f"edge_har_{node}"],
        "name": ha.node_name or device_id,
        "manufacturer": "edge-har",
        "model": model_id,
        "sw_version": __version__,
    }


def event_entity_config(
    ha: HomeAssistantConfig,
    topics: Topics,
    *,
    device_id: str,
    model_id: str,
    event_types: Sequence[str],
) -> dict[str, Any]:
    """The discovery payload of the ``event`` entity: one per device, firing each event class it declares.

    Home Assistant's MQTT event platform reads ``event_type`` from the JSON payload (it must be one
    of ``event_types``) and keeps the other keys as the event's attributes, so an automation
    triggers on a fall without a template.
    """
    node = node_id(ha, device_id)
    return {
        "name": "Event",
        "unique_id": f"edge_har_{node}_event",
        "icon": "mdi:alert",
        "state_topic": topics.event,
        "event_types": list(dict.fromkeys(map(str, event_types))),
        "availability_topic": topics.status,
        "availability_template": AVAILABILITY_TEMPLATE,
        "payload_available": STATUS_ONLINE,
        "payload_not_available": STATUS_OFFLINE,
        "qos": 1,
        "device": _device_block(ha, device_id, model_id),
        "origin": {"name": "edge-har", "sw_version": __version__},
    }
