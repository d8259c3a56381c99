"""The model bundle: the one contract between the workstation and the device.

A bundle is a directory holding ``bundle.json`` and the ``.tflite`` files it
names. The workstation writes it (``convert.export``); the device only reads it,
through this module, so both sides agree on one schema. Layout of ``bundle.json``
(schema version 1)::

    {
      "schema_version": 1,
      "model_id": "hmp-cnn-lstm-20261121-1a2b3c4d",
      "kind": "sensor",                      # "video" for the camera path
      "labels": ["Brush_teeth", ...],
      "input": {"shape": [1, 96, 3], "dtype": "float32", "layout": "NTC"},
      "preprocessing": {...},                # edge_har.preprocessing.Preprocessing.to_json()
      "default_variant": "int8",
      "variants": {
        "float32": {"file": "model_float32.tflite", "sha256": "...", "size_bytes": 123,
                    "quantization": "none", "description": "...",
                    "input": {TensorSpec}, "output": {TensorSpec},
                    "metrics": {"accuracy": 0.9, "macro_f1": 0.88, ...}},
        "dynamic_range": {...}, "int8": {...}
      },
      "metrics": {"split": {...}, "int8_drop_points": 0.4, ...},
      "training": {...},
      "provenance": {"dataset": {...}, "command": "...", "packages": {...}, "created": "...", "git": "..."}
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .interpreter import TFLiteModel, sha256_file
from .preprocessing import Preprocessing, PreprocessingError

SCHEMA_VERSION = 1
BUNDLE_FILE = "bundle.json"
KINDS = ("sensor", "video")
REQUIRED_KEYS = ("schema_version", "model_id", "kind", "labels", "input", "preprocessing", "variants", "default_variant")
VARIANT_KEYS = ("file", "sha256", "size_bytes", "quantization", "input", "output")


class BundleError(ValueError):
    """A bundle that is missing, malformed or inconsistent; the message names file and key."""


@dataclass(frozen=True)
class Variant:
    name: str
    file: Path
    sha256: str
    size_bytes: int
    quantization: str
    meta: Mapping[str, Any]

    @property
    def metrics(self) -> Mapping[str, Any]:
        return self.meta.get("metrics", {})


class Bundle:
    """A validated, read-only view of a bundle directory."""

    def __init__(self, root: Path, data: dict[str, Any]) -> None:
        self.root = root
        self.data = data
        where = f"{root / BUNDLE_FILE}"
        self.labels: list[str] = [str(label) for label in data["labels"]]
        self.kind: str = data["kind"]
        try:
            self.preprocessing = Preprocessing.from_json(data["preprocessing"], where=f"{where}: preprocessing")
        except PreprocessingError as exc:
            raise BundleError(str(exc)) from exc
        self.variants: dict[str, Variant] = {}
        for name, meta in data["variants"].items():
            self.variants[name] = Variant(
                name=name,
                file=root / meta["file"],
                sha256=str(meta["sha256"]),
                size_bytes=int(meta["size_bytes"]),
                quantization=str(meta["quantization"]),
                meta=meta,
            )

    # ----------------------------------------------------------- loading

    @classmethod
    def load(cls, path: str | Path) -> "Bundle":
        root = Path(path)
        if root.is_file() and root.name == BUNDLE_FILE:
            root = root.parent
        file = root / BUNDLE_FILE
        if not file.is_file():
            raise BundleError(f"{root}: not a model bundle (no {BUNDLE_FILE})")
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise BundleError(f"{file}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        validate_data(data, where=str(file))
        return cls(root, data)

    # ----------------------------------------------------------- access

    @property
    def model_id(self) -> str:
        return str(self.data["model_id"])

    @property
    def default_variant(self) -> str:
        return str(self.data["default_variant"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data["input"]["shape"])

    @property
    def metrics(self) -> Mapping[str, Any]:
        return self.data.get("metrics", {})

    def variant(self, name: str | None = None) -> Variant:
        key = name or self.default_variant
        if key not in self.variants:
            raise BundleError(
                f"{self.root / BUNDLE_FILE}: no variant '{key}'; this bundle has {', '.join(self.variants)}"
            )
        return self.variants[key]

    def verify(self) -> list[str]:
        """Check every variant's file exists with the recorded size and sha256; return problems."""
        problems = []
        for v in self.variants.values():
            if not v.file.is_file():
                problems.append(f"variants.{v.name}.file: {v.file} is missing")
                continue
            if v.file.stat().st_size != v.size_bytes:
                problems.append(f"variants.{v.name}.size_bytes: {v.size_bytes} recorded, {v.file.stat().st_size} on disk")
            digest = sha256_file(v.file)
            if digest != v.sha256:
                problems.append(f"variants.{v.name}.sha256: {v.file.name} hashes to {digest}, bundle says {v.sha256}")
        return problems

    def load_model(
        self,
        variant: str | None = None,
        backend: str = "auto",
        num_threads: int | None = 1,
        delegate: str | None = None,
        verify_sha256: bool = True,
    ) -> TFLiteModel:
        v = self.variant(variant)
        return TFLiteModel(
            v.file,
            backend=backend,
            num_threads=num_threads,
            delegate=delegate,
            expected_sha256=v.sha256 if verify_sha256 else None,
        )


def validate_data(data: Any, where: str = BUNDLE_FILE) -> None:
    """Structural checks of a ``bundle.json`` object, raising BundleError naming the key."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: top level must be an object")
    for key in REQUIRED_KEYS:
        if key not in data:
            raise BundleError(f"{where}: missing key '{key}'")
    if data["schema_version"] != SCHEMA_VERSION:
        raise BundleError(
            f"{where}: schema_version {data['schema_version']!r} is not supported (this edge-har reads {SCHEMA_VERSION})"
        )
    if data["kind"] not in KINDS:
        raise BundleError(f"{where}: kind {data['kind']!r} must be one of {', '.join(KINDS)}")
    labels = data["labels"]
    if not isinstance(labels, list) or not labels or len(set(map(str, labels))) != len(labels):
        raise BundleError(f"{where}: labels must be a non-empty list of unique names")
    shape = data["input"].get("shape") if isinstance(data["input"], dict) else None
    if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise BundleError(f"{where}: input.shape must be a list of positive integers")
    variants = data["variants"]
    if not isinstance(variants, dict) or not variants:
        raise BundleError(f"{where}: variants must be a non-empty object")
    for name, meta in variants.items():
        if not isinstance(meta, dict):
            raise BundleError(f"{where}: variants.{name} must be an object")
        for key in VARIANT_KEYS:
            if key not in meta:
                raise BundleError(f"{where}: missing key 'variants.{name}.{key}'")
    if data["default_variant"] not in variants:
        raise BundleError(
            f"{where}: default_variant {data['default_variant']!r} is not one of the variants ({', '.join(variants)})"
        )
