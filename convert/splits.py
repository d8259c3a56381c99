"""Train / validation / test splits over recordings, never over windows.

Overlapping windows of one recording are near-copies of each other; a split
that scatters them over both sides measures memory, not recognition. So every
split here assigns whole recordings (or whole subjects) to one side, and
recordings a data set ties together (``Dataset.split_groups``: UCI HAR's
overlapping windows of one run, an HMP model trial and its source trial) go
to the same side too.

Methods:

* ``recording`` (default): per class, the recording groups are shuffled with
  the seed and cut by ``test_fraction`` / ``val_fraction``; every class gets
  at least one group on each side, or a ``SplitError`` names the class.
* ``subject``: the ``test_subjects``' recordings are the test split; validation
  is ``val_subjects``, or drawn by recording from the remaining subjects.
* ``predefined``: the data set's own partition (UCI HAR's train/test by
  subject); validation is drawn from its training side.

Each class is shuffled with its own generator (seed, class name), so adding
or removing a class does not reshuffle the others.
"""

from __future__ import annotations

import argparse
import logging
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

METHODS = ("recording", "subject", "predefined")
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_VAL_FRACTION = 0.15
DEFAULT_SEED = 42


class SplitError(EdgeHarError, ValueError):
    """A split that cannot be made as asked; the message names the class or subject."""


@dataclass
class Split:
    """Recording indices (into ``dataset.recordings``) of each side, and how they were chosen."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str
    seed: int
    options: dict[str, Any] = field(default_factory=dict)
    test_sources: list[str] = field(default_factory=list)
    sources_relative: dict[str, list[str]] = field(default_factory=dict)  # side -> sources relative to the data root
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)  # side -> class -> recordings

    def describe(self) -> dict[str, Any]:
        """For bundle.json: enough to re-create the exact test split (``test_sources_relative``) later."""
        out = {
            "method": self.method,
            "seed": self.seed,
            **self.options,
            "recordings": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "recordings_per_class": self.per_class,
            "test_sources": list(self.test_sources),
        }
        for side, sources in self.sources_relative.items():
            out[f"{side}_sources_relative"] = list(sources)
        return out


# ------------------------------------------------------------------ helpers


def _class_rng(seed: int, label: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def _units(dataset: Any, indices: Sequence[int]) -> list[list[int]]:
    """The split groups among ``indices``, in order of first appearance; each a list of recording indices."""
    keys = dataset.group_keys() if hasattr(dataset, "group_keys") else [r.source for r in dataset.recordings]
    units: dict[str, list[int]] = {}
    for i in indices:
        units.setdefault(keys[i], []).append(i)
    return list(units.values())


def _unit_label(dataset: Any, unit: list[int]) -> str:
    return Counter(dataset.recordings[i].label for i in unit).most_common(1)[0][0]


def _by_class(dataset: Any, indices: Sequence[int]) -> dict[str, list[list[int]]]:
    out: dict[str, list[list[int]]] = {}
    for unit in _units(dataset, indices):
        out.setdefault(_unit_label(dataset, unit), []).append(unit)
    return out


def _describe_count(n_units: int, units: list[list[int]]) -> str:
    n_recordings = sum(len(u) for u in units)
    if n_recordings == n_units:
        return f"{n_units} recording(s)"
    return f"{n_units} independent group(s) of recordings ({n_recordings} recordings)"


def _stratified(
    dataset: Any,
    indices: Sequence[int],
    test_fraction: float,
    val_fraction: float,
    seed: int,
    *,
    strict: bool = True,
) -> tuple[list[int], list[int], list[int]]:
    """Per class: shuffle the groups, cut off test, then validation; the rest train.

    ``strict``: a class without enough groups for a group on every side is a
    SplitError. Otherwise (validation drawn from what a subject or predefined
    split left) such a class stays whole in training, with a warning.
    """
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    sides = ["train"] + (["validation"] if val_fraction > 0 else []) + (["test"] if test_fraction > 0 else [])
    short: list[str] = []
    for label, units in sorted(_by_class(dataset, indices).items()):
        n = len(units)
        if n < len(sides):
            if strict:
                raise SplitError(
                    f"class {label!r} has {_describe_count(n, units)}; a split into {'/'.join(sides)} needs at least "
                    f"{len(sides)}, one per side. Add recordings of it, leave the class out"
                    + (", or use --val-fraction 0" if val_fraction > 0 else "")
                )
            short.append(label)
            train += [i for u in units for i in u]
            continue
        order = _class_rng(seed, label).permutation(n)
        units = [units[k] for k in order]
        n_test = max(1, int(round(n * test_fraction))) if test_fraction > 0 else 0
        n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 else 0
        while n_test + n_val > n - 1:  # keep at least one group for training
            if n_val > 1 and n_val >= n_test:
                n_val -= 1
            elif n_test > 1:
                n_test -= 1
            else:
                n_val -= 1
        test += [i for u in units[:n_test] for i in u]
        val += [i for u in units[n_test : n_test + n_val] for i in u]
        train += [i for u in units[n_test + n_val :] for i in u]
    if short:
        log.warning(
            "class(es) %s have too few recordings for a validation share; all of theirs stay in training",
            ", ".join(short),
        )
    return train, val, test


def _finish(
    dataset: Any, train: list[int], val: list[int], test: list[int], method: str, seed: int, options: dict[str, Any]
) -> Split:
    from edge_har.convert.evaluate import relative_source

    arrays = {
        side: np.asarray(sorted(s), dtype=np.int64) for side, s in (("train", train), ("val", val), ("test", test))
    }
    everything = np.concatenate(list(arrays.values()))
    if len(np.unique(everything)) != len(everything):  # an invariant; cheap to check, fatal to get wrong
        raise AssertionError("a recording landed on two sides of the split")
    labels = sorted({r.label for r in dataset.recordings})
    root = getattr(dataset, "root", ".")
    per_class = {}
    for side, idx in arrays.items():
        counts = Counter(dataset.recordings[i].label for i in idx)
        per_class[side] = {label: counts.get(label, 0) for label in labels}
    return Split(
        arrays["train"],
        arrays["val"],
        arrays["test"],
        method=method,
        seed=seed,
        options=options,
        test_sources=[dataset.recordings[i].source for i in arrays["test"]],
        sources_relative={
            side: [relative_source(dataset.recordings[i].source, root) for i in idx] for side, idx in arrays.items()
        },
        per_class=per_class,
    )


def _check_fraction(name: str, value: float, low_open: bool) -> None:
    ok = (0 < value < 1) if low_open else (0 <= value < 1)
    if not ok:
        interval = "(0, 1)" if low_open else "[0, 1)"
        raise SplitError(f"--{name.replace('_', '-')} must be in {interval}, got {value}")


# ------------------------------------------------------------------ the split


def split_recordings(
    dataset: Any,
    *,
    method: str | None = None,
    test_fraction: float | None = DEFAULT_TEST_FRACTION,
    val_fraction: float | None = DEFAULT_VAL_FRACTION,
    test_subjects: Sequence[str] | None = None,
    val_subjects: Sequence[str] | None = None,
    seed: int = DEFAULT_SEED,
) -> Split:
    """Split ``dataset``'s recordings into train / val / test index arrays.

    ``method=None`` picks ``predefined`` for a data set that has one (UCI HAR)
    and ``recording`` otherwise. Fractions are shares of each class's
    recording groups (``test_fraction`` applies to ``recording`` only).
    """
    if method is None:
        method = "predefined" if getattr(dataset, "predefined_split", None) else "recording"
    if method not in METHODS:
        raise SplitError(f"--split {method!r}: unknown; choose one of {', '.join(METHODS)}")
    test_fraction = DEFAULT_TEST_FRACTION if test_fraction is None else float(test_fraction)
    val_fraction = DEFAULT_VAL_FRACTION if val_fraction is None else float(val_fraction)
    _check_fraction("val_fraction", val_fraction, low_open=False)
    if method != "subject" and (test_subjects or val_subjects):
        raise SplitError(f"--test-subjects / --val-subjects need --split subject (not {method})")
    everything = list(range(len(dataset.recordings)))
    if not everything:
        raise SplitError("the data set has no recordings to split")

    if method == "recording":
        _check_fraction("test_fraction", test_fraction, low_open=True)
        if test_fraction + val_fraction >= 1:
            raise SplitError(f"--test-fraction + --val-fraction must be < 1, got {test_fraction + val_fraction:g}")
        train, val, test = _stratified(dataset, everything, test_fraction, val_fraction, seed)
        return _finish(
            dataset,
            train,
            val,
            test,
            method,
            seed,
            {
                "test_fraction": test_fraction,
                "val_fraction": val_fraction,
                "stratified_by": "class",
                "grouped_by": "recording"
                if getattr(dataset, "split_groups", None) is None
                else "recording group (Dataset.split_groups)",
            },
        )
    if method == "subject":
        return _subject_split(dataset, everything, test_subjects, val_subjects, val_fraction, seed)
    return _predefined_split(dataset, everything, val_fraction, seed)


def _subject_split(
    dataset: Any,
    everything: list[int],
    test_subjects: Sequence[str] | None,
    val_subjects: Sequence[str] | None,
    val_fraction: float,
    seed: int,
) -> Split:
    recs = dataset.recordings
    known = sorted({r.subject for r in recs if r.subject})
    if not known:
        raise SplitError(
            "--split subject: the recordings carry no subject ids (give --subject-regex for a folder, "
            "--subject-column for a CSV)"
        )
    if not test_subjects:
        raise SplitError(f"--split subject needs --test-subjects (known subjects: {', '.join(known)})")
    test_set, val_set = set(test_subjects), set(val_subjects or ())
    for flag, chosen in (("--test-subjects", test_subjects), ("--val-subjects", val_subjects or ())):
        unknown = [s for s in chosen if s not in known]
        if unknown:
            raise SplitError(f"{flag}: unknown subject(s) {', '.join(unknown)}; known: {', '.join(known)}")
    overlap = test_set & val_set
    if overlap:
        raise SplitError(f"subject(s) {', '.join(sorted(overlap))} named in both --test-subjects and --val-subjects")
    anonymous = [r.source for r in recs if not r.subject]
    if anonymous:
        log.warning(
            "%d recording(s) have no subject id (e.g. %s); they are used for training/validation only",
            len(anonymous),
            anonymous[0],
        )
    test = [i for i in everything if recs[i].subject in test_set]
    rest = [i for i in everything if recs[i].subject not in test_set]
    if val_set:
        val = [i for i in rest if recs[i].subject in val_set]
        train = [i for i in rest if recs[i].subject not in val_set]
    else:
        train, val, _ = _stratified(dataset, rest, 0.0, val_fraction, seed, strict=False)
    all_labels = sorted({r.label for r in recs})
    missing = [c for c in all_labels if c not in {recs[i].label for i in train}]
    if missing:
        held = ", ".join(sorted(test_set | val_set))
        raise SplitError(
            f"--split subject: no training recordings of class(es) {', '.join(missing)} remain after "
            f"holding out subject(s) {held}; choose other subjects"
        )
    absent = [c for c in all_labels if c not in {recs[i].label for i in test}]
    if absent:
        log.warning(
            "the test subjects (%s) have no recordings of %s; those classes go untested",
            ", ".join(test_subjects),
            ", ".join(absent),
        )
    return _finish(
        dataset,
        train,
        val,
        test,
        "subject",
        seed,
        {
            "test_subjects": list(test_subjects),
            "val_subjects": list(val_subjects or []),
            "val_fraction": None if val_set else val_fraction,
            "train_subjects": sorted({recs[i].subject for i in train if recs[i].subject}),
        },
    )


def _predefined_split(dataset: Any, everything: list[int], val_fraction: float, seed: int) -> Split:
    recs = dataset.recordings
    predefined = getattr(dataset, "predefined_split", None)
    if not predefined:
        raise SplitError(
            f"--split predefined: data set {getattr(dataset, 'name', '?')} has no predefined split "
            "(only UCI HAR has one); use --split recording or subject"
        )
    outside = [recs[i].source for i in everything if predefined.get(recs[i].source) not in ("train", "test")]
    if outside:
        raise SplitError(
            f"--split predefined: {len(outside)} recording(s) are in neither side of the predefined "
            f"split, e.g. {outside[0]}"
        )
    test = [i for i in everything if predefined[recs[i].source] == "test"]
    pool = [i for i in everything if predefined[recs[i].source] == "train"]
    options: dict[str, Any] = {"val_fraction": val_fraction}
    subjects = sorted({recs[i].subject for i in pool if recs[i].subject})
    if val_fraction > 0 and len(subjects) >= 3:
        # Validation by subject, as the test side is: early stopping then sees unseen people too.
        n_val = min(len(subjects) - 1, max(1, int(round(len(subjects) * val_fraction))))
        chosen = sorted(np.random.default_rng(seed).choice(subjects, size=n_val, replace=False).tolist())
        val = [i for i in pool if recs[i].subject in set(chosen)]
        train = [i for i in pool if recs[i].subject not in set(chosen)]
        options.update(val_by="subject", val_subjects=chosen)
    elif val_fraction > 0:
        train, val, _ = _stratified(dataset, pool, 0.0, val_fraction, seed, strict=False)
        options["val_by"] = "recording"
    else:
        train, val = pool, []
    missing = sorted({recs[i].label for i in everything} - {recs[i].label for i in train})
    if missing:
        raise SplitError(f"--split predefined: the training side has no recordings of {', '.join(missing)}")
    return _finish(dataset, train, val, test, "predefined", seed, options)


# ------------------------------------------------------------------ command line


def _names(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",")]
    if not names or not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated subject ids without empty entries, got {text!r}")
    return names


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """--split and its options; also --seed, shared with training where the subcommand trains."""
    g = parser.add_argument_group(
        "split",
        "Whole recordings (or subjects) go to one side, never single windows: overlapping windows of one "
        "recording on both sides would measure memory, not recognition.",
    )
    g.add_argument(
        "--split",
        type=str,
        default=None,
        choices=METHODS,
        help="recording: per class, recordings shuffled with --seed and cut by the fractions (default); "
        "subject: --test-subjects form the test split (subject-independent evaluation); "
        "predefined: the data set's own train/test partition (UCI HAR, where it is the default)",
    )
    g.add_argument(
        "--test-subjects",
        type=_names,
        default=None,
        metavar="ID,...",
        help="subject ids held out for testing (implies --split subject); the error lists the known ids",
    )
    g.add_argument(
        "--val-subjects",
        type=_names,
        default=None,
        metavar="ID,...",
        help="--split subject: subject ids for validation (default: --val-fraction of the other subjects' recordings)",
    )
    g.add_argument(
        "--test-fraction",
        type=_fraction,
        default=None,
        metavar="F",
        help=f"--split recording: share of each class's recordings for testing (default {DEFAULT_TEST_FRACTION})",
    )
    g.add_argument(
        "--val-fraction",
        type=_fraction,
        default=None,
        metavar="F",
        help="share of each class's remaining recordings for validation / early stopping; 0 for none "
        f"(default {DEFAULT_VAL_FRACTION})",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="random seed of the split (and, in convert, of weight initialisation, shuffling and "
        "calibration) (default: %(default)s)",
    )


def split_from_args(args: argparse.Namespace, dataset: Any) -> Split:
    """The split the options of ``add_split_arguments`` ask for; bad combinations are a SplitError."""
    method = args.split
    if method is None and (args.test_subjects or args.val_subjects):
        method = "subject"
    if method is None:
        method = "predefined" if getattr(dataset, "predefined_split", None) else "recording"
    if method != "recording" and args.test_fraction is not None:
        what = "the --test-subjects" if method == "subject" else "the data set's own test side"
        raise SplitError(f"--test-fraction does not apply to --split {method}: the test split is {what}")
    return split_recordings(
        dataset,
        method=method,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        test_subjects=args.test_subjects,
        val_subjects=args.val_subjects,
        seed=args.seed,
    )
