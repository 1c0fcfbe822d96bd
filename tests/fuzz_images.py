"""Hostile image files, made here (no binary fixtures), mixed with good ones: `make(folder, good)` writes them and
returns {name: kind} with kind "good" (must be in the atlas), "bad" (must be skipped and named) or "either"
(damaged but possibly decodable: in the atlas or named as skipped, never lost).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF"}


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_header(width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds almost nothing (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def make(folder: Path, good_images: list) -> dict:
    """Write the files; ``good_images`` are HxWx3 uint8 real photos (crops)."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds: dict = {}

    def put(name: str, data: bytes, kind: str) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        kinds[name] = kind

    photos = [Image.fromarray(a) for a in good_images]
    # good: every format, modes, sizes, orientation, odd names
    for k, img in enumerate(photos):
        ext = list(FORMATS)[k % len(FORMATS)]
        put(f"good/photo-{k:02d}{ext}", _bytes(img, FORMATS[ext]), "good")
    p = photos[0]
    put("good/gray.png", _bytes(p.convert("L"), "PNG"), "good")
    put("good/rgba.png", _bytes(p.convert("RGBA"), "PNG"), "good")
    put("good/la.png", _bytes(p.convert("LA"), "PNG"), "good")
    put("good/palette.png", _bytes(p.convert("P"), "PNG"), "good")
    put("good/palette-transparent.png", _bytes(p.convert("P"), "PNG", transparency=0), "good")
    put("good/bilevel.png", _bytes(p.convert("1"), "PNG"), "good")
    put("good/cmyk.jpg", _bytes(p.convert("CMYK"), "JPEG"), "good")
    put("good/16bit.png", _bytes(Image.fromarray((np.asarray(p.convert("L"), np.uint16) * 257)), "PNG"), "good")
    put("good/float.tif", _bytes(Image.fromarray(np.asarray(p.convert("L"), np.float32) / 3), "TIFF"), "good")
    put("good/one-pixel.png", _bytes(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"), "good")
    put("good/thin.png", _bytes(p.resize((3, 900)), "PNG"), "good")
    put("good/wide.jpg", _bytes(p.resize((1200, 2)), "JPEG"), "good")
    rotated = p.copy()
    exif = rotated.getexif()
    exif[0x0112] = 6
    put("good/phone-rotated.jpg", _bytes(rotated, "JPEG", exif=exif), "good")
    put("good/big-10000px.png", _bytes(Image.new("RGB", (10000, 10000), (90, 120, 200)), "PNG"), "good")
    put("good/<img src=x onerror=alert(1)>.png", _bytes(photos[1], "PNG"), "good")
    put("good/spaces and ünicode ✓.jpg", _bytes(photos[2], "JPEG"), "good")
    put("good/png-named.jpg", _bytes(photos[3], "PNG"), "good")  # the content decides, not the name
    put("good/UPPER.JPEG", _bytes(photos[4], "JPEG"), "good")
    # bad: nothing decodable in them
    rng = np.random.default_rng(0)
    for ext in list(FORMATS) + [".jpeg", ".tiff"]:
        put(f"bad/empty{ext}", b"", "bad")
        for seed in range(30):
            put(f"bad/random-{seed:02d}{ext}", rng.integers(0, 256, 64 + 53 * seed, np.uint8).tobytes(), "bad")
        put(f"bad/text{ext}", b"hello, I am not an image\n" * 3, "bad")
        put(f"bad/html{ext}", b"<html><script>alert(1)</script></html>", "bad")
    for ext, fmt in FORMATS.items():
        data = _bytes(photos[5], fmt)
        for cut in (4, 16, 40, 100):
            put(f"bad/header-only-{cut}{ext}", data[:cut], "bad")
        for frac in (0.3, 0.6, 0.9, 0.98):  # truncated: PIL may or may not decode what is there
            put(f"either/truncated-{int(frac * 100)}{ext}", data[:int(len(data) * frac)], "either")
        for seed in range(6):  # bytes flipped in the middle
            damaged = bytearray(data)
            for k in np.random.default_rng(seed).integers(len(data) // 4, len(data), 12):
                damaged[k] ^= 0xFF
            put(f"either/damaged-{seed}{ext}", bytes(damaged), "either")
    for w, h in [(65535, 65535), (1_000_000, 200), (2 ** 31 - 1, 1), (30000, 30000), (0, 10), (10, 0)]:
        put(f"bad/bomb-{w}x{h}.png", _png_header(w, h), "bad")
    nan = np.ones((32, 32), np.float32)
    for tag, value in [("nan", np.nan), ("inf", np.inf), ("minus-inf", -np.inf)]:
        img = nan.copy()
        img[5, 7] = value
        put(f"bad/{tag}.tif", _bytes(Image.fromarray(img, mode="F"), "TIFF"), "bad")
    put("bad/all-nan.tif", _bytes(Image.fromarray(np.full((16, 16), np.nan, np.float32), mode="F"), "TIFF"), "bad")
    return kinds
