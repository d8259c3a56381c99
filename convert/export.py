"""Writing the model bundle: files, ``bundle.json``, validation, atomic publish.

The bundle is assembled in a hidden staging directory next to its final place
(``.<name>.partial-XXXX``) and renamed into place only after
``edge_har.core.bundle.Bundle.load`` and ``verify`` accept it. A conversion that is
refused by the accuracy gate, interrupted or crashes therefore leaves no half
bundle; an existing bundle is replaced only when asked (``--overwrite``).

The JSON follows the schema in ``edge_har/bundle.py``; the device reads it only
through that module.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from edge_har.convert.quantize import ConvertedVariant
from edge_har.core.bundle import BUNDLE_FILE, SCHEMA_VERSION, Bundle, BundleError
from edge_har.core.errors import EdgeHarError
from edge_har.core.interpreter import TFLiteModel, sha256_file

log = logging.getLogger(__name__)

KERAS_MODEL_FILE = "keras_model.h5"
PACKAGES = ("edge-har", "tensorflow", "tf-keras", "numpy", "ai-edge-litert", "tflite-runtime", "matplotlib")


class ExportError(EdgeHarError, RuntimeError):
    """The bundle cannot be written where asked, or failed its own validation."""


# ---------------------------------------------------------------- provenance


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    if out.get("edge-har") is None:  # running from a source tree that is not installed
        from edge_har import __version__

        out["edge-har"] = __version__
    return out


def git_revision(path: str | Path | None = None) -> dict[str, Any] | None:
    """The project's git commit (and whether the tree had local changes), or None outside git."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": rev.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return None


def command_line(argv: list[str] | None = None) -> str:
    import shlex

    args = list(sys.argv if argv is None else argv)
    if args and args[0].endswith(("edge-har", "__main__.py")):
        args[0] = "edge-har"
    return " ".join(shlex.quote(a) for a in args)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# ---------------------------------------------------------------- staging and publishing


def check_destination(out: str | Path, overwrite: bool) -> Path:
    """Refuse early (before any training) when ``out`` cannot be written."""
    dest = Path(out).absolute()
    if dest.exists():
        if not dest.is_dir():
            raise ExportError(f"{dest} exists and is not a directory")
        if any(dest.iterdir()):
            if not (dest / BUNDLE_FILE).is_file():
                raise ExportError(f"{dest} exists, is not empty and is not a model bundle; choose another --out")
            if not overwrite:
                raise ExportError(
                    f"{dest} already holds a bundle; pass --overwrite to replace it, or choose another --out"
                )
    if not dest.parent.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(dest.parent, os.W_OK):
        raise ExportError(f"cannot write to {dest.parent}")
    return dest


@contextlib.contextmanager
def staging_dir(out: str | Path) -> Iterator[Path]:
    """A hidden directory beside ``out`` (same file system, so the final rename is atomic), removed on failure."""
    dest = Path(out).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def publish(staging: Path, out: str | Path, overwrite: bool) -> Path:
    """Validate the staged bundle, then move it to ``out`` (replacing an old bundle if allowed)."""
    dest = check_destination(out, overwrite)
    bundle = validate(staging)
    old: Path | None = None
    if dest.exists():
        if any(dest.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.rename(dest, old / dest.name)
        else:
            dest.rmdir()
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp made it private; a bundle is meant to be shared
    os.rename(staging, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info("bundle %s written to %s", bundle.model_id, dest)
    return dest


def validate(root: Path) -> Bundle:
    """Load the bundle back with the device's reader and check every file's size and sha256."""
    try:
        bundle = Bundle.load(root)
    except BundleError as exc:
        raise ExportError(f"the written bundle does not validate: {exc}") from exc
    problems = bundle.verify()
    if problems:
        raise ExportError("the written bundle does not verify: " + "; ".join(problems))
    return bundle


# ---------------------------------------------------------------- files


def variant_file_name(name: str) -> str:
    return f"model_{name}.tflite"


def write_variant(root: Path, converted: ConvertedVariant) -> dict[str, Any]:
    """Write one variant's ``model_<name>.tflite`` and describe it (a sensor or image-seq variant)."""
    return write_tflite(root, variant_file_name(converted.name), converted, description=True)


def write_tflite(
    root: Path, file_name: str, converted: ConvertedVariant, *, description: bool = True
) -> dict[str, Any]:
    """Write one ``.tflite`` as ``root/file_name`` and describe it for ``bundle.json``.

    Tensor specs come from loading the file back with the device's wrapper, not
    from assumptions. ``description`` is off for a video variant's parts, whose
    variant entry carries the description once.
    """
    path = root / file_name
    path.write_bytes(converted.content)
    model = TFLiteModel(path, num_threads=1)
    entry: dict[str, Any] = {
        "file": path.name,
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "quantization": converted.spec.quantization,
        "full_integer": converted.spec.full_integer,
    }
    if description:
        entry["description"] = converted.spec.description
    entry.update(
        {
            "input": model.input.to_json(),
            "output": model.output.to_json(),
            "converter": converted.settings,
            "ops": converted.extra.get("ops"),
            "float_ops": converted.extra.get("float_ops"),
            "conversion_seconds": round(converted.seconds, 2),
        }
    )
    return entry


def json_ready(value: Any) -> Any:
    """NaN and infinity (e.g. F1 of an empty class) become null: bundle.json must be strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars
        return json_ready(value.item())
    return value


def write_json(root: Path, data: Mapping[str, Any]) -> Path:
    path = root / BUNDLE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def bundle_document(
    *,
    model_id: str,
    labels: list[str],
    input_shape: list[int],
    preprocessing: Mapping[str, Any],
    variants: Mapping[str, Mapping[str, Any]],
    default_variant: str,
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str] | None = None,
    label_map: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """``bundle.json`` as a dict, keys in the order of the schema in ``edge_har/bundle.py``.

    ``label_map`` (data-set class -> the label the model predicts, None for a class left out) is
    written top level, where the device reads it, only when ``--label-map`` made one.
    """
    doc = {
        "schema_version": SCHEMA_VERSION,
        "model_id": model_id,
        "kind": "sensor",
        "labels": list(labels),
        "input": {
            "shape": list(input_shape),
            "dtype": "float32",
            "layout": "NTC",
            "note": "float32 windows after edge_har.core.preprocessing (scaled, resampled, normalised); "
            "quantized variants are fed through their own input scale and zero point",
        },
        "preprocessing": dict(preprocessing),
        "default_variant": default_variant,
        "variants": {k: dict(v) for k, v in variants.items()},
        "metrics": dict(metrics or {}),
        "training": dict(training or {}),
        "provenance": dict(provenance or {}),
        "files": dict(extra_files or {}),
    }
    if label_map:
        doc["label_map"] = dict(label_map)
    return doc
