"""edge_har.core.formats: the registry, the flags generated from the options models, the reader record
bundle.json keeps, a format added by one module and one register line, and the replay's format keys.

Property tests feed arbitrary option values to a format and to a replay config: each either reads or
is refused with one DatasetError / ValueError line, never another exception (EDGE_HAR_FUZZ_EXAMPLES
raises the number of inputs tried).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationError

from edge_har.core.formats import (
    DataFormat,
    Dataset,
    DatasetError,
    FormatOptions,
    detect_format,
    format_names,
    formats,
    load_dataset,
    load_recorded,
    register,
    unregister,
)
from edge_har.core.formats.cli import add_dataset_arguments, dataset_from_args
from edge_har.core.formats.common import labels_of
from edge_har.core.recordings import Recording

EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "60"))

# The data-set flags before they were generated: (flags, dest, default, choices). Old bundles record
# these dests (provenance.dataset.data_flags) and users' scripts these flags: they must not change.
OLD_FLAGS = [
    (["--data"], "data", None, None),
    (["--format", "--layout"], "format", "auto", None),
    (["--name-regex"], "name_regex", None, None),
    (["--subject-regex"], "subject_regex", None, None),
    (["--sample-rate"], "sample_rate", None, None),
    (["--channels"], "channels", None, None),
    (["--scale"], "scale", None, None),
    (["--offset"], "offset", None, None),
    (["--units"], "units", None, None),
    (["--label-column"], "label_column", None, None),
    (["--subject-column"], "subject_column", None, None),
    (["--timestamp-column"], "timestamp_column", None, None),
    (["--trial-column", "--recording-column"], "trial_column", None, None),
    (["--include-model-trials"], "include_model_trials", False, None),
    (["--columns"], "columns", None, None),
    (["--classes"], "classes", None, None),
    (["--label-map"], "label_map", None, None),
    (["--intervals"], "intervals", None, None),
    (["--recording-files"], "recording_files", None, None),
    (["--interval-units"], "interval_units", None, ("samples", "seconds")),
    (["--first-sample"], "first_sample", None, (0, 1)),
    (["--unlabelled-class"], "unlabelled_class", None, None),
    (["--interval-overlap"], "interval_overlap", None, ("error", "drop")),
    (["--label-names"], "label_names", None, None),
    (["--skip-bad"], "skip_bad", False, None),
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    add_dataset_arguments(p)
    return p


def named_set(root: Path, columns: int = 4, rows: int = 40) -> Path:
    for s in (1, 2):
        for label in ("a", "b"):
            f = root / f"s{s}" / f"{label}_1.csv"
            f.parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(f, np.arange(rows * columns).reshape(rows, columns) * s, fmt="%d", delimiter=",")
    return root


def test_the_flags_keep_their_names_dests_and_defaults():
    actions = {a.dest: a for a in parser()._actions}  # noqa: SLF001
    for flags, dest, default, choices in OLD_FLAGS:
        action = actions[dest]
        assert action.option_strings == flags and action.default == default, dest
        if choices is not None:
            assert tuple(action.choices) == choices
    assert set(actions) >= {dest for _, dest, _, _ in OLD_FLAGS}  # a new format may add flags


def test_every_option_is_described_with_an_example():
    for name, fmt in formats().items():
        for key, info in fmt.options.model_fields.items():
            assert info.description and "e.g." in info.description, f"{name}.{key}"


def test_detection_order_and_choices():
    assert format_names()[0] == "auto"
    assert set(format_names()) >= {"hmp", "folder", "csv", "uci-har", "intervals", "hapt", "names", "ts"}
    names = list(formats())
    assert names.index("hmp") < names.index("folder")  # the preset before the catch-all


def test_the_reader_record_reads_the_same_data_again(tmp_path):
    root = named_set(tmp_path / "d")
    args = parser().parse_args(
        ["--data", str(root), "--name-regex", r"(?P<subject>s\d)/(?P<label>[a-z])_\d\.csv$", "--sample-rate", "20"]
        + ["--columns", "2,0", "--scale", "0.5", "--classes", "a,b"]
    )
    ds = dataset_from_args(args)
    assert ds.reader is not None and ds.reader.format == "names"
    assert ds.reader.options["columns"] == ["2", "0"] and ds.reader.options["sample_rate"] == 20.0
    again = load_recorded(root, ds.reader.model_dump(mode="json"))
    assert again.channels == ds.channels and again.scale == ds.scale == (0.5,)
    for r1, r2 in zip(ds.recordings, again.recordings):
        assert r1.source == r2.source and r1.samples.tobytes() == r2.samples.tobytes()
    # an override replaces the recorded option, None removes it
    wider = load_recorded(root, ds.reader, columns=None, scale=None)
    assert wider.recordings[0].samples.shape[1] == 4


class ToyOptions(FormatOptions):
    """The toy format's one option."""

    width: Optional[int] = Field(None, ge=1, le=8, description="columns of noise, e.g. --width 2")


class ToyFormat(DataFormat):
    """A whole format in a dozen lines: a folder holding TOY, one recording of ``width`` columns."""

    name = "toy"
    options = ToyOptions
    detects = "a folder holding a file TOY"
    needs = "folder"
    required = {"width": "the toy format needs --width ({how})"}

    def detect(self, path: Path) -> bool:
        return (path / "TOY").is_file()

    def load(self, path: Path, options: Any) -> Dataset:
        rec = Recording(np.zeros((50, options.width), np.float32), "still", str(path / "TOY"), None, 10.0)
        return Dataset(
            name="toy", root=path, recordings=[rec], labels=labels_of([rec], path), channels=("c",) * options.width,
            sample_rate_hz=10.0, format="toy", path=path,
        )  # fmt: skip


@pytest.fixture
def toy():
    register(ToyFormat(), before="folder")
    yield
    unregister("toy")


def test_a_format_is_one_class_and_one_register_line(toy, tmp_path):
    (tmp_path / "TOY").write_text("")
    assert detect_format(tmp_path) == "toy"  # detected before the folder catch-all
    p = parser()
    assert "toy" in next(a for a in p._actions if a.dest == "format").choices  # noqa: SLF001
    width = next(a for a in p._actions if a.dest == "width")  # noqa: SLF001
    assert width.option_strings == ["--width"] and "toy: columns of noise" in width.help
    with pytest.raises(DatasetError, match=r"the toy format needs --width \(detected\)"):
        load_dataset(tmp_path)
    ds = dataset_from_args(p.parse_args(["--data", str(tmp_path), "--width", "2"]))
    assert ds.recordings[0].samples.shape == (50, 2) and ds.reader.options == {"width": 2}
    with pytest.raises(DatasetError, match=r"--width \(format toy\): .*less than or equal to 8"):
        load_dataset(tmp_path, width=9)
    with pytest.raises(DatasetError, match=r"--sample-rate does not apply to format toy"):
        load_dataset(tmp_path, width=2, sample_rate=5.0)


def test_registering_a_taken_name_is_refused():
    class Other(ToyFormat):
        name = "csv"

    with pytest.raises(ValueError, match="already registered"):
        register(Other())


# ------------------------------------------------------------------ the replay's format keys


def replay_cfg(**keys: Any):
    from edge_har.device.sources.replay import ReplaySourceConfig

    return ReplaySourceConfig.model_validate({"type": "replay", "path": "d", **keys})


def test_replay_format_and_options_are_checked_when_the_config_loads():
    assert replay_cfg(format="names", options={"name_regex": "(?P<label>x)", "columns": ["0"]}).format == "names"
    with pytest.raises(ValidationError, match="format 'parquet': unknown; choose one of .*names.*file"):
        replay_cfg(format="parquet")
    with pytest.raises(ValidationError, match="options colums: not options of format names"):
        replay_cfg(format="names", options={"colums": ["0"]})
    with pytest.raises(ValidationError, match="options do not apply to format file"):
        replay_cfg(format="file", options={"columns": ["0"]})


def test_replay_takes_the_bundles_reader_and_the_configs_options_win():
    from edge_har.core.formats import ReaderRecord
    from edge_har.device.sources.replay import replay_reader

    bundle = ReaderRecord(
        format="names", options={"name_regex": "r", "sample_rate": 200.0, "columns": ["3"], "label_map": "a=b"}
    )
    name, options = replay_reader(replay_cfg(), bundle, 50.0)
    assert name == "names" and options["sample_rate"] == 200.0 and options["columns"] == ["3"]
    assert "label_map" not in options and options["skip_bad"] is True  # the daemon maps truth itself
    _, options = replay_reader(replay_cfg(options={"columns": ["4"]}, rate_hz=100.0), bundle, 50.0)
    assert options["columns"] == ["4"] and options["sample_rate"] == 100.0
    name, options = replay_reader(replay_cfg(format="folder"), bundle, 50.0)  # another format: none of its options
    assert name == "folder" and options == {"skip_bad": True, "sample_rate": 50.0}
    assert replay_reader(replay_cfg(), None, 32.0) == ("folder", {"skip_bad": True, "sample_rate": 32.0})


# ------------------------------------------------------------------ property tests

option_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.text(max_size=4), max_size=4),
    st.lists(st.floats(-10, 10), max_size=4),
)
option_keys = st.sampled_from(
    ["name_regex", "sample_rate", "columns", "channels", "scale", "offset", "units", "skip_bad", "classes"]
    + ["label_map", "subject_regex", "label_column", "intervals", "zzz"]
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=st.dictionaries(option_keys, option_values, max_size=6))
def test_any_options_read_or_are_refused_with_one_line(tmp_path, options):
    root = tmp_path / "d"
    if not root.exists():
        named_set(root)
    options.setdefault("name_regex", r"(?P<label>[a-z])_\d\.csv$")
    try:
        ds = load_dataset(root, format="names", **options)
    except DatasetError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert ds.recordings and ds.reader is not None


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    fmt=st.one_of(st.none(), st.sampled_from([*formats(), "file", "x"])),
    options=st.dictionaries(option_keys, option_values, max_size=4),
)
def test_any_replay_format_keys_validate_or_are_refused(fmt, options):
    keys: dict[str, Any] = {"options": options}
    if fmt is not None:
        keys["format"] = fmt
    try:
        cfg = replay_cfg(**keys)
    except ValidationError as exc:
        assert exc.errors()
        return
    assert cfg.format == fmt


def test_recorded_columns_pick_what_training_picked():
    from edge_har.core.formats.common import recorded_columns

    samples = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert recorded_columns(samples, None, {}, "f").tobytes() == samples.tobytes()
    assert recorded_columns(samples, None, {"columns": ["3", "1"]}, "f").tolist() == samples[:, [3, 1]].tolist()
    by_name = recorded_columns(samples, ("t", "ax", "ay", "az"), {"columns": ["az"]}, "f")
    assert by_name.tolist() == samples[:, [3]].tolist()
    with pytest.raises(DatasetError, match="f: --columns 'gz': no such column"):
        recorded_columns(samples, ("t", "ax", "ay", "az"), {"columns": ["gz"]}, "f")
