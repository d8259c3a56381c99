"""``GET /metrics``: the ingest's books and each device's state in the Prometheus text format.

A custom :class:`prometheus_client.registry.Collector` reads everything at scrape time (the ingest's
``status()``, its per-device gap books, the store), so nothing is counted twice and the hot path of the
ingest carries no metric objects. Each app has its own :class:`CollectorRegistry`: tests and benchmarks
create many apps in one process, and the global registry would refuse the second. Per-device series are
bounded to :data:`DEVICES_MAX` devices (the first by id) so a huge fleet cannot make a scrape unbounded;
``edge_har_devices`` says how many there are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from edge_har.web.queries import predictions_per_second

if TYPE_CHECKING:
    from edge_har.web.live import LiveService

__all__ = ["CONTENT_TYPE_LATEST", "DEVICES_MAX", "LiveCollector", "registry_for"]

log = logging.getLogger("edge_har.web.metrics")

DEVICES_MAX = 1000
LIVENESS_STATES = ("online", "stale", "stopped", "offline", "unknown")

# Ingest.status() key -> (metric name, help). Counters get Prometheus' _total suffix from the client.
COUNTERS = {
    "received": ("edge_har_ingest_received", "MQTT messages the ingest received"),
    "stored": ("edge_har_ingest_stored", "predictions written to the store"),
    "duplicates": ("edge_har_ingest_duplicates", "re-delivered predictions the store already held"),
    "statuses": ("edge_har_ingest_statuses", "status messages received"),
    "stats": ("edge_har_ingest_stats", "stats messages received"),
    "events": ("edge_har_ingest_events", "event messages (a fall) stored"),
    "gaps": ("edge_har_ingest_gaps", "predictions lost upstream (seq numbers that never arrived)"),
    "dropped_full": ("edge_har_ingest_dropped_full", "messages dropped because the ingest's queue was full"),
    "rejected_predictions": ("edge_har_ingest_rejected_predictions", "predictions refused by a check"),
    "loop_errors": ("edge_har_ingest_loop_errors", "unexpected errors the ingest loop survived"),
}
GAUGES = {
    "queued": ("edge_har_ingest_queued", "messages received and not yet written or counted"),
    "unacked": ("edge_har_ingest_unacked", "QoS 1 messages not yet acknowledged to the broker"),
}


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else 0.0


class LiveCollector(Collector):
    """Reads the live service at scrape time; see the module docstring."""

    def __init__(self, live: LiveService) -> None:
        self.live = live

    def describe(self) -> list[Metric]:
        return []  # nothing fixed to describe: registering must not scrape

    def collect(self) -> Iterator[Metric]:
        live = self.live
        broker = live.broker_state()
        yield _gauge("edge_har_broker_configured", "1 when a broker is configured", broker.get("configured"))
        yield _gauge(
            "edge_har_broker_connected", "1 while the ingest is connected to the broker", broker.get("connected")
        )
        if live.ingest is not None:
            yield from self._ingest(live.ingest.status())
        yield from self._devices(time.time())

    def _ingest(self, status: dict[str, Any]) -> Iterator[Metric]:
        for key, (name, text) in COUNTERS.items():
            if key in status:
                yield CounterMetricFamily(name, text, value=_number(status[key]))
        for key, (name, text) in GAUGES.items():
            if key in status:
                yield _gauge(name, text, status[key])
        rejected = CounterMetricFamily("edge_har_ingest_rejected", "messages refused, by reason", labels=["reason"])
        for reason, n in sorted((status.get("rejected") or {}).items()):
            rejected.add_metric([str(reason)], _number(n))
        yield rejected
        db = status.get("db") or {}
        yield CounterMetricFamily(
            "edge_har_ingest_db_outages", "times the store stopped taking writes", value=_number(db.get("outages"))
        )
        yield _gauge(
            "edge_har_ingest_db_up", "1 while the store takes the ingest's writes", db.get("state", "ok") == "ok"
        )
        yield CounterMetricFamily(
            "edge_har_ingest_set_aside", "batches set aside after a write error", value=_number(db.get("set_aside"))
        )

    def _devices(self, now: float) -> Iterator[Metric]:
        live = self.live
        try:
            page = live.store.device_page(limit=DEVICES_MAX)
            rates = predictions_per_second(live.store, [r.device_id for r in page.records], now)
        except Exception as exc:  # noqa: BLE001 - a scrape during a database outage still reports the ingest
            log.warning("metrics: cannot read the devices from the store: %s", str(exc).splitlines()[0][:200])
            yield _gauge("edge_har_store_up", "1 when the store answered this scrape", False)
            return
        yield _gauge("edge_har_store_up", "1 when the store answered this scrape", True)
        yield _gauge("edge_har_devices", "devices in the store", page.total)
        gaps = GaugeMetricFamily(
            "edge_har_device_gaps", "predictions of the device lost upstream (seq gaps)", labels=["device_id"]
        )
        rate = GaugeMetricFamily(
            "edge_har_device_predictions_per_second",
            "predictions of the device stored per second over the last minute",
            labels=["device_id"],
        )
        liveness = GaugeMetricFamily(
            "edge_har_device_liveness",
            "1 for the device's liveness state, 0 for the others",
            labels=["device_id", "liveness"],
        )
        for record in page.records:
            device_id = record.device_id
            gaps.add_metric([device_id], float(live.device_books(device_id)["gaps"]))
            rate.add_metric([device_id], rates.get(device_id, 0.0))
            state = live.liveness(record, now)
            for each in (*LIVENESS_STATES, *(() if state in LIVENESS_STATES else (state,))):
                liveness.add_metric([device_id, each], 1.0 if each == state else 0.0)
        yield gaps
        yield rate
        yield liveness


def _gauge(name: str, text: str, value: Any) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=_number(value))


def registry_for(live: LiveService) -> CollectorRegistry:
    """A registry of this app's own (not the process-wide default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCollector(live))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
