"""The device's bundles on disk: the current one, the one before it, and a new one on trial.

``<dir>/state.json`` says which bundle folder under ``<dir>`` runs (``current``), which ran before
(``previous``; None: the config's own ``bundle:``) and whether ``current`` is still on trial (how many
times it was started without yet predicting ``confirm_after_windows`` windows). Every change is one
atomic write (temporary file, fsync, rename, folder fsync), so a kill or a power cut at any moment
leaves the old state or the new one, and the daemon always starts on one complete bundle:

* a bundle is unpacked and checked in a temporary folder, then renamed into place: a folder named
  in ``state.json`` is always whole;
* :meth:`BundleSlots.begin_start` counts a start of a bundle on trial before it is loaded, so a start
  that never comes back (a crash in the interpreter, a kill) counts too; at ``max_failed_starts`` the
  device goes back to ``previous``;
* only the current and the previous bundle are kept: older folders and leftovers of an interrupted
  unpack are removed at a start and when a bundle becomes current (by the thread that installs
  bundles, so a bundle just installed is never removed before it is made current); a partial
  download is kept, to be resumed.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from edge_har.core.recording_layout import atomic_write

__all__ = ["BundleSlots", "SlotState", "StartPlan"]

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
MAX_STATE_BYTES = 64 * 1024


@dataclass
class SlotState:
    current: Optional[str] = None  # a folder under the slots' dir; None: the config's bundle
    previous: Optional[str] = None
    trial_starts: Optional[int] = None  # None: current is confirmed (or the config's)
    rolled_back_from: Optional[str] = None  # the last bundle given up, and why
    rollback_reason: Optional[str] = None
    rollout_id: Optional[str] = None  # the rollout that made current current (its reports name it)


@dataclass(frozen=True)
class StartPlan:
    """What a start runs: ``bundle`` (None: the config's), and a rollback this start made, if any."""

    bundle: Optional[Path]
    name: Optional[str]
    on_trial: bool
    rolled_back_from: Optional[str] = None
    reason: Optional[str] = None


class BundleSlots:
    """See the module doc; one daemon process owns a slots folder."""

    def __init__(self, root: Path, max_failed_starts: int = 3) -> None:
        self.root = Path(root)
        self.max_failed_starts = max_failed_starts
        self.root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ state

    def read(self) -> SlotState:
        file = self.root / STATE_FILE
        try:
            if not file.exists():
                return SlotState()
            if file.stat().st_size > MAX_STATE_BYTES:
                raise ValueError(f"{file.stat().st_size} bytes")
            data = json.loads(file.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"not a JSON object but {type(data).__name__}")
            state = SlotState(**{k: data.get(k) for k in SlotState.__dataclass_fields__})
            for name in (state.current, state.previous):
                if name is not None and not self._valid(name):
                    raise ValueError(f"names {name!r}, which is not a whole bundle folder here")
            if state.trial_starts is not None and (
                not isinstance(state.trial_starts, int)
                or isinstance(state.trial_starts, bool)
                or state.trial_starts < 0
            ):
                raise ValueError("trial_starts is not a whole number")
            for text in (state.rolled_back_from, state.rollback_reason, state.rollout_id):
                if text is not None and not isinstance(text, str):
                    raise ValueError("rolled_back_from and rollback_reason must be text")
            return state
        except (OSError, ValueError, TypeError) as exc:
            log.warning("update: %s cannot be used (%s); starting on the config's bundle", file, exc)
            return SlotState()

    def write(self, state: SlotState) -> None:
        atomic_write(self.root / STATE_FILE, (json.dumps(asdict(state), indent=2) + "\n").encode("utf-8"))

    def path(self, name: str) -> Path:
        return self.root / name

    def _valid(self, name: str) -> bool:
        return (
            isinstance(name, str)
            and bool(name)
            and "/" not in name
            and not name.startswith(".")
            and (self.root / name / "bundle.json").is_file()
        )

    # ------------------------------------------------------------------ the daemon's start

    def begin_start(self) -> StartPlan:
        """The bundle this start runs; counts a start of a bundle on trial, and gives it up at the limit."""
        self.prune()  # nothing else runs yet: leftovers of an interrupted update go
        state = self.read()
        if state.current is None:
            return StartPlan(None, None, False)
        if state.trial_starts is not None:
            if state.trial_starts >= self.max_failed_starts:
                reason = f"it did not get through {state.trial_starts} starts in a row"
                failed = self._roll_back(state, reason)
                return StartPlan(self._plan_path(state.current), state.current, False, failed, reason)
            state.trial_starts += 1
            self.write(state)
        return StartPlan(self.path(state.current), state.current, state.trial_starts is not None)

    def _plan_path(self, name: Optional[str]) -> Optional[Path]:
        return None if name is None else self.path(name)

    def _roll_back(self, state: SlotState, reason: str) -> Optional[str]:
        failed = state.current
        state.rolled_back_from, state.rollback_reason = failed, reason
        state.current, state.previous, state.trial_starts = state.previous, None, None
        self.write(state)
        log.warning(
            "update: gave up bundle %s (%s); back to %s", failed, reason, state.current or "the config's bundle"
        )
        return failed

    def roll_back(self, reason: str) -> Optional[str]:
        """Leave the current bundle for the previous one now (a trial that the start checks refused)."""
        return self._roll_back(self.read(), reason)

    def confirm(self) -> bool:
        """The bundle on trial predicted enough windows: it stays. True when there was a trial."""
        state = self.read()
        if state.trial_starts is None:
            return False
        state.trial_starts = None
        self.write(state)
        return True

    # ------------------------------------------------------------------ installing

    def install(self, unpacked: Path, name: str) -> Path:
        """Move an unpacked, checked bundle folder into place as ``name`` (already there: kept as is)."""
        target = self.path(name)
        if target.exists():
            shutil.rmtree(unpacked, ignore_errors=True)
        else:
            unpacked.rename(target)
        return target

    def activate(self, name: str, started: bool, rollout_id: Optional[str] = None) -> None:
        """Make ``name`` current (the current one becomes previous), on trial; ``started``: it runs already."""
        state = self.read()
        if state.current != name:
            state.previous, state.current = state.current, name
        state.trial_starts = 1 if started else 0
        state.rollout_id = rollout_id
        self.write(state)
        self.prune()

    def staging(self, what: str) -> Path:
        """A fresh temporary folder path under the slots' dir (not created) for an unpack."""
        path = self.root / f".staging-{what}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    def downloads(self) -> Path:
        path = self.root / ".downloads"
        path.mkdir(exist_ok=True)
        return path

    def prune(self) -> None:
        """Remove every bundle folder but the current and the previous one, and stale staging folders."""
        state = self.read()
        keep = {state.current, state.previous}
        for entry in self.root.iterdir():
            if entry.is_dir() and entry.name not in keep and entry.name != ".downloads":
                shutil.rmtree(entry, ignore_errors=True)
