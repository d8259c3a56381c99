"""The conversion skeleton on its own, without TensorFlow: the int8 gate's decision and the atomic write.

A fake ``ConversionPath`` writes stand-in ``.tflite`` bytes and returns chosen accuracies, so the
shared sequence (stage order, gate before publish, staging removed on refusal, the bundle.json
sections) is checked in well under a second; the real conversions are in test_convert_e2e.py and
test_video_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np
import pytest

from edge_har.convert import skeleton
from edge_har.convert.evaluate import VariantEvaluation
from edge_har.convert.export import ExportError, bundle_document
from edge_har.convert.skeleton import AccuracyGateError, Trained, int8_gate, run_skeleton
from edge_har.core.preprocessing import Preprocessing

LABELS = ["a", "b"]
PRE = Preprocessing(
    sample_rate_hz=10.0, window=4, stride=2, channels=("x", "y", "z"), scale=(1.0,), offset=(0.0,), units="g"
)


def ev(name: str, accuracy: float) -> VariantEvaluation:
    report = {
        "accuracy": accuracy,
        "macro_f1": accuracy,
        "macro_precision": accuracy,
        "macro_recall": accuracy,
        "n_windows": 4,
        "labels": LABELS,
        "confusion_matrix": [[2, 0], [0, 2]],
    }
    return VariantEvaluation(name, report, np.full((4, 2), 0.5, np.float32), 0.01, "fake 1.0")


def specs(*names: str) -> list[Any]:
    full = {"float32": False, "dynamic_range": False, "int8": True}
    return [SimpleNamespace(name=n, full_integer=full[n]) for n in names]


# ---------------------------------------------------------------- the gate


def test_gate_refuses_a_full_integer_variant_over_the_limit():
    evaluations = {"float32": ev("float32", 1.0), "int8": ev("int8", 0.95)}
    with pytest.raises(AccuracyGateError, match="int8 test accuracy 95.00% is 5.00 points below") as info:
        int8_gate(evaluations, specs("float32", "int8"), max_int8_drop=1.0, allow_int8_drop=False)
    assert info.value.float_accuracy == 1.0 and info.value.quantized == {"int8": 0.95}
    assert "--allow-int8-drop" in str(info.value)


def test_gate_passes_under_the_limit_and_ignores_non_integer_variants():
    evaluations = {"float32": ev("float32", 1.0), "dynamic_range": ev("dynamic_range", 0.5), "int8": ev("int8", 0.995)}
    drops, over = int8_gate(evaluations, specs("float32", "dynamic_range", "int8"), 1.0, False)
    assert drops == {"dynamic_range": 50.0, "int8": 0.5} and not over


def test_gate_accepts_the_drop_when_allowed(caplog):
    evaluations = {"float32": ev("float32", 1.0), "int8": ev("int8", 0.9)}
    with caplog.at_level(logging.WARNING):
        drops, over = int8_gate(evaluations, specs("float32", "int8"), 1.0, True)
    assert drops == {"int8": 10.0} and over
    assert "accepting the accuracy drop" in caplog.text


# ---------------------------------------------------------------- the whole sequence


@dataclass
class FakeOptions:
    out: Path
    variants: tuple[str, ...] = ("float32", "int8")
    default_variant: str = "int8"
    max_int8_drop: float = 1.0
    allow_int8_drop: bool = False
    overwrite: bool = False
    progress: bool = False
    command: str | None = "edge-har convert --fake"
    train: Any = field(default_factory=lambda: SimpleNamespace(to_json=lambda: {"epochs": 1}))


class FakePath:
    what = "fake conversion"
    keras_model_note = "keras_model.h5"

    def __init__(self, accuracies: Mapping[str, float], fail_in: str = "") -> None:
        self.accuracies = dict(accuracies)
        self.fail_in = fail_in
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_in:
            raise RuntimeError(f"{name} failed")

    def prepare(self, specs: Sequence[Any], timings: dict[str, float]) -> None:
        self._call("prepare")
        with skeleton.stage("windows", timings):
            pass

    def train(self, work: Path) -> Trained:
        self._call("train")
        work.mkdir(parents=True)
        (work / "best.weights.h5").write_bytes(b"checkpoint")  # the skeleton drops it
        history = work / "history.json"
        history.write_text("{}")
        result = SimpleNamespace(
            strategy=SimpleNamespace(to_json=lambda: {"name": "default"}),
            epochs_run=1,
            best_epoch=1,
            seconds=0.1,
            class_weights=None,
            history_file=history,
            curves_file=None,
            history={"loss": [0.5]},
        )
        return Trained(result, {"model": {"fake": True}})

    def keras_reference(self, staging: Path) -> np.ndarray:
        self._call("keras_reference")
        (staging / "keras_model.h5").write_bytes(b"keras")
        return np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]

    def test_labels(self) -> np.ndarray:
        return np.array([0, 1, 0, 0])

    def quantize(self, staging: Path, specs: Sequence[Any]) -> dict[str, dict[str, Any]]:
        self._call("quantize")
        out = {}
        for s in specs:
            content = f"fake tflite {s.name}".encode()
            (staging / f"model_{s.name}.tflite").write_bytes(content)
            out[s.name] = {
                "file": f"model_{s.name}.tflite",
                "sha256": hashlib.sha256(content).hexdigest(),
                "size_bytes": len(content),
                "quantization": s.name,
                "full_integer": s.full_integer,
                # what a real quantizer records; bundle.json's schema requires shape and dtype
                "input": {"shape": [1, 4, 3], "dtype": "int8" if s.full_integer else "float32"},
                "output": {"shape": [1, len(LABELS)], "dtype": "int8" if s.full_integer else "float32"},
            }
        return out

    def document(self, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
        self._call("document")
        return bundle_document(
            model_id="fake",
            labels=LABELS,
            input_shape=[1, 4, 3],
            preprocessing=PRE.to_json(),
            variants=variants,
            default_variant="int8",
        )

    def evaluate(self, bundle: Any, variant: str) -> VariantEvaluation:
        self._call("evaluate")
        return ev(variant, self.accuracies[variant])

    def check_evaluations(self, evaluations: Mapping[str, Any], keras_probs: np.ndarray) -> dict[str, Any]:
        return {"extra_check": 0.0}

    def self_test_windows(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None  # the fake's "models" are not real TFLite files: nothing to test on a device

    def split_section(self) -> dict[str, Any]:
        return {"by": "fake"}

    def calibration_info(self) -> dict[str, Any]:
        return {"calibration_size": 3}

    def dataset_info(self) -> dict[str, Any]:
        return {"name": "fake"}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_publishes_the_bundle_with_the_shared_sections(tmp_path, monkeypatch):
    monkeypatch.setattr("edge_har.convert.export.package_versions", lambda: {"python": "3"})
    monkeypatch.setattr("edge_har.convert.export.git_revision", lambda: None)
    path = FakePath({"float32": 1.0, "int8": 0.995})
    out = run_skeleton(path, FakeOptions(out=tmp_path / "bundle"))
    assert out == (tmp_path / "bundle").absolute()
    assert leftovers(tmp_path) == ["bundle"]  # no staging directory left beside it
    assert not (out / "training" / "best.weights.h5").exists()
    doc = json.loads((out / "bundle.json").read_text())
    metrics = doc["metrics"]
    assert list(metrics)[:6] == [
        "evaluated_on",
        "split",
        "reference_variant",
        "variants",
        "keras_float_accuracy",
        "extra_check",
    ]
    assert metrics["keras_float_accuracy"] == 0.75
    assert metrics["drop_points"] == {"int8": 0.5} and metrics["int8_drop_allowed"] is False
    assert doc["variants"]["int8"]["metrics"]["report"] == "evaluation/int8/metrics.json"
    assert doc["training"]["calibration_size"] == 3
    assert set(doc["training"]["stage_seconds"]) == {"windows", "train", "quantize", "evaluate", "total"}
    assert doc["provenance"]["command"] == "edge-har convert --fake"
    assert doc["files"]["keras_model"] == "keras_model.h5"


def test_a_refused_conversion_leaves_no_bundle_but_keeps_the_keras_model(tmp_path):
    path = FakePath({"float32": 1.0, "int8": 0.9})
    with pytest.raises(AccuracyGateError, match="kept in .*bundle.refused.*--from-keras"):
        run_skeleton(path, FakeOptions(out=tmp_path / "bundle"))
    assert leftovers(tmp_path) == ["bundle.refused"]  # no bundle at --out, no staging left
    kept = tmp_path / "bundle.refused"
    assert (kept / "keras_model.h5").read_bytes() == b"keras"
    assert not (kept / "bundle.json").exists() and not list(kept.glob("*.tflite"))  # nothing there loads
    gate = json.loads((kept / "refused.json").read_text())["metrics"]["gate"]
    assert gate["verdict"] == "refused" and gate["drop_points"] == 10.0 and gate["allowed_drop_points"] == 1.0
    assert path.calls[-1] == "evaluate"  # refused after evaluating, before anything was published


def test_a_crash_mid_way_leaves_nothing_behind(tmp_path):
    path = FakePath({"float32": 1.0, "int8": 1.0}, fail_in="quantize")
    with pytest.raises(RuntimeError, match="quantize failed"):
        run_skeleton(path, FakeOptions(out=tmp_path / "bundle"))
    assert leftovers(tmp_path) == []


def test_a_bad_destination_is_refused_before_any_work(tmp_path):
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "notes.txt").write_text("not a bundle")
    path = FakePath({"float32": 1.0, "int8": 1.0})
    with pytest.raises(ExportError, match="not a model bundle"):
        run_skeleton(path, FakeOptions(out=tmp_path / "bundle"))
    assert path.calls == []
    assert leftovers(tmp_path / "bundle") == ["notes.txt"]
