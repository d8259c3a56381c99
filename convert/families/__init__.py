"""Model families: the architectures ``--family`` picks, one module each, one registration line each.

A :class:`Family` is a name, a one-line description (the ``--family`` help
lists it) and a builder ``build(config, input_shape, n_classes, batch_size,
unrolled_lstm) -> keras.Model``. Every builder follows the contract
:mod:`edge_har.convert.models` and the pipeline rely on:

* layers from ``tf_keras`` only (plus :mod:`edge_har.convert.unrolled_lstm`'s
  layer when ``unrolled_lstm``), so that ``clone_model``, HDF5 saving and
  ``--from-keras`` work with no custom objects;
* the same layers, in the same order, whatever ``batch_size`` and
  ``unrolled_lstm`` are, so :func:`~edge_har.convert.models.float32_copy` and
  :func:`~edge_har.convert.models.static_batch_copy` copy the weights one to one
  (each LSTM holds ``kernel``, ``recurrent_kernel``, ``bias`` either way);
* the classifier is ``Dense(n_classes, name="logits")`` followed by a float32
  ``Activation("softmax", name="probabilities")`` (mixed precision, and
  personalisation, which grows the last Dense);
* every op of the converted graph quantizes to full int8 (the ``int8`` variant
  refuses a float op).

Adding a family is one module with a ``FAMILY = Family(...)`` and one
``register(...)`` line below. TensorFlow is imported by the builders only, never
here: ``ModelConfig`` validates its ``family`` against :data:`FAMILIES`.
"""

from __future__ import annotations

from edge_har.convert.families import cnn_lstm, conv2d_lstm, deepconvlstm, tinyhar
from edge_har.convert.families._base import Builder, Family

__all__ = ["FAMILIES", "Builder", "Family", "register"]

FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    if family.name in FAMILIES:
        raise ValueError(f"model family '{family.name}' is already registered")
    FAMILIES[family.name] = family
    return family


register(cnn_lstm.FAMILY)
register(conv2d_lstm.FAMILY)
register(deepconvlstm.FAMILY)
register(tinyhar.FAMILY)
