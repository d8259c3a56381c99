"""The bundle as written by edge_har.convert.export: schema, sha256 checks, atomic publishing."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from edge_har.convert import export
from edge_har.core.bundle import BUNDLE_FILE, Bundle, BundleError
from edge_har.core.interpreter import InterpreterError, TFLiteModel


def flip_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_written_bundle_follows_the_schema(tiny_bundle):
    data = json.loads((tiny_bundle / BUNDLE_FILE).read_text())
    assert data["schema_version"] == 1 and data["kind"] == "sensor"
    assert data["labels"] == ["Sit", "Walk", "Wave"]
    assert data["input"]["shape"] == [1, 64, 3] and data["input"]["dtype"] == "float32"
    assert data["default_variant"] == "int8"
    pre = data["preprocessing"]
    assert pre["window"] == 64 and pre["stride"] == 16 and pre["sample_rate_hz"] == 32
    assert len(pre["channels"]) == 3
    assert pre["value_scaling"]["scale"][0] == pytest.approx(3 / 63)
    assert len(pre["normalisation"]["mean"]) == 3 and all(s > 0 for s in pre["normalisation"]["std"])
    for name, v in data["variants"].items():
        path = tiny_bundle / v["file"]
        assert v["size_bytes"] == path.stat().st_size
        assert v["input"]["shape"] == [1, 64, 3] and v["output"]["shape"] == [1, 3]
        assert 0.0 <= v["metrics"]["accuracy"] <= 1.0 and "macro_f1" in v["metrics"]
        assert (tiny_bundle / v["metrics"]["report"]).is_file()
    int8 = data["variants"]["int8"]
    assert int8["input"]["dtype"] == "int8" and int8["input"]["scale"] > 0
    assert isinstance(int8["input"]["zero_point"], int)
    assert data["variants"]["float32"]["input"]["scale"] is None
    metrics = data["metrics"]
    assert metrics["int8_drop_points"] == pytest.approx(
        100 * (metrics["variants"]["float32"]["accuracy"] - metrics["variants"]["int8"]["accuracy"]), abs=1e-3
    )
    assert metrics["split"]["test_sources_relative"] and metrics["split"]["windows"]["test"] > 0
    training = data["training"]
    assert training["epochs_run"] >= 1 and training["seconds"] > 0
    assert (tiny_bundle / training["history_file"]).is_file()
    assert (tiny_bundle / export.KERAS_MODEL_FILE).is_file()
    prov = data["provenance"]
    assert prov["dataset"]["file_list_sha256"] and prov["dataset"]["path"]
    assert prov["packages"]["tensorflow"] and prov["packages"]["numpy"] and prov["created"]
    assert "git" in prov and prov["command"]


def test_bundle_loads_and_verifies(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    assert bundle.verify() == []
    assert set(bundle.variants) == {"float32", "dynamic_range", "int8"}
    model = bundle.load_model()  # default variant, sha256 checked
    assert model.input.dtype.name == "int8"


def test_sha256_mismatch_is_caught_by_verify_and_by_the_interpreter(tiny_bundle_copy):
    bundle = Bundle.load(tiny_bundle_copy)
    variant = bundle.variant("int8")
    flip_byte(variant.file)
    problems = Bundle.load(tiny_bundle_copy).verify()
    assert len(problems) == 1 and "variants.int8.sha256" in problems[0]
    with pytest.raises(InterpreterError, match="does not match bundle.json"):
        Bundle.load(tiny_bundle_copy).load_model("int8")
    with pytest.raises(InterpreterError, match="corrupt or was replaced"):
        TFLiteModel(variant.file, expected_sha256=variant.sha256)
    # The untouched variants still load.
    Bundle.load(tiny_bundle_copy).load_model("float32")


def test_truncated_and_missing_files_are_reported(tiny_bundle_copy):
    bundle = Bundle.load(tiny_bundle_copy)
    f = bundle.variant("float32").file
    f.write_bytes(f.read_bytes()[:1000])
    bundle.variant("dynamic_range").file.unlink()
    problems = Bundle.load(tiny_bundle_copy).verify()
    assert any("variants.float32.size_bytes" in p for p in problems)
    assert any("variants.dynamic_range.file" in p and "missing" in p for p in problems)


def test_a_damaged_bundle_json_names_the_key(tiny_bundle_copy):
    path = tiny_bundle_copy / BUNDLE_FILE
    data = json.loads(path.read_text())
    del data["variants"]["int8"]["sha256"]
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="variants.int8.sha256"):
        Bundle.load(tiny_bundle_copy)


# ---------------------------------------------------------------- destination handling


def test_an_existing_bundle_is_not_replaced_without_overwrite(tiny_bundle_copy):
    with pytest.raises(export.ExportError, match="--overwrite"):
        export.check_destination(tiny_bundle_copy, overwrite=False)
    assert export.check_destination(tiny_bundle_copy, overwrite=True) == tiny_bundle_copy.absolute()


def test_a_folder_that_is_not_a_bundle_is_never_replaced(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(export.ExportError, match="not a model bundle"):
        export.check_destination(precious, overwrite=True)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_publish_replaces_an_old_bundle_in_one_rename(tiny_bundle, tmp_path):
    dest = tmp_path / "out"
    with export.staging_dir(dest) as staging:
        shutil.copytree(tiny_bundle, staging, dirs_exist_ok=True)
        export.publish(staging, dest, overwrite=False)
    assert Bundle.load(dest).verify() == []
    old_id = Bundle.load(dest).model_id
    with export.staging_dir(dest) as staging:
        shutil.copytree(tiny_bundle, staging, dirs_exist_ok=True)
        data = json.loads((staging / BUNDLE_FILE).read_text())
        data["model_id"] = "replacement"
        export.write_json(staging, data)
        export.publish(staging, dest, overwrite=True)
    assert Bundle.load(dest).model_id == "replacement" != old_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old copies left


def test_staging_is_removed_when_anything_fails(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"), export.staging_dir(dest) as staging:
        (staging / "model_float32.tflite").write_bytes(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_an_invalid_staged_bundle_is_not_published(tiny_bundle, tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(export.ExportError, match="does not verify"), export.staging_dir(dest) as staging:
        shutil.copytree(tiny_bundle, staging, dirs_exist_ok=True)
        flip_byte(staging / "model_int8.tflite")
        export.publish(staging, dest, overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_json_ready_turns_nan_into_null():
    out = export.json_ready({"a": float("nan"), "b": [1.0, math.inf], "c": {"d": 2}})
    assert out == {"a": None, "b": [1.0, None], "c": {"d": 2}}
