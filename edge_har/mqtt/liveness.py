"""Is a device alive? One rule for every consumer (``edge-har subscribe``, the web app, scripts).

The retained ``status`` topic alone cannot be trusted for that: a device that stops while its
broker is going down (a persistent broker killed during the stop) leaves a retained ``online``
that the restarted broker restores, and no Last Will follows because the device is gone. So:

* **MQTT 5**: the daemon publishes the retained ``online`` with a Message Expiry Interval of
  :func:`online_expiry_s` (``STALE_AFTER_INTERVALS`` stats intervals) and refreshes it every
  stats interval, so it never expires while the device is connected, and a stale one disappears
  from the broker (mosquitto honours the expiry across a persistent restart) within that time.
* **Any protocol** (3.1.1 has no expiry): every stats message carries ``ts``, ``run_id`` and
  ``stats_interval_s``; a consumer treats a device whose status says ``online`` as **stale**
  when no stats arrived for :func:`stale_after_s` seconds (``STALE_AFTER_INTERVALS`` intervals):
  :func:`device_liveness`. Time is measured on the consumer's own clock (when the stats
  *arrived*), so a device with a wrong clock is not misjudged.

Status values: ``online`` (running), ``stopped`` (a clean stop: SIGTERM, SIGINT, SIGHUP, end of
a replay), ``offline`` (the Last Will: it crashed, lost power or its network). A consumer shows
``stale`` for an ``online`` without fresh stats, and ``unknown`` before it has seen a status.
"""

from __future__ import annotations

import math
from typing import Optional

from edge_har.mqtt.payloads import STATUS_ONLINE

__all__ = [
    "DEFAULT_STATS_INTERVAL_S",
    "LIVENESS_STALE",
    "LIVENESS_UNKNOWN",
    "STALE_AFTER_INTERVALS",
    "device_liveness",
    "online_expiry_s",
    "stale_after_s",
]

# Stats intervals without stats after which an "online" device counts as stale, and the MQTT 5
# expiry of the retained "online" in the same unit: two missed stats are tolerated, a third is not.
STALE_AFTER_INTERVALS = 3
# What a consumer assumes before the first stats message says otherwise (mqtt.stats_interval_s default).
DEFAULT_STATS_INTERVAL_S = 30.0
LIVENESS_STALE = "stale"
LIVENESS_UNKNOWN = "unknown"
_MAX_EXPIRY_S = 2**32 - 1  # MQTT 5 Message Expiry Interval is a four-byte integer


def stale_after_s(stats_interval_s: Optional[float]) -> float:
    """Seconds without stats after which an ``online`` device is stale."""
    interval = _interval(stats_interval_s)
    return STALE_AFTER_INTERVALS * interval


def online_expiry_s(stats_interval_s: float) -> int:
    """The Message Expiry Interval (whole seconds, at least 1) of the retained MQTT 5 ``online``."""
    return int(min(_MAX_EXPIRY_S, max(1, math.ceil(stale_after_s(stats_interval_s)))))


def device_liveness(
    status: Optional[str],
    *,
    now: float,
    last_stats_at: Optional[float],
    stats_interval_s: Optional[float],
    watching_since: float,
) -> str:
    """``online``, ``stale``, ``stopped``, ``offline`` or ``unknown`` for one device.

    ``status``: the last status payload seen (None: none yet). ``last_stats_at``: when the last
    stats message arrived (None: none yet), on the same clock as ``now`` and ``watching_since``
    (when the consumer started watching, which bounds how long it can have waited).
    ``stats_interval_s``: from the last stats message (None: :data:`DEFAULT_STATS_INTERVAL_S`).
    Any status other than the three the daemon sends is returned as it is.
    """
    if status is None:
        return LIVENESS_UNKNOWN
    if status != STATUS_ONLINE:
        return status  # stopped, offline, or something a newer device sends: shown as it is
    since = last_stats_at if last_stats_at is not None else watching_since
    if now - since > stale_after_s(stats_interval_s):
        return LIVENESS_STALE
    return STATUS_ONLINE


def _interval(stats_interval_s: Optional[float]) -> float:
    if stats_interval_s is None or not isinstance(stats_interval_s, (int, float)) or isinstance(stats_interval_s, bool):
        return DEFAULT_STATS_INTERVAL_S
    value = float(stats_interval_s)
    return value if math.isfinite(value) and value > 0 else DEFAULT_STATS_INTERVAL_S
