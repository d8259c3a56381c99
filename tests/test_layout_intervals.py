"""Interval labels (edge_har.convert.intervals): recordings plus a file of labelled segments, and the HAPT preset.

The files are written here in miniature (never the shared HAPT set): each
sample's first column holds its row number, so a test can tell exactly which
rows a segment became.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from edge_har.convert.datasets import (
    DatasetError,
    add_dataset_arguments,
    dataset_from_args,
    detect_format,
    load_dataset,
    make_window_set,
)
from edge_har.convert.intervals import UCI_HAR_TEST_SUBJECTS, load_hapt, read_annotations
from edge_har.convert.splits import split_recordings
from edge_har.core.preprocessing import Preprocessing


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def rows_file(path: Path, n: int, width: int = 3, base: float = 0.0) -> Path:
    """n rows; column 0 = the row's 1-based line number, the others base + column."""
    lines = [" ".join([str(i + 1)] + [f"{base + c:g}" for c in range(1, width)]) for i in range(n)]
    return write(path, "\n".join(lines) + "\n")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_dataset_arguments(p)
    return p


# ------------------------------------------------------------------ generic interval labels


def test_segments_with_gaps_become_recordings_and_the_gaps_are_left_out(tmp_path):
    rows_file(tmp_path / "r1.txt", 100)
    rows_file(tmp_path / "r2.txt", 60)
    ann = write(
        tmp_path / "labels.csv",
        "recording,label,start,end,subject\nr1.txt,walk,0,39,u1\nr1.txt,sit,60,99,u1\nr2.txt,walk,10,49,u2\n",
    )
    ds = load_dataset(tmp_path, annotations=ann, sample_rate_hz=10.0)
    assert ds.format == "intervals"
    assert ds.labels == ["sit", "walk"]
    got = [(r.label, r.subject, int(r.samples[0, 0]), int(r.samples[-1, 0])) for r in ds.recordings]
    # file lines are 1-based, the annotation's indices 0-based and inclusive
    assert got == [("walk", "u1", 1, 40), ("sit", "u1", 61, 100), ("walk", "u2", 11, 50)]
    assert ds.recordings[0].source.endswith("r1.txt:rows 1-40")
    assert len({r.source for r in ds.recordings}) == 3


def test_unlabelled_stretches_become_a_class_when_asked(tmp_path):
    rows_file(tmp_path / "r1.txt", 100)
    ann = write(tmp_path / "labels.csv", "file,activity,start,end\nr1.txt,walk,10,39\nr1.txt,sit,60,79\n")
    ds = load_dataset(tmp_path, annotations=ann, sample_rate_hz=10.0, unlabelled_class="other")
    spans = [(r.label, int(r.samples[0, 0]), int(r.samples[-1, 0])) for r in ds.recordings]
    assert spans == [("other", 1, 10), ("walk", 11, 40), ("other", 41, 60), ("sit", 61, 80), ("other", 81, 100)]
    assert sum(len(r) for r in ds.recordings) == 100


def test_seconds_bounds_are_half_open(tmp_path):
    rows_file(tmp_path / "r1.txt", 100)
    ann = write(tmp_path / "labels.csv", "recording,label,start,end\nr1.txt,walk,1.0,3.5\n")
    ds = load_dataset(tmp_path, annotations=ann, sample_rate_hz=10.0, interval_units="seconds")
    (rec,) = ds.recordings
    assert (int(rec.samples[0, 0]), int(rec.samples[-1, 0])) == (11, 35)  # t = 1.0 .. 3.4 s


def test_overlaps_of_one_label_merge_of_two_labels_fail_naming_both_lines_or_drop(tmp_path):
    rows_file(tmp_path / "r1.txt", 100)
    same = write(tmp_path / "same.csv", "recording,label,start,end\nr1.txt,walk,0,49\nr1.txt,walk,40,69\n")
    (rec,) = load_dataset(tmp_path, annotations=same, sample_rate_hz=10.0).recordings
    assert (int(rec.samples[0, 0]), int(rec.samples[-1, 0])) == (1, 70)

    clash = write(tmp_path / "clash.csv", "recording,label,start,end\nr1.txt,walk,0,49\nr1.txt,sit,40,69\n")
    with pytest.raises(DatasetError, match=r"clash\.csv:3: segment sit .* overlaps line 2 \(walk"):
        load_dataset(tmp_path, annotations=clash, sample_rate_hz=10.0)
    ds = load_dataset(tmp_path, annotations=clash, sample_rate_hz=10.0, interval_overlap="drop")
    spans = [(r.label, int(r.samples[0, 0]), int(r.samples[-1, 0])) for r in ds.recordings]
    assert spans == [("walk", 1, 40), ("sit", 51, 70)]  # rows 41-50 were claimed by both


def test_several_sensor_files_join_by_row_and_different_lengths_name_both_files(tmp_path):
    rows_file(tmp_path / "acc_a.txt", 50, base=0)
    rows_file(tmp_path / "gyro_a.txt", 50, base=100)
    ann = write(tmp_path / "ann.txt", "a walk 0 49\n")  # no header: recording label start end
    ds = load_dataset(
        tmp_path,
        annotations=ann,
        sample_rate_hz=10.0,
        files=("acc_{recording}.txt", "gyro_{recording}.txt"),
        channels=("n", "ay", "az", "n2", "gy", "gz"),
    )
    (rec,) = ds.recordings
    assert rec.samples.shape == (50, 6)
    assert rec.samples[0].tolist() == [1, 1, 2, 1, 101, 102]
    rows_file(tmp_path / "gyro_a.txt", 49)
    with pytest.raises(DatasetError, match=r"gyro_a\.txt: 49 rows, but .*acc_a\.txt has 50"):
        load_dataset(
            tmp_path, annotations=ann, sample_rate_hz=10.0, files=("acc_{recording}.txt", "gyro_{recording}.txt")
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "recording,label,start,end\nr1.txt,walk,0,200\n",
            r"labels\.csv:2: end 200 is past the end of .*r1\.txt \(100",
        ),
        ("recording,label,start,end\nr1.txt,walk,30,10\n", r"labels\.csv:2: end 10 is before start 30"),
        ("recording,label,start,end\nr1.txt,walk,0,x\n", r"labels\.csv:2: end 'x' is not a number"),
        ("recording,label,start,end\nr1.txt,walk,0,1.5\n", r"labels\.csv:2: end '1.5' is not a whole sample index"),
        ("recording,label,start,end\nr1.txt,walk,0\n", r"labels\.csv:2: 3 fields where the first line has 4"),
        ("recording,label,start,end\nnope.txt,walk,0,10\n", r"labels\.csv:2: recording 'nope\.txt': no file"),
        ("rec,what,start,end\nr1.txt,walk,0,10\n", r"labels\.csv:1: the header .* has no recording, label column"),
        ("r1.txt walk 0\n", r"labels\.csv:1: 3 fields; without a header"),
    ],
)
def test_bad_annotations_name_file_and_line(tmp_path, text, message):
    rows_file(tmp_path / "r1.txt", 100)
    ann = write(tmp_path / "labels.csv", text)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path, annotations=ann, sample_rate_hz=10.0)


def test_a_bad_sample_line_names_the_recording_file_and_line(tmp_path):
    write(tmp_path / "r1.txt", "1 2 3\n4 x 6\n7 8 9\n")
    ann = write(tmp_path / "labels.csv", "recording,label,start,end\nr1.txt,walk,0,2\n")
    with pytest.raises(DatasetError, match=r"r1\.txt:2: text 'x'"):
        load_dataset(tmp_path, annotations=ann, sample_rate_hz=10.0)


def test_numeric_labels_named_by_a_label_names_file_and_the_cli_flags(tmp_path):
    rows_file(tmp_path / "data" / "r1.txt", 100)
    ann = write(tmp_path / "labels.tsv", "recording\tlabel\tstart\tend\nr1.txt\t1\t1\t50\nr1.txt\t2\t51\t100\n")
    names = write(tmp_path / "activity_labels.txt", "1 WALKING\n2 SITTING\n")
    args = parser().parse_args(
        ["--data", str(tmp_path / "data"), "--intervals", str(ann), "--label-names", str(names)]
        + ["--sample-rate", "10", "--first-sample", "1", "--subject-regex", r"r(\d)"]
    )
    ds = dataset_from_args(args)
    assert [(r.label, r.subject, len(r)) for r in ds.recordings] == [("WALKING", "1", 50), ("SITTING", "1", 50)]
    bad = write(tmp_path / "bad.tsv", "recording\tlabel\tstart\tend\nr1.txt\t7\t1\t50\n")
    with pytest.raises(DatasetError, match=r"bad\.tsv:2: label '7' is not in the label names"):
        load_dataset(tmp_path / "data", annotations=bad, sample_rate_hz=10.0, label_names=names)


def test_interval_options_need_their_layout(tmp_path):
    rows_file(tmp_path / "C" / "r1.txt", 10)
    with pytest.raises(DatasetError, match="--interval-units does not apply to format folder"):
        load_dataset(tmp_path, sample_rate_hz=10.0, interval_units="seconds")
    with pytest.raises(DatasetError, match="need --intervals FILE"):
        load_dataset(tmp_path, format="intervals", sample_rate_hz=10.0)
    assert read_annotations(write(tmp_path / "a.csv", "# c\nr,l,0,1\n"))[0].line == 2


# ------------------------------------------------------------------ HAPT


def hapt_like(root: Path, users=(1, 2, 3, 4), n: int = 400) -> Path:
    """HAPT's layout in miniature: one experiment per user, acc + gyro files, 1-based inclusive labels."""
    raw = root / "HAPT Data Set" / "RawData"
    write(root / "HAPT Data Set" / "activity_labels.txt", "1 WALKING\n2 SITTING\n3 STAND_TO_SIT\n")
    labels = []
    for e, u in enumerate(users, start=1):
        rid = f"exp{e:02d}_user{u:02d}"
        rows_file(raw / f"acc_{rid}.txt", n, base=0)
        rows_file(raw / f"gyro_{rid}.txt", n, base=10)
        labels += [f"{e} {u} 1 11 160", f"{e} {u} 3 161 180", f"{e} {u} 2 201 360"]
    write(raw / "labels.txt", "\n".join(labels) + "\n")
    return root


def test_hapt_is_detected_and_read_in_place_with_subjects_and_the_uci_har_split(tmp_path):
    root = hapt_like(tmp_path / "hapt")
    assert detect_format(root) == "hapt"
    assert detect_format(root / "HAPT Data Set") == "hapt"
    ds = load_dataset(root)
    assert ds.format == "hapt" and ds.sample_rate_hz == 50.0
    assert ds.channels == ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
    assert ds.labels == ["SITTING", "STAND_TO_SIT", "WALKING"]
    assert len(ds.recordings) == 12
    first = ds.recordings[0]
    assert (first.label, first.subject, len(first)) == ("WALKING", "s1", 150)
    assert first.samples[0].tolist() == [11, 1, 2, 11, 11, 12]  # 1-based sample 11 is file line 11
    assert ds.predefined_split is not None
    assert {r.subject for r in ds.recordings if ds.predefined_split[r.source] == "test"} == {"s2", "s4"}
    assert 2 in UCI_HAR_TEST_SUBJECTS and 1 not in UCI_HAR_TEST_SUBJECTS


def test_hapt_basic_classes_and_accelerometer_only_window_and_split(tmp_path):
    ds = load_dataset(hapt_like(tmp_path / "hapt"), classes=("WALKING", "SITTING"), columns=("acc_x", "acc_y", "acc_z"))
    assert ds.labels == ["SITTING", "WALKING"] and ds.channels == ("acc_x", "acc_y", "acc_z")
    assert all(r.samples.shape[1] == 3 for r in ds.recordings)
    assert ds.describe()["columns"] == [0, 1, 2]
    split = split_recordings(ds, method="predefined", seed=1, val_fraction=0)
    assert {ds.recordings[i].subject for i in split.test} == {"s2", "s4"}
    pre = Preprocessing(50.0, 32, 16, ds.channels, (1.0,), (0.0,))
    ws = make_window_set(ds, pre, split.test)
    assert len(ws.y) == 2 * ((150 - 32) // 16 + 1) + 2 * ((160 - 32) // 16 + 1)  # s2 and s4: walk 150, sit 160
    assert set(ws.subjects.tolist()) == {"s2", "s4"}


def test_hapt_label_line_errors_name_the_line(tmp_path):
    root = hapt_like(tmp_path / "hapt")
    labels = root / "HAPT Data Set" / "RawData" / "labels.txt"
    write(labels, "1 1 1 11 160\n1 1 9 161 180\n")
    with pytest.raises(DatasetError, match=r"labels\.txt:2: activity 9 is not in"):
        load_hapt(root)
    write(labels, "1 1 1 11 160\n1 1 1 161\n")
    with pytest.raises(DatasetError, match=r"labels\.txt:2: expected 'experiment user activity start end'"):
        load_hapt(root)
    write(labels, "1 1 1 11 900\n")
    with pytest.raises(DatasetError, match=r"labels\.txt:1: end 900 is past the end of .*acc_exp01_user01\.txt"):
        load_hapt(root)


def test_hapt_subject_split_from_the_cli(tmp_path):
    root = hapt_like(tmp_path / "hapt")
    args = parser().parse_args(["--data", str(root), "--classes", "WALKING,SITTING", "--columns", "0,1,2"])
    ds = dataset_from_args(args)
    assert ds.channels == ("acc_x", "acc_y", "acc_z")
    split = split_recordings(ds, method="subject", test_subjects=["s3"], seed=0, val_fraction=0)
    assert {ds.recordings[i].subject for i in split.test} == {"s3"}
    assert np.all([ds.recordings[i].subject != "s3" for i in split.train])


@pytest.mark.slow
def test_a_hapt_like_set_converts_and_evaluate_recreates_its_test_split(tmp_path):
    """The whole path the HAPT benchmark takes: preset, --classes, --columns, predefined split, bundle, evaluate."""
    from edge_har.convert.evaluate import evaluate_bundle, load_bundle
    from edge_har.convert.pipeline import run_convert
    from tests.plugins.bundle import tiny_convert_options

    root = hapt_like(tmp_path / "hapt", users=(1, 2, 3, 4, 5, 6, 7, 8), n=400)
    flags = {"classes": ("WALKING", "SITTING"), "columns": ("acc_x", "acc_y", "acc_z")}
    options = tiny_convert_options(tmp_path / "b", data=root, dataset_options=flags, window=32, stride=16)
    bundle = load_bundle(run_convert(options))
    assert bundle.labels == ["SITTING", "WALKING"]
    assert bundle.preprocessing.channels == ("acc_x", "acc_y", "acc_z")
    split = bundle.metrics["split"]
    assert split["method"] == "predefined"
    assert all("user02" in s or "user04" in s for s in split["test_sources_relative"])
    ds = load_dataset(root, **flags)
    results = evaluate_bundle(bundle, ds, variants=["int8"], split="test", out_dir=tmp_path / "eval", progress=False)
    assert results["data"]["windows"] == split["windows"]["test"]
