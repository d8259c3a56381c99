"""``edge-har tune``: an Optuna search for the int8 model that scores best on validation within a budget.

The objective is what a device gets: the **int8** model's macro-F1 on the **validation**
windows (the test windows stay unseen, for the conversion that follows), run through the
device's interpreter code (:class:`~edge_har.core.interpreter.TFLiteModel`). A budget bounds
the int8 file size, the multiply-accumulates per window and the int8 latency per window; a
trial outside it is kept in the study as **infeasible**: its value is ``-inf`` (so it never
ranks as best), its user attrs say ``feasible: false`` with the reasons, and the sampler
learns the constraint through ``constraints`` (Optuna's ``constraints_func``).

The data set is read, split, windowed and normalised once per worker process with the
conversion's own code (:class:`~edge_har.convert.pipeline.SensorPath`), so the windows a
trial sees are exactly the ones ``edge-har convert`` would; the calibration windows are
convert's too. Each trial trains with a callback that reports validation accuracy per epoch
and stops the trial when the pruner says so. The study lives in SQLite (a file beside the
output folder) or PostgreSQL, so several workers share it.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import optuna

from edge_har.convert.pipeline import ConvertOptions, SensorPath
from edge_har.convert.tune_space import (
    SearchSpace,
    configs_from_params,
    convert_flags,
    describe_params,
    flags_to_argv,
    sample_params,
)
from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

INFEASIBLE = float("-inf")
PRESET_FILE = "preset.json"
TABLE_FILE = "trials.md"
PLOT_FILE = "trials.png"
SUMMARY_FILE = "tune.json"
LATENCY_WARMUP = 5


class TuneError(EdgeHarError, ValueError):
    """The search cannot run as asked (storage, budget, data); the message names the option."""


# ---------------------------------------------------------------- budget


@dataclass(frozen=True)
class Budget:
    """Upper bounds a trial's int8 model must meet (None: unbounded)."""

    size_kb: float | None = None  # int8 .tflite size, kB of 1024 bytes (as convert's table shows it)
    macs: int | None = None  # multiply-accumulates per window
    latency_ms: float | None = None  # int8 latency per window through the interpreter, on this machine

    @property
    def bounded(self) -> bool:
        return any(v is not None for v in (self.size_kb, self.macs, self.latency_ms))

    def to_json(self) -> dict[str, Any]:
        return {"size_kb": self.size_kb, "macs": self.macs, "latency_ms": self.latency_ms}

    def describe(self) -> str:
        parts = []
        if self.size_kb is not None:
            parts.append(f"int8 size <= {self.size_kb:g} kB")
        if self.macs is not None:
            parts.append(f"MACs <= {self.macs:,}")
        if self.latency_ms is not None:
            parts.append(f"int8 latency <= {self.latency_ms:g} ms")
        return ", ".join(parts) or "no budget"

    def violations(self, size_bytes: int | None, macs: int | None, latency_ms: float | None) -> list[str]:
        """What ``size_bytes``/``macs``/``latency_ms`` exceed, in words; empty when within the budget."""
        out = []
        if self.size_kb is not None and size_bytes is not None and size_bytes / 1024 > self.size_kb:
            out.append(f"size {size_bytes / 1024:.1f} kB > {self.size_kb:g} kB")
        if self.macs is not None and macs is not None and macs > self.macs:
            out.append(f"MACs {macs:,} > {self.macs:,}")
        if self.latency_ms is not None and latency_ms is not None and latency_ms > self.latency_ms:
            out.append(f"latency {latency_ms:.3f} ms > {self.latency_ms:g} ms")
        return out

    def constraints(self, size_bytes: int | None, macs: int | None, latency_ms: float | None) -> dict[str, float]:
        """Optuna's constraint values (<= 0: met), relative to each bound, one per bound given and measured."""
        out = {}
        for name, bound, value in (
            ("size", None if self.size_kb is None else self.size_kb * 1024, size_bytes),
            ("macs", self.macs, macs),
            ("latency", self.latency_ms, latency_ms),
        ):
            if bound is not None and value is not None:
                out[name] = (float(value) - float(bound)) / max(float(bound), 1e-9)
        return out


def count_macs(model: Any) -> int | None:
    """Multiply-accumulates of one window through the Keras ``model`` (:mod:`edge_har.convert.macs`);
    None for a model it cannot count (the plot then falls back to size)."""
    from edge_har.convert.macs import model_macs

    macs = model_macs(model)
    return None if macs is None else int(macs)


# ---------------------------------------------------------------- options and data


@dataclass
class TuneOptions:
    """One worker's search: ``convert`` carries the data, windows, calibration and the fixed training settings
    (epochs, patience, seed); ``space`` and ``budget`` the search; ``out`` this worker's trial files."""

    convert: ConvertOptions
    space: SearchSpace
    budget: Budget = field(default_factory=Budget)
    trials: int | None = 20
    timeout_s: float | None = None
    storage: str | None = None  # None: SQLite beside ``out``
    study: str = "edge-har-tune"
    pruner: str = "median"  # median | none | below:ACCURACY
    latency_runs: int = 50
    protocol: str | None = None  # convert's --preset (a published protocol), recorded in the preset file

    @property
    def out(self) -> Path:
        return Path(self.convert.out)


@dataclass
class TuneData:
    """The windows every trial of a worker trains and is scored on, prepared once."""

    path: SensorPath

    @property
    def labels(self) -> list[str]:
        return list(self.path.labels)


def prepare_data(options: ConvertOptions, dataset: Any | None = None, split: Any | None = None) -> TuneData:
    """Split, window and normalise as ``convert`` does (``SensorPath.prepare``), with int8 calibration windows."""
    from edge_har.convert.quantize import VARIANTS

    path = SensorPath(options, dataset, split)
    path.prepare([VARIANTS["int8"]], {})
    if len(path.sets["val"].x) == 0:
        raise TuneError(
            "the validation split has no windows: the search scores each trial on them (give --val-fraction > 0, "
            "or --val-subjects)"
        )
    return TuneData(path)


def storage_url(storage: str | None, out: Path) -> str:
    """The study's SQLAlchemy URL: SQLite beside ``out`` by default; ``postgresql://`` on the installed driver."""
    if not storage:
        return f"sqlite:///{Path(f'{Path(out).resolve()}.optuna.sqlite3')}"
    scheme = storage.split("://", 1)[0] if "://" in storage else ""
    if scheme in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            return "postgresql+psycopg://" + storage.split("://", 1)[1]
        return "postgresql://" + storage.split("://", 1)[1]
    if scheme.startswith("postgresql+") or scheme.startswith("sqlite"):
        return storage
    raise TuneError(f"--storage {storage!r}: expected sqlite:///FILE or postgresql://USER@HOST:PORT/DATABASE")


def redacted(url: str) -> str:
    """``url`` without its password, for logs and files."""
    try:
        from sqlalchemy.engine import make_url

        return str(make_url(url).render_as_string(hide_password=True))
    except Exception:  # an unparsable URL is shown as given, it holds no password sqlalchemy could find
        return url


def make_pruner(spec: str) -> optuna.pruners.BasePruner:
    """``median`` (MedianPruner after 3 trials and 1 epoch), ``none``, or ``below:ACC`` (val accuracy floor)."""
    text = spec.strip().lower()
    if text == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if text == "none":
        return optuna.pruners.NopPruner()
    if text.startswith("below:"):
        try:
            floor = float(text.split(":", 1)[1])
        except ValueError:
            floor = float("nan")
        if not math.isfinite(floor) or floor < 0:
            raise TuneError(f"--pruner {spec!r}: below:ACC needs a validation accuracy >= 0, e.g. below:0.5")
        return optuna.pruners.ThresholdPruner(lower=floor)
    raise TuneError(f"--pruner {spec!r}: expected median, none or below:ACC")


def _constraints(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    """Optuna 4's ``constraints_func``: the values :func:`_set_constraints` recorded (none: feasible)."""
    return list((trial.user_attrs.get("constraints") or {"none": 0.0}).values())


def _set_constraints(trial: optuna.Trial, values: Mapping[str, float]) -> None:
    """Tell the sampler how far over the budget a trial is (``Trial.set_constraint`` from Optuna 5 on)."""
    trial.set_user_attr("constraints", dict(values))
    if hasattr(trial, "set_constraint"):
        for key, value in values.items():
            trial.set_constraint(key, value)


OPEN_ATTEMPTS = 5


def _racing(exc: BaseException) -> bool:
    """Whether ``exc`` is another worker creating the same tables or study at the same moment."""
    try:
        from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
    except ImportError:
        return False
    if isinstance(exc, (IntegrityError, ProgrammingError)):
        return True
    return isinstance(exc, OperationalError) and "locked" in str(exc)  # SQLite: another writer holds it


def open_study(options: TuneOptions) -> optuna.Study:
    """Create the study, or join it when another worker has (``load_if_exists``)."""
    url = storage_url(options.storage, options.out)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search logs its own line per trial
    if hasattr(optuna.trial.Trial, "set_constraint"):
        sampler = optuna.samplers.TPESampler()
    else:  # Optuna 4
        sampler = optuna.samplers.TPESampler(constraints_func=_constraints)
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)  # the default SQLite file sits beside it
    study = None
    for attempt in range(OPEN_ATTEMPTS):
        try:
            study = optuna.create_study(
                storage=url,
                study_name=options.study,
                direction="maximize",
                sampler=sampler,
                pruner=make_pruner(options.pruner),
                load_if_exists=True,
            )
            break
        except ImportError as exc:
            raise TuneError(f"--storage {redacted(url)}: its database driver is not installed ({exc})") from exc
        except Exception as exc:  # sqlalchemy's OperationalError and friends: one line naming the storage
            if isinstance(exc, TuneError):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if attempt + 1 < OPEN_ATTEMPTS and _racing(exc):
                # Workers starting together on a fresh database both create Optuna's tables; the
                # loser's CREATE fails on a duplicate. The tables exist now: open it again.
                log.info("--storage %s: %s; opening the study again", redacted(url), first)
                time.sleep(0.5 * (attempt + 1) + random.random())
                continue
            raise TuneError(f"--storage {redacted(url)}: cannot open the study: {first}") from exc
    assert study is not None
    recorded = study.user_attrs.get("budget")
    if recorded is None:
        study.set_user_attr("budget", options.budget.to_json())
    elif recorded != options.budget.to_json():
        log.warning(
            "study %s was started with budget %s; this worker's is %s (each trial is judged by its worker's)",
            options.study,
            recorded,
            options.budget.to_json(),
        )
    return study


# ---------------------------------------------------------------- one trial


def _pruning_callback(keras: Any, trial: optuna.Trial) -> Any:
    """Reports validation accuracy per epoch; raises ``optuna.TrialPruned`` when the pruner stops the trial."""

    class PruneOnValidation(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.curve: list[float] = []

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            value = (logs or {}).get("val_accuracy")
            if value is None:
                return
            self.curve.append(float(value))
            trial.report(float(value), epoch)
            trial.set_user_attr("val_accuracy_curve", list(self.curve))
            if trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", epoch + 1)
                raise optuna.TrialPruned(f"validation accuracy {float(value):.4f} at epoch {epoch + 1}")

    return PruneOnValidation()


def _fit(data: TuneData, model_config: Any, config: Any, trial: optuna.Trial, work: Path) -> Any:
    """Train one trial's model with convert's own ``train_model`` plus the pruning callback; the best epoch's model."""
    from edge_har.convert.models import import_tf
    from edge_har.convert.train import train_model

    sets = data.path.sets
    _, keras = import_tf()
    result = train_model(
        sets["train"].x,
        sets["train"].y,
        sets["val"].x,
        sets["val"].y,
        len(data.labels),
        model_config,
        config,
        work,
        normalisation=(data.path.pre.mean, data.path.pre.std),
        callbacks=[_pruning_callback(keras, trial)],
    )
    return result.model


def measure_latency_ms(model: Any, windows: np.ndarray, runs: int) -> float:
    """Median milliseconds per window of ``model.predict`` (a TFLiteModel), after a short warm-up.

    The benchmarks' own loop (:func:`edge_har.core.timing.time_calls`), so a budget set from a
    ``bench latency`` figure is measured the same way.
    """
    from edge_har.core.timing import time_calls

    seconds = time_calls(model.predict, windows, warmup=min(LATENCY_WARMUP, len(windows)), runs=max(1, runs))
    return 1000.0 * float(np.median(seconds))


def run_trial(trial: optuna.Trial, data: TuneData, options: TuneOptions) -> float:
    """Sample, train (pruned on the validation curve), convert to int8, score on validation, check the budget."""
    from edge_har.convert.evaluate import evaluate_model
    from edge_har.convert.models import build_from_config, import_tf, static_batch_copy
    from edge_har.convert.quantize import VARIANTS, convert_variants
    from edge_har.core.interpreter import TFLiteModel

    params = sample_params(trial, options.space)
    model_config, train_config, augment = configs_from_params(params, options.convert.train)
    flags = convert_flags(model_config, train_config, augment)
    trial.set_user_attr("flags", flags)
    trial.set_user_attr("params_line", describe_params(params))
    trial.set_user_attr("worker_out", str(options.out.resolve()))
    budget = options.budget
    _, keras = import_tf()
    keras.backend.clear_session()
    window_shape = data.path.sets["train"].x.shape[1:]

    macs = count_macs(build_from_config(model_config, window_shape, len(data.labels)))
    keras.backend.clear_session()
    if macs is not None:
        trial.set_user_attr("macs", macs)
        over = budget.violations(None, macs, None)
        if over:  # known before training: no need to train a model that cannot be used
            trial.set_user_attr("feasible", False)
            trial.set_user_attr("violations", over)
            _set_constraints(trial, budget.constraints(None, macs, None))
            return INFEASIBLE

    folder = options.out / "trials" / f"trial-{trial.number:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = _fit(data, model_config, train_config, trial, folder / "training")
    trial.set_user_attr("train_seconds", round(time.perf_counter() - started, 2))
    static = static_batch_copy(model, model_config)
    converted = convert_variants(static, [VARIANTS["int8"]], data.path.calibration)[0]
    tflite = folder / "model_int8.tflite"
    tflite.write_bytes(converted.content)
    size = len(converted.content)

    interpreter = TFLiteModel(tflite, backend=options.convert.evaluate_backend, num_threads=1)
    val = data.path.sets["val"]
    evaluation = evaluate_model(interpreter, val.x, val.y, data.labels, "int8", progress=False)
    latency = measure_latency_ms(interpreter, val.x, options.latency_runs)
    f1 = float(evaluation.report["macro_f1"])
    over = budget.violations(size, macs, latency)
    attrs = {
        "int8_val_macro_f1": f1,
        "int8_val_accuracy": float(evaluation.report["accuracy"]),
        "int8_size_bytes": size,
        "int8_latency_ms": round(latency, 4),
        "macs": macs,
        "feasible": not over,
        "violations": over,
    }
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    _set_constraints(trial, budget.constraints(size, macs, latency))
    (folder / "trial.json").write_text(json.dumps({"number": trial.number, "params": params, **attrs}, indent=2))
    keras.backend.clear_session()
    return f1 if not over else INFEASIBLE


# ---------------------------------------------------------------- progress, table, plot, preset


def _state(trial: optuna.trial.FrozenTrial) -> str:
    state = trial.state
    if state == optuna.trial.TrialState.COMPLETE:
        return "ok" if trial.user_attrs.get("feasible", True) else "infeasible"
    return {
        optuna.trial.TrialState.PRUNED: "pruned",
        optuna.trial.TrialState.FAIL: "failed",
        optuna.trial.TrialState.RUNNING: "running",
        optuna.trial.TrialState.WAITING: "waiting",
    }.get(state, str(state.name).lower())


def _fmt(value: Any, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def trial_line(trial: optuna.trial.FrozenTrial) -> str:
    """One trial in one line: number, parameters, int8 val macro-F1, size/MACs/latency, and its state."""
    a = trial.user_attrs
    state = _state(trial)
    if state == "pruned":
        verdict = f"pruned at epoch {a.get('pruned_at_epoch', '?')}"
    elif state == "infeasible":
        verdict = "infeasible: " + "; ".join(a.get("violations") or [])
    else:
        verdict = state
    size = a.get("int8_size_bytes")
    return (
        f"trial {trial.number}: {a.get('params_line', '')} | int8 val macro-F1 "
        f"{_fmt(a.get('int8_val_macro_f1'), '.4f')} | {_fmt(None if size is None else size / 1024, '.1f')} kB, "
        f"MACs {_fmt(a.get('macs'), ',')}, {_fmt(a.get('int8_latency_ms'), '.3f')} ms | {verdict}"
    )


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    log.info("%s", trial_line(trial))


def ranked(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Best first: within-budget trials by int8 val macro-F1, then infeasible ones (by F1), pruned, the rest."""
    order = {"ok": 0, "infeasible": 1, "pruned": 2, "running": 3, "waiting": 4, "failed": 5}

    def key(t: optuna.trial.FrozenTrial) -> tuple[int, float, int]:
        f1 = t.user_attrs.get("int8_val_macro_f1")
        return order.get(_state(t), 6), -(f1 if isinstance(f1, (int, float)) else -1.0), t.number

    return sorted(trials, key=key)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The completed within-budget trial with the highest int8 val macro-F1, or None."""
    top = ranked(study.get_trials(deepcopy=False))
    return top[0] if top and _state(top[0]) == "ok" else None


def trials_table(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    """The study's trials as a Markdown table, best first."""
    lines = [
        "| rank | trial | state | int8 val macro-F1 | int8 size kB | MACs | int8 ms | params |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for rank, t in enumerate(ranked(trials), 1):
        a = t.user_attrs
        size = a.get("int8_size_bytes")
        state = _state(t)
        if state == "pruned":
            state = f"pruned (epoch {a.get('pruned_at_epoch', '?')})"
        elif state == "infeasible":
            state = "infeasible: " + "; ".join(a.get("violations") or [])
        lines.append(
            f"| {rank} | {t.number} | {state} | {_fmt(a.get('int8_val_macro_f1'), '.4f')} | "
            f"{_fmt(None if size is None else size / 1024, '.1f')} | {_fmt(a.get('macs'), ',')} | "
            f"{_fmt(a.get('int8_latency_ms'), '.3f')} | {a.get('params_line', '')} |"
        )
    return "\n".join(lines)


def plot_trials(trials: Sequence[optuna.trial.FrozenTrial], budget: Budget, path: Path) -> Path:
    """int8 val macro-F1 against MACs (size where MACs are not counted) for every trial, the budget drawn.

    A trial with no int8 score (pruned, or over the MACs budget before training) sits on the
    x axis at its MACs, so the plot shows where the search went as well as what scored.
    """
    from edge_har.convert.plots import pyplot

    plt = pyplot()
    use_macs = any(t.user_attrs.get("macs") is not None for t in trials)
    key, scale = ("macs", 1.0) if use_macs else ("int8_size_bytes", 1 / 1024)
    bound = (None if budget.macs is None else float(budget.macs)) if use_macs else budget.size_kb
    placed = [t for t in trials if t.user_attrs.get(key) is not None]
    scored = [t for t in placed if t.user_attrs.get("int8_val_macro_f1") is not None]
    unscored = [t for t in placed if t.user_attrs.get("int8_val_macro_f1") is None]

    def x_of(t: optuna.trial.FrozenTrial) -> float:
        return float(t.user_attrs[key]) * scale

    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        groups = {"ok": ("within budget", "o", "tab:blue"), "infeasible": ("over budget", "x", "tab:red")}
        for state, (label, marker, color) in groups.items():
            points = [t for t in scored if _state(t) == state]
            if points:
                ax.scatter(
                    [x_of(t) for t in points],
                    [t.user_attrs["int8_val_macro_f1"] for t in points],
                    marker=marker,
                    color=color,
                    label=f"{label} ({len(points)})",
                )
                for t in points:
                    ax.annotate(str(t.number), (x_of(t), t.user_attrs["int8_val_macro_f1"]), fontsize=7)
        if unscored:
            ax.scatter(
                [x_of(t) for t in unscored],
                [0.0] * len(unscored),
                marker="v",
                color="tab:gray",
                label=f"not scored: pruned, or over the MACs budget before training ({len(unscored)})",
            )
        best = next((t for t in ranked(scored) if _state(t) == "ok"), None)
        if best is not None:
            ax.scatter(
                [x_of(best)],
                [best.user_attrs["int8_val_macro_f1"]],
                marker="*",
                s=220,
                color="gold",
                edgecolor="black",
                label=f"best: trial {best.number}",
                zorder=3,
            )
        if bound is not None:
            unit = "" if use_macs else " kB"
            ax.axvline(float(bound), color="tab:red", linestyle="--", label=f"budget {bound:g}{unit}")
        title = f"int8 validation macro-F1 of {len(trials)} trials"
        if len(trials) > len(placed):
            title += f" ({len(trials) - len(placed)} failed or unmeasured, not shown)"
        if budget.latency_ms is not None:
            title += f"; latency budget {budget.latency_ms:g} ms"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("MACs per window" if use_macs else "int8 model size (kB)")
        if use_macs:
            ax.set_xscale("log")
        ax.set_ylabel("int8 val macro-F1")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(True, alpha=0.3)
        if placed or bound is not None:
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def window_flags(options: ConvertOptions, protocol: str | None = None) -> dict[str, Any]:
    """The windowing and calibration flags the trials ran with, as convert flags."""
    flags: dict[str, Any] = {}
    if protocol:
        flags["preset"] = protocol
    flags["window"] = str(options.window)
    flags["stride"] = str(options.stride)
    if options.train_stride is not None:
        flags["train_stride"] = str(options.train_stride)
    if options.target_rate is not None:
        flags["target_rate"] = repr(float(options.target_rate))
    if options.skip_short:
        flags["skip_short"] = True
    flags["calibration_size"] = str(options.calibration_size)
    return flags


def preset_document(trial: optuna.trial.FrozenTrial, options: TuneOptions, storage: str) -> dict[str, Any]:
    """The best trial as convert flags: ``flags`` (dest -> text, as convert's PRESETS) and ``argv``."""
    a = trial.user_attrs
    flags = {**window_flags(options.convert, options.protocol), **dict(a.get("flags") or {})}
    return {
        "about": "edge-har tune: the best trial's convert flags; add --data (and the data-set flags) and --out",
        "study": options.study,
        "storage": redacted(storage),
        "trial": trial.number,
        "scores": {
            "int8_val_macro_f1": a.get("int8_val_macro_f1"),
            "int8_val_accuracy": a.get("int8_val_accuracy"),
            "int8_size_bytes": a.get("int8_size_bytes"),
            "macs": a.get("macs"),
            "int8_latency_ms": a.get("int8_latency_ms"),
        },
        "budget": options.budget.to_json(),
        "flags": flags,
        "argv": flags_to_argv(flags),
    }


def write_preset(document: Mapping[str, Any], path: Path) -> Path:
    """JSON, or YAML when ``path`` ends in .yaml/.yml."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        path.write_text(yaml.safe_dump(dict(document), sort_keys=False))
    else:
        path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def read_preset(path: Path) -> dict[str, Any]:
    text = Path(path).read_text()
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        import yaml

        return dict(yaml.safe_load(text))
    return dict(json.loads(text))


# ---------------------------------------------------------------- the search


@dataclass
class TuneResult:
    study: optuna.Study
    best: optuna.trial.FrozenTrial | None
    storage: str
    table: str
    files: dict[str, Path]

    def infeasible_message(self, budget: Budget) -> str:
        """Why no trial is usable, with the smallest figures seen, so the budget can be set again."""
        trials = self.study.get_trials(deepcopy=False)
        scored = [t for t in trials if t.user_attrs.get("int8_size_bytes") is not None]
        seen = []
        if scored:
            seen.append(f"smallest int8 size {min(t.user_attrs['int8_size_bytes'] for t in scored) / 1024:.1f} kB")
            lat = [t.user_attrs["int8_latency_ms"] for t in scored if t.user_attrs.get("int8_latency_ms") is not None]
            if lat:
                seen.append(f"fastest {min(lat):.3f} ms")
        macs = [t.user_attrs["macs"] for t in trials if t.user_attrs.get("macs") is not None]
        if macs:
            seen.append(f"fewest MACs {min(macs):,}")
        counts = {s: sum(1 for t in trials if _state(t) == s) for s in ("infeasible", "pruned", "failed")}
        if not budget.bounded:
            return (
                f"no trial of study {self.study.study_name} completed: {len(trials)} trials, {counts['pruned']} "
                f"pruned, {counts['failed']} failed; run more --trials, or a gentler --pruner"
            )
        return (
            f"no trial of study {self.study.study_name} meets the budget ({budget.describe()}): "
            f"{len(trials)} trials, {counts['infeasible']} over budget, {counts['pruned']} pruned, "
            f"{counts['failed']} failed" + (f"; {', '.join(seen)}" if seen else "") + "; loosen the budget, "
            "narrow --widths or run more --trials"
        )


def run_tune(options: TuneOptions, dataset: Any | None = None, split: Any | None = None) -> TuneResult:
    """Run this worker's trials into the (shared) study; write the table, plot and best preset under ``out``."""
    from edge_har.convert.quantize import CalibrationError, ConversionError
    from edge_har.convert.train import TrainingError
    from edge_har.core.interpreter import InterpreterError

    url = storage_url(options.storage, options.out)
    data = prepare_data(options.convert, dataset, split)
    if options.budget.macs is not None:
        from edge_har.convert.models import build_from_config

        probe = build_from_config(options.convert.model, data.path.sets["train"].x.shape[1:], len(data.labels))
        if count_macs(probe) is None:
            raise TuneError("--budget-macs: this build does not count MACs (edge_har.convert.tune.count_macs)")
    study = open_study(options)
    options.out.mkdir(parents=True, exist_ok=True)
    log.info(
        "tuning study %s in %s: %s trials%s, budget: %s; %d train / %d validation windows",
        options.study,
        redacted(url),
        options.trials if options.trials is not None else "unlimited",
        "" if options.timeout_s is None else f" within {options.timeout_s:g} s",
        options.budget.describe(),
        len(data.path.sets["train"].x),
        len(data.path.sets["val"].x),
    )
    study.optimize(
        lambda trial: run_trial(trial, data, options),
        n_trials=options.trials,
        timeout=options.timeout_s,
        callbacks=[_log_trial],
        # a configuration the converter or trainer refuses is one failed trial, not the end of the search
        catch=(ConversionError, CalibrationError, TrainingError, InterpreterError, ValueError),
        gc_after_trial=True,
    )
    trials = study.get_trials(deepcopy=False)
    table = trials_table(trials)
    files = {"table": options.out / TABLE_FILE, "plot": options.out / PLOT_FILE}
    files["table"].write_text(table + "\n")
    plot_trials(trials, options.budget, files["plot"])
    best = best_trial(study)
    summary: dict[str, Any] = {
        "study": options.study,
        "storage": redacted(url),
        "budget": options.budget.to_json(),
        "trials": len(trials),
        "best_trial": None if best is None else best.number,
    }
    if best is not None:
        files["preset"] = write_preset(preset_document(best, options, url), options.out / PRESET_FILE)
        summary["preset"] = str(files["preset"])
    (options.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return TuneResult(study, best, url, table, files)
