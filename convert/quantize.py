"""TFLite conversion and post-training quantization, one table entry per variant.

Each variant is a :class:`VariantSpec` in :data:`VARIANTS`: its name (which
says what is quantized, since it ends up in ``bundle.json`` and on the device),
a one-line description, and a function that sets the converter up. Adding a
variant (int16 activations, a partly-float model, ...) is one more entry; the
pipeline, the bundle and ``evaluate`` pick it up by name.

Full-integer variants are calibrated on a stratified sample of the *training*
windows (:func:`calibration_windows`): activation ranges seen on the test
split would leak it into the model.

Measured with TF 2.21: int16-activation quantization
(``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``) refuses the
fused LSTM ("Quantization to 16x8-bit not yet supported for op
UNIDIRECTIONAL_SEQUENCE_LSTM"); the unrolled LSTM converts, but runs about 65x
slower than int8 at the same accuracy (XNNPACK has no int16 kernels; see
``benchmarks/README.md``), so there is no int16x8 entry; :data:`INT16X8` is
its spec, unregistered, for the int8 study, which converts every file with
:func:`saved_for_conversion` and :func:`convert_saved` (the functions
:func:`convert_variants` uses) plus per-recipe converter flags.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from edge_har.convert.models import import_tf
from edge_har.convert.quiet import stderr_to_log
from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

DEFAULT_CALIBRATION_SIZE = 300


class CalibrationError(EdgeHarError, ValueError):
    """The calibration set cannot be drawn as asked."""


class ConversionError(EdgeHarError, RuntimeError):
    """The TFLite converter failed for one variant; the message names it."""


RepresentativeFn = Callable[[], Iterator[list[np.ndarray]]]


@dataclass(frozen=True)
class VariantSpec:
    """How to make one ``.tflite`` variant.

    ``configure(converter, tf, representative)`` sets the converter's flags;
    ``representative`` is None unless ``needs_calibration``. ``quantization``
    is the machine-readable summary stored in ``bundle.json``.
    """

    name: str
    quantization: str
    description: str
    configure: Callable[[Any, Any, RepresentativeFn | None], None]
    needs_calibration: bool = False
    full_integer: bool = False  # every op int8/int16, integer input and output (accelerator-ready)


def _float32(converter: Any, tf: Any, representative: RepresentativeFn | None) -> None:
    converter.optimizations = []


def _dynamic_range(converter: Any, tf: Any, representative: RepresentativeFn | None) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


# The converter's switch for one weight scale per FULLY_CONNECTED tensor (a private attribute in
# TF 2.16-2.21, hence the guard). Per-channel FC weights store a float scale and an int64 zero point
# for every output row (and so do their int32 biases), which for the unrolled LSTM's 4*units-row
# matrices is 6-9 % of the int8 file; measured on HMP: no accuracy change, same speed
# (benchmarks/README.md).
_PER_TENSOR_DENSE = "_experimental_disable_per_channel_quantization_for_dense_layers"
PER_TENSOR_DENSE = _PER_TENSOR_DENSE
# One weight scale per tensor everywhere, convolutions too (also private in TF 2.16-2.21). The product never
# sets it; the int8 study measures what it costs (research/int8_study.py, recipe unrolled_zs_ptall_sn).
PER_TENSOR_ALL = "_experimental_disable_per_channel"


def _int8(converter: Any, tf: Any, representative: RepresentativeFn | None) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    if hasattr(converter, _PER_TENSOR_DENSE):
        setattr(converter, _PER_TENSOR_DENSE, True)


VARIANTS: dict[str, VariantSpec] = {}


def register_variant(spec: VariantSpec) -> VariantSpec:
    if spec.name in VARIANTS:
        raise ValueError(f"variant '{spec.name}' is already registered")
    VARIANTS[spec.name] = spec
    return spec


register_variant(
    VariantSpec(
        "float32",
        "none",
        "float32 weights and activations; float32 input and output",
        _float32,
    )
)
register_variant(
    VariantSpec(
        "dynamic_range",
        "dynamic_range_int8_weights",
        "int8 weights of the large tensors (1024+ elements; smaller ones stay float32), float32 activations "
        "(quantized on the fly inside the kernels); float32 input and output",
        _dynamic_range,
    )
)
register_variant(
    VariantSpec(
        "int8",
        "full_integer_int8",
        "full integer: int8 weights and activations in every op (int32 biases; convolution weights per output "
        "channel, FULLY_CONNECTED weights per tensor; a fused LSTM op keeps its cell state in int16, as TFLite's "
        "integer LSTM kernel defines, an unrolled one is int8 throughout); int8 input and output (scale and zero "
        "point in the tensor specs)",
        _int8,
        needs_calibration=True,
        full_integer=True,
    )
)
DEFAULT_VARIANTS: tuple[str, ...] = ("float32", "dynamic_range", "int8")


def _int16x8(converter: Any, tf: Any, representative: RepresentativeFn | None) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    converter.inference_input_type = tf.int16
    converter.inference_output_type = tf.int16


# Not registered (see the module docstring: about 65x slower than int8 at the same accuracy), so the
# product never writes it; kept here so the int8 study converts it with the product's converter.
INT16X8 = VariantSpec(
    "int16x8",
    "full_integer_int16_activations_int8_weights",
    "int16 activations, int8 weights; int16 input and output (the fused LSTM refuses this mode)",
    _int16x8,
    needs_calibration=True,
    full_integer=True,
)


def resolve_variants(names: Sequence[str]) -> list[VariantSpec]:
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if "float32" not in names:
        raise ValueError(
            "the float32 variant is required: it is the reference the quantized variants are checked against"
        )
    return [VARIANTS[n] for n in dict.fromkeys(names)]


# ---------------------------------------------------------------- calibration


def calibration_windows(x: np.ndarray, y: np.ndarray, size: int, seed: int = 42) -> np.ndarray:
    """``size`` training windows, stratified by class (proportional, at least one per class).

    Raises CalibrationError when there are fewer windows than asked: a
    smaller set than the user chose would silently change the quantization.
    """
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.int64)
    if size < 1:
        raise CalibrationError(f"calibration size must be >= 1, got {size}")
    if len(x) < size:
        raise CalibrationError(
            f"the calibration set needs {size} windows but the training split has only {len(x)}; "
            "lower --calibration-size or use more training data"
        )
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = size * counts / counts.sum()
    take = np.floor(quota).astype(np.int64)
    if size >= len(classes):
        take = np.maximum(take, 1)
    # Hand out what is left by largest remainder, then trim any excess from the largest quotas.
    while take.sum() < size:
        room = take < counts
        order = np.argsort(-(quota - take) * room)
        take[order[0]] += 1
    while take.sum() > size:
        take[np.argmax(take)] -= 1
    chosen = [rng.choice(np.flatnonzero(y == c), size=int(n), replace=False) for c, n in zip(classes, take) if n]
    index = np.sort(np.concatenate(chosen))
    return np.ascontiguousarray(x[index], dtype=np.float32)


def representative_dataset(windows: np.ndarray) -> RepresentativeFn:
    """The converter's callable: one window at a time, with the static batch axis of 1."""

    def generate() -> Iterator[list[np.ndarray]]:
        for w in windows:
            yield [w[None].astype(np.float32)]

    return generate


# ---------------------------------------------------------------- conversion


@dataclass
class ConvertedVariant:
    spec: VariantSpec
    content: bytes
    settings: dict[str, Any]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


def _enum_names(values: Any) -> list[str]:
    return sorted(str(getattr(v, "name", v)) for v in (values or []))


def converter_settings(converter: Any, tf: Any, calibration_size: int | None) -> dict[str, Any]:
    """What the converter was told, for the bundle (so a variant can be reproduced)."""

    def dtype_name(value: Any) -> str | None:
        return None if value is None else str(getattr(value, "name", value))

    return {
        "converter": "tf.lite.TFLiteConverter.from_saved_model (tf_keras model, static batch 1)",
        "tensorflow": tf.__version__,
        "optimizations": _enum_names(converter.optimizations),
        "supported_ops": _enum_names(converter.target_spec.supported_ops),
        "supported_types": [dtype_name(t) for t in (converter.target_spec.supported_types or [])],
        "inference_input_type": dtype_name(converter.inference_input_type),
        "inference_output_type": dtype_name(converter.inference_output_type),
        "representative_dataset": None
        if converter.representative_dataset is None
        else {"windows": calibration_size, "source": "training split, stratified by class"},
        "experimental_new_quantizer": getattr(converter, "experimental_new_quantizer", None),
        "per_tensor_dense_weights": bool(getattr(converter, _PER_TENSOR_DENSE, False)),
    }


def convert_variant(model: Any, spec: VariantSpec, calibration: np.ndarray | None = None) -> ConvertedVariant:
    """Convert a static-batch float32 Keras model into one variant."""
    return convert_variants(model, [spec], calibration)[0]


def convert_variants(
    model: Any, specs: Sequence[VariantSpec], calibration: np.ndarray | None = None
) -> list[ConvertedVariant]:
    """Convert a static-batch float32 Keras model into each variant of ``specs``.

    The model is saved once as a SavedModel and every variant converts from
    it: tracing the Keras model is the slow part of a conversion, and both
    LSTM forms (fused op, or unrolled by :mod:`edge_har.convert.unrolled_lstm`) survive
    the SavedModel route unchanged.
    """
    for spec in specs:
        if spec.needs_calibration and (calibration is None or len(calibration) == 0):
            raise CalibrationError(f"variant '{spec.name}' needs calibration windows")
    with saved_for_conversion(model) as saved:
        return [convert_saved(saved, spec, calibration) for spec in specs]


@contextlib.contextmanager
def saved_for_conversion(model: Any) -> Iterator[Path]:
    """The static-batch model saved once as a SavedModel, removed on exit.

    Public so that a caller converting many variants or recipes of one model
    (the int8 study, which records each failure instead of stopping) pays the
    slow tracing once, as :func:`convert_variants` does.
    """
    import shutil
    import tempfile

    if any(d is None for d in model.input_shape):
        raise ConversionError(
            f"the model's input shape {model.input_shape} has a dynamic dimension; convert the static-batch "
            "copy (edge_har.convert.models.static_batch_copy): a dynamic batch breaks the fused LSTM conversion"
        )
    saved = Path(tempfile.mkdtemp(prefix="edge-har-savedmodel-"))
    try:
        started = time.perf_counter()
        model.save(str(saved), save_format="tf", include_optimizer=False)
        log.debug("saved the static-batch model for conversion in %.1f s", time.perf_counter() - started)
        yield saved
    finally:
        shutil.rmtree(saved, ignore_errors=True)


def inspect_tflite(content: bytes) -> dict[str, Any]:
    """Op counts of a converted model, and the ops that still compute in float.

    An op "computes in float" when one of its input or output tensors is
    float32/float16 (LSTM intermediate placeholders of shape [0] excepted);
    a full-integer variant must have none, or its name would lie.
    """
    from edge_har.core.interpreter import select_backend

    # Not allocated: allocation applies the default XNNPACK delegate, which would
    # replace the model's own ops by DELEGATE nodes in this listing.
    interp = select_backend("auto").interpreter_cls(model_content=content)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops: dict[str, int] = {}
    float_ops: dict[str, int] = {}
    for op in interp._get_ops_details():  # noqa: SLF001 - the only per-op view the runtimes offer
        name = str(op["op_name"])
        ops[name] = ops.get(name, 0) + 1
        for index in list(op["inputs"]) + list(op["outputs"]):
            t = tensors.get(int(index))
            if t is None or int(np.prod(t["shape"])) == 0:
                continue
            if np.dtype(t["dtype"]).kind == "f":
                float_ops[name] = float_ops.get(name, 0) + 1
                break
    return {"ops": dict(sorted(ops.items())), "float_ops": dict(sorted(float_ops.items()))}


def convert_saved(
    saved: Path,
    spec: VariantSpec,
    calibration: np.ndarray | None = None,
    flags: Mapping[str, Any] | None = None,
    check_full_integer: bool = True,
) -> ConvertedVariant:
    """Convert one variant from a SavedModel of :func:`saved_for_conversion`.

    ``flags`` are converter attributes set after the variant's own
    configuration (the int8 study's per-recipe switches, e.g.
    ``{PER_TENSOR_DENSE: False}``); one the converter does not have raises
    ConversionError, since silently ignoring it would mislabel the file.
    ``check_full_integer=False`` lets a full-integer variant keep float ops:
    the study reports them as a finding, the product refuses them.
    """
    tf, _ = import_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    rep = representative_dataset(calibration) if spec.needs_calibration and calibration is not None else None
    spec.configure(converter, tf, rep)
    for key, value in (flags or {}).items():
        if not hasattr(converter, key):
            raise ConversionError(f"variant '{spec.name}': this TensorFlow's converter has no attribute {key!r}")
        setattr(converter, key, value)
    settings = converter_settings(
        converter, tf, len(calibration) if rep is not None and calibration is not None else None
    )
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # Harmless for a model whose float input is quantized by its first op.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            with stderr_to_log(f"the TFLite converter ({spec.name})"):  # its MLIR passes print to fd 2
                content = converter.convert()
    except Exception as exc:
        raise ConversionError(
            f"TFLite conversion of variant '{spec.name}' failed: {type(exc).__name__}: {exc}"
        ) from exc
    seconds = time.perf_counter() - started
    info = inspect_tflite(content)
    if check_full_integer and spec.full_integer and info["float_ops"]:
        raise ConversionError(
            f"variant '{spec.name}' is declared full-integer but these ops still compute in float: "
            + ", ".join(f"{op} x{n}" for op, n in info["float_ops"].items())
        )
    log.info("converted %s: %d bytes in %.1f s", spec.name, len(content), seconds)
    return ConvertedVariant(spec, content, settings, seconds, extra=info)
