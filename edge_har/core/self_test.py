"""A bundle's self-test: a few real windows and what each variant gave for them on the workstation.

``convert`` stores them in ``selftest.npz`` (``x``: the windows as the model takes them; ``p_<variant>``:
each variant's probabilities, from the same interpreter code the device runs) and records the file
in ``bundle.json``::

    "self_test": {"file": "selftest.npz", "sha256": "...", "size_bytes": 2345, "windows": 8,
                  "tolerance": {"float32": 0.001, "dynamic_range": 0.02, "int8": 0.1}}

A device runs them through the variant it loaded before it publishes anything
(:func:`run_self_test`) and refuses the bundle when a probability is further than the variant's
tolerance from the workstation's: a runtime that computes the model differently (an op it lacks or
implements otherwise, an old runtime), a file that is not the model, a wrong input layout. The
tolerances are wider than what the same runtime differs by across CPUs (x86-64 against arm64: float
rounding, and one int8 output step, 1/256) and than two runtime versions' int8 kernels (0.06 between
tflite-runtime 2.14 and ai-edge-litert 2.3), and far narrower than a broken model's outputs.
numpy only: this runs on the device.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from edge_har.core.errors import EdgeHarError

__all__ = ["SELF_TEST_FILE", "SelfTestError", "SelfTestResult", "pick_windows", "run_self_test", "write_self_test"]

SELF_TEST_FILE = "selftest.npz"
WINDOWS = 8
MAX_BYTES = 4 * 1024 * 1024  # 8 windows of a large sensor model are a few kB
# by variant name; another variant gets the widest
TOLERANCE = {"float32": 1e-3, "dynamic_range": 0.02, "int8": 0.1}
DEFAULT_TOLERANCE = 0.1


class SelfTestError(EdgeHarError, ValueError):
    """The self-test file cannot be read, or the loaded model does not reproduce it; names the file."""


@dataclass(frozen=True)
class SelfTestResult:
    variant: str
    windows: int
    max_abs_diff: float
    tolerance: float
    labels_agree: int  # windows whose top class is the workstation's


def pick_windows(y: np.ndarray, n: int = WINDOWS) -> np.ndarray:
    """Indices of up to ``n`` windows, taking each class in turn (the first of each, then the second...)."""
    by_class = [list(np.flatnonzero(y == c)) for c in np.unique(y)]
    picked: list[int] = []
    while len(picked) < n and any(by_class):
        for rows in by_class:
            if rows and len(picked) < n:
                picked.append(int(rows.pop(0)))
    return np.asarray(sorted(picked), dtype=np.int64)


def write_self_test(root: Path, x: np.ndarray, probabilities: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Write ``root/selftest.npz`` and return ``bundle.json``'s ``self_test`` entry."""
    arrays = {"x": np.asarray(x, dtype=np.float32)}
    for name, p in probabilities.items():
        arrays[f"p_{name}"] = np.asarray(p, dtype=np.float32)
        if arrays[f"p_{name}"].shape[0] != arrays["x"].shape[0]:
            raise ValueError(f"self-test: {name} has {len(p)} rows for {len(x)} windows")
    path = root / SELF_TEST_FILE
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    data = path.read_bytes()
    return {
        "file": SELF_TEST_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "windows": int(len(x)),
        "tolerance": {name: TOLERANCE.get(name, DEFAULT_TOLERANCE) for name in probabilities},
    }


def _load(root: Path, entry: Mapping[str, Any]) -> dict[str, np.ndarray]:
    file = root / str(entry["file"])
    try:
        data = file.read_bytes() if file.is_file() and file.stat().st_size <= MAX_BYTES else None
    except OSError as exc:
        raise SelfTestError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if data is None:
        raise SelfTestError(f"{file}: missing, or over {MAX_BYTES} bytes (bundle.json self_test names it)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise SelfTestError(f"{file}: sha256 does not match bundle.json (a damaged or replaced file)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: np.asarray(npz[name]) for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SelfTestError(f"{file}: not a self-test archive ({exc})") from None


def run_self_test(
    root: Path, entry: Optional[Mapping[str, Any]], variant: str, predict: Callable[[np.ndarray], np.ndarray]
) -> Optional[SelfTestResult]:
    """Run the stored windows through ``predict`` (one window in, its probabilities out) and compare.

    None when the bundle has no self-test for ``variant`` (an older bundle); SelfTestError naming the
    file when the model does not reproduce the workstation's outputs within the tolerance.
    """
    if not entry or f"p_{variant}" not in _names(entry):
        return None
    file = root / str(entry["file"])
    arrays = _load(root, entry)
    x, expected = arrays.get("x"), arrays.get(f"p_{variant}")
    if x is None or expected is None:
        return None
    if x.dtype != np.float32 or expected.ndim != 2 or len(x) != len(expected) or not len(x):
        raise SelfTestError(f"{file}: x and p_{variant} do not describe the same windows")
    tolerance = float(entry.get("tolerance", {}).get(variant, DEFAULT_TOLERANCE))
    got = np.stack([np.asarray(predict(w), dtype=np.float64).reshape(-1) for w in x])
    if got.shape != expected.shape:
        raise SelfTestError(
            f"{file}: the model gives {got.shape[1]} outputs per window, the self-test {expected.shape[1]}"
        )
    diff = float(np.abs(got - expected.astype(np.float64)).max())
    agree = int((got.argmax(axis=1) == expected.argmax(axis=1)).sum())
    if not diff <= tolerance:
        raise SelfTestError(
            f"{file}: variant {variant} gives probabilities up to {diff:.3g} away from the workstation's on its "
            f"{len(x)} stored windows (tolerance {tolerance:g}; top class agrees on {agree}): this runtime does not "
            "compute this model as the workstation did"
        )
    return SelfTestResult(variant, len(x), diff, tolerance, agree)


def _names(entry: Mapping[str, Any]) -> set[str]:
    tolerance = entry.get("tolerance")
    return {f"p_{name}" for name in tolerance} if isinstance(tolerance, Mapping) else set()
