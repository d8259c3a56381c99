"""The :class:`Family` record (its own module so that the family modules import it without a cycle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from edge_har.convert.models import ModelConfig

Builder = Callable[["ModelConfig", Sequence[int], int, "int | None", bool], Any]


@dataclass(frozen=True)
class Family:
    """One architecture: ``build(config, input_shape, n_classes, batch_size, unrolled_lstm)``.

    ``sequence_length(config, window)``, when given, is the number of steps the
    first LSTM walks (``ModelConfig.sequence_length`` otherwise assumes the
    CNN-LSTM's pooling).
    """

    name: str
    description: str
    build: Builder
    sequence_length: Callable[[ModelConfig, int], int] | None = None
