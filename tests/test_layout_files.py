"""Labels from file names (--name-regex), the long CSV's trial column, and warnings about folder shapes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_har.convert.datasets import DatasetError, detect_format, load_dataset
from edge_har.convert.splits import split_recordings


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def samples(n: int, first: int) -> str:
    return "".join(f"{first + i},{i},0\n" for i in range(n))


def per_subject(root: Path) -> Path:
    """One folder per subject, the activity and the trial in each file name; a README among them."""
    k = 0
    for subject in ("s1", "s2", "s3"):
        for label in ("walk", "sit"):
            for trial in (1, 2):
                write(root / subject / f"{label}_{trial}.csv", samples(20, 100 * k))
                k += 1
    write(root / "s1" / "notes.txt", "recorded on a Tuesday\n")
    return root


REGEX = r"(?P<subject>s\d+)/(?P<label>[a-z]+)_(?P<trial>\d+)\.csv$"


def test_labels_subjects_and_trials_from_the_path(tmp_path, caplog):
    root = per_subject(tmp_path)
    caplog.set_level(logging.WARNING)
    ds = load_dataset(root, name_regex=REGEX, sample_rate_hz=10.0)
    assert ds.format == "names"
    assert ds.labels == ["sit", "walk"]
    assert len(ds.recordings) == 12
    assert {r.subject for r in ds.recordings} == {"s1", "s2", "s3"}
    walk1 = next(r for r in ds.recordings if r.source.endswith("s2/walk_1.csv"))
    assert (walk1.label, walk1.subject, walk1.samples[0].tolist()) == ("walk", "s2", [400, 0, 0])
    assert "matches 12 of 13 file path(s); left out, e.g. s1/notes.txt" in caplog.text
    split = split_recordings(ds, method="subject", test_subjects=["s3"], seed=0, val_fraction=0)
    assert {ds.recordings[i].subject for i in split.test} == {"s3"}


def test_a_trial_cut_into_files_stays_on_one_side(tmp_path):
    for part in ("a", "b"):
        for trial in (1, 2, 3, 4):
            for label in ("walk", "sit"):
                write(tmp_path / "s1" / f"{label}_{trial}{part}.csv", samples(20, 0))
    ds = load_dataset(tmp_path, name_regex=r"(?P<label>[a-z]+)_(?P<trial>\d+)[ab]\.csv$", sample_rate_hz=10.0)
    assert ds.split_groups is not None and len(set(ds.split_groups)) == 8
    split = split_recordings(ds, method="recording", seed=0, test_fraction=0.25, val_fraction=0.25)
    sides = {}
    for side in ("train", "val", "test"):
        for i in getattr(split, side):
            sides.setdefault(ds.split_groups[i], set()).add(side)
    assert all(len(s) == 1 for s in sides.values())


@pytest.mark.parametrize(
    ("regex", "message"),
    [
        (r"(?P<subject>s\d+)/", r"has no \(\?P<label>\.\.\.\) group"),
        (r"(?P<label>[a-z]+)_(?P<take>\d)", r"unknown named group\(s\) take"),
        (r"(?P<label>[", r"is not a valid regular expression"),
        (r"(?P<label>zzz)", r"matches none of the 13 file path\(s\), e.g. 's1/notes.txt'"),
    ],
)
def test_bad_name_regex(tmp_path, regex, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(per_subject(tmp_path), name_regex=regex, sample_rate_hz=10.0)


def test_name_regex_needs_a_rate_and_a_bad_line_names_its_file(tmp_path):
    root = per_subject(tmp_path)
    with pytest.raises(DatasetError, match="labels from file names need --sample-rate"):
        load_dataset(root, name_regex=REGEX)
    write(root / "s2" / "sit_2.csv", "1,2,3\n4,x,6\n")
    with pytest.raises(DatasetError, match=r"s2/sit_2\.csv:2: text 'x'"):
        load_dataset(root, name_regex=REGEX, sample_rate_hz=10.0)


# ------------------------------------------------------------------ long CSV: a trial column


def long_csv(path: Path) -> Path:
    rows = ["t,trial,user,activity,ax,ay"]
    for trial in (1, 2):  # two back-to-back trials of one activity and user
        rows += [f"{i / 10},{trial},u1,walk,{trial},{i}" for i in range(10)]
    rows += [f"{i / 10},3,u1,sit,3,{i}" for i in range(10)]
    return write(path, "\n".join(rows) + "\n")


def test_a_trial_column_keeps_back_to_back_trials_apart(tmp_path):
    path = long_csv(tmp_path / "log.csv")
    merged = load_dataset(path, label_col="activity", subject_col="user", sample_rate_hz=10.0, channels=("ax", "ay"))
    assert [len(r) for r in merged.recordings] == [20, 10]  # without it: trials 1 and 2 are one recording
    ds = load_dataset(
        path, label_col="activity", subject_col="user", trial_col="trial", sample_rate_hz=10.0, channels=("ax", "ay")
    )
    assert [(r.label, len(r), int(r.samples[0, 0])) for r in ds.recordings] == [
        ("walk", 10, 1),
        ("walk", 10, 2),
        ("sit", 10, 3),
    ]
    assert [r.source.rsplit(":", 1)[1] for r in ds.recordings] == ["rows 2-11", "rows 12-21", "rows 22-31"]
    with pytest.raises(DatasetError, match="no trial column 'run'; the header has t, trial, user"):
        load_dataset(path, label_col="activity", trial_col="run", sample_rate_hz=10.0)


def test_the_trial_column_is_not_a_channel(tmp_path):
    ds = load_dataset(long_csv(tmp_path / "log.csv"), label_col="activity", trial_col="trial", timestamp_col="t")
    assert ds.channels == ("ax", "ay")
    assert ds.sample_rate_hz == pytest.approx(10.0)


# ------------------------------------------------------------------ warnings about the folder's shape


def test_class_folders_named_like_subjects_are_warned_about(tmp_path, caplog):
    for subject in ("s01", "s02", "subject_3"):
        write(tmp_path / subject / "walk_1.csv", samples(20, 0))
        write(tmp_path / subject / "sit_1.csv", samples(20, 0))
    caplog.set_level(logging.WARNING)
    ds = load_dataset(tmp_path, sample_rate_hz=10.0)
    assert ds.labels == ["s01", "s02", "subject_3"]  # still loaded, as asked, but:
    assert "3 of 3 class folder name(s) look like subject ids (s01, s02, subject_3)" in caplog.text
    assert "--name-regex" in caplog.text


def test_class_folders_holding_sub_folders_are_warned_about(tmp_path, caplog):
    write(tmp_path / "walk" / "r1.txt", samples(20, 0))
    write(tmp_path / "sit" / "r1.txt", samples(20, 0))
    write(tmp_path / "sit" / "s1" / "r2.txt", samples(20, 0))
    caplog.set_level(logging.WARNING)
    load_dataset(tmp_path, sample_rate_hz=10.0)
    assert "1 class folder(s) hold sub-folders (e.g. sit/: s1) whose files are not read" in caplog.text


def test_activity_folders_raise_no_warning(tmp_path, caplog):
    for label in ("Walk", "Sit", "Climb_stairs", "Drink_glass"):
        write(tmp_path / label / "r1.txt", samples(20, 0))
    caplog.set_level(logging.WARNING)
    assert detect_format(tmp_path) == "folder"
    load_dataset(tmp_path, sample_rate_hz=10.0)
    assert "look like subject ids" not in caplog.text and "sub-folders" not in caplog.text
