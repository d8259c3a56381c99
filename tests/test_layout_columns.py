"""Choosing and scaling columns, and lines that end with a delimiter or terminator (``1,2,3;``).

Files are written here; the loaders are the real ones (``edge_har.core.recordings``
is also the device replay's reader, whose own tests stay in test_recordings.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_har.convert.datasets import DatasetError, load_dataset
from edge_har.core.recordings import RecordingError, read_samples_result


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


TERMINATED = "1,2,3;\n4,5,6;\n7,8,9;\n"


def test_lines_ending_with_a_terminator_keep_their_first_line(tmp_path):
    result = read_samples_result(write(tmp_path / "r1.txt", TERMINATED))
    assert result.header is None
    assert result.delimiter == ","
    assert result.samples.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize(
    ("text", "delimiter", "values"),
    [
        ("1;2;3;\n4;5;6;\n", ";", [[1, 2, 3], [4, 5, 6]]),
        ("1,2,3,\n4,5,6,\n", ",", [[1, 2, 3], [4, 5, 6]]),
        ("1,5;2,5;\n3,5;4,5;\n", ";", [[1.5, 2.5], [3.5, 4.5]]),  # decimal commas, a semicolon terminator
        ("1 2 3;\n4 5 6 ;\n", "whitespace", [[1, 2, 3], [4, 5, 6]]),
        ("1,2,3;\n4,5,6\n", ",", [[1, 2, 3], [4, 5, 6]]),  # the terminator only where a line has it
    ],
)
def test_other_terminated_lines(tmp_path, text, delimiter, values):
    result = read_samples_result(write(tmp_path / "r.txt", text))
    assert result.header is None and result.delimiter == delimiter
    assert result.samples.tolist() == values


def test_a_header_still_reads_as_one(tmp_path):
    result = read_samples_result(write(tmp_path / "r.txt", "ax,ay,az;\n1,2,3;\n"))
    assert result.header == ("ax", "ay", "az")
    assert result.samples.tolist() == [[1, 2, 3]]


def test_a_one_field_line_with_delimiters_inside_is_never_a_header(tmp_path):
    # ';;' leaves '1,2,3;' after the terminator: one field '1,2,3'. Were it taken as a header, the
    # error would point at line 2 (or, with skip_bad, report every line malformed); it is line 1.
    with pytest.raises(RecordingError, match=r"r\.txt:1: text '1,2,3' in a number column"):
        read_samples_result(write(tmp_path / "r.txt", "1,2,3;;\n4,5,6;;\n"))


def test_the_issue_reproduction_loads_every_line(tmp_path):
    for c in ("A", "B"):
        write(tmp_path / c / "r1.txt", TERMINATED)
    ds = load_dataset(tmp_path, sample_rate_hz=1.0)
    assert [r.samples.tolist() for r in ds.recordings] == [[[1, 2, 3], [4, 5, 6], [7, 8, 9]]] * 2


# ------------------------------------------------------------------ choosing and scaling columns


def nine_columns(root: Path) -> Path:
    """Two classes, two recordings each, 9 columns: column c holds 10 * c + row."""
    for label in ("walk", "sit"):
        for k in range(2):
            rows = [" ".join(str(10 * c + i) for c in range(9)) for i in range(20)]
            write(root / label / f"r{k}.txt", "\n".join(rows) + "\n")
    return root


def test_columns_by_index_with_names_for_the_chosen_ones_and_per_column_scale(tmp_path):
    ds = load_dataset(
        nine_columns(tmp_path),
        sample_rate_hz=10.0,
        columns=("6", "7", "8"),
        channels=("ax", "ay", "az"),
        scale=(2.0, 3.0, 4.0),
        offset=(1.0,),
    )
    assert ds.channels == ("ax", "ay", "az")
    assert ds.scale == (2.0, 3.0, 4.0) and ds.offset == (1.0,)
    assert ds.recordings[0].samples[0].tolist() == [60, 70, 80]
    assert ds.describe()["columns"] == [6, 7, 8]


def test_columns_by_name_when_channels_name_every_column(tmp_path):
    names = ("t", "ax", "ay", "az", "gx", "gy", "gz", "mx", "my")
    ds = load_dataset(nine_columns(tmp_path), sample_rate_hz=10.0, channels=names, columns=("gz", "ax"))
    assert ds.channels == ("gz", "ax")
    assert ds.recordings[0].samples[3].tolist() == [63, 13]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"columns": ("9",)}, r"--columns 9: the recordings have 9 columns \(0\.\.8\)"),
        ({"columns": ("bz",)}, r"--columns 'bz': no such column; the columns are ch0, ch1"),
        ({"columns": ("1", "1")}, "picks a column twice"),
        (
            {"columns": ("1", "2"), "channels": ("a", "b", "c")},
            r"names 3 channel\(s\); give one per column of the file \(9\)",
        ),
        ({"columns": ("1", "2"), "scale": (1.0, 2.0, 3.0)}, r"--scale has 3 values"),
        ({"channels": ("a", "b", "c")}, "--channels names 3 channel"),
    ],
)
def test_column_errors_name_the_option(tmp_path, options, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(nine_columns(tmp_path), sample_rate_hz=10.0, **options)


def test_columns_of_a_long_csv_pick_by_header_and_channels_rename(tmp_path):
    path = write(
        tmp_path / "log.csv",
        "t,label,a,b,c\n" + "".join(f"{i},{'walk' if i < 5 else 'sit'},{i},{10 + i},{20 + i}\n" for i in range(10)),
    )
    ds = load_dataset(path, label_col="label", sample_rate_hz=5.0, columns=("c", "a"), channels=("z", "x"))
    assert ds.channels == ("z", "x")
    assert ds.recordings[0].samples[0].tolist() == [20, 0]


def test_classes_keeps_only_those(tmp_path):
    ds = load_dataset(nine_columns(tmp_path), sample_rate_hz=10.0, classes=("sit",))
    assert ds.labels == ["sit"] and {r.label for r in ds.recordings} == {"sit"}
    with pytest.raises(DatasetError, match=r"--classes run: not a class of this data set \(sit, walk\)"):
        load_dataset(nine_columns(tmp_path), sample_rate_hz=10.0, classes=("run",))


def test_hmp_style_scaling_survives_column_choice(tmp_path):
    ds = load_dataset(nine_columns(tmp_path), sample_rate_hz=10.0, columns=("0",), scale=(0.5,), offset=(-1.0,))
    assert ds.scale == (0.5,) and ds.offset == (-1.0,)
    assert np.allclose(ds.recordings[0].samples[:, 0], np.arange(20))


def test_a_preset_still_refuses_scaling_when_columns_are_picked(tmp_path):
    for label in ("Walk", "Sit"):
        write(tmp_path / label / f"Accelerometer-2011-03-24-10-00-00-{label.lower()}-f1.txt", "1 2 3\n" * 40)
    ds = load_dataset(tmp_path, columns=("z", "x"))
    assert ds.format == "hmp" and ds.channels == ("z", "x") and ds.scale == (3 / 63,)
    with pytest.raises(DatasetError, match="--scale does not apply to format hmp"):
        load_dataset(tmp_path, columns=("x",), scale=(1.0,))


def test_columns_by_the_files_own_header_names(tmp_path):
    for label in ("walk", "sit"):
        write(tmp_path / label / "r1.csv", "t,ax,ay,az,gx;\n" + "".join(f"{i},1,2,3,4;\n" for i in range(20)))
    ds = load_dataset(tmp_path, sample_rate_hz=10.0, columns=("ax", "gx"))
    assert ds.channels == ("ax", "gx") and ds.recordings[0].samples[0].tolist() == [1, 4]
    assert load_dataset(tmp_path, sample_rate_hz=10.0).channels == ("ch0", "ch1", "ch2", "ch3", "ch4")  # as before
