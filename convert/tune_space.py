"""The search space of ``edge-har tune``: one trial's sampled values -> convert's model and training configs.

A trial's parameters are plain values (a family name, a width factor, a kernel size, ...)
so that Optuna's samplers can model them; :func:`configs_from_params` turns them into the
:class:`~edge_har.convert.models.ModelConfig`, :class:`~edge_har.convert.train.TrainConfig`
and ``--augment`` text that ``edge-har convert`` would build from the same flags, and
:func:`convert_flags` writes those flags back, so the best trial becomes a set of convert
flags with nothing lost in between. Nothing here imports TensorFlow or Optuna at module import.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from edge_har.convert.augment import AugmentConfig, parse_augment
from edge_har.convert.models import ModelConfig
from edge_har.convert.train import TrainConfig

# The full-width sizes a width factor scales: the CNN-LSTM's defaults (ModelConfig), one filter count
# per convolution block, and the LSTM's units.
BASE_FILTERS: tuple[int, ...] = (64, 128, 128)
BASE_LSTM_UNITS = 128
MIN_WIDTH = 4  # no layer narrower than this, whatever the factor
DEFAULT_WIDTHS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
KERNEL_SIZES: tuple[int, ...] = (3, 5, 7)
POOL_SIZES: tuple[int, ...] = (2, 3)
BATCH_SIZES: tuple[int, ...] = (32, 64, 128)
LEARNING_RATES = (3e-4, 1e-2)  # sampled log-uniformly
# ``--augment`` choices: off, convert's ``default``, or strengths sampled per transform ("custom").
AUGMENT_CHOICES: tuple[str, ...] = ("none", "default", "custom")
CUSTOM_AUGMENT_LIMITS: dict[str, tuple[float, float]] = {
    "jitter": (0.0, 0.1),
    "scale": (0.0, 0.2),
    "rotate": (0.0, 30.0),
}


@dataclass(frozen=True)
class SearchSpace:
    """What a trial may pick from; ``edge-har tune --families/--widths`` narrow it."""

    families: tuple[str, ...]
    widths: tuple[float, ...] = DEFAULT_WIDTHS
    max_blocks: int = 3
    augment: tuple[str, ...] = AUGMENT_CHOICES

    def __post_init__(self) -> None:
        from edge_har.convert.families import FAMILIES

        unknown = [f for f in self.families if f not in FAMILIES]
        if not self.families or unknown:
            raise ValueError(f"unknown model family {', '.join(unknown) or '(none)'}; known: {', '.join(FAMILIES)}")
        if not self.widths or any(not 0 < w <= 4 for w in self.widths):
            raise ValueError(f"width factors must be in (0, 4], got {','.join(map(str, self.widths)) or '(none)'}")
        if not 1 <= self.max_blocks <= len(BASE_FILTERS):
            raise ValueError(f"max_blocks must be 1..{len(BASE_FILTERS)}, got {self.max_blocks}")


def default_space() -> SearchSpace:
    from edge_har.convert.families import FAMILIES

    return SearchSpace(families=tuple(FAMILIES))


def sample_params(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Ask ``trial`` (an ``optuna.Trial``, or a ``FixedTrial``) for one point of ``space``.

    The names are stable (they are the study's parameter names, shared by every worker);
    a conditional parameter (the custom augmentation strengths) is asked only when used.
    """
    params: dict[str, Any] = {
        "family": trial.suggest_categorical("family", list(space.families)),
        "width": trial.suggest_categorical("width", list(space.widths)),
        "blocks": trial.suggest_int("blocks", 1, space.max_blocks),
        "kernel_size": trial.suggest_categorical("kernel_size", list(KERNEL_SIZES)),
        "pool_size": trial.suggest_categorical("pool_size", list(POOL_SIZES)),
        "lstm_layers": trial.suggest_int("lstm_layers", 1, 2),
        "conv_dropout": trial.suggest_float("conv_dropout", 0.0, 0.3, step=0.05),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5, step=0.05),
        "learning_rate": trial.suggest_float("learning_rate", *LEARNING_RATES, log=True),
        "batch_size": trial.suggest_categorical("batch_size", list(BATCH_SIZES)),
        "augment": trial.suggest_categorical("augment", list(space.augment)),
    }
    if params["augment"] == "custom":
        for key, (low, high) in CUSTOM_AUGMENT_LIMITS.items():
            step = 1.0 if key == "rotate" else 0.01
            params[f"augment_{key}"] = trial.suggest_float(f"augment_{key}", low, high, step=step)
    return params


def _scaled(base: int, width: float) -> int:
    return max(MIN_WIDTH, int(round(base * width)))


def augment_spec(params: Mapping[str, Any]) -> str:
    """The ``--augment`` text of a trial's parameters (``none``, ``default`` or ``key=value,...``)."""
    choice = str(params.get("augment", "none"))
    if choice != "custom":
        return choice
    parts = [f"{key}={float(params[f'augment_{key}']):g}" for key in CUSTOM_AUGMENT_LIMITS]
    spec = ",".join(p for p in parts if not p.endswith("=0"))
    return spec or "none"


def configs_from_params(params: Mapping[str, Any], base: TrainConfig) -> tuple[ModelConfig, TrainConfig, str]:
    """(model config, training config, ``--augment`` text) of a trial; ``base`` gives epochs, patience, seed."""
    width = float(params["width"])
    filters = tuple(_scaled(f, width) for f in BASE_FILTERS[: int(params["blocks"])])
    units = _scaled(BASE_LSTM_UNITS, width)
    model = ModelConfig(
        family=str(params["family"]),
        conv_filters=filters,
        kernel_size=int(params["kernel_size"]),
        pool_size=int(params["pool_size"]),
        conv_dropout=float(params["conv_dropout"]),
        lstm_units=(units,) * int(params["lstm_layers"]),
        dropout=float(params["dropout"]),
    )
    spec = augment_spec(params)
    augment: AugmentConfig = parse_augment(spec)
    train = replace(
        base, learning_rate=float(params["learning_rate"]), batch_size=int(params["batch_size"]), augment=augment
    )
    return model, train, spec


def _join(values: Sequence[int]) -> str:
    return ",".join(str(int(v)) for v in values)


def convert_flags(model: ModelConfig, train: TrainConfig, augment: str) -> dict[str, Any]:
    """The model and training flags of ``edge-har convert`` that rebuild ``model`` and ``train``.

    Keys are argparse dests, values the text a user would type (``True`` for a switch),
    as :data:`edge_har.convert.cli.PRESETS` holds them.
    """
    flags: dict[str, Any] = {
        "family": model.family,
        "conv_filters": _join(model.conv_filters),
        "kernel_size": str(model.kernel_size),
        "pool_size": str(model.pool_size),
        "conv_dropout": repr(float(model.conv_dropout)),
        "lstm_units": _join(model.lstm_units),
        "dropout": repr(float(model.dropout)),
        "lstm_export": model.lstm_export,
        "epochs": str(train.epochs),
        "batch_size": str(train.batch_size),
        "patience": str(train.patience),
        "learning_rate": repr(float(train.learning_rate)),
        "seed": str(train.seed),
        "augment": augment,
    }
    if model.bidirectional:
        flags["bidirectional"] = True
    if not model.batch_norm:
        flags["no_batch_norm"] = True
    if model.input_noise:
        flags["input_noise"] = repr(float(model.input_noise))
    if not train.class_weights:
        flags["no_class_weights"] = True
    return flags


def flags_to_argv(flags: Mapping[str, Any]) -> list[str]:
    """``{"kernel_size": "5", "skip_short": True}`` -> ``["--kernel-size", "5", "--skip-short"]``."""
    argv: list[str] = []
    for dest, value in flags.items():
        if value is None or value is False:
            continue
        argv.append("--" + dest.replace("_", "-"))
        if value is not True:
            argv.append(",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value))
    return argv


def describe_params(params: Mapping[str, Any]) -> str:
    """A trial's parameters in one short line (the progress line and the table)."""
    parts = [
        str(params.get("family", "?")),
        f"w{params.get('width', '?')}",
        f"b{params.get('blocks', '?')}",
        f"k{params.get('kernel_size', '?')}",
        f"p{params.get('pool_size', '?')}",
        f"l{params.get('lstm_layers', '?')}",
        f"do{float(params.get('conv_dropout', 0)):.2f}/{float(params.get('dropout', 0)):.2f}",
        f"lr{float(params.get('learning_rate', 0)):.2g}",
        f"bs{params.get('batch_size', '?')}",
        f"aug:{augment_spec(params) if 'augment' in params else '?'}",
    ]
    return " ".join(parts)
