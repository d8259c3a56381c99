"""An inference-only LSTM written out step by step, for the int8 model that XNNPACK can run.

Why it exists (figures in ``benchmarks/README.md``): Keras' LSTM converts to
TFLite's fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op. XNNPACK has no LSTM, so in a
full-integer model that op runs TFLite's reference integer kernel, and the int8
CNN-LSTM with it is 5-6x *slower* than float32. Written out as plain
ops, the same LSTM becomes ``FULLY_CONNECTED``, ``ADD``, ``MUL``, ``LOGISTIC``,
``TANH`` and ``SPLIT``, all of which XNNPACK runs in int8.

The layer holds exactly the weights of ``tf_keras.layers.LSTM`` (``kernel``,
``recurrent_kernel``, ``bias``; gates in Keras' order i, f, c, o; sigmoid and
tanh), so a model trained with the ordinary LSTM (cuDNN on a GPU) is copied into
it weight for weight; ``tests/test_models.py`` checks the outputs agree. Two
choices make the converted graph small and fully integer:

* the input projection ``x_t @ kernel + bias`` of every step is one
  ``FULLY_CONNECTED`` over the whole sequence, before the recurrence (Keras'
  ``unroll=True`` instead makes one per step, each with its own int32 bias);
* step 0 starts from zero state by leaving the zero terms out (no
  ``h @ recurrent_kernel``, no forget gate, no ``f * c``), slicing out only
  the three gates it uses. A zero state fed in as a constant, or a forget gate
  split off and never read, leaves a tensor without calibration data, and the
  quantizer then keeps that step's ``SPLIT`` in float.

It needs a static sequence length (the bundle's window fixes it) and is never
trained: training uses the ordinary LSTM. In a full-integer model its cell state
is int8 between steps (TFLite's fused integer LSTM keeps it in int16), so the
quantization error grows with the number of steps: fine for the few steps the
default model walks (3), to be checked (the int8 accuracy gate does) for long
sequences.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def unrolled_lstm_class() -> Any:
    """The Keras layer class, created on first use (TensorFlow is imported lazily in this project)."""
    from edge_har.convert.models import import_tf

    tf: Any
    keras: Any  # declared, so the class statement below may take its base from it
    tf, keras = import_tf()

    class UnrolledLSTM(keras.layers.Layer):
        """LSTM (or bidirectional LSTM, outputs concatenated) over a fixed number of steps.

        Weights are created in the order ``tf_keras.layers.LSTM`` (forward
        then backward, as ``Bidirectional``) lists them, so ``set_weights``
        with the trained layer's ``get_weights()`` copies them one to one.
        """

        def __init__(
            self, units: int, return_sequences: bool = False, bidirectional: bool = False, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self.units = int(units)
            self.return_sequences = bool(return_sequences)
            self.bidirectional = bool(bidirectional)

        def build(self, input_shape: Any) -> None:
            features = int(input_shape[-1])
            self.directions = []
            for direction in ("forward", "backward") if self.bidirectional else ("forward",):
                self.directions.append(
                    (
                        self.add_weight(name=f"{direction}_kernel", shape=(features, 4 * self.units)),
                        self.add_weight(name=f"{direction}_recurrent_kernel", shape=(self.units, 4 * self.units)),
                        self.add_weight(name=f"{direction}_bias", shape=(4 * self.units,)),
                    )
                )
            super().build(input_shape)

        def _run(self, x: Any, weights: tuple[Any, Any, Any], backwards: bool) -> tuple[Any, list[Any]]:
            kernel, recurrent_kernel, bias = weights
            steps, features = int(x.shape[1]), int(x.shape[2])
            projected = tf.matmul(tf.reshape(x, [-1, features]), kernel) + bias  # every step's x_t @ W + b at once
            inputs = tf.unstack(tf.reshape(projected, [-1, steps, 4 * self.units]), axis=1)
            if backwards:
                inputs = inputs[::-1]
            u = self.units
            h = c = None
            outputs = []
            for z in inputs:
                if h is None:
                    # Zero state: c = i * g. The forget gate is not computed at all: a SPLIT
                    # output nobody reads gets no calibration range, and the quantizer then
                    # leaves that SPLIT in float (seen with TF 2.21), breaking full-integer.
                    i, g, o = z[:, :u], z[:, 2 * u : 3 * u], z[:, 3 * u :]
                    c = tf.sigmoid(i) * tf.tanh(g)
                else:
                    i, f, g, o = tf.split(z + tf.matmul(h, recurrent_kernel), 4, axis=-1)
                    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
                h = tf.sigmoid(o) * tf.tanh(c)
                outputs.append(h)
            if backwards:
                outputs = outputs[::-1]  # aligned with the input's time order, as Bidirectional does
            return h, outputs

        def call(self, x: Any) -> Any:
            if x.shape[1] is None:
                raise ValueError("UnrolledLSTM needs a static sequence length")
            results = [self._run(x, w, backwards=d == 1) for d, w in enumerate(self.directions)]
            if self.return_sequences:
                per_direction = [tf.stack(outputs, axis=1) for _, outputs in results]
            else:
                per_direction = [last for last, _ in results]
            return per_direction[0] if len(per_direction) == 1 else tf.concat(per_direction, axis=-1)

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "units": self.units,
                "return_sequences": self.return_sequences,
                "bidirectional": self.bidirectional,
            }

    return UnrolledLSTM
