"""Taking a new bundle while the daemon runs: listen, download, check, test, hand over, report.

An update is a small retained JSON message on ``<prefix>/<device_id>/update/set`` (or a group's
``<prefix>/group/<group>/update/set``)::

    {"bundle_id": "hmp-cnn-lstm-20261207-1a2b3c4d-3f9c2a71b0de", "sha256": "<the archive's>",
     "size_bytes": 812345, "rollout_id": "r-20261207-01"}

``{"action": "rollback", "rollout_id": "..."}`` instead goes back to the bundle that ran before the
current one (the config's own when there was none), checked and swapped the same way.

The device builds the download URL from its own ``update.server`` (``/api/bundles/<id>/bundle.tar``), so
a message can name a bundle but never a place. Each step is published, retained, on
``<prefix>/<device_id>/update/state`` (``downloading``, ``verifying``, ``testing``, ``active``,
``restarting``, ``rolled_back``, ``failed`` with its ``reason``), from its own thread and MQTT link so
inference never waits for a download:

1. download (:mod:`edge_har.device.bundle_download`: resumable, the announced size and sha256);
2. verify: unpack safely (:mod:`edge_har.core.bundle_archive`), ``bundle.json`` and every file's
   sha256, the signature under ``trust:``, and that the bundle fits the running source (kind, channels,
   rate, window, stride, value scaling);
3. test: load it with the config's interpreter settings, which runs its self-test;
4. hand over to the daemon, which swaps between two windows when the labels, the events and the
   stream are the same (only the model and its normalisation change: nothing is lost, ``seq`` goes
   on), or else makes it current and restarts into it (exit 75).

The new bundle is current from then on, on trial: :class:`~edge_har.device.bundle_slots.BundleSlots`
gives it up for the one before after ``max_failed_starts`` failed starts.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from edge_har.core.errors import EdgeHarError

__all__ = ["STATES", "UpdateCommand", "UpdateError", "Updater", "parse_command", "stream_differences"]

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 4096
_BUNDLE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ROLLOUT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# the steps an update reports on update/state (serve's rollouts read the same list)
STATES = ("downloading", "verifying", "testing", "active", "restarting", "rolled_back", "failed")


class UpdateError(EdgeHarError, ValueError):
    """An update that cannot be taken; the message is the ``reason`` published with ``failed``."""


@dataclass(frozen=True)
class UpdateCommand:
    bundle_id: str
    sha256: str
    size_bytes: int
    rollout_id: Optional[str] = None
    action: str = "update"  # or "rollback": back to the bundle before the current one

    @property
    def key(self) -> str:
        """What a repeat of this command has in common with it (a retained message comes again)."""
        return self.sha256 if self.action == "update" else f"rollback:{self.rollout_id}"


def parse_command(payload: bytes) -> Optional[UpdateCommand]:
    """The command a message holds; None for an empty (cleared) retained message; UpdateError otherwise."""
    if not payload:
        return None
    if len(payload) > MAX_COMMAND_BYTES:
        raise UpdateError(f"update command of {len(payload)} bytes (at most {MAX_COMMAND_BYTES})")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UpdateError("update command: not UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise UpdateError("update command: not a JSON object")
    if data.get("action", "update") not in ("update", "rollback"):
        raise UpdateError("update command: action must be update or rollback")
    if data.get("action") == "rollback":
        rollout = data.get("rollout_id")
        if not isinstance(rollout, str) or not _ROLLOUT_ID.match(rollout):
            raise UpdateError("rollback command: rollout_id must be 1-64 letters, digits, '.', '_' or '-'")
        return UpdateCommand("", "", 0, rollout, "rollback")
    bundle_id, sha, size, rollout = (
        data.get("bundle_id"),
        data.get("sha256"),
        data.get("size_bytes"),
        data.get("rollout_id"),
    )
    if not isinstance(bundle_id, str) or not _BUNDLE_ID.match(bundle_id):
        raise UpdateError("update command: bundle_id must be 1-128 letters, digits, '.', '_' or '-'")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise UpdateError("update command: sha256 must be 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size < 2**40:
        raise UpdateError("update command: size_bytes must be a positive whole number")
    if rollout is not None and (not isinstance(rollout, str) or not _ROLLOUT_ID.match(rollout)):
        raise UpdateError("update command: rollout_id must be 1-64 letters, digits, '.', '_' or '-'")
    return UpdateCommand(bundle_id, sha, size, rollout)


def stream_differences(old: Any, new: Any) -> list[str]:
    """What differs between two preprocessings in how samples become windows (normalisation aside)."""
    out = []
    for key in ("sample_rate_hz", "window", "stride", "channels", "scale", "offset", "units"):
        a, b = getattr(old, key), getattr(new, key)
        if (tuple(a) if isinstance(a, (list, tuple)) else a) != (tuple(b) if isinstance(b, (list, tuple)) else b):
            out.append(f"{key} {a!r} -> {b!r}")
    return out


@dataclass
class Prepared:
    """A checked, installed, loaded bundle ready for the daemon to run."""

    command: UpdateCommand
    name: Optional[str]  # the folder under update.dir; None: the config's own bundle (a rollback to it)
    path: Path
    runtime: Any


class Updater:
    """The update thread and its MQTT link (see the module doc).

    ``current`` says what runs now (a callable: the daemon's runtime changes); ``hand_over`` gets a
    :class:`Prepared` and returns the state it ended in (``active`` or ``restarting``).
    """

    def __init__(
        self,
        cfg: Any,
        device_id: str,
        client_id: str,
        slots: Any,
        current: Callable[[], Any],
        hand_over: Callable[[Prepared], dict[str, Any]],
    ) -> None:
        self.cfg = cfg
        self.update = cfg.update
        self.device_id = device_id
        self.client_id = client_id
        self.slots = slots
        self.current = current
        self.hand_over = hand_over
        prefix = cfg.mqtt.topic_prefix
        self.topics = [f"{prefix}/{device_id}/update/set"] + [
            f"{prefix}/group/{g}/update/set" for g in self.update.groups
        ]
        self.state_topic = f"{prefix}/{device_id}/update/state"
        self._client: Any = None
        self._lock = threading.Lock()
        self._wanted: Optional[UpdateCommand] = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._done: set[str] = set()  # sha256 of archives taken or given up this run
        self.last_state: dict[str, Any] = {}

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        from edge_har.mqtt.client import start_client

        self._client = start_client(
            self.cfg.mqtt, self.client_id, on_connect=self._on_connect, on_message=self._on_message
        )
        self._thread = threading.Thread(target=self._run, name="edge-har-update", daemon=True)
        self._thread.start()
        log.info(
            "update: listening on %s; bundles from %s into %s",
            ", ".join(self.topics),
            self.update.server,
            self.slots.root,
        )

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        from edge_har.mqtt.client import stop_client

        client, self._client = self._client, None
        stop_client(client)

    def report(self, state: str, command: Optional[UpdateCommand] = None, **fields: Any) -> None:
        """Publish ``state`` (retained, QoS 1) with the command's ids and ``fields``; also logged."""
        body: dict[str, Any] = {"state": state, "ts": round(time.time(), 3), "device_id": self.device_id}
        if self.update.groups:  # serve's rollouts find a group's devices by what they say here
            body["groups"] = list(self.update.groups)
        if command is not None and command.action == "rollback":
            body |= {"action": "rollback", "rollout_id": command.rollout_id}
        elif command is not None:
            body |= {"bundle_id": command.bundle_id, "sha256": command.sha256, "rollout_id": command.rollout_id}
        body |= {k: v for k, v in fields.items() if v is not None}
        self.last_state = body
        level = logging.WARNING if state in ("failed", "rolled_back") else logging.INFO
        log.log(
            level, "update: %s %s", state, json.dumps({k: v for k, v in body.items() if k not in ("ts", "device_id")})
        )
        client = self._client
        if client is not None:
            client.publish(self.state_topic, json.dumps(body), qos=1, retain=True)

    # ------------------------------------------------------------------ MQTT (paho's thread)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if getattr(reason_code, "is_failure", False):
            return
        for topic in self.topics:
            client.subscribe(topic, qos=1)
        if self.last_state:
            client.publish(self.state_topic, json.dumps(self.last_state), qos=1, retain=True)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            command = parse_command(bytes(message.payload))
        except UpdateError as exc:
            self.report("failed", reason=f"{message.topic}: {exc}")
            return
        if command is None:
            return
        with self._lock:
            self._wanted = command
        self._wake.set()

    # ------------------------------------------------------------------ the update thread

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                command, self._wanted = self._wanted, None
            if command is None or command.key in self._done:
                continue
            if command.action == "update" and self._running_sha() == command.sha256:
                self._done.add(command.key)
                continue
            try:
                prepared = self.prepare(command) if command.action == "update" else self.prepare_rollback(command)
                if prepared is None:
                    continue
                self.report(**self.hand_over(prepared))
            except UpdateError as exc:
                self.report("failed", command, reason=str(exc))
            except Exception as exc:  # noqa: BLE001 - the update thread must outlive any bug, inference goes on
                log.exception("update: unexpected error")
                self.report("failed", command, reason=f"{type(exc).__name__}: {exc}"[:300])
            self._done.add(command.key)

    def _running_sha(self) -> Optional[str]:
        runtime = self.current()
        path = getattr(getattr(runtime, "bundle", None), "root", None)
        marker = Path(path) / ".archive-sha256" if path is not None else None
        try:
            return marker.read_text().strip() if marker is not None and marker.is_file() else None
        except OSError:
            return None

    def prepare(self, command: UpdateCommand) -> Optional[Prepared]:
        """Download, verify, install and load ``command``'s bundle; UpdateError with the reason."""
        from edge_har.core.bundle import Bundle, BundleError
        from edge_har.core.bundle_archive import ArchiveError, unpack_bundle
        from edge_har.device.bundle_download import DownloadError, download_archive

        max_bytes = int(self.update.max_bundle_mb * 1024 * 1024)
        if command.size_bytes > max_bytes:
            raise UpdateError(f"{command.bundle_id}: {command.size_bytes} bytes, over update.max_bundle_mb")
        url = f"{self.update.server}/api/bundles/{command.bundle_id}/bundle.tar"
        self.report("downloading", command, url=url)
        archive = self.slots.downloads() / f"{command.sha256}.tar"
        try:
            download_archive(
                url,
                archive,
                size=command.size_bytes,
                sha256=command.sha256,
                password=self._password(),
                timeout_s=self.update.timeout_s,
                stop=self._stop.is_set,
            )
        except DownloadError as exc:
            raise UpdateError(str(exc)) from None
        self.report("verifying", command)
        staging = self.slots.staging(command.sha256[:16])
        try:
            unpack_bundle(archive, staging, max_bytes * 4, where=url)
            bundle = Bundle.load_verified(staging)
            self._check_trust(staging)
            self._check_fit(bundle)
            (staging / ".archive-sha256").write_text(command.sha256 + "\n")
            name = f"{_safe(bundle.model_id)}-{command.sha256[:12]}"
        except (ArchiveError, BundleError, UpdateError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, UpdateError):
                raise
            raise UpdateError(str(exc).replace(str(staging), command.bundle_id)) from None
        path = self.slots.install(staging, name)
        archive.unlink(missing_ok=True)
        self.report("testing", command, model_id=bundle.model_id)
        try:
            from edge_har.device.runtime_api import RuntimeOptions, StreamRuntime

            runtime = StreamRuntime.load(path, RuntimeOptions.from_config(self.cfg))
        except (EdgeHarError, ValueError, OSError) as exc:
            if self.slots.read().current != name:
                shutil.rmtree(path, ignore_errors=True)
            raise UpdateError(f"{command.bundle_id}: cannot load: {exc}") from None
        return Prepared(command, name, path, runtime)

    def prepare_rollback(self, command: UpdateCommand) -> Prepared:
        """Load the bundle that ran before the current one (the config's when there was none)."""
        state = self.slots.read()
        if state.current is None:
            raise UpdateError("nothing to roll back to: this device runs the bundle its config names")
        path = self.slots.path(state.previous) if state.previous is not None else Path(self.cfg.bundle)
        self.report("testing", command, bundle=state.previous or str(path))
        try:
            from edge_har.device.runtime_api import RuntimeOptions, StreamRuntime

            runtime = StreamRuntime.load(path, RuntimeOptions.from_config(self.cfg))
        except (EdgeHarError, ValueError, OSError) as exc:
            raise UpdateError(f"cannot load the bundle before ({path}): {exc}") from None
        return Prepared(command, state.previous, path, runtime)

    def _password(self) -> Optional[str]:
        file = self.update.password_file
        if file is None:
            return None
        try:
            return Path(file).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError) as exc:
            raise UpdateError(f"update.password_file {file}: cannot read its first line ({exc})") from None

    def _check_trust(self, staging: Path) -> None:
        trust = getattr(self.cfg, "trust", None)
        if trust is None or not trust.keys:
            return
        from edge_har.core.signing import check_signature

        errors, warnings, _ = check_signature(staging, trust.keys, trust.require_signature)
        if errors:
            raise UpdateError(errors[0].replace(str(staging), "the bundle"))
        for line in warnings:
            log.warning("update: %s", line)

    def _check_fit(self, bundle: Any) -> None:
        running = self.current()
        if bundle.kind != running.bundle.kind:
            raise UpdateError(f"a {bundle.kind} bundle; this device runs {running.bundle.kind} bundles from its source")
        old, new = running.bundle.preprocessing, bundle.preprocessing
        if new.n_channels != old.n_channels or tuple(new.channels) != tuple(old.channels):
            raise UpdateError(
                f"the bundle takes channels {list(new.channels)}; this device's source gives {list(old.channels)}"
            )


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)[:80] or "bundle"
