"""The recording layout (edge_har.core.recording_layout): recording.json, labels.csv, parts, sets of sessions.

Real files in a temporary folder; the readers get a hypothesis property test on arbitrary bytes
(only LayoutError or a clean result) plus one test per defect found.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_har.core.recording_layout import (
    LABELS_FILE,
    LAYOUT_FILE,
    MAX_LABELS_BYTES,
    MAX_META_BYTES,
    PART_RE,
    LabelSegment,
    LayoutError,
    RecordingMeta,
    find_overlap,
    format_rows,
    read_labels,
    read_meta,
    read_parts,
    read_parts_detail,
    session_dirs,
    write_labels,
    write_session,
)

T0 = 1_765_000_000.0


def meta(**kw) -> RecordingMeta:
    base = dict(
        device_id="pi-1",
        session_id="20251206T054640Z",
        started=T0,
        channels=["ax", "ay", "az"],
        sample_rate_hz=50.0,
        units="g",
        scale=[0.001],
        offset=None,
        source="i2c_imu",
    )
    base.update(kw)
    return RecordingMeta(**base)  # type: ignore[arg-type]


def samples(n: int, c: int = 3, rate: float = 50.0, t0: float = T0) -> tuple[np.ndarray, np.ndarray]:
    t = t0 + np.arange(n) / rate
    x = (np.arange(n * c, dtype=np.float32).reshape(n, c) * np.float32(0.37)) - 5
    return t, x


# ------------------------------------------------------------------ recording.json


def test_meta_round_trips_through_json(tmp_path):
    m = meta(subject="alice", model_id="m1", capture={"reason": "unsure"})
    again = RecordingMeta.from_json(json.loads(json.dumps(m.to_json())), "x")
    assert again == m
    assert again.effective_subject == "alice"
    assert meta().effective_subject == "pi-1"
    assert "capture" not in meta().to_json()


@pytest.mark.parametrize(
    "key,value,says",
    [
        ("format", "other", "'format'"),
        ("version", 2, "'version'"),
        ("version", True, "'version'"),
        ("device_id", "a/b", "'device_id'"),
        ("device_id", "..", "'device_id'"),
        ("session_id", "", "'session_id'"),
        ("started", "yesterday", "'started'"),
        ("channels", [], "'channels'"),
        ("channels", ["a", "a"], "unique"),
        ("channels", ["a,b"], "'channels'"),
        ("sample_rate_hz", 0, "'sample_rate_hz'"),
        ("sample_rate_hz", True, "'sample_rate_hz'"),
        ("scale", [1, 2], "'scale'"),
        ("offset", ["x"], "'offset'"),
        ("subject", "", "'subject'"),
        ("capture", [1], "'capture'"),
    ],
)
def test_a_bad_meta_key_is_named(key, value, says):
    d = meta().to_json()
    d[key] = value
    with pytest.raises(LayoutError) as err:
        RecordingMeta.from_json(d, "s/recording.json")
    msg = str(err.value)
    assert msg.startswith("s/recording.json: key ") and says in msg and "\n" not in msg


def test_unknown_meta_keys_are_ignored():
    d = meta().to_json()
    d["firmware"] = "1.2"
    assert RecordingMeta.from_json(d) == meta()


def test_read_meta_refuses_large_bad_json_and_nan(tmp_path):
    (tmp_path / LAYOUT_FILE).write_bytes(b" " * (MAX_META_BYTES + 1))
    with pytest.raises(LayoutError, match="over 64 KiB"):
        read_meta(tmp_path)
    (tmp_path / LAYOUT_FILE).write_text('{"format": \n nope}')
    with pytest.raises(LayoutError, match=r"recording.json:2: not valid JSON"):
        read_meta(tmp_path)
    d = meta().to_json()
    (tmp_path / LAYOUT_FILE).write_text(json.dumps(d).replace("50.0", "NaN"))
    with pytest.raises(LayoutError, match="not valid JSON"):
        read_meta(tmp_path)
    (tmp_path / LAYOUT_FILE).write_text("[" * 60000)
    with pytest.raises(LayoutError, match="not valid JSON"):
        read_meta(tmp_path)
    (tmp_path / LAYOUT_FILE).unlink()
    with pytest.raises(LayoutError, match="no such file"):
        read_meta(tmp_path)


# ------------------------------------------------------------------ labels.csv


def test_labels_round_trip_with_an_open_segment_and_quoting(tmp_path):
    segs = [
        LabelSegment("walk", T0, T0 + 10),
        LabelSegment("sit, down", T0 + 10, T0 + 12.5),
        LabelSegment("run", T0 + 20, None),
    ]
    write_labels(tmp_path, segs)
    text = (tmp_path / LABELS_FILE).read_text()
    assert text.splitlines()[0] == "label,start,end"
    assert text.splitlines()[3] == f"run,{T0 + 20:.6f},"
    got = read_labels(tmp_path)
    assert got == segs
    assert [s.line for s in got] == [2, 3, 4]
    assert list(tmp_path.iterdir()) == [tmp_path / LABELS_FILE]  # no temporary file left behind


def test_no_labels_file_is_no_segments(tmp_path):
    assert read_labels(tmp_path) == []


@pytest.mark.parametrize(
    "body,says",
    [
        ("label,begin,end\n", ":1: expected the header"),
        ("label,start,end\nwalk,1\n", ":2: 2 fields"),
        ("label,start,end\n,1,2\n", ":2: empty label"),
        ("label,start,end\nwalk,x,2\n", ":2: start 'x' is not a number"),
        ("label,start,end\nwalk,1,inf\n", ":2: end 'inf' is not a finite number"),
        ("label,start,end\nwalk,1,2\nsit,3,3\n", ":3: end 3 is not after start 3"),
        ("label,start,end\n" + "w" * 65 + ",1,2\n", ":2: label of 65 characters"),
        ('label,start,end\n"a\nb",1,2\n', "control character"),
        ("label,start,end\nwa\x00lk,1,2\n", "labels.csv:"),
        ("", "empty"),
        ("\ufefflabel,start,end\nwalk,1,x\n", ":2: end 'x'"),  # a byte order mark is not part of the header
    ],
)
def test_a_bad_labels_line_is_named(tmp_path, body, says):
    (tmp_path / LABELS_FILE).write_text(body)
    with pytest.raises(LayoutError) as err:
        read_labels(tmp_path)
    assert says in str(err.value) and str(err.value).startswith(str(tmp_path / LABELS_FILE))


def test_labels_over_the_bound_are_refused(tmp_path):
    (tmp_path / LABELS_FILE).write_bytes(b"label,start,end\n" + b"a,1,2\n" * (MAX_LABELS_BYTES // 6 + 1))
    with pytest.raises(LayoutError, match="over 4096 KiB"):
        read_labels(tmp_path)


@pytest.mark.parametrize(
    "seg,says",
    [
        (LabelSegment("", 1, 2), "empty label"),
        (LabelSegment("a\x00", 1, 2), "control character"),
        (LabelSegment("x" * 65, 1, 2), "65 characters"),
        (LabelSegment("a", float("nan"), 2), "finite"),
        (LabelSegment("a", 2, 2), "not after start"),
        (LabelSegment("a", 2, 2.0000001), "not after start"),  # equal at 6 decimals
    ],
)
def test_write_labels_validates_and_leaves_the_old_file(tmp_path, seg, says):
    write_labels(tmp_path, [LabelSegment("walk", 0, 1)])
    with pytest.raises(LayoutError, match=says):
        write_labels(tmp_path, [seg])
    assert read_labels(tmp_path) == [LabelSegment("walk", 0, 1)]


def test_find_overlap_names_different_labels_only():
    a, b, c = LabelSegment("walk", 0, 10), LabelSegment("walk", 5, 15), LabelSegment("sit", 15, None)
    assert find_overlap([a, b, c]) is None
    d = LabelSegment("run", 12, 13)
    assert find_overlap([a, b, c, d]) == (b, d)
    assert find_overlap([LabelSegment("x", 0, None), LabelSegment("y", 100, 101)]) is not None


# ------------------------------------------------------------------ parts and sessions


def test_values_read_back_as_the_same_float32():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32) * np.float32(1e3)
    x[0] = [0.1, 512, -1e-20]
    t = T0 + np.arange(200) * 0.02
    lines = format_rows(t, x).splitlines()
    assert lines[0].split(",")[1:] == ["0.1", "512", "-1e-20"]
    back = np.array([[float(v) for v in line.split(",")] for line in lines])
    assert np.array_equal(back[:, 1:].astype(np.float32), x)
    assert np.allclose(back[:, 0], t, atol=1e-6, rtol=0)


def test_write_session_reads_back(tmp_path):
    t, x = samples(120)
    segs = [LabelSegment("walk", T0, T0 + 1)]
    s = tmp_path / "set" / "pi-1" / "20251206T054640Z"
    write_session(s, meta(), t, x, segs)
    assert read_meta(s) == meta()
    assert read_labels(s) == segs
    t2, x2 = read_parts(s)
    assert np.array_equal(x2, x) and np.allclose(t2, t, atol=1e-6, rtol=0)
    assert x2.dtype == np.float32 and t2.dtype == np.float64
    assert sorted(p.name for p in s.iterdir()) == [LABELS_FILE, "part-00000.csv", LAYOUT_FILE]
    assert PART_RE.match("part-00000.csv") and not PART_RE.match("part-0.csv")
    with pytest.raises(LayoutError, match="already exists"):
        write_session(s, meta(), t, x, segs)
    with pytest.raises(LayoutError, match="do not fit 3 channels"):
        write_session(tmp_path / "other", meta(), t, x[:, :2], segs)


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    t, x = samples(10)
    write_session(tmp_path, meta(), t, x)
    part = tmp_path / "part-00000.csv"
    with open(part, "ab") as f:
        f.write(b"1765000001.000000,1.5,2")
    t2, x2 = read_parts(tmp_path)
    assert len(t2) == 10
    assert "incomplete" in caplog.text
    with open(part, "ab") as f:  # a zero-filled tail, as a power cut can leave it
        f.write(b"\x00" * 100)
    assert len(read_parts(tmp_path)[0]) == 10


def test_a_bad_complete_line_is_named(tmp_path):
    t, x = samples(5)
    write_session(tmp_path, meta(), t, x)
    part = tmp_path / "part-00000.csv"
    lines = part.read_text().splitlines(keepends=True)
    lines[3] = "1765000000.1,1,nan,3\n"
    part.write_text("".join(lines))
    with pytest.raises(LayoutError, match=r"part-00000.csv:4: column 3: 'nan' is not a finite number"):
        read_parts(tmp_path)
    lines[3] = "1765000000.1,1,3\n"
    part.write_text("".join(lines))
    with pytest.raises(LayoutError, match=r"part-00000.csv:4: 3 fields where the header has 4"):
        read_parts(tmp_path)
    part.write_text("t,ax,ay,gz\n")
    with pytest.raises(LayoutError, match=r"part-00000.csv:1: the header's channels \(ax,ay,gz\)"):
        read_parts(tmp_path)


def test_parts_are_read_in_number_order_with_their_lines(tmp_path):
    t, x = samples(30)
    write_session(tmp_path, meta(), t[:10], x[:10])
    header = "t,ax,ay,az\n"
    (tmp_path / "part-00010.csv").write_text(header + format_rows(t[20:], x[20:]))
    (tmp_path / "part-00002.csv").write_text(header + format_rows(t[10:20], x[10:20]))
    (tmp_path / "part-00003.csv").write_text("")  # created, nothing written yet
    got = read_parts_detail(tmp_path)
    assert [p.name for p in got.parts] == ["part-00000.csv", "part-00002.csv", "part-00003.csv", "part-00010.csv"]
    assert np.array_equal(got.samples, x)
    assert got.part_of.tolist() == [0] * 10 + [1] * 10 + [3] * 10
    assert got.line_of[:3].tolist() == [2, 3, 4]


def test_session_dirs_finds_sessions_up_to_three_levels(tmp_path):
    t, x = samples(3)
    for rel in ["a/s1", "a/s2", "b/c/s3", "b/c/d/e/too-deep", ".hidden/s"]:
        write_session(tmp_path / rel, meta(session_id=rel.rsplit("/", 1)[-1]), t, x)
    assert session_dirs(tmp_path) == [tmp_path / "a/s1", tmp_path / "a/s2", tmp_path / "b/c/s3"]
    assert session_dirs(tmp_path / "a" / "s1") == [tmp_path / "a/s1"]


# ------------------------------------------------------------------ readers on arbitrary bytes


def _session(root: Path) -> Path:
    t, x = samples(4)
    write_session(root, meta(), t, x, [LabelSegment("walk", T0, None)])
    return root


_bytes = st.one_of(
    st.binary(max_size=600),
    st.lists(
        st.sampled_from(
            [
                b"t,ax,ay,az\n",
                b"label,start,end\n",
                b"1765000000.0,1,2,3\n",
                b"walk,1,2\n",
                b",",
                b"\n",
                b"\r",
                b'"',
                b"\x00",
                b"nan",
                b"1e999",
                b"{",
                b"}",
                b'"channels":',
                b"[",
                b"]",
                b"\xff",
                b"-",
                b"1",
            ]
        ),
        max_size=40,
    ).map(b"".join),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_bytes, which=st.sampled_from([LAYOUT_FILE, LABELS_FILE, "part-00000.csv", "part-00001.csv"]))
def test_readers_on_arbitrary_bytes_raise_only_layout_errors(tmp_path_factory, data, which):
    root = _session(tmp_path_factory.mktemp("fuzz"))
    (root / which).write_bytes(data)
    for read in (read_meta, read_labels, read_parts):
        try:
            read(root)
        except LayoutError as exc:
            assert str(exc) and "\n" not in str(exc) and "\r" not in str(exc)
