"""``conv2d-lstm``: 2-D convolutions over the (time x channel) image, pooling over time, two stacked LSTMs.

The window ``(time, channels)`` is read as a one-plane image ``(time, channels,
1)``. Each entry of ``config.conv_filters`` is a block Conv2D(filters,
``(kernel_size, 1)``, "same") -> BatchNorm -> ReLU -> MaxPool ``(pool_size, 1)``
-> Dropout: every channel is convolved along time with the same kernels and
keeps its own feature column, and the pooling shortens time only. The
``(steps, channels, filters)`` result is flattened per step into a sequence of
``channels * filters`` features for two stacked LSTMs, then dropout and the
dense softmax on the last step.

Why ``(k, 1)`` and not ``(k, 3)``: the channel axis is not a spatial one. Its
order is whatever the data set's columns are (acc x, y, z, gyro x, ...), so a
kernel 3 channels wide would straddle unrelated axes (acc z next to gyro x)
and tie the model to that column order, and with 3 channels and "same"
padding it would mostly see zeros. ``(k, 1)`` kernels are what DeepConvLSTM
uses too; the channels meet in the first LSTM's input projection, which mixes
all of them at every step. Compared with the ``cnn-lstm`` (whose Conv1D mixes
channels in its first layer), the convolutions cost ``channels`` times more and
the LSTM input is ``channels`` times wider: a larger model for the same flags.

Sizes: ``conv_filters``, ``kernel_size``, ``pool_size``, ``conv_dropout``,
``batch_norm``; ``lstm_units`` gives the LSTMs (one entry is used for both
layers: ``128`` means 128, 128; two or more entries are used as given);
``dropout`` before the softmax; ``bidirectional`` and ``input_noise`` as for
the CNN-LSTM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from edge_har.convert.families._base import Family
from edge_har.convert.families._layers import (
    classifier,
    conv2d_block,
    keras_layers,
    lstm_stack,
    pooled_sequence_length,
    window_input,
)

if TYPE_CHECKING:
    from edge_har.convert.models import ModelConfig


def lstm_units(config: ModelConfig) -> tuple[int, ...]:
    units = tuple(config.lstm_units)
    return units if len(units) >= 2 else (units[0], units[0])


def build(
    config: ModelConfig, input_shape: Sequence[int], n_classes: int, batch_size: int | None, unrolled_lstm: bool
) -> Any:
    keras, layers = keras_layers()
    inputs, x = window_input(config, input_shape, n_classes, batch_size)
    window, channels = int(input_shape[0]), int(input_shape[1])
    x = layers.Reshape((window, channels, 1), name="image")(x)
    for i, filters in enumerate(config.conv_filters):
        x = conv2d_block(x, i + 1, filters, (config.kernel_size, 1), config, pool=config.pool_size)
    steps, features = int(x.shape[1]), int(x.shape[2]) * int(x.shape[3])
    x = layers.Reshape((steps, features), name="sequence")(x)
    x = lstm_stack(x, lstm_units(config), config, unrolled_lstm)
    outputs = classifier(x, n_classes, config.dropout)
    return keras.Model(inputs, outputs, name="conv2d_lstm")


FAMILY = Family(
    "conv2d-lstm",
    "Conv2D blocks with (--kernel-size, 1) kernels over the (time x channel) image, each channel kept apart, "
    "max-pool over time by --pool-size, flattened per step into two stacked LSTMs (--lstm-units; one value is "
    "used twice), dense softmax",
    build,
    pooled_sequence_length,
)
