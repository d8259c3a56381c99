"""The model bundle: the one contract between the workstation and the device.

A bundle is a directory holding ``bundle.json`` and the ``.tflite`` files it
names. The workstation writes it (``edge_har.convert.export``); the device only reads it,
through this module, so both sides agree on one schema. Layout of ``bundle.json``
(schema version 1)::

    {
      "schema_version": 1,
      "model_id": "hmp-cnn-lstm-20261121-1a2b3c4d",
      "kind": "sensor",                      # "video" for the camera path
      "labels": ["Brush_teeth", ...],
      "input": {"shape": [1, 96, 3], "dtype": "float32", "layout": "NTC"},
      "preprocessing": {...},                # edge_har.core.preprocessing.Preprocessing.to_json()
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

A ``"kind": "video"`` bundle (the camera path, ``edge_har.convert.video_pipeline``) differs
in three additive ways; everything else above holds for it too:

* ``preprocessing`` is ``edge_har.core.frames.FrameSpec.to_json()``: the fields above
  with rate = frames per second, window = T frames, stride in frames, channels
  R, G, B, plus ``"frame": {"height", "width", "fit", "interpolation", ...}``.
* a variant may be split into ``parts`` instead of one ``file``: the device runs
  the frame encoder once per frame and the temporal head over a ring buffer of
  the last T feature vectors::

      "int8": {"quantization": "full_integer_int8", "description": "...", "metrics": {...},
               "parts": {"encoder": {"file": "encoder_int8.tflite", "sha256": "...", "size_bytes": 123,
                                     "quantization": "...", "input": {TensorSpec}, "output": {TensorSpec}},
                         "head":    {...same keys...},
                         "clip":    {...optional: the whole clip model, T frames in, for comparisons}}}

  A variant without ``parts`` (the still-image mode) has ``file`` as above.
* ``"video": {"mode": "video" | "image-seq", "frames": T, "feature_shape": [...], ...}``
  describes the model for the video runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edge_har.core.errors import EdgeHarError
from edge_har.core.interpreter import InterpreterOptions, TFLiteModel, sha256_file
from edge_har.core.preprocessing import Preprocessing, PreprocessingError

SCHEMA_VERSION = 1
BUNDLE_FILE = "bundle.json"
KINDS = ("sensor", "video")
REQUIRED_KEYS = (
    "schema_version",
    "model_id",
    "kind",
    "labels",
    "input",
    "preprocessing",
    "variants",
    "default_variant",
)
VARIANT_KEYS = ("file", "sha256", "size_bytes", "quantization", "input", "output")
PART_KEYS = ("file", "sha256", "size_bytes", "input", "output")  # each entry of a split variant's "parts"


class BundleError(EdgeHarError, ValueError):
    """A bundle that is missing, malformed or inconsistent; the message names file and key."""


@dataclass(frozen=True)
class ModelPart:
    """One ``.tflite`` of a split variant (a video bundle's ``encoder`` or ``head``)."""

    name: str
    file: Path
    sha256: str
    size_bytes: int
    meta: Mapping[str, Any]


@dataclass(frozen=True)
class Variant:
    name: str
    file: Path | None  # None for a variant split into parts
    sha256: str | None
    size_bytes: int  # of all its files
    quantization: str
    meta: Mapping[str, Any]
    parts: Mapping[str, ModelPart] = field(default_factory=dict)

    @property
    def metrics(self) -> Mapping[str, Any]:
        return self.meta.get("metrics", {})

    def files(self) -> list[tuple[str, Path, int, str]]:
        """(bundle.json key, path, size, sha256) of every file the variant needs."""
        if self.parts:
            return [
                (f"variants.{self.name}.parts.{p.name}", p.file, p.size_bytes, p.sha256) for p in self.parts.values()
            ]
        assert self.file is not None and self.sha256 is not None
        return [(f"variants.{self.name}", self.file, self.size_bytes, self.sha256)]


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
            if "parts" in meta:
                parts = {
                    part: ModelPart(part, root / pm["file"], str(pm["sha256"]), int(pm["size_bytes"]), pm)
                    for part, pm in meta["parts"].items()
                }
                self.variants[name] = Variant(
                    name=name,
                    file=None,
                    sha256=None,
                    size_bytes=sum(p.size_bytes for p in parts.values()),
                    quantization=str(meta["quantization"]),
                    meta=meta,
                    parts=parts,
                )
                continue
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
    def load(cls, path: str | Path) -> Bundle:
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
            for key, file, size, sha in v.files():
                if not file.is_file():
                    problems.append(f"{key}.file: {file} is missing")
                    continue
                if file.stat().st_size != size:
                    problems.append(f"{key}.size_bytes: {size} recorded, {file.stat().st_size} on disk")
                digest = sha256_file(file)
                if digest != sha:
                    problems.append(f"{key}.sha256: {file.name} hashes to {digest}, bundle says {sha}")
        return problems

    def load_model(
        self,
        variant: str | None = None,
        backend: str = "auto",
        num_threads: int | None = 1,
        delegate: str | None = None,
        verify_sha256: bool = True,
        part: str | None = None,
        *,
        options: InterpreterOptions | None = None,
    ) -> TFLiteModel:
        """Load a variant's model, or with ``part`` one part of a split (video) variant.

        ``options`` (the device's path) replaces ``backend``, ``num_threads``, ``delegate``
        and ``verify_sha256``; the keywords stay for workstation tools.
        """
        if options is None:
            options = InterpreterOptions(backend, num_threads, delegate, verify_sha256=verify_sha256)
        v = self.variant(variant)
        file, sha = v.file, v.sha256
        if v.parts or part is not None:
            if part is None or part not in v.parts:
                have = ", ".join(v.parts) or "none (it is one model)"
                raise BundleError(
                    f"{self.root / BUNDLE_FILE}: variant '{v.name}' has no part {part!r}; its parts: {have}"
                )
            file, sha = v.parts[part].file, v.parts[part].sha256
        assert file is not None
        return TFLiteModel(file, expected_sha256=sha if options.verify_sha256 else None, options=options)


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
        if "parts" in meta:
            _validate_parts(data, name, meta, where)
            continue
        for key in VARIANT_KEYS:
            if key not in meta:
                raise BundleError(f"{where}: missing key 'variants.{name}.{key}'")
    if data["default_variant"] not in variants:
        raise BundleError(
            f"{where}: default_variant {data['default_variant']!r} is not one of the variants ({', '.join(variants)})"
        )
    if data["kind"] == "video":
        frame = data["preprocessing"].get("frame") if isinstance(data["preprocessing"], dict) else None
        if not isinstance(frame, dict) or not all(isinstance(frame.get(k), int) for k in ("height", "width")):
            raise BundleError(f"{where}: a video bundle needs 'preprocessing.frame' with integer height and width")


def _validate_parts(data: dict[str, Any], name: str, meta: dict[str, Any], where: str) -> None:
    """A split variant (video only): ``quantization`` and a non-empty ``parts`` object of PART_KEYS each."""
    if data["kind"] != "video":
        raise BundleError(f"{where}: variants.{name}.parts: only a video bundle may split a variant into parts")
    if "quantization" not in meta:
        raise BundleError(f"{where}: missing key 'variants.{name}.quantization'")
    parts = meta["parts"]
    if not isinstance(parts, dict) or not parts:
        raise BundleError(f"{where}: variants.{name}.parts must be a non-empty object")
    for part, pm in parts.items():
        if not isinstance(pm, dict):
            raise BundleError(f"{where}: variants.{name}.parts.{part} must be an object")
        for key in PART_KEYS:
            if key not in pm:
                raise BundleError(f"{where}: missing key 'variants.{name}.parts.{part}.{key}'")
