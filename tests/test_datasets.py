"""edge_har.convert.datasets: loaders, training windows and the data set CLI options, on files the tests write.

None of these tests reads the shared data sets; the HMP-style and UCI HAR
layouts are rebuilt here in miniature.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pytest

from edge_har.convert.datasets import (
    UCI_HAR_SIGNALS,
    Dataset,
    DatasetError,
    add_dataset_arguments,
    dataset_from_args,
    detect_format,
    load_dataset,
    load_folder,
    load_hmp,
    load_long_csv,
    load_uci_har,
    make_window_set,
    parse_duration,
)
from edge_har.core.preprocessing import Preprocessing, resample, window_count
from edge_har.core.recordings import Recording, RecordingError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def hmp_like(root: Path, classes: dict[str, int], n: int = 60, subjects=("f1", "m2", "m3")) -> Path:
    """HMP's layout and names; column x holds 10 + class index, so windows are traceable to their class."""
    rng = np.random.default_rng(0)
    for c, (label, count) in enumerate(classes.items()):
        for k in range(count):
            rows = rng.integers(0, 64, size=(n, 3))
            rows[:, 0] = 10 + c
            name = f"Accelerometer-2011-03-24-10-{k:02d}-00-{label.lower()}-{subjects[k % len(subjects)]}.txt"
            write(root / label / name, "\n".join(" ".join(map(str, r)) for r in rows) + "\n")
    return root


def pre32(window: int = 16, stride: int = 8, rate: float = 32.0) -> Preprocessing:
    return Preprocessing(rate, window, stride, ("x", "y", "z"), (3 / 63,), (-1.5,))


# ------------------------------------------------------------------ HMP and folders


def test_hmp_preset_autodetected_with_scaling_subjects_and_provenance(tmp_path):
    root = hmp_like(tmp_path / "HMP", {"Walk": 3, "Sit": 2})
    ds = load_dataset(root)
    assert ds.format == "hmp" and ds.name == "hmp"
    assert ds.sample_rate_hz == 32.0 and ds.channels == ("x", "y", "z") and ds.units == "g"
    assert ds.labels == ["Sit", "Walk"]
    assert [r.subject for r in ds.recordings] == ["f1", "m2", "f1", "m2", "m3"]
    # MANUAL.txt 4.2: real = -1.5 g + code/63 * 3 g, so 0 -> -1.5 g and 63 -> +1.5 g
    assert 0 * ds.scale[0] + ds.offset[0] == pytest.approx(-1.5)
    assert 63 * ds.scale[0] + ds.offset[0] == pytest.approx(1.5)
    info = ds.describe()
    assert info["n_recordings"] == 5 and info["n_files"] == 5 and info["n_samples"] == 300
    assert info["recordings_per_class"] == {"Sit": 2, "Walk": 3}
    assert info["subjects"] == ["f1", "m2", "m3"] and info["recordings_without_subject"] == 0
    assert info["path"] == str(root.resolve()) and len(info["file_list_sha256"]) == 64


def test_synthetic_data_in_hmp_layout_is_detected_as_hmp(tmp_path):
    """The project's own synthetic set must load with no options, subjects included, as the convert tests need."""
    from edge_har.convert.synthetic import write_synthetic_imu_dataset

    root = write_synthetic_imu_dataset(
        tmp_path / "syn", classes=("walk", "sit"), recordings_per_class=3, subjects=3, seconds=2.0
    )
    ds = load_dataset(root)
    assert ds.format == "hmp" and ds.labels == ["Sit", "Walk"]
    assert all(r.subject and Path(r.source).stem.endswith("-" + r.subject) for r in ds.recordings)
    assert len({r.subject for r in ds.recordings}) == 3


def test_file_list_hash_is_stable_and_tracks_files(tmp_path):
    root = hmp_like(tmp_path / "d", {"Walk": 3, "Sit": 3})
    first = load_dataset(root).file_list_sha256
    assert load_dataset(root).file_list_sha256 == first
    moved = tmp_path / "elsewhere"
    root.rename(moved)  # relative paths: a moved copy hashes the same
    assert load_dataset(moved).file_list_sha256 == first
    extra = write(moved / "Sit" / "Accelerometer-2011-03-24-11-00-00-sit-f1.txt", "1 2 3\n" * 70)
    second = load_dataset(moved).file_list_sha256
    assert second != first
    extra.write_text("1 2 3\n" * 71)  # same names, one size changed
    assert load_dataset(moved).file_list_sha256 not in (first, second)


def test_model_trials_are_skipped_or_tied_to_their_trial(tmp_path):
    root = hmp_like(tmp_path / "d", {"Walk": 3})
    base = "Accelerometer-2011-03-24-10-00-00-walk-f1"
    write(root / "Walk_MODEL" / f"{base}_1.txt", "1 2 3\n" * 20)  # an excerpt of Walk/<base>.txt
    write(root / "Walk_MODEL" / "Accelerometer-2012-01-01-00-00-00-walk-m9.txt", "1 2 3\n" * 20)  # a trial of its own
    assert len(load_hmp(root).recordings) == 3
    ds = load_hmp(root, include_model=True)
    assert len(ds.recordings) == 5 and set(ds.labels) == {"Walk"}
    by_name = {Path(r.source).name: (r.subject, key) for r, key in zip(ds.recordings, ds.group_keys())}
    assert by_name[f"{base}_1.txt"] == ("f1", str(root / "Walk" / f"{base}.txt"))
    assert by_name["Accelerometer-2012-01-01-00-00-00-walk-m9.txt"][1].endswith("walk-m9.txt")
    assert ds.describe()["split_groups"] == 4


def test_plain_folder_needs_a_rate_and_takes_channel_names(tmp_path):
    root = tmp_path / "mine"
    write(root / "A" / "one.txt", "1 2\n" * 5)
    write(root / "B" / "two.csv", "3,4\n" * 5)
    assert detect_format(root) == "folder"
    with pytest.raises(DatasetError, match=r"mine: a folder of recordings .* needs --sample-rate"):
        load_dataset(root)
    ds = load_dataset(root, sample_rate_hz=20.0, channels=("u", "v"), scale=(2.0, 0.5), units="m/s^2")
    assert ds.format == "folder" and ds.name == "mine" and ds.channels == ("u", "v") and ds.scale == (2.0, 0.5)
    assert load_dataset(root, sample_rate_hz=20.0).channels == ("ch0", "ch1")
    with pytest.raises(DatasetError, match=r"--channels names 3 channel\(s\) \(u, v, w\) but the files have 2 columns"):
        load_dataset(root, sample_rate_hz=20.0, channels=("u", "v", "w"))
    with pytest.raises(DatasetError, match=r"--scale has 3 values; give one for all channels or one per channel \(2\)"):
        load_dataset(root, sample_rate_hz=20.0, scale=(1.0, 2.0, 3.0))
    with pytest.raises(DatasetError, match=r"--sample-rate must be > 0"):
        load_folder(root, sample_rate_hz=0.0)


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    root = hmp_like(tmp_path / "d", {"Walk": 2})
    (root / "Sit").mkdir()
    with pytest.raises(DatasetError, match=r"d/Sit: empty class folder"):
        load_dataset(root)


def test_bad_line_error_names_file_and_line_unless_skipped(tmp_path):
    root = hmp_like(tmp_path / "d", {"Walk": 2, "Sit": 2})
    bad = root / "Sit" / "Accelerometer-2011-03-24-10-01-00-sit-m2.txt"
    lines = bad.read_text().splitlines()
    lines[6] = "12 a3 40"
    lines[9] = "12 30"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"sit-m2\.txt:7: text 'a3' in a number column"):
        load_dataset(root)
    ds = load_dataset(root, skip_bad=True)
    assert ds.skipped == {"Sit/Accelerometer-2011-03-24-10-01-00-sit-m2.txt": 2}
    assert ds.describe()["skipped_lines"] == 2
    assert len(ds.recordings[1]) == 58


def test_options_that_do_not_apply_are_errors_naming_the_flag(tmp_path):
    root = hmp_like(tmp_path / "d", {"Walk": 2})
    with pytest.raises(DatasetError, match=r"--sample-rate does not apply to format hmp \(detected\).*--format folder"):
        load_dataset(root, sample_rate_hz=50.0)
    with pytest.raises(DatasetError, match=r"--label-column does not apply to format folder"):
        load_dataset(root, format="folder", sample_rate_hz=32.0, label_col="label")
    with pytest.raises(DatasetError, match=r"unknown; choose one of auto, .*hmp, folder"):
        load_dataset(root, format="parquet")
    with pytest.raises(DatasetError, match=r"format csv needs a file"):
        load_dataset(root, format="csv", label_col="label")
    with pytest.raises(DatasetError, match=r"no such file or folder"):
        load_dataset(tmp_path / "nothing")
    # the same folder read as a generic folder, with the user's own settings
    ds = load_dataset(root, format="folder", sample_rate_hz=50.0)
    assert ds.format == "folder" and ds.sample_rate_hz == 50.0 and ds.scale == (1.0,)


# ------------------------------------------------------------------ long CSV


def long_csv(path: Path) -> Path:
    rows = ["time;activity;user;acc x;acc y;acc z"]
    t = 0.0
    for label, user, n in [("walk", "u1", 40), ("sit", "u1", 30), ("walk", "u2", 35)]:
        for k in range(n):
            rows.append(f"{t:.2f};{label};{user};{k % 7},5;0,25;-1")
            t += 0.04
    return write(path, "\n".join(rows) + "\n")


def test_long_csv_dataset(tmp_path):
    path = long_csv(tmp_path / "logs" / "session.csv")
    assert detect_format(path) == "csv"
    ds = load_dataset(path, label_col="activity", subject_col="user", timestamp_col="time", units="g")
    assert ds.format == "csv" and ds.name == "session" and ds.root == path.parent
    assert ds.channels == ("acc x", "acc y", "acc z")
    assert ds.sample_rate_hz == pytest.approx(25.0, rel=1e-3)
    assert [(r.label, r.subject, len(r)) for r in ds.recordings] == [
        ("walk", "u1", 40),
        ("sit", "u1", 30),
        ("walk", "u2", 35),
    ]
    assert ds.recordings[1].source == f"{path}:rows 42-71"
    assert ds.describe()["path"] == str(path.resolve()) and ds.n_files == 1
    fixed = load_long_csv(path, label_col="activity", channel_cols=["acc z", "acc x"], sample_rate_hz=50.0)
    assert fixed.channels == ("acc z", "acc x") and fixed.sample_rate_hz == 50.0
    assert fixed.recordings[0].samples[1].tolist() == [-1.0, 1.5]


def test_long_csv_needs_a_label_and_a_rate(tmp_path):
    path = long_csv(tmp_path / "session.csv")
    with pytest.raises(DatasetError, match=r"a long CSV needs --label-column"):
        load_dataset(path)
    with pytest.raises(DatasetError, match=r"no sample rate; pass --sample-rate, or --timestamp-column"):
        load_dataset(path, label_col="activity")
    with pytest.raises(DatasetError, match=r"--subject-regex does not apply to format csv"):
        load_dataset(path, label_col="activity", sample_rate_hz=25.0, subject_regex="u(\\d)")
    with pytest.raises(DatasetError, match=r"no subject column 'subject'; the header has time, activity, user"):
        load_dataset(path, label_col="activity", sample_rate_hz=25.0, subject_col="subject")


# ------------------------------------------------------------------ UCI HAR


def make_uci_har(
    root: Path, runs=(("train", [(1, 1, 3), (1, 2, 2), (3, 1, 2)]), ("test", [(2, 1, 2), (2, 2, 2)]))
) -> Path:
    """The extracted layout; ``runs`` per side: (subject, activity id, consecutive windows).

    Every value of signal file k is k + window/1000, so the channel order and
    the window a sample came from can be read back from the numbers.
    """
    base = root / "UCI HAR Dataset"
    write(base / "activity_labels.txt", "1 WALKING\n2 SITTING\n")
    write(base / "features.txt", "1 tBodyAcc-mean()-X\n")  # present in the real set, unused
    for side, side_runs in runs:
        ys = [a for _, a, n in side_runs for _ in range(n)]
        subjects = [s for s, _, n in side_runs for _ in range(n)]
        for k, signal in enumerate(UCI_HAR_SIGNALS):
            rows = ["  " + " ".join(f"{k + w / 1000:.7e}" for _ in range(128)) for w in range(len(ys))]
            write(base / side / "Inertial Signals" / f"{signal}_{side}.txt", "\n".join(rows) + "\n")
        write(base / side / f"y_{side}.txt", "\n".join(map(str, ys)) + "\n")
        write(base / side / f"subject_{side}.txt", "\n".join(map(str, subjects)) + "\n")
    return root


def test_uci_har_layout(tmp_path):
    root = make_uci_har(tmp_path)
    for path in (root, root / "UCI HAR Dataset"):  # the folder, or the one holding it
        assert detect_format(path) == "uci-har"
        ds = load_dataset(path)
        assert ds.root == root / "UCI HAR Dataset"
    assert ds.format == "uci-har" and ds.labels == ["SITTING", "WALKING"] and ds.native_window == 128
    assert ds.channels == UCI_HAR_SIGNALS and ds.sample_rate_hz == 50.0
    assert len(ds.recordings) == 11 and ds.n_files == 1 + 2 * 11
    first = ds.recordings[0]
    assert first.samples.shape == (128, 9) and first.subject == "s1" and first.label == "WALKING"
    np.testing.assert_allclose(first.samples[0], np.arange(9), atol=1e-6)  # channel k came from signal file k
    np.testing.assert_allclose(ds.recordings[4].samples[:, 0], 0.004, atol=1e-6)  # the fifth row of train
    assert first.source == str(ds.root / "train" / "Inertial Signals") + ":line 1"
    assert sorted(set(ds.predefined_split.values())) == ["test", "train"]
    assert sum(side == "test" for side in ds.predefined_split.values()) == 4
    # consecutive windows of one subject and activity overlap: they form one split group
    keys = ds.group_keys()
    assert len(set(keys[:3])) == 1 and len(set(keys)) == 5
    assert ds.describe()["predefined_split"] == {"test": 4, "train": 7}


def test_uci_har_windows_are_the_recordings(tmp_path):
    ds = load_uci_har(make_uci_har(tmp_path))
    pre = Preprocessing(50.0, 128, 64, UCI_HAR_SIGNALS)
    ws = make_window_set(ds, pre)
    assert ws.x.shape == (11, 128, 9) and ws.groups.tolist() == list(range(11))
    with pytest.raises(
        RecordingError,
        match=r"line 1: 128 samples at 50 Hz, shorter than one window of 256 samples "
        r"\(5.12 s\); this data set comes in windows of 128 samples",
    ):
        make_window_set(ds, Preprocessing(50.0, 256, 64, UCI_HAR_SIGNALS))


def test_uci_har_errors_name_the_file(tmp_path):
    root = make_uci_har(tmp_path)
    base = root / "UCI HAR Dataset"
    write(base / "test" / "y_test.txt", "1\n2\n")
    with pytest.raises(DatasetError, match=r"test: the files differ in row count \(y_test.txt: 2, subject_test.txt: 4"):
        load_uci_har(root)
    write(base / "test" / "y_test.txt", "1\n2\n7\n1\n")
    with pytest.raises(DatasetError, match=r"y_test\.txt:3: activity 7 is not in activity_labels\.txt \(ids 1, 2\)"):
        load_uci_har(root)
    write(base / "test" / "y_test.txt", "1\n2\n1.5\n1\n")
    with pytest.raises(DatasetError, match=r"y_test\.txt:3: activity label must be a whole number"):
        load_uci_har(root)
    write(base / "test" / "y_test.txt", "1\n2\n2\n1\n")
    (base / "test" / "Inertial Signals" / "body_gyro_y_test.txt").unlink()
    with pytest.raises(DatasetError, match=r"body_gyro_y_test\.txt: missing signal file"):
        load_uci_har(root)
    with pytest.raises(DatasetError, match=r"not the UCI HAR layout"):
        load_uci_har(tmp_path / "elsewhere")


def test_uci_har_skip_bad_drops_the_window_in_every_file(tmp_path, caplog):
    root = make_uci_har(tmp_path)
    signal = root / "UCI HAR Dataset" / "train" / "Inertial Signals" / "total_acc_z_train.txt"
    lines = signal.read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0]  # 127 values in the fourth window
    signal.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"total_acc_z_train\.txt:4: 127 columns where 128 are expected"):
        load_uci_har(root)
    with caplog.at_level(logging.WARNING):
        ds = load_uci_har(root, skip_bad=True)
    assert len(ds.recordings) == 10 and ds.skipped == {"train/Inertial Signals": 1}
    train_rows = [int(r.source.rsplit(" ", 1)[1]) for r in ds.recordings if ds.predefined_split[r.source] == "train"]
    assert train_rows == [1, 2, 3, 5, 6, 7]
    # every remaining window is whole: all nine channels from the same row
    for r in ds.recordings:
        row = int(r.source.rsplit(" ", 1)[1]) - 1
        np.testing.assert_allclose(r.samples[0], np.arange(9) + row / 1000, atol=1e-6)
    assert "1 window(s) dropped" in caplog.text


# ------------------------------------------------------------------ windows


def test_window_counts_labels_groups_and_scaling(tmp_path):
    ds = load_dataset(hmp_like(tmp_path / "d", {"Walk": 2, "Sit": 2}, n=40))
    ws = make_window_set(ds, pre32(window=16, stride=8))
    assert ws.x.shape == (4 * window_count(40, 16, 8), 16, 3) and ws.x.dtype == np.float32
    assert ws.y.dtype == np.int64 and ws.groups.dtype == np.int64
    for g in np.unique(ws.groups):
        assert set(ws.y[ws.groups == g]) == {ds.labels.index(ds.recordings[g].label)}
        assert set(ws.subjects[ws.groups == g]) == {ds.recordings[g].subject}
    # scaled to g, not normalised: column x held code 10 + class position in the writer
    walk = ds.labels.index("Walk")
    np.testing.assert_allclose(ws.x[ws.y == walk][:, :, 0], -1.5 + 10 * 3 / 63, rtol=1e-6)
    first = ds.recordings[0].samples * (3 / 63) - 1.5
    np.testing.assert_allclose(ws.x[1], first[8:24], rtol=1e-6)  # window 1 starts one stride in


def test_window_subset_and_resampling_to_the_model_rate(tmp_path):
    ds = load_dataset(hmp_like(tmp_path / "d", {"Walk": 2, "Sit": 2}, n=100))
    subset = make_window_set(ds, pre32(), recording_indices=np.array([3, 1]))
    assert sorted(set(subset.groups.tolist())) == [1, 3]
    for rate in (16.0, 50.0):
        ws = make_window_set(ds, pre32(window=16, stride=8, rate=rate))
        n_resampled = len(resample(ds.recordings[0].samples, 32.0, rate))
        assert len(ws.x) == 4 * window_count(n_resampled, 16, 8)
    # a recording that carries its own rate is resampled from that rate
    ds.recordings[0].sample_rate_hz = 64.0
    ws = make_window_set(ds, pre32(), recording_indices=[0])
    assert len(ws.x) == window_count(len(resample(ds.recordings[0].samples, 64.0, 32.0)), 16, 8)


def test_short_recording_is_an_error_or_skipped_with_a_count(tmp_path, caplog):
    root = hmp_like(tmp_path / "d", {"Walk": 2}, n=40)
    short = write(root / "Walk" / "Accelerometer-2011-03-24-12-00-00-walk-f1.txt", "1 2 3\n" * 12)
    ds = load_dataset(root)
    with pytest.raises(
        RecordingError,
        match=r"12-00-00-walk-f1\.txt: 12 samples at 32 Hz, shorter than one window of "
        r"16 samples \(0.5 s\); use a shorter --window, or --skip-short",
    ):
        make_window_set(ds, pre32())
    with pytest.raises(RecordingError, match=r"12 samples at 32 Hz, 18 after resampling to the model's 50 Hz"):
        make_window_set(ds, pre32(window=20, rate=50.0))
    with caplog.at_level(logging.WARNING):
        ws = make_window_set(ds, pre32(), skip_short=True)
    assert len(ws.x) == 2 * window_count(40, 16, 8) and ws.skipped_short == [str(short)]
    assert "skipped 1 recording(s) shorter than one window" in caplog.text
    empty = make_window_set(ds, pre32(), recording_indices=[2], skip_short=True)
    assert empty.x.shape == (0, 16, 3) and empty.y.shape == (0,)


def test_channel_mismatch_names_the_recording(tmp_path):
    ds = load_dataset(hmp_like(tmp_path / "d", {"Walk": 1}))
    two = Preprocessing(32.0, 16, 8, ("x", "y"))
    with pytest.raises(RecordingError, match=r"walk-f1\.txt: .*\(model channels: x, y\)"):
        make_window_set(ds, two)


def test_in_memory_dataset_works_with_the_window_code():
    recs = [Recording(np.zeros((10, 1), np.float32), "a", "mem:0", None, None)]
    ds = Dataset("mem", Path("."), recs, ["a"], ("v",), 10.0)
    assert make_window_set(ds, Preprocessing(10.0, 5, 5, ("v",))).x.shape == (2, 5, 1)


@pytest.mark.parametrize(
    "text, rate, expected",
    [
        ("96", 32, 96),
        ("96 samples", 32, 96),
        ("3s", 32, 96),
        ("3.0s", 32, 96),
        ("3 S", 32, 96),
        ("0.5s", 32, 16),
        ("500ms", 50, 25),
        ("2.56s", 50, 128),
        ("10ms", 32, 0.32),
        (96, 32, 96),
    ],
)
def test_parse_duration(text, rate, expected):
    if expected < 1:
        with pytest.raises(ValueError, match="less than one sample at 32 Hz"):
            parse_duration(text, rate)
    else:
        assert parse_duration(text, rate) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("3 minutes", "expected a number of samples"),
        ("-1", "expected"),
        ("1.5", r"must be whole \(for seconds write 1.5s\)"),
        ("0", "less than one"),
        ("", "expected"),
    ],
)
def test_parse_duration_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_duration(text, 32)


# ------------------------------------------------------------------ command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-har convert")
    add_dataset_arguments(p)
    return p


def test_cli_hmp_folder_and_csv(tmp_path):
    root = hmp_like(tmp_path / "d", {"A": 3})
    ds = dataset_from_args(parser().parse_args(["--data", str(root), "--skip-bad", "--include-model-trials"]))
    assert ds.format == "hmp" and len(ds.recordings) == 3
    ds = dataset_from_args(
        parser().parse_args(
            [
                "--data",
                str(root),
                "--format",
                "folder",
                "--sample-rate",
                "25",
                "--channels",
                "a,b,c",
                "--scale",
                "0.5",
                "--offset",
                "1,2,3",
                "--units",
                "g",
                r"--subject-regex=-(\w\d)\.txt$",
            ]
        )
    )
    assert (ds.sample_rate_hz, ds.channels, ds.scale, ds.offset) == (25.0, ("a", "b", "c"), (0.5,), (1.0, 2.0, 3.0))
    assert {r.subject for r in ds.recordings} == {"f1", "m2", "m3"}
    csv_path = long_csv(tmp_path / "s.csv")
    ds = dataset_from_args(
        parser().parse_args(
            [
                "--data",
                str(csv_path),
                "--label-column",
                "activity",
                "--subject-column",
                "user",
                "--timestamp-column",
                "time",
                "--channels",
                "acc y,acc x",
            ]
        )
    )
    assert ds.format == "csv" and ds.channels == ("acc y", "acc x") and ds.sample_rate_hz == pytest.approx(25.0)


def test_cli_bad_values_and_combinations(tmp_path, capsys):
    root = hmp_like(tmp_path / "d", {"A": 3})
    for argv, message in [
        (["--data", str(root), "--scale", "a,b"], "expected comma-separated numbers"),
        (["--data", str(root), "--sample-rate", "-3"], "expected a rate > 0 Hz"),
        (["--data", str(root), "--channels", "x,,z"], "without empty entries"),
        (["--data", str(root), "--format", "xls"], "invalid choice"),
        ([], "the following arguments are required: --data"),
    ]:
        with pytest.raises(SystemExit):
            parser().parse_args(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(DatasetError, match=r"--label-column does not apply to format hmp \(detected\)"):
        dataset_from_args(parser().parse_args(["--data", str(root), "--label-column", "y"]))
    with pytest.raises(DatasetError, match=r"--sample-rate does not apply to format hmp \(given\)"):
        dataset_from_args(parser().parse_args(["--data", str(root), "--format", "hmp", "--sample-rate", "50"]))
    with pytest.raises(DatasetError, match=r"--include-model-trials does not apply to format csv"):
        dataset_from_args(
            parser().parse_args(
                [
                    "--data",
                    str(long_csv(tmp_path / "s.csv")),
                    "--label-column",
                    "activity",
                    "--sample-rate",
                    "25",
                    "--include-model-trials",
                ]
            )
        )


def test_cli_help_explains_every_option():
    text = parser().format_help()
    for flag in (
        "--data",
        "--format",
        "--subject-regex",
        "--sample-rate",
        "--channels",
        "--scale",
        "--offset",
        "--units",
        "--label-column",
        "--subject-column",
        "--timestamp-column",
        "--include-model-trials",
        "--skip-bad",
    ):
        assert flag in text
    for action in parser()._actions:  # noqa: SLF001 - every option has help text and, where it takes a value, a type
        if action.option_strings and action.dest != "help":
            assert action.help
            if action.nargs != 0:
                assert action.type is not None, action.dest
