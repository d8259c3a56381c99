"""A private mosquitto on a free loopback port, for the demo, the end-to-end benchmark and the tests.

One starter for all three, so the broker the README demo shows is configured
like the one the tests assert against. Needs only the ``mosquitto`` binary
(``apt-get install mosquitto``), no pytest, so it runs on a Pi too.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Sequence

from edge_har.core.errors import EdgeHarError

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


class BrokerError(EdgeHarError, RuntimeError):
    """mosquitto missing, or not accepting connections; the message says why."""


def find_mosquitto(explicit: str | None = None) -> str | None:
    """Path of the mosquitto binary, or None (it is often in sbin, off a user's PATH)."""
    if explicit:
        return explicit if Path(explicit).is_file() else None
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((c for c in MOSQUITTO_CANDIDATES if Path(c).is_file()), None)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalBroker:
    """mosquitto with a generated config; ``start()`` returns once the port accepts connections.

    ``port`` stays fixed across ``stop()``/``start()``, so a restart looks to
    clients like a broker outage, not a new broker. ``extra_config`` lines are
    appended to the listener block (passwords, TLS, persistence).
    """

    def __init__(
        self,
        workdir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: str | None = None,
        allow_anonymous: bool = True,
        extra_config: Sequence[str] = (),
    ) -> None:
        found = find_mosquitto(binary)
        if found is None:
            raise BrokerError(
                "mosquitto is not installed (looked on PATH and in " + ", ".join(MOSQUITTO_CANDIDATES) + "); "
                "install it with: sudo apt-get install mosquitto"
            )
        self.binary = found
        self.host = host
        self.port = port or free_port(host)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf = self.workdir / f"mosquitto-{self.port}.conf"
        self.log_path = self.workdir / f"mosquitto-{self.port}.log"
        self.allow_anonymous = allow_anonymous
        self.extra_config = list(extra_config)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def config_text(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            *self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> LocalBroker:
        if self.running:
            return self
        self.conf.write_text(self.config_text())
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(
                    f"mosquitto exited at start (status {self.proc.returncode}): {self.log_text()[-800:]}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not accept connections on {self.address} within {timeout:g} s")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, as a service manager stops it; SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None

    def kill(self) -> None:
        """An abrupt broker death (power cut, OOM kill): no goodbye to the clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
