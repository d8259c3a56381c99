"""``deepconvlstm``: DeepConvLSTM (Ordonez & Roggen, Sensors 2016).

As in the paper: the window is a one-plane ``(time, channels, 1)`` image; four
convolutions of 64 filters with ``(5, 1)`` kernels (along time, each channel
apart), "valid" padding, ReLU, no pooling and no batch normalisation, so the
sequence loses ``4 * (kernel - 1)`` steps and no more; the per-step features
(``channels * 64``) go through two LSTMs of 128 units, with dropout on the
input of each LSTM and of the classifier, and the dense softmax reads the last
step.

Scaling it with the ordinary flags (kept simple): the convolutions take
``conv_filters[0]`` filters (64 by default, the paper's; the other entries and
``pool_size``, ``batch_norm``, ``conv_dropout`` are not used) and
``kernel_size`` (5 by default); the LSTMs take ``lstm_units`` (one entry is
used for both layers: the default 128 gives the paper's 128, 128); ``dropout``
(0.3 by default; the paper used 0.5) is the dropout rate.

Cost: with no pooling the LSTMs walk almost every sample (112 steps for a
128-sample window), so this is by far the most expensive family per window,
and an unrolled int8 LSTM keeps its cell state in int8 across all those steps
(check the int8 gate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from edge_har.convert.families._base import Family
from edge_har.convert.families._layers import classifier, keras_layers, lstm_stack, window_input

if TYPE_CHECKING:
    from edge_har.convert.models import ModelConfig

N_CONV = 4
PAPER_FILTERS = 64


def filters(config: ModelConfig) -> int:
    return int(config.conv_filters[0]) if config.conv_filters else PAPER_FILTERS


def lstm_units(config: ModelConfig) -> tuple[int, ...]:
    units = tuple(config.lstm_units)
    return units if len(units) >= 2 else (units[0], units[0])


def sequence_length(config: ModelConfig, window: int) -> int:
    return window - N_CONV * (config.kernel_size - 1)


def build(
    config: ModelConfig, input_shape: Sequence[int], n_classes: int, batch_size: int | None, unrolled_lstm: bool
) -> Any:
    keras, layers = keras_layers()
    window, channels = int(input_shape[0]), int(input_shape[1])
    if sequence_length(config, window) < 1:
        raise ValueError(
            f"deepconvlstm: {N_CONV} 'valid' convolutions of kernel {config.kernel_size} need a window longer than "
            f"{N_CONV * (config.kernel_size - 1)} samples, got {window}"
        )
    inputs, x = window_input(config, input_shape, n_classes, batch_size)
    x = layers.Reshape((window, channels, 1), name="image")(x)
    for i in range(N_CONV):
        x = layers.Conv2D(filters(config), (config.kernel_size, 1), activation="relu", name=f"conv{i + 1}")(x)
    steps, features = int(x.shape[1]), int(x.shape[2]) * int(x.shape[3])
    x = layers.Reshape((steps, features), name="sequence")(x)
    units = lstm_units(config)
    for i, n in enumerate(units):
        if config.dropout > 0:
            x = layers.Dropout(config.dropout, name=f"lstm_dropout{i + 1}")(x)
        x = lstm_stack(x, [n], config, unrolled_lstm, last_sequences=i < len(units) - 1, first=i + 1)
    outputs = classifier(x, n_classes, config.dropout)
    return keras.Model(inputs, outputs, name="deepconvlstm")


FAMILY = Family(
    "deepconvlstm",
    "DeepConvLSTM (Ordonez & Roggen 2016): four Conv2D of --conv-filters' first value (64) with "
    "(--kernel-size, 1) kernels, no pooling, then two LSTMs (--lstm-units; one value is used twice), "
    "dense softmax on the last step",
    build,
    sequence_length,
)
