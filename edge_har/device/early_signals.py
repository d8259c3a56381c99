"""Stop signals that arrive while ``edge-har run`` starts, kept until the daemon can act on them.

Before :class:`~edge_har.device.daemon.Daemon` installs its handlers, the process imports
the runtime (numpy, the interpreter: seconds on a Pi Zero) and reads the config. A SIGHUP
(``systemctl reload``) in that time would take the default action and kill the process with
129, which the shipped unit does not restart; a SIGINT would print a ``KeyboardInterrupt``
traceback. ``edge-har run`` therefore calls :func:`install` first, with nothing but
``signal`` imported, and the daemon takes what arrived with :func:`take` and gives it the same
meaning as later: SIGHUP a clean stop and exit 75 (restart me), SIGTERM and SIGINT a clean
stop and exit 0. A second SIGINT or SIGTERM before the daemon takes over exits at once with 0
(nothing is connected yet), so a start-up stuck reading its config from a pipe can still be
interrupted from the terminal.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["STOP_SIGNALS", "install", "take"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_received: list[int] = []


def install() -> bool:
    """Remember SIGTERM, SIGINT and SIGHUP from now on; False (nothing installed) off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in STOP_SIGNALS:
        signal.signal(sig, _remember)
    return True


def take() -> list[int]:
    """The signals received since :func:`install`, in order, and forget them."""
    taken = list(_received)
    del _received[: len(taken)]
    return taken


def _remember(signum: int, frame: Any) -> None:
    if signum != signal.SIGHUP and any(s != signal.SIGHUP for s in _received):
        raise SystemExit(0)
    _received.append(signum)
