"""Image sources: a folder (recursive), a .npy array, or the demo set.

Every source yields canonical images: float32 HWC RGB in [0, 1], resized to the
model's input size. Grayscale, RGBA, palette and 16-bit images are converted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from .types import UsageError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


class BadImage(Exception):
    """An image that cannot be decoded: skipped and reported, never fatal."""


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """A PIL image of any mode as float32 HWC RGB in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / peak, 0, 1)
        return np.repeat(a[..., None], 3, axis=2)
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float32)
        a = (a - a.min()) / (np.ptp(a) or 1.0)
        return np.repeat(a[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def resize(image: np.ndarray, size: Optional[tuple[int, int]]) -> np.ndarray:
    """Resize float HWC [0, 1] to (height, width) with a bilinear filter (per channel, in float)."""
    if size is None or tuple(image.shape[:2]) == tuple(size):
        return np.ascontiguousarray(image, dtype=np.float32)
    h, w = size
    chans = [np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode="F")
                        .resize((w, h), Image.BILINEAR)) for c in range(image.shape[2])]
    return np.clip(np.stack(chans, axis=2), 0, 1).astype(np.float32)


def array_to_canonical(a: np.ndarray) -> np.ndarray:
    """One image array (HW, HWC; uint8, uint16 or float) to float32 HWC RGB in [0, 1]."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise BadImage(f"image array must be HW or HWC, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)
        a = a[..., :3].astype(np.float32) * alpha + (255.0 if a.dtype == np.uint8 else 1.0) * (1 - alpha)
    elif a.shape[2] != 3:
        raise BadImage(f"image array must have 1, 3 or 4 channels, got {a.shape[2]}")
    if np.issubdtype(a.dtype, np.integer):
        peak = 65535.0 if a.max() > 255 else 255.0
        return (a.astype(np.float32) / peak).clip(0, 1)
    a = a.astype(np.float32)
    return (a / 255.0 if a.max() > 1.5 else a).clip(0, 1)


class ImageSource:
    """A sequence of named images; ``load(i, size)`` decodes image ``i``."""

    kind = "images"

    def __len__(self) -> int:
        return len(self.names)

    names: Sequence[str] = ()

    def raw(self, i: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, i: int, size: Optional[tuple[int, int]] = None) -> np.ndarray:
        return resize(self.raw(i), size)

    def native_size(self, i: int) -> tuple[int, int]:
        return tuple(self.raw(i).shape[:2])

    def describe(self) -> str:
        return f"{len(self)} {self.kind}"


class FolderSource(ImageSource):
    kind = "image files"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        files = sorted(p for p in self.root.rglob("*")
                       if p.is_file() and p.suffix.lower() in EXTENSIONS)
        self.paths = files
        self.names = [str(p.relative_to(self.root)) for p in files]

    def raw(self, i: int) -> np.ndarray:
        try:
            with Image.open(self.paths[i]) as img:
                img.load()
                return to_rgb_array(img)
        except Exception as exc:  # PIL raises many kinds for broken files
            raise BadImage(f"{self.names[i]}: {type(exc).__name__}: {exc}") from None

    def native_size(self, i: int) -> tuple[int, int]:
        try:
            with Image.open(self.paths[i]) as img:
                return (img.height, img.width)
        except Exception as exc:
            raise BadImage(f"{self.names[i]}: {exc}") from None


class ArraySource(ImageSource):
    kind = "array images"

    def __init__(self, array: np.ndarray, names: Optional[Sequence[str]] = None, label: str = "array"):
        if array.ndim not in (3, 4):
            raise UsageError(f"an image array must be N x H x W or N x H x W x C, got shape {array.shape}")
        self.array = array
        self.names = list(names) if names is not None else [f"{label}[{i}]" for i in range(len(array))]

    def raw(self, i: int) -> np.ndarray:
        return array_to_canonical(self.array[i])


def open_source(spec: str) -> ImageSource:
    """``spec``: a folder, a ``.npy`` file, or ``demo``."""
    if spec == "demo":
        try:
            import atlas_demo
        except ImportError:
            raise UsageError("--images demo needs the demo package: pip install ./plugins/demo") from None
        return atlas_demo.demo_images()
    path = Path(spec)
    if not path.exists():
        raise UsageError(f"image source {spec!r} does not exist: give a folder of images, a .npy file or 'demo'")
    if path.is_dir():
        source = FolderSource(path)
        if not len(source):
            raise UsageError(f"no images in {spec!r} (looked for {', '.join(sorted(EXTENSIONS))}, recursively)")
        return source
    if path.suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r")
        except Exception as exc:
            raise UsageError(f"cannot read {spec!r} as a .npy array: {exc}") from None
        if not len(array):
            raise UsageError(f"{spec!r} holds no images")
        return ArraySource(array, label=path.name)
    raise UsageError(f"image source {spec!r} is not a folder, a .npy file or 'demo'")
