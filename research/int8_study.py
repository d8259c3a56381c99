"""Why the full-integer CNN-LSTM is slow, and which architecture and recipe make it fast.

A reproducible study on the real HMP wrist-accelerometer data, run on the
product's own code so its findings hold for what ``edge-har convert`` writes:
the data come from ``edge_har.convert.datasets.load_hmp`` and the product's
default split (``edge_har.convert.splits.split_recordings``), the model from
``edge_har.convert.models.build_from_config`` (a :class:`ModelConfig` per
candidate), the files from ``edge_har.convert.quantize``'s converter (the
product's variant specs, plus per-recipe converter flags), the scores from
``edge_har.core.metrics`` and every timing from ``edge_har.core.timing``.

For each candidate architecture it trains the CNN-LSTM once (tf_keras, short,
cached), converts it with each recipe (fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``;
Keras ``LSTM(unroll=True)``; the project's projected unrolled LSTM; same
weights in all) into float32, dynamic-range, full-integer int8 (and, if asked,
int16x8) files, and measures every file with the real interpreter:

* latency: one thread (and two), XNNPACK on (and off), ``invoke()`` only,
  warm-up then ``--runs`` timed runs on real test windows; candidates are
  interleaved in a shuffled order and the whole sweep repeated ``--rounds``
  times, because the machine's CPU is shared; the figures are medians over
  rounds of each round's p50 and mean;
* accuracy and macro-F1 on the test split through ``edge_har.core.interpreter.
  TFLiteModel`` (the device's own code path), and the Keras float model's;
* file size, op list, ops that still compute in float, input/output types;
* per-op profiles (``edge_har.benchmarks.profile_ops``) of selected files.

Results go to ``--out``: ``int8_study.json`` (every figure) and
``int8_study.md`` (tables).

The defaults are the run kept in ``benchmarks/results/int8_study-x86_64-20261201.md``
(about 30-60 min on 2 shared cores, most of it training; trained models are
cached in ``--cache`` and reused)::

    python research/int8_study.py --data ../shared/data/hmp/HMP --out /tmp/int8-study

``--quick`` runs the same code end to end on one candidate, one epoch, few
timed runs, for a smoke test on a tiny (e.g. ``edge_har.convert.synthetic``) data set.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_har.benchmarks import profile_ops
from edge_har.convert import datasets
from edge_har.convert.models import ModelConfig, build_from_config, import_tf
from edge_har.convert.quantize import (
    INT16X8,
    PER_TENSOR_ALL,
    PER_TENSOR_DENSE,
    ConversionError,
    VariantSpec,
    calibration_windows,
    convert_saved,
    saved_for_conversion,
)
from edge_har.convert.quantize import (
    VARIANTS as PRODUCT_VARIANTS,
)
from edge_har.convert.splits import split_recordings
from edge_har.core.interpreter import TFLiteModel, backend_module, select_backend
from edge_har.core.metrics import accuracy, macro_f1
from edge_har.core.preprocessing import Preprocessing, fit_normalisation, normalise
from edge_har.core.timing import input_feeds, time_calls, time_invokes

log = logging.getLogger("int8_study")

VARIANTS = ("float32", "dynamic_range", "int8", "int16x8")
# The product's specs, and int16x8, which the product does not offer (too slow; see convert/quantize.py).
SPECS: dict[str, VariantSpec] = {**{v: PRODUCT_VARIANTS[v] for v in VARIANTS[:3]}, "int16x8": INT16X8}
WINDOW = 96
STRIDE = 16


# ----------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidate:
    """One CNN-LSTM architecture: a name and the product's own ModelConfig."""

    name: str
    config: ModelConfig

    @property
    def lstm_units(self) -> int:
        return self.config.lstm_units[0]

    def steps(self, window: int) -> int:
        return self.config.sequence_length(window)

    def describe(self) -> dict[str, Any]:
        """The fields the study has always recorded per candidate (the JSON and markdown read them)."""
        c = self.config
        return {
            "name": self.name,
            "conv_filters": list(c.conv_filters),
            "pool_size": c.pool_size,
            "lstm_units": self.lstm_units,
            "kernel_size": c.kernel_size,
            "conv_dropout": c.conv_dropout,
            "dropout": c.dropout,
            "model_config": c.to_json(),
        }

    def key(self) -> str:
        """Cache key of the architecture; hashes the same fields as before, so weights trained earlier stay valid."""
        d = {k: v for k, v in self.describe().items() if k not in ("name", "model_config")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def candidate(
    name: str, conv_filters: tuple[int, ...], pool_size: int, lstm_units: int, kernel_size: int = 5
) -> Candidate:
    """A candidate with the product's defaults for everything the study does not vary (dropouts, batch norm)."""
    return Candidate(
        name,
        ModelConfig(conv_filters=conv_filters, pool_size=pool_size, lstm_units=(lstm_units,), kernel_size=kernel_size),
    )


# Sequence the LSTM walks: 96 samples -> 48 / 24 / 12 / 6 / 3 steps; LSTM width 16 / 32 / 64 / 128; conv width.
# "w_s3_l128" is edge_har.convert.models.ModelConfig's default architecture (tests/test_int8_study.py checks);
# "s24_l64" was the default before the study.
CANDIDATES: dict[str, Candidate] = {
    c.name: c
    for c in (
        candidate("s48_l64", (32,), 2, 64),
        candidate("s24_l64", (32, 64), 2, 64),
        candidate("s24_l32", (32, 64), 2, 32),
        candidate("s12_l64", (32, 64, 64), 2, 64),
        candidate("s12_l32", (32, 64, 64), 2, 32),
        candidate("s12_l16", (32, 64, 64), 2, 16),
        candidate("s6_l32", (32, 64), 4, 32),
        candidate("s6_l64", (32, 64), 4, 64),
        candidate("w_s6_l64", (64, 128), 4, 64),
        candidate("w_s6_l128", (64, 128), 4, 128),
        candidate("w_s6_l64_k9", (64, 128), 4, 64, kernel_size=9),
        candidate("w_s3_l64", (64, 128, 128), 3, 64),
        candidate("w_s3_l128", (64, 128, 128), 3, 128),
    )
}


@dataclass(frozen=True)
class Recipe:
    """How a trained model becomes .tflite files (the weights are the same for every recipe).

    unroll: Keras' LSTM(unroll=True): per-step FULLY_CONNECTED/ADD/MUL/LOGISTIC/TANH
        ops, which XNNPACK runs in int8, instead of the fused
        UNIDIRECTIONAL_SEQUENCE_LSTM, which XNNPACK cannot take.
    zero_state: the LSTM's zero initial state computed from the input (x * 0)
        instead of a constant, so step 0 is traced like every other step (a
        constant zero state leaves the forget gate of step 0 unused, and the
        quantizer then keeps that step's SPLIT in float).
    dense_per_tensor: one scale per FULLY_CONNECTED weight tensor instead of
        one per output channel (convolutions stay per channel); saves the
        per-channel scale/zero-point tables of the LSTM's 4*units rows. The
        product's int8 variant sets it; a recipe without it turns it off.
    all_per_tensor: one scale per weight tensor everywhere, convolutions too.
    short_names: internal tensor names shortened to "t<index>" (inputs,
        outputs and signatures keep theirs); the converter's fused names are
        long and an unrolled LSTM has hundreds of tensors.
    projected: the project's own unrolled LSTM (edge_har.convert.unrolled_lstm,
        ModelConfig(lstm_export="unrolled"), the default): the input projection
        of all steps is one FULLY_CONNECTED before the recurrence, and step 0
        leaves out the zero-state terms (no zero-state input needed).
    """

    name: str
    unroll: bool = False
    projected: bool = False
    zero_state: bool = False
    dense_per_tensor: bool = False
    all_per_tensor: bool = False
    short_names: bool = False

    def converter_flags(self, variant: str) -> dict[str, Any]:
        """The converter attributes this recipe sets on top of the product's variant spec."""
        if variant == "float32":
            return {}
        flags: dict[str, Any] = {PER_TENSOR_DENSE: self.dense_per_tensor}
        if self.all_per_tensor:
            flags[PER_TENSOR_ALL] = True
        return flags


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("fused"),  # ModelConfig(lstm_export="fused"), per-channel FC weights
        Recipe("unrolled", unroll=True),
        Recipe("unrolled_zs", unroll=True, zero_state=True),
        Recipe("unrolled_zs_pt_sn", unroll=True, zero_state=True, dense_per_tensor=True, short_names=True),
        Recipe("unrolled_zs_ptall_sn", unroll=True, zero_state=True, all_per_tensor=True, short_names=True),
        Recipe("projected", projected=True),  # ModelConfig(lstm_export="unrolled"), per-channel FC weights
        Recipe("projected_pt", projected=True, dense_per_tensor=True),  # edge-har convert's default int8 file
        Recipe("projected_pt_sn", projected=True, dense_per_tensor=True, short_names=True),
    )
}


# ----------------------------------------------------------------- data


@dataclass
class Data:
    labels: list[str]
    pre: Preprocessing
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    split: dict[str, Any]
    fingerprint: str
    loader: str


def load_data(root: Path, seed: int, window: int = WINDOW, stride: int = STRIDE) -> Data:
    """Windows of the HMP data in ``edge-har convert``'s default split, normalised with the training windows' statistics."""
    pre = Preprocessing(
        sample_rate_hz=datasets.HMP_RATE_HZ,
        window=window,
        stride=stride,
        channels=datasets.HMP_CHANNELS,
        scale=datasets.HMP_SCALE,
        offset=datasets.HMP_OFFSET,
        units=datasets.HMP_UNITS,
    )
    dataset = datasets.load_hmp(root)
    split_ = split_recordings(dataset, seed=seed)
    sides = {}
    for side in ("train", "val", "test"):
        ws = datasets.make_window_set(dataset, pre, getattr(split_, side), skip_short=True)
        sides[side] = (ws.x.astype(np.float32), ws.y.astype(np.int64))
    files = sorted(r.source for r in dataset.recordings)
    split = {"kind": "edge_har.convert.splits.split_recordings (default)", **split_.describe()}
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = sides["train"], sides["val"], sides["test"]
    mean, std = fit_normalisation(x_tr)
    pre = pre.with_normalisation(mean, std)
    split["windows"] = {"train": int(len(y_tr)), "val": int(len(y_va)), "test": int(len(y_te))}
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "files": files,
                "split": split.get("test_sources"),
                "seed": seed,
                "window": window,
                "stride": stride,
                "windows": split["windows"],
            }
        ).encode()
    ).hexdigest()[:12]
    loader = "edge_har.convert.datasets.load_hmp + edge_har.convert.splits.split_recordings"
    return Data(
        list(dataset.labels),
        pre,
        normalise(x_tr, pre),
        y_tr,
        normalise(x_va, pre),
        y_va,
        normalise(x_te, pre),
        y_te,
        split,
        fingerprint,
        loader,
    )


# ----------------------------------------------------------------- model, training


def build(
    c: Candidate,
    input_shape: tuple[int, ...],
    n_classes: int,
    batch_size: int | None = None,
    recipe: Recipe | None = None,
) -> Any:
    """The product's CNN-LSTM for ``c``, with the recipe's LSTM form (which never changes the weights).

    A model trained in the plain form converts in any other by loading its
    weights into this graph.
    """
    r = recipe or Recipe("train")
    return build_from_config(
        c.config,
        input_shape,
        n_classes,
        batch_size=batch_size,
        unrolled_lstm=r.projected,
        keras_unroll=r.unroll,
        zero_state=r.zero_state,
    )


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 10
    patience: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 42

    def tag(self, c: Candidate, data: Data) -> str:
        extra = (
            ""
            if (self.patience, self.batch_size, self.learning_rate) == (3, 64, 1e-3)
            else (f"-p{self.patience}-b{self.batch_size}-lr{self.learning_rate:g}")
        )
        return f"{c.name}-{c.key()}-{data.fingerprint}-e{self.epochs}-s{self.seed}{extra}"


def train(c: Candidate, data: Data, cache: Path, settings: TrainSettings) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse the cached weights of) one candidate; returns the weights file and a record."""
    tf, keras = import_tf()
    epochs, seed = settings.epochs, settings.seed
    tag = settings.tag(c, data)
    weights = cache / f"{tag}.weights.h5"
    record_file = cache / f"{tag}.json"
    if weights.is_file() and record_file.is_file():
        log.info("%s: cached weights %s", c.name, weights.name)
        return weights, json.loads(record_file.read_text())
    keras.utils.set_random_seed(seed)
    model = build(c, data.x_train.shape[1:], len(data.labels))
    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    counts = np.bincount(data.y_train, minlength=len(data.labels)).astype(np.float64)
    class_weight = {i: float(len(data.y_train) / (len(counts) * n)) for i, n in enumerate(counts) if n > 0}
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.patience, restore_best_weights=True)
    started = time.perf_counter()
    history = model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=epochs,
        batch_size=settings.batch_size,
        class_weight=class_weight,
        callbacks=[stop],
        verbose=2,
    )
    seconds = time.perf_counter() - started
    cache.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(weights))
    record = {
        "train_seconds": round(seconds, 1),
        "epochs_run": len(history.history["loss"]),
        "settings": dataclasses.asdict(settings),
        "best_val_loss": float(min(history.history["val_loss"])),
        "params": int(model.count_params()),
    }
    record_file.write_text(json.dumps(record, indent=2))
    return weights, record


def scores(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 by the product's metrics, so the study's figures match ``edge-har evaluate``'s."""
    return {"accuracy": accuracy(y, pred), "macro_f1": macro_f1(y, pred, n_classes)}


def keras_accuracy(c: Candidate, weights: Path, data: Data) -> dict[str, float]:
    model = build(c, data.x_train.shape[1:], len(data.labels))
    model.load_weights(str(weights))
    probs = model.predict(data.x_test, batch_size=256, verbose=0)
    return scores(data.y_test, probs.argmax(-1), len(data.labels))


# ----------------------------------------------------------------- conversion


def calibration(data: Data, size: int, seed: int) -> np.ndarray:
    """``size`` training windows, stratified by class: the product's calibration set."""
    return calibration_windows(data.x_train, data.y_train, size, seed)


def shorten_names(content: bytes) -> bytes:
    """Rename internal tensors to "t<index>"; graph inputs and outputs keep their names."""
    model = profile_ops._read_model(content)
    for sub in model.subgraphs:
        keep = set(int(i) for i in sub.inputs) | set(int(i) for i in sub.outputs)
        for i, tensor in enumerate(sub.tensors):
            if i not in keep:
                tensor.name = f"t{i}".encode()
    return profile_ops._write_model(model)


def _conversion_error(exc: ConversionError) -> str:
    """The converter's own message, cut around "not yet supported" when it says so (int16x8 on the fused LSTM)."""
    cause = exc.__cause__ or exc
    msg = " ".join(str(cause).split())
    at = msg.find("not yet supported")
    return f"{type(cause).__name__}: " + (msg[max(0, at - 80) : at + 120] if at >= 0 else msg[-300:])


def convert_all(
    c: Candidate, weights: Path, data: Data, out: Path, calib: np.ndarray, recipe: Recipe, variants: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Convert one trained candidate with one recipe into each variant, with the product's converter; records failures too."""
    results: dict[str, dict[str, Any]] = {}
    todo = {}
    for v in variants:
        path = out / f"{c.name}_{recipe.name}_{v}.tflite"
        stamp = path.with_suffix(".src")
        if path.is_file() and stamp.is_file() and stamp.read_text() == weights.name:
            results[v] = {"file": str(path), "cached": True}
        else:
            todo[v] = path
    if not todo:
        return results
    trained = build(c, data.x_train.shape[1:], len(data.labels))
    trained.load_weights(str(weights))
    model = build(c, data.x_train.shape[1:], len(data.labels), batch_size=1, recipe=recipe)
    model.set_weights(trained.get_weights())  # the same weights in the same order, whatever the LSTM's form
    with saved_for_conversion(model) as saved:
        for v, path in todo.items():
            try:
                # Float ops left in an "int8" file are one of the study's findings, so they are recorded, not refused.
                converted = convert_saved(
                    saved, SPECS[v], calib, flags=recipe.converter_flags(v), check_full_integer=False
                )
            except ConversionError as exc:  # e.g. int16x8 refuses the fused LSTM: a finding, not a crash
                results[v] = {"error": _conversion_error(exc)}
                log.warning("%s %s %s: conversion failed: %s", c.name, recipe.name, v, results[v]["error"])
                continue
            content = shorten_names(converted.content) if recipe.short_names else converted.content
            path.write_bytes(content)
            path.with_suffix(".src").write_text(weights.name)
            results[v] = {"file": str(path), "convert_seconds": round(converted.seconds, 1)}
    return results


def inspect(path: Path) -> dict[str, Any]:
    ops: dict[str, int] = {}
    for row in profile_ops.list_ops(path):
        ops[row["op"]] = ops.get(row["op"], 0) + 1
    ins, outs = profile_ops.io_specs(path)
    return {
        "size_bytes": path.stat().st_size,
        "ops": dict(sorted(ops.items())),
        "n_ops": sum(ops.values()),
        "float_ops": profile_ops.float_ops(path),
        "input_dtype": ins[0].dtype.name,
        "output_dtype": outs[0].dtype.name,
    }


def tflite_accuracy(path: Path, data: Data) -> dict[str, float]:
    model = TFLiteModel(path, num_threads=1)
    probs = model.predict_batch(data.x_test)
    return scores(data.y_test, probs.argmax(-1), len(data.labels))


# ----------------------------------------------------------------- latency


@dataclass
class Timed:
    key: str
    path: Path
    threads: int
    xnnpack: bool
    latest: bool = False
    p50: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    interp: Any = None


def measure_latency(jobs: list[Timed], data: Data, rounds: int, warmup: int, runs: int, seed: int) -> None:
    """Interleaved rounds: every job once per round, in a fresh shuffled order each round."""
    backend = select_backend("auto")
    module = backend_module(backend.name)
    cache: dict[Path, list[np.ndarray]] = {}
    for t in jobs:
        kwargs: dict[str, Any] = {"model_path": str(t.path), "num_threads": t.threads}
        if not t.xnnpack:
            kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if t.latest:
            kwargs["experimental_default_delegate_latest_features"] = True
        t.interp = backend.interpreter_cls(**kwargs)
        t.interp.allocate_tensors()
        if t.path not in cache:
            cache[t.path] = profile_ops.model_inputs(t.path, data.x_test[:: max(1, len(data.x_test) // 16)], count=16)
    rng = random.Random(seed)
    for r in range(rounds):
        order = list(jobs)
        rng.shuffle(order)
        started = time.perf_counter()
        for t in order:
            us = 1e6 * time_invokes(t.interp, input_feeds(t.interp, cache[t.path]), warmup, runs)
            t.p50.append(float(np.percentile(us, 50)))
            t.mean.append(float(us.mean()))
        log.info("latency round %d/%d: %d jobs in %.1f s", r + 1, rounds, len(jobs), time.perf_counter() - started)
    for t in jobs:
        t.interp = None


def predict_latency(path: Path, data: Data, runs: int, warmup: int = 20) -> float:
    """p50 in us of TFLiteModel.predict (quantize, reset, set, invoke, get, dequantize): the device's call."""
    model = TFLiteModel(path, num_threads=1)
    xs = data.x_test[: min(len(data.x_test), 64)]
    return float(np.percentile(1e6 * time_calls(model.predict, xs, warmup, runs), 50))


# ----------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        for pkg in ("ai-edge-litert", "tensorflow", "tf-keras", "numpy"):
            try:
                info[pkg] = version(pkg)
            except Exception:
                info[pkg] = None
    except ImportError:
        pass
    try:
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout.strip()
    except OSError:
        info["git"] = None
    info["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return info


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# int8 study results",
        "",
        f"Machine: {results['machine'].get('cpu')} ({results['machine'].get('cpus')} cores, shared), "
        f"ai-edge-litert {results['machine'].get('ai-edge-litert')}, TF {results['machine'].get('tensorflow')}; "
        f"commit {results['machine'].get('git')}; {results['created']}.",
        f"Data: HMP, {results['data']['split']['windows']} windows, split {results['data']['split']['kind']}, seed {results['data']['split']['seed']}.",
        f"Command: `{results['command']}`.",
        f"Latency: invoke() only, {results['settings']['runs']} runs after {results['settings']['warmup']} warm-up, "
        f"{results['settings']['rounds']} interleaved rounds; median over rounds of p50 (and of mean).",
        "",
        "## One thread, XNNPACK on (default interpreter)",
        "",
        "| candidate | steps | recipe, LSTM units | Keras acc | variant | size KB | p50 us | mean us | acc | macro-F1 | float ops | in/out |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, cand in results["candidates"].items():
        for mode in cand["models"]:
            for v in VARIANTS:
                r = cand["models"].get(mode, {}).get(v)
                if r is None:
                    continue
                if "error" in r:
                    lines.append(f"| {name} | {cand['steps']} | {mode} | | {v} | | | | | | conversion failed | |")
                    continue
                lat = r.get("latency", {}).get("t1_xnn", {})
                fo = ", ".join(f"{k}x{n}" for k, n in r["float_ops"].items()) or "none"
                lines.append(
                    f"| {name} | {cand['steps']} | {mode} {cand['lstm_units']} | {100 * cand['keras']['accuracy']:.1f} | {v} | "
                    f"{r['size_bytes'] / 1024:.1f} | {lat.get('p50_us', float('nan')):.1f} | {lat.get('mean_us', float('nan')):.1f} | "
                    f"{100 * r['accuracy']:.1f} | {100 * r['macro_f1']:.1f} | {fo if v in ('int8', 'int16x8') else '-'} | "
                    f"{r['input_dtype']}/{r['output_dtype']} |"
                )
    lines += [
        "",
        "## Against the targets: int8 p50 <= 0.5x and size <= 0.30x float32, drop <= 1 point, full integer (one thread)",
        "",
        "| candidate | recipe | int8/f32 p50 | int8/f32 size | acc drop (pts) | all three met |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, cand in results["candidates"].items():
        for mode in cand["models"]:
            g = cand.get("targets", {}).get(mode)
            if g:
                lines.append(
                    f"| {name} | {mode} | {g['p50_ratio']:.2f} | {g['size_ratio']:.2f} | {g['acc_drop_points']:+.2f} | {'yes' if g['met'] else 'no'} |"
                )
    other = [
        ("t2_xnn", "two threads, XNNPACK on"),
        ("t1_noxnn", "one thread, XNNPACK off"),
        ("t1_latest", "one thread, XNNPACK latest features"),
    ]
    for key, title in other:
        rows = []
        for name, cand in results["candidates"].items():
            for mode in cand["models"]:
                for v in VARIANTS:
                    r = cand["models"].get(mode, {}).get(v, {})
                    lat = r.get("latency", {}).get(key)
                    if lat:
                        base = r["latency"].get("t1_xnn", {}).get("p50_us")
                        rows.append(f"| {name} | {mode} | {v} | {lat['p50_us']:.1f} | {base:.1f} |")
        if rows:
            lines += [
                "",
                f"## {title}",
                "",
                "| candidate | recipe | variant | p50 us | p50 us (1 thread, XNNPACK on) |",
                "|---|---|---|---:|---:|",
            ] + rows
    if results.get("predict_latency"):
        lines += [
            "",
            "## TFLiteModel.predict() p50 (quantize + reset + invoke + dequantize, one thread)",
            "",
            "| model | p50 us |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {v:.1f} |" for k, v in results["predict_latency"].items()]
    if results.get("profiles"):
        lines += ["", "## Per-op profiles (by op type)", ""]
        for key, prof in results["profiles"].items():
            lines += [
                f"### {key} (method {prof['method']}, whole model p50 {prof['whole_p50_us']:.1f} us, sum of rows {prof['sum_us']:.1f} us)",
                "",
                "| op | executor | count | us | share |",
                "|---|---|---:|---:|---:|",
            ]
            lines += [
                f"| {e['op']} | {e['executor']} | {e['count']} | {e['time_us']:.2f} | {100 * e['share']:.1f}% |"
                for e in prof["by_op"][:12]
            ]
            lines.append("")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- main


KEPT_CANDIDATES = "s24_l64,s6_l64,w_s6_l64,w_s6_l128,w_s3_l64,w_s3_l128"
REPRODUCE = "python research/int8_study.py --data ../shared/data/hmp/HMP --out /tmp/int8-study"
# --quick: the whole study on the product's default architecture, once, with few runs: a smoke test
# that every step (data, build, train, convert, time, score, report) still works, not a measurement.
QUICK: dict[str, Any] = {
    "candidates": "w_s3_l128",
    "recipes": "fused,projected_pt",
    "variants": "float32,int8",
    "epochs": 1,
    "patience": 1,
    "calibration_size": 32,
    "runs": 10,
    "warmup": 2,
    "rounds": 1,
    "no_extra_settings": True,
    "profile": "",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python research/int8_study.py",
        description="Study what makes the full-integer int8 CNN-LSTM fast on the real HMP data: sequence length "
        "before the LSTM, LSTM width, fused vs unrolled LSTM, int8 vs int16x8, threads, XNNPACK. Trains each "
        "candidate briefly (cached) with the product's model builder, converts every variant with the product's "
        "converter, and measures latency (interleaved, repeated), accuracy (through edge_har's TFLiteModel) and "
        "size. Writes int8_study.json and int8_study.md to --out.",
        epilog=f"The defaults reproduce benchmarks/results/int8_study-x86_64-20261201.md: {REPRODUCE}  "
        "(30-60 min on 2 cores; add --quick for a one-minute smoke run on any HMP-layout folder).",
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="HMP root (<root>/<Class>/<recording>.txt), e.g. ../shared/data/hmp/HMP",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder for the .tflite files, JSON and markdown"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "edge-har-int8-study-cache",
        help="trained weights are cached here and reused (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items() if not isinstance(v, bool))
        + ", --no-extra-settings, unless given explicitly",
    )
    parser.add_argument(
        "--candidates",
        default=KEPT_CANDIDATES,
        help="comma-separated names from: " + ", ".join(CANDIDATES) + " (default: %(default)s)",
    )
    parser.add_argument(
        "--recipes",
        default="fused,unrolled_zs,projected,projected_pt",
        help="conversion recipes (see Recipe): " + ", ".join(RECIPES) + " (default: %(default)s)",
    )
    parser.add_argument(
        "--variants",
        default="float32,dynamic_range,int8",
        help="variants, from " + ",".join(VARIANTS) + " (default: %(default)s)",
    )
    parser.add_argument("--epochs", type=int, default=10, help="maximum training epochs (default: %(default)s)")
    parser.add_argument(
        "--patience",
        type=int,
        default=3,
        help="early-stopping patience on validation loss; the best epoch is kept (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=42, help="split, training and calibration seed (default: %(default)s)"
    )
    parser.add_argument(
        "--calibration-size",
        type=int,
        default=300,
        help="representative windows for int8/int16x8 (default: %(default)s)",
    )
    parser.add_argument(
        "--runs", type=int, default=200, help="timed invoke() runs per job and round (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="untimed runs before each job's timed runs (default: %(default)s)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="interleaved repetitions of the whole latency sweep (default: %(default)s)",
    )
    parser.add_argument(
        "--no-extra-settings",
        action="store_true",
        help="time only 1 thread with XNNPACK on (skip 2 threads, XNNPACK off, latest features)",
    )
    parser.add_argument(
        "--extra-recipes",
        default="fused,projected_pt",
        help="recipes whose files are also timed with 2 threads, XNNPACK off and latest features (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        default="w_s6_l128",
        help="candidates whose float32/int8 files get per-op profiles ('' for none; default: %(default)s)",
    )
    parser.add_argument(
        "--skip-train", action="store_true", help="only use cached weights; fail for candidates without them"
    )
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    names = [n for n in args.candidates.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        print(f"error: unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}", file=sys.stderr)
        return 2
    modes = [m for m in args.recipes.split(",") if m]
    variants = [v for v in args.variants.split(",") if v]
    if not set(modes) <= set(RECIPES) or not set(variants) <= set(VARIANTS) or "float32" not in variants:
        print(
            "error: --recipes takes "
            + ",".join(RECIPES)
            + "; --variants takes "
            + ",".join(VARIANTS)
            + " and must include float32",
            file=sys.stderr,
        )
        return 2
    extra = {m for m in args.extra_recipes.split(",") if m}
    if not args.data.is_dir():
        print(f"error: --data {args.data}: not a folder", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    models_dir = args.out / "models"
    models_dir.mkdir(exist_ok=True)

    data = load_data(args.data, args.seed)
    log.info(
        "data: %s windows (%s), %d classes, loader %s",
        data.split["windows"],
        data.split["recordings"],
        len(data.labels),
        data.loader,
    )
    calib = calibration(data, args.calibration_size, args.seed)
    results: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python research/int8_study.py"] + list(argv if argv is not None else sys.argv[1:])),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": {
            "root": str(args.data),
            "labels": data.labels,
            "split": data.split,
            "fingerprint": data.fingerprint,
            "loader": data.loader,
            "preprocessing": data.pre.to_json(),
        },
        "candidates": {},
    }

    settings = TrainSettings(args.epochs, args.patience, args.batch_size, args.learning_rate, args.seed)
    jobs: list[Timed] = []
    for name in names:
        c = CANDIDATES[name]
        if args.skip_train:
            tag = settings.tag(c, data)
            if not (args.cache / f"{tag}.weights.h5").is_file():
                log.warning("%s: no cached weights, skipped", name)
                continue
        weights, record = train(c, data, args.cache, settings)
        cand: dict[str, Any] = {
            **c.describe(),
            "steps": c.steps(data.pre.window),
            "training": record,
            "keras": keras_accuracy(c, weights, data),
            "models": {},
        }
        log.info("%s: Keras test accuracy %.3f", name, cand["keras"]["accuracy"])
        for mode in modes:
            wanted = [
                v for v in variants if v != "int16x8" or mode in ("unrolled", "projected")
            ]  # int16x8: fused refuses
            converted = convert_all(c, weights, data, models_dir, calib, RECIPES[mode], wanted)
            cand["models"][mode] = {}
            for v, info in converted.items():
                if "error" in info:
                    cand["models"][mode][v] = info
                    continue
                path = Path(info["file"])
                entry = {**info, **inspect(path), **tflite_accuracy(path, data)}
                cand["models"][mode][v] = entry
                key = f"{name}/{mode}/{v}"
                jobs.append(Timed(key, path, 1, True))
                if not args.no_extra_settings and mode in extra and v in ("float32", "dynamic_range", "int8"):
                    jobs.append(Timed(key, path, 2, True))
                    jobs.append(Timed(key, path, 1, False))
                    if v in ("float32", "int8"):
                        jobs.append(Timed(key, path, 1, True, latest=True))
                log.info(
                    "%s: %d bytes, acc %.3f, float ops %s",
                    key,
                    entry["size_bytes"],
                    entry["accuracy"],
                    entry["float_ops"] or "none",
                )
        results["candidates"][name] = cand

    log.info("latency: %d jobs x %d rounds", len(jobs), args.rounds)
    measure_latency(jobs, data, args.rounds, args.warmup, args.runs, args.seed)
    for t in jobs:
        name, mode, v = t.key.split("/")
        slot = "t1_latest" if t.latest else f"t{t.threads}_{'xnn' if t.xnnpack else 'noxnn'}"
        results["candidates"][name]["models"][mode][v].setdefault("latency", {})[slot] = {
            "p50_us": float(np.median(t.p50)),
            "mean_us": float(np.median(t.mean)),
            "p50_rounds": [round(x, 2) for x in t.p50],
            "mean_rounds": [round(x, 2) for x in t.mean],
        }

    for name, cand in results["candidates"].items():
        cand["targets"] = {}
        for mode, models in cand["models"].items():
            f32, i8 = models.get("float32", {}), models.get("int8", {})
            if "latency" in f32 and "latency" in i8:
                p = i8["latency"]["t1_xnn"]["p50_us"] / f32["latency"]["t1_xnn"]["p50_us"]
                s = i8["size_bytes"] / f32["size_bytes"]
                d = 100 * (f32["accuracy"] - i8["accuracy"])
                full = not i8["float_ops"] and i8["input_dtype"] == "int8" and i8["output_dtype"] == "int8"
                cand["targets"][mode] = {
                    "p50_ratio": p,
                    "size_ratio": s,
                    "acc_drop_points": d,
                    "full_integer": full,
                    "met": p <= 0.5 and s <= 0.30 and d <= 1.0 and full,
                }

    results["predict_latency"] = {}
    for name in names:
        for mode in modes:
            for v in ("float32", "int8"):
                r = results["candidates"].get(name, {}).get("models", {}).get(mode, {}).get(v, {})
                if "file" in r:
                    results["predict_latency"][f"{name}/{mode}/{v}"] = predict_latency(Path(r["file"]), data, args.runs)

    results["profiles"] = {}
    for name in [n for n in args.profile.split(",") if n and n in results["candidates"]]:
        for mode in modes:
            for v in ("float32", "int8"):
                r = results["candidates"][name]["models"].get(mode, {}).get(v, {})
                if "file" not in r:
                    continue
                path = Path(r["file"])
                for method in ("auto",) if mode == "fused" else ("litert", "isolated"):
                    try:
                        rows = profile_ops.profile_ops(path, data.x_test[:8], runs=args.runs, method=method)
                    except profile_ops.ProfileError as exc:
                        log.warning("profile %s/%s/%s (%s): %s", name, mode, v, method, exc)
                        continue
                    whole = profile_ops.time_model(path, data.x_test[:8], runs=args.runs)
                    results["profiles"][f"{name}/{mode}/{v}/{rows[0].method}"] = {
                        "method": rows[0].method,
                        "whole_p50_us": whole["p50_us"],
                        "sum_us": sum(profile_ops._row_us(r_) for r_ in rows),
                        "by_op": profile_ops.summarise_by_op(rows),
                        "rows": [r_.to_json() for r_ in rows],
                    }

    results["machine"] = machine()
    (args.out / "int8_study.json").write_text(json.dumps(results, indent=2, default=str))
    (args.out / "int8_study.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
