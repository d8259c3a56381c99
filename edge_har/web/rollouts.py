"""Staged rollouts of a bundle from serve's bundle store to devices, judged on what they already publish.

A rollout names a bundle and its devices (a list, a group the devices report, or every device the
store knows) and splits them into stages: a canary (``canary`` devices, or a percentage) and then the
rest. For each stage the engine publishes the update command, retained, on each device's
``<prefix>/<id>/update/set`` and watches:

* the device's own steps on ``<prefix>/<id>/update/state`` (``failed`` or ``rolled_back`` fails it);
* that it runs the new model within ``online_within_s`` (its state ``active`` and its predictions in
  the store naming the new ``model_id``);
* then, over ``soak_s`` on the new model, what the store holds: no restart loop (more than
  ``max_runs`` run ids since the stage began), inference p99 within ``max_p99_factor`` of before (its
  stats, and more than ``min_p99_increase_ms`` slower), not degenerate (one label for every window where the old model gave several), and
  confidence not collapsed (mean at least ``min_confidence_factor`` of before).

A stage whose devices all pass lets the next one start; one device that fails stops the rollout and
every device of it that took the bundle is sent a rollback (``{"action": "rollback"}``, retained), so
a bad bundle stops at the canary. The rollouts are JSON files beside the bundle store (one writer,
this process), so a restarted serve carries on.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import sqlalchemy as sa

from edge_har.core.errors import EdgeHarError
from edge_har.device.updater import STATES
from edge_har.mqtt.bounded_json import RejectedMessage, parse_message
from edge_har.web.ingest_checks import DEVICE_ID
from edge_har.web.store import Store, predictions

__all__ = ["Criteria", "NoBroker", "RolloutEngine", "RolloutError"]

log = logging.getLogger("edge_har.web.rollouts")

STEP_S = 1.0
MAX_STATE_BYTES = 4096
MAX_DEVICES = 10_000
_ROLLOUT_ID = re.compile(r"^r-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
_GROUP = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class RolloutError(EdgeHarError, ValueError):
    """A rollout that cannot be made or changed; the message names the field."""


class NoBroker(EdgeHarError):
    """serve runs without a broker, so no device can be told of a rollout."""


@dataclass
class Criteria:
    """What a stage's devices must show on the new bundle (see the module doc)."""

    online_within_s: float = 180.0
    soak_s: float = 30.0
    min_predictions: int = 10
    max_runs: int = 2
    max_p99_factor: float = 3.0
    min_p99_increase_ms: float = 5.0  # a p99 this close to before passes whatever the factor (sub-ms models jitter)
    min_confidence_factor: float = 0.5

    @classmethod
    def from_json(cls, data: Optional[dict[str, Any]]) -> Criteria:
        c = cls()
        for key, value in (data or {}).items():
            if key not in c.__dataclass_fields__:
                raise RolloutError(f"criteria.{key}: not a criterion ({', '.join(c.__dataclass_fields__)})")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise RolloutError(f"criteria.{key}: must be a number >= 0")
            setattr(c, key, type(getattr(c, key))(value))
        if c.max_runs < 1 or c.soak_s > 86400 or c.online_within_s > 86400:
            raise RolloutError("criteria: max_runs >= 1, soak_s and online_within_s at most a day")
        return c


@dataclass
class DeviceProgress:
    stage: int
    state: str = "pending"  # pending, sent, <a device state>, passed, failed, rolled_back
    reason: Optional[str] = None
    sent_at: Optional[float] = None
    active_at: Optional[float] = None
    from_seq: Optional[int] = None
    before: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)


def _now() -> float:
    return time.time()


class RolloutEngine:
    """Rollouts: made by the API, advanced by a thread, devices' steps taken from the broker."""

    def __init__(self, root: Path, store: Store, bundles: Any, cfg: Any, clock: Callable[[], float] = _now) -> None:
        self.root = Path(root)  # made at the first rollout: a serve that never rolls out leaves no folder
        self.store = store
        self.bundles = bundles  # the BundleStore: get(id) -> item
        self.cfg = cfg
        self.prefix = cfg.topic_prefix
        self.clock = clock
        self._lock = threading.RLock()
        self._rollouts: dict[str, dict[str, Any]] = {}
        self.device_states: dict[str, dict[str, Any]] = {}  # the last update/state of each device
        self._client: Any = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._starts = 0
        self._load()

    # ------------------------------------------------------------------ persistence

    def _load(self) -> None:
        for file in sorted(self.root.glob("r-*.json")):
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
                if isinstance(data, dict) and _ROLLOUT_ID.match(str(data.get("id", ""))):
                    self._rollouts[data["id"]] = data
            except (OSError, ValueError) as exc:
                log.warning("rollouts: %s cannot be read (%s); left alone", file, exc)

    def _save(self, rollout: dict[str, Any]) -> None:
        from edge_har.core.recording_layout import atomic_write

        rollout["updated_at"] = self.clock()
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / f"{rollout['id']}.json", json.dumps(rollout, indent=1).encode("utf-8"))

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Connect and start the engine. Counted: an app whose lifespan runs twice at once (a test client
        beside schemathesis's) shares one engine, which the last :meth:`stop` stops."""
        with self._lock:
            self._starts += 1
            if self._starts > 1 or self.cfg.mqtt is None:
                return
        self._stop.clear()
        from edge_har.mqtt.client import start_client
        from edge_har.web.ingest import default_client_id

        base = self.cfg.client_id or default_client_id(self.prefix)
        self._client = start_client(
            self.cfg.mqtt, f"{base[:120]}-rollouts", on_connect=self._on_connect, on_message=self._on_message
        )
        self._thread = threading.Thread(target=self._run, name="edge-har-rollouts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._starts = max(0, self._starts - 1)
            if self._starts:
                return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        from edge_har.mqtt.client import stop_client

        client, self._client = self._client, None
        stop_client(client)

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if not getattr(reason, "is_failure", False):
            client.subscribe(f"{self.prefix}/+/update/state", qos=1)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        parts = str(message.topic).split("/")
        if len(parts) != len(self.prefix.split("/")) + 3 or not DEVICE_ID.match(parts[-3]):
            return
        try:
            data = parse_message(bytes(message.payload), max_bytes=MAX_STATE_BYTES, max_depth=4)
        except RejectedMessage:
            return
        if not isinstance(data, dict) or data.get("state") not in STATES:
            return
        kept = {
            k: data.get(k)
            for k in ("state", "rollout_id", "model_id", "reason", "from_seq", "ts", "trial", "bundle_id")
        }
        groups = data.get("groups")
        if isinstance(groups, list):
            kept["groups"] = [g for g in groups[:32] if isinstance(g, str) and _GROUP.match(g)]
        for key in ("reason", "model_id", "rollout_id", "bundle_id"):
            value = kept.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > 512):
                kept[key] = None
        if not isinstance(kept.get("from_seq"), int) or isinstance(kept.get("from_seq"), bool):
            kept["from_seq"] = None
        kept["received_at"] = self.clock()
        with self._lock:
            if len(self.device_states) < MAX_DEVICES or parts[-3] in self.device_states:
                self.device_states[parts[-3]] = kept

    # ------------------------------------------------------------------ the API's side

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        bundle_id = body.get("bundle_id")
        item = self.bundles.get(bundle_id) if isinstance(bundle_id, str) else None
        if item is None:
            raise RolloutError(f"bundle_id: no bundle {str(bundle_id)[:80]!r} in the store (upload it first)")
        devices = self._targets(body)
        if not devices:
            raise RolloutError("no device matches the target (devices, group or all)")
        canary = self._canary(body.get("canary", 1), len(devices))
        criteria = Criteria.from_json(body.get("criteria"))
        if self.cfg.mqtt is None:
            raise NoBroker("serve has no broker: start it with --broker HOST[:PORT] to run rollouts")
        now = self.clock()
        rollout_id = time.strftime("r-%Y%m%d-%H%M%S-", time.gmtime(now)) + uuid.uuid4().hex[:6]
        stages = [devices[:canary], devices[canary:]] if canary < len(devices) else [devices]
        rollout = {
            "id": rollout_id,
            "bundle_id": item["id"],
            "model_id": item["model_id"],
            "sha256": item["sha256"],
            "size_bytes": item["size_bytes"],
            "target": {k: body[k] for k in ("devices", "group", "all") if k in body},
            "criteria": asdict(criteria),
            "state": "running",
            "reason": None,
            "created_at": now,
            "stage": 0,
            "stages": [{"devices": s, "state": "pending", "started_at": None, "ended_at": None} for s in stages],
            "devices": {d: asdict(DeviceProgress(i)) for i, s in enumerate(stages) for d in s},
        }
        with self._lock:
            self._rollouts[rollout_id] = rollout
            self._save(rollout)
        log.info("rollout %s: %s to %d devices in %d stages", rollout_id, item["id"], len(devices), len(stages))
        return rollout

    def _targets(self, body: dict[str, Any]) -> list[str]:
        if "devices" in body:
            devices = body["devices"]
            if not isinstance(devices, list) or not all(isinstance(d, str) and DEVICE_ID.match(d) for d in devices):
                raise RolloutError("devices: a list of device ids (one MQTT topic level each)")
            return list(dict.fromkeys(devices))[:MAX_DEVICES]
        if "group" in body:
            group = body["group"]
            if not isinstance(group, str) or not _GROUP.match(group):
                raise RolloutError("group: 1-64 letters, digits, '.', '_' or '-'")
            with self._lock:
                return sorted(d for d, s in self.device_states.items() if group in (s.get("groups") or []))
        if body.get("all") is True:
            return [r.device_id for r in self.store.devices()][:MAX_DEVICES]
        raise RolloutError("give devices (a list), group or all: true")

    @staticmethod
    def _canary(value: Any, n: int) -> int:
        if isinstance(value, str) and value.endswith("%"):
            try:
                share = float(value[:-1])
            except ValueError:
                raise RolloutError(f"canary: {value[:20]!r} is not a percentage") from None
            if not 0 < share <= 100:
                raise RolloutError("canary: a percentage within (0, 100]")
            return max(1, min(n, math.ceil(n * share / 100)))
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return min(n, value)
        raise RolloutError("canary: a number of devices (>= 1) or a percentage such as '10%'")

    def all_rollouts(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted((json.loads(json.dumps(r)) for r in self._rollouts.values()), key=lambda r: -r["created_at"])

    def get(self, rollout_id: str) -> Optional[dict[str, Any]]:
        with self._lock:
            r = self._rollouts.get(rollout_id)
            return json.loads(json.dumps(r)) if r is not None else None

    def stop_rollout(self, rollout_id: str, roll_back: bool) -> dict[str, Any]:
        with self._lock:
            rollout = self._rollouts.get(rollout_id)
            if rollout is None:
                raise KeyError(rollout_id)
            if rollout["state"] == "running":
                self._fail(rollout, "stopped by a user", roll_back=roll_back, state="stopped")
            return json.loads(json.dumps(rollout))

    # ------------------------------------------------------------------ the engine

    def _run(self) -> None:
        while not self._stop.wait(STEP_S):
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the engine outlives any bug; the rollout waits
                log.exception("rollouts: a step failed")

    def step(self) -> None:
        with self._lock:
            for rollout in list(self._rollouts.values()):
                if rollout["state"] == "running":
                    self._advance(rollout)
                elif rollout["state"] in ("failed", "stopped"):
                    self._chase_rollbacks(rollout)

    def _advance(self, rollout: dict[str, Any]) -> None:
        now = self.clock()
        stage = rollout["stages"][rollout["stage"]]
        if stage["state"] == "pending":
            stage["state"], stage["started_at"] = "running", now
            for device in stage["devices"]:
                progress = rollout["devices"][device]
                progress["before"] = self._before(device, now, rollout["criteria"]["soak_s"])
                self._send(device, self._command(rollout))
                progress["state"], progress["sent_at"] = "sent", now
            self._save(rollout)
            return
        criteria = Criteria.from_json(rollout["criteria"])
        changed = False
        for device in stage["devices"]:
            progress = rollout["devices"][device]
            if progress["state"] in ("passed", "failed"):
                continue
            verdict = self._judge(rollout, device, progress, criteria, now)
            changed |= verdict is not None
            if verdict == "failed":
                self._fail(rollout, f"{device}: {progress['reason']}", roll_back=True)
                return
        if all(rollout["devices"][d]["state"] == "passed" for d in stage["devices"]):
            stage["state"], stage["ended_at"] = "passed", now
            if rollout["stage"] + 1 < len(rollout["stages"]):
                rollout["stage"] += 1
            else:
                rollout["state"] = "done"
                log.info("rollout %s: done", rollout["id"])
            changed = True
        if changed:
            self._save(rollout)

    def _judge(
        self, rollout: dict[str, Any], device: str, progress: dict[str, Any], criteria: Criteria, now: float
    ) -> Optional[str]:
        """Move one device on; "passed" or "failed" when it is decided, else None."""
        state = self.device_states.get(device) or {}
        if state.get("rollout_id") == rollout["id"] and state.get("state") in STATES:
            if state["state"] != progress["state"]:
                progress["state"] = state["state"]
            if state["state"] in ("failed", "rolled_back"):
                progress["state"], progress["reason"] = (
                    "failed",
                    f"the device says {state['state']}: {state.get('reason')}",
                )
                return "failed"
            if (
                state["state"] == "active"
                and state.get("model_id") == rollout["model_id"]
                and progress["active_at"] is None
            ):
                progress["active_at"], progress["from_seq"] = now, state.get("from_seq")
        if progress["active_at"] is None:
            if now - progress["sent_at"] > criteria.online_within_s:
                progress["state"], progress["reason"] = (
                    "failed",
                    f"not running {rollout['model_id']} within {criteria.online_within_s:g} s",
                )
                return "failed"
            return None
        if now - progress["active_at"] < criteria.soak_s:
            return None
        health = self._health(device, rollout["model_id"], progress, criteria)
        progress["health"] = health
        if health["predictions"] < criteria.min_predictions:
            if now - progress["active_at"] > criteria.soak_s + criteria.online_within_s:
                progress["state"], progress["reason"] = (
                    "failed",
                    f"only {health['predictions']} predictions on the new model",
                )
                return "failed"
            return None
        problem = self._problem(health, progress["before"], criteria)
        if problem:
            progress["state"], progress["reason"] = "failed", problem
            return "failed"
        progress["state"] = "passed"
        return "passed"

    @staticmethod
    def _problem(health: dict[str, Any], before: dict[str, Any], c: Criteria) -> Optional[str]:
        if health["runs"] > c.max_runs:
            return f"{health['runs']} runs since the update began (a restart loop; at most {c.max_runs})"
        if health["labels"] == 1 and (before.get("labels") or 0) >= 2:
            return (
                f"degenerate: every window is {health['top_label']!r} (the model before gave {before['labels']} labels)"
            )
        p99, p99_before = health.get("p99_ms"), before.get("p99_ms")
        if (
            p99 is not None
            and p99_before
            and p99 > c.max_p99_factor * p99_before
            and p99 - p99_before > c.min_p99_increase_ms
        ):
            return f"inference p99 {p99:.2f} ms, over {c.max_p99_factor:g} x before ({p99_before:.2f} ms)"
        conf, conf_before = health.get("confidence"), before.get("confidence")
        if conf is not None and conf_before and conf < c.min_confidence_factor * conf_before:
            return f"mean confidence {conf:.2f}, under {c.min_confidence_factor:g} x before ({conf_before:.2f})"
        return None

    def _rows(self, device: str, since: float, until: float, model_id: Optional[str] = None) -> list[Any]:
        c = predictions.c
        query = sa.select(c.label, c.confidence, c.run_id, c.model_id).where(
            c.device_id == device, c.received_at >= since, c.received_at < until
        )
        if model_id is not None:
            query = query.where(c.model_id == model_id)
        with self.store.engine.connect() as conn:
            return list(conn.execute(query.limit(20_000)).all())

    def _summary(self, rows: list[Any]) -> dict[str, Any]:
        labels: dict[str, int] = {}
        for row in rows:
            labels[row.label] = labels.get(row.label, 0) + 1
        conf = [float(r.confidence) for r in rows]
        return {
            "predictions": len(rows),
            "labels": len(labels),
            "top_label": max(labels, key=lambda k: labels[k]) if labels else None,
            "confidence": round(sum(conf) / len(conf), 4) if conf else None,
        }

    def _p99(self, device: str) -> Optional[float]:
        record = self.store.device(device)
        stats = record.stats if record is not None else None
        inference = stats.get("inference_ms") if isinstance(stats, dict) else None
        value = inference.get("p99") if isinstance(inference, dict) else None
        return (
            float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            else None
        )

    def _before(self, device: str, now: float, soak_s: float) -> dict[str, Any]:
        window = max(60.0, 2 * soak_s)
        return self._summary(self._rows(device, now - window, now)) | {"p99_ms": self._p99(device)}

    def _health(self, device: str, model_id: str, progress: dict[str, Any], c: Criteria) -> dict[str, Any]:
        now = self.clock()
        rows = self._rows(device, progress["active_at"], now + 1, model_id)
        runs = {r.run_id for r in self._rows(device, progress["sent_at"], now + 1)}
        return self._summary(rows) | {"runs": len(runs), "p99_ms": self._p99(device)}

    def _command(self, rollout: dict[str, Any]) -> dict[str, Any]:
        return {
            "bundle_id": rollout["bundle_id"],
            "sha256": rollout["sha256"],
            "size_bytes": rollout["size_bytes"],
            "rollout_id": rollout["id"],
        }

    def _send(self, device: str, command: dict[str, Any]) -> None:
        client = self._client
        if client is None:
            raise RuntimeError("no broker: serve needs --broker to run rollouts")
        client.publish(f"{self.prefix}/{device}/update/set", json.dumps(command), qos=1, retain=True)

    def _fail(self, rollout: dict[str, Any], reason: str, roll_back: bool, state: str = "failed") -> None:
        rollout["state"], rollout["reason"] = state, reason
        stage = rollout["stages"][rollout["stage"]]
        stage["state"], stage["ended_at"] = state, self.clock()
        rollout["roll_back"] = roll_back
        log.warning("rollout %s: %s (%s)", rollout["id"], state, reason)
        self._chase_rollbacks(rollout)
        self._save(rollout)

    def _chase_rollbacks(self, rollout: dict[str, Any]) -> None:
        """Every device of a stopped rollout that runs its bundle is sent a rollback, once; one that was sent
        the update but has not taken it yet has the command cleared."""
        if not rollout.get("roll_back"):
            return
        changed = False
        for device, progress in rollout["devices"].items():
            if progress["state"] in ("pending", "rolled_back") or self._client is None:
                continue
            state = self.device_states.get(device) or {}
            took = progress["active_at"] is not None or (
                state.get("rollout_id") == rollout["id"] and state.get("state") in ("active", "restarting")
            )
            if took:
                self._send(device, {"action": "rollback", "rollout_id": rollout["id"]})
                progress["state"] = "rolled_back"
                changed = True
            elif not progress.get("cleared"):  # sent, not taken: the retained command goes, so no restart takes it
                self._client.publish(f"{self.prefix}/{device}/update/set", b"", qos=1, retain=True)
                progress["cleared"] = True
                changed = True
        if changed:
            self._save(rollout)

    def fleet(self) -> list[dict[str, Any]]:
        """Every device the store knows with the model it runs and its last update state."""
        with self._lock:
            states = dict(self.device_states)
        out = []
        for record in self.store.devices():
            out.append(
                {
                    "device_id": record.device_id,
                    "model_id": record.activity.model_id if record.activity else record.model_id,
                    "last_seen": record.last_seen,
                    "status": record.status,
                    "update": states.get(record.device_id),
                }
            )
        return out
