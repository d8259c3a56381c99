"""``edge-har bench latency --peers onnxruntime``: another runtime on the same windows, in the same run.

A LiteRT figure means more beside a peer measured on the same CPU, windows and thread
count. The peer here is ONNX Runtime, fed the bundle's float model converted with tf2onnx
(the Keras model, ``keras_model.h5``, when the bundle keeps it: its LSTM becomes ONNX's own
``LSTM`` op; else ``model_float32.tflite``), and the int8 models ONNX Runtime's own
quantizer makes from it:

* ``ort-int8-dynamic`` / ``-rr``: ``quantize_dynamic`` (int8 weights, activations quantized
  per call), without and with ``reduce_range`` (7-bit weights, for CPUs without VNNI where
  8-bit products can saturate the 16-bit accumulators of ``vpmaddubsw``);
* ``ort-int8-static`` / ``-rr``: ``quantize_static`` in QDQ form, calibrated on half of the
  timing windows (the even ones), without and with ``reduce_range``.

Agreement is the share of windows whose top class equals LiteRT float32's, counted on the
windows not used for calibration (the odd ones), for the LiteRT variants too. Each row's
``ratio`` is its p50 over LiteRT float32's at the same thread count.

Everything runs in one worker process (``python -m edge_har.benchmarks.peers --worker``):
tf2onnx imports TensorFlow, which must not weigh on the suite's memory figures. Needs the
``bench`` extra (onnxruntime, onnx, tf2onnx) and, for the conversion, ``train``
(TensorFlow): a workstation run. A missing package is a row saying which, not a failure.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

PEERS = ("onnxruntime",)
OPSET = 17
NEEDS = {"onnxruntime": "onnxruntime", "onnx": "onnx", "tf2onnx": "tf2onnx", "tensorflow": "tensorflow"}


def missing_packages() -> list[str]:
    return [pkg for pkg, mod in NEEDS.items() if importlib.util.find_spec(mod) is None]


# ---------------------------------------------------------------- the worker side


def convert_to_onnx(bundle: Any, out: Path) -> dict[str, Any]:
    """The bundle's float model as ONNX: from keras_model.h5 when there is one, else the float32 .tflite."""
    import tf2onnx

    from edge_har.benchmarks.latency import keras_model_path

    keras_file = keras_model_path(bundle)
    started = time.perf_counter()
    errors = []
    if keras_file is not None:
        try:
            from edge_har.convert.models import import_tf

            tf, keras = import_tf()
            model = keras.models.load_model(keras_file, compile=False)
            spec = [tf.TensorSpec(tuple(bundle.input_shape), tf.float32, name="window")]
            tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET, output_path=str(out))
            return {"source": keras_file.name, "tf2onnx": tf2onnx.__version__, "seconds": time.perf_counter() - started}
        except Exception as exc:  # an op tf2onnx cannot map: try the TFLite file
            errors.append(f"{keras_file.name}: {type(exc).__name__}: {exc}"[:300])
    tflite = bundle.variant("float32").file
    tf2onnx.convert.from_tflite(str(tflite), opset=OPSET, output_path=str(out))
    return {
        "source": Path(tflite).name,
        "tf2onnx": tf2onnx.__version__,
        "seconds": time.perf_counter() - started,
        "keras_error": errors[0] if errors else None,
    }


class _Windows:
    """onnxruntime's CalibrationDataReader over the calibration windows (duck-typed: get_next)."""

    def __init__(self, name: str, windows: np.ndarray) -> None:
        self.name = name
        self._it = iter(windows)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.name: x[None].astype(np.float32)}


def quantize_models(float_path: Path, calib: np.ndarray, folder: Path) -> dict[str, Any]:
    """ORT's int8 variants of the float ONNX model: {name: path or the error}."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    name = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    made: dict[str, Any] = {}

    def dynamic(path: Path, rr: bool) -> None:
        quantize_dynamic(str(float_path), str(path), weight_type=QuantType.QInt8, reduce_range=rr)

    def static(path: Path, rr: bool) -> None:
        quantize_static(
            str(float_path),
            str(path),
            _Windows(name, calib),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            reduce_range=rr,
        )

    for kind, make in (("dynamic", dynamic), ("static", static)):
        for rr in (False, True):
            label = f"ort-int8-{kind}" + ("-rr" if rr else "")
            path = folder / f"{label}.onnx"
            try:
                make(path, rr)
                made[label] = path
            except Exception as exc:  # one quantization ORT refuses: its own row
                made[label] = f"{type(exc).__name__}: {exc}"[:300]
    return made


def _ort_call(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x[None]})[0][0]


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Convert, quantize, time and compare; the section's rows."""
    import onnxruntime as ort

    from edge_har.benchmarks import report
    from edge_har.core.bundle import Bundle
    from edge_har.core.interpreter import TFLiteModel
    from edge_har.core.timing import time_calls

    bundle = Bundle.load(spec["bundle"])
    inputs = np.load(spec["inputs_path"]).astype(np.float32)
    calib, held = inputs[0::2], inputs[1::2]
    if len(held) == 0:
        held = inputs
    out: dict[str, Any] = {"onnxruntime": ort.__version__, "calibration_windows": int(len(calib))}
    out["agreement_windows"] = int(len(held))
    work = Path(spec["work"])
    float_path = work / "float32.onnx"
    out["conversion"] = convert_to_onnx(bundle, float_path)
    models: dict[str, Any] = {"ort-float32": float_path, **quantize_models(float_path, calib, work)}

    # who runs what: LiteRT's variants through the device's wrapper, ORT's sessions
    def litert(name: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        file = bundle.variant(name).file
        if file is None:  # a variant split into parts (a video bundle's encoder and head)
            raise ValueError(f"variant {name} is split into parts; the peers time single-model variants")
        return TFLiteModel(file, backend=spec["runtime"], num_threads=threads).predict

    rows: list[dict[str, Any]] = []
    reference: dict[int, np.ndarray] = {}
    for threads in spec["threads"]:
        runners: list[tuple[str, str, Any]] = [("ai_edge_litert", name, None) for name in bundle.variants]
        runners += [("onnxruntime", name, m) for name, m in models.items()]
        for runtime, name, model in runners:
            row: dict[str, Any] = {"runtime": runtime, "variant": name, "threads": threads}
            if isinstance(model, str):
                rows.append({**row, "status": "error", "error": model})
                continue
            try:
                call = litert(name, threads) if runtime == "ai_edge_litert" else _ort_call(model, threads)
                probs = np.stack([np.asarray(call(x), dtype=np.float32) for x in held])
                secs = time_calls(call, inputs, spec["warmup"], spec["runs"], spec["min_seconds"])
            except Exception as exc:
                rows.append({**row, "status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            if runtime == "ai_edge_litert" and name == "float32":
                reference[threads] = probs
            row.update(report.latency_summary(1000 * secs))
            row["status"] = "ok"
            row["_probs"] = probs
            if model is not None:
                row["size_bytes"] = Path(model).stat().st_size
            else:
                row["size_bytes"] = bundle.variant(name).size_bytes
            rows.append(row)
    for row in rows:
        probs = row.pop("_probs", None)
        ref = reference.get(row["threads"])
        if probs is None or ref is None:
            continue
        row["agreement"] = float(np.mean(probs.argmax(1) == ref.argmax(1)))
        row["max_abs_diff"] = float(np.abs(probs - ref).max())
    out["rows"] = rows
    return out


# ---------------------------------------------------------------- the suite side


def run_peers(
    bundle: Any, settings: Any, inputs: np.ndarray, input_info: dict[str, Any], litert_rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The ``peers`` section of the latency suite: the worker's rows, with ratios to LiteRT float32."""
    from edge_har.benchmarks.latency import runtime_installed

    started = time.perf_counter()
    if "onnxruntime" not in settings.peers:
        return {"status": "skipped", "error": f"unknown peers {settings.peers}"}
    missing = missing_packages()
    if missing:
        return {
            "status": "not installed",
            "error": f"missing {', '.join(missing)}: pip install 'edge-har[bench,train]'",
        }
    runtime = "ai_edge_litert" if runtime_installed("ai_edge_litert") else settings.runtimes[0]
    with tempfile.TemporaryDirectory(prefix="edge-har-peers-") as tmp:
        work = Path(tmp)
        np.save(work / "inputs.npy", np.ascontiguousarray(inputs, dtype=np.float32))
        spec = {
            "bundle": str(Path(bundle.root).resolve()),
            "inputs_path": str(work / "inputs.npy"),
            "threads": list(settings.threads),
            "warmup": settings.warmup,
            "runs": settings.runs,
            "min_seconds": settings.min_seconds,
            "runtime": runtime,
            "work": str(work),
        }
        (work / "spec.json").write_text(json.dumps(spec))
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "edge_har.benchmarks.peers", "--worker", str(work / "spec.json")],
                env=env,
                capture_output=True,
                text=True,
                timeout=max(300.0, settings.step_timeout_s * 3),
            )
        except subprocess.TimeoutExpired:
            return {"status": "error", "error": "the peer worker timed out"}
        result = work / "result.json"
        if proc.returncode != 0 or not result.is_file():
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            return {"status": "error", "error": f"the peer worker failed (exit {proc.returncode}): {tail}"[:600]}
        section = json.loads(result.read_text())
    ref = {r["threads"]: r["p50_ms"] for r in section["rows"] if r.get("status") == "ok" and r["variant"] == "float32"}
    for row in section["rows"]:
        if row.get("status") == "ok" and ref.get(row["threads"]):
            row["ratio_to_litert_float32"] = row["p50_ms"] / ref[row["threads"]]
    section["status"] = "ok"
    section["inputs"] = input_info.get("source")
    section["seconds"] = round(time.perf_counter() - started, 1)
    return section


def format_peers(section: dict[str, Any]) -> str:
    from edge_har.benchmarks import report

    if section.get("status") != "ok":
        return f"Peers: {section.get('status')}: {section.get('error')}"
    conv = section.get("conversion") or {}
    rows = []
    for r in section["rows"]:
        ok = r.get("status") == "ok"
        rows.append(
            [
                r["runtime"],
                r["variant"],
                str(r["threads"]),
                "ok" if ok else f"error: {r.get('error', '')[:60]}",
                "-" if not ok else f"{r['p50_ms']:.3g}",
                "-" if not ok else f"{r['p90_ms']:.3g}",
                "-" if r.get("ratio_to_litert_float32") is None else f"{r['ratio_to_litert_float32']:.2f}x",
                "-" if r.get("agreement") is None else f"{100 * r['agreement']:.1f}%",
                "-" if r.get("size_bytes") is None else f"{r['size_bytes'] / 1024:.1f}",
            ]
        )
    title = (
        f"Peers on the same windows: ONNX Runtime {section.get('onnxruntime')} (float model from {conv.get('source')} "
        f"via tf2onnx {conv.get('tf2onnx')}) vs LiteRT"
    )
    note = (
        f"ratio: p50 / LiteRT float32's at the same threads; agreement: top class equal to LiteRT float32's on "
        f"{section.get('agreement_windows')} windows (static int8 calibrated on {section.get('calibration_windows')} "
        "others)"
    )
    table = report.format_table(
        ["runtime", "variant", "thr", "status", "p50 ms", "p90 ms", "/ LiteRT f32", "agreement", "size KB"],
        rows,
        title=title,
    )
    return f"{table}\n{note}"


def worker_main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text())
    result = worker(spec)
    (spec_path.parent / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2:]))
    print("usage: edge-har bench latency BUNDLE --peers onnxruntime", file=sys.stderr)
    sys.exit(2)
