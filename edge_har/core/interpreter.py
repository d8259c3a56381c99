"""One TFLite interpreter interface over ai-edge-litert, tflite-runtime and tf.lite.

The device installs one of the two light runtimes; ``tf.lite`` is a last resort
for a workstation that has TensorFlow and neither of them. The backend is chosen
once, by preference order or by the config, and every other module only sees
:class:`TFLiteModel`. Quantization parameters are always read from the tensor
details, never assumed.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("ai_edge_litert", "tflite_runtime", "tf_lite")


class InterpreterError(EdgeHarError, RuntimeError):
    """No usable runtime, a model that fails to load, or a checksum mismatch."""


@dataclass(frozen=True)
class Backend:
    name: str
    version: str
    interpreter_cls: Callable[..., Any]
    load_delegate: Callable[..., Any] | None


def _import_backend(name: str) -> Backend:
    """Import one runtime; raises ImportError (or others) when it is unusable."""
    if name == "ai_edge_litert":
        mod = importlib.import_module("ai_edge_litert.interpreter")
        try:
            from importlib.metadata import version

            ver = version("ai-edge-litert")
        except Exception:  # pragma: no cover - metadata missing in odd installs
            ver = "unknown"
        return Backend(name, ver, mod.Interpreter, getattr(mod, "load_delegate", None))
    if name == "tflite_runtime":
        mod = importlib.import_module("tflite_runtime.interpreter")
        top = importlib.import_module("tflite_runtime")
        return Backend(name, getattr(top, "__version__", "unknown"), mod.Interpreter, mod.load_delegate)
    if name == "tf_lite":
        tf = importlib.import_module("tensorflow")
        return Backend(name, tf.__version__, tf.lite.Interpreter, tf.lite.experimental.load_delegate)
    raise InterpreterError(f"unknown interpreter backend '{name}'; choose one of {', '.join(BACKENDS)} or 'auto'")


def select_backend(preference: str = "auto") -> Backend:
    """The requested backend, or the first usable one in BACKENDS order.

    ``tf_lite`` is only tried automatically as the last resort, and never on
    purpose on a device: importing TensorFlow takes seconds and hundreds of MB.
    """
    if preference != "auto":
        try:
            return _import_backend(preference)
        except InterpreterError:
            raise
        except Exception as exc:
            raise InterpreterError(
                f"interpreter backend '{preference}' is not usable here: {type(exc).__name__}: {exc}"
            ) from exc
    reasons = []
    for name in BACKENDS:
        try:
            backend = _import_backend(name)
        except Exception as exc:
            reasons.append(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        if name == "tf_lite":
            log.warning("no light TFLite runtime found; falling back to tf.lite (slow start, large memory)")
        return backend
    raise InterpreterError(
        "no TFLite runtime is installed. Install one with `pip install edge-har[device]` "
        "(ai-edge-litert) or `pip install edge-har[tflite]` (tflite-runtime, numpy<2). Tried: " + "; ".join(reasons)
    )


@dataclass(frozen=True)
class InterpreterOptions:
    """How every ``.tflite`` of a bundle is loaded: one object, built once from the config.

    It travels whole from the config (``InterpreterConfig.options()``) through
    both runtimes and ``Bundle.load_model`` to :class:`TFLiteModel`, so a path
    cannot forget a field: the video runtime once passed backend, threads and
    delegate one by one and dropped ``delegate_options``, so a camera bundle on
    an Edge TPU config silently ran without the options the delegate needs.
    """

    backend: str = "auto"
    num_threads: int | None = 1
    delegate: str | None = None  # external delegate library, e.g. libedgetpu.so.1
    delegate_options: Mapping[str, Any] = field(default_factory=dict)
    verify_sha256: bool = True  # read by Bundle.load_model, which knows the expected digests

    def __post_init__(self) -> None:
        # Read-only, so the one object shared by every model of a bundle cannot be changed by one of them.
        object.__setattr__(self, "delegate_options", MappingProxyType(dict(self.delegate_options or {})))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


try:  # the clip ufunc itself (numpy 2 moved it); np.clip is a Python wrapper around it
    _clip: Any = importlib.import_module("numpy._core.umath").clip
except (ImportError, AttributeError):  # numpy 1
    _clip = importlib.import_module("numpy.core.umath").clip

_INTEGER_RANGES: dict[np.dtype, tuple[int, int]] = {
    np.dtype(t): (int(np.iinfo(t).min), int(np.iinfo(t).max)) for t in (np.int8, np.uint8, np.int16)
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype in _INTEGER_RANGES and self.scale > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "scale": self.scale if self.quantized else None,
            "zero_point": self.zero_point if self.quantized else None,
        }


def _spec(detail: dict[str, Any]) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        name=str(detail.get("name", "")),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )


def quantize(
    x: np.ndarray, spec: TensorSpec, out: np.ndarray | None = None, scratch: np.ndarray | None = None
) -> np.ndarray:
    """round(x / scale) + zero_point, ties to even, clipped to the integer type, as TFLite's QUANTIZE op.

    Four ufunc calls on one float32 array: divide, round, clip (the ufunc: ``np.clip``'s Python
    wrapper costs more) and the zero point added while casting into the integer result. With
    ``out`` (the integer destination, e.g. the interpreter's input buffer) and ``scratch`` (a
    float32 array of its shape) it allocates nothing; x may lack out's leading batch axis
    (broadcast). Each numpy call costs a few microseconds on a device, and several times that
    when a window meets cold caches, as much as an int8 model's own invoke().
    """
    if not spec.quantized:
        if out is None:
            return np.asarray(x, dtype=spec.dtype)
        np.copyto(out, x, casting="unsafe")
        return out
    low, high = _INTEGER_RANGES[spec.dtype]
    zp = spec.zero_point
    q = np.divide(x, spec.scale, dtype=np.float32, out=scratch)
    np.rint(q, out=q)  # half to even, as np.round
    _clip(q, low - zp, high - zp, out=q)  # so that q + zero_point fits the type
    if out is None:
        out = np.empty(q.shape, dtype=spec.dtype)
    np.add(q, zp, out=out, casting="unsafe")  # exact: q holds integers in range
    return out


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """(q - zero_point) * scale as a new float32 array (two ufunc calls, one allocation: the result)."""
    if not spec.quantized:
        return np.asarray(q, dtype=np.float32)
    out = np.subtract(q, spec.zero_point, dtype=np.float32)
    out *= spec.scale
    return out


# Ops that keep state in variable tensors across invoke() (reset_all_variables zeroes them):
# the fused recurrent ops, SVDF, and resource variables. A model without any of them, in a
# single subgraph, starts every invoke() from the same state, so the reset can be skipped.
STATEFUL_OPS = frozenset(
    {
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "BIDIRECTIONAL_SEQUENCE_LSTM",
        "UNIDIRECTIONAL_SEQUENCE_RNN",
        "BIDIRECTIONAL_SEQUENCE_RNN",
        "LSTM",
        "RNN",
        "SVDF",
        "VAR_HANDLE",
        "READ_VARIABLE",
        "ASSIGN_VARIABLE",
        "CALL_ONCE",
    }
)


def op_names(interp: Any) -> list[str] | None:
    """The op names of the primary subgraph, or None where the runtime cannot list them."""
    try:
        return [str(d.get("op_name", "")) for d in interp._get_ops_details()]  # noqa: SLF001 - no public API
    except Exception:  # an old runtime without _get_ops_details, or a delegate that hides the nodes
        return None


# Ops that run other subgraphs, whose nodes _get_ops_details does not list.
CONTROL_FLOW_OPS = frozenset(
    {"WHILE", "IF", "CALL", "CALL_ONCE", "STABLEHLO_WHILE", "STABLEHLO_CASE", "STABLEHLO_COMPOSITE"}
)


def has_state(interp: Any) -> bool:
    """Whether ``invoke()`` can depend on earlier calls (so the wrapper must reset variables).

    Conservative: True unless the ops can be listed, none of them is in :data:`STATEFUL_OPS`,
    and the model has one subgraph (a WHILE/IF body is not listed by ``_get_ops_details``).
    tflite-runtime 2.14 has no ``num_subgraphs()``; there a control-flow op stands for a
    second subgraph (a model only has more subgraphs for such ops to call).
    """
    names = op_names(interp)
    if names is None:
        return True
    if any(name in STATEFUL_OPS or name in CONTROL_FLOW_OPS for name in names):
        return True
    try:
        return int(interp.num_subgraphs()) != 1
    except AttributeError:  # tflite-runtime 2.14
        return False
    except Exception:  # anything else: unknown, so assume state
        return True


class TFLiteModel:
    """A loaded ``.tflite`` file with float-in, float-out ``predict``.

    Models in a bundle have a static batch of 1 (both LSTM forms need it), so
    ``predict_batch`` loops; on a device windows arrive one at a time anyway.

    ``options`` (an :class:`InterpreterOptions`) is how the device loads models; when
    given it replaces ``backend``, ``num_threads``, ``delegate`` and ``delegate_options``,
    which stay for the workstation tools that load one file by hand.
    """

    def __init__(
        self,
        path: str | Path,
        backend: str = "auto",
        num_threads: int | None = 1,
        delegate: str | None = None,
        expected_sha256: str | None = None,
        delegate_options: Mapping[str, Any] | None = None,
        *,
        options: InterpreterOptions | None = None,
    ) -> None:
        if options is None:
            options = InterpreterOptions(backend, num_threads, delegate, delegate_options or {})
        self.options = options
        backend, num_threads, delegate = options.backend, options.num_threads, options.delegate
        self.path = Path(path)
        if not self.path.is_file():
            raise InterpreterError(f"model file not found: {self.path}")
        if expected_sha256 is not None:
            actual = sha256_file(self.path)
            if actual != expected_sha256:
                raise InterpreterError(
                    f"{self.path}: sha256 {actual} does not match bundle.json ({expected_sha256}); "
                    "the file is corrupt or was replaced"
                )
        self.backend = select_backend(backend)
        delegates = []
        if delegate:
            if self.backend.load_delegate is None:
                raise InterpreterError(f"backend {self.backend.name} cannot load external delegates")
            try:
                delegates.append(self.backend.load_delegate(delegate, dict(options.delegate_options)))
            except Exception as exc:
                raise InterpreterError(f"cannot load delegate '{delegate}': {exc}") from exc
        started = time.perf_counter()
        try:
            kwargs: dict[str, Any] = {"model_path": str(self.path)}
            if num_threads is not None:
                kwargs["num_threads"] = int(num_threads)
            if delegates:
                kwargs["experimental_delegates"] = delegates
            self._interp = self.backend.interpreter_cls(**kwargs)
            self._interp.allocate_tensors()
        except Exception as exc:
            raise InterpreterError(f"{self.path}: cannot load with {self.backend.name}: {exc}") from exc
        self.init_seconds = time.perf_counter() - started
        self.num_threads = num_threads
        self.inputs = [_spec(d) for d in self._interp.get_input_details()]
        self.outputs = [_spec(d) for d in self._interp.get_output_details()]
        self._in_index = self._interp.get_input_details()[0]["index"]
        self._out_index = self._interp.get_output_details()[0]["index"]
        self._in_shape = self.inputs[0].shape
        # Per-window glue set up once (predict): whether the state reset is needed at all, and
        # the arrays the input is quantized into.
        self.stateful = has_state(self._interp)
        self._out_quantized = self.output.quantized
        self._scratch = np.empty(self._in_shape, dtype=np.float32)
        self._qbuf = np.empty(self._in_shape, dtype=self.input.dtype) if self.input.quantized else None

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @property
    def output(self) -> TensorSpec:
        return self.outputs[0]

    @property
    def interpreter(self) -> Any:
        """The raw interpreter, for profiling tools."""
        return self._interp

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One example (with or without its batch axis of 1) -> float32 output row (a new array).

        The glue around ``invoke()`` is kept to the numpy calls it needs: the LSTM state reset
        runs only for a model that has state, and the input is quantized into pre-allocated
        arrays. Measured on the HMP bundle: a window met back to back costs ~7 us of
        glue, one met every 0.5 s (as the daemon meets them) 100-150 us, whatever the glue is:
        the cold caches after the wait are paid by whichever calls come first. Writing into
        the interpreter's buffers through ``tensor()`` views instead of ``set_tensor`` and
        ``get_tensor`` measures 13-23 us slower per paced call (a view is a new array object each
        time), so the copies stay.
        """
        arr = x if type(x) is np.ndarray and x.dtype == np.float32 else np.asarray(x, dtype=np.float32)
        if arr.shape != self._in_shape:
            if arr.shape != self._in_shape[1:]:
                raise InterpreterError(
                    f"{self.path.name}: input shape {arr.shape} does not match the model's {self._in_shape}"
                )
            arr = arr[None]
        if self.stateful:
            # A fused LSTM op keeps its hidden and cell state in variable tensors that survive
            # invoke(); each window must start from zero state, as in Keras (measured: without
            # this, window i's output depends on window i-1's). The unrolled form (the default)
            # has none, so the call is skipped.
            self._interp.reset_all_variables()
        if self._qbuf is not None:
            self._interp.set_tensor(self._in_index, quantize(arr, self.input, out=self._qbuf, scratch=self._scratch))
        else:
            self._interp.set_tensor(self._in_index, arr)
        self._interp.invoke()
        out = self._interp.get_tensor(self._out_index)[0]  # a copy: the caller owns it
        return dequantize(out, self.output) if self._out_quantized else np.asarray(out, dtype=np.float32)

    def predict_batch(self, xs: np.ndarray) -> np.ndarray:
        return (
            np.stack([self.predict(x) for x in xs]) if len(xs) else np.empty((0,) + self.output.shape[1:], np.float32)
        )


# The Python module each backend is imported from: a tool can ask "is it installed?"
# (importlib.util.find_spec) without importing it, which for tf_lite costs seconds.
BACKEND_MODULES: dict[str, str] = {
    "ai_edge_litert": "ai_edge_litert",
    "tflite_runtime": "tflite_runtime",
    "tf_lite": "tensorflow",
}


def backend_module(name: str) -> Any:
    """The module holding ``name``'s ``Interpreter`` and ``OpResolverType`` (for benchmarks that build raw interpreters).

    TFLiteModel hides these, but the benchmarks need the raw interpreter to
    switch XNNPACK off or keep every tensor, and must pick the same backend.
    """
    if name == "ai_edge_litert":
        return importlib.import_module("ai_edge_litert.interpreter")
    if name == "tflite_runtime":
        return importlib.import_module("tflite_runtime.interpreter")
    if name == "tf_lite":
        return importlib.import_module("tensorflow").lite.experimental
    raise InterpreterError(f"unknown interpreter backend '{name}'; choose one of {', '.join(BACKENDS)}")
