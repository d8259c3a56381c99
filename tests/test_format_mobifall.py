"""Format mobifall: per-sensor timestamped files of one trial, aligned and resampled, on MobiFall-like
files the tests write (``#`` header, ``@DATA``, ``timestamp_ns, x, y, z``, jittered clocks, pauses);
the file reader fuzzed with arbitrary bytes and lines (``EDGE_HAR_FUZZ_EXAMPLES`` raises the counts).
The real set (../shared/data/mobifall) is read too where it is present."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_har.core.formats import DatasetError, detect_format, load_dataset, make_window_set
from edge_har.core.formats.cli import add_dataset_arguments, dataset_from_args
from edge_har.core.formats.mobifall import load_mobifall, read_timed_file
from edge_har.core.preprocessing import Preprocessing

EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "200"))  # per property below
MOBIFALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "mobifall"
HEADER = (
    "#Acceleration force along the x y z axes (including gravity).\n#timestamp(ns),x,y,z(m/s^2)\n"
    "#Datetime: 02/12/2013 10:50:46\n##########################################\n"
    "#Activity: 11 - FKL - Front-knees-lying - 10s\n#Subject ID: {subject}\n"
    "##########################################\n\n\n@DATA\n"
)


def _stamps(rng, start_s, seconds, rate, pause_at=None, pause_s=0.0):
    """Nanosecond stamps at about ``rate`` with +-15 % jitter, and a pause at ``pause_at`` s if given."""
    steps = rng.uniform(0.85, 1.15, size=int(seconds * rate)) / rate
    t = start_s + np.concatenate([[0.0], np.cumsum(steps)])
    if pause_at is not None:
        t[t > start_s + pause_at] += pause_s
    return np.round(t * 1e9).astype(np.int64)


def _write(path, stamps_ns, values, subject="1", extra_lines=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{t}, {x!r}, {y!r}, {z!r}" for t, (x, y, z) in zip(stamps_ns.tolist(), values.tolist())]
    path.write_text(HEADER.format(subject=subject) + "\n".join([*rows, *extra_lines]) + "\n", encoding="utf-8")


def _line(t_ns, coef):
    """A linear signal of time (seconds since 2847 s): exactly reproduced by linear interpolation."""
    t = t_ns / 1e9 - 2847.0
    return np.stack([coef * t, coef * t + 1, -coef * t], axis=1)


def make_set(root: Path, *, seconds=10.0, pause=None, gyro=True):
    """sub<N>/<FALLS|ADL>/<CODE>/<CODE>_<acc|gyro>_<N>_<trial>.txt, acc ~95 Hz, gyro ~200 Hz, own clocks."""
    rng = np.random.default_rng(7)
    for subject in ("1", "2", "3"):
        for category, code in (("FALLS", "FOL"), ("FALLS", "BSC"), ("ADL", "WAL")):
            for trial in ("1", "2"):
                folder = root / f"sub{subject}" / category / code
                p = pause if (subject, code, trial) == ("1", "FOL", "1") else None
                t_acc = _stamps(rng, 2847.0, seconds, 95, *(p or (None, 0.0)))
                _write(folder / f"{code}_acc_{subject}_{trial}.txt", t_acc, _line(t_acc, 1.0), subject)
                if gyro:
                    t_gyro = _stamps(rng, 2847.03, seconds, 200)
                    _write(folder / f"{code}_gyro_{subject}_{trial}.txt", t_gyro, _line(t_gyro, 2.0), subject)
    (root / "DataDescribe.txt").write_text("not a trial\n")
    return root


@pytest.fixture
def mobifall_like(tmp_path):
    return make_set(tmp_path / "mobifall")


def test_trials_are_aligned_resampled_and_labelled_by_code_folder_and_subject(mobifall_like, caplog):
    with caplog.at_level(logging.INFO):
        ds = load_mobifall(mobifall_like)
    assert "resampling each from its own timestamps (ns) onto 50 Hz" in caplog.text
    assert ds.format == "mobifall" and ds.sample_rate_hz == 50.0
    assert ds.channels == ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
    assert ds.labels == ["BSC", "FOL", "WAL"]
    assert sorted({r.subject for r in ds.recordings}) == ["1", "2", "3"]
    assert len(ds.recordings) == 18 and ds.n_files == 36
    assert ds.units == "m/s^2 (acc), rad/s (gyro)"
    for rec in ds.recordings:
        # a 10 s trial on both clocks: their common span (gyro starts 30 ms later) at 50 Hz
        assert 480 <= len(rec) <= 501 and rec.samples.dtype == np.float32 and rec.sample_rate_hz == 50.0
        x = rec.samples[:, 0].astype(np.float64)  # acc_x = t, gyro_x = 2 t on the same grid
        assert np.allclose(rec.samples[:, 3], 2 * x, atol=1e-4)
        assert np.allclose(np.diff(x), 0.02, atol=1e-4)  # 50 Hz, evenly
        assert np.allclose(rec.samples[:, 1], x + 1, atol=1e-4)
        assert x[0] == pytest.approx(0.03, abs=1e-4)  # the grid starts where the later clock starts


def test_windows_per_class_through_the_shared_window_cutter(mobifall_like):
    ds = load_mobifall(mobifall_like)
    pre = Preprocessing(sample_rate_hz=50.0, window=128, stride=64, channels=ds.channels)
    ws = make_window_set(ds, pre)
    per_class = Counter(ds.labels[i] for i in ws.y)
    assert ws.x.shape[1:] == (128, 6)
    # each trial: (n - 128) // 64 + 1 windows of about 500 samples = 6
    assert per_class == {"BSC": 36, "FOL": 36, "WAL": 36}


def test_a_pause_longer_than_the_bound_splits_a_trial_into_one_split_group(tmp_path, caplog):
    root = make_set(tmp_path / "m", pause=(4.0, 0.8))
    with caplog.at_level(logging.INFO):
        ds = load_mobifall(root)
    at = [i for i, r in enumerate(ds.recordings) if "FOL_acc_1_1" in r.source]
    pieces = [ds.recordings[i] for i in at]
    assert len(pieces) == 2 and all("piece" in r.source for r in pieces)
    assert ds.split_groups is not None
    assert len({ds.split_groups[i] for i in at}) == 1
    assert len(set(ds.split_groups)) == 18
    assert "1 gap(s) split recordings" in caplog.text
    # nothing bridges the pause: the pieces together hold about 0.8 s (40 samples) less
    assert sum(len(r) for r in pieces) < len(ds.recordings[-1]) - 35
    # a bound above the pause interpolates across it
    whole = load_mobifall(root, max_gap_s=1.0)
    assert len(whole.recordings) == 18


def test_options_sensors_category_rate_and_scale(mobifall_like):
    acc = load_mobifall(mobifall_like, sensors=("acc",), label_from="category", resample_rate_hz=25.0)
    assert acc.channels == ("acc_x", "acc_y", "acc_z") and acc.labels == ["ADL", "FALLS"]
    assert acc.sample_rate_hz == 25.0 and all(240 <= len(r) <= 260 for r in acc.recordings)
    assert acc.units == "m/s^2 (acc)"
    gyro_first = load_mobifall(mobifall_like, sensors=("gyro", "acc"))
    assert gyro_first.channels[:3] == ("gyro_x", "gyro_y", "gyro_z")
    g = load_mobifall(mobifall_like, scale=(1 / 9.80665,), units="g", sensors=("acc",))
    assert g.scale == (1 / 9.80665,) and g.units == "g"
    with pytest.raises(DatasetError, match="--sensors acc,acc"):
        load_mobifall(mobifall_like, sensors=("acc", "acc"))


def test_a_trial_in_another_codes_folder_is_labelled_by_its_file_name(tmp_path, caplog):
    """MobiFall's sub21/FALLS/FOL holds three SDL trials (their names and headers say SDL)."""
    root = make_set(tmp_path / "m")
    for f in (root / "sub2" / "FALLS" / "BSC").glob("BSC_*_2_1.txt"):
        f.rename(root / "sub2" / "FALLS" / "FOL" / f.name)
    with caplog.at_level(logging.WARNING):
        ds = load_mobifall(root)
    assert Counter(r.label for r in ds.recordings) == {"BSC": 6, "FOL": 6, "WAL": 6}
    assert "1 trial(s) sit in another code's folder" in caplog.text
    assert "sub2/FALLS/FOL/BSC_acc_2_1.txt" in caplog.text
    assert load_mobifall(root, label_from="category").labels == ["ADL", "FALLS"]


def test_a_flat_folder_of_trials_takes_the_code_from_the_file_names(tmp_path):
    root = make_set(tmp_path / "m")
    flat = tmp_path / "flat" / "phone"
    flat.mkdir(parents=True)
    for f in root.rglob("*_*_*_*.txt"):
        f.rename(flat / f.name)
    assert detect_format(tmp_path / "flat") == "mobifall"
    ds = load_mobifall(tmp_path / "flat")
    assert ds.labels == ["BSC", "FOL", "WAL"] and len(ds.recordings) == 18
    with pytest.raises(DatasetError, match="--label-from category needs <category>/<CODE>/ folders"):
        load_mobifall(tmp_path / "flat", label_from="category")


def test_a_trial_without_its_gyro_file_is_left_out_with_a_warning(tmp_path, caplog):
    root = make_set(tmp_path / "m")
    lone = root / "sub1" / "ADL" / "WAL" / "WAL_gyro_1_2.txt"
    lone.unlink()
    with caplog.at_level(logging.WARNING):
        ds = load_mobifall(root)
    assert len(ds.recordings) == 17
    assert "1 trial(s) lack a acc or gyro file" in caplog.text and "WAL_acc_1_2.txt" in caplog.text
    assert len(load_mobifall(root, sensors=("acc",)).recordings) == 18
    with pytest.raises(DatasetError, match="no trial with acc and gyro files"):
        load_mobifall(make_set(tmp_path / "acc-only", gyro=False))


def test_a_malformed_line_names_file_and_line_or_is_counted(tmp_path):
    root = make_set(tmp_path / "m")
    bad = root / "sub2" / "FALLS" / "BSC" / "BSC_acc_2_1.txt"
    lines = bad.read_text().splitlines()
    at = lines.index("@DATA") + 5
    lines[at] = "2847000000000, 1.0, oops, 2.0"
    lines.insert(at + 3, "2847000000001, 1.0, 2.0")
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as info:
        load_mobifall(root)
    assert str(info.value).startswith(f"{bad}:{at + 1}: a field that is not a number")
    assert "\n" not in str(info.value)
    ds = load_mobifall(root, skip_bad=True)
    assert ds.skipped == {"sub2/FALLS/BSC/BSC_acc_2_1.txt": 2}
    assert ds.bad_line_reasons == {"text": 1, "columns": 1}


def test_an_empty_file_is_refused_by_name(tmp_path):
    root = make_set(tmp_path / "m")
    empty = root / "sub3" / "ADL" / "WAL" / "WAL_gyro_3_1.txt"
    empty.write_text(HEADER.format(subject=3))
    with pytest.raises(DatasetError, match=f"{empty}: no data rows"):
        load_mobifall(root)
    assert len(load_mobifall(root, skip_bad=True).recordings) == 17


def test_registered_detected_and_read_from_the_command_line_flags(mobifall_like):
    assert detect_format(mobifall_like) == "mobifall"
    ds = load_dataset(mobifall_like, max_gap=0.5, sensors=("acc",))
    assert ds.format == "mobifall" and len(ds.channels) == 3
    assert ds.reader is not None and ds.reader.format == "mobifall"
    assert ds.reader.options == {  # the options given, and the defaults in force, so a later default cannot change it
        "max_gap": 0.5,
        "sensors": ["acc"],
        "resample_rate": 50.0,
        "label_from": "code",
        "timestamp_unit": "ns",
        "scale": [1.0],
        "offset": [0.0],
        "skip_bad": False,
    }
    assert ds.describe()["resampling"]["to_hz"] == 50.0 and ds.describe()["resampling"]["max_gap_s"] == 0.5
    parser = argparse.ArgumentParser()
    add_dataset_arguments(parser)
    args = parser.parse_args(
        ["--data", str(mobifall_like), "--format", "mobifall", "--resample-rate", "20", "--sensors", "gyro"]
        + ["--label-from", "category", "--timestamp-unit", "auto", "--max-gap", "0.25"]
    )
    ds = dataset_from_args(args)
    assert ds.sample_rate_hz == 20.0 and ds.channels == ("gyro_x", "gyro_y", "gyro_z")
    assert ds.labels == ["ADL", "FALLS"]
    with pytest.raises(DatasetError, match="--max-gap"):
        load_dataset(mobifall_like, format="mobifall", max_gap=-1)
    with pytest.raises(DatasetError, match="--sensors"):
        load_dataset(mobifall_like, format="mobifall", sensors=("ori",))
    with pytest.raises(DatasetError, match="--resample-rate needs --timestamp-column"):  # folder: only with stamps
        load_dataset(mobifall_like, format="folder", sample_rate=50, resample_rate=25)


def test_a_replay_reads_the_raw_files_as_the_bundle_recorded_them(mobifall_like):
    """The device's replay source takes format and options from bundle.json's reader record and gets
    the very recordings (same pieces, same samples) convert and evaluate read."""
    from edge_har.core.formats import ReaderRecord
    from edge_har.device.sources.replay import ReplaySourceConfig, load_recordings

    trained = load_dataset(mobifall_like, resample_rate=25, sensors=("gyro", "acc"), max_gap=0.2)
    assert trained.reader is not None
    record = ReaderRecord.model_validate(trained.reader.model_dump(mode="json"))  # as bundle.json holds it
    cfg = ReplaySourceConfig(type="replay", path=mobifall_like)
    replayed = load_recordings(cfg, 6, bundle=record, model_rate_hz=50.0)
    assert [r.source for r in replayed] == [r.source for r in trained.recordings]
    assert all(r.sample_rate_hz == 25.0 for r in replayed)
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(replayed, trained.recordings))


# ------------------------------------------------------------------ the file reader, fuzzed

FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKENS = st.sampled_from(
    [
        "2847256045000",
        "1.5",
        "-3.1e2",
        "nan",
        "inf",
        "",
        " ",
        "x",
        "@DATA",
        "#",
        ",",
        ",,",
        "\r",
        "\t",
        "1e400",
        "0x1p3",
    ]
)
LINES = st.lists(st.lists(TOKENS, max_size=6).map(",".join), max_size=30).map("\n".join)


def _read(data: bytes, skip_bad: bool):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "FOL_acc_1_1.txt"
        path.write_bytes(data)
        try:
            return path, read_timed_file(path, skip_bad=skip_bad), None
        except DatasetError as exc:
            return path, None, str(exc)


def _check(data: bytes) -> None:
    path, read, error = _read(data, skip_bad=False)
    if error is not None:
        assert error.startswith(f"{path}:") and "\n" not in error, error
        assert error.split(":")[1].isdigit(), error  # the line number
    else:
        assert read is not None and read.values.shape == (len(read.stamps), 3) and read.skipped == 0
        assert np.isfinite(read.stamps).all() and np.isfinite(read.values).all()
    path, read, error = _read(data, skip_bad=True)
    assert error is None and read is not None, error
    assert np.isfinite(read.stamps).all() and np.isfinite(read.values).all()
    assert read.skipped == sum(read.reasons.values())


@FUZZ
@given(data=st.binary(max_size=400))
def test_the_reader_takes_any_bytes_as_a_one_line_error_or_counted_bad_lines(data):
    _check(data)


@FUZZ
@given(body=LINES, header=st.booleans())
def test_the_reader_takes_any_line_of_number_like_tokens(body, header):
    _check(((HEADER.format(subject=1) if header else "") + body).encode("utf-8"))


# ------------------------------------------------------------------ the real set


@pytest.mark.slow
@pytest.mark.skipif(not MOBIFALL.is_dir(), reason=f"MobiFall not present at {MOBIFALL} (shared data, not test data)")
def test_the_real_mobifall_set_reads_raw():
    ds = load_dataset(MOBIFALL)
    assert ds.format == "mobifall" and ds.sample_rate_hz == 50.0 and len(ds.channels) == 6
    assert len(set(ds.group_keys())) == 630  # trials with both an acc and a gyro file
    assert len(ds.labels) == 13 and len({r.subject for r in ds.recordings}) == 24
    pre = Preprocessing(sample_rate_hz=50.0, window=128, stride=64, channels=ds.channels)
    ws = make_window_set(ds, pre, skip_short=True)
    per_class = Counter(ds.labels[i] for i in ws.y)
    assert per_class["WAL"] > 2000 and per_class["FOL"] > 400 and min(per_class.values()) > 150
