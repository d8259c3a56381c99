"""``edge-har bench latency`` on the tiny bundle: real interpreters, real subprocesses, real files."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from edge_har.cli import main

HAS_TF = importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("tf_keras") is not None


def _corrupt_with_matching_checksum(bundle: Path, variant: str) -> Path:
    """Truncate a variant's file and record the new sha256/size, so the *runtime* must reject it."""
    doc = json.loads((bundle / "bundle.json").read_text())
    file = bundle / doc["variants"][variant]["file"]
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    doc["variants"][variant]["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    doc["variants"][variant]["size_bytes"] = file.stat().st_size
    (bundle / "bundle.json").write_text(json.dumps(doc, indent=2))
    return file


def _section(out: Path, suite: str = "latency") -> dict:
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == "edge-har-bench/1"
    return data["suites"][suite]


@pytest.mark.slow  # ~40 s: a process per step over every runtime
def test_quick_run_reports_every_step_and_isolates_a_broken_variant(tiny_bundle_copy, tmp_path, capsys):
    """The CI run: --quick over every installed runtime and the Keras model; one variant is broken."""
    broken = _corrupt_with_matching_checksum(tiny_bundle_copy, "dynamic_range")
    out = tmp_path / "out"
    assert main(["bench", "latency", str(tiny_bundle_copy), "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    section = _section(out)

    # context a later comparison needs
    for key in ("date", "git", "machine", "runtimes", "command", "bundle", "settings", "inputs", "rows"):
        assert key in section, key
    for key in ("cpu_model", "cores_logical", "ram_mb", "os", "python"):
        assert section["machine"][key], key
    assert section["runtimes"]["ai-edge-litert"]
    assert section["git"] is None or len(section["git"]["commit"]) == 40
    assert section["inputs"]["source"] == "random"
    assert section["settings"]["isolation"] == "one process per step"

    rows = section["rows"]
    by_key = {(r["variant"], r["runtime"], r["threads"]): r for r in rows}
    bad = by_key[("dynamic_range", "ai_edge_litert", 1)]
    assert bad["status"] == "error" and "dynamic_range" in bad["error"], bad
    assert bad["size_bytes"] == broken.stat().st_size
    # every runtime refuses it (tf.lite 2.21 even segfaults on it: the step's own process dies, not the suite)
    assert all(r["status"] == "error" for r in rows if r["variant"] == "dynamic_range")

    ok = [r for r in rows if r["status"] == "ok"]
    tflite_ok = [r for r in ok if r["runtime"] in ("ai_edge_litert", "tflite_runtime", "tf_lite")]
    assert {(r["variant"], r["runtime"]) for r in tflite_ok} >= {
        ("float32", "ai_edge_litert"),
        ("int8", "ai_edge_litert"),
    }
    for r in ok:
        assert r["runs"] == (30 if r["runtime"] not in ("keras.predict", "keras.call") else 10)
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["std_ms"] >= 0 and r["init_ms"] > 0 and r["first_ms"] > 0
        assert r["throughput_per_s"] == pytest.approx(1000 / r["mean_ms"])
        # a fresh process per step: the peak covers Python + numpy + runtime + model, and is the process's own
        assert 20 < r["rss_peak_mb"] < 4000
    for r in tflite_ok:
        file = tiny_bundle_copy / r["model_file"]
        assert r["size_bytes"] == file.stat().st_size == r["bundle_size_bytes"]
    litert = by_key[("float32", "ai_edge_litert", 1)]
    if ("float32", "tf_lite", 1) in by_key and by_key[("float32", "tf_lite", 1)]["status"] == "ok":
        # honest per-runtime memory: TensorFlow's import shows in its own row only
        assert by_key[("float32", "tf_lite", 1)]["rss_peak_mb"] > litert["rss_peak_mb"] + 100

    installed = {r["runtime"] for r in rows}
    assert {"ai_edge_litert", "tflite_runtime", "tf_lite"} <= installed  # each named, installed or not
    for r in rows:
        if r["status"] == "not installed":
            assert r["error"]

    if HAS_TF:
        predict = by_key[("keras_float", "keras.predict", 1)]
        call = by_key[("keras_float", "keras.call", 1)]
        assert predict["status"] == call["status"] == "ok"
        assert predict["ratio_to_keras_predict"] == pytest.approx(1.0)
        assert litert["ratio_to_keras_predict"] == pytest.approx(litert["p50_ms"] / predict["p50_ms"])
        assert litert["ratio_to_keras_call"] == pytest.approx(litert["p50_ms"] / call["p50_ms"])
        assert "Keras model.predict" in printed

    assert (out / "latency.png").stat().st_size > 1000
    assert "| float32" in printed and "error [1]" in printed


def test_real_windows_profile_and_compare(tiny_bundle, tiny_dataset_dir, tmp_path, capsys):
    """--data times the test split's real windows; --profile names the ops; --compare reads a kept file."""
    first = tmp_path / "first"
    args = [
        "bench",
        "latency",
        str(tiny_bundle),
        "--quick",
        "--runtimes",
        "ai_edge_litert",
        "--no-keras",
        "--in-process",
        "--no-progress",
        "--data",
        str(tiny_dataset_dir),
    ]
    assert main(args + ["--out", str(first), "--profile", "int8", "--variants", "float32,int8"]) == 0
    section = _section(first)
    assert section["inputs"]["source"] == "data"
    assert section["inputs"]["split"] == "test"
    assert 0 < section["inputs"]["windows"] <= 64
    assert [r["variant"] for r in section["rows"]] == ["float32", "int8"]
    for r in section["rows"]:
        assert r["status"] == "ok"
        assert r["rss_peak_mb"] is None  # in-process: memory cannot be told apart per runtime
    profile = section["profile"]
    assert profile["status"] == "ok", profile
    ops = {op["op"] for op in profile["ops"]}
    assert {"FULLY_CONNECTED", "LOGISTIC", "TANH", "CONV_2D"} <= ops  # the unrolled LSTM's ops, named
    assert sum(op["share"] for op in profile["ops"]) == pytest.approx(1.0, abs=0.01)
    capsys.readouterr()

    second = tmp_path / "second"
    assert main(args + ["--out", str(second), "--runs", "20", "--compare", str(first / "results.json")]) == 0
    printed = capsys.readouterr().out
    assert "Compared with" in printed and "now/then" in printed
    assert _section(second)["rows"][0]["runs"] == 20


def test_bad_arguments_are_clear_errors(tiny_bundle, tmp_path, capsys):
    assert main(["bench", "latency", str(tiny_bundle), "--variants", "fp16", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no variant 'fp16'" in err and "float32" in err
    assert main(["bench", "latency", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "not a model bundle" in capsys.readouterr().err
    assert main(["bench", "latency", str(tiny_bundle), "--runtimes", "onnx", "--out", str(tmp_path)]) == 2
    assert "unknown runtime" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "latency", str(tiny_bundle), "--threads", "0"])
    assert not (tmp_path / "results.json").exists()


def test_cpu_line_paced_figures_and_floor_are_reported(tiny_bundle, tmp_path, capsys):
    """The CPU and its int8 flags above the table, a paced p50 beside the back-to-back one, the MACs."""
    out = tmp_path / "out"
    args = ["bench", "latency", str(tiny_bundle), "--quick", "--runtimes", "ai_edge_litert", "--no-keras"]
    assert main([*args, "--paced-runs", "4", "--pace", "0.05", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    section = _section(out)
    assert section["cpu"]["model"] and section["cpu"]["int8_dot"] in ("none", "vnni", "amx", "dotprod", "i8mm")
    assert section["cpu"]["class"] and f"CPU: {section['cpu']['model']}" in printed
    rows = [r for r in section["rows"] if r["status"] == "ok"]
    assert {r["variant"] for r in rows} == {"float32", "dynamic_range", "int8"}
    for r in rows:
        assert r["paced_runs"] == 4 and r["pace_s"] == 0.05 and r["paced_p50_ms"] > 0 and r["stateful"] is False
    assert "paced p50" in printed and "4 calls 0.05 s apart" in printed
    floor = section["floor"]["variants"]
    macs = {name: floor[name]["macs"] for name in ("float32", "dynamic_range", "int8")}
    assert len(set(macs.values())) == 1 and macs["int8"] > 0
    assert section["floor"]["peaks"]["status"] == "not measured"  # --quick leaves the TensorFlow probes out
    assert "M MACs/window" in printed

    assert main([*args, "--no-floor", "--paced-runs", "0", "--out", str(tmp_path / "o2"), "--no-progress"]) == 0
    section = _section(tmp_path / "o2")
    assert "floor" not in section and all("paced_p50_ms" not in r for r in section["rows"])


def test_an_unknown_peer_is_refused(tiny_bundle, tmp_path, capsys):
    code = main(["bench", "latency", str(tiny_bundle), "--quick", "--peers", "tensorrt", "--out", str(tmp_path)])
    assert code != 0
    assert "--peers: unknown peer(s) tensorrt; choose from onnxruntime" in capsys.readouterr().err


@pytest.mark.slow
def test_onnxruntime_peers_on_the_same_windows(tiny_bundle, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    out = tmp_path / "out"
    args = ["bench", "latency", str(tiny_bundle), "--quick", "--runtimes", "ai_edge_litert", "--no-keras"]
    assert main([*args, "--no-floor", "--paced-runs", "0", "--peers", "onnxruntime", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    peers = _section(out)["peers"]
    assert peers["status"] == "ok", peers
    rows = {(r["runtime"], r["variant"]): r for r in peers["rows"]}
    ref = rows[("ai_edge_litert", "float32")]
    assert ref["ratio_to_litert_float32"] == 1.0 and ref["agreement"] == 1.0
    ort = rows[("onnxruntime", "ort-float32")]
    assert ort["status"] == "ok" and ort["agreement"] >= 0.95 and ort["max_abs_diff"] < 1e-3
    for name in ("ort-int8-dynamic", "ort-int8-dynamic-rr", "ort-int8-static", "ort-int8-static-rr"):
        r = rows[("onnxruntime", name)]
        assert r["status"] == "ok", r
        assert 0.0 <= r["agreement"] <= 1.0 and r["ratio_to_litert_float32"] > 0
    assert "Peers on the same windows" in printed and "ort-int8-static-rr" in printed
