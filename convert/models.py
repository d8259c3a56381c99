"""The CNN-LSTM and its configuration.

The CNN-LSTM is the default of several model families (``ModelConfig.family``,
``--family``); the others live in :mod:`edge_har.convert.families`, one module
each, and follow everything said here about ``tf_keras``, the static-batch copy
and the unrolled LSTM.

The model is built with ``tf_keras`` (Keras 2), not Keras 3: only Keras 2's LSTM
converts to TFLite's fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op, and full-integer
conversion of the ``WHILE`` loop Keras 3 produces crashes the converter. For the
same reason conversion starts from a copy of the trained model with a static
batch of 1 (:func:`static_batch_copy`).

The model trains with the ordinary LSTM; the copy that is converted writes the
LSTM out step by step (``lstm_export="unrolled"``, the default,
:mod:`edge_har.convert.unrolled_lstm`) so that XNNPACK runs it in int8, or keeps the fused
op (``"fused"``), whose int8 kernel is TFLite's slow reference path.

TensorFlow is imported lazily (:func:`import_tf`), never at module import, so
``edge-har --help`` stays fast and works on a device without TensorFlow.

Every architecture knob lives in :class:`ModelConfig`, is a CLI flag
(:func:`add_model_arguments`) and is recorded in ``bundle.json``; studies of
int8 speed (how far the convolutions shorten the sequence, LSTM width, ...)
change the model through this one object.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


def import_tf() -> tuple[Any, Any]:
    """Import ``tensorflow`` and ``tf_keras`` the one way this project needs them.

    ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first imported so
    that ``tf.keras`` inside TensorFlow (the converter included) is Keras 2, the
    same Keras as ``tf_keras``.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras

    return tf, tf_keras


def _int_tuple(text: str) -> tuple[int, ...]:
    """Parse ``"32,64"`` (or ``""`` for none) into a tuple of positive ints."""
    text = text.strip()
    if not text or text.lower() == "none":
        return ()
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 32,64; got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every value must be >= 1; got {text!r}")
    return values


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1); got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1); got {text!r}")
    return value


LSTM_EXPORTS: tuple[str, ...] = ("unrolled", "fused")
DEFAULT_FAMILY = "cnn-lstm"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the sensor model; every field is a ``--flag`` of ``edge-har convert``.

    ``family`` picks the architecture (:data:`edge_har.convert.families.FAMILIES`:
    ``cnn-lstm``, the default and the one described below, ``conv2d-lstm``,
    ``deepconvlstm``, ``tinyhar``); each family's description says which of
    the other fields it reads and how. A bundle written before families
    existed has no ``family`` key and reads back as ``cnn-lstm``.

    Each entry of ``conv_filters`` is one block: Conv1D(filters, kernel_size,
    "same", ReLU) -> BatchNorm -> MaxPool(pool_size) -> Dropout(conv_dropout).
    The pooling shortens the sequence the LSTM walks by ``pool_size`` per block,
    which is what sets LSTM cost (the LSTM runs step by step). A
    ``pool_size`` of 1 disables pooling.

    ``lstm_export`` only changes the converted graph, never the weights:
    ``unrolled`` (per-step FULLY_CONNECTED/LOGISTIC/TANH/MUL/ADD, which XNNPACK
    runs in int8) or ``fused`` (one UNIDIRECTIONAL_SEQUENCE_LSTM op).

    The defaults come from the int8 study (``research/int8_study.py``,
    summarised in ``benchmarks/README.md``): three wide convolution blocks that
    pool 3x each turn a 3 s window into 3 one-second feature vectors for the
    LSTM. On HMP that was the most accurate candidate, and the one where int8
    gains most over float32 (most of the work is convolution, which XNNPACK
    runs about 4x faster in int8).
    """

    conv_filters: tuple[int, ...] = (64, 128, 128)
    kernel_size: int = 5
    pool_size: int = 3
    conv_dropout: float = 0.1
    lstm_units: tuple[int, ...] = (128,)
    bidirectional: bool = False
    dropout: float = 0.3
    batch_norm: bool = True
    input_noise: float = 0.0  # std of Gaussian noise added to the (normalised) input while training only
    lstm_export: str = "unrolled"
    family: str = DEFAULT_FAMILY  # which architecture the fields build (edge_har.convert.families)

    def __post_init__(self) -> None:
        from edge_har.convert.families import FAMILIES

        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}; known: {', '.join(FAMILIES)}")
        if self.lstm_export not in LSTM_EXPORTS:
            raise ValueError(f"lstm_export must be one of {', '.join(LSTM_EXPORTS)}, got {self.lstm_export!r}")
        if not self.lstm_units:
            raise ValueError("lstm_units must name at least one LSTM layer (this is a CNN-LSTM)")
        for name in ("kernel_size", "pool_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.input_noise < 0:
            raise ValueError(f"input_noise must be >= 0, got {self.input_noise}")
        for name in ("conv_dropout", "dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["conv_filters"] = list(self.conv_filters)
        data["lstm_units"] = list(self.lstm_units)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        kwargs = dict(data)
        for key in ("conv_filters", "lstm_units"):
            if key in kwargs:
                kwargs[key] = tuple(int(v) for v in kwargs[key])
        return cls(**kwargs)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelConfig:
        return cls(
            conv_filters=tuple(args.conv_filters),
            kernel_size=args.kernel_size,
            pool_size=args.pool_size,
            conv_dropout=args.conv_dropout,
            lstm_units=tuple(args.lstm_units),
            bidirectional=args.bidirectional,
            dropout=args.dropout,
            batch_norm=not args.no_batch_norm,
            input_noise=args.input_noise,
            lstm_export=args.lstm_export,
            family=getattr(args, "family", DEFAULT_FAMILY),
        )

    def sequence_length(self, window: int) -> int:
        """Steps the (first) LSTM walks for a window of ``window`` samples."""
        from edge_har.convert.families import FAMILIES

        own = FAMILIES[self.family].sequence_length
        if own is not None:
            return own(self, window)
        steps = window
        for _ in self.conv_filters:
            if self.pool_size > 1:
                steps //= self.pool_size
        return steps


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from edge_har.convert.families import FAMILIES

    d = ModelConfig()
    group = parser.add_argument_group("model (architecture)")
    group.add_argument(
        "--family",
        default=d.family,
        metavar="NAME",
        help="model family; the flags below size it: "
        + "; ".join(f"'{f.name}': {f.description}" for f in FAMILIES.values())
        + " (default: %(default)s)",
    )
    group.add_argument(
        "--conv-filters",
        type=_int_tuple,
        default=d.conv_filters,
        metavar="N,N,...",
        help="filters of each Conv1D block, comma-separated; '' for none (default: {})".format(
            ",".join(map(str, d.conv_filters))
        ),
    )
    group.add_argument(
        "--kernel-size", type=int, default=d.kernel_size, help="Conv1D kernel length in samples (default: %(default)s)"
    )
    group.add_argument(
        "--pool-size",
        type=int,
        default=d.pool_size,
        help="max-pool factor after each Conv1D block; it shortens the sequence the LSTM walks (default: %(default)s)",
    )
    group.add_argument(
        "--conv-dropout",
        type=_fraction,
        default=d.conv_dropout,
        help="dropout after each Conv1D block (default: %(default)s)",
    )
    group.add_argument(
        "--lstm-units",
        type=_int_tuple,
        default=d.lstm_units,
        metavar="N,N,...",
        help="units of each stacked LSTM layer, comma-separated (default: {})".format(",".join(map(str, d.lstm_units))),
    )
    group.add_argument(
        "--bidirectional", action="store_true", help="wrap every LSTM in Bidirectional (about twice the LSTM cost)"
    )
    group.add_argument(
        "--dropout", type=_fraction, default=d.dropout, help="dropout before the softmax layer (default: %(default)s)"
    )
    group.add_argument(
        "--no-batch-norm", action="store_true", help="leave out BatchNormalization after the convolutions"
    )
    group.add_argument(
        "--input-noise",
        type=float,
        default=d.input_noise,
        metavar="STD",
        help="Gaussian noise (in normalised units) added to training windows only, a cheap augmentation "
        "against memorising recordings; not part of the converted model (default: %(default)s)",
    )
    group.add_argument(
        "--lstm-export",
        choices=LSTM_EXPORTS,
        default=d.lstm_export,
        help="how the LSTM is written in the .tflite files (the weights are the same): 'unrolled' writes each step "
        "as FULLY_CONNECTED/LOGISTIC/TANH/MUL/ADD ops that XNNPACK runs in int8 (fast int8); 'fused' keeps one "
        "UNIDIRECTIONAL_SEQUENCE_LSTM op, whose int8 kernel is TFLite's slow reference code (default: %(default)s)",
    )


def _zero_state_layer(keras: Any) -> Any:
    """A layer giving (batch, units) zeros computed from its (batch, steps, features) input.

    A constant zero state leaves step 0's forget gate unused, and the int8
    quantizer then keeps that step's SPLIT in float; zeros derived from the
    input (``x * 0``) cannot be folded, so every step quantizes alike.
    """
    import tensorflow as tf

    class ZeroState(keras.layers.Layer):
        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

        def call(self, x: Any) -> Any:
            return tf.tile(x[:, 0, :1] * 0.0, [1, self.units])

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units}

    return ZeroState


def build_cnn_lstm(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    conv_filters: Sequence[int] = (64, 128, 128),
    kernel_size: int = 5,
    pool_size: int = 3,
    conv_dropout: float = 0.1,
    lstm_units: Sequence[int] = (128,),
    bidirectional: bool = False,
    dropout: float = 0.3,
    batch_norm: bool = True,
    input_noise: float = 0.0,
    batch_size: int | None = None,
    unrolled_lstm: bool = False,
    keras_unroll: bool = False,
    zero_state: bool = False,
    name: str = "cnn_lstm",
) -> Any:
    """Build (not compile) the CNN-LSTM for windows of ``input_shape = (window, channels)``.

    The softmax layer is pinned to float32 so that under a ``mixed_float16``
    policy (one GPU) the probabilities and the loss stay in full precision.
    ``batch_size=1`` gives the static-batch model the TFLite converter needs.
    ``unrolled_lstm`` swaps each LSTM (or Bidirectional LSTM) for
    :mod:`edge_har.convert.unrolled_lstm`'s layer of the same name and weights: for
    conversion only, it does not train.

    ``keras_unroll`` and ``zero_state`` are the int8 study's alternatives to
    ``unrolled_lstm`` (``research/int8_study.py`` compares them; the product
    never sets them): ``keras_unroll`` is Keras' own ``LSTM(unroll=True)``, and
    ``zero_state`` feeds each LSTM an initial state of zeros computed from its
    input, so the converter cannot fold it away and traces step 0 like every
    other step. Neither changes the weights or their order.
    """
    _, keras = import_tf()
    layers = keras.layers
    window, channels = int(input_shape[0]), int(input_shape[1])
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    if unrolled_lstm and (keras_unroll or zero_state):
        raise ValueError(
            "unrolled_lstm writes its own recurrence; keras_unroll and zero_state apply to the Keras LSTM only"
        )
    if zero_state and bidirectional:
        raise ValueError("zero_state is not supported with bidirectional LSTMs")
    inputs = keras.Input(shape=(window, channels), batch_size=batch_size, name="window")
    x = inputs
    if input_noise > 0:
        x = layers.GaussianNoise(input_noise, name="input_noise")(x)  # identity at inference
    steps = window
    for i, filters in enumerate(conv_filters):
        x = layers.Conv1D(filters, kernel_size, padding="same", use_bias=not batch_norm, name=f"conv{i + 1}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.Activation("relu", name=f"relu{i + 1}")(x)
        if pool_size > 1 and steps // pool_size >= 1:
            x = layers.MaxPooling1D(pool_size, name=f"pool{i + 1}")(x)
            steps //= pool_size
        if conv_dropout > 0:
            x = layers.Dropout(conv_dropout, name=f"conv_dropout{i + 1}")(x)
    for i, units in enumerate(lstm_units):
        last = i == len(lstm_units) - 1
        layer_name = f"bilstm{i + 1}" if bidirectional else f"lstm{i + 1}"
        if unrolled_lstm:
            from edge_har.convert.unrolled_lstm import unrolled_lstm_class

            x = unrolled_lstm_class()(units, return_sequences=not last, bidirectional=bidirectional, name=layer_name)(x)
            continue
        lstm = layers.LSTM(units, return_sequences=not last, unroll=keras_unroll, name=f"lstm{i + 1}")
        if zero_state:
            zeros = _zero_state_layer(keras)(units, name=f"lstm{i + 1}_zero_state")(x)
            x = lstm(x, initial_state=[zeros, zeros])
        else:
            x = layers.Bidirectional(lstm, name=layer_name)(x) if bidirectional else lstm(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(n_classes, name="logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def build_from_config(
    config: ModelConfig,
    input_shape: Sequence[int],
    n_classes: int,
    batch_size: int | None = None,
    unrolled_lstm: bool = False,
    *,
    keras_unroll: bool = False,
    zero_state: bool = False,
) -> Any:
    """The model of ``config.family`` (:mod:`edge_har.convert.families`) with ``config``'s sizes.

    The default family is :func:`build_cnn_lstm`, unchanged; the keyword hooks
    are the int8 study's (see there) and apply to it alone.
    """
    if config.family != DEFAULT_FAMILY:
        from edge_har.convert.families import FAMILIES

        if keras_unroll or zero_state:
            raise ValueError(f"keras_unroll and zero_state apply to the {DEFAULT_FAMILY} family only")
        return FAMILIES[config.family].build(config, input_shape, n_classes, batch_size, unrolled_lstm)
    return build_cnn_lstm(
        input_shape,
        n_classes,
        conv_filters=config.conv_filters,
        kernel_size=config.kernel_size,
        pool_size=config.pool_size,
        conv_dropout=config.conv_dropout,
        lstm_units=config.lstm_units,
        bidirectional=config.bidirectional,
        dropout=config.dropout,
        batch_norm=config.batch_norm,
        input_noise=config.input_noise,
        batch_size=batch_size,
        unrolled_lstm=unrolled_lstm,
        keras_unroll=keras_unroll,
        zero_state=zero_state,
    )


def float32_copy(model: Any, config: ModelConfig, batch_size: int | None = 1, unrolled_lstm: bool = False) -> Any:
    """The trained model rebuilt in float32 with a fixed batch, weights copied.

    Conversion needs ``batch_size=1`` (a dynamic batch breaks the fused LSTM),
    and a model trained under ``mixed_float16`` must be rebuilt in float32
    before conversion or saving for CPU use. Weights are float32 variables in
    both cases, so they copy one to one.
    """
    _, keras = import_tf()
    input_shape = tuple(int(d) for d in model.input_shape[1:])
    n_classes = int(model.output_shape[-1])
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build_from_config(config, input_shape, n_classes, batch_size=batch_size, unrolled_lstm=unrolled_lstm)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


def static_batch_copy(model: Any, config: ModelConfig) -> Any:
    """The model the TFLite converter gets: float32, static batch of 1, the LSTM as ``config.lstm_export`` says."""
    return float32_copy(model, config, batch_size=1, unrolled_lstm=config.lstm_export == "unrolled")
