"""Per-op latency profile of a ``.tflite`` file: which op the time goes to.

Neither Python interpreter API (ai-edge-litert's ``Interpreter``,
tflite-runtime, ``tf.lite``) exposes TFLite's op profiler, and the
``benchmark_model`` binary ships in no pip wheel. Two methods are used instead,
and every row says which one produced it:

``litert`` (a real profiler)
    ai-edge-litert 2.x ships ``libLiteRt.so``, whose CompiledModel C API has
    the runtime's own op profiler (``enable_profiling`` runtime option,
    ``LiteRtCompiledModelGetProfiler``). It is driven here through ``ctypes``.
    It times every TFLite kernel the interpreter runs and, inside the XNNPACK
    delegate, every XNNPACK operator. Each row is the mean over the runs after
    dropping the slowest 10 % (preemption on a shared CPU). Limits: the runtime
    reports whole microseconds per event (XNNPACK's own per-operator times are
    truncated, so sub-microsecond operators read low, and profiling itself adds
    a little to each operator), and it refuses models with variable tensors,
    which is every model with a fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``
    ("Variable tensors not yet supported").

``isolated`` (a fallback, works with any runtime and model)
    Each op is cut out of the model into a one-op ``.tflite`` file (same
    tensors, same constant buffers, same quantization), fed the op's real input
    values (captured from a full run of the model on ``input_data``) and timed
    on its own with the same runtime, threads and XNNPACK setting. The measured
    cost of an empty ``invoke()`` is subtracted. What it cannot see: work
    XNNPACK saves by fusing neighbouring ops and cache effects between ops, so
    the rows are compared with the whole model's own p50 (``coverage``).

``auto`` means ``isolated``: it is the method that resolves every op. Use
``litert`` to see XNNPACK's own operator names and for ops of several
microseconds or more.

Usage from Python (the latency suite calls this)::

    rows = profile_ops("model_int8.tflite", windows, num_threads=1, runs=200)

and from the shell::

    python -m edge_har.benchmarks.profile_ops model_int8.tflite --runs 200 [--no-xnnpack] [--method isolated]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import importlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_har.core.interpreter import (  # noqa: E402
    BACKENDS,
    InterpreterError,
    TensorSpec,
    _spec,
    backend_module,
    quantize,
    select_backend,
)
from edge_har.core.timing import input_feeds, p50_mean_us, time_invokes  # noqa: E402

METHODS = ("auto", "litert", "isolated")


class ProfileError(EdgeHarError, RuntimeError):
    """The model cannot be profiled with the requested method; the message says why."""


@dataclass
class OpTiming:
    """One row of a profile: an op (or an XNNPACK operator) and its time per inference."""

    index: int  # TFLite node index (litert: node index reported by the runtime)
    op: str  # TFLite op name, or "Delegate/<XNNPACK operator>" for XNNPACK internals
    time_us: float  # mean time per inference (all calls of this row in one inference)
    share: float  # time_us / sum of all rows
    calls: int  # calls per inference
    executor: str  # "xnnpack" or "builtin" (TFLite's own kernel)
    method: str  # "litert" or "isolated"
    dtypes: str = ""  # isolated: input -> output tensor types, e.g. "int8,int8 -> int8"
    median_us: float | None = None  # isolated: median of the runs (less noise than the mean)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------- model inspection


def make_interpreter(
    backend: str = "auto",
    *,
    model_path: str | Path | None = None,
    model_content: bytes | None = None,
    num_threads: int = 1,
    xnnpack: bool = True,
    preserve_all_tensors: bool = False,
) -> Any:
    """An unallocated interpreter of the chosen backend, with XNNPACK on or off.

    XNNPACK is the default delegate of all three runtimes; ``xnnpack=False``
    selects the op resolver without default delegates, so every op runs on
    TFLite's own kernels.
    """
    chosen = select_backend(backend)
    module = backend_module(chosen.name)
    kwargs: dict[str, Any] = {"num_threads": int(num_threads)}
    if model_content is not None:
        kwargs["model_content"] = model_content
    else:
        kwargs["model_path"] = str(model_path)
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    return chosen.interpreter_cls(**kwargs)


def list_ops(model_path: str | Path, backend: str = "auto") -> list[dict[str, Any]]:
    """The model's ops in execution order, with their tensors' types.

    Read from an unallocated interpreter: allocation applies XNNPACK, which
    would replace the ops by DELEGATE nodes in this listing.
    """
    interp = make_interpreter(backend, model_path=model_path, xnnpack=False)
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
    rows = []
    for op in interp._get_ops_details():  # noqa: SLF001 - the only per-op view the runtimes offer

        def types(indices: Iterable[int]) -> list[str]:
            out = []
            for i in indices:
                t = tensors.get(int(i))
                if t is not None and int(np.prod(t["shape"])) > 0:
                    out.append(np.dtype(t["dtype"]).name)
            return out

        rows.append(
            {
                "index": int(op["index"]),
                "op": str(op["op_name"]),
                "inputs": [int(i) for i in op["inputs"]],
                "outputs": [int(i) for i in op["outputs"]],
                "input_types": types(op["inputs"]),
                "output_types": types(op["outputs"]),
            }
        )
    return rows


def float_ops(model_path: str | Path, backend: str = "auto") -> dict[str, int]:
    """Ops with a float32/float16 input or output (empty LSTM placeholders excepted).

    A variant sold as full-integer must have none.
    """
    found: dict[str, int] = {}
    for row in list_ops(model_path, backend):
        if any(t.startswith("float") for t in row["input_types"] + row["output_types"]):
            found[row["op"]] = found.get(row["op"], 0) + 1
    return found


def io_specs(model_path: str | Path, backend: str = "auto") -> tuple[list[TensorSpec], list[TensorSpec]]:
    interp = make_interpreter(backend, model_path=model_path, xnnpack=False)
    return [_spec(d) for d in interp.get_input_details()], [_spec(d) for d in interp.get_output_details()]


def model_inputs(
    model_path: str | Path, input_data: np.ndarray | None, count: int = 8, seed: int = 0
) -> list[np.ndarray]:
    """Up to ``count`` model-ready inputs (batch axis of 1, model dtype) from float windows.

    ``input_data`` is one window, a batch of windows, or None (random normal
    windows: fine for timing, though real data is better where available).
    """
    inputs, _ = io_specs(model_path)
    spec = inputs[0]
    if input_data is None:
        rng = np.random.default_rng(seed)
        data = rng.standard_normal((count,) + tuple(spec.shape[1:])).astype(np.float32)
    else:
        data = np.asarray(input_data, dtype=np.float32)
        if data.shape == tuple(spec.shape[1:]) or data.shape == tuple(spec.shape):
            data = data.reshape((1,) + tuple(spec.shape[1:]))
        if data.shape[1:] != tuple(spec.shape[1:]):
            raise ProfileError(
                f"{model_path}: input_data of shape {data.shape} does not fit the model input {list(spec.shape)}"
            )
    return [quantize(w[None], spec) for w in data[:count]]


# ----------------------------------------------------------------- whole-model timing


def time_model(
    model_path: str | Path,
    input_data: np.ndarray | None = None,
    backend: str = "auto",
    num_threads: int = 1,
    runs: int = 200,
    warmup: int = 20,
    xnnpack: bool = True,
) -> dict[str, float]:
    """p50 and mean of ``invoke()`` for the whole model (state reset before each run, untimed)."""
    interp = make_interpreter(backend, model_path=model_path, num_threads=num_threads, xnnpack=xnnpack)
    interp.allocate_tensors()
    times = time_invokes(interp, input_feeds(interp, model_inputs(model_path, input_data)), warmup, runs)
    return {**p50_mean_us(times), "runs": runs}


# ----------------------------------------------------------------- method: isolated ops


def _schema() -> tuple[Any, Any]:
    """The TFLite flatbuffer schema (object API) and flatbuffers, from whichever package has them."""
    for name in ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated"):
        try:
            return importlib.import_module(name), importlib.import_module("flatbuffers")
        except ImportError:
            continue
    raise ProfileError("the isolated method needs the TFLite flatbuffer schema: pip install ai-edge-litert")


def _read_model(content: bytes) -> Any:
    schema, _ = _schema()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(content), 0))


def _write_model(model: Any) -> bytes:
    schema, flatbuffers = _schema()
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _has_data(model: Any, tensor: Any) -> bool:
    buf = model.buffers[tensor.buffer] if 0 <= tensor.buffer < len(model.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


def single_op_model(model: Any, op_index: int) -> tuple[bytes, list[int], list[int]]:
    """One op of subgraph 0 as a model of its own.

    Returns the model bytes and, for its inputs and outputs, the tensor indices
    they had in the original model (so captured values can be fed in).
    Constant tensors keep their buffers; variable tensors (LSTM state) stay
    variable; optional inputs (-1) stay absent.
    """
    sub = model.subgraphs[0]
    op = sub.operators[op_index]
    old_ids: list[int] = []
    for group in (op.inputs, op.outputs, op.intermediates):
        for t in list(group if group is not None else []):
            if t >= 0 and t not in old_ids:
                old_ids.append(int(t))
    remap = {old: new for new, old in enumerate(old_ids)}
    new_sub = copy.copy(sub)
    new_sub.tensors = [copy.deepcopy(sub.tensors[t]) for t in old_ids]
    new_op = copy.deepcopy(op)
    new_op.inputs = [remap[int(t)] if t >= 0 else -1 for t in op.inputs]
    new_op.outputs = [remap[int(t)] for t in op.outputs]
    if op.intermediates is not None and len(op.intermediates):
        new_op.intermediates = [remap[int(t)] for t in op.intermediates]
    new_sub.operators = [new_op]
    feed = [
        int(t) for t in op.inputs if t >= 0 and not _has_data(model, sub.tensors[t]) and not sub.tensors[t].isVariable
    ]
    feed = list(dict.fromkeys(feed))
    new_sub.inputs = [remap[t] for t in feed]
    new_sub.outputs = [remap[int(t)] for t in op.outputs]
    new_model = copy.copy(model)
    new_model.subgraphs = [new_sub]
    new_model.signatureDefs = None
    return _write_model(new_model), feed, [int(t) for t in op.outputs]


def _empty_model(model: Any) -> bytes:
    """A model with no ops whose output is its input: the cost of ``invoke()`` itself."""
    sub = model.subgraphs[0]
    first = int(sub.inputs[0])
    new_sub = copy.copy(sub)
    new_sub.tensors = [copy.deepcopy(sub.tensors[first])]
    new_sub.operators = []
    new_sub.inputs = [0]
    new_sub.outputs = [0]
    new_model = copy.copy(model)
    new_model.subgraphs = [new_sub]
    new_model.signatureDefs = None
    return _write_model(new_model)


def _capture(model_path: str | Path, inputs: Sequence[np.ndarray], backend: str) -> list[dict[int, np.ndarray]]:
    """Every tensor's value for each input, from runs on TFLite's own kernels."""
    interp = make_interpreter(backend, model_path=model_path, xnnpack=False, preserve_all_tensors=True)
    interp.allocate_tensors()
    index = interp.get_input_details()[0]["index"]
    details = interp.get_tensor_details()
    captured = []
    for x in inputs:
        interp.reset_all_variables()
        interp.set_tensor(index, x)
        interp.invoke()
        values = {}
        for d in details:
            try:
                values[int(d["index"])] = np.array(interp.get_tensor(int(d["index"])))
            except ValueError:  # tensors without data (optional, placeholders)
                continue
        captured.append(values)
    return captured


def _uses_delegate(interp: Any, n_ops: int) -> bool:
    return any(str(op["op_name"]) == "DELEGATE" for op in interp._get_ops_details()[n_ops:])  # noqa: SLF001


def profile_isolated(
    model_path: str | Path,
    input_data: np.ndarray | None = None,
    backend: str = "auto",
    num_threads: int = 1,
    runs: int = 200,
    warmup: int = 20,
    xnnpack: bool = True,
) -> list[OpTiming]:
    model_path = Path(model_path)
    model = _read_model(model_path.read_bytes())
    if len(model.subgraphs) != 1:
        raise ProfileError(f"{model_path}: {len(model.subgraphs)} subgraphs; the isolated method handles one")
    inputs = model_inputs(model_path, input_data)
    captured = _capture(model_path, inputs, backend)
    ops = list_ops(model_path, backend)

    empty = make_interpreter(backend, model_content=_empty_model(model), num_threads=num_threads, xnnpack=xnnpack)
    empty.allocate_tensors()
    empty_index = empty.get_input_details()[0]["index"]
    overhead_times = list(1e6 * time_invokes(empty, [[(empty_index, x)] for x in inputs], warmup, runs))
    overhead = float(np.median(overhead_times))

    rows = []
    for info in ops:
        content, feed, _ = single_op_model(model, info["index"])
        try:
            interp = make_interpreter(backend, model_content=content, num_threads=num_threads, xnnpack=xnnpack)
            interp.allocate_tensors()
        except Exception as exc:  # an op that cannot stand alone is reported, not fatal
            raise ProfileError(f"{model_path}: op {info['index']} ({info['op']}) cannot be isolated: {exc}") from exc
        in_details = interp.get_input_details()
        feeds = [[(int(d["index"]), values[old]) for d, old in zip(in_details, feed)] for values in captured]
        times = list(1e6 * time_invokes(interp, feeds, warmup, runs))
        delegated = _uses_delegate(interp, 1)
        rows.append(
            OpTiming(
                index=info["index"],
                op=info["op"],
                time_us=max(float(np.mean(times)) - overhead, 0.0),
                median_us=max(float(np.median(times)) - overhead, 0.0),
                share=0.0,
                calls=1,
                executor="xnnpack" if delegated else "builtin",
                method="isolated",
                dtypes=",".join(info["input_types"]) + " -> " + ",".join(info["output_types"]),
            )
        )
    return _with_shares(rows, key="median_us")


def _with_shares(rows: list[OpTiming], key: str = "time_us") -> list[OpTiming]:
    total = sum(getattr(r, key) or 0.0 for r in rows)
    for r in rows:
        r.share = (getattr(r, key) or 0.0) / total if total > 0 else 0.0
    return rows


# ----------------------------------------------------------------- method: LiteRT profiler

# tflite::Profiler::EventType: OPERATOR_INVOKE_EVENT (a TFLite kernel), DELEGATE_OPERATOR_INVOKE_EVENT
# (a whole delegate node), DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT (one operator inside XNNPACK).
_OPERATOR_EVENT, _DELEGATE_NODE_EVENT, _DELEGATE_OPERATOR_EVENT = 2, 4, 8
_HW_CPU = 1


def _litert_library() -> ctypes.CDLL:
    try:
        import ai_edge_litert
    except ImportError as exc:
        raise ProfileError("the litert method needs ai-edge-litert 2.x (libLiteRt.so)") from exc
    path = Path(ai_edge_litert.__file__).parent / "libLiteRt.so"
    if not path.is_file():
        raise ProfileError(f"the litert method needs libLiteRt.so, not found at {path}")
    lib = ctypes.CDLL(str(path))
    vp = ctypes.c_void_p
    sz = ctypes.c_size_t
    signatures = {
        "LiteRtCreateEnvironment": [ctypes.c_int, vp, ctypes.POINTER(vp)],
        "LiteRtDestroyEnvironment": [vp],
        "LiteRtCreateModelFromFile": [vp, ctypes.c_char_p, ctypes.POINTER(vp)],
        "LiteRtDestroyModel": [vp],
        "LiteRtCreateOptions": [ctypes.POINTER(vp)],
        "LiteRtDestroyOptions": [vp],
        "LiteRtSetOptionsHardwareAccelerators": [vp, ctypes.c_int],
        "LiteRtCreateOpaqueOptions": [ctypes.c_char_p, vp, vp, ctypes.POINTER(vp)],
        "LiteRtAddOpaqueOptions": [vp, vp],
        "LiteRtCreateCompiledModel": [vp, vp, vp, ctypes.POINTER(vp)],
        "LiteRtDestroyCompiledModel": [vp],
        "LiteRtGetModelSignature": [vp, sz, ctypes.POINTER(vp)],
        "LiteRtGetNumSignatureInputs": [vp, ctypes.POINTER(sz)],
        "LiteRtGetNumSignatureOutputs": [vp, ctypes.POINTER(sz)],
        "LiteRtGetSignatureInputTensorByIndex": [vp, sz, ctypes.POINTER(vp)],
        "LiteRtGetSignatureOutputTensorByIndex": [vp, sz, ctypes.POINTER(vp)],
        "LiteRtGetRankedTensorType": [vp, vp],
        "LiteRtGetCompiledModelInputBufferRequirements": [vp, sz, sz, ctypes.POINTER(vp)],
        "LiteRtGetCompiledModelOutputBufferRequirements": [vp, sz, sz, ctypes.POINTER(vp)],
        "LiteRtCreateManagedTensorBufferFromRequirements": [vp, vp, vp, ctypes.POINTER(vp)],
        "LiteRtDestroyTensorBuffer": [vp],
        "LiteRtLockTensorBuffer": [vp, ctypes.POINTER(vp), ctypes.c_int],
        "LiteRtUnlockTensorBuffer": [vp],
        "LiteRtRunCompiledModel": [vp, sz, sz, vp, sz, vp],
        "LiteRtCompiledModelGetProfiler": [vp, ctypes.POINTER(vp)],
        "LiteRtStartProfiler": [vp],
        "LiteRtStopProfiler": [vp],
        "LiteRtResetProfiler": [vp],
        "LiteRtGetNumProfilerEvents": [vp, ctypes.POINTER(ctypes.c_int)],
        "LiteRtGetProfilerEvents": [vp, ctypes.c_int, vp],
    }
    for name, argtypes in signatures.items():
        fn = getattr(lib, name, None)
        if fn is None:
            raise ProfileError(f"{path} has no {name}; the litert method needs ai-edge-litert 2.x")
        fn.argtypes = argtypes
        fn.restype = None if name.startswith("LiteRtDestroy") else ctypes.c_int
    return lib


class _LiteRtSession:
    """A CompiledModel with the runtime profiler on; everything it creates is freed in close()."""

    def __init__(self, model_path: Path, num_threads: int, xnnpack: bool) -> None:
        self.lib = lib = _litert_library()
        self.libc = ctypes.CDLL(None)
        self.libc.malloc.restype = ctypes.c_void_p
        self.libc.malloc.argtypes = [ctypes.c_size_t]
        self._free = ctypes.cast(self.libc.free, ctypes.c_void_p)
        vp = ctypes.c_void_p
        self.env, self.model, self.options, self.compiled = vp(), vp(), vp(), vp()
        self.buffers: list[Any] = []
        self._check(lib.LiteRtCreateEnvironment(0, None, ctypes.byref(self.env)), "create environment")
        status = lib.LiteRtCreateModelFromFile(self.env, str(model_path).encode(), ctypes.byref(self.model))
        if status != 0:
            self.close()
            raise ProfileError(
                f"{model_path}: LiteRT's CompiledModel refuses this model (status {status}); models with "
                "variable tensors (the fused UNIDIRECTIONAL_SEQUENCE_LSTM) need the isolated method"
            )
        self._check(lib.LiteRtCreateOptions(ctypes.byref(self.options)), "create options")
        self._check(lib.LiteRtSetOptionsHardwareAccelerators(self.options, _HW_CPU), "select the CPU")
        # Sub-options are TOML payloads under an identifier (the typed builders are not exported).
        self._add_toml(b"runtime_options_string", b"enable_profiling = true\n")
        cpu = f"num_threads = {int(num_threads)}\n" + ("" if xnnpack else 'kernel_mode = "builtin"\n')
        self._add_toml(b"xnnpack", cpu.encode())
        self._check(
            lib.LiteRtCreateCompiledModel(self.env, self.model, self.options, ctypes.byref(self.compiled)),
            "compile the model",
        )
        signature = vp()
        self._check(lib.LiteRtGetModelSignature(self.model, 0, ctypes.byref(signature)), "read the signature")
        self.inputs = self._make_buffers(signature, "Input")
        self.outputs = self._make_buffers(signature, "Output")
        self.profiler = vp()
        self._check(lib.LiteRtCompiledModelGetProfiler(self.compiled, ctypes.byref(self.profiler)), "get the profiler")
        if not self.profiler:
            raise ProfileError(f"{model_path}: this LiteRT build returned no profiler")

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            self.close()
            raise ProfileError(f"LiteRT: {what} failed (status {status})")

    def _add_toml(self, identifier: bytes, toml: bytes) -> None:
        payload = self.libc.malloc(len(toml) + 1)
        ctypes.memmove(payload, toml + b"\0", len(toml) + 1)
        opaque = ctypes.c_void_p()
        self._check(
            self.lib.LiteRtCreateOpaqueOptions(identifier, payload, self._free, ctypes.byref(opaque)),
            f"create options '{identifier.decode()}'",
        )
        self._check(self.lib.LiteRtAddOpaqueOptions(self.options, opaque), f"attach options '{identifier.decode()}'")

    def _make_buffers(self, signature: Any, kind: str) -> list[Any]:
        lib = self.lib
        count = ctypes.c_size_t()
        self._check(getattr(lib, f"LiteRtGetNumSignature{kind}s")(signature, ctypes.byref(count)), f"count {kind}s")
        out = []
        for i in range(count.value):
            tensor = ctypes.c_void_p()
            self._check(
                getattr(lib, f"LiteRtGetSignature{kind}TensorByIndex")(signature, i, ctypes.byref(tensor)), "tensor"
            )
            tensor_type = ctypes.create_string_buffer(512)  # LiteRtRankedTensorType, passed back opaquely
            self._check(lib.LiteRtGetRankedTensorType(tensor, tensor_type), "tensor type")
            requirements = ctypes.c_void_p()
            self._check(
                getattr(lib, f"LiteRtGetCompiledModel{kind}BufferRequirements")(
                    self.compiled, 0, i, ctypes.byref(requirements)
                ),
                "buffer requirements",
            )
            buffer = ctypes.c_void_p()
            self._check(
                lib.LiteRtCreateManagedTensorBufferFromRequirements(
                    self.env, tensor_type, requirements, ctypes.byref(buffer)
                ),
                "create a tensor buffer",
            )
            self.buffers.append(buffer)
            out.append(buffer)
        return out

    def set_input(self, value: np.ndarray) -> None:
        address = ctypes.c_void_p()
        self._check(self.lib.LiteRtLockTensorBuffer(self.inputs[0], ctypes.byref(address), 1), "lock the input")
        data = np.ascontiguousarray(value)
        ctypes.memmove(address, data.ctypes.data, data.nbytes)
        self.lib.LiteRtUnlockTensorBuffer(self.inputs[0])

    def run(self) -> None:
        ins = (ctypes.c_void_p * len(self.inputs))(*[b.value for b in self.inputs])
        outs = (ctypes.c_void_p * len(self.outputs))(*[b.value for b in self.outputs])
        self._check(
            self.lib.LiteRtRunCompiledModel(self.compiled, 0, len(self.inputs), ins, len(self.outputs), outs), "run"
        )

    def events(self) -> list[tuple[str, int, int, int]]:
        """(tag, event type, elapsed us, node index) of every recorded event."""
        count = ctypes.c_int()
        self._check(self.lib.LiteRtGetNumProfilerEvents(self.profiler, ctypes.byref(count)), "count events")
        n = count.value
        if n <= 0:
            return []
        # ProfiledEventData's size depends on the runtime's MemoryUsage struct. The runtime
        # copies the events with their real stride into a buffer we pre-fill with a
        # sentinel; the last byte it wrote gives the stride without guessing pointers.
        room = 256
        raw = ctypes.create_string_buffer(b"\xab" * (n * room), n * room)
        self._check(self.lib.LiteRtGetProfilerEvents(self.profiler, n, raw), "read events")
        data = raw.raw
        last = len(data.rstrip(b"\xab"))
        stride = -(-last // n)
        stride += (-stride) % 8
        if not 64 <= stride <= room:
            raise ProfileError(f"cannot read LiteRT profiler events (ProfiledEventData stride {stride})")
        out = []
        for k in range(n):
            base = k * stride
            tag_ptr = int.from_bytes(data[base : base + 8], "little")
            tag = ctypes.string_at(tag_ptr).decode(errors="replace") if tag_ptr else ""
            event_type = int.from_bytes(data[base + 8 : base + 12], "little")
            elapsed = int.from_bytes(data[base + 24 : base + 32], "little")
            node = int.from_bytes(data[base + stride - 24 : base + stride - 16], "little", signed=True)
            out.append((tag, event_type, elapsed, node))
        return out

    def close(self) -> None:
        lib = getattr(self, "lib", None)
        if lib is None:
            return
        for b in getattr(self, "buffers", []):
            lib.LiteRtDestroyTensorBuffer(b)
        self.buffers = []
        for attr, fn in (
            ("compiled", "LiteRtDestroyCompiledModel"),
            ("options", "LiteRtDestroyOptions"),
            ("model", "LiteRtDestroyModel"),
            ("env", "LiteRtDestroyEnvironment"),
        ):
            handle = getattr(self, attr, None)
            if handle:
                getattr(lib, fn)(handle)
                setattr(self, attr, ctypes.c_void_p())


def profile_litert(
    model_path: str | Path,
    input_data: np.ndarray | None = None,
    num_threads: int = 1,
    runs: int = 200,
    warmup: int = 20,
    xnnpack: bool = True,
) -> list[OpTiming]:
    model_path = Path(model_path)
    inputs = model_inputs(model_path, input_data)
    session = _LiteRtSession(model_path, num_threads, xnnpack)
    try:
        for i in range(warmup):
            session.set_input(inputs[i % len(inputs)])
            session.run()
        session.lib.LiteRtResetProfiler(session.profiler)
        session.lib.LiteRtStartProfiler(session.profiler)
        for i in range(runs):
            session.set_input(inputs[i % len(inputs)])
            session.run()
        session.lib.LiteRtStopProfiler(session.profiler)
        events = session.events()
    finally:
        session.close()
    # Split the event stream into runs at each "Invoke" event; within a run the op
    # events come in execution order, which identifies a row (XNNPACK operators of
    # different delegate partitions reuse the same indices).
    per_run: list[list[tuple[str, int, int, int]]] = []
    for tag, event_type, elapsed, node in events:
        if event_type == 1 and tag == "Invoke":
            per_run.append([])
        elif event_type in (_OPERATOR_EVENT, _DELEGATE_NODE_EVENT, _DELEGATE_OPERATOR_EVENT) and per_run:
            per_run[-1].append((tag, event_type, elapsed, node))
    if any(e[1] == _DELEGATE_OPERATOR_EVENT for run in per_run for e in run):
        # A delegate node's own event wraps its XNNPACK operators: keep the operators.
        per_run = [[e for e in run if e[1] != _DELEGATE_NODE_EVENT] for run in per_run]
    if not per_run or not per_run[0]:
        raise ProfileError(f"{model_path}: the LiteRT profiler recorded no op events")
    reference = [(e[0], e[1], e[3]) for e in per_run[0]]
    usable = [run for run in per_run if [(e[0], e[1], e[3]) for e in run] == reference]
    times = np.array([[e[2] for e in run] for run in usable], dtype=np.float64)  # (runs, ops), whole us
    rows = []
    for k, (tag, event_type, node) in enumerate(reference):
        xnn = event_type != _OPERATOR_EVENT
        rows.append(
            OpTiming(
                index=node,
                op=f"Delegate/{tag}" if xnn and not tag.startswith("Delegate") else tag,
                time_us=_trimmed_mean(times[:, k]),
                share=0.0,
                calls=1,
                executor="xnnpack" if xnn else "builtin",
                method="litert",
            )
        )
    return _with_shares(rows)


def _trimmed_mean(values: np.ndarray, keep: float = 0.9) -> float:
    """Mean of the lowest ``keep`` fraction: drops runs hit by preemption on a shared CPU.

    A median would do that too, but the runtime reports whole microseconds, so
    the median of a 0.4 us op is 0; the mean of the kept runs keeps the
    fraction.
    """
    ordered = np.sort(values)
    return float(ordered[: max(1, int(np.ceil(keep * len(ordered))))].mean())


# ----------------------------------------------------------------- entry point


def profile_ops(
    model_path: str | Path,
    input_data: np.ndarray | None = None,
    backend: str = "auto",
    num_threads: int = 1,
    runs: int = 200,
    warmup: int = 20,
    xnnpack: bool = True,
    method: str = "auto",
) -> list[OpTiming]:
    """Time per op of one inference, in execution order.

    ``method="auto"`` is the isolated method, which works with every runtime
    and model and resolves sub-microsecond ops; ``"litert"`` asks LiteRT's own
    profiler (ai-edge-litert 2.x, models without variable tensors), which
    names XNNPACK's internal operators but reads whole microseconds. Each row
    names its method. ``input_data``: float windows as the model's float
    variant takes them (normalised), quantized here for integer models; None
    uses random windows.
    """
    if method not in METHODS:
        raise ProfileError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    if runs < 1:
        raise ProfileError(f"runs must be >= 1, got {runs}")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ProfileError(f"model file not found: {model_path}")
    if method == "auto":
        # Isolated sees every op at sub-microsecond resolution on every runtime; LiteRT's
        # profiler truncates XNNPACK operators to whole microseconds, which hides the
        # dozens of sub-microsecond operators of an unrolled LSTM (see the module doc).
        method = "isolated"
    if method == "litert":
        return profile_litert(model_path, input_data, num_threads, runs, warmup, xnnpack)
    return profile_isolated(model_path, input_data, backend, num_threads, runs, warmup, xnnpack)


def _row_us(row: OpTiming) -> float:
    """The row's representative time: the median where the method has one (isolated), else the mean."""
    return row.median_us if row.median_us is not None else row.time_us


def summarise_by_op(rows: Sequence[OpTiming]) -> list[dict[str, Any]]:
    """Rows summed per op type (e.g. all FULLY_CONNECTED of an unrolled LSTM), largest first."""
    by: dict[tuple[str, str], dict[str, Any]] = {}
    total = sum(_row_us(r) for r in rows) or 1.0
    for r in rows:
        key = (r.op, r.executor)
        entry = by.setdefault(key, {"op": r.op, "executor": r.executor, "count": 0, "time_us": 0.0})
        entry["count"] += r.calls
        entry["time_us"] += _row_us(r)
    for entry in by.values():
        entry["share"] = entry["time_us"] / total
    return sorted(by.values(), key=lambda e: -e["time_us"])


def format_table(rows: Sequence[OpTiming], top: int | None = None) -> str:
    shown = sorted(rows, key=lambda r: -r.share)[:top] if top else list(rows)
    lines = [f"{'idx':>4}  {'op':<48} {'executor':<8} {'us':>9} {'share':>7} {'calls':>5}  dtypes"]
    for r in shown:
        us = _row_us(r)
        lines.append(
            f"{r.index:>4}  {r.op[:48]:<48} {r.executor:<8} {us:>9.2f} {100 * r.share:>6.1f}% {r.calls:>5}  {r.dtypes}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_har.benchmarks.profile_ops",
        description="Per-op latency profile of a .tflite model: where one inference spends its time. "
        "Default (isolated): each op is cut out into its own model, fed its real inputs and timed alone with "
        "the same runtime, threads and XNNPACK setting. --method litert asks LiteRT's own profiler instead "
        "(ai-edge-litert 2.x, models without a fused LSTM; whole microseconds per XNNPACK operator). "
        "The last lines compare the sum of the rows with the whole model's p50.",
    )
    parser.add_argument("model", type=Path, help=".tflite file to profile")
    parser.add_argument(
        "--input",
        type=Path,
        default=None,
        help=".npy of float windows (n, window, channels), normalised as for the float model; default: random",
    )
    parser.add_argument(
        "--backend", default="auto", choices=("auto", *BACKENDS), help="interpreter runtime (default: %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=200, help="timed runs (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed warm-up runs (default: %(default)s)")
    parser.add_argument("--no-xnnpack", action="store_true", help="run every op on TFLite's own kernels")
    parser.add_argument("--method", choices=METHODS, default="auto", help="profiling method (default: %(default)s)")
    parser.add_argument("--top", type=int, default=None, help="show only the N most expensive rows")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and the whole-model timing here")
    args = parser.parse_args(argv)
    data = np.load(args.input) if args.input else None
    try:
        rows = profile_ops(
            args.model, data, args.backend, args.threads, args.runs, args.warmup, not args.no_xnnpack, args.method
        )
        whole = time_model(args.model, data, args.backend, args.threads, args.runs, args.warmup, not args.no_xnnpack)
    except (ProfileError, InterpreterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows, args.top))
    total = sum(_row_us(r) for r in rows)
    print(
        f"\nmethod {rows[0].method if rows else '-'}; sum of rows {total:.1f} us; "
        f"whole model p50 {whole['p50_us']:.1f} us, mean {whole['mean_us']:.1f} us "
        f"({args.threads} thread(s), XNNPACK {'off' if args.no_xnnpack else 'on'})"
    )
    print("\nby op type:")
    for entry in summarise_by_op(rows):
        print(
            f"  {entry['op'][:48]:<48} {entry['executor']:<8} x{entry['count']:<4} {entry['time_us']:>9.2f} us {100 * entry['share']:>6.1f}%"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": str(args.model),
                    "rows": [r.to_json() for r in rows],
                    "whole_model": whole,
                    "threads": args.threads,
                    "xnnpack": not args.no_xnnpack,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
