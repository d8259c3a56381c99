"""A timestamp column in the table formats (long CSV, folder, file-name labels): each recording
interpolated by its stamps onto one regular rate, split at gaps (pieces in one split group, counted
in ``Dataset.resampling``), stamps read as float64; the reader record keeps the options with their
defaults and what the data decided, and the device's replay cuts the same windows bit for bit.

The property test feeds arbitrary tables with a timestamp column: each reads, or is refused with one
DatasetError line naming the file or the column (``EDGE_HAR_FUZZ_EXAMPLES`` raises the count).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge_har.core.formats import DatasetError, ReaderRecord, load_dataset, load_recorded, make_window_set
from edge_har.core.formats.mobifall import MobiFallFormat
from edge_har.core.preprocessing import Preprocessing
from edge_har.core.timeseries import resample

EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "60"))
EPOCH_MS = 1_767_000_000_000.0  # December 2025 in milliseconds since 1970


def jittered(
    n: int, rate: float, rng: np.random.Generator, start: float = 0.0, gap_at: int | None = None
) -> np.ndarray:
    """``n`` stamps in seconds at about ``rate`` (10% jitter), with a 1 s pause before sample ``gap_at``."""
    steps = (1.0 / rate) * rng.uniform(0.9, 1.1, size=n)
    steps[0] = 0.0
    if gap_at is not None:
        steps[gap_at] = 1.0
    return start + np.cumsum(steps)


def write_csv(path: Path, rng: np.random.Generator, unit_factor: float = 1e3, start: float = EPOCH_MS) -> Path:
    """A long CSV ``t,activity,user,ax,ay,az``: three recordings at about 100 Hz, ``t`` in ms since 1970;
    the second has a 1 s pause in the middle."""
    lines = ["t,activity,user,ax,ay,az"]
    t0 = 0.0
    for k, (label, user) in enumerate([("walk", "u1"), ("sit", "u1"), ("walk", "u2")]):
        t = jittered(300, 100.0, rng, t0, gap_at=150 if k == 1 else None)
        values = np.round(rng.normal(0, 100, size=(len(t), 3)))
        for stamp, v in zip(t, values):
            lines.append(f"{start + stamp * unit_factor:.3f},{label},{user},{v[0]:g},{v[1]:g},{v[2]:g}")
        t0 = t[-1] + 0.01
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_long_csv_is_resampled_by_its_timestamp_column_and_split_at_a_gap(tmp_path):
    path = write_csv(tmp_path / "log.csv", np.random.default_rng(1))
    ds = load_dataset(path, label_column="activity", subject_column="user", timestamp_column="t", resample_rate=50)
    assert ds.sample_rate_hz == 50.0 and ds.channels == ("ax", "ay", "az")
    assert [r.label for r in ds.recordings] == ["walk", "sit", "sit", "walk"]  # the pause splits the second
    assert ds.recordings[1].source.endswith("(piece 1 of 2)") and ds.recordings[2].source.endswith("(piece 2 of 2)")
    groups = ds.group_keys()
    assert groups[1] == groups[2] and len(set(groups)) == 3  # the pieces stay on one side of a split
    assert all(r.samples.dtype == np.float32 and r.sample_rate_hz == 50.0 for r in ds.recordings)
    for r in ds.recordings:  # ~3 s at 100 Hz -> ~50 Hz
        assert 60 <= len(r) <= 160
    summary = ds.describe()["resampling"]
    assert summary["to_hz"] == 50.0 and 95 < summary["from_hz"] < 105 and summary["timestamp_unit"] == "ms"
    assert summary["gaps"] == 1 and summary["pieces"] == 4 and summary["recordings_in"] == 3
    assert summary["samples_in"] == 900 and summary["dropped_stamps"] == {
        "duplicate": 0,
        "out_of_order": 0,
        "non_finite": 0,
    }
    assert summary["max_gap_s"] == 0.25  # the default floor: five 10 ms periods are less
    record = ds.describe()["reader"]["options"]
    assert record["timestamp_unit"] == "ms" and record["resample_rate"] == 50.0 and record["max_gap"] == 0.25


def test_epoch_milliseconds_keep_their_precision(tmp_path):
    """Regular 50 Hz stamps in ms since 1970: read as float64 every grid point lands on a stamp and the
    samples come back unchanged; read as float32 (a 131 s step there) they would collapse."""
    root = tmp_path / "set"
    rng = np.random.default_rng(2)
    written = {}
    for label in ("a", "b"):
        t = EPOCH_MS + np.arange(200) * 20.0
        values = rng.integers(-500, 500, size=(200, 2)).astype(np.float64)
        (root / label).mkdir(parents=True)
        np.savetxt(root / label / "r.csv", np.column_stack([t, values]), fmt="%.0f", delimiter=",")
        written[label] = values
    ds = load_dataset(root, timestamp_column="0")
    assert ds.format == "folder" and ds.sample_rate_hz == pytest.approx(50.0)
    assert ds.resampling is not None and ds.resampling["timestamp_unit"] == "ms"
    for r in ds.recordings:
        assert r.samples.tobytes() == written[r.label].astype(np.float32).tobytes()
    assert np.unique(np.float32(EPOCH_MS + np.arange(200) * 20.0)).size < 10  # what float32 stamps would be


def test_a_folder_takes_the_timestamp_column_by_header_name_and_the_rest_by_columns(tmp_path):
    root = tmp_path / "set"
    rng = np.random.default_rng(3)
    for label in ("walk", "sit"):
        t = jittered(400, 200.0, rng) * 1e9 + 5e15  # ns since boot
        values = rng.normal(size=(400, 3))
        lines = ["time_ns,acc_x,acc_y,acc_z"] + [f"{s:.0f},{v[0]:.5f},{v[1]:.5f},{v[2]:.5f}" for s, v in zip(t, values)]
        (root / label).mkdir(parents=True)
        (root / label / "rec.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset(
        root, timestamp_column="time_ns", timestamp_unit="ns", resample_rate=50, columns=("acc_z", "acc_x")
    )
    assert ds.sample_rate_hz == 50.0 and ds.channels == ("acc_z", "acc_x") and ds.columns == [2, 0]
    assert all(r.samples.shape[1] == 2 for r in ds.recordings)
    expected = resample(
        np.loadtxt(root / "sit" / "rec.csv", delimiter=",", skiprows=1)[:, 0],
        np.loadtxt(root / "sit" / "rec.csv", delimiter=",", skiprows=1, dtype=np.float64)[:, 1:].astype(np.float32),
        50.0,
        max_gap_s=0.25,
        unit="ns",
    )
    sit = next(r for r in ds.recordings if r.label == "sit")
    assert sit.samples.tobytes() == expected.segments[0].samples[:, [2, 0]].tobytes()
    with pytest.raises(DatasetError, match=r"--timestamp-column 'clock': no such column .*time_ns, acc_x"):
        load_dataset(root, timestamp_column="clock")


def test_file_name_labels_with_a_timestamp_column_in_seconds(tmp_path):
    root = tmp_path / "named"
    rng = np.random.default_rng(4)
    for s in ("s1", "s2"):
        for label in ("fall", "walk"):
            t = jittered(300, 100.0, rng, gap_at=200)
            path = root / s / f"{label}_1.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(path, np.column_stack([rng.normal(size=(300, 2)), t]), fmt="%.6f", delimiter=",")
    ds = load_dataset(
        root, name_regex=r"(?P<subject>s\d)/(?P<label>[a-z]+)_(?P<trial>\d)\.csv$", timestamp_column="2", max_gap=0.5
    )
    assert ds.format == "names" and ds.channels == ("ch0", "ch1") and 95 < ds.sample_rate_hz < 105
    assert len(ds.recordings) == 8 and ds.resampling is not None and ds.resampling["gaps"] == 4
    assert len(set(ds.group_keys())) == 4  # each trial's two pieces in one group


def test_the_flags_name_the_formats_that_take_them_and_read_a_set(tmp_path):
    import argparse

    from edge_har.core.formats.cli import add_dataset_arguments, dataset_from_args

    parser = argparse.ArgumentParser(add_help=False)
    add_dataset_arguments(parser)
    actions = {a.dest: a for a in parser._actions}  # noqa: SLF001
    for dest in ("timestamp_column", "timestamp_unit", "resample_rate", "max_gap"):
        assert actions[dest].default is None
    assert tuple(actions["timestamp_unit"].choices) == ("auto", "s", "ms", "us", "ns")
    assert (
        "csv" in actions["max_gap"].help and "folder" in actions["max_gap"].help and "names" in actions["max_gap"].help
    )
    path = write_csv(tmp_path / "log.csv", np.random.default_rng(8))
    args = parser.parse_args(
        ["--data", str(path), "--label-column", "activity", "--timestamp-column", "t", "--timestamp-unit", "ms"]
        + ["--resample-rate", "40", "--max-gap", "2"]
    )
    ds = dataset_from_args(args)
    assert ds.sample_rate_hz == 40.0 and len(ds.recordings) == 3  # a 1 s pause is under --max-gap 2
    assert ds.resampling is not None and ds.resampling["gaps"] == 0 and ds.resampling["max_gap_s"] == 2.0


def test_resampling_options_need_a_timestamp_column(tmp_path):
    path = write_csv(tmp_path / "log.csv", np.random.default_rng(5))
    with pytest.raises(DatasetError, match=r"log\.csv: --max-gap needs --timestamp-column"):
        load_dataset(path, label_column="activity", sample_rate=100, max_gap=0.5)
    with pytest.raises(DatasetError, match=r"--resample-rate \(format csv\)"):
        load_dataset(path, label_column="activity", timestamp_column="t", resample_rate=-3)


def test_a_too_large_grid_is_refused_before_memory_is_spent(tmp_path):
    path = write_csv(tmp_path / "log.csv", np.random.default_rng(6), unit_factor=1e5, start=0.0)
    with pytest.raises(DatasetError, match=r"log\.csv:rows 2-301: .* over 50,000,000 samples; check --timestamp-unit"):
        # a 10 ms step written in units of 10 us, read as seconds: steps of 1000 s, bridged by the gap bound
        load_dataset(
            path, label_column="activity", timestamp_column="t", timestamp_unit="s", max_gap=3600, resample_rate=1000
        )


# ------------------------------------------------------------------ the reader record


def test_the_record_holds_the_defaults_so_a_later_default_cannot_change_a_replay(tmp_path, monkeypatch):
    from tests.test_format_mobifall import make_set

    root = make_set(tmp_path / "m")
    ds = load_dataset(root, sensors=("acc",))
    record = ReaderRecord.model_validate(json.loads(json.dumps(ds.describe()["reader"])))
    assert record.options["resample_rate"] == 50.0 and record.options["max_gap"] == 0.3
    monkeypatch.setitem(MobiFallFormat.defaults, "resample_rate", 25.0)  # a later version's default
    again = load_recorded(root, record)
    assert again.sample_rate_hz == 50.0
    assert [r.samples.tobytes() for r in again.recordings] == [r.samples.tobytes() for r in ds.recordings]
    old = load_recorded(root, {"format": "mobifall", "options": {"sensors": ["acc"]}})  # an older bundle's record
    assert old.sample_rate_hz == 25.0 and old.recordings  # read, with the defaults in force


# ------------------------------------------------------------------ the device reads what convert read


def test_a_replay_of_a_timestamped_csv_cuts_convert_s_windows_bit_for_bit(tmp_path):
    """Convert's windows (the data set, then the model's 50 Hz and windows) against the replay source
    built from bundle.json's reader record, through the device's streaming windowing."""
    from edge_har.device.runtime import Windowing
    from edge_har.device.sources.replay import ReplaySource, ReplaySourceConfig, bundle_reader

    path = write_csv(tmp_path / "log.csv", np.random.default_rng(7))
    ds = load_dataset(path, label_column="activity", subject_column="user", timestamp_column="t", scale=(0.01,))
    assert ds.sample_rate_hz != 50.0  # the data's own rate, about 100 Hz: the model's rate is another step
    pre = Preprocessing(sample_rate_hz=50.0, window=32, stride=16, channels=ds.channels, scale=ds.scale)
    expected = make_window_set(ds, pre).x
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(json.dumps({"provenance": {"dataset": ds.describe()}}))
    cfg = ReplaySourceConfig(type="replay", path=path, realtime=False, chunk_samples=7)
    source = ReplaySource(cfg, n_channels=3, default_rate_hz=50.0, bundle=bundle_reader(bundle))
    source.start()
    assert source.rate_hz == ds.sample_rate_hz
    windowing = Windowing(pre, source.rate_hz)
    got = []
    while not source.finished:
        chunk = source.read(0.01)
        if chunk is not None:
            got += [w.data for w in windowing.push(chunk)]
    assert len(got) == len(expected) > 0
    raw = np.stack(got).astype(np.float32)
    # the device's windows are normalised by the model's statistics; none here, so they are scaled only
    assert raw.tobytes() == expected.astype(np.float32).tobytes()


# ------------------------------------------------------------------ any table with a timestamp column


TOKENS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "x", "nan", "1e400", "-0", "0x10", " ", "1,5", '"']),
)
STAMPS = st.one_of(
    st.floats(min_value=-1e19, max_value=1e19, allow_nan=False).map(repr),
    st.integers(0, 2**63).map(str),
    TOKENS,
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    rows=st.lists(st.tuples(STAMPS, st.sampled_from(["a", "b", ""]), TOKENS, TOKENS), min_size=0, max_size=30),
    regular=st.booleans(),
    unit=st.sampled_from([None, "auto", "s", "ms", "us", "ns"]),
    rate=st.one_of(st.none(), st.floats(0.5, 200)),
    gap=st.one_of(st.none(), st.floats(0.001, 10)),
    layout=st.sampled_from(["csv", "folder"]),
    skip_bad=st.booleans(),
)
def test_any_table_with_a_timestamp_column_reads_or_is_refused_in_one_line(
    tmp_path_factory, rows, regular, unit, rate, gap, layout, skip_bad
):
    base = tmp_path_factory.mktemp("ts")
    if regular:  # a plausible clock under the noise, so reads succeed too
        rows = [(repr(1000.0 + 10.0 * i), lbl, a, b) for i, (_, lbl, a, b) in enumerate(rows)]
    options = {"timestamp_column": "t", "timestamp_unit": unit, "resample_rate": rate, "max_gap": gap}
    if layout == "csv":
        path = base / "log.csv"
        path.write_text("t,label,a,b\n" + "".join(f"{t},{lbl},{a},{b}\n" for t, lbl, a, b in rows))
        options["label_column"] = "label"
    else:
        path = base
        (base / "c").mkdir()
        (base / "c" / "r.csv").write_text("t,a,b\n" + "".join(f"{t},{a},{b}\n" for t, _, a, b in rows))
    try:
        ds = load_dataset(path, format=layout, skip_bad=skip_bad, **options)
    except DatasetError as exc:
        text = str(exc)
        assert "\n" not in text and (str(path) in text or str(base) in text or "--timestamp-column" in text), text
        event("refused in one line")
        return
    event("read")
    assert ds.sample_rate_hz > 0 and ds.resampling is not None and ds.recordings
    for r in ds.recordings:
        # the channels are what the reader makes of the noise (a CSV's column of text is none, a '1,5' two)
        assert r.samples.dtype == np.float32 and r.samples.shape[1] == len(ds.channels) >= 1
        assert np.isfinite(r.samples).all() and r.sample_rate_hz == ds.sample_rate_hz
