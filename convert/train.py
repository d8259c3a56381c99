"""Training: device strategy, class weights, early stopping, best-checkpoint restore, history.

Strategy, in order:
* ``logical_cpus=N`` (a test hook): ``MirroredStrategy`` over N logical CPU
  devices, so the multi-replica code path runs on a machine without GPUs.
  Logical devices can only be set up before TensorFlow initialises its
  runtime, so this must be the first TensorFlow work in the process.
* several GPUs: ``MirroredStrategy`` over all of them, ``mixed_float16``.
* one GPU: that GPU, ``mixed_float16`` (the softmax stays float32, see
  ``edge_har.convert.models``).
* otherwise: the CPU, float32, deterministic ops.

The model that training returns may carry a mixed-precision policy; conversion
and saving go through ``edge_har.convert.models.float32_copy``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import numpy as np

from edge_har.convert.augment import AugmentConfig, Augmenter, batches, parse_augment
from edge_har.convert.augment import from_json as augment_from_json
from edge_har.convert.models import ModelConfig, build_from_config, import_tf
from edge_har.convert.quiet import debug_logging
from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

EPOCH_LOG_EVERY_S = 60.0  # off a terminal: at most one training progress line this often


class TrainingError(EdgeHarError, RuntimeError):
    """Training cannot start (bad data shapes, devices already initialised, ...)."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train; every field is a flag of ``edge-har convert`` and is recorded in the bundle."""

    # Measured on HMP (23k windows of 96x3, 2 shared cores): ~5 s per epoch at batch 128;
    # validation loss still falls after 30 epochs at lr 1e-3, so a larger rate and a
    # generous epoch cap with early stopping give the best model in a few minutes.
    epochs: int = 60
    batch_size: int | None = 128  # None: the caller picks it from the data size (convert-video does)
    patience: int = 10
    learning_rate: float = 3e-3
    seed: int = 42
    class_weights: bool = True
    logical_cpus: int | None = None  # test hook: MirroredStrategy over N logical CPUs
    mixed_precision: str = "auto"  # auto (on GPU) | on | off
    # Keras fit verbosity; None: Keras prints nothing unless the log level is DEBUG (then a line per epoch),
    # and training shows its own progress (a bar on a terminal, a log line a minute otherwise)
    verbose: int | None = None
    augment: AugmentConfig = AugmentConfig()  # sensor windows only (edge_har.convert.augment); off by default

    def __post_init__(self) -> None:
        if not isinstance(self.augment, AugmentConfig):  # read back from a bundle's training.config
            object.__setattr__(self, "augment", augment_from_json(self.augment))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs (default: %(default)s)")
    group.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size (default: %(default)s)")
    group.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help="stop after this many epochs without a lower validation loss; the best epoch's weights are kept (default: %(default)s)",
    )
    group.add_argument(
        "--learning-rate", type=float, default=d.learning_rate, help="Adam learning rate (default: %(default)s)"
    )
    group.add_argument("--no-class-weights", action="store_true", help="do not weight classes by inverse frequency")
    group.add_argument(
        "--mixed-precision",
        choices=("auto", "on", "off"),
        default=d.mixed_precision,
        help="mixed_float16 training: auto uses it on GPUs only (default: %(default)s)",
    )
    group.add_argument(
        "--logical-cpus",
        type=int,
        default=None,
        metavar="N",
        help="split the CPU into N logical devices and train with MirroredStrategy across them "
        "(exercises the multi-device path on a machine without GPUs; slower than plain CPU)",
    )


def add_augment_argument(parser: argparse.ArgumentParser) -> None:
    """``--augment``: on-the-fly augmentation of sensor windows (``edge_har.convert.augment``)."""
    from edge_har.convert.augment import HELP

    group = parser.add_argument_group("augmentation (sensor windows, training only)")
    group.add_argument("--augment", default="none", metavar="SPEC", help=HELP)


# A backbone trained from random weights (``--weights none``) needs a few hundred optimiser
# steps before its BatchNorm statistics and filters mean anything: MobileNetV2 from scratch on 4
# KTH clips got ~16 steps and predicted one class for everything, without a word.
MIN_SCRATCH_STEPS = 300


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps in one epoch (Keras runs the last, partial batch too)."""
    return max(1, -(-int(n_train) // int(batch_size)))


def warn_few_scratch_steps(steps: int, n_train: int, batch_size: int, what: str) -> bool:
    """Log a warning when a from-scratch backbone gets fewer than MIN_SCRATCH_STEPS steps; True if it did."""
    if steps >= MIN_SCRATCH_STEPS:
        return False
    log.warning(
        "the backbone trains from random weights but gets only %d optimiser steps %s (%d training windows, "
        "batch %d: %d steps/epoch); it needs a few hundred (>= %d) to learn anything and will likely predict one "
        "class for everything. Use pretrained weights (--weights imagenet|PATH, frozen), more data, a smaller "
        "--batch-size or more --epochs/--patience",
        steps,
        what,
        n_train,
        batch_size,
        steps_per_epoch(n_train, batch_size),
        MIN_SCRATCH_STEPS,
    )
    return True


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        learning_rate=args.learning_rate,
        seed=args.seed,
        class_weights=not args.no_class_weights,
        logical_cpus=args.logical_cpus,
        mixed_precision=args.mixed_precision,
        augment=parse_augment(getattr(args, "augment", None)),
    )


# ---------------------------------------------------------------- strategy


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    devices: tuple[str, ...]
    replicas: int
    mixed_precision: bool
    deterministic: bool

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "devices": list(self.devices)}


def select_strategy(config: TrainConfig) -> tuple[Any, StrategyInfo]:
    """Pick the distribution strategy and precision policy for this machine (see module doc)."""
    tf, keras = import_tf()
    if config.logical_cpus is not None and config.logical_cpus > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_visible_devices([], "GPU")
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(config.logical_cpus)]
            )
        except RuntimeError as exc:
            raise TrainingError(
                f"cannot split the CPU into {config.logical_cpus} logical devices: TensorFlow is already "
                f"initialised in this process ({exc}); --logical-cpus must be set before any TensorFlow work"
            ) from exc
        devices = tuple(d.name for d in tf.config.list_logical_devices("CPU"))
        strategy = tf.distribute.MirroredStrategy(devices=list(devices))
        mixed = config.mixed_precision == "on"
        info = StrategyInfo("MirroredStrategy", devices, strategy.num_replicas_in_sync, mixed, True)
    else:
        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised: leave it as it is
                pass
        mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and bool(gpus))
        if len(gpus) > 1:
            strategy = tf.distribute.MirroredStrategy()
            devices = tuple(strategy.extended.worker_devices)
            info = StrategyInfo("MirroredStrategy", devices, strategy.num_replicas_in_sync, mixed, False)
        elif gpus:
            strategy = tf.distribute.OneDeviceStrategy("/gpu:0")
            info = StrategyInfo("OneDeviceStrategy", ("/gpu:0",), 1, mixed, False)
        else:
            strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
            info = StrategyInfo("OneDeviceStrategy", ("/cpu:0",), 1, mixed, True)
    if info.deterministic:
        # Cheap on the CPU; on GPUs some kernels (cuDNN LSTM backprop) have no
        # deterministic version, so there the seeds give repeatability only.
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy("mixed_float16" if info.mixed_precision else "float32")
    return strategy, info


# ---------------------------------------------------------------- training


def balanced_class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """``n / (k * count_c)`` for the k classes present (scikit-learn's "balanced")."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes)
    present = counts > 0
    k = int(present.sum())
    total = float(counts.sum())
    return {int(c): (total / (k * counts[c]) if counts[c] else 1.0) for c in range(n_classes)}


@dataclass
class TrainResult:
    model: Any  # tf_keras.Model with the best epoch's weights (may be mixed precision)
    history: dict[str, Any]
    epochs_run: int
    best_epoch: int
    seconds: float
    strategy: StrategyInfo
    class_weights: dict[int, float] | None
    history_file: Path
    curves_file: Path | None
    extra: dict[str, Any] = field(default_factory=dict)


def _check_arrays(x: np.ndarray, y: np.ndarray, n_classes: int, what: str, any_rank: bool = False) -> None:
    if x.ndim != 3 and not (any_rank and x.ndim >= 2):
        raise TrainingError(f"{what} windows must have shape (n, window, channels); got {x.shape}")
    if len(x) != len(y):
        raise TrainingError(f"{what}: {len(x)} windows but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise TrainingError(f"{what} labels must be class indices 0..{n_classes - 1}")


def epoch_progress(keras: Any, epochs: int, monitor: str, stream: TextIO | None = None) -> Any:
    """A Keras callback showing training's progress without a line per epoch.

    On a terminal (``stream``, default stderr) a bar over the epochs with the watched loss; elsewhere
    an INFO line at most every :data:`EPOCH_LOG_EVERY_S` seconds, so a log file shows that a long
    training is alive without one line per epoch. Every epoch's figures go to DEBUG.
    """
    out = stream or sys.stderr
    try:
        terminal = bool(out.isatty())
    except (AttributeError, ValueError):
        terminal = False

    class EpochProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.started = self.last_log = time.monotonic()
            self.best: tuple[float, int] | None = None
            self.bar: Any = None
            if terminal:
                from tqdm import tqdm

                self.bar = tqdm(total=epochs, desc="training", unit="epoch", leave=False, file=out)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            figures = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float, np.number))}
            log.debug("epoch %d/%d: %s", epoch + 1, epochs, ", ".join(f"{k} {v:.4g}" for k, v in figures.items()))
            watched = figures.get(monitor)
            if watched is not None and (self.best is None or watched < self.best[0]):
                self.best = (watched, epoch + 1)
            best = f"best {monitor} {self.best[0]:.4f} at epoch {self.best[1]}" if self.best else ""
            if self.bar is not None:
                self.bar.set_postfix_str(best, refresh=False)
                self.bar.update(1)
                return
            now = time.monotonic()
            if now - self.last_log >= EPOCH_LOG_EVERY_S:
                self.last_log = now
                log.info("training: epoch %d of at most %d, %s, %.0f s", epoch + 1, epochs, best, now - self.started)

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            if self.bar is not None:
                self.bar.close()

    return EpochProgress()


def train_model(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    model_config: ModelConfig,
    config: TrainConfig,
    work_dir: str | Path,
    build_model: Callable[[], Any] | None = None,
    normalisation: tuple[Any, Any] | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train the CNN-LSTM on normalised windows and return it with the best epoch's weights.

    Early stopping and the checkpoint watch the validation loss; with no
    validation windows they fall back to the training loss (logged as a
    warning, since the "best" model is then simply the best-fitting one).
    With ``config.augment`` on, every epoch sees freshly augmented training
    windows (``edge_har.convert.augment``; ``normalisation``, the per-channel
    mean and std, lets the rotation turn the real axes); validation is never
    augmented. ``callbacks`` are added to training's own (``edge-har tune``
    adds the one that prunes a trial on its validation curve).
    """
    x_train = np.asarray(x_train, np.float32)
    x_val = np.asarray(x_val, np.float32)
    y_train = np.asarray(y_train, np.int64)
    y_val = np.asarray(y_val, np.int64)
    # build_model: a hook for other architectures (the video CNN-LSTM takes (n, T, H, W, 3) clips);
    # it is called inside the strategy scope, under the precision policy, instead of build_from_config.
    _check_arrays(x_train, y_train, n_classes, "training", any_rank=build_model is not None)
    if len(x_val):
        _check_arrays(x_val, y_val, n_classes, "validation", any_rank=build_model is not None)
    if len(x_train) == 0:
        raise TrainingError("no training windows")
    augment = config.augment
    if augment.enabled and (build_model is not None or x_train.ndim != 3):
        raise TrainingError("--augment transforms sensor windows (n, window, channels); this model's input is not one")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)

    tf, keras = import_tf()
    strategy, info = select_strategy(config)
    keras.utils.set_random_seed(config.seed)
    log.info(
        "training on %s (%d replica%s: %s)%s; %d training / %d validation windows",
        info.name,
        info.replicas,
        "" if info.replicas == 1 else "s",
        ", ".join(info.devices),
        ", mixed_float16" if info.mixed_precision else "",
        len(x_train),
        len(x_val),
    )
    try:
        with strategy.scope():
            model = (
                build_model()
                if build_model is not None
                else build_from_config(model_config, x_train.shape[1:], n_classes)
            )
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
                # mixup's labels are mixed one-hot rows, not class indices
                loss="categorical_crossentropy" if augment.mixup > 0 else "sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
    finally:
        # The policy was captured by the layers; later builds (conversion copies) get float32.
        keras.mixed_precision.set_global_policy("float32")

    monitor = "val_loss" if len(x_val) else "loss"
    if monitor == "loss":
        log.warning("no validation windows: early stopping and the best checkpoint watch the training loss")
    checkpoint = work / "best.weights.h5"
    # Keras's own lines (one per epoch, "Restoring model weights ...") only at DEBUG, as README says;
    # otherwise training reports through epoch_progress and the summary line at the end.
    verbose = config.verbose if config.verbose is not None else (2 if debug_logging() else 0)
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=monitor, patience=config.patience, restore_best_weights=True, verbose=1 if verbose else 0
    )
    all_callbacks = [
        early_stopping,
        # The best weights on disk too, so a crash late in a long run keeps them.
        keras.callbacks.ModelCheckpoint(str(checkpoint), monitor=monitor, save_best_only=True, save_weights_only=True),
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=0.5, patience=max(2, config.patience // 2), min_lr=1e-5
        ),
    ]
    if config.verbose is None and not verbose:
        all_callbacks.append(epoch_progress(keras, config.epochs, monitor))
    all_callbacks.extend(callbacks)
    weights = balanced_class_weights(y_train, n_classes) if config.class_weights else None
    batch_size = config.batch_size if config.batch_size is not None else 32  # (None: Keras's own default, 32)

    started = time.perf_counter()
    if augment.enabled:
        mean, std = normalisation if normalisation is not None else (None, None)
        augmenter = Augmenter(augment, x_train.shape[-1], mean, std)
        log.info("augmenting the training windows on the fly: %s", augment.to_json())
        y_val_fit = np.eye(n_classes, dtype=np.float32)[y_val] if augment.mixup > 0 else y_val
        fit = model.fit(
            batches(keras, x_train, y_train, batch_size, augmenter, n_classes, config.seed),
            validation_data=(x_val, y_val_fit) if len(x_val) else None,
            epochs=config.epochs,
            class_weight=weights,
            callbacks=all_callbacks,
            verbose=verbose,
        )
    else:
        fit = model.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val) if len(x_val) else None,
            epochs=config.epochs,
            batch_size=batch_size,
            shuffle=True,
            class_weight=weights,
            callbacks=all_callbacks,
            verbose=verbose,
        )
    seconds = time.perf_counter() - started
    if early_stopping.best_weights is not None:
        # Older Keras 2 releases restore only when stopping early; make a run that used
        # every epoch end on its best epoch too. (set_weights, not load_weights from the
        # checkpoint: loading h5 weights into MirroredStrategy variables fails.)
        model.set_weights(early_stopping.best_weights)

    history: dict[str, Any] = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    epochs_run = len(history.get("loss", []))
    watched = history.get(monitor, [])
    best_epoch = int(np.argmin(watched)) + 1 if watched else epochs_run
    history.update(
        {
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "monitor": monitor,
            "seconds": round(seconds, 2),
            "steps_run": epochs_run * steps_per_epoch(len(x_train), batch_size),
        }
    )
    history_file = work / "history.json"
    history_file.write_text(json.dumps(history, indent=2))
    curves_file: Path | None
    try:
        from edge_har.convert.plots import training_curves_png

        curves_file = training_curves_png(
            history, work / "training_curves.png", title=f"CNN-LSTM training (best epoch {best_epoch})"
        )
    except Exception as exc:  # a missing matplotlib must not lose a trained model
        log.warning("training curves not plotted: %s", exc)
        curves_file = None
    log.info(
        "trained %d epochs in %.1f s; best epoch %d (%s %.4f)",
        epochs_run,
        seconds,
        best_epoch,
        monitor,
        min(watched) if watched else float("nan"),
    )
    return TrainResult(
        model=model,
        history=history,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        seconds=seconds,
        strategy=info,
        class_weights=weights,
        history_file=history_file,
        curves_file=curves_file,
    )
