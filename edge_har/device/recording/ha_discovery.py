"""Home Assistant MQTT discovery for ``edge-har record``: a label ``select`` and a recording ``switch``.

Both entities join the HA device of the daemon's activity sensor (same ``identifiers``), so one
device card shows what the model says, what the person says it is, and whether it is being
recorded. Their availability follows the retained ``record/state``: the record command's Last
Will sets its ``error`` to ``offline``, which makes both entities unavailable while no recorder
runs. The configs are retained and re-sent when HA publishes ``online`` on its status topic
(:func:`edge_har.mqtt.discovery.birth_topic`).
"""

from __future__ import annotations

from typing import Any, Sequence

from edge_har import __version__
from edge_har.mqtt.config import HomeAssistantConfig
from edge_har.mqtt.discovery import node_id

__all__ = ["OFFLINE_ERROR", "label_select_config", "recording_switch_config", "select_topic", "switch_topic"]

OFFLINE_ERROR = "offline"  # record/state's error in the Last Will: no recorder is running
_AVAILABILITY_TEMPLATE = f"{{{{ 'offline' if value_json.error == '{OFFLINE_ERROR}' else 'online' }}}}"


def select_topic(ha: HomeAssistantConfig, device_id: str) -> str:
    return f"{ha.discovery_prefix}/select/{node_id(ha, device_id)}/activity_label/config"


def switch_topic(ha: HomeAssistantConfig, device_id: str) -> str:
    return f"{ha.discovery_prefix}/switch/{node_id(ha, device_id)}/recording/config"


def _device(ha: HomeAssistantConfig, device_id: str) -> dict[str, Any]:
    node = node_id(ha, device_id)
    return {
        "identifiers": [f"edge_har_{node}"],
        "name": ha.node_name or device_id,
        "manufacturer": "edge-har",
        "sw_version": __version__,
    }


def _availability(state_topic: str) -> dict[str, Any]:
    return {
        "availability_topic": state_topic,
        "availability_template": _AVAILABILITY_TEMPLATE,
        "payload_available": "online",
        "payload_not_available": "offline",
    }


def label_select_config(
    ha: HomeAssistantConfig,
    *,
    device_id: str,
    classes: Sequence[str],
    label_set: str,
    label_state: str,
    record_state: str,
) -> dict[str, Any]:
    """The ``select`` "<id> activity label": options = the classes + ``none``; picking one sends label/set."""
    node = node_id(ha, device_id)
    return {
        "name": f"{device_id} activity label",
        "unique_id": f"edge_har_{node}_activity_label",
        "icon": "mdi:tag-outline",
        "options": list(dict.fromkeys([*map(str, classes), "none"])),
        "command_topic": label_set,
        "state_topic": label_state,
        **_availability(record_state),
        "device": _device(ha, device_id),
        "origin": {"name": "edge-har", "sw_version": __version__},
    }


def recording_switch_config(
    ha: HomeAssistantConfig, *, device_id: str, record_set: str, record_state: str
) -> dict[str, Any]:
    """The ``switch`` "<id> recording": ON/OFF to record/set, state from record/state's ``recording``."""
    node = node_id(ha, device_id)
    return {
        "name": f"{device_id} recording",
        "unique_id": f"edge_har_{node}_recording",
        "icon": "mdi:record-rec",
        "command_topic": record_set,
        "payload_on": "ON",
        "payload_off": "OFF",
        "state_topic": record_state,
        "value_template": "{{ 'ON' if value_json.recording else 'OFF' }}",
        "state_on": "ON",
        "state_off": "OFF",
        **_availability(record_state),
        "device": _device(ha, device_id),
        "origin": {"name": "edge-har", "sw_version": __version__},
    }
