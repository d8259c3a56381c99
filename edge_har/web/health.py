"""``GET /healthz``: whether the store answers and the broker (when one is configured) is connected.

Orchestrators (Docker, systemd, Kubernetes, Home Assistant) probe it without credentials, so it says no
more than ok or not and why. The database check runs in its own daemon thread with a deadline: a
database that hangs (a network partition, a stuck lock) makes the probe answer 503 in ``timeout_s``
rather than hang with it; at most one check is in flight, so a hung one does not pile up threads, and
a daemon thread (not an executor's, which the interpreter joins at exit) never holds up a stop.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional

from edge_har.web.queries import ping
from edge_har.web.store import Store

__all__ = ["HealthCheck"]

log = logging.getLogger("edge_har.web.health")


class _Ping:
    """One check in its own daemon thread: ``done`` is set when the database answered or failed."""

    def __init__(self, store: Store, timeout_s: float) -> None:
        self.done = threading.Event()
        self.error: Optional[str] = None
        threading.Thread(target=self._run, args=(store, timeout_s), name="healthz", daemon=True).start()

    def _run(self, store: Store, timeout_s: float) -> None:
        try:
            ping(store, timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure of the database is what the probe reports
            self.error = _one_line(exc)
        finally:
            self.done.set()


class HealthCheck:
    """The store's ``SELECT 1`` within ``timeout_s`` and the broker's state, as ``/healthz`` reports them."""

    def __init__(self, store: Store, timeout_s: float = 2.0) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._inflight: Optional[_Ping] = None

    def store_state(self) -> dict[str, Any]:
        started = time.perf_counter()
        with self._lock:
            if self._inflight is None or self._inflight.done.is_set():
                self._inflight = _Ping(self.store, self.timeout_s)
            job = self._inflight
        if job.done.wait(self.timeout_s):
            error = job.error
        else:
            error = f"the database did not answer SELECT 1 within {self.timeout_s:g} s"
        latency_ms = (time.perf_counter() - started) * 1000.0
        if error is not None:
            log.warning("healthz: store %s: %s", self.store.describe(), error)
        return {
            "ok": error is None,
            "backend": self.store.backend,
            "latency_ms": round(latency_ms, 3),
            "error": error,
        }

    def report(self, broker: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 503 when the store failed or a configured broker is not connected."""
        store = self.store_state()
        broker_ok = not broker.get("configured") or bool(broker.get("connected"))
        ok = store["ok"] and broker_ok
        body = {
            "status": "ok" if ok else "unavailable",
            "store": store,
            "broker": {"configured": bool(broker.get("configured")), "connected": bool(broker.get("connected"))},
        }
        return (200 if ok else 503), body


def _one_line(exc: BaseException) -> str:
    """The driver's first line, without SQLAlchemy's statement dump."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return (text.splitlines()[0] if text else type(orig).__name__)[:300]
