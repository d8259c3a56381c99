"""MQTT for edge-har: config models, a configured paho client, payloads, the publisher and
Home Assistant discovery. One module per job:

* :mod:`.config`     - the ``mqtt:`` section of a device config (pydantic).
* :mod:`.client`     - ``make_client`` (paho, callback API 2) and the topic names.
* :mod:`.payloads`   - prediction / stats payloads and their validation.
* :mod:`.publisher`  - ``Publisher``: link state, bounded offline queue, Last Will, stats.
* :mod:`.discovery`  - Home Assistant discovery config of the activity sensor.
* :mod:`.liveness`   - the status protocol's staleness rule (online / stale / stopped / offline).

Importing the package loads only the config models, so a config can be validated cheaply.
"""

from edge_har.mqtt.config import HomeAssistantConfig, MqttConfig, MqttConfigError, QosConfig, TlsConfig

__all__ = ["HomeAssistantConfig", "MqttConfig", "MqttConfigError", "QosConfig", "TlsConfig"]
