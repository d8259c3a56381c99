"""Train / validation / test splits over recordings, never over windows.

Overlapping windows of one recording are near-copies of each other; a split
that scatters them over both sides measures memory, not recognition. So every
split here assigns whole recordings (or whole subjects) to one side.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

METHODS = ("recording", "subject", "predefined")


class SplitError(ValueError):
    """A split that cannot be made as asked; the message names the class or subject."""


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str
    seed: int
    options: dict[str, Any] = field(default_factory=dict)
    test_sources: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "seed": self.seed,
            **self.options,
            "recordings": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "test_sources": list(self.test_sources),
        }


def _finish(dataset: Any, train: list[int], val: list[int], test: list[int], method: str, seed: int, options: dict) -> Split:
    arrays = [np.asarray(sorted(s), dtype=np.int64) for s in (train, val, test)]
    return Split(*arrays, method=method, seed=seed, options=options,
                 test_sources=[dataset.recordings[i].source for i in arrays[2]])


def _split_by_recording(dataset: Any, indices: list[int], test_fraction: float, val_fraction: float,
                        rng: np.random.Generator, need_test: bool = True) -> tuple[list[int], list[int], list[int]]:
    """Stratified by class: each class's recordings are shuffled and cut by the fractions."""
    by_class: dict[str, list[int]] = {}
    for i in indices:
        by_class.setdefault(dataset.recordings[i].label, []).append(i)
    train, val, test = [], [], []
    need = 1 + int(need_test and test_fraction > 0) + int(val_fraction > 0)
    for label in sorted(by_class):
        members = list(by_class[label])
        if len(members) < need:
            raise SplitError(
                f"class {label!r} has {len(members)} recording(s); a split into "
                f"{'train/validation/test' if need == 3 else 'train/test' if need_test else 'train/validation'} "
                f"needs at least {need}, one per side. Add recordings, drop the class, or use --val-fraction 0"
            )
        rng.shuffle(members)
        n = len(members)
        n_test = max(1, int(round(n * test_fraction))) if need_test and test_fraction > 0 else 0
        n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 else 0
        while n_test + n_val > n - 1:  # keep at least one for training
            if n_val > 1:
                n_val -= 1
            elif n_test > 1:
                n_test -= 1
            else:
                break
        test += members[:n_test]
        val += members[n_test : n_test + n_val]
        train += members[n_test + n_val :]
    return train, val, test


def split_recordings(
    dataset: Any,
    *,
    method: str | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.15,
    test_subjects: Sequence[str] | None = None,
    val_subjects: Sequence[str] | None = None,
    seed: int = 42,
) -> Split:
    """Split recording indices. Default method: 'predefined' where the data set has one, else 'recording'."""
    if method is None:
        method = "predefined" if getattr(dataset, "predefined_split", None) else "recording"
    if method not in METHODS:
        raise SplitError(f"unknown split method {method!r}; choose one of {', '.join(METHODS)}")
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0 <= value < 1:
            raise SplitError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
    if test_fraction + val_fraction >= 1:
        raise SplitError(f"--test-fraction + --val-fraction must be < 1, got {test_fraction + val_fraction}")
    rng = np.random.default_rng(seed)
    everything = list(range(len(dataset.recordings)))

    if method == "recording":
        train, val, test = _split_by_recording(dataset, everything, test_fraction, val_fraction, rng)
        return _finish(dataset, train, val, test, method, seed,
                       {"test_fraction": test_fraction, "val_fraction": val_fraction, "stratified_by": "class", "grouped_by": "recording"})

    if method == "subject":
        known = sorted({r.subject for r in dataset.recordings if r.subject})
        if not known:
            raise SplitError("--split subject: the recordings carry no subject ids (give --subject-regex or --subject-column)")
        if not test_subjects:
            raise SplitError(f"--split subject needs --test-subjects (known subjects: {', '.join(known)})")
        for flag, chosen in (("--test-subjects", test_subjects), ("--val-subjects", val_subjects or [])):
            unknown = [s for s in chosen if s not in known]
            if unknown:
                raise SplitError(f"{flag}: unknown subject(s) {', '.join(unknown)}; known: {', '.join(known)}")
        overlap = set(test_subjects) & set(val_subjects or [])
        if overlap:
            raise SplitError(f"subject(s) {', '.join(sorted(overlap))} named in both --test-subjects and --val-subjects")
        test = [i for i in everything if dataset.recordings[i].subject in set(test_subjects)]
        rest = [i for i in everything if i not in set(test)]
        if val_subjects:
            val = [i for i in rest if dataset.recordings[i].subject in set(val_subjects)]
            train = [i for i in rest if i not in set(val)]
        else:
            train, val, _ = _split_by_recording(dataset, rest, 0.0, val_fraction, rng, need_test=False)
        missing = sorted({dataset.recordings[i].label for i in everything} - {dataset.recordings[i].label for i in train})
        if missing:
            raise SplitError(f"--split subject: no training recordings of class(es) {', '.join(missing)} remain "
                             f"after taking out subjects {', '.join(test_subjects)}")
        return _finish(dataset, train, val, test, method, seed,
                       {"test_subjects": list(test_subjects), "val_subjects": list(val_subjects or []), "val_fraction": val_fraction})

    predefined = getattr(dataset, "predefined_split", None)
    if not predefined:
        raise SplitError(f"--split predefined: data set {getattr(dataset, 'name', '?')} has no predefined split")
    test = [i for i in everything if predefined.get(dataset.recordings[i].source) == "test"]
    pool = [i for i in everything if predefined.get(dataset.recordings[i].source) != "test"]
    if val_fraction > 0:
        # validation by subject from the training side, so early stopping sees unseen people too
        subjects = sorted({dataset.recordings[i].subject for i in pool if dataset.recordings[i].subject})
        if len(subjects) >= 3:
            chosen = set(rng.choice(subjects, size=max(1, int(round(len(subjects) * val_fraction))), replace=False))
            val = [i for i in pool if dataset.recordings[i].subject in chosen]
            train = [i for i in pool if dataset.recordings[i].subject not in chosen]
        else:
            train, val, _ = _split_by_recording(dataset, pool, 0.0, val_fraction, rng, need_test=False)
    else:
        train, val = pool, []
    return _finish(dataset, train, val, test, method, seed, {"val_fraction": val_fraction})


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("split (whole recordings or subjects, never windows, go to one side)")
    g.add_argument("--split", type=str, default=None, choices=METHODS,
                   help="recording: stratified by class, grouped by recording (default); subject: by --test-subjects; "
                        "predefined: the data set's own (UCI HAR, default there)")
    g.add_argument("--test-subjects", type=_names, default=None, metavar="S1,S2", help="subjects held out for testing")
    g.add_argument("--val-subjects", type=_names, default=None, metavar="S1,S2",
                   help="subjects for validation (default: recordings drawn from the training subjects)")
    g.add_argument("--test-fraction", type=float, default=0.2, help="share of each class's recordings for testing (default 0.2)")
    g.add_argument("--val-fraction", type=float, default=0.15, help="share for validation / early stopping (default 0.15)")
    g.add_argument("--seed", type=int, default=42, help="random seed for the split and training (default 42)")


def split_from_args(args: argparse.Namespace, dataset: Any) -> Split:
    method = args.split
    if method is None and args.test_subjects:
        method = "subject"
    return split_recordings(
        dataset,
        method=method,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        test_subjects=args.test_subjects,
        val_subjects=args.val_subjects,
        seed=args.seed,
    )
