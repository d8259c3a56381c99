"""The pixel size an image file declares in its header, read before anything is decoded.

A few kB of PNG or JPEG can declare tens of thousands of pixels a side; decoding it first would
cost gigabytes for an upload that looks small. :func:`declared_size` reads the width and height
from the header of the formats the Predict page takes (PNG, JPEG, BMP, WebP, TIFF), so the server
refuses an image over its pixel limit without decoding it. A header it cannot read gives None: the
decoder then refuses the file itself (or applies its own limit).
"""

from __future__ import annotations

import struct
from typing import Optional

# JPEG start-of-frame markers (every coding process); C4, C8 and CC are other segments.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def declared_size(raw: bytes) -> Optional[tuple[int, int]]:
    """(width, height) from the file's header, or None when it is no header this reads."""
    try:
        if raw.startswith(b"\x89PNG\r\n\x1a\n") and raw[12:16] == b"IHDR":
            width, height = struct.unpack(">II", raw[16:24])
            return int(width), int(height)
        if raw.startswith(b"\xff\xd8"):
            return _jpeg_size(raw)
        if raw.startswith(b"BM"):
            width, height = struct.unpack("<ii", raw[18:26])
            return abs(int(width)), abs(int(height))
        if raw.startswith(b"RIFF") and raw[8:12] == b"WEBP":
            return _webp_size(raw)
        if raw[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(raw)
    except struct.error:  # a header cut short
        return None
    return None


def _jpeg_size(raw: bytes) -> Optional[tuple[int, int]]:
    i = 2
    while i + 9 <= len(raw):
        if raw[i] != 0xFF:
            i += 1
            continue
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # segments without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", raw[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", raw[i + 5 : i + 9])
            return int(width), int(height)
        if length < 2:
            return None
        i += 2 + length
    return None


def _webp_size(raw: bytes) -> Optional[tuple[int, int]]:
    chunk = raw[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(raw[24:27], "little"), 1 + int.from_bytes(raw[27:30], "little")
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", raw[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(raw[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _tiff_size(raw: bytes) -> Optional[tuple[int, int]]:
    order = "<" if raw[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", raw[4:8])
    (count,) = struct.unpack(order + "H", raw[offset : offset + 2])
    size: dict[int, int] = {}
    for n in range(min(count, 512)):
        entry = raw[offset + 2 + 12 * n : offset + 14 + 12 * n]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: a SHORT or a LONG
            fmt = "H" if kind == 3 else "I"
            (size[tag],) = struct.unpack(order + fmt, entry[8 : 8 + struct.calcsize(fmt)])
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None
