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
* ``"video": {"mode": "video" | "image-seq" | "pose", "frames": T, "feature_shape": [...], ...}``
  describes the model for the video runtime.

Every key the device reads is validated with pydantic (:class:`BundleDoc`) before anything
uses it, so a damaged file gives one :class:`BundleError` naming the file and each key path
(``/x/bundle.json: variants.int8.file: must be a string (got None)``), never a traceback.
A ``schema_version`` newer than :data:`SCHEMA_VERSION` is refused with that reason alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
)

from edge_har.core.errors import EdgeHarError
from edge_har.core.interpreter import InterpreterOptions, TFLiteModel, sha256_file
from edge_har.core.preprocessing import Preprocessing, PreprocessingError

SCHEMA_VERSION = 1
BUNDLE_FILE = "bundle.json"
KINDS = ("sensor", "video")

# Bounds that no real bundle comes near, so a damaged number fails here and not as an
# overflow or a giant allocation later (a window of 10**30 samples, a 1e300 Hz rate).
MAX_BUNDLE_JSON_BYTES = 16 * 1024 * 1024  # a real bundle.json is a few kB
MAX_DIM = 1_000_000  # tensor dimensions, window and stride, channel and label counts
MAX_RATE_HZ = 1_000_000.0
MAX_MODEL_BYTES = 1 << 40
MAX_PROBLEMS_SHOWN = 8


class BundleError(EdgeHarError, ValueError):
    """A bundle that is missing, malformed or inconsistent; the message names file and key.

    ``problems`` holds one ``key.path: message`` line per problem (the message shows the first
    few after the file name); the daemon exits 78 (EX_CONFIG) on it.
    """

    def __init__(self, message: str, problems: Optional[Sequence[str]] = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]


# ----------------------------------------------------------------------------- the schema
#
# pydantic models of what the device reads. ``extra="allow"``: the workstation records much
# more (converter settings, metrics, provenance) that the device ignores, and a bundle with an
# extra key must stay loadable by an older reader. ``strict=True``: bundle.json is written by a
# program, so "123" where a number belongs is damage, not a convenience to coerce.

_FileName = Annotated[str, StringConstraints(min_length=1, max_length=255)]
_Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
_Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
_Dim = Annotated[int, Field(ge=1, le=MAX_DIM)]
_Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class TensorDoc(_Doc):
    """A model tensor as ``TensorSpec.to_json`` records it (what the writer read back from the file)."""

    shape: Annotated[List[_Dim], Field(min_length=1, max_length=8)]
    dtype: _Name
    name: str = ""
    scale: Optional[_Finite] = None
    zero_point: Optional[int] = None


class ModelFileDoc(_Doc):
    """One ``.tflite`` file: a one-file variant, or a part of a split (video) variant."""

    file: _FileName
    sha256: _Sha256
    size_bytes: Annotated[int, Field(ge=0, le=MAX_MODEL_BYTES)]
    input: TensorDoc
    output: TensorDoc
    quantization: Optional[str] = None

    @field_validator("file")
    @classmethod
    def _inside_the_bundle(cls, value: str) -> str:
        path = PurePosixPath(value)
        if "\x00" in value or "\\" in value or path.is_absolute() or ".." in path.parts:
            raise ValueError("must be a file name inside the bundle folder (relative, no '..')")
        return value


class VariantDoc(ModelFileDoc):
    """A one-file variant (sensor, and the still-image video mode)."""

    quantization: str
    description: str = ""
    metrics: Dict[str, Any] = Field(default_factory=dict)


class SplitVariantDoc(_Doc):
    """A video variant split into ``parts`` (encoder, head, optional clip)."""

    quantization: str
    parts: Annotated[Dict[_Name, ModelFileDoc], Field(min_length=1)]
    size_bytes: Optional[Annotated[int, Field(ge=0)]] = None
    description: str = ""
    metrics: Dict[str, Any] = Field(default_factory=dict)


def _variant_form(value: Any) -> str:
    return _SPLIT if isinstance(value, dict) and "parts" in value else _ONE_FILE


_SPLIT, _ONE_FILE = "<split variant>", "<one-file variant>"  # union tags: not keys in the file
_AnyVariant = Annotated[
    Union[Annotated[VariantDoc, Tag(_ONE_FILE)], Annotated[SplitVariantDoc, Tag(_SPLIT)]],
    Discriminator(_variant_form),
]


class InputDoc(_Doc):
    shape: Annotated[List[_Dim], Field(min_length=1, max_length=8)]
    dtype: Optional[str] = None
    layout: Optional[str] = None


class ValueScalingDoc(_Doc):
    scale: Annotated[List[_Finite], Field(min_length=1)]
    offset: Annotated[List[_Finite], Field(min_length=1)]
    units: str = ""


class NormalisationDoc(_Doc):
    mean: Annotated[List[_Finite], Field(min_length=1)]
    std: Annotated[List[Annotated[float, Field(gt=0, allow_inf_nan=False)]], Field(min_length=1)]


class FrameDoc(_Doc):
    height: _Dim
    width: _Dim
    fit: str = "stretch"
    interpolation: str = "area"


class PreprocessingDoc(_Doc):
    """The shared preprocessing (``Preprocessing.to_json``; a video bundle adds ``frame``)."""

    sample_rate_hz: Annotated[float, Field(gt=0, le=MAX_RATE_HZ, allow_inf_nan=False)]
    window: _Dim
    stride: _Dim
    channels: Annotated[List[_Name], Field(min_length=1, max_length=MAX_DIM)]
    value_scaling: ValueScalingDoc
    normalisation: Optional[NormalisationDoc] = None
    frame: Optional[FrameDoc] = None


class VideoDoc(_Doc):
    mode: Literal["video", "image-seq", "pose"] = "video"  # pose: BlazePose parts + head (edge_har.core.pose_encoder)
    frames: Optional[_Dim] = None


class GateDoc(_Doc):
    """``metrics.gate``: the int8 accuracy gate's verdict, in words (written since issue 15).

    ``verdict``: ``pass`` (every full-integer variant within ``allowed_drop_points`` of
    float32, no degenerate variant), ``accepted`` (over the limit or degenerate, written
    because the user said so) or ``refused`` (only in a refused conversion's
    ``refused.json``). ``drop_points``: the worst full-integer drop below float32.
    Bundles of older writers lack it; :attr:`Bundle.gate` derives it from their flat keys.
    """

    verdict: Literal["pass", "accepted", "refused"]
    drop_points: Optional[_Finite] = None
    allowed_drop_points: Optional[_Finite] = None
    reasons: List[str] = Field(default_factory=list)
    degenerate: Dict[str, Any] = Field(default_factory=dict)


class SelfTestDoc(_Doc):
    """``self_test``: stored windows and each variant's outputs, run by the device on load (:mod:`edge_har.core.self_test`)."""

    file: _FileName
    sha256: _Sha256
    size_bytes: Annotated[int, Field(ge=0, le=MAX_MODEL_BYTES)]
    windows: Annotated[int, Field(ge=1, le=10_000)]
    tolerance: Dict[_Name, Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]]

    @field_validator("file")
    @classmethod
    def _inside_the_bundle(cls, value: str) -> str:
        return ModelFileDoc._inside_the_bundle(value)


class MetricsDoc(_Doc):
    """``metrics``: free-form test figures; only the gate's verdict is typed."""

    gate: Optional[GateDoc] = None


class BundleDoc(_Doc):
    """``bundle.json`` as the device reads it (schema version 1)."""

    schema_version: int
    model_id: _Name
    kind: Literal["sensor", "video"]
    labels: Annotated[List[_Name], Field(min_length=1, max_length=MAX_DIM)]
    input: InputDoc
    preprocessing: PreprocessingDoc
    default_variant: _Name
    variants: Annotated[Dict[_Name, _AnyVariant], Field(min_length=1)]
    video: Optional[VideoDoc] = None
    metrics: MetricsDoc = Field(default_factory=MetricsDoc)
    training: Dict[str, Any] = Field(default_factory=dict)
    provenance: Dict[str, Any] = Field(default_factory=dict)
    # A file entry is None when it was not made (training curves without matplotlib): the model still ships.
    files: Dict[str, Optional[str]] = Field(default_factory=dict)
    # ``--label-map``: each class name of the data set -> the label the model predicts for it (None:
    # left out of training). Absent in bundles made without one, and in those of older writers.
    label_map: Optional[Dict[_Name, Optional[_Name]]] = None
    self_test: Optional[SelfTestDoc] = None


def _provenance_label_map(data: Mapping[str, Any]) -> dict[str, str | None]:
    """``provenance.dataset.label_map`` (where a converter records it without the top-level key), if well-formed."""
    dataset = (data.get("provenance") or {}).get("dataset")
    found = dataset.get("label_map") if isinstance(dataset, dict) else None
    if not isinstance(found, dict):
        return {}
    labels = set(data.get("labels") or ())
    ok = all(isinstance(k, str) and (v is None or (isinstance(v, str) and v in labels)) for k, v in found.items())
    return dict(found) if ok else {}


def _required(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(name for name, f in model.model_fields.items() if f.is_required())


# The keys a bundle.json must have, from the schema above (kept for callers that list them).
REQUIRED_KEYS = _required(BundleDoc)
VARIANT_KEYS = _required(VariantDoc)
PART_KEYS = _required(ModelFileDoc)  # each entry of a split variant's "parts"


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
        validate_data(data, where=where)  # every key below is then present and of its type
        self.labels: list[str] = list(data["labels"])
        self.kind: str = data["kind"]
        # the data set's class names -> the model's labels (``--label-map``); empty when there was none
        self.label_map: dict[str, str | None] = dict(data.get("label_map") or _provenance_label_map(data))
        try:
            self.preprocessing = Preprocessing.from_json(data["preprocessing"], where=f"{where}: preprocessing")
            if self.kind == "video":  # the frame geometry too, so a bad one fails here and not at the first frame
                from edge_har.core.frames import FrameSpec

                FrameSpec.from_json(data["preprocessing"], where=f"{where}: preprocessing")
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
        # the self-test (windows and each variant's outputs on the workstation), None in older bundles
        self.self_test: dict[str, Any] | None = data.get("self_test")
        _raise(where, _outside_problems(root, self.variants.values()))

    def model_label(self, name: str) -> str | None:
        """The label this model predicts for a data set class ``name`` (a replay's truth): through
        ``label_map`` when the bundle has one (None for a class left out), else ``name`` itself."""
        return self.label_map.get(name, name) if self.label_map else name

    # ----------------------------------------------------------- loading

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        """Read and validate ``bundle.json`` (raises :class:`BundleError` naming file and keys).

        No model is loaded: this is cheap enough for ``validate-config`` and ``check_files``.
        """
        root = Path(path)
        if root.is_file() and root.name == BUNDLE_FILE:
            root = root.parent
        file = root / BUNDLE_FILE
        if not file.is_file():
            raise BundleError(f"{root}: not a model bundle (no {BUNDLE_FILE})")
        return cls(root, read_json(file))

    @classmethod
    def load_verified(cls, path: str | Path) -> Bundle:
        """:meth:`load`, then :meth:`verify`: a BundleError naming the folder and every file that does not match
        what bundle.json records. What reads a bundle to run, sign, pack or evaluate it reads it this way."""
        bundle = cls.load(path)
        problems = bundle.verify()
        if problems:
            raise BundleError(f"{bundle.root}: " + "; ".join(problems))
        return bundle

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

    @property
    def gate(self) -> dict[str, Any]:
        """``metrics.gate`` (verdict, drop_points, allowed_drop_points, ...); derived for older bundles."""
        metrics = self.metrics
        if isinstance(metrics.get("gate"), dict):
            return dict(metrics["gate"])
        accepted = bool(metrics.get("int8_drop_allowed"))
        return {
            "verdict": "accepted" if accepted else "pass",
            "drop_points": metrics.get("int8_drop_points"),
            "allowed_drop_points": metrics.get("max_int8_drop_points"),
            "reasons": ["int8 drop over the limit"] if accepted else [],
            "degenerate": {},
        }

    def variant(self, name: str | None = None) -> Variant:
        key = name or self.default_variant
        if key not in self.variants:
            raise BundleError(
                f"{self.root / BUNDLE_FILE}: no variant '{key}'; this bundle has {', '.join(self.variants)}"
            )
        return self.variants[key]

    def files(self) -> list[tuple[str, Path, int, str]]:
        """(bundle.json key, path, size, sha256) of every file bundle.json vouches for: models, self-test."""
        out = [entry for v in self.variants.values() for entry in v.files()]
        if self.self_test:
            t = self.self_test
            out.append(("self_test", self.root / t["file"], int(t["size_bytes"]), str(t["sha256"])))
        return out

    def verify(self) -> list[str]:
        """Check every file bundle.json records exists with its recorded size and sha256; return problems."""
        problems = []
        for key, file, size, sha in self.files():
            if not file.is_file():
                problems.append(f"{key}.file: {file} is missing")
                continue
            if file.stat().st_size != size:
                problems.append(f"{key}.size_bytes: {size} recorded, {file.stat().st_size} on disk")
            digest = sha256_file(file)
            if digest != sha:
                problems.append(f"{key}.sha256: {file.name} hashes to {digest}, bundle says {sha}")
        return problems

    def model_problems(
        self,
        model: TFLiteModel,
        variant: str,
        part: Optional[str] = None,
        *,
        expect_input: Optional[Sequence[int]] = None,
    ) -> list[str]:
        """What makes a loaded model unusable with this bundle, one ``key.path: reason`` line each.

        Checked at start so that a mismatch is one clear error (the daemon exits 78) instead of
        every window failing: the file's tensors against what bundle.json records for it (a
        swapped or foreign file when verify_sha256 is off), its input against ``expect_input``
        (what the preprocessing makes), and, for a model that classifies (not an encoder), its
        output against the labels.
        """
        v = self.variant(variant)
        meta = v.parts[part].meta if part is not None else v.meta
        key = f"variants.{v.name}" + (f".parts.{part}" if part is not None else "")
        name = model.path.name
        problems = []
        for side in ("input", "output"):
            recorded, actual = meta[side], getattr(model, side)
            if tuple(recorded["shape"]) != actual.shape or recorded["dtype"] != actual.dtype.name:
                problems.append(
                    f"{key}.{side}: bundle.json records {list(recorded['shape'])} {recorded['dtype']}, but {name} "
                    f"has {list(actual.shape)} {actual.dtype.name}; the file is not the model this bundle describes"
                )
        if expect_input is not None and model.input.shape != tuple(expect_input):
            problems.append(
                f"{key}: {name} takes input {list(model.input.shape)}, but the bundle's preprocessing makes "
                f"{list(expect_input)}"
            )
        if part in (None, "head", "clip"):
            out = model.output.shape
            if len(out) != 2 or out[0] != 1 or out[1] != len(self.labels):
                problems.append(
                    f"labels: {len(self.labels)} labels ({', '.join(self.labels)}), but {name} ({key}) outputs "
                    f"{list(out)}, {out[-1] if out else 0} classes; labels and model must come from one conversion"
                )
        return problems

    def check_model(
        self,
        model: TFLiteModel,
        variant: str,
        part: Optional[str] = None,
        *,
        expect_input: Optional[Sequence[int]] = None,
    ) -> None:
        """:meth:`model_problems` as one BundleError naming bundle.json (raised when there is any)."""
        _raise(str(self.root / BUNDLE_FILE), self.model_problems(model, variant, part, expect_input=expect_input))

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


def _outside_problems(root: Path, variants: Iterable[Variant]) -> list[str]:
    """One ``variants.X.file: ...`` line per model file that does not resolve to a path inside ``root``.

    bundle.json's names are checked to be relative and free of ``..``, but a symlink inside the
    bundle can still point anywhere: at a file the daemon's user may read but that no bundle
    holds (loaded unchecked when ``verify_sha256`` is off), at a device node or a FIFO that
    blocks the start. So every name is resolved (symlinks followed, ``..`` normalised) against
    the resolved bundle folder, which may itself be reached through a link.
    """
    try:
        base = root.resolve()
    except (OSError, RuntimeError) as exc:
        return [f"the bundle folder {root} cannot be resolved: {exc}"]
    problems = []
    for variant in variants:
        for key, file, _size, _sha in variant.files():
            try:
                target = file.resolve()
            except RuntimeError:  # Python 3.11 raises this for a symlink loop
                problems.append(f"{key}.file: {file.name} is a symlink loop")
                continue
            except OSError as exc:
                problems.append(f"{key}.file: {file.name} cannot be resolved: {exc.strerror or exc}")
                continue
            if not target.is_relative_to(base):
                problems.append(
                    f"{key}.file: {file.name} resolves to {target}, outside the bundle folder {base}; "
                    "model files must be inside the bundle (copy the file in instead of linking it)"
                )
    return problems


def read_json(file: Path) -> Any:
    """The parsed ``bundle.json``; anything that is not strict, UTF-8, sane-sized JSON is a BundleError."""
    try:
        size = file.stat().st_size
        if size > MAX_BUNDLE_JSON_BYTES:
            raise BundleError(
                f"{file}: {size} bytes; a bundle.json is a few kB (at most {MAX_BUNDLE_JSON_BYTES} accepted)"
            )
        raw = file.read_bytes()
    except OSError as exc:
        raise BundleError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(
            f"{file}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "a damaged file, or not a bundle.json"
        ) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{file}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # NaN / Infinity, a 5000-digit integer, [[[[... nested too deep
        raise BundleError(f"{file}: invalid JSON: {str(exc) or type(exc).__name__}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (the writer stores a missing number as null)")


def validate_data(data: Any, where: str = BUNDLE_FILE) -> BundleDoc:
    """Validate a parsed ``bundle.json`` object; raises BundleError naming ``where`` and every bad key.

    Structure and types come from :class:`BundleDoc`; what one key alone cannot say (the
    default variant exists, only a video bundle splits variants, the preprocessing builds)
    is checked after it.
    """
    if not isinstance(data, dict):
        raise BundleError(f"{where}: top level must be an object, got {_json_type(data)}")
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        newer = version > SCHEMA_VERSION
        raise BundleError(
            f"{where}: schema_version {version} is "
            + ("newer than" if newer else "not")
            + f" the bundle schema this edge-har reads ({SCHEMA_VERSION})"
            + ("; upgrade edge-har on the device or convert with the version it runs" if newer else "")
        )
    try:
        doc = BundleDoc.model_validate(data)
    except ValidationError as exc:
        _raise(where, [_describe(err) for err in exc.errors()])
    _raise(where, _consistency_problems(doc))
    return doc


def _consistency_problems(doc: BundleDoc) -> list[str]:
    problems = []
    if len(set(doc.labels)) != len(doc.labels):
        dupes = sorted({label for label in doc.labels if doc.labels.count(label) > 1})
        problems.append(f"labels: must be unique names; repeated: {', '.join(dupes)}")
    if doc.default_variant not in doc.variants:
        problems.append(
            f"default_variant: {doc.default_variant!r} is not one of the variants ({', '.join(doc.variants)})"
        )
    for name, variant in doc.variants.items():
        if isinstance(variant, SplitVariantDoc) and doc.kind != "video":
            problems.append(f"variants.{name}.parts: only a video bundle may split a variant into parts")
    for original, label in (doc.label_map or {}).items():
        if label is not None and label not in doc.labels:
            problems.append(f"label_map.{original}: {label!r} is not one of the labels ({', '.join(doc.labels)})")
    pre = doc.preprocessing
    if doc.kind == "video" and pre.frame is None:
        problems.append("preprocessing.frame: a video bundle needs 'preprocessing.frame' with integer height and width")
    n = len(pre.channels)
    for key, values in (
        ("value_scaling.scale", pre.value_scaling.scale),
        ("value_scaling.offset", pre.value_scaling.offset),
        ("normalisation.mean", pre.normalisation.mean if pre.normalisation else None),
        ("normalisation.std", pre.normalisation.std if pre.normalisation else None),
    ):
        if values is not None and len(values) not in (1, n):
            problems.append(f"preprocessing.{key}: has {len(values)} values; expected 1 or one per channel ({n})")
    return problems


def _raise(where: str, problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    raise BundleError(f"{where}: " + "; ".join(shown) + (f"; and {more} more" if more else ""), problems)


_TYPE_WORDS = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
}


def _describe(err: Any) -> str:
    """One pydantic error as ``key.path: message (got value)``."""
    loc = [str(p) for p in err["loc"] if p not in (_SPLIT, _ONE_FILE)]
    key = ".".join(loc)
    if err["type"] == "missing":
        return f"missing key '{key}'"
    msg = _TYPE_WORDS.get(err["type"]) or str(err["msg"]).removeprefix("Value error, ").replace("Input should", "must")
    value = err.get("input")
    if not isinstance(value, (dict, list)):
        text = repr(value)
        msg += f" (got {text if len(text) <= 60 else text[:57] + '...'})"
    elif err["type"] in _TYPE_WORDS:
        msg += f" (got {_json_type(value)})"
    return f"{key or '(top level)'}: {msg}"


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else type(value).__name__
