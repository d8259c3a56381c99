"""scripts/arm64/report.py: the arm64 check's comparison and verdict, without any emulation.

The check itself (scripts/arm64_check.sh) runs in CI's own step; these tests pin what its
verdict means: the agreement figures, the disagreement threshold, and that a missing variant,
an installed TensorFlow or a daemon that delivered nothing fail it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPORT = Path(__file__).resolve().parents[1] / "scripts" / "arm64" / "report.py"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("arm64_report", REPORT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["arm64_report"] = module
    spec.loader.exec_module(module)
    return module


def probs(n: int = 200, classes: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 3
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def flip(p: np.ndarray, rows: list[int]) -> np.ndarray:
    """The same probabilities with the top class of ``rows`` swapped with the runner-up."""
    q = p.copy()
    for r in rows:
        order = np.argsort(q[r])
        q[r, order[-1]], q[r, order[-2]] = q[r, order[-2]], q[r, order[-1]]
    return q


def test_agreement_counts_label_changes_and_the_largest_difference(report):
    p = probs()
    q = flip(p, [3, 50])
    q[7] += np.float32(1e-3)  # a small difference that keeps the label
    a = report.agreement(p, q)
    assert a["windows"] == 200
    assert a["labels_differ"] == 2
    assert a["label_agreement"] == pytest.approx(198 / 200)
    expected = max(np.abs(p[3] - q[3]).max(), np.abs(p[50] - q[50]).max(), 1e-3)
    assert a["max_abs_diff"] == pytest.approx(expected, rel=1e-5)
    same = report.agreement(p, p.copy())
    assert same["labels_differ"] == 0 and same["max_abs_diff"] == 0.0


def test_agreement_refuses_arrays_that_do_not_match(report):
    with pytest.raises(ValueError, match="shapes differ"):
        report.agreement(probs(10), probs(11))
    with pytest.raises(ValueError, match="non-empty"):
        report.agreement(np.zeros((0, 3)), np.zeros((0, 3)))


def write_results(root: Path, host: dict, arm: dict, pip: list, daemon: dict | None = None) -> Path:
    """A RESULTS folder as scripts/arm64_check.sh leaves it."""
    (root / "host" / "probs").mkdir(parents=True)
    for name, p in host.items():
        np.save(root / "host" / "probs" / f"{name}.npy", p)
    meta = {"machine": "x86_64", "backend": "ai_edge_litert", "backend_version": "1.4.0", "numpy": "2.1.0"}
    n = len(next(iter(host.values())))
    (root / "host" / "probs" / "meta.json").write_text(
        json.dumps({**meta, "python": "3.11.2", "windows": n, "seconds": {k: 0.1 for k in host}})
    )
    d = root / "device"
    (d / "probs").mkdir(parents=True)
    for name, p in arm.items():
        np.save(d / "probs" / f"{name}.npy", p)
    (d / "probs" / "meta.json").write_text(
        json.dumps({**meta, "machine": "aarch64", "python": "3.11.2", "windows": n, "seconds": {}})
    )
    (d / "versions.json").write_text(json.dumps(pip))
    for variant, got in (daemon or {}).items():
        (d / f"daemon-{variant}.json").write_text(json.dumps(got))
    (root / "timings.tsv").write_text("root\t412.3\ndevice:pip_install\t95.0\n")
    return root


PIP = [{"name": "numpy", "version": "2.2.6"}, {"name": "ai_edge_litert", "version": "1.4.0"}]
ARRIVED = {"predictions": 40, "stopped": True}


def test_collect_passes_within_the_threshold_and_reports_versions_and_timings(report, tmp_path):
    p = probs()
    root = write_results(
        tmp_path, {"float32": p, "int8": p}, {"float32": p, "int8": flip(p, [0])}, PIP, {"int8": ARRIVED}
    )
    s = report.collect(root, "demo", max_disagree=0.01)
    assert s["ok"], s["problems"]
    e = s["extras"]["device"]
    assert e["agreement"]["int8"]["labels_differ"] == 1
    assert e["versions"] == {
        "python": "3.11.2",
        "numpy": "2.2.6",
        "ai-edge-litert": "1.4.0",
        "tensorflow": "not installed",
    }
    assert e["daemon"] == {"int8": ARRIVED}
    assert s["timings_s"] == {"root": 412.3, "device:pip_install": 95.0}
    text = report.table(s)
    assert "| device | ai_edge_litert 1.4.0 | int8 | 99.50% | 1/200 |" in text
    assert "not Pi timings" in text


def test_collect_fails_past_the_threshold(report, tmp_path):
    p = probs()
    root = write_results(tmp_path, {"int8": p}, {"int8": flip(p, [0, 1, 2])}, PIP)
    s = report.collect(root, "demo", max_disagree=0.01)
    assert not s["ok"]
    assert s["problems"] == ["device int8: labels differ on 3 of 200 windows (1.50% > 1.00%)"]
    assert report.collect(root, "demo", max_disagree=0.02)["ok"]


@pytest.mark.parametrize(
    ("arm", "pip", "daemon", "problem"),
    [
        ({}, PIP, {}, "device: no arm64 probabilities for variant int8"),
        (None, PIP + [{"name": "tensorflow", "version": "2.19.0"}], {}, "device: TensorFlow is installed (2.19.0)"),
        (None, PIP, {"int8": {"predictions": 0, "stopped": True}}, "device daemon int8: 0 predictions, stopped=True"),
        (None, PIP, {"int8": {"predictions": 5, "stopped": False}}, "device daemon int8: 5 predictions, stopped=False"),
    ],
)
def test_collect_fails_on_what_the_check_must_not_let_pass(report, tmp_path, arm, pip, daemon, problem):
    p = probs()
    root = write_results(tmp_path, {"int8": p}, {"int8": p} if arm is None else arm, pip, daemon)
    s = report.collect(root, "demo", max_disagree=0.01)
    assert s["problems"] == [problem]
    assert not s["ok"]


def test_main_writes_the_json_and_exits_by_the_verdict(report, tmp_path):
    p = probs()
    good = write_results(tmp_path / "good", {"int8": p}, {"int8": p}, PIP, {"int8": ARRIVED})
    assert report.main([str(good), "--json", str(tmp_path / "out" / "s.json")]) == 0
    assert json.loads((tmp_path / "out" / "s.json").read_text())["ok"] is True
    bad = write_results(tmp_path / "bad", {"int8": p}, {"int8": flip(p, list(range(10)))}, PIP)
    assert report.main([str(bad)]) == 1


def unloadable(root: Path, variant: str, daemon_exit: int) -> Path:
    """The arm64 runtime could not load ``variant``: predict.py's meta records it, the daemon exited."""
    meta_file = root / "device" / "probs" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["errors"] = {variant: "model_dynamic_range.tflite: cannot load with tflite_runtime: Didn't find op"}
    meta_file.write_text(json.dumps(meta))
    (root / "device" / "probs" / f"{variant}.npy").unlink()
    got = {"predictions": 0, "stopped": False, "exit": daemon_exit, "error": "ERROR cannot load the model"}
    (root / "device" / f"daemon-{variant}.json").write_text(json.dumps(got))
    return root


def test_a_variant_known_not_to_load_is_reported_not_failed(report, tmp_path):
    p = probs()
    root = write_results(tmp_path, {"dynamic_range": p, "int8": p}, {"dynamic_range": p, "int8": p}, PIP)
    unloadable(root, "dynamic_range", daemon_exit=78)
    s = report.collect(root, "hmp", 0.01, frozenset({"device:dynamic_range"}))
    assert s["ok"], s["problems"]
    assert len(s["known"]) == 2 and "cannot load it" in s["known"][0]
    assert "Didn't find op" in s["extras"]["device"]["agreement"]["dynamic_range"]["error"]
    assert "| device | ai_edge_litert 1.4.0 | dynamic_range | cannot load |" in report.table(s)
    # the same failure without the pair in the known list fails, twice (the predictions and the daemon)
    s = report.collect(root, "hmp", 0.01)
    assert not s["ok"] and len(s["problems"]) == 2 and not s["known"]


def test_a_known_pair_still_fails_when_the_daemon_dies_another_way(report, tmp_path):
    p = probs()
    root = write_results(tmp_path, {"dynamic_range": p}, {"dynamic_range": p}, PIP)
    unloadable(root, "dynamic_range", daemon_exit=1)
    s = report.collect(root, "hmp", 0.01, frozenset({"device:dynamic_range"}))
    assert s["problems"] == ["device daemon dynamic_range: 0 predictions, stopped=False"]
