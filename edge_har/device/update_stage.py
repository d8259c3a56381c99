"""The daemon's side of updates: which bundle a start runs, the swap between two windows, the trial.

The daemon calls this at four points and nowhere else:

* :meth:`UpdateStage.begin` before its start checks: the bundle to load (the current one under
  ``update.dir``, or the config's), a start of a bundle on trial counted, a rollback made when the
  trial has failed too often; :meth:`start_refused` when the checks refuse a bundle on trial (it is
  given up at once and the daemon restarts into the one before);
* :meth:`start` once MQTT and the source run: the :class:`~edge_har.device.updater.Updater` thread;
* :meth:`on_window` in the inference thread before each window: a window made after a swap runs on
  the new runtime (its ``seq`` counter taken over), so the windows before it ran on the old one;
* :meth:`after_prediction` after each published prediction: a bundle on trial is confirmed after
  ``confirm_after_windows`` of them.

A swap happens between two windows when the new bundle's labels, events and stream (rate, window,
stride, channels, value scaling) are the running one's: the source thread's windowing switches to the
new normalisation at its next chunk and tags the windows it makes from then on with a new generation,
so no sample is lost and no window is dropped. Anything else (new labels, another window length) is
made current and started by a restart (exit 75).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any, Optional

from edge_har.device.bundle_slots import BundleSlots, StartPlan
from edge_har.device.updater import Prepared, Updater, stream_differences

__all__ = ["UpdateStage"]

log = logging.getLogger(__name__)

SWAP_WAIT_S = 60.0  # how long the update thread waits for the next window to take the new runtime


class UpdateStage:
    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.slots = BundleSlots(cfg.update.directory(), cfg.update.max_failed_starts)
        self.plan: StartPlan = StartPlan(None, None, False)
        self.updater: Optional[Updater] = None
        self.daemon: Any = None
        self._generation = 0
        self._pending: dict[int, Prepared] = {}
        self._taken: dict[int, int] = {}  # generation -> the first seq its runtime published
        self._swapped = threading.Condition()
        self._trial_left: Optional[int] = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ start

    def begin(self, loaded: Any) -> Any:
        """The loaded config to start with: its bundle replaced by the current one under update.dir."""
        self.plan = self.slots.begin_start()
        if self.plan.rolled_back_from:
            log.warning(
                "update: starting on %s after giving up %s",
                self.plan.name or "the config's bundle",
                self.plan.rolled_back_from,
            )
        if self.plan.bundle is None:
            return loaded
        log.info("update: starting on bundle %s%s", self.plan.bundle, " (on trial)" if self.plan.on_trial else "")
        if self.plan.on_trial:
            self._trial_left = self.cfg.update.confirm_after_windows
        return replace(loaded, config=loaded.config.model_copy(update={"bundle": self.plan.bundle}))

    def start_refused(self, errors: list[str]) -> bool:
        """The start checks refused the bundle: True when it was on trial and is now given up (restart)."""
        if not self.plan.on_trial:
            return False
        self.slots.roll_back(f"the start checks refused it: {errors[0] if errors else 'unknown'}"[:300])
        return True

    def start(self, daemon: Any) -> None:
        self.daemon = daemon
        self.updater = Updater(
            self.cfg,
            daemon.device_id,
            f"{daemon.publisher.client_id}-update",
            self.slots,
            current=lambda: daemon.runtime,
            hand_over=self.hand_over,
        )
        self.updater.start()
        rt = daemon.runtime
        if self.plan.rolled_back_from:
            state = self.slots.read()
            self.updater.report(
                "rolled_back",
                model_id=rt.model_id,
                reason=f"gave up {self.plan.rolled_back_from}: {state.rollback_reason or self.plan.reason}",
            )
        elif self.plan.on_trial:
            rollout = self.slots.read().rollout_id
            self.updater.report("active", model_id=rt.model_id, bundle=self.plan.name, trial=True, rollout_id=rollout)

    def stop(self) -> None:
        if self.updater is not None:
            self.updater.stop()
        with self._swapped:
            self._swapped.notify_all()

    # ------------------------------------------------------------------ the swap (update thread)

    def hand_over(self, prepared: Prepared) -> dict[str, Any]:
        daemon = self.daemon
        old, new = daemon.runtime, prepared.runtime
        command = prepared.command
        rollback = command.action == "rollback"
        why_not = self._why_not_hot(old, new)
        if why_not:
            self._make_current(prepared, started=False)
            daemon.restart_requested = True
            daemon.request_stop(f"update: restarting into {new.model_id} ({why_not})")
            return {
                "state": "restarting",
                "command": command,
                "model_id": new.model_id,
                "reason": why_not,
                "rollback": rollback or None,
            }
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._pending[generation] = prepared
        daemon.switch_windowing(new.pre, generation)
        with self._swapped:
            self._swapped.wait_for(lambda: generation in self._taken or daemon.stop_event.is_set(), SWAP_WAIT_S)
        from_seq = self._taken.get(generation)
        self._make_current(prepared, started=True)
        return {
            "state": "rolled_back" if rollback else "active",
            "command": command,
            "model_id": new.model_id,
            "previous_model_id": old.model_id,
            "from_seq": from_seq,
            "trial": not rollback,
        }

    def _make_current(self, prepared: Prepared, started: bool) -> None:
        """An update's bundle becomes current on trial; a rollback's becomes current for good."""
        if prepared.command.action == "rollback":
            self.slots.roll_back(f"rollout {prepared.command.rollout_id} rolled it back")
            self._trial_left = None
            return
        assert prepared.name is not None
        self.slots.activate(prepared.name, started=started, rollout_id=prepared.command.rollout_id)
        self._trial_left = self.cfg.update.confirm_after_windows if started else None

    def _why_not_hot(self, old: Any, new: Any) -> str:
        if old.bundle.kind != "sensor" or new.bundle.kind != "sensor":
            return "a video bundle is swapped by a restart"
        if list(old.labels) != list(new.labels):
            return "its labels differ"
        if (old.bundle.data.get("events") or {}) != (new.bundle.data.get("events") or {}):
            return "its event rules differ"
        diff = stream_differences(old.bundle.preprocessing, new.bundle.preprocessing)
        return f"its windows differ ({'; '.join(diff)})" if diff else ""

    # ------------------------------------------------------------------ the inference thread

    def on_window(self, window: Any, runtime: Any) -> Any:
        """The runtime ``window`` runs on: a new one from the first window of its generation."""
        generation = getattr(window, "generation", 0)
        if generation == getattr(runtime, "generation", 0):
            return runtime
        with self._lock:
            prepared = self._pending.pop(generation, None)
            for stale in [g for g in self._pending if g < generation]:
                self._pending.pop(stale)
        if prepared is None:
            return runtime
        new = prepared.runtime
        new.generation = generation
        new.take_over_seq(runtime)
        self.daemon.runtime = new
        if self.daemon.publisher is not None:
            self.daemon.publisher.model_id = new.model_id
        log.info("update: model %s from seq %d (was %s)", new.model_id, new.next_seq, runtime.model_id)
        with self._swapped:
            self._taken[generation] = new.next_seq
            self._swapped.notify_all()
        return new

    def after_prediction(self) -> None:
        if self._trial_left is None:
            return
        self._trial_left -= 1
        if self._trial_left > 0:
            return
        self._trial_left = None
        if self.slots.confirm() and self.updater is not None:
            rt, state = self.daemon.runtime, self.slots.read()
            self.updater.report(
                "active", model_id=rt.model_id, bundle=state.current, trial=False, rollout_id=state.rollout_id
            )
