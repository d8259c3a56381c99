"""--label-map: rename, merge or leave out classes, recorded in the bundle so the device reports merged names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_har.convert.datasets import DatasetError, load_dataset, parse_label_map
from edge_har.core.bundle import BUNDLE_FILE, Bundle, BundleError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fall_set(root: Path) -> Path:
    """Class folders F01_front, F02_back, D01_walk, D02_sit, T01_jump; two recordings each."""
    for c, label in enumerate(("F01_front", "F02_back", "D01_walk", "D02_sit", "T01_jump")):
        for k in range(2):
            write(root / label / f"r{k}.txt", "".join(f"{c} {k} {i}\n" for i in range(20)))
    return root


def test_rules_merge_and_rename_and_leave_out(tmp_path):
    ds = load_dataset(fall_set(tmp_path), sample_rate_hz=10.0, label_map="F*=fall, D*=adl, T*=-")
    assert ds.labels == ["adl", "fall"]
    assert sorted({(int(r.samples[0, 0]), r.label) for r in ds.recordings}) == [
        (0, "fall"),
        (1, "fall"),
        (2, "adl"),
        (3, "adl"),
    ]
    assert ds.label_map == {
        "D01_walk": "adl",
        "D02_sit": "adl",
        "F01_front": "fall",
        "F02_back": "fall",
        "T01_jump": None,
    }
    assert ds.describe()["label_map"]["T01_jump"] is None


def test_first_matching_rule_wins_and_unmatched_classes_keep_their_names(tmp_path):
    ds = load_dataset(fall_set(tmp_path), sample_rate_hz=10.0, label_map="F01_*=front_fall,F*=fall")
    assert ds.labels == ["D01_walk", "D02_sit", "T01_jump", "fall", "front_fall"]


def test_classes_apply_to_the_mapped_names(tmp_path):
    ds = load_dataset(fall_set(tmp_path), sample_rate_hz=10.0, label_map="F*=fall,D*=adl", classes=("fall", "adl"))
    assert ds.labels == ["adl", "fall"] and len(ds.recordings) == 8


def test_a_label_map_file(tmp_path):
    rules = write(tmp_path / "map.txt", "# falls\nF* = fall\n\nD* = adl  # daily life\nT* = -\n")
    assert parse_label_map(rules) == [("F*", "fall"), ("D*", "adl"), ("T*", "-")]
    ds = load_dataset(fall_set(tmp_path / "d"), sample_rate_hz=10.0, label_map=str(rules))
    assert ds.labels == ["adl", "fall"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("F*=fall,D*", r"--label-map 'F\*=fall,D\*': expected PATTERN=LABEL .* got 'D\*'"),
        ("=fall", r"expected PATTERN=LABEL"),
        ("*=-", r"the label map leaves no class"),
    ],
)
def test_bad_rules(tmp_path, spec, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(fall_set(tmp_path), sample_rate_hz=10.0, label_map=spec)


def test_a_bad_line_of_a_file_names_the_file_and_line(tmp_path):
    rules = write(tmp_path / "map.txt", "F*=fall\nD* adl\n")
    with pytest.raises(DatasetError, match=r"map\.txt:2: expected PATTERN=LABEL"):
        parse_label_map(rules)


def test_a_rule_that_matches_nothing_is_a_warning(tmp_path, caplog):
    load_dataset(fall_set(tmp_path), sample_rate_hz=10.0, label_map="F*=fall,X*=other")
    assert "X*=other match no class" in caplog.text


# ------------------------------------------------------------------ the bundle


def _edit(bundle: Path, **top: object) -> Path:
    path = bundle / BUNDLE_FILE
    data = json.loads(path.read_text())
    data.update(top)
    path.write_text(json.dumps(data))
    return bundle


def test_bundle_label_map_field_is_optional_validated_and_used(tiny_bundle_copy):
    assert Bundle.load(tiny_bundle_copy).model_label("Walk") == "Walk"  # older bundles: no map
    b = Bundle.load(_edit(tiny_bundle_copy, label_map={"walk_fast": "Walk", "walk_slow": "Walk", "run": None}))
    assert b.model_label("walk_fast") == "Walk" and b.model_label("run") is None
    _edit(tiny_bundle_copy, label_map={"walk_fast": "Jog"})
    with pytest.raises(BundleError, match=r"label_map\.walk_fast: 'Jog' is not one of the labels"):
        Bundle.load(tiny_bundle_copy)


@pytest.mark.slow
def test_a_conversion_records_the_label_map(tiny_dataset_dir, tmp_path):
    from edge_har.convert.pipeline import run_convert
    from tests.plugins.bundle import tiny_convert_options

    options = tiny_convert_options(
        tmp_path / "b", data=tiny_dataset_dir, dataset_options={"label_map": "Walk=moving,Wave=moving"}
    )
    bundle = Bundle.load(run_convert(options))
    assert bundle.labels == ["Sit", "moving"]
    assert bundle.model_label("Wave") == "moving" and bundle.model_label("Sit") == "Sit"
    doc = json.loads((bundle.root / "bundle.json").read_text())
    assert doc["label_map"] == {
        "Sit": "Sit",
        "Walk": "moving",
        "Wave": "moving",
    }  # top level, where the device reads it
