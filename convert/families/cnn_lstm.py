"""``cnn-lstm``: the project's default model, :func:`edge_har.convert.models.build_cnn_lstm` unchanged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from edge_har.convert.families._base import Family

if TYPE_CHECKING:
    from edge_har.convert.models import ModelConfig


def build(
    config: ModelConfig, input_shape: Sequence[int], n_classes: int, batch_size: int | None, unrolled_lstm: bool
) -> Any:
    from edge_har.convert.models import build_from_config

    return build_from_config(config, input_shape, n_classes, batch_size=batch_size, unrolled_lstm=unrolled_lstm)


FAMILY = Family(
    "cnn-lstm",
    "Conv1D blocks (--conv-filters, --kernel-size; BatchNorm, max-pool by --pool-size) over time, then the "
    "stacked LSTMs of --lstm-units, dense softmax (the default)",
    build,
)
