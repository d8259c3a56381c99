"""The UEA/UCR .ts format (edge_har.convert.ts_format): multivariate, already windowed, one case a line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_har.convert.datasets import DatasetError, detect_format, load_dataset, make_window_set
from edge_har.convert.splits import split_recordings
from edge_har.core.preprocessing import Preprocessing

HEADER = """# A tiny BasicMotions-like problem
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength true
@seriesLength 4
@classLabel true walking standing
@data
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def cases(k0: int, n: int) -> str:
    """Case k: dimension 1 = k, k+1, k+2, k+3; dimension 2 = -k...; label alternating."""
    lines = []
    for k in range(k0, k0 + n):
        d1 = ",".join(str(k + i) for i in range(4))
        d2 = ",".join(str(-k - i) for i in range(4))
        lines.append(f"{d1}:{d2}:{'walking' if k % 2 else 'standing'}")
    return "\n".join(lines) + "\n"


def test_a_ts_file_is_detected_and_each_case_is_a_recording(tmp_path):
    path = write(tmp_path / "Tiny.ts", HEADER + cases(0, 6))
    assert detect_format(path) == "ts"
    ds = load_dataset(path, sample_rate_hz=10.0, channels=("acc", "gyro"))
    assert ds.format == "ts" and ds.name == "Tiny"
    assert ds.labels == ["standing", "walking"] and ds.native_window == 4
    assert len(ds.recordings) == 6
    rec = ds.recordings[1]
    assert rec.label == "walking" and rec.samples.tolist() == [[1, -1], [2, -2], [3, -3], [4, -4]]
    assert rec.source.endswith("Tiny.ts:line 12")
    pre = Preprocessing(10.0, 4, 4, ds.channels, (1.0,), (0.0,))
    ws = make_window_set(ds, pre)
    assert ws.x.shape == (6, 4, 2)


def test_a_train_test_pair_is_the_predefined_split(tmp_path):
    write(tmp_path / "Tiny_TRAIN.ts", HEADER + cases(0, 8))
    write(tmp_path / "Tiny_TEST.ts", HEADER + cases(100, 4))
    assert detect_format(tmp_path) == "ts"
    ds = load_dataset(tmp_path, sample_rate_hz=10.0)
    assert len(ds.recordings) == 12
    split = split_recordings(ds, method="predefined", seed=0, val_fraction=0.25)
    assert sorted(int(ds.recordings[i].samples[0, 0]) for i in split.test) == [100, 101, 102, 103]
    assert len(split.train) + len(split.val) == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEADER + "1,2,3,4:1,2,3,4:running\n", r"Bad\.ts:11: class 'running' is not in @classLabel"),
        (HEADER + "1,2,3,4:1,2,3:walking\n", r"Bad\.ts:11: the dimensions differ in length \(4, 3\)"),
        (HEADER + "1,2,3,4:walking\n", r"Bad\.ts:11: 1 dimension\(s\) where @dimensions says 2"),
        (HEADER + "1,?,3,4:1,2,3,4:walking\n", r"Bad\.ts:11: dimension 1: '\?' is a missing value"),
        (HEADER + "1,2,3,4,5:1,2,3,4,5:walking\n", r"Bad\.ts:11: 5 values where @seriesLength says 4"),
        (HEADER + "1,x,3,4:1,2,3,4:walking\n", r"Bad\.ts:11: dimension 1: 'x' is not a number"),
        (HEADER.replace("@timeStamps false", "@timeStamps true"), r"Bad\.ts:3: timestamped \.ts files"),
        (HEADER.replace("@classLabel true walking standing", "@classLabel false"), r"Bad\.ts:9: @classLabel false"),
        (HEADER.replace("@data\n", ""), r"Bad\.ts: no @data line"),
        (HEADER, r"Bad\.ts: no cases after @data"),
    ],
)
def test_bad_ts_files_name_the_line(tmp_path, text, message):
    path = write(tmp_path / "Bad.ts", text)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path, sample_rate_hz=10.0)


def test_ts_needs_a_rate_and_takes_no_folder_options(tmp_path):
    path = write(tmp_path / "Tiny.ts", HEADER + cases(0, 2))
    with pytest.raises(DatasetError, match=r"record no rate; they need --sample-rate"):
        load_dataset(path)
    with pytest.raises(DatasetError, match="--subject-regex does not apply to format ts"):
        load_dataset(path, sample_rate_hz=10.0, subject_regex="x")


def test_unequal_lengths_have_no_native_window(tmp_path):
    header = HEADER.replace("@equalLength true", "@equalLength false").replace("@seriesLength 4\n", "")
    ds = load_dataset(write(tmp_path / "U.ts", header + "1,2,3:1,2,3:walking\n1,2:1,2:standing\n"), sample_rate_hz=1.0)
    assert ds.native_window is None and [len(r) for r in ds.recordings] == [3, 2]
    assert np.allclose(ds.recordings[0].samples[:, 1], [1, 2, 3])
