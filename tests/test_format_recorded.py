"""Format ``recorded`` (edge_har.core.formats.recorded): sets of recording sessions read in place.

Sessions are written with the layout's own writers (write_session, RecordingWriter); each sample's
first channel holds its index in the session, so a test can tell exactly which samples a segment became.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_har.core.formats import DatasetError, detect_format, load_dataset, make_window_set
from edge_har.core.formats.recorded import GAP_PERIODS, pieces_of
from edge_har.core.preprocessing import Preprocessing
from edge_har.core.recording_layout import LabelSegment, RecordingMeta, write_session
from edge_har.device.recording import RecordingWriter

T0 = 1_765_000_000.0
RATE = 50.0


def meta(device: str = "pi-1", session: str = "20251206T054640Z", **kw) -> RecordingMeta:
    base = dict(
        device_id=device,
        session_id=session,
        started=T0,
        channels=["ax", "ay", "az"],
        sample_rate_hz=RATE,
        units="g",
        scale=[0.5],
        offset=[1.0, 2.0, 3.0],
        source="i2c_imu",
    )
    base.update(kw)
    return RecordingMeta(**base)  # type: ignore[arg-type]


def signal(n: int, t0: float = T0, rate: float = RATE) -> tuple[np.ndarray, np.ndarray]:
    """n samples; column 0 the sample's index, the others fixed."""
    k = np.arange(n)
    x = np.stack([k, np.full(n, 7.0), np.full(n, -1.0)], axis=1).astype(np.float32)
    return t0 + k / rate, x


def session(root: Path, device: str, sid: str, n: int, segs: list[LabelSegment], **kw) -> Path:
    s = root / device / sid
    write_session(s, meta(device, sid, **kw), *signal(n), segs)
    return s


def idx(rec) -> tuple[int, int]:
    return int(rec.samples[0, 0]), int(rec.samples[-1, 0])


def test_a_set_round_trips_and_windows_are_cut(tmp_path):
    session(tmp_path, "pi-1", "s1", 500, [LabelSegment("walk", T0, T0 + 4), LabelSegment("sit", T0 + 6, None)])
    session(tmp_path, "pi-2", "s2", 300, [LabelSegment("walk", T0 + 1, T0 + 5)], subject="bob")
    assert detect_format(tmp_path) == "recorded"
    ds = load_dataset(tmp_path)
    assert ds.format == "recorded" and ds.reader is not None and ds.reader.format == "recorded"
    assert ds.labels == ["sit", "walk"]
    assert ds.channels == ("ax", "ay", "az") and ds.sample_rate_hz == RATE and ds.units == "g"
    assert ds.scale == (0.5,) and ds.offset == (1.0, 2.0, 3.0)
    got = [(r.label, r.subject, *idx(r)) for r in ds.recordings]
    # start <= t < end: walk [0, 4 s) is samples 0..199; the open sit segment runs to the last sample
    assert got == [("walk", "pi-1", 0, 199), ("sit", "pi-1", 300, 499), ("walk", "bob", 50, 249)]
    assert ds.recordings[0].source == str(tmp_path / "pi-1/s1/part-00000.csv") + ":rows 2-201"
    assert all(r.sample_rate_hz == RATE for r in ds.recordings)
    assert np.array_equal(ds.recordings[1].samples[:, 1:], np.tile([7.0, -1.0], (200, 1)).astype(np.float32))
    assert ds.n_files == 6 and len(ds.file_list_sha256) == 64
    pre = Preprocessing(RATE, 50, 25, ds.channels, ds.scale, ds.offset)
    ws = make_window_set(ds, pre)
    assert len(ws.y) == 3 * ((200 - 50) // 25 + 1)
    assert sorted(set(ws.subjects.tolist())) == ["bob", "pi-1"]
    # scaled: raw * 0.5 + offset
    assert np.allclose(ws.x[0, :, 1], 7.0 * 0.5 + 2.0)


def test_columns_pick_channels_by_name(tmp_path):
    session(tmp_path, "pi-1", "s1", 100, [LabelSegment("walk", T0, None)])
    ds = load_dataset(tmp_path, columns=("az", "ax"))
    assert ds.channels == ("az", "ax")
    assert ds.recordings[0].samples[5].tolist() == [-1.0, 5.0]
    assert ds.offset == (3.0, 1.0)


def test_a_writer_session_with_rotated_parts_reads_as_one_stretch_per_label(tmp_path):
    s = tmp_path / "pi-1" / "20251206T054640Z"
    w = RecordingWriter(s, meta(), rotate_bytes=4000)
    t, x = signal(1000)
    w.set_label("walk", float(t[0]))
    for i in range(0, 600, 10):
        w.write(t[i : i + 10], x[i : i + 10])
    w.set_label("run", float(t[600]))
    for i in range(600, 1000, 10):
        w.write(t[i : i + 10], x[i : i + 10])
    w.close()
    assert len(list(s.glob("part-*.csv"))) > 5
    ds = load_dataset(tmp_path)
    assert [(r.label, *idx(r)) for r in ds.recordings] == [("walk", 0, 599), ("run", 600, 999)]
    assert re.fullmatch(r".*/part-00000\.csv:row 2 to part-000\d\d\.csv:row \d+", ds.recordings[0].source)
    assert np.array_equal(np.concatenate([r.samples for r in ds.recordings]), x)


def test_gaps_split_a_session_into_pieces(tmp_path):
    t, x = signal(300)
    t[100:] += 3.5 / RATE  # over 3 periods: a gap
    t[200:] += 1.5 / RATE  # a step of 2.5 periods: no gap
    write_session(tmp_path / "s", meta(), t, x, [LabelSegment("walk", T0, None)])
    ds = load_dataset(tmp_path)
    assert [idx(r) for r in ds.recordings] == [(0, 99), (100, 299)]
    assert pieces_of(np.array([0.0, 0.02, 0.01, 0.03]), RATE) == [(0, 2), (2, 4)]  # a step back in time
    assert GAP_PERIODS == 3.0


def test_unlabelled_samples_are_left_out_or_a_class(tmp_path, caplog):
    session(tmp_path, "pi-1", "s1", 300, [LabelSegment("walk", T0 + 1, T0 + 2)])
    session(tmp_path, "pi-1", "s2", 100, [])
    with caplog.at_level(logging.INFO, logger="edge_har.core.formats.recorded"):
        ds = load_dataset(tmp_path)
    assert [(r.label, *idx(r)) for r in ds.recordings] == [("walk", 50, 99)]
    assert "s2: no labels; the session contributes nothing" in caplog.text
    ds = load_dataset(tmp_path, unlabelled_class="other")
    assert [(r.label, *idx(r)) for r in ds.recordings] == [("other", 0, 49), ("walk", 50, 99), ("other", 100, 299)]


def test_a_set_without_labels_is_an_error_that_says_so(tmp_path):
    session(tmp_path, "pi-1", "s1", 100, [])
    with pytest.raises(DatasetError, match=r"no labelled samples in 1 session\(s\) \(1 without labels"):
        load_dataset(tmp_path)


def test_sessions_of_other_channels_or_rate_name_both_files(tmp_path):
    session(tmp_path, "pi-1", "s1", 100, [LabelSegment("walk", T0, None)])
    other = tmp_path / "pi-2" / "s2"
    write_session(other, meta("pi-2", "s2", channels=["gx", "gy", "gz"]), *signal(100))
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "pi-1/s1/recording.json") in msg and str(other / "recording.json") in msg
    assert "channels gx,gy,gz, but" in msg and "has ax,ay,az" in msg and "\n" not in msg
    (other / "recording.json").unlink()
    write_session(tmp_path / "pi-3" / "s3", meta("pi-3", "s3", sample_rate_hz=100.0), *signal(100))
    with pytest.raises(
        DatasetError, match=r"pi-3/s3/recording.json: sample_rate_hz 100, but .*s1/recording.json has 50;"
    ):
        load_dataset(tmp_path)
    shutil.rmtree(tmp_path / "pi-3")
    write_session(tmp_path / "pi-4" / "s4", meta("pi-4", "s4", scale=[0.5, 0.5, 0.5], offset=[1, 2, 3]), *signal(10))
    assert len(load_dataset(tmp_path).recordings) == 1  # one scale for all channels is the same as three equal ones
    write_session(tmp_path / "pi-5" / "s5", meta("pi-5", "s5", scale=None), *signal(10))
    with pytest.raises(DatasetError, match=r"pi-5/s5/recording.json: scale 1,1,1, but .* has 0.5,0.5,0.5;"):
        load_dataset(tmp_path)


def test_overlapping_labels_name_both_lines_or_are_dropped(tmp_path):
    segs = [
        LabelSegment("walk", T0, T0 + 2),
        LabelSegment("walk", T0 + 1, T0 + 3),
        LabelSegment("sit", T0 + 2.5, T0 + 4),
    ]
    session(tmp_path, "pi-1", "s1", 300, segs)
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "pi-1/s1/labels.csv") + ":4: segment sit")
    assert "overlaps line 3 (walk," in msg and "--interval-overlap drop" in msg
    ds = load_dataset(tmp_path, interval_overlap="drop")
    # walk merged over [0, 3 s), sit [2.5, 4 s): the contested [2.5, 3 s) belongs to neither
    assert [(r.label, *idx(r)) for r in ds.recordings] == [("walk", 0, 124), ("sit", 150, 199)]


def test_a_torn_line_is_counted_and_the_hash_follows_the_files(tmp_path):
    s = session(tmp_path, "pi-1", "s1", 100, [LabelSegment("walk", T0, None)])
    first = load_dataset(tmp_path)
    with open(s / "part-00000.csv", "a") as f:
        f.write("1765000002.000000,100,7")
    ds = load_dataset(tmp_path)
    assert sum(len(r) for r in ds.recordings) == 100
    assert ds.skipped == {"pi-1/s1/part-00000.csv": 1}
    assert ds.file_list_sha256 != first.file_list_sha256


def test_a_bad_file_is_a_dataset_error_naming_it(tmp_path):
    s = session(tmp_path, "pi-1", "s1", 10, [LabelSegment("walk", T0, None)])
    (s / "labels.csv").write_text("label,start,end\nwalk,x,\n")
    with pytest.raises(DatasetError, match=r"s1/labels.csv:2: start 'x' is not a number"):
        load_dataset(tmp_path)


def test_detection_goes_three_levels_down(tmp_path):
    deep = tmp_path / "a" / "b"
    session(deep, "pi-1", "s1", 100, [LabelSegment("walk", T0, None)])  # recording.json 4 levels down
    assert detect_format(tmp_path) == "folder"
    assert detect_format(tmp_path / "a") == "recorded"
    assert detect_format(deep / "pi-1" / "s1") == "recorded"
    assert len(load_dataset(deep / "pi-1" / "s1").recordings) == 1


def test_subject_split_keeps_a_subject_on_one_side(tmp_path):
    from edge_har.convert.splits import split_recordings

    for d in range(6):
        session(tmp_path, f"pi-{d}", "s1", 200, [LabelSegment("walk", T0, T0 + 2), LabelSegment("sit", T0 + 2, None)])
    ds = load_dataset(tmp_path)
    split = split_recordings(ds, method="subject", test_subjects=["pi-0", "pi-3"], val_fraction=0.0)
    test = {ds.recordings[i].subject for i in split.test}
    train = {ds.recordings[i].subject for i in split.train}
    assert test == {"pi-0", "pi-3"} and train == {"pi-1", "pi-2", "pi-4", "pi-5"}
    assert len(split_recordings(ds).test) > 0  # by recording, the default


# ------------------------------------------------------------------ properties


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.sampled_from([1.0, 1.0, 1.0, 2.0, 3.0, 3.5, 10.0, -1.0]), min_size=1, max_size=120),
    bounds=st.lists(st.tuples(st.integers(0, 140), st.integers(1, 40), st.sampled_from(["a", "b"])), max_size=5),
    open_end=st.booleans(),
)
def test_every_sample_lands_in_its_label_and_no_piece_spans_a_gap(tmp_path_factory, steps, bounds, open_end):
    t = T0 + np.concatenate([[0.0], np.cumsum(steps)]) / RATE
    n = len(t)
    x = np.stack([np.arange(n), np.zeros(n), np.zeros(n)], axis=1).astype(np.float32)
    segs, last = [], 0.0
    for start, length, label in sorted(bounds):
        s0 = max(float(start), last)
        segs.append(LabelSegment(label, T0 + s0 / RATE, T0 + (s0 + length) / RATE))
        last = s0 + length
    if open_end and segs:
        segs[-1] = LabelSegment(segs[-1].label, segs[-1].start, None)
    root = tmp_path_factory.mktemp("prop")
    write_session(root / "d" / "s", meta(), t, x, segs)
    try:
        ds = load_dataset(root)
    except DatasetError as exc:
        assert "no labelled samples" in str(exc)
        ds = None
    t_read = np.round(t, 6)
    covered: list[int] = []
    for rec in ds.recordings if ds else []:
        rows = rec.samples[:, 0].astype(int)
        assert np.all(np.diff(rows) == 1)
        dt = np.diff(t_read[rows])
        assert np.all((dt >= 0) & (dt <= GAP_PERIODS / RATE + 1e-6))
        assert all(any(s.label == rec.label and s.start <= t_read[r] < s.stop for s in segs) for r in rows)
        covered += rows.tolist()
    expected = [i for i in range(n) if any(s.start <= t_read[i] < s.stop for s in segs)]
    assert sorted(covered) == expected


_junk = st.one_of(
    st.binary(max_size=400),
    st.lists(
        st.sampled_from(
            [
                b"t,ax,ay,az\n",
                b"label,start,end\n",
                b"1765000000.0,1,2,3\n",
                b"walk,1765000000,\n",
                b",",
                b"\n",
                b'"',
                b"\x00",
                b"nan",
                b"1e999",
                b"-",
                b"1",
                b"\xff",
            ]
        ),
        max_size=30,
    ).map(b"".join),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_junk, which=st.sampled_from(["recording.json", "labels.csv", "part-00000.csv", "part-00001.csv"]))
def test_a_damaged_set_is_a_dataset_error_or_reads(tmp_path_factory, data, which):
    root = tmp_path_factory.mktemp("junk")
    s = session(root, "pi-1", "s1", 20, [LabelSegment("walk", T0, None)])
    (s / which).write_bytes(data)
    try:
        load_dataset(root)
    except DatasetError as exc:
        assert str(exc).strip() and "\n" not in str(exc)
