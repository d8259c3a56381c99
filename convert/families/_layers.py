"""Pieces the families share: the input, the LSTM stack (trained or unrolled) and the classifier head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from edge_har.convert.models import ModelConfig


def keras_layers() -> tuple[Any, Any]:
    from edge_har.convert.models import import_tf

    _, keras = import_tf()
    return keras, keras.layers


def window_input(config: ModelConfig, input_shape: Sequence[int], n_classes: int, batch_size: int | None) -> Any:
    """``(inputs, x)``: the ``window`` input and, with ``input_noise``, the noise layer after it."""
    keras, layers = keras_layers()
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    window, channels = int(input_shape[0]), int(input_shape[1])
    inputs = keras.Input(shape=(window, channels), batch_size=batch_size, name="window")
    x = inputs
    if config.input_noise > 0:
        x = layers.GaussianNoise(config.input_noise, name="input_noise")(x)  # identity at inference
    return inputs, x


def lstm_stack(
    x: Any, units: Sequence[int], config: ModelConfig, unrolled: bool, last_sequences: bool = False, first: int = 1
) -> Any:
    """Stacked LSTMs named ``lstm1``, ``lstm2``, ... (``bilstmN`` when ``config.bidirectional``).

    Each returns its sequence except the last (unless ``last_sequences``);
    ``first`` is the number of the first layer's name.
    ``unrolled`` swaps each for the unrolled layer of the same name and
    weights (conversion only), as :func:`edge_har.convert.models.build_cnn_lstm` does.
    """
    _, layers = keras_layers()
    for i, n in enumerate(units):
        sequences = last_sequences or i < len(units) - 1
        number = first + i
        name = f"bilstm{number}" if config.bidirectional else f"lstm{number}"
        if unrolled:
            from edge_har.convert.unrolled_lstm import unrolled_lstm_class

            x = unrolled_lstm_class()(n, return_sequences=sequences, bidirectional=config.bidirectional, name=name)(x)
            continue
        lstm = layers.LSTM(n, return_sequences=sequences, name=f"lstm{number}")
        x = layers.Bidirectional(lstm, name=name)(x) if config.bidirectional else lstm(x)
    return x


def conv2d_block(x: Any, i: int, filters: int, kernel: tuple[int, int], config: ModelConfig, pool: int = 1) -> Any:
    """Conv2D(filters, kernel, "same") -> BatchNorm -> ReLU -> MaxPool((pool, 1)) -> Dropout, named like the CNN-LSTM's."""
    _, layers = keras_layers()
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=not config.batch_norm, name=f"conv{i}")(x)
    if config.batch_norm:
        x = layers.BatchNormalization(name=f"bn{i}")(x)
    x = layers.Activation("relu", name=f"relu{i}")(x)
    if pool > 1 and int(x.shape[1]) // pool >= 1:
        x = layers.MaxPooling2D((pool, 1), name=f"pool{i}")(x)
    if config.conv_dropout > 0:
        x = layers.Dropout(config.conv_dropout, name=f"conv_dropout{i}")(x)
    return x


def classifier(x: Any, n_classes: int, dropout: float) -> Any:
    """Dropout -> Dense ``logits`` -> float32 softmax ``probabilities`` (the contract every family keeps)."""
    _, layers = keras_layers()
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(n_classes, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def pooled_sequence_length(config: ModelConfig, window: int) -> int:
    """The steps the LSTM walks when every conv block pools by ``config.pool_size`` (a family's sequence_length)."""
    return pooled_steps(window, len(config.conv_filters), config.pool_size)


def pooled_steps(window: int, n_blocks: int, pool: int) -> int:
    """Steps left after ``n_blocks`` max-pools of ``pool`` (a pool that would leave no step is skipped)."""
    steps = window
    for _ in range(n_blocks):
        if pool > 1 and steps // pool >= 1:
            steps //= pool
    return steps
