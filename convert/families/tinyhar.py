"""``tinyhar``: a TinyHAR-like model (Zhou et al., ISWC 2022), built from ops that quantize to full int8.

The stages of TinyHAR, in order:

1. **per-channel temporal convolutions**: the window is a ``(time, channels, 1)``
   image; each entry of ``conv_filters`` is a block Conv2D(filters,
   ``(kernel_size, 1)``) -> BatchNorm -> ReLU -> MaxPool ``(pool_size, 1)`` ->
   Dropout, so every channel is filtered along time on its own (shared
   kernels) and time shrinks by ``pool_size`` per block;
2. **cross-channel interaction**: at every step and filter, the channels are
   mixed by a dense layer across the channel axis (``channel_mix``, a
   token-mixing layer as in MLP-Mixer) added back to its input (residual).
   TinyHAR uses a self-attention block here; with 3-9 channels a learned dense
   mixing is as expressive at this size, and it converts to TRANSPOSE +
   FULLY_CONNECTED + ADD, which XNNPACK runs in int8, where attention's
   activation-by-activation BATCH_MATMUL does not run in XNNPACK's integer kernels;
3. **cross-channel fusion**: each step's ``channels * filters`` features are
   fused by a dense ReLU layer (``channel_fusion``) of ``conv_filters[-1]`` units;
4. **temporal interaction**: the LSTMs of ``lstm_units``, every one returning
   its whole sequence;
5. **temporal attention pooling**: a dense score per step (``attention_score``),
   a softmax over the steps (``attention_weights``), and the softmax-weighted
   sum of the LSTM outputs. The sum is written as MUL by the weights then a
   mean over the steps (``attention_pool``, GlobalAveragePooling1D): the mean
   is the sum divided by ``steps``, a constant factor the classifier's weights
   absorb, and MUL and MEAN run in XNNPACK's int8 kernels (an AVERAGE_POOL_2D
   instead, measured, falls back to TFLite's builtin kernel; a matmul of
   weights by outputs would be a BATCH_MATMUL of two activations);

then dropout and the dense softmax. Sizes: ``conv_filters``, ``kernel_size``,
``pool_size``, ``conv_dropout``, ``batch_norm``, ``lstm_units``, ``dropout``,
``bidirectional``, ``input_noise``. ``tinyhar`` is tiny when its flags are
(e.g. ``--conv-filters 16,16,16 --lstm-units 32``); at the shared defaults it
is about the CNN-LSTM's size.
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


def build(
    config: ModelConfig, input_shape: Sequence[int], n_classes: int, batch_size: int | None, unrolled_lstm: bool
) -> Any:
    keras, layers = keras_layers()
    if not config.conv_filters:
        raise ValueError("tinyhar needs at least one convolution block (--conv-filters)")
    inputs, x = window_input(config, input_shape, n_classes, batch_size)
    window, channels = int(input_shape[0]), int(input_shape[1])
    x = layers.Reshape((window, channels, 1), name="image")(x)
    for i, filters in enumerate(config.conv_filters):
        x = conv2d_block(x, i + 1, filters, (config.kernel_size, 1), config, pool=config.pool_size)
    steps, width = int(x.shape[1]), int(x.shape[3])
    # (steps, channels, filters) -> (steps, filters, channels): Dense mixes the channels of each step and filter.
    mixed = layers.Permute((1, 3, 2), name="to_channels_last")(x)
    mixed = layers.Dense(channels, name="channel_mix")(mixed)
    mixed = layers.Permute((1, 3, 2), name="from_channels_last")(mixed)
    x = layers.Add(name="channel_residual")([x, mixed])
    x = layers.Reshape((steps, channels * width), name="sequence")(x)
    x = layers.Dense(width, activation="relu", name="channel_fusion")(x)
    h = lstm_stack(x, config.lstm_units, config, unrolled_lstm, last_sequences=True)
    score = layers.Dense(1, name="attention_score")(h)
    score = layers.Reshape((steps,), name="attention_logits")(score)
    weights = layers.Softmax(name="attention_weights")(score)
    weights = layers.Reshape((steps, 1), name="attention_column")(weights)
    x = layers.Multiply(name="attention_weighted")([h, weights])
    x = layers.GlobalAveragePooling1D(name="attention_pool")(x)
    outputs = classifier(x, n_classes, config.dropout)
    return keras.Model(inputs, outputs, name="tinyhar")


FAMILY = Family(
    "tinyhar",
    "TinyHAR-like (Zhou et al. 2022): per-channel Conv2D blocks along time (--conv-filters, --kernel-size, "
    "--pool-size), dense mixing across channels, fusion, LSTM (--lstm-units) over time, softmax attention "
    "pooling over the steps, dense softmax",
    build,
    pooled_sequence_length,
)
