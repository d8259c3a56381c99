"""edge_har.convert.splits: whole recordings (or subjects, or recording groups) to one side, never windows."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pytest

from edge_har.convert.datasets import Dataset, make_window_set
from edge_har.convert.splits import SplitError, add_split_arguments, split_from_args, split_recordings
from edge_har.core.preprocessing import Preprocessing
from edge_har.core.recordings import Recording

ROOT = Path("/data/set")


def dataset(counts: dict[str, int], subjects=("f1", "m2", "m3"), n: int = 40, **extra) -> Dataset:
    """In-memory recordings: ``counts`` per class, subjects round-robin; sample value = recording index."""
    recs = []
    for label, count in counts.items():
        for k in range(count):
            i = len(recs)
            samples = np.full((n, 2), i, np.float32)
            recs.append(
                Recording(
                    samples,
                    label,
                    str(ROOT / label / f"r{k:02d}-{subjects[k % len(subjects)]}.txt"),
                    subjects[k % len(subjects)],
                    None,
                )
            )
    return Dataset("mem", ROOT, recs, sorted(counts), ("a", "b"), 10.0, **extra)


def sides(split) -> list[set[int]]:
    return [set(split.train.tolist()), set(split.val.tolist()), set(split.test.tolist())]


def assert_partition(split, n: int) -> None:
    train, val, test = sides(split)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(n))


# ------------------------------------------------------------------ by recording


def test_recording_split_is_a_stratified_partition():
    ds = dataset({"A": 20, "B": 10, "C": 3})
    split = split_recordings(ds)
    assert split.method == "recording" and split.seed == 42
    assert_partition(split, 33)
    for side in sides(split):
        assert {ds.recordings[i].label for i in side} == {"A", "B", "C"}
    per_class = split.describe()["recordings_per_class"]
    assert per_class["test"] == {"A": 4, "B": 2, "C": 1}  # round(0.2 n), at least one
    assert per_class["val"] == {"A": 3, "B": 2, "C": 1}  # round(0.15 n), at least one
    assert per_class["train"] == {"A": 13, "B": 6, "C": 1}


def test_windows_of_one_recording_never_land_on_two_sides():
    ds = dataset({"A": 8, "B": 6}, n=100)
    split = split_recordings(ds, seed=7)
    pre = Preprocessing(10.0, 20, 5, ("a", "b"))
    seen = {}
    for name, idx in (("train", split.train), ("val", split.val), ("test", split.test)):
        ws = make_window_set(ds, pre, recording_indices=idx)
        assert set(ws.groups.tolist()) == set(idx.tolist())
        np.testing.assert_array_equal(ws.x[:, 0, 0], ws.groups)  # each window's values are its recording's
        for g in set(ws.groups.tolist()):
            assert seen.setdefault(g, name) == name


def test_same_seed_same_split_other_seed_other_split():
    ds = dataset({"A": 12, "B": 9})
    first = split_recordings(ds, seed=3)
    again = split_recordings(ds, seed=3)
    for a, b in zip(sides(first), sides(again)):
        assert a == b
    assert any(a != b for a, b in zip(sides(first), sides(split_recordings(ds, seed=4))))


def test_a_class_is_shuffled_on_its_own():
    """Adding a class does not move the recordings of the others."""
    small = dataset({"A": 10, "B": 10})
    large = dataset({"A": 10, "B": 10, "C": 5})
    a, b = split_recordings(small, seed=1), split_recordings(large, seed=1)
    for side in ("train", "val", "test"):
        assert set(getattr(a, side).tolist()) <= set(getattr(b, side).tolist())


def test_describe_lets_a_bundle_recreate_the_test_split():
    ds = dataset({"A": 5, "B": 5})
    info = split_recordings(ds, test_fraction=0.4, val_fraction=0.2, seed=9).describe()
    assert info["method"] == "recording" and info["seed"] == 9
    assert info["test_fraction"] == 0.4 and info["val_fraction"] == 0.2 and info["stratified_by"] == "class"
    assert info["recordings"] == {"train": 4, "val": 2, "test": 4}
    test = [i for i, r in enumerate(ds.recordings) if r.source in set(info["test_sources"])]
    assert len(test) == 4
    assert info["test_sources_relative"] == [str(Path(s).relative_to(ROOT)) for s in info["test_sources"]]
    assert len(info["train_sources_relative"]) == 4 and info["train_sources_relative"][0].startswith(("A/", "B/"))


def test_class_with_too_few_recordings_is_named():
    ds = dataset({"A": 5, "Rare": 2})
    with pytest.raises(
        SplitError,
        match=r"class 'Rare' has 2 recording\(s\); a split into train/validation/test needs "
        r"at least 3, one per side.*--val-fraction 0",
    ):
        split_recordings(ds)
    split = split_recordings(ds, val_fraction=0.0)
    assert len(split.val) == 0 and {ds.recordings[i].label for i in split.test} == {"A", "Rare"}
    with pytest.raises(
        SplitError, match=r"class 'Lone' has 1 recording\(s\); a split into train/test needs at least 2"
    ):
        split_recordings(dataset({"A": 5, "Lone": 1}), val_fraction=0.0)


def test_small_classes_keep_one_recording_for_training():
    ds = dataset({"A": 3, "B": 4})
    split = split_recordings(ds, test_fraction=0.5, val_fraction=0.4)
    per_class = split.describe()["recordings_per_class"]
    assert all(per_class["train"][c] >= 1 and per_class["test"][c] >= 1 and per_class["val"][c] >= 1 for c in "AB")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"test_fraction": 0.0}, r"--test-fraction must be in \(0, 1\)"),
        ({"test_fraction": 1.0}, r"--test-fraction must be in \(0, 1\)"),
        ({"val_fraction": -0.1}, r"--val-fraction must be in \[0, 1\)"),
        ({"test_fraction": 0.6, "val_fraction": 0.5}, r"must be < 1, got 1.1"),
        ({"method": "random"}, r"--split 'random': unknown; choose one of recording, subject, predefined"),
        ({"test_subjects": ["f1"]}, r"--test-subjects / --val-subjects need --split subject"),
    ],
)
def test_bad_split_options(kwargs, message):
    with pytest.raises(SplitError, match=message):
        split_recordings(dataset({"A": 6}), **kwargs)


def test_split_groups_stay_together():
    """Recordings of one group (overlapping windows of one run, a model trial and its source) share a side."""
    ds = dataset({"A": 12, "B": 12})
    ds.split_groups = [f"{r.label}-{k // 3}" for k, r in enumerate(ds.recordings)]  # 4 groups of 3 per class
    for seed in range(5):
        split = split_recordings(ds, seed=seed)
        assert_partition(split, 24)
        group_sets = [{ds.split_groups[i] for i in side} for side in sides(split)]
        for k, groups in enumerate(group_sets):
            assert all(groups.isdisjoint(other) for j, other in enumerate(group_sets) if j != k)
        assert split.describe()["grouped_by"].startswith("recording group")
    ds.split_groups = [r.label for r in ds.recordings]  # one group per class: nothing to split
    with pytest.raises(SplitError, match=r"class 'A' has 1 independent group\(s\) of recordings \(12 recordings\)"):
        split_recordings(ds)


# ------------------------------------------------------------------ by subject


def test_subject_split_holds_out_the_test_subjects():
    ds = dataset({"A": 9, "B": 9})
    split = split_recordings(ds, method="subject", test_subjects=["m3"])
    assert_partition(split, 18)
    assert {ds.recordings[i].subject for i in split.test} == {"m3"}
    assert "m3" not in {ds.recordings[i].subject for i in np.concatenate([split.train, split.val])}
    assert len(split.val) > 0  # drawn by recording from f1 and m2
    info = split.describe()
    assert info["test_subjects"] == ["m3"] and info["train_subjects"] == ["f1", "m2"]
    by_subject = split_recordings(ds, method="subject", test_subjects=["m3"], val_subjects=["m2"])
    assert {ds.recordings[i].subject for i in by_subject.val} == {"m2"}
    assert {ds.recordings[i].subject for i in by_subject.train} == {"f1"}


def test_subject_split_errors_list_what_is_known():
    ds = dataset({"A": 6, "B": 6})
    with pytest.raises(SplitError, match=r"--test-subjects: unknown subject\(s\) zz; known: f1, m2, m3"):
        split_recordings(ds, method="subject", test_subjects=["zz"])
    with pytest.raises(SplitError, match=r"--val-subjects: unknown subject\(s\) q; known: f1, m2, m3"):
        split_recordings(ds, method="subject", test_subjects=["f1"], val_subjects=["q"])
    with pytest.raises(SplitError, match=r"needs --test-subjects \(known subjects: f1, m2, m3\)"):
        split_recordings(ds, method="subject")
    with pytest.raises(SplitError, match=r"subject\(s\) f1 named in both"):
        split_recordings(ds, method="subject", test_subjects=["f1"], val_subjects=["f1"])
    with pytest.raises(SplitError, match=r"no training recordings of class\(es\) A, B remain after holding out"):
        split_recordings(ds, method="subject", test_subjects=["f1", "m2"], val_subjects=["m3"])
    for r in ds.recordings:
        r.subject = None
    with pytest.raises(SplitError, match=r"carry no subject ids \(give --subject-regex"):
        split_recordings(ds, method="subject", test_subjects=["f1"])


def test_subject_split_warns_about_untested_classes_and_anonymous_recordings(caplog):
    ds = dataset({"A": 6, "B": 2})  # B only by f1 and m2
    ds.recordings[0].subject = None
    with caplog.at_level(logging.WARNING, logger="edge_har.convert.splits"):
        split = split_recordings(ds, method="subject", test_subjects=["m3"])
    assert {ds.recordings[i].label for i in split.test} == {"A"}
    assert "have no recordings of B" in caplog.text and "1 recording(s) have no subject id" in caplog.text
    assert 0 in set(split.train.tolist()) | set(split.val.tolist())


# ------------------------------------------------------------------ predefined


def predefined_dataset(train_subjects=("s1", "s3", "s5", "s6"), test_subjects=("s2", "s4")) -> Dataset:
    recs, split, groups = [], {}, []
    for side, subjects in (("train", train_subjects), ("test", test_subjects)):
        for s in subjects:
            for label in ("WALKING", "SITTING"):
                for w in range(3):  # three overlapping windows of one run
                    source = f"{ROOT}/{side}/Inertial Signals:line {len(recs) + 1}"
                    recs.append(Recording(np.zeros((128, 2), np.float32), label, source, s, 50.0))
                    split[source] = side
                    groups.append(f"{side}:{s}:{label}")
    return Dataset(
        "uci-har",
        ROOT,
        recs,
        ["SITTING", "WALKING"],
        ("a", "b"),
        50.0,
        native_window=128,
        predefined_split=split,
        split_groups=groups,
    )


def test_predefined_split_is_the_default_where_there_is_one():
    ds = predefined_dataset()
    split = split_recordings(ds)
    assert split.method == "predefined"
    assert {ds.recordings[i].subject for i in split.test} == {"s2", "s4"}
    val_subjects = {ds.recordings[i].subject for i in split.val}
    assert len(val_subjects) == 1 and val_subjects.isdisjoint({ds.recordings[i].subject for i in split.train})
    assert split.describe()["val_by"] == "subject" and split.describe()["val_subjects"] == sorted(val_subjects)
    assert_partition(split, len(ds.recordings))
    assert len(split_recordings(ds, val_fraction=0.0).val) == 0


def test_predefined_with_few_subjects_draws_validation_by_group():
    ds = predefined_dataset(train_subjects=("s1", "s3"))
    split = split_recordings(ds, method="predefined", val_fraction=0.3)
    assert split.describe()["val_by"] == "recording"
    groups_val = {ds.split_groups[i] for i in split.val}
    assert groups_val and groups_val.isdisjoint({ds.split_groups[i] for i in split.train})


def test_predefined_needs_a_predefined_split():
    with pytest.raises(SplitError, match=r"data set mem has no predefined split .* use --split recording or subject"):
        split_recordings(dataset({"A": 5}), method="predefined")


# ------------------------------------------------------------------ command line


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_split_arguments(p)
    return p.parse_args(argv)


def test_cli_defaults_and_subject_shortcut():
    ds = dataset({"A": 9, "B": 9})
    assert split_from_args(parse([]), ds).method == "recording"
    split = split_from_args(parse(["--test-subjects", "m3,f1", "--val-fraction", "0.3", "--seed", "5"]), ds)
    assert split.method == "subject" and split.seed == 5
    assert {ds.recordings[i].subject for i in split.test} == {"m3", "f1"}
    assert split_from_args(parse([]), predefined_dataset()).method == "predefined"


def test_cli_bad_combinations(capsys):
    ds = dataset({"A": 9, "B": 9})
    with pytest.raises(SplitError, match=r"--test-fraction does not apply to --split subject"):
        split_from_args(parse(["--test-subjects", "f1", "--test-fraction", "0.3"]), ds)
    with pytest.raises(SplitError, match=r"--test-subjects / --val-subjects need --split subject \(not recording\)"):
        split_from_args(parse(["--split", "recording", "--test-subjects", "f1"]), ds)
    for argv, message in [
        (["--test-fraction", "1.5"], "expected a fraction in [0, 1)"),
        (["--val-fraction", "x"], "expected a fraction between 0 and 1"),
        (["--split", "random"], "invalid choice"),
        (["--test-subjects", "a,,b"], "without empty entries"),
    ]:
        with pytest.raises(SystemExit):
            parse(argv)
        assert message in capsys.readouterr().err
