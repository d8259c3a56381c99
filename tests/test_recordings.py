"""edge_har.core.recordings: the readers the workstation loaders and the device's replay share.

Every test writes its own small files; none reads the shared data sets.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge_har.core.recordings import (
    RecordingError,
    list_folder_files,
    load_folder_recordings,
    load_long_csv_recordings,
    read_long_csv,
    read_samples,
    read_samples_result,
)


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


# ------------------------------------------------------------------ one file


@pytest.mark.parametrize(
    "body",
    [
        "1 2 3\n4 5 6\n",
        "1\t2\t3\n4\t5\t6\n",
        "1,2,3\n4,5,6\n",
        "1;2;3\n4;5;6\n",
        "1 , 2 , 3\n4 , 5 , 6\n",
        "1,2,3,\n4,5,6,\n",  # one trailing delimiter, as some exporters write
        "  1   2  3\n\n\n4 5    6   \n",  # padding and blank lines
        "1.0e0 2.0 3\n+4 5. 6.000\n",
    ],
    ids=["space", "tab", "comma", "semicolon", "spaced-comma", "trailing-comma", "padding", "number-forms"],
)
def test_delimiter_variants_read_the_same(tmp_path, body):
    f = write(tmp_path / "r.txt", body)
    result = read_samples_result(f)
    assert result.samples.dtype == np.float32
    assert result.samples.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert result.skipped == 0


def test_crlf_files_as_hmp_ships_them(tmp_path):
    f = write(tmp_path / "r.txt", "32 47 40\n32 48 37\n", newline="\r\n")
    assert read_samples(f).tolist() == [[32, 47, 40], [32, 48, 37]]


def test_semicolon_files_may_use_decimal_commas(tmp_path):
    f = write(tmp_path / "r.csv", "ax;ay\n0,5;-1,25\n2;3.5\n")
    result = read_samples_result(f)
    assert result.delimiter == ";" and result.header == ("ax", "ay")
    assert result.samples.tolist() == [[0.5, -1.25], [2.0, 3.5]]


def test_header_line_is_kept_apart_and_line_numbers_count_it(tmp_path):
    f = write(tmp_path / "r.csv", "ax,ay,az\n1,2,3\n\n4,5,6\n")
    result = read_samples_result(f)
    assert result.header == ("ax", "ay", "az")
    assert result.samples.shape == (2, 3)
    assert result.line_numbers.tolist() == [2, 4]


@pytest.mark.parametrize(
    "body, expected",
    [
        ("1 2 3\n4 5\n7 8 9\n", r"r\.txt:2: 2 columns where the file's other lines have 3: '4 5'"),
        ("1 2 3\n4 x 6\n", r"r\.txt:2: text 'x' in a number column \(column 2\)"),
        ("1 2 3\n4 nan 6\n", r"r\.txt:2: a non-finite value 'nan' \(column 2\)"),
        ("1,2,3\n4,,6\n", r"r\.txt:2: empty field in column 2"),
        ("x y z\n1 2 3\n4 5 6\nx y z\n", r"r\.txt:4: text 'x' in a number column"),
        ("1 2 3\n4 5 6 7\n8 9 10\n", r"r\.txt:2: 4 columns"),
        ("", r"r\.txt: empty file"),
        ("\n  \n\n", r"r\.txt: empty file"),
        ("a b c\n", r"r\.txt: a header line \(a, b, c\) but no samples"),
        ("1 b c\n2 3 4\n", r"r\.txt:1: text 'b' in a number column"),
    ],
    ids=[
        "ragged",
        "text",
        "nan",
        "empty-field",
        "late-header",
        "too-many",
        "empty",
        "blank",
        "header-only",
        "half-header",
    ],
)
def test_bad_lines_are_named_by_file_and_line(tmp_path, body, expected):
    f = write(tmp_path / "r.txt", body)
    with pytest.raises(RecordingError, match=expected):
        read_samples(f)


def test_expected_channel_count_is_checked(tmp_path):
    f = write(tmp_path / "r.txt", "1 2\n3 4\n")
    with pytest.raises(RecordingError, match=r"r\.txt:1: 2 columns where 3 are expected"):
        read_samples(f, n_channels=3)
    assert read_samples(f, n_channels=2).shape == (2, 2)


def test_start_line_shifts_the_line_in_messages(tmp_path):
    f = write(tmp_path / "r.txt", "1 2\n3 y\n")
    with pytest.raises(RecordingError, match=r"r\.txt:11: text 'y'"):
        read_samples(f, start_line=10)


def test_not_a_text_file_and_missing_file(tmp_path):
    f = tmp_path / "r.txt"
    f.write_bytes(b"1 2 3\n\xff\xfe\x00\x01\n")
    with pytest.raises(RecordingError, match=r"r\.txt: not a UTF-8 text file"):
        read_samples(f)
    with pytest.raises(RecordingError, match=r"nope\.txt: cannot read"):
        read_samples(tmp_path / "nope.txt")


def test_skip_bad_drops_counts_and_warns(tmp_path, caplog):
    f = write(tmp_path / "r.txt", "1 2 3\n4 x 6\n7 8\n9 9 9\n1 inf 1\n")
    with caplog.at_level(logging.WARNING, logger="edge_har.core.recordings"):
        result = read_samples_result(f, skip_bad=True)
    assert result.skipped == 3 and result.bad_lines == [2, 3, 5]
    assert result.samples.tolist() == [[1, 2, 3], [9, 9, 9]]
    assert result.line_numbers.tolist() == [1, 4]
    assert "skipped 3 malformed line(s) of 5" in caplog.text and "r.txt:2" in caplog.text


def test_skip_bad_when_the_first_line_is_the_odd_one(tmp_path):
    """The expected width is what most lines have, so one bad first line costs one line, not the file."""
    f = write(tmp_path / "r.txt", "1 2\n" + "1 2 3\n" * 5)
    result = read_samples_result(f, skip_bad=True)
    assert result.skipped == 1 and result.samples.shape == (5, 3)


def test_skip_bad_with_nothing_left_is_still_an_error(tmp_path):
    f = write(tmp_path / "r.txt", "1 2 a\n4 b 6\n")
    with pytest.raises(RecordingError, match=r"r\.txt: no valid samples \(all 2 lines malformed"):
        read_samples(f, skip_bad=True)


def test_fast_and_line_by_line_paths_agree(tmp_path):
    """A clean file takes the one-conversion path; the same rows with one bad line take the slow one."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, 4)).round(5)
    text = "\n".join(" ".join(f"{v:.5f}" for v in r) for r in rows) + "\n"
    clean = read_samples(write(tmp_path / "a.txt", text))
    dirty = read_samples(write(tmp_path / "b.txt", "oops 1 2 3\n" + text), skip_bad=True)
    np.testing.assert_array_equal(clean, dirty)
    np.testing.assert_allclose(clean, rows.astype(np.float32))


# ------------------------------------------------------------------ a folder of recordings


def folder(root: Path) -> Path:
    write(root / "Walk" / "Accelerometer-2011-01-01-00-00-01-walk-f1.txt", "1 2 3\n" * 4)
    write(root / "Walk" / "Accelerometer-2011-01-01-00-00-02-walk-m2.txt", "1 2 3\n" * 5)
    write(root / "Sit" / "Accelerometer-2011-01-01-00-00-03-sit-f1.csv", "x,y,z\n4,5,6\n4,5,6\n")
    write(root / "Walk_MODEL" / "Accelerometer-2011-01-01-00-00-01-walk-f1_1.txt", "1 2 3\n" * 2)
    write(root / "Walk" / ".hidden.txt", "not data")
    write(root / "Walk" / "notes.md", "not data")
    write(root / "README.txt", "about the data set")
    return root


def test_folder_classes_files_and_model_trials(tmp_path):
    root = folder(tmp_path / "d")
    pairs = list_folder_files(root)
    assert [(label, p.name) for label, p in pairs] == [
        ("Sit", "Accelerometer-2011-01-01-00-00-03-sit-f1.csv"),
        ("Walk", "Accelerometer-2011-01-01-00-00-01-walk-f1.txt"),
        ("Walk", "Accelerometer-2011-01-01-00-00-02-walk-m2.txt"),
    ]
    recs = load_folder_recordings(root, sample_rate_hz=32.0)
    assert [(r.label, len(r), r.sample_rate_hz) for r in recs] == [
        ("Sit", 2, 32.0),
        ("Walk", 4, 32.0),
        ("Walk", 5, 32.0),
    ]
    assert recs[0].source == str(root / "Sit" / "Accelerometer-2011-01-01-00-00-03-sit-f1.csv")
    with_model = load_folder_recordings(root, include_model=True)
    assert [r.label for r in with_model] == ["Sit", "Walk", "Walk", "Walk"]
    assert Path(with_model[-1].source).parent.name == "Walk_MODEL"


def test_subject_regex_and_its_errors(tmp_path, caplog):
    root = folder(tmp_path / "d")
    recs = load_folder_recordings(root, subject_regex=r"-([fm]\d+)(?:_\d+)?\.(?:txt|csv)$", include_model=True)
    assert [r.subject for r in recs] == ["f1", "f1", "m2", "f1"]
    whole = load_folder_recordings(root, subject_regex=r"[fm]\d+(?=\.)")  # no group: the whole match
    assert [r.subject for r in whole] == ["f1", "f1", "m2"]
    with caplog.at_level(logging.WARNING, logger="edge_har.core.recordings"):
        partial = load_folder_recordings(root, subject_regex=r"-(m\d+)\.txt$")
    assert [r.subject for r in partial] == [None, None, "m2"]
    assert "matches no subject in 2 of 3 file name(s)" in caplog.text
    with pytest.raises(RecordingError, match=r"subject regex '-\(\[fm\]' is not a valid regular expression"):
        load_folder_recordings(root, subject_regex="-([fm]")


def test_empty_class_folder_is_named(tmp_path):
    root = folder(tmp_path / "d")
    (root / "Run").mkdir()
    write(root / "Run" / "notes.md", "no recordings here")
    with pytest.raises(RecordingError, match=r"d/Run: empty class folder \(no \.txt/\.csv files\)"):
        load_folder_recordings(root)
    (root / "Empty_MODEL").mkdir()  # a skipped model folder is not checked


def test_no_class_folders_hints_at_the_parent(tmp_path):
    root = write(tmp_path / "Walk" / "a.txt", "1 2 3\n").parent
    with pytest.raises(RecordingError, match=r"no class folders .* point at the folder above it"):
        load_folder_recordings(root)
    with pytest.raises(RecordingError, match=r"not a folder"):
        load_folder_recordings(tmp_path / "missing")


def test_files_must_agree_on_columns(tmp_path):
    root = folder(tmp_path / "d")
    write(root / "Walk" / "Accelerometer-2011-01-01-00-00-09-walk-m3.txt", "1 2 3 4\n" * 3)
    with pytest.raises(RecordingError, match=r"walk-m3\.txt: 4 columns, but .*sit-f1\.csv has 3"):
        load_folder_recordings(root)


def test_folder_skip_bad_counts_per_file(tmp_path):
    root = folder(tmp_path / "d")
    bad = write(root / "Sit" / "Accelerometer-2011-01-01-00-00-04-sit-m2.txt", "1 2 3\n1 2 x\n1 2 3\n1 2\n")
    with pytest.raises(RecordingError, match=r"sit-m2\.txt:2: text 'x'"):
        load_folder_recordings(root)
    skipped: dict[str, int] = {}
    recs = load_folder_recordings(root, skip_bad=True, skipped=skipped)
    assert skipped == {str(bad): 2}
    assert len(next(r for r in recs if r.source == str(bad))) == 2


# ------------------------------------------------------------------ one long CSV


def long_csv(tmp_path: Path, delimiter: str = ",", decimal: str = ".") -> Path:
    rows = [delimiter.join(["t", "label", "subject", "ax", "ay", "note"])]
    t = 0.0
    for label, subject, n in [("walk", "a", 5), ("sit", "a", 4), ("walk", "a", 3), ("walk", "b", 2)]:
        for k in range(n):
            values = [f"{t:.3f}", label, subject, f"{k}.5", f"-{k}.25", "ok"]
            rows.append(delimiter.join(v.replace(".", decimal) for v in values))
            t += 0.02
    return write(tmp_path / "long.csv", "\n".join(rows) + "\n")


@pytest.mark.parametrize(
    "delimiter, decimal",
    [(",", "."), (";", ","), ("\t", "."), (" ", ".")],
    ids=["comma", "semicolon-decimal-comma", "tab", "space"],
)
def test_long_csv_groups_consecutive_label_and_subject(tmp_path, delimiter, decimal):
    path = long_csv(tmp_path, delimiter, decimal)
    table = read_long_csv(path, label_col="label", subject_col="subject", timestamp_col="t")
    recs = table.recordings
    assert [(r.label, r.subject, len(r)) for r in recs] == [
        ("walk", "a", 5),
        ("sit", "a", 4),
        ("walk", "a", 3),
        ("walk", "b", 2),
    ]
    assert [r.source for r in recs] == [
        f"{path}:rows 2-6",
        f"{path}:rows 7-10",
        f"{path}:rows 11-13",
        f"{path}:rows 14-15",
    ]
    assert table.channels == ("ax", "ay")  # "note" is not numeric, t/label/subject are taken
    assert recs[0].samples[:, 0].tolist() == [0.5, 1.5, 2.5, 3.5, 4.5]
    assert recs[0].samples[:, 1].tolist() == [-0.25, -1.25, -2.25, -3.25, -4.25]
    assert all(r.sample_rate_hz == pytest.approx(50.0, rel=1e-3) for r in recs)


def test_long_csv_without_subject_column_splits_on_label_only(tmp_path):
    recs = load_long_csv_recordings(long_csv(tmp_path), label_col="label", channel_cols=["ay", "ax"])
    assert [(r.label, r.subject, len(r)) for r in recs] == [("walk", None, 5), ("sit", None, 4), ("walk", None, 5)]
    assert recs[0].samples[1].tolist() == [-1.25, 1.5]  # channel_cols order
    assert recs[0].sample_rate_hz is None  # no rate given, no timestamps used


def test_long_csv_errors_name_file_line_and_column(tmp_path):
    f = write(tmp_path / "long.csv", "label,ax,ay\nwalk,1,2\nwalk,oops,2\nwalk,1\n,1,2\nwalk,3,4\n")
    with pytest.raises(RecordingError, match=r"long\.csv:3: text 'oops' in a number column \('ax'\)"):
        load_long_csv_recordings(f, label_col="label")
    with pytest.raises(RecordingError, match=r"no label column 'activity'; the header has label, ax, ay"):
        load_long_csv_recordings(f, label_col="activity")
    with pytest.raises(RecordingError, match=r"no channel column 'az'"):
        load_long_csv_recordings(f, label_col="label", channel_cols=["ax", "az"])
    skipped: dict[str, int] = {}
    recs = load_long_csv_recordings(f, label_col="label", skip_bad=True, skipped=skipped)
    assert skipped == {str(f): 3}  # text, too few fields, empty label
    assert [len(r) for r in recs] == [2] and recs[0].source == f"{f}:rows 2-6"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", r"empty file \(a header line is required\)"),
        ("label,ax\n", r"a header but no data rows"),
        ("1,2\n3,4\n", r"long\.csv:1: expected a header line of column names"),
        ('label,ax\n"walk,1\n', r"long\.csv"),
    ],
)
def test_long_csv_structure_errors(tmp_path, text, expected):
    f = write(tmp_path / "long.csv", text)
    with pytest.raises(RecordingError, match=expected):
        load_long_csv_recordings(f, label_col="label")


def test_long_csv_channel_count_for_the_device(tmp_path):
    with pytest.raises(RecordingError, match="2 channel columns, the model takes 3"):
        load_long_csv_recordings(
            long_csv(tmp_path), label_col="label", subject_col="subject", timestamp_col="t", n_channels=3
        )


def test_millisecond_timestamps_warn(tmp_path, caplog):
    f = write(tmp_path / "long.csv", "ms,label,ax\n" + "".join(f"{20 * k},walk,1\n" for k in range(10)))
    with caplog.at_level(logging.WARNING, logger="edge_har.core.recordings"):
        recs = load_long_csv_recordings(f, label_col="label", timestamp_col="ms")
    assert recs[0].sample_rate_hz == pytest.approx(0.05)
    assert "timestamps are read as seconds" in caplog.text
