"""Latency suite: every variant x runtime x thread count, and the Keras model, side by side.

Each (variant, runtime, threads) is one *step*. By default every step runs in
its own fresh Python process (``python -m edge_har.benchmarks.latency --worker``):

* peak resident memory (``ru_maxrss``) only ever grows within a process, so
  measuring ``ai_edge_litert`` after ``tf.lite`` had imported TensorFlow would
  report TensorFlow's few hundred MB against the light runtime. A fresh
  process per step gives each row the memory a device process running only
  that runtime and that model would have: Python + numpy + runtime + model;
* a runtime that crashes (a segfault in a kernel, an abort in the converter's
  output) loses its own row, not the suite;
* no step warms caches or the allocator for the next one.

The price is a runtime import per step (a second for ai-edge-litert, several
for TensorFlow). ``--in-process`` trades honest memory for speed: it runs the
steps in this process and leaves the memory columns empty.

What is timed is ``TFLiteModel.predict``: float window in, float probabilities
out, including input quantization, the LSTM state reset (for a model with state) and
output dequantization, because that is what the daemon pays per window. Each TFLite
step is timed twice: back to back (the usual benchmark figure, warm caches) and
**paced**, one call per bundle stride in real time (``--paced-runs`` calls, every
``--pace`` seconds), which is how the daemon meets windows: two per second, after
the CPU has done other things, with cold caches (several times the
back-to-back figure).

Above the table: the CPU and the flags int8 speed depends on
(:mod:`edge_har.device.cpuinfo`), and the floor (:mod:`edge_har.benchmarks.floor`:
MACs per window at this CPU's measured one-thread peak) that each p50 is set
against. ``--peers onnxruntime`` adds ONNX Runtime on the same windows
(:mod:`edge_har.benchmarks.peers`). The Keras
float model is timed the two ways users call it on one window:
``model.predict(x)`` and a direct call ``model(x, training=False)``.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_har.benchmarks import report
from edge_har.benchmarks.cpuinfo import cpu_class
from edge_har.core.interpreter import BACKEND_MODULES, BACKENDS
from edge_har.core.timing import time_calls
from edge_har.device.cpuinfo import cpu_info

log = logging.getLogger(__name__)

KERAS_RUNTIMES = ("keras.predict", "keras.call")
DEFAULT_WARMUP = 20
DEFAULT_RUNS = 500
KERAS_MAX_RUNS = 100  # model.predict costs tens of ms a call; 100 calls give stable percentiles
QUICK: dict[str, Any] = {"warmup": 3, "runs": 30, "threads": [1], "keras_runs": 10}
DEFAULT_PACED_RUNS = 20  # calls at the bundle's stride: 10 s a step for HMP's 0.5 s
QUICK_PACED = {"paced_runs": 3, "max_pace_s": 0.1}  # a smoke test of the paced loop, not a figure
MAX_INPUT_WINDOWS = 256


def default_threads() -> list[int]:
    """1, 2, 4 up to the number of cores (a Pi 4/5 gets 1, 2, 4; a 2-core box 1, 2)."""
    cores = os.cpu_count() or 1
    return [t for t in (1, 2, 4) if t <= cores] or [1]


@dataclass
class LatencySettings:
    variants: list[str] | None = None  # None: every variant of the bundle
    runtimes: list[str] = field(default_factory=lambda: list(BACKENDS))
    threads: list[int] = field(default_factory=default_threads)
    runs: int | None = DEFAULT_RUNS
    min_seconds: float | None = None
    warmup: int = DEFAULT_WARMUP
    keras: bool = True
    keras_runs: int = KERAS_MAX_RUNS
    isolate: bool = True
    step_timeout_s: float = 300.0
    profile: str | None = None
    profile_runs: int = 50
    quick: bool = False
    paced_runs: int = DEFAULT_PACED_RUNS  # 0: no paced timing
    pace_s: float | None = None  # None: the bundle's stride in seconds
    max_pace_s: float | None = None  # cap on the pace (the quick run's)
    floor: bool = True  # MACs per window; with floor_peaks also the one-thread peaks (TensorFlow)
    floor_peaks: bool = True
    peers: list[str] = field(default_factory=list)  # "onnxruntime"

    @classmethod
    def quick_settings(cls, **overrides: Any) -> LatencySettings:
        base = dict(
            warmup=QUICK["warmup"],
            runs=QUICK["runs"],
            threads=list(QUICK["threads"]),
            keras_runs=QUICK["keras_runs"],
            quick=True,
            step_timeout_s=120.0,
            profile_runs=10,
            paced_runs=QUICK_PACED["paced_runs"],
            max_pace_s=QUICK_PACED["max_pace_s"],
            floor_peaks=False,
        )
        base.update(overrides)
        return cls(**base)


@dataclass
class Step:
    """One measurement: a model file on one runtime at one thread count (or the Keras model)."""

    kind: str  # "tflite" or "keras"
    variant: str
    runtime: str  # a TFLite backend name, or "keras"
    threads: int
    model_path: str
    sha256: str | None
    bundle_size_bytes: int | None
    warmup: int
    runs: int | None
    min_seconds: float | None
    inputs_path: str
    result_path: str
    paced_runs: int = 0
    pace_s: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.variant}/{self.runtime}/{self.threads}t"


# ====================================================================== the measuring side (worker)


def _rss_mb() -> float | None:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except Exception:  # psutil missing: the peak from getrusage is still there
        return None


def _peak_rss_mb() -> float:
    """Peak resident memory of this process since its exec.

    Linux: ``VmHWM`` of /proc/self/status. Not ``ru_maxrss``: the kernel
    carries the high-water mark across fork and exec, so a worker started by a
    large parent (a test run that imported TensorFlow) would report the
    parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _timing_row(times_ms: np.ndarray) -> dict[str, Any]:
    row: dict[str, Any] = dict(report.latency_summary(times_ms))
    row["runs"] = row.pop("n")
    row["throughput_per_s"] = 1000.0 / row["mean_ms"] if row["mean_ms"] and row["mean_ms"] > 0 else None
    return row


def measure_tflite(step: Step, inputs: np.ndarray) -> list[dict[str, Any]]:
    from edge_har.core.interpreter import InterpreterError, TFLiteModel, select_backend

    row: dict[str, Any] = {}
    rss_start = _rss_mb()
    t0 = time.perf_counter()
    try:
        backend = select_backend(step.runtime)
    except InterpreterError as exc:
        return [{"status": "unavailable", "error": str(exc)}]
    row["import_s"] = time.perf_counter() - t0
    row["runtime_version"] = backend.version
    rss_runtime = _rss_mb()
    model = TFLiteModel(step.model_path, backend=step.runtime, num_threads=step.threads, expected_sha256=step.sha256)
    row["init_ms"] = 1000 * model.init_seconds
    t0 = time.perf_counter()
    model.predict(inputs[0])
    row["first_ms"] = 1000 * (time.perf_counter() - t0)
    row.update(_timing_row(1000 * time_calls(model.predict, inputs, step.warmup, step.runs, step.min_seconds)))
    if step.paced_runs:
        row.update(paced_row(model.predict, inputs, step.paced_runs, step.pace_s))
    row.update(_memory(rss_start, rss_runtime))
    row["input_dtype"] = model.input.dtype.name
    row["stateful"] = model.stateful
    return [{"status": "ok", **row}]


def time_paced(call: Callable[[Any], Any], inputs: np.ndarray, runs: int, pace_s: float) -> np.ndarray:
    """Seconds per ``call(x)`` with calls ``pace_s`` apart in real time, as the daemon's windows come.

    The thread sleeps between calls (as the daemon's inference thread waits on its queue),
    so each call meets whatever the CPU's caches and clocks hold after ``pace_s`` of other
    work; the back-to-back loop of :func:`time_calls` keeps them warm.
    """
    times = np.empty(runs, dtype=np.float64)
    clock = time.perf_counter_ns
    due = time.perf_counter() + pace_s
    for i in range(runs):
        time.sleep(max(0.0, due - time.perf_counter()))
        due += pace_s
        x = inputs[i % len(inputs)]
        t0 = clock()
        call(x)
        times[i] = clock() - t0
    return times / 1e9


def paced_row(call: Callable[[Any], Any], inputs: np.ndarray, runs: int, pace_s: float) -> dict[str, Any]:
    ms = 1000 * time_paced(call, inputs, runs, pace_s)
    summary = report.latency_summary(ms)
    return {
        "paced_runs": int(summary["n"]),
        "pace_s": pace_s,
        "paced_p50_ms": summary["p50_ms"],
        "paced_p90_ms": summary["p90_ms"],
        "paced_max_ms": summary["max_ms"],
    }


def measure_keras(step: Step, inputs: np.ndarray) -> list[dict[str, Any]]:
    """model.predict and a direct call on one window, in the same process (one TensorFlow import)."""
    rss_start = _rss_mb()
    t0 = time.perf_counter()
    from edge_har.convert.models import import_tf

    tf, keras = import_tf()
    import_s = time.perf_counter() - t0
    tf.config.threading.set_intra_op_parallelism_threads(step.threads)
    tf.config.threading.set_inter_op_parallelism_threads(step.threads)
    rss_runtime = _rss_mb()
    t0 = time.perf_counter()
    model = keras.models.load_model(step.model_path, compile=False)
    init_ms = 1000 * (time.perf_counter() - t0)
    calls: dict[str, Callable[[np.ndarray], Any]] = {
        "keras.predict": lambda x: model.predict(x[None], verbose=0),
        "keras.call": lambda x: model(x[None], training=False).numpy(),
    }
    rows = []
    for name, fn in calls.items():
        row: dict[str, Any] = {
            "status": "ok",
            "runtime": name,
            "import_s": import_s,
            "init_ms": init_ms,
            "runtime_version": f"tensorflow {tf.__version__}",
        }
        t0 = time.perf_counter()
        fn(inputs[0])
        row["first_ms"] = 1000 * (time.perf_counter() - t0)
        row.update(_timing_row(1000 * time_calls(fn, inputs, step.warmup, step.runs, step.min_seconds)))
        rows.append(row)
    memory = _memory(rss_start, rss_runtime)
    memory["rss_note"] = "one process for keras.predict and keras.call"
    for row in rows:
        row.update(memory)
    return rows


def _memory(rss_start: float | None, rss_runtime: float | None) -> dict[str, Any]:
    peak = _peak_rss_mb()
    return {
        "rss_peak_mb": peak,
        "rss_runtime_mb": None if rss_start is None or rss_runtime is None else rss_runtime - rss_start,
        "rss_model_mb": None if rss_runtime is None else max(0.0, peak - rss_runtime),
    }


def measure(step: Step) -> list[dict[str, Any]]:
    """Run one step; every failure becomes a row with status 'error' and the message."""
    try:
        inputs = np.load(step.inputs_path)
        if step.kind == "keras":
            return measure_keras(step, inputs)
        return measure_tflite(step, inputs)
    except Exception as exc:  # a guarded step: report and let the suite go on
        log.debug("step %s failed", step.label, exc_info=True)
        return [{"status": "error", "error": f"{type(exc).__name__}: {exc}".strip()}]


def worker_main(argv: Sequence[str]) -> int:
    """``python -m edge_har.benchmarks.latency --worker STEP.json``: measure one step, write its rows as JSON."""
    import faulthandler

    faulthandler.enable()  # a runtime that segfaults says where, in the step's error
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(Path(argv[0]).read_text())
    step = Step(**spec)
    rows = measure(step)
    Path(step.result_path).write_text(json.dumps(rows))
    return 0


# ====================================================================== the orchestrating side


def runtime_installed(runtime: str) -> bool:
    return importlib.util.find_spec(BACKEND_MODULES[runtime]) is not None


def keras_model_path(bundle: Any) -> Path | None:
    files = bundle.data.get("files") or {}
    name = files.get("keras_model") or (bundle.data.get("training") or {}).get("keras_model") or "keras_model.h5"
    path = Path(bundle.root) / str(name).split(" ")[0]
    return path if path.is_file() else None


def _run_isolated(step: Step, spec_path: Path, timeout_s: float) -> list[dict[str, Any]]:
    spec_path.write_text(json.dumps(asdict(step)))
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    Path(step.result_path).unlink(missing_ok=True)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edge_har.benchmarks.latency", "--worker", str(spec_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return [{"status": "error", "error": f"timed out after {timeout_s:.0f} s"}]
    result = Path(step.result_path)
    if proc.returncode == 0 and result.is_file():
        return json.loads(result.read_text())
    return [{"status": "error", "error": _death_message(proc.returncode, proc.stderr)}]


def _death_message(returncode: int, stderr: str) -> str:
    """Why a worker died: the signal, and faulthandler's fatal line and innermost Python frame."""
    import signal as _signal

    if returncode < 0:
        try:
            name = _signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        reason = f"killed by {name}"
    else:
        reason = f"exit status {returncode}"
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    fatal = next((line for line in lines if line.startswith("Fatal Python error")), None)
    frame = next((line for line in lines if line.startswith("File ")), None)
    detail = "; ".join(x for x in (fatal, frame) if x) or " | ".join(lines[-3:])
    return f"the measuring process died ({reason}){': ' + detail if detail else ''}"[:600]


def _run_in_process(step: Step) -> list[dict[str, Any]]:
    rows = measure(step)
    gc.collect()
    for row in rows:
        for key in ("rss_peak_mb", "rss_runtime_mb", "rss_model_mb"):
            if key in row:
                row[key] = None
        if row.get("status") == "ok":
            row["rss_note"] = "not measured: --in-process (peak memory is shared by every step)"
    return rows


def plan_steps(bundle: Any, settings: LatencySettings, work: Path) -> tuple[list[Step], list[dict[str, Any]]]:
    """The steps to run, and rows for what will not run (runtime not installed, no Keras model)."""
    names = settings.variants or list(bundle.variants)
    for name in names:
        bundle.variant(name)  # BundleError naming the variants the bundle has
    skipped: list[dict[str, Any]] = []
    steps: list[Step] = []
    inputs = str(work / "inputs.npy")
    pace = settings.pace_s
    if pace is None:  # the bundle's stride: how often the daemon gets a window
        pre = bundle.preprocessing
        pace = pre.stride / pre.sample_rate_hz
    if settings.max_pace_s is not None:
        pace = min(pace, settings.max_pace_s)
    for runtime in settings.runtimes:
        if runtime not in BACKENDS:
            raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(BACKENDS)}")
        if not runtime_installed(runtime):
            skipped.append(
                {
                    "variant": "-",
                    "runtime": runtime,
                    "threads": None,
                    "status": "not installed",
                    "error": f"python module {BACKEND_MODULES[runtime]} is not installed",
                }
            )
            continue
        for name in names:
            variant = bundle.variant(name)
            # A split (video) variant is timed part by part: "int8:encoder" runs once per frame,
            # "int8:head" once per window; each part gets random inputs of its own shape.
            files = (
                [
                    (f"{name}:{p.name}", p.file, p.sha256, p.size_bytes, str(work / f"inputs-{name}-{p.name}.npy"))
                    for p in variant.parts.values()
                ]
                if variant.parts
                else [(name, variant.file, variant.sha256, variant.size_bytes, inputs)]
            )
            for label, file, sha, size, inputs_path in files:
                for threads in settings.threads:
                    steps.append(
                        Step(
                            kind="tflite",
                            variant=label,
                            runtime=runtime,
                            threads=threads,
                            model_path=str(file),
                            sha256=sha,
                            bundle_size_bytes=size,
                            warmup=settings.warmup,
                            runs=settings.runs,
                            min_seconds=settings.min_seconds,
                            inputs_path=inputs_path,
                            result_path=str(work / f"result-{len(steps)}.json"),
                            paced_runs=settings.paced_runs,
                            pace_s=float(pace),
                        )
                    )
    if settings.keras:
        keras_file = keras_model_path(bundle)
        if keras_file is None:
            skipped.append(
                {
                    "variant": "keras",
                    "runtime": "keras",
                    "threads": None,
                    "status": "skipped",
                    "error": "the bundle keeps no keras_model.h5",
                }
            )
        elif importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf_keras") is None:
            skipped.append(
                {
                    "variant": "keras",
                    "runtime": "keras",
                    "threads": None,
                    "status": "not installed",
                    "error": "TensorFlow and tf-keras are not installed (pip install 'edge-har[train]')",
                }
            )
        else:
            runs = None if settings.runs is None else min(settings.runs, settings.keras_runs)
            for threads in settings.threads:
                steps.append(
                    Step(
                        kind="keras",
                        variant="keras_float",
                        runtime="keras",
                        threads=threads,
                        model_path=str(keras_file),
                        sha256=None,
                        bundle_size_bytes=None,
                        warmup=min(settings.warmup, 5),
                        runs=runs,
                        min_seconds=settings.min_seconds,
                        inputs_path=inputs,
                        result_path=str(work / f"result-{len(steps)}.json"),
                    )
                )
    return steps, skipped


def _complete_row(step: Step, raw: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "variant": step.variant,
        "runtime": raw.pop("runtime", step.runtime),
        "threads": step.threads,
    }
    row.update(raw)
    path = Path(step.model_path)
    row["model_file"] = path.name
    row["size_bytes"] = path.stat().st_size if path.is_file() else None
    if step.bundle_size_bytes is not None:
        row["bundle_size_bytes"] = step.bundle_size_bytes
    return row


def add_keras_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's p50 over Keras model.predict's (and direct call's) p50 at the same thread count."""
    refs: dict[str, dict[int, float]] = {name: {} for name in KERAS_RUNTIMES}
    for row in rows:
        if row.get("runtime") in refs and row.get("status") == "ok":
            refs[row["runtime"]][row["threads"]] = row["p50_ms"]
    for row in rows:
        if row.get("status") != "ok":
            continue
        for name, key in (("keras.predict", "ratio_to_keras_predict"), ("keras.call", "ratio_to_keras_call")):
            ref = refs[name].get(row["threads"]) or next(iter(refs[name].values()), None)
            row[key] = row["p50_ms"] / ref if ref else None


def run_floor(bundle: Any, settings: LatencySettings) -> dict[str, Any]:
    """MACs per window of every variant, and the floor at the one-thread peaks when TensorFlow is here."""
    from edge_har.benchmarks.floor import floor_section, measure_peaks_isolated

    runtime = next((r for r in settings.runtimes if runtime_installed(r)), BACKENDS[0])
    peaks = None
    if settings.floor_peaks:
        if importlib.util.find_spec("tensorflow") is None:
            peaks = {"status": "not measured", "error": "the peak probes are built with TensorFlow (edge-har[train])"}
        else:
            peaks = measure_peaks_isolated(runtime, threads=1)
    try:
        return floor_section(bundle, runtime, peaks)
    except Exception as exc:  # a floor that cannot be counted must not lose the latency figures
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "variants": {}}


def add_floor_ratios(rows: list[dict[str, Any]], floor: dict[str, Any]) -> None:
    """``x_floor``: p50 over the variant's floor (one-thread rows; the peak is a one-thread figure)."""
    variants = floor.get("variants") or {}
    for row in rows:
        entry = variants.get(row.get("variant"))
        if row.get("status") != "ok" or not entry or not entry.get("floor_ms") or row.get("threads") != 1:
            continue
        row["floor_ms"] = entry["floor_ms"]
        row["x_floor"] = row["p50_ms"] / entry["floor_ms"]
        if row.get("paced_p50_ms") is not None:
            row["paced_x_floor"] = row["paced_p50_ms"] / entry["floor_ms"]


def run_profile(bundle: Any, settings: LatencySettings, inputs: np.ndarray) -> dict[str, Any]:
    """Per-op profile of one variant through ``edge_har.benchmarks.profile_ops`` (the int8 study's profiler).

    Runs in this process: it is about where the time goes, not about memory.
    """
    name = settings.profile
    variant = bundle.variant(name)
    runtime = next((r for r in settings.runtimes if runtime_installed(r)), BACKENDS[0])
    threads = settings.threads[0]
    info: dict[str, Any] = {"variant": name, "runtime": runtime, "threads": threads, "runs": settings.profile_runs}
    try:
        from edge_har.benchmarks.profile_ops import profile_ops, summarise_by_op
    except ImportError as exc:
        return {**info, "status": "unavailable", "error": f"edge_har.benchmarks.profile_ops cannot be imported: {exc}"}
    try:
        rows = profile_ops(str(variant.file), inputs, backend=runtime, num_threads=threads, runs=settings.profile_runs)
    except Exception as exc:
        return {**info, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
    return {
        **info,
        "status": "ok",
        "method": rows[0].method if rows else None,
        "ops": [r.to_json() for r in rows],
        "by_op_type": summarise_by_op(rows),
    }


def run_latency(
    bundle: Any,
    settings: LatencySettings,
    inputs: np.ndarray,
    input_info: dict[str, Any],
    progress: bool = True,
) -> dict[str, Any]:
    """Measure every planned step and return the suite's results section."""
    from tqdm import tqdm

    started = time.perf_counter()
    section = report.suite_header("latency", bundle)
    settings_json = asdict(settings)
    settings_json["isolation"] = "one process per step" if settings.isolate else "in-process (memory not measured)"
    section["settings"] = settings_json
    section["inputs"] = input_info
    cpu = cpu_info()
    section["cpu"] = {**cpu.to_json(), "class": cpu_class(cpu)}
    section["cpu_summary"] = f"{cpu.summary()}; class: {cpu_class(cpu)}"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edge-har-latency-") as tmp:
        work = Path(tmp)
        np.save(work / "inputs.npy", np.ascontiguousarray(inputs, dtype=np.float32))
        steps, skipped = plan_steps(bundle, settings, work)
        for name, variant in bundle.variants.items():
            for part in variant.parts.values():
                shape = tuple(int(d) for d in part.meta["input"]["shape"][1:])
                np.save(work / f"inputs-{name}-{part.name}.npy", random_inputs(shape, n=16))
        unavailable: dict[str, str] = {}
        for i, step in enumerate(tqdm(steps, desc="latency", unit="step", disable=not progress, leave=False)):
            if step.runtime in unavailable:
                raw_rows = [{"status": "unavailable", "error": unavailable[step.runtime]}]
            elif settings.isolate:
                raw_rows = _run_isolated(step, work / f"step-{i}.json", settings.step_timeout_s)
            else:
                raw_rows = _run_in_process(step)
            for raw in raw_rows:
                if raw.get("status") == "unavailable":
                    unavailable[step.runtime] = raw.get("error", "")
                row = _complete_row(step, raw)
                rows.append(row)
                if row["status"] == "ok":
                    log.info(
                        "%s/%s/%dt: p50 %.3f ms, p99 %.3f ms",
                        row["variant"],
                        row["runtime"],
                        row["threads"],
                        row["p50_ms"],
                        row["p99_ms"],
                    )
                else:
                    log.warning("%s: %s: %s", step.label, row["status"], row.get("error"))
    rows.extend(skipped)
    add_keras_ratios(rows)
    section["rows"] = rows
    if settings.floor:
        section["floor"] = run_floor(bundle, settings)
        add_floor_ratios(rows, section["floor"])
    if settings.peers:
        from edge_har.benchmarks.peers import run_peers

        section["peers"] = run_peers(bundle, settings, inputs, input_info, rows)
    if settings.profile:
        section["profile"] = run_profile(bundle, settings, inputs)
    return report.finish_section(section, started)


# ====================================================================== inputs


def random_inputs(shape: Sequence[int], n: int = 64, seed: int = 0) -> np.ndarray:
    """Standard-normal windows: the distribution of normalised data, without data."""
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def dataset_inputs(bundle: Any, dataset: Any, limit: int = MAX_INPUT_WINDOWS) -> tuple[np.ndarray, dict[str, Any]]:
    """Real normalised windows of ``dataset``: the bundle's test split when it can be found again, else all."""
    from edge_har.convert.evaluate import EvaluationError, bundle_windows

    try:
        x, _, info = bundle_windows(bundle, dataset, "test")
    except EvaluationError as exc:
        log.warning("%s; timing windows from the whole data set instead", exc)
        x, _, info = bundle_windows(bundle, dataset, "all")
    if len(x) > limit:  # evenly spread, so every class and recording is represented
        x = x[np.linspace(0, len(x) - 1, limit).round().astype(int)]
    return x, {
        "source": "data",
        "path": str(dataset.root),
        "split": info["split"],
        "windows": int(len(x)),
        "normalised": "edge_har.core.preprocessing with the bundle's preprocessing",
    }


# ====================================================================== terminal output


def _ratio_cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}x"


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ms(value: Any) -> str:
    """Milliseconds with three significant digits (0.0238, 0.123, 46.9, 1234)."""
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def format_latency(section: dict[str, Any]) -> str:
    rows = section["rows"]
    inputs = section.get("inputs", {})
    source = (
        f"real windows: {inputs.get('windows')} from {inputs.get('path')} ({inputs.get('split')} split)"
        if inputs.get("source") == "data"
        else f"random inputs ({inputs.get('detail', 'standard normal')}); pass --data to time real windows"
    )
    iso = section["settings"]["isolation"]
    headers = [
        "variant",
        "runtime",
        "thr",
        "status",
        "init ms",
        "first ms",
        "mean ms",
        "std ms",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "paced p50",
        "paced p90",
        "x floor",
        "win/s",
        "peak RSS MB",
        "size KB",
        "/ keras.predict",
    ]
    table = []
    notes: list[str] = []
    for r in rows:
        ok = r.get("status") == "ok"
        status = "ok"
        if not ok:
            notes.append(
                f"[{len(notes) + 1}] {r.get('variant')}/{r.get('runtime')}: {r.get('status')}: {r.get('error', '')}"
            )
            status = f"{r.get('status')} [{len(notes)}]"
        size = r.get("size_bytes")
        table.append(
            [
                str(r.get("variant")),
                str(r.get("runtime")),
                "-" if r.get("threads") is None else str(r["threads"]),
                status,
                _ms(r.get("init_ms")),
                _ms(r.get("first_ms")),
                _ms(r.get("mean_ms")),
                _ms(r.get("std_ms")),
                _ms(r.get("p50_ms")),
                _ms(r.get("p90_ms")),
                _ms(r.get("p95_ms")),
                _ms(r.get("p99_ms")),
                _ms(r.get("paced_p50_ms")),
                _ms(r.get("paced_p90_ms")),
                "-" if r.get("x_floor") is None else f"{r['x_floor']:.1f}",
                _num(r.get("throughput_per_s"), 0),
                _num(r.get("rss_peak_mb"), 1),
                "-" if size is None else f"{size / 1024:.1f}",
                _ratio_cell(r.get("ratio_to_keras_predict")),
            ]
        )
    paced = next((r for r in rows if r.get("paced_runs")), None)
    paced_line = (
        f"; paced: {paced['paced_runs']} calls {paced['pace_s']:g} s apart (the bundle's stride), after the "
        "back-to-back runs"
        if paced
        else ""
    )
    parts = [
        report.context_lines(section),
        f"CPU: {section.get('cpu_summary') or '?'}",
        f"inputs: {source}\nmeasurement: {iso}; timed call: TFLiteModel.predict (float window in, float "
        f"probabilities out){paced_line}; x floor: p50 / the variant's floor (below, 1 thread); peak RSS: the "
        "whole measuring process (Python + numpy + runtime + model)",
        report.format_table(headers, table, title=f"Latency per window: {section['bundle']['model_id']}"),
    ]
    if notes:
        parts.append("\n".join(notes))
    summary = keras_summary(section)
    if summary:
        parts.append(summary)
    floor = section.get("floor")
    if floor and floor.get("variants"):
        from edge_har.benchmarks.floor import format_floor

        parts.append(format_floor(floor))
    peers = section.get("peers")
    if peers:
        from edge_har.benchmarks.peers import format_peers

        parts.append(format_peers(peers))
    profile = section.get("profile")
    if profile:
        parts.append(format_profile(profile))
    return "\n\n".join(parts)


def keras_summary(section: dict[str, Any]) -> str:
    """One line per TFLite variant at one thread: its p50 against Keras model.predict on one window."""
    rows = section["rows"]
    keras = {r["threads"]: r for r in rows if r.get("runtime") == "keras.predict" and r.get("status") == "ok"}
    if not keras:
        return ""
    lines = ["TFLite inference time / Keras model.predict on one window (p50 over p50, same thread count):"]
    for r in rows:
        if r.get("status") != "ok" or r.get("runtime") in KERAS_RUNTIMES or r.get("ratio_to_keras_predict") is None:
            continue
        ref = keras.get(r["threads"])
        if ref is None:
            continue
        ratio = r["ratio_to_keras_predict"]
        lines.append(
            f"  {r['variant']:<14} {r['runtime']:<15} {r['threads']}t: {r['p50_ms']:.4g} ms / "
            f"{ref['p50_ms']:.4g} ms = {ratio:.4g} ({1 / ratio:.0f}x faster)"
        )
    call = next((r for r in rows if r.get("runtime") == "keras.call" and r.get("status") == "ok"), None)
    if call:
        lines.append(f"  (Keras direct call model(x): p50 {call['p50_ms']:.4g} ms at {call['threads']}t)")
    return "\n".join(lines)


def format_profile(profile: dict[str, Any]) -> str:
    head = (
        f"Per-op profile of {profile['variant']} ({profile['runtime']}, {profile['threads']} thread(s), "
        f"{profile['runs']} runs, method {profile.get('method')})"
    )
    if profile.get("status") != "ok":
        return f"{head}: {profile.get('status')}: {profile.get('error')}"
    ops = sorted(profile["ops"], key=lambda r: -r["share"])[:15]
    rows = [
        [
            str(r["index"]),
            r["op"][:48],
            r["executor"],
            f"{(r['median_us'] if r['median_us'] is not None else r['time_us']):.2f}",
            f"{100 * r['share']:.1f}%",
            str(r["calls"]),
            r.get("dtypes") or "",
        ]
        for r in ops
    ]
    by_type = [
        [e["op"][:48], e["executor"], str(e["count"]), f"{e['time_us']:.2f}", f"{100 * e['share']:.1f}%"]
        for e in profile["by_op_type"]
    ]
    return "\n\n".join(
        [
            report.format_table(
                ["idx", "op", "executor", "us", "share", "calls", "dtypes"], rows, title=head + ", most expensive first"
            ),
            report.format_table(["op type", "executor", "calls", "us", "share"], by_type, title="By op type"),
        ]
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2:]))
    print(
        "usage: python -m edge_har.benchmarks.latency --worker STEP.json (run by `edge-har bench latency`)",
        file=sys.stderr,
    )
    sys.exit(2)
