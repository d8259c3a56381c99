"""Keeps the activity rollups of closed 15-minute buckets computed, in the background of ``edge-har serve``.

Summaries (the Live page's today, the device page's days) read whole buckets from the rollups and compute
only what is missing from the rows (:meth:`edge_har.web.store.Store.activity_seconds`). Without this
thread the first page over a month of a device at 2 windows/s reads five million rows; with it, a bucket
is computed once, about a minute after it closes, and pages read the rows of the open bucket only. It runs
in the web process (never in ``--ingest-only`` workers), off the ingest thread, so a roll-up of a large
fleet never holds up storing.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

from edge_har.web.store import Store

__all__ = ["Roller"]

log = logging.getLogger("edge_har.web.roller")

EVERY_S = 60.0


class Roller:
    """A daemon thread calling :meth:`Store.roll_up_settled` every ``every_s`` seconds until :meth:`stop`."""

    def __init__(self, store: Store, every_s: float = EVERY_S) -> None:
        self.store = store
        self.every_s = every_s
        self.rolled = 0  # buckets computed since start
        self.errors = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edge-har-rollups", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.run_once()

    def run_once(self) -> int:
        """One pass; an error (the database away) is logged and the next pass tries again."""
        try:
            done = self.store.roll_up_settled()
        except Exception as exc:  # noqa: BLE001 - a failed pass is retried a minute later
            self.errors += 1
            log.warning("rollups: %s: %s", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            return 0
        self.rolled += done
        if done:
            log.debug("rollups: computed %d closed buckets", done)
        return done
