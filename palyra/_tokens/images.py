"""Image tokens by OpenAI's tile rule, sized from ``data:`` URL headers."""

from __future__ import annotations

import binascii
import math
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["image_tokens"]

# OpenAI's image rule: low detail is flat, high detail is per 512px tile.
_IMAGE_LOW, _IMAGE_TILE, _IMAGE_BASE = 85, 170, 85
_UNKNOWN_IMAGE = 765  # a 1024x1024 image at high detail
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_HEADER_B64 = 4096  # base64 characters decoded first; enough for all but JPEG


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Reads width and height from a PNG, GIF, WebP or JPEG header."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if chunk == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            w = int.from_bytes(data[24:27], "little") + 1
            return w, int.from_bytes(data[27:30], "little") + 1
        return None
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in _JPEG_SOF:
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return w, h
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers with no length
                i += 2
                continue
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _data_url_size(url: str) -> tuple[int, int] | None:
    if not url.startswith("data:"):
        return None
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    size = None
    # Decode only the start first: headers are near the front, payloads can be
    # MBs. The whole payload is decoded only if that fails (e.g. a big EXIF).
    chunks = (payload[:_HEADER_B64], payload) if len(payload) > _HEADER_B64 else ()
    for chunk in chunks or (payload,):
        try:
            size = _image_size(binascii.a2b_base64(chunk))
        except (binascii.Error, ValueError):
            continue
        if size is not None:
            break
    return size if size and size[0] > 0 and size[1] > 0 else None


def image_tokens(part: Mapping[str, Any]) -> tuple[int, bool]:
    """Tokens of an ``image_url`` part by OpenAI's tile rule, and approximate."""
    image = part.get("image_url")
    url, detail = (image, None)
    if isinstance(image, Mapping):
        url, detail = image.get("url"), image.get("detail")
    if detail == "low":  # "high", "auto" and anything else: the tile rule
        return _IMAGE_LOW, False
    size = _data_url_size(url) if isinstance(url, str) else None
    if size is None:  # remote or unreadable: we never fetch, so assume 1024x1024
        return _UNKNOWN_IMAGE, True
    w, h = size
    if max(w, h) > 2048:  # fit within 2048x2048, keeping the aspect ratio
        w, h = int(w * 2048 / max(w, h)), int(h * 2048 / max(w, h))
    if min(w, h) > 768:  # then scale down so the shortest side is 768
        w, h = int(w * 768 / min(w, h)), int(h * 768 / min(w, h))
    return _IMAGE_TILE * math.ceil(w / 512) * math.ceil(h / 512) + _IMAGE_BASE, False
