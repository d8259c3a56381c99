"""Run every variant of a bundle over the same windows; write the probabilities for the arm64 check.

Used on both sides of ``scripts/arm64_check.sh`` (the x86-64 host and the emulated arm64 root),
so both load the models through the device's own path (``Bundle.load_model`` ->
``edge_har.core.interpreter.TFLiteModel``) and the only difference is the machine and the runtime.

    python predict.py BUNDLE WINDOWS.npy OUTDIR [--expect-backend NAME]

Writes ``OUTDIR/<variant>.npy`` (float32, windows x classes) and ``OUTDIR/meta.json`` (backend,
its version, numpy, machine, seconds per variant, and the load error of each variant the runtime
could not load: the next variants still run, and report.py decides).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edge_har.core.bundle import Bundle
from edge_har.core.interpreter import select_backend


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="a converted bundle folder")
    p.add_argument("windows", type=Path, help="model-ready windows, float32 .npy of shape (n, window, channels)")
    p.add_argument("out", type=Path, help="folder for <variant>.npy and meta.json")
    p.add_argument(
        "--expect-backend", type=str, default=None, help="fail unless 'auto' picks this runtime (ai_edge_litert, ...)"
    )
    args = p.parse_args(argv)

    backend = select_backend("auto")
    if args.expect_backend and backend.name != args.expect_backend:
        print(f"error: the runtime picked is {backend.name}, expected {args.expect_backend}", file=sys.stderr)
        return 1
    bundle = Bundle.load(args.bundle)
    windows = np.load(args.windows)
    args.out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name in bundle.variants:
        if bundle.variants[name].parts:
            continue  # a split (video) variant has no single window input
        started = time.perf_counter()
        try:
            model = bundle.load_model(name, backend=backend.name)
        except Exception as exc:  # a runtime too old for the model's ops: recorded, judged by report.py
            errors[name] = str(exc).splitlines()[0]
            print(f"predict: {name}: {errors[name]}", file=sys.stderr)
            continue
        probs = model.predict_batch(windows).astype(np.float32)
        seconds[name] = round(time.perf_counter() - started, 3)
        np.save(args.out / f"{name}.npy", probs)
    meta = {
        "backend": backend.name,
        "backend_version": backend.version,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "windows": int(len(windows)),
        "seconds": seconds,
        "errors": errors,
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"predict: {len(windows)} windows x {len(seconds)} variants on {meta['machine']} with {backend.name} {backend.version}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
