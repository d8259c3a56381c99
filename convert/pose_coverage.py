"""Where the pose models found a person: per clip, per class, and which windows the device would publish.

A pose bundle's device skips every window in which no frame has a person (nothing to
classify; counted in ``windows_no_person``). A figure that scores those windows
describes a model nobody runs: a head can learn "no person = Diving" and pass the
gate while the device publishes nothing for that class. So every camera figure is
taken on the windows the device publishes, and the windows it would skip are counted
apart, per class. What the data cannot support is said out loud:

* clips in which no frame has a person, and classes whose frames have a person less
  often than ``min_person_rate``, are warned about and recorded in ``bundle.json``;
* a class whose test windows are mostly skipped (more than ``MAX_SKIPPED_SHARE``)
  has no figure worth the name: the conversion refuses unless ``--allow-no-person``.

Every function takes plain arrays (features of (frames, FEATURE_DIM), windows of
(n, T, FEATURE_DIM)), so tests check them with hand-made features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge_har.convert.skeleton import ConvertError
from edge_har.core import pose

log = logging.getLogger(__name__)

DEFAULT_MIN_PERSON_RATE = 0.5  # a class whose frames have a person less often than this is warned about
MAX_SKIPPED_SHARE = 0.5  # a class with more of its test windows skipped than this is refused
MAX_NAMES = 8  # clips named in one warning line


class NoPersonClassError(ConvertError):
    """A class's test windows are mostly without a person: the device would publish (almost) nothing for it."""


def window_has_person(windows: np.ndarray) -> np.ndarray:
    """(n,) True where a window of (n, T, FEATURE_DIM) features has a person in at least one frame.

    The device's rule (``edge_har.device.video_runtime``): those windows are classified and
    published, the others skipped.
    """
    x = np.asarray(windows)
    if x.ndim != 3:
        raise ValueError(f"windows must be (n, T, features), got shape {x.shape}")
    return np.asarray(pose.person_present(x).any(axis=1), bool)


COUNTED = "windows with a person in at least one frame (the ones the device publishes)"


def published(index: Any, windows: np.ndarray, labels: Sequence[str]) -> tuple[Any, dict[str, dict[str, int]]]:
    """The windows of ``index`` (a ``WindowIndex`` whose features are ``windows``) that the device
    publishes, and per class how many there were, were published and were skipped."""
    has = window_has_person(windows) if len(index) else np.zeros(0, bool)
    return index.subset(np.flatnonzero(has)), window_counts(has, index.y, labels)


def clip_rows(features: Mapping[int, np.ndarray], clips: Sequence[Any]) -> list[dict[str, Any]]:
    """Per clip (in clip-id order): file name, label, frames, frames with a person, the rate."""
    rows = []
    for ci in sorted(features):
        clip = clips[ci]
        real = len(features[ci]) - int(getattr(clip, "padded_frames", 0) or 0)
        found = int(pose.person_present(features[ci][: max(real, 0)]).sum())
        rows.append(
            {
                "clip": Path(clip.source).name,
                "label": clip.label,
                "frames": real,
                "with_person": found,
                "person_rate": round(found / real, 4) if real > 0 else 0.0,
            }
        )
    return rows


def class_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per class: clips, clips without a person, frames, frames with a person, the rate."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = out.setdefault(r["label"], {"clips": 0, "clips_without_person": 0, "frames": 0, "with_person": 0})
        c["clips"] += 1
        c["clips_without_person"] += int(r["with_person"] == 0)
        c["frames"] += r["frames"]
        c["with_person"] += r["with_person"]
    for c in out.values():
        c["person_rate"] = round(c["with_person"] / c["frames"], 4) if c["frames"] else 0.0
    return dict(sorted(out.items()))


def window_counts(has_person: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per class: windows, windows the device would publish, windows it would skip (no person)."""
    has, yy = np.asarray(has_person, bool), np.asarray(y)
    out = {}
    for i, label in enumerate(labels):
        mine = yy == i
        n, kept = int(mine.sum()), int((mine & has).sum())
        if n:
            out[label] = {"windows": n, "published": kept, "skipped_no_person": n - kept}
    return out


def skipped_classes(counts: Mapping[str, Mapping[str, int]], max_share: float = MAX_SKIPPED_SHARE) -> list[str]:
    """The classes more than ``max_share`` of whose windows have no person."""
    return [label for label, c in counts.items() if c["windows"] and c["skipped_no_person"] / c["windows"] > max_share]


def _names(items: Sequence[str]) -> str:
    more = len(items) - MAX_NAMES
    return ", ".join(items[:MAX_NAMES]) + (f" and {more} more" if more > 0 else "")


@dataclass
class Coverage:
    """Everything said about where a person was found; ``to_json`` is ``bundle.json``'s ``pose.coverage``."""

    clips: list[dict[str, Any]]
    classes: dict[str, dict[str, Any]]
    windows: dict[str, dict[str, dict[str, int]]]  # side -> class -> counts
    min_person_rate: float
    allowed_no_person: list[str]

    @property
    def clips_without_person(self) -> list[str]:
        return [r["clip"] for r in self.clips if r["with_person"] == 0]

    @property
    def classes_under_rate(self) -> list[str]:
        return [label for label, c in self.classes.items() if c["person_rate"] < self.min_person_rate]

    def skipped(self, side: str) -> int:
        return sum(c["skipped_no_person"] for c in self.windows.get(side, {}).values())

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": "a window is published when at least one of its frames has a person; the others are skipped "
            "on the device (windows_no_person) and left out of training and of every figure",
            "min_person_rate": self.min_person_rate,
            "max_skipped_share": MAX_SKIPPED_SHARE,
            "per_class": self.classes,
            "per_clip": self.clips,
            "clips_without_person": self.clips_without_person,
            "classes_under_rate": self.classes_under_rate,
            "windows": self.windows,
            "windows_skipped_no_person": {side: self.skipped(side) for side in self.windows},
            "allowed_no_person_classes": self.allowed_no_person,
        }

    def warn(self) -> None:
        """One warning line per thing the data cannot support (nothing when every clip is covered)."""
        empty = self.clips_without_person
        if empty:
            log.warning(
                "%d of %d clips have no person in any frame (the pose models found nobody): %s",
                len(empty),
                len(self.clips),
                _names(empty),
            )
        for label in self.classes_under_rate:
            c = self.classes[label]
            log.warning(
                "class %r: a person in %.0f%% of its frames (%d of %d, %d of %d clips without one), under "
                "--min-person-rate %.0f%%: its figures rest on few frames",
                label,
                100 * c["person_rate"],
                c["with_person"],
                c["frames"],
                c["clips_without_person"],
                c["clips"],
                100 * self.min_person_rate,
            )
        for side in ("train", "val", "test"):
            n = self.skipped(side)
            if n:
                total = sum(c["windows"] for c in self.windows[side].values())
                log.info(
                    "%s: %d of %d windows have no person; the device skips them, so they are left out", side, n, total
                )


def check_test_classes(coverage: Coverage, allow: bool) -> list[str]:
    """Refuse (NoPersonClassError) when a class's test windows are mostly without a person, unless ``allow``.

    Returns the flagged classes (recorded in the bundle when allowed).
    """
    test = coverage.windows.get("test", {})
    flagged = skipped_classes(test)
    if not flagged:
        return []
    text = "; ".join(
        f"{label!r}: {test[label]['skipped_no_person']} of {test[label]['windows']} test windows have no person"
        for label in flagged
    )
    if not allow:
        raise NoPersonClassError(
            f"refusing to convert: the device would publish (almost) nothing for {text} (over "
            f"{100 * MAX_SKIPPED_SHARE:.0f}%). The pose models do not find the person in those clips (too small, "
            "too close, lying down, out of frame): use clips where the whole body is visible, or pass "
            "--allow-no-person to convert anyway (those classes are then scored on the few windows with a person)"
        )
    log.warning("converting as asked (--allow-no-person) although %s", text)
    return flagged


def train_classes_check(coverage: Coverage, labels: Sequence[str]) -> None:
    """A class with no training window with a person cannot be learnt: ConvertError naming it."""
    train = coverage.windows.get("train", {})
    missing = [label for label in labels if train.get(label, {}).get("published", 0) == 0]
    if missing:
        raise ConvertError(
            f"class(es) {', '.join(missing)}: no training window has a person (the device would skip them all); "
            "nothing to learn from. Use clips where the pose models find the person"
        )


def person_lines(
    per_class: Mapping[str, Mapping[str, Any]],
    test_windows: Mapping[str, Mapping[str, int]],
    min_person_rate: float | None = None,
    clips_without_person: Sequence[str] = (),
) -> list[str]:
    """Lines for a summary: per class, frames with a person and the scored windows the device would skip."""
    lines = ["person found by the pose models, per class: frames with a person; windows the device skips"]
    for label, c in per_class.items():
        t = test_windows.get(label)
        skipped = f"{t['skipped_no_person']} of {t['windows']} windows skipped" if t else "no windows scored"
        low = (
            f"  << under {100 * min_person_rate:.0f}%" if min_person_rate and c["person_rate"] < min_person_rate else ""
        )
        lines.append(
            f"  {label:<20} {100 * c['person_rate']:5.1f}% of {c['frames']} frames "
            f"({c['clips_without_person']} of {c['clips']} clips without); {skipped}{low}"
        )
    if clips_without_person:
        lines.append(f"  clips with no person: {_names(list(clips_without_person))}")
    lines.append("  the figures are on the windows the device publishes (a person in at least one frame)")
    return lines


def summary_lines(document: Mapping[str, Any]) -> list[str]:
    """convert-video's summary lines about where a person was found (a pose bundle's ``pose.coverage``)."""
    cov = (document.get("pose") or {}).get("coverage")
    if not isinstance(cov, dict):
        return []
    return [""] + person_lines(
        cov.get("per_class") or {},
        (cov.get("windows") or {}).get("test") or {},
        cov.get("min_person_rate"),
        cov.get("clips_without_person") or [],
    )
