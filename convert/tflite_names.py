"""Shorter tensor names in converted ``.tflite`` files: why an int8 model could be larger than float32.

Measured on an image-seq bundle (plain Conv2D backbone at 64 px: an 8x8 feature map read as 64
LSTM steps, the LSTM unrolled): float32 366,928 bytes, int8 427,744 bytes, although int8's constant
data is 57,904 bytes against 227,008. The difference is **tensor names**: 231,477 bytes in the int8
file against 40,626 in float32. The full-integer quantizer merges the location names of fused
ops, so each of the 64 outputs of the LSTM's UNPACK (one per time step) is named
``.../lstm1/unstack;.../lstm1/unstack1;...;.../lstm1/unstack63``: 64 names of 2,550 characters,
163 kB of text in a 58 kB model. MobileNetV2 (alpha 0.35, 224 px, 7x7 = 49 steps) shows the same
(163,067 bytes of names in int8 against 45,830), hidden there by its larger weights. Quantization
parameters (scale and zero point per channel) add 15-179 kB more; that is data int8 needs.

Shortened (this module), the same int8 file is 267,488 bytes, 73 % of float32, with outputs
bit-identical; tests/test_tflite_names.py converts a 64-step, 64-unit LSTM head for the record:
float32 254,500 bytes, int8 309,544, int8 with short names 209,704. What int8 still carries over
its weights is per-tensor metadata (a scale and zero point for each of ~1,000 activation tensors
of the unrolled steps), which full-integer execution needs.

Names are for people reading a graph; the interpreter addresses tensors by index and the
signature keeps its own names. :func:`shorten_tensor_names` keeps each name's first part and
the count of merged ones (``.../lstm1/unstack;+63 more``), so the file shrinks to what its data
needs while a name still says where a tensor came from.
"""

from __future__ import annotations

from typing import Any

MAX_NAME_CHARS = 200


def shorten_tensor_names(content: bytes, limit: int = MAX_NAME_CHARS) -> tuple[bytes, dict[str, Any]]:
    """(model bytes with every tensor name over ``limit`` characters shortened, what was done).

    The model is returned unchanged (the same bytes) when no name is that long.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    shortened = saved = 0
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            raw = tensor.name or b""
            name = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
            if len(name) <= limit:
                continue
            parts = name.split(";")
            short = parts[0][:limit] + (f";+{len(parts) - 1} more" if len(parts) > 1 else "...")
            tensor.name = short.encode()
            shortened += 1
            saved += len(name) - len(short)
    info = {"tensor_names_shortened": shortened, "name_chars_removed": saved}
    if not shortened:
        return content, info
    out = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    info["bytes_before"], info["bytes_after"] = len(content), len(out)
    return out, info
