"""Loaders, windows and splits on small files the tests write (never the shared data sets)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from convert.datasets import (
    DatasetError,
    add_dataset_arguments,
    dataset_from_args,
    load_dataset,
    load_long_csv,
    load_uci_har,
    make_window_set,
    parse_duration,
)
from convert.splits import SplitError, split_recordings
from edge_har.preprocessing import Preprocessing
from edge_har.recordings import RecordingError, load_folder_recordings, read_samples, read_samples_result


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def hmp_like(root: Path, classes: dict[str, int], n: int = 60, subjects=("f1", "m2", "m3")) -> Path:
    rng = np.random.default_rng(0)
    for c, (label, count) in enumerate(classes.items()):
        for k in range(count):
            rows = rng.integers(0, 64, size=(n, 3))
            rows[:, 0] = 10 + c  # a class signature, so windows are traceable
            subj = subjects[k % len(subjects)]
            body = "\n".join(" ".join(map(str, r)) for r in rows)
            write(root / label / f"Accelerometer-2011-03-24-10-{k:02d}-00-{label.lower()}-{subj}.txt", body + "\n")
    return root


@pytest.mark.parametrize("sep", [" ", ",", ";", "\t", " , "])
def test_read_samples_any_separator(tmp_path, sep):
    f = write(tmp_path / "r.txt", f"1{sep}2{sep}3\n4{sep}5{sep}6\n")
    assert read_samples(f).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_read_samples_header_is_skipped(tmp_path):
    f = write(tmp_path / "r.csv", "ax,ay,az\n1,2,3\n")
    assert read_samples(f).shape == (1, 3)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("1 2 3\n4 5\n", r"r\.txt:2: 2 columns where the file has 3"),
        ("1 2 3\n4 x 6\n", r"r\.txt:2: text 'x' in a number column"),
        ("1 2 3\n4 nan 6\n", r"r\.txt:2: a non-finite value"),
        ("\n\n", r"r\.txt: no numeric samples"),
    ],
)
def test_read_samples_bad_lines_name_file_and_line(tmp_path, body, expected):
    f = write(tmp_path / "r.txt", body)
    with pytest.raises(RecordingError, match=expected):
        read_samples(f)


def test_skip_bad_counts_and_keeps_the_rest(tmp_path):
    f = write(tmp_path / "r.txt", "1 2 3\n4 x 6\n7 8\n9 9 9\n")
    res = read_samples_result(f, skip_bad=True)
    assert res.skipped == 2
    assert res.samples.tolist() == [[1, 2, 3], [9, 9, 9]]


def test_folder_loader_classes_subjects_and_model_trials(tmp_path):
    root = hmp_like(tmp_path / "d", {"Walk": 3, "Sit": 2})
    write(root / "Walk_MODEL" / "Accelerometer-2011-03-24-10-00-00-walk-m9.txt", "1 2 3\n" * 10)
    recs = load_folder_recordings(root, subject_regex=r"-([fm]\d+)\.txt$")
    assert sorted({r.label for r in recs}) == ["Sit", "Walk"] and len(recs) == 5
    assert {r.subject for r in recs} == {"f1", "m2", "m3"}
    with_model = load_folder_recordings(root, include_model=True)
    assert len(with_model) == 6 and sum(r.label == "Walk" for r in with_model) == 4


def test_empty_class_folder_is_named(tmp_path):
    root = hmp_like(tmp_path / "d", {"Walk": 2})
    (root / "Sit").mkdir()
    with pytest.raises(DatasetError, match=r"Sit: empty class folder"):
        load_dataset(root)


def test_hmp_autodetect_scaling_and_hash(tmp_path):
    root = hmp_like(tmp_path / "d", {"Walk": 3, "Sit": 3})
    ds = load_dataset(root)
    assert ds.format == "hmp" and ds.sample_rate_hz == 32.0 and ds.channels == ("x", "y", "z")
    assert ds.scale[0] * 63 + ds.offset[0] == pytest.approx(1.5)
    first = ds.file_list_sha256
    write(root / "Sit" / "Accelerometer-2011-03-24-11-00-00-sit-f1.txt", "1 2 3\n" * 70)
    assert load_dataset(root).file_list_sha256 != first


def test_plain_folder_needs_a_rate(tmp_path):
    root = tmp_path / "d"
    write(root / "A" / "one.txt", "1 2\n" * 5)
    with pytest.raises(DatasetError, match="--sample-rate"):
        load_dataset(root)
    ds = load_dataset(root, sample_rate_hz=20.0, channels=("u", "v"))
    assert ds.format == "folder" and ds.channels == ("u", "v")
    with pytest.raises(DatasetError, match="2 columns"):
        load_dataset(root, sample_rate_hz=20.0, channels=("u", "v", "w"))


def test_long_csv_groups_consecutive_label_subject_rows(tmp_path):
    rows = ["t,label,subject,ax,ay"]
    t = 0.0
    for label, subj, n in [("walk", "a", 5), ("sit", "a", 4), ("walk", "a", 3), ("walk", "b", 2)]:
        for _ in range(n):
            rows.append(f"{t:.3f},{label},{subj},1.0,2.0")
            t += 0.02
    f = write(tmp_path / "long.csv", "\n".join(rows) + "\n")
    ds = load_long_csv(f, label_col="label", subject_col="subject", timestamp_col="t")
    assert [(r.label, r.subject, len(r)) for r in ds.recordings] == [("walk", "a", 5), ("sit", "a", 4), ("walk", "a", 3), ("walk", "b", 2)]
    assert ds.sample_rate_hz == pytest.approx(50.0, rel=1e-3)
    assert ds.channels == ("ax", "ay")
    assert ds.recordings[0].source.endswith("long.csv:rows 2-6")


def test_long_csv_errors_name_column_and_line(tmp_path):
    f = write(tmp_path / "long.csv", "label,ax\nwalk,1\nwalk,oops\n")
    with pytest.raises(DatasetError, match=r"long\.csv:3: text in a number column"):
        load_long_csv(f, label_col="label", sample_rate_hz=10)
    with pytest.raises(DatasetError, match=r"no label column 'activity'; the header has label, ax"):
        load_long_csv(f, label_col="activity", sample_rate_hz=10)
    ds = load_long_csv(f, label_col="label", sample_rate_hz=10, skip_bad=True)
    assert len(ds.recordings[0]) == 1 and sum(ds.skipped.values()) == 1


def make_uci_har(root: Path, n_train: int = 6, n_test: int = 4) -> Path:
    base = root / "UCI HAR Dataset"
    write(base / "activity_labels.txt", "1 WALKING\n2 SITTING\n")
    rng = np.random.default_rng(1)
    for side, n, subj in (("train", n_train, (1, 3)), ("test", n_test, (2,))):
        for sig in ("body_acc", "body_gyro", "total_acc"):
            for ax in "xyz":
                data = rng.normal(size=(n, 128))
                write(base / side / "Inertial Signals" / f"{sig}_{ax}_{side}.txt",
                      "\n".join("  " + " ".join(f"{v:.7e}" for v in row) for row in data) + "\n")
        write(base / side / f"y_{side}.txt", "\n".join(str(1 + i % 2) for i in range(n)) + "\n")
        write(base / side / f"subject_{side}.txt", "\n".join(str(subj[i % len(subj)]) for i in range(n)) + "\n")
    return root


def test_uci_har_layout(tmp_path):
    ds = load_dataset(make_uci_har(tmp_path))
    assert ds.format == "uci-har" and ds.labels == ["SITTING", "WALKING"] and ds.native_window == 128
    assert len(ds.channels) == 9 and ds.recordings[0].samples.shape == (128, 9)
    split = split_recordings(ds, val_fraction=0.0)
    assert split.method == "predefined" and len(split.test) == 4 and len(split.train) == 6
    assert {ds.recordings[i].subject for i in split.test} == {"s2"}


def test_uci_har_bad_row_count_is_named(tmp_path):
    root = make_uci_har(tmp_path)
    write(root / "UCI HAR Dataset" / "test" / "y_test.txt", "1\n2\n")
    with pytest.raises(DatasetError, match="differ in row count"):
        load_uci_har(root)


@pytest.mark.parametrize("text, rate, expected", [("96", 32, 96), ("3s", 32, 96), ("0.5s", 32, 16), ("500ms", 50, 25), ("2.56s", 50, 128)])
def test_parse_duration(text, rate, expected):
    assert parse_duration(text, rate) == expected


@pytest.mark.parametrize("text", ["3 minutes", "-1", "1.5", "0ms"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text, 32)


def pre32(window=16, stride=8, rate=32.0):
    return Preprocessing(rate, window, stride, ("x", "y", "z"), (3 / 63,), (-1.5,))


def test_windows_counts_labels_groups_and_resampling(tmp_path):
    ds = load_dataset(hmp_like(tmp_path / "d", {"Walk": 2, "Sit": 2}, n=40))
    ws = make_window_set(ds, pre32())
    assert ws.x.shape == (4 * 4, 16, 3)  # (40 - 16) // 8 + 1 = 4 per recording
    for g in np.unique(ws.groups):
        assert set(ws.y[ws.groups == g]) == {ds.labels.index(ds.recordings[g].label)}
    # scaled, not normalised: column 0 held 10 + class index
    assert np.allclose(ws.x[ws.y == ds.labels.index("Walk")][:, :, 0], -1.5 + (10 + 0) * 3 / 63)
    halved = make_window_set(ds, pre32(rate=16.0))
    assert halved.x.shape[0] == 4 * ((20 - 16) // 8 + 1)


def test_short_recording_is_an_error_or_skipped(tmp_path):
    root = hmp_like(tmp_path / "d", {"Walk": 2}, n=40)
    write(root / "Walk" / "Accelerometer-2011-03-24-12-00-00-walk-f1.txt", "1 2 3\n" * 5)
    ds = load_dataset(root)
    with pytest.raises(RecordingError, match=r"12-00-00-walk-f1\.txt: 5 samples, shorter than one window"):
        make_window_set(ds, pre32())
    assert len(make_window_set(ds, pre32(), skip_short=True).x) == 8


def test_recording_split_is_grouped_stratified_and_seeded(tmp_path):
    ds = load_dataset(hmp_like(tmp_path / "d", {"A": 10, "B": 7, "C": 3}))
    s = split_recordings(ds, seed=3)
    sides = [set(s.train), set(s.val), set(s.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert set().union(*sides) == set(range(len(ds.recordings)))
    for side in (s.train, s.val, s.test):
        assert {ds.recordings[i].label for i in side} == {"A", "B", "C"}
    again = split_recordings(ds, seed=3)
    assert again.test.tolist() == s.test.tolist()
    assert split_recordings(ds, seed=4).test.tolist() != s.test.tolist()
    assert s.describe()["test_sources"] == [ds.recordings[i].source for i in s.test]


def test_class_with_too_few_recordings_is_named(tmp_path):
    ds = load_dataset(hmp_like(tmp_path / "d", {"A": 5, "Rare": 2}))
    with pytest.raises(SplitError, match=r"class 'Rare' has 2 recording\(s\)"):
        split_recordings(ds)
    assert len(split_recordings(ds, val_fraction=0).test) >= 2


def test_subject_split(tmp_path):
    ds = load_dataset(hmp_like(tmp_path / "d", {"A": 6, "B": 6}))
    s = split_recordings(ds, method="subject", test_subjects=["m3"])
    assert {ds.recordings[i].subject for i in s.test} == {"m3"}
    assert "m3" not in {ds.recordings[i].subject for i in np.concatenate([s.train, s.val])}
    with pytest.raises(SplitError, match=r"unknown subject\(s\) zz; known: f1, m2, m3"):
        split_recordings(ds, method="subject", test_subjects=["zz"])


def test_cli_arguments_round_trip(tmp_path):
    root = hmp_like(tmp_path / "d", {"A": 3})
    parser = argparse.ArgumentParser()
    add_dataset_arguments(parser)
    ds = dataset_from_args(parser.parse_args(["--data", str(root), "--skip-bad"]))
    assert ds.format == "hmp" and len(ds.recordings) == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", str(root), "--scale", "a,b"])
