"""The floor under a latency figure: multiply-accumulates per window, and the time they take at peak.

A p50 alone does not say whether a variant is slow or the CPU is: 0.11 ms is near the
floor for a model of 2.5 M MACs on a CPU that does 25 G MAC/s, and far from it on one
that does 100 G. So the latency suite reports, per variant:

* **MACs per window**, counted from the ``.tflite`` graph itself (the op list and tensor
  shapes the interpreter reports: ``FULLY_CONNECTED``, ``CONV_2D``, ``DEPTHWISE_CONV_2D``,
  ``TRANSPOSE_CONV``, ``BATCH_MATMUL``, the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``). No
  TensorFlow and no flatbuffer schema: what the runtime loads is what is counted.
* **the one-thread peak** of XNNPACK's matrix kernels on this CPU, measured, per kind of
  arithmetic: a 64 x 512 x 512 fully connected layer converted as float32, dynamic range
  (int8 weights, activations quantized on the fly) and full int8, each timed through the
  same runtime (``measure_peaks``; needs TensorFlow to build the three probe models, so it
  runs on a workstation; elsewhere the MACs are still reported without a floor).
* **the floor** = MACs / peak: the time the variant would take if every MAC ran at the rate
  of a large, well-shaped matrix product. A HAR model's layers are small (matrix-vector
  products at batch 1, a few channels) and never reach it; the ratio p50 / floor says how
  much of the time is overhead (op dispatch, small shapes, the Python glue, the element-wise
  gates of the LSTM) rather than arithmetic, and whether int8 has head-room over float32 on
  this CPU at all (its peak over float32's: about 4x with VNNI, about 1-2x on AVX2 alone).

``python -m edge_har.benchmarks.floor BUNDLE [--peaks]`` prints the report on its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

PROBE_SHAPE = (64, 512, 512)  # M x K x N of the peak probe: compute-bound, fits L2 as int8
PROBE_VARIANTS = ("float32", "dynamic_range", "int8")
MAC_OPS = (
    "FULLY_CONNECTED",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "TRANSPOSE_CONV",
    "BATCH_MATMUL",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
)


@dataclass
class MacCount:
    """Multiply-accumulates of one model, per op type (every other op counted as zero)."""

    total: int
    by_op: dict[str, int] = field(default_factory=dict)
    ops: int = 0  # nodes in the graph (delegate nodes left out)

    def to_json(self) -> dict[str, Any]:
        return {"macs": self.total, "by_op": self.by_op, "ops": self.ops}


def _prod(shape: Sequence[int]) -> int:
    return int(np.prod([int(d) for d in shape], dtype=np.int64)) if len(shape) else 1


def op_macs(op: str, inputs: Sequence[tuple[int, ...] | None], outputs: Sequence[tuple[int, ...]]) -> int:
    """MACs of one node from its input and output tensor shapes (None: an absent optional input)."""
    out = outputs[0] if outputs else ()
    if op == "FULLY_CONNECTED":
        x, w = inputs[0], inputs[1]
        if x is None or w is None or len(w) != 2:
            return 0
        rows = _prod(x) // max(1, int(w[1]))
        return rows * int(w[0]) * int(w[1])
    if op == "CONV_2D" and inputs[1] is not None:
        w = inputs[1]  # [Cout, kh, kw, Cin]
        return _prod(out) * _prod(w[1:])
    if op == "DEPTHWISE_CONV_2D" and inputs[1] is not None:
        w = inputs[1]  # [1, kh, kw, Cout]
        return _prod(out) * int(w[1]) * int(w[2])
    if op == "TRANSPOSE_CONV" and len(inputs) > 2 and inputs[1] is not None and inputs[2] is not None:
        w, x = inputs[1], inputs[2]  # inputs: output shape, weights [Cout, kh, kw, Cin], input
        return _prod(x) * int(w[0]) * int(w[1]) * int(w[2])
    if op == "BATCH_MATMUL" and inputs[0] is not None and len(out) >= 2:
        # out [..., M, N]; A holds batch * M * K values whatever its adjoint flag
        return _prod(inputs[0]) * int(out[-1])
    if op == "UNIDIRECTIONAL_SEQUENCE_LSTM" and inputs[0] is not None:
        x = inputs[0]  # [B, T, I] (time major or not: B * T steps either way)
        steps = _prod(x[:-1])
        weights = [inputs[i] for i in (*range(1, 9), 16) if i < len(inputs)]  # gate + recurrent (+ projection)
        return steps * sum(_prod(w) for w in weights if w is not None and len(w) == 2)
    return 0


def count_macs(model_path: str | Path, backend: str = "auto") -> MacCount:
    """Count a ``.tflite`` file's MACs through the runtime's op list (no delegate applied)."""
    from edge_har.core.interpreter import backend_module, select_backend

    name = select_backend(backend).name
    mod = backend_module(name)
    kwargs: dict[str, Any] = {"model_path": str(model_path)}
    resolver = getattr(mod, "OpResolverType", None)
    if resolver is not None:  # keep XNNPACK out: its nodes would hide nothing, but the load is faster
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = mod.Interpreter(**kwargs)
    interp.allocate_tensors()
    shapes = {int(t["index"]): tuple(int(d) for d in t["shape"]) for t in interp.get_tensor_details()}
    total, n = 0, 0
    by_op: dict[str, int] = {}
    for node in interp._get_ops_details():  # noqa: SLF001 - the op list has no public API
        op = str(node.get("op_name", ""))
        if op == "DELEGATE":
            continue
        n += 1
        ins = [shapes.get(int(i)) if int(i) >= 0 else None for i in node["inputs"]]
        outs = [shapes.get(int(i), ()) for i in node["outputs"]]
        macs = op_macs(op, ins, outs)
        if macs:
            by_op[op] = by_op.get(op, 0) + macs
            total += macs
    return MacCount(total=total, by_op=by_op, ops=n)


def bundle_macs(bundle: Any, backend: str = "auto") -> dict[str, dict[str, Any]]:
    """``count_macs`` of every one-file variant of a bundle (a video variant per part)."""
    out: dict[str, dict[str, Any]] = {}
    for name, variant in bundle.variants.items():
        files = {f"{name}:{p.name}": p.file for p in variant.parts.values()} if variant.parts else {name: variant.file}
        for label, file in files.items():
            try:
                out[label] = count_macs(file, backend).to_json()
            except Exception as exc:
                out[label] = {"macs": None, "error": f"{type(exc).__name__}: {exc}"}
    return out


# ---------------------------------------------------------------- the peak


def build_probes(folder: Path, shape: Sequence[int] = PROBE_SHAPE) -> dict[str, Path]:
    """One fully connected layer (M x K input, N units, no bias) as float32, dynamic range and int8 ``.tflite``."""
    from edge_har.convert.models import import_tf

    tf, keras = import_tf()
    m, k, n = (int(v) for v in shape)
    rng = np.random.default_rng(0)
    inp = keras.Input(shape=(k,), batch_size=m)
    model = keras.Model(inp, keras.layers.Dense(n, use_bias=False)(inp))
    model.layers[-1].set_weights([rng.standard_normal((k, n)).astype(np.float32) / np.sqrt(k)])
    files = {}
    for variant in PROBE_VARIANTS:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if variant != "float32":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "int8":
            conv.representative_dataset = lambda: ([rng.standard_normal((m, k)).astype(np.float32)] for _ in range(8))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        path = folder / f"probe_{variant}.tflite"
        path.write_bytes(conv.convert())
        files[variant] = path
    return files


def time_probe(path: Path, backend: str, threads: int, seconds: float = 0.4) -> dict[str, Any]:
    """One probe's invoke() time through TFLiteModel's runtime, as G MAC/s."""
    from edge_har.core.interpreter import TFLiteModel
    from edge_har.core.timing import time_invokes

    model = TFLiteModel(path, backend=backend, num_threads=threads)
    interp = model.interpreter
    spec = model.input
    x = np.random.default_rng(1).standard_normal(spec.shape).astype(np.float32)
    if spec.quantized:
        from edge_har.core.interpreter import quantize

        x = quantize(x, spec)
    feeds = [[(interp.get_input_details()[0]["index"], x)]]
    first = time_invokes(interp, feeds, warmup=3, runs=5)
    runs = max(10, min(2000, int(seconds / max(float(np.median(first)), 1e-6))))
    secs = time_invokes(interp, feeds, warmup=5, runs=runs)
    macs = count_macs(path, backend).total
    p50 = float(np.median(secs))
    return {"macs": macs, "p50_ms": p50 * 1e3, "runs": runs, "gmacs": macs / p50 / 1e9, "runtime": model.backend.name}


def measure_peaks(backend: str = "auto", threads: int = 1) -> dict[str, Any]:
    """This CPU's one-thread G MAC/s per kind of arithmetic, through XNNPACK (needs TensorFlow)."""
    with tempfile.TemporaryDirectory(prefix="edge-har-floor-") as tmp:
        probes = build_probes(Path(tmp))
        peaks = {variant: time_probe(path, backend, threads) for variant, path in probes.items()}
    return {
        "status": "ok",
        "threads": threads,
        "probe": "fully connected, M x K x N = " + " x ".join(str(d) for d in PROBE_SHAPE),
        "peaks": peaks,
    }


def measure_peaks_isolated(backend: str = "auto", threads: int = 1, timeout_s: float = 300.0) -> dict[str, Any]:
    """``measure_peaks`` in its own process: the TensorFlow import stays out of the suite's memory."""
    with tempfile.TemporaryDirectory(prefix="edge-har-floor-") as tmp:
        out = Path(tmp) / "peaks.json"
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        cmd = [sys.executable, "-m", "edge_har.benchmarks.floor", "--peaks-json", str(out)]
        cmd += ["--runtime", backend, "--threads", str(threads)]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": "error", "error": f"timed out after {timeout_s:.0f} s"}
        if proc.returncode == 0 and out.is_file():
            return json.loads(out.read_text())
        tail = " | ".join(proc.stderr.strip().splitlines()[-2:])
        return {"status": "error", "error": f"exit status {proc.returncode}: {tail}"[:400]}


def peak_for(variant_quantization: str, variant: str, peaks: Mapping[str, Any]) -> dict[str, Any] | None:
    """The probe a bundle variant's arithmetic matches: full integer -> int8, int8 weights -> dynamic range."""
    q = (variant_quantization or "").lower()
    if variant == "int8" or "full_integer" in q:
        key = "int8"
    elif variant == "dynamic_range" or "dynamic" in q:
        key = "dynamic_range"
    else:
        key = "float32"
    return peaks.get(key)


def floor_section(bundle: Any, backend: str = "auto", peaks: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """MACs per variant and, with ``peaks``, each variant's floor in ms: the latency suite's ``floor``."""
    started = time.perf_counter()
    macs = bundle_macs(bundle, backend)
    peak_table = (peaks or {}).get("peaks") or {}
    variants: dict[str, Any] = {}
    for label, count in macs.items():
        name = label.split(":")[0]
        entry: dict[str, Any] = dict(count)
        peak = peak_for(bundle.variants[name].quantization, name, peak_table) if peak_table else None
        if peak and count.get("macs"):
            entry["peak_gmacs"] = peak["gmacs"]
            entry["floor_ms"] = count["macs"] / (peak["gmacs"] * 1e9) * 1e3
        variants[label] = entry
    return {
        "variants": variants,
        "peaks": dict(peaks) if peaks else {"status": "not measured"},
        "seconds": round(time.perf_counter() - started, 2),
    }


def format_floor(section: Mapping[str, Any]) -> str:
    from edge_har.benchmarks import report

    peaks = section.get("peaks") or {}
    rows = []
    for label, e in section["variants"].items():
        rows.append(
            [
                label,
                "-" if e.get("macs") is None else f"{e['macs'] / 1e6:.3f}",
                ", ".join(
                    f"{op} {v / 1e6:.2f}" for op, v in sorted((e.get("by_op") or {}).items(), key=lambda kv: -kv[1])
                ),
                "-" if e.get("peak_gmacs") is None else f"{e['peak_gmacs']:.1f}",
                "-" if e.get("floor_ms") is None else f"{1000 * e['floor_ms']:.1f}",
            ]
        )
    if peaks.get("status") == "ok":
        peak_line = f"peaks: {peaks.get('probe')}, {peaks.get('threads')} thread(s): " + ", ".join(
            f"{k} {v['gmacs']:.1f} G MAC/s" for k, v in peaks["peaks"].items()
        )
    else:
        peak_line = f"peaks: {peaks.get('status')}{': ' + peaks['error'] if peaks.get('error') else ''}"
    table = report.format_table(
        ["variant", "M MACs/window", "by op (M)", "peak G MAC/s", "floor us"],
        rows,
        title="Floor: multiply-accumulates per window and their time at this CPU's measured one-thread peak",
    )
    return f"{table}\n{peak_line}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_har.benchmarks.floor",
        description="MACs per window of a bundle's variants and the implied time at this CPU's measured peak.",
        epilog="example: python -m edge_har.benchmarks.floor bundles/hmp --peaks",
    )
    parser.add_argument("bundle", nargs="?", type=Path, help="a bundle directory")
    parser.add_argument("--peaks", action="store_true", help="also measure the one-thread peaks (needs TensorFlow)")
    parser.add_argument("--peaks-json", type=Path, default=None, help=argparse.SUPPRESS)  # the isolated worker
    parser.add_argument("--runtime", default="auto", help="TFLite runtime (default: auto)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads of the peak probe (default 1)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.peaks_json is not None:
        args.peaks_json.write_text(json.dumps(measure_peaks(args.runtime, args.threads)))
        return 0
    if args.bundle is None:
        parser.error("give a bundle directory")
    from edge_har.core.bundle import Bundle

    bundle = Bundle.load(args.bundle)
    peaks = measure_peaks_isolated(args.runtime, args.threads) if args.peaks else None
    print(format_floor(floor_section(bundle, args.runtime, peaks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
