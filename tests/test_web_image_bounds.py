"""Images and clips for ``POST /api/predict``: the pixel count is bounded before anything is decoded.

A small upload can declare a huge image (a PNG of zeros compresses a thousandfold) or a clip of huge
frames; :func:`edge_har.web.image_size.declared_size` reads the size from the header of every format
the Predict page takes, checked here against OpenCV's own encoders, and ``read_image`` / ``Clip``
refuse an image or frame over ``MAX_FRAME_PIXELS`` with a one-line 413 without decoding it.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

cv2 = pytest.importorskip("cv2")
pytest.importorskip("fastapi")

from edge_har.web.image_size import declared_size  # noqa: E402
from edge_har.web.predict import MAX_FRAME_PIXELS, Clip, InputError, read_image  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "60"))
FORMATS = (".png", ".jpg", ".bmp", ".webp", ".tiff")
ENCODINGS = [(suffix, []) for suffix in FORMATS] + [
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),  # lossy VP8 (100, the default, is lossless VP8L)
    (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),  # a progressive JPEG's SOF2
]


def encoded(suffix: str, width: int, height: int, params: list[int] | None = None) -> bytes:
    image = (np.arange(width * height * 3) % 251).astype(np.uint8).reshape(height, width, 3)
    ok, buf = cv2.imencode(suffix, image, params or [])
    assert ok
    return buf.tobytes()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(encoding=st.sampled_from(ENCODINGS), width=st.integers(1, 300), height=st.integers(1, 300))
def test_property_the_declared_size_is_what_opencv_wrote(encoding, width, height):
    suffix, params = encoding
    raw = encoded(suffix, width, height, params)
    assert declared_size(raw) == (width, height)
    assert read_image(raw, "x" + suffix).shape[:2] == (height, width)


@settings(max_examples=FUZZ_EXAMPLES * 5, deadline=None)
@given(
    raw=st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*"]).flatmap(
            lambda head: st.binary(max_size=120).map(lambda tail: head + tail)
        ),
    )
)
def test_property_any_bytes_give_a_size_or_none(raw):
    size = declared_size(raw)
    assert size is None or (len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size))


def test_a_real_png_over_the_limit_is_refused_before_decoding():
    """A valid 20 MP PNG of zeros is a few kB: refused from its header alone."""
    side = int(MAX_FRAME_PIXELS**0.5) + 200
    ok, buf = cv2.imencode(".png", np.zeros((side, side), np.uint8))
    raw = buf.tobytes()
    assert ok and len(raw) < 2 * 1024 * 1024
    with pytest.raises(InputError) as exc:
        read_image(raw, "zeros.png")
    assert exc.value.status == 413
    assert "zeros.png" in str(exc.value) and f"{side}x{side}" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp"])
def test_a_header_declaring_a_huge_image_is_refused(suffix):
    raw = bytearray(encoded(suffix, 16, 16))
    if suffix == ".png":
        raw[16:24] = struct.pack(">II", 60000, 60000)
    elif suffix == ".jpg":
        i = next(i for i in range(2, len(raw) - 1) if raw[i] == 0xFF and raw[i + 1] in (0xC0, 0xC2))
        raw[i + 5 : i + 9] = struct.pack(">HH", 60000, 60000)
    elif suffix == ".bmp":
        raw[18:26] = struct.pack("<ii", 60000, -60000)
    elif raw[12:16] == b"VP8L":  # OpenCV's default quality is lossless
        bits = int.from_bytes(raw[21:25], "little") & ~((1 << 28) - 1)
        raw[21:25] = (bits | 16000 - 1 | (16000 - 1) << 14).to_bytes(4, "little")
    else:
        assert raw[12:16] == b"VP8 "
        raw[26:30] = struct.pack("<HH", 16000, 16000)
    with pytest.raises(InputError) as exc:
        read_image(bytes(raw), "bomb" + suffix)
    assert exc.value.status == 413 and "pixels" in str(exc.value)


def test_a_clip_of_huge_frames_is_refused_before_decoding(tmp_path):
    side = int(MAX_FRAME_PIXELS**0.5) + 64
    path = tmp_path / "huge.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (side, side))
    assert writer.isOpened()
    writer.write(np.zeros((side, side, 3), np.uint8))
    writer.release()
    with pytest.raises(InputError) as exc:
        Clip(path, "huge.avi", 10.0)
    assert exc.value.status == 413 and f"{side}x{side}" in str(exc.value)
    small = tmp_path / "small.avi"
    writer = cv2.VideoWriter(str(small), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    assert sum(1 for _ in Clip(small, "small.avi", 10.0)) == 3
