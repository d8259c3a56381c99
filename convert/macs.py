"""Multiply-accumulates per window, counted from a Keras model's layers.

One MAC is one multiplication added into a sum (``a += w * x``). What is counted,
per layer, with the layer's own input and output shapes (the batch axis left
out, so the figure is per window):

* ``Conv1D``: ``out_steps * filters * kernel * in_channels / groups``;
* ``Conv2D``: ``out_h * out_w * filters * kh * kw * in_channels / groups``;
  ``DepthwiseConv1D/2D``: ``outputs * kernel``;
* ``Dense``: ``positions * in_features * units`` (a Dense on a sequence or an
  image applies at every position);
* ``LSTM`` (Keras): ``steps * 4 * units * (in_features + units)``, the input
  and recurrent gate matrices at every step, as
  :mod:`edge_har.benchmarks.floor` counts the fused TFLite LSTM op;
  ``Bidirectional`` twice its layer;
* the unrolled LSTM (:mod:`edge_har.convert.unrolled_lstm`): the same less one
  step's recurrent product (step 0 starts from zero state and skips it), which is
  what the converted ``FULLY_CONNECTED`` ops hold; so a model and its
  conversion copy differ by ``4 * units * units`` per LSTM direction;
* ``MultiHeadAttention``: the query/key/value/output projections plus the two
  attention products (scores ``Q K^T`` and ``weights V``);
  ``Dot``: ``batch_dot`` of its two inputs;
* nested models and wrappers: the sum of their layers.

Not counted (they are not multiply-accumulates, or are small next to the
above): biases, batch normalisation (folded into the convolution on
conversion), activations and the LSTM's element-wise gate products,
element-wise ``Add``/``Multiply``, pooling, softmax, reshapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class MacCount:
    """MACs per window of one model, in total and per layer (layers with none left out)."""

    total: int = 0
    by_layer: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, macs: int) -> None:
        if macs:
            self.by_layer[name] = self.by_layer.get(name, 0) + int(macs)
            self.total += int(macs)


def _prod(dims: Sequence[Any]) -> int:
    out = 1
    for d in dims:
        out *= int(d)
    return out


def _shape(shape: Any) -> tuple[int, ...]:
    """A layer's (single) input or output shape without the batch axis."""
    if isinstance(shape, list):  # a layer of several inputs: the first
        shape = shape[0]
    return tuple(int(d) for d in tuple(shape)[1:])


def _lstm_macs(steps: int, features: int, units: int, unrolled: bool) -> int:
    recurrent_steps = steps - 1 if unrolled else steps
    return 4 * units * (steps * features + recurrent_steps * units)


def layer_macs(layer: Any) -> int:
    """MACs per window of one layer (0 for layers that do none; see the module docstring)."""
    kind = type(layer).__name__
    if kind in ("Functional", "Sequential", "Model") or (hasattr(layer, "layers") and kind != "Bidirectional"):
        return count_macs(layer).total
    if kind == "Bidirectional":
        return 2 * layer_macs(layer.forward_layer)
    if kind in ("Conv1D", "Conv2D", "Conv3D"):
        w = layer.kernel.shape  # (*kernel, in_channels / groups, filters)
        return _prod(_shape(layer.output_shape)[:-1]) * _prod(w)
    if kind in ("DepthwiseConv1D", "DepthwiseConv2D"):
        w = layer.depthwise_kernel.shape  # (*kernel, in_channels, multiplier)
        return _prod(_shape(layer.output_shape)) * _prod(w[:-2])
    if kind == "Dense":
        x = _shape(layer.input_shape)
        return _prod(x[:-1]) * int(x[-1]) * int(layer.units)
    if kind in ("LSTM", "UnrolledLSTM"):
        x = _shape(layer.input_shape)
        macs = _lstm_macs(int(x[0]), int(x[1]), int(layer.units), unrolled=kind == "UnrolledLSTM")
        return macs * (2 if getattr(layer, "bidirectional", False) else 1)
    if kind == "MultiHeadAttention":
        q, v = _shape(layer._query_shape), _shape(layer._value_shape)  # noqa: SLF001 - no public accessor
        k = _shape(layer._key_shape) if layer._key_shape is not None else v  # noqa: SLF001
        heads, key_dim, value_dim = int(layer._num_heads), int(layer._key_dim), int(layer._value_dim)  # noqa: SLF001
        nq, nk = _prod(q[:-1]), _prod(v[:-1])
        projections = heads * (nq * q[-1] * key_dim + nk * k[-1] * key_dim + nk * v[-1] * value_dim)
        out_dim = int(layer._output_shape[-1]) if layer._output_shape else q[-1]  # noqa: SLF001
        output = nq * heads * value_dim * out_dim
        return projections + heads * nq * nk * (key_dim + value_dim) + output
    if kind == "Dot":  # every output value is a sum over the reduced axis
        a = _shape(layer.input_shape[0])
        axes = layer.axes if isinstance(layer.axes, (list, tuple)) else (layer.axes, layer.axes)
        return _prod(_shape(layer.output_shape)) * int(a[int(axes[0]) % (len(a) + 1) - 1])
    return 0


def count_macs(model: Any) -> MacCount:
    """MACs per window of a built Keras model, layer by layer."""
    count = MacCount()
    for layer in model.layers:
        count.add(layer.name, layer_macs(layer))
    return count


def model_macs(model: Any) -> int:
    """Total MACs per window of ``model`` (what ``bundle.json`` records under ``training.macs``)."""
    return count_macs(model).total
