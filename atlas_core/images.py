"""Image sources: a folder (recursive), a .npy array, arrays in memory, or a source a plugin registers.

Every source yields canonical images: float32 HWC RGB in [0, 1], resized to the
model's input size. Grayscale, RGBA, palette and 16-bit images are converted.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from .types import UsageError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
MAX_PIXELS = 128_000_000  # an image file with more pixels is skipped (it is reported): a decompression bomb
NATIVE_SIDE = 2048        # "native size" loads (thumbnails) are reduced to this longest side
Image.MAX_IMAGE_PIXELS = None  # the cap above replaces PIL's warning and error


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, default=str).encode()).hexdigest()[:16]


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
        if not np.isfinite(a).all():
            raise BadImage("NaN or infinite pixel values")
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
        image = self.raw(i)
        if not np.isfinite(image).all():
            raise BadImage(f"{self.names[i]}: NaN or infinite pixel values")
        return resize(image, size)

    def native_size(self, i: int) -> tuple[int, int]:
        return tuple(self.raw(i).shape[:2])

    def describe(self) -> str:
        return f"{len(self)} {self.kind}"

    def identity(self) -> str:
        """Changes when the images do (for reuse keys); by default their names."""
        return _digest(list(self.names))


class FolderSource(ImageSource):
    """The image files under a folder, recursively, in name order. Folders that cannot be read are listed in
    ``unreadable`` (with the reason) instead of failing. Files are decoded at a reduced size where the model needs
    less (JPEG's draft mode, then a box-filtered reduction in the file's own mode), turned upright by their EXIF
    orientation, and skipped above ``MAX_PIXELS`` pixels."""

    kind = "image files"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.unreadable: list = []

        def failed(exc: OSError) -> None:
            where = Path(exc.filename or self.root)
            rel = str(where.relative_to(self.root)) if where != self.root and self.root in where.parents else \
                str(where)
            self.unreadable.append([rel, exc.strerror or type(exc).__name__])

        files = []
        for folder, dirs, names in os.walk(self.root, onerror=failed, followlinks=False):
            dirs.sort()
            for name in names:
                path = Path(folder) / name
                if path.suffix.lower() in EXTENSIONS and path.is_file():
                    files.append(path)
        self.paths = sorted(files)
        self.names = [str(p.relative_to(self.root)) for p in self.paths]

    def _open(self, i: int, size: Optional[tuple[int, int]]):
        img = Image.open(self.paths[i])
        if img.width * img.height > MAX_PIXELS:
            img.close()
            raise BadImage(f"{self.names[i]}: {img.width} x {img.height} pixels, over the cap of {MAX_PIXELS:,}")
        side = max(size) if size else NATIVE_SIDE
        if img.format == "JPEG":
            img.draft(img.mode, (2 * side, 2 * side))  # decode at 1/2, 1/4 or 1/8 scale where that suffices
        orientation = img.getexif().get(0x0112, 1)
        factor = min(img.width, img.height) // (2 * side) if size else max(img.width, img.height) // side
        if factor >= 2:
            try:
                img = img.reduce(factor)  # box filter, in the file's own mode: no float copy of a huge image
            except (ValueError, NotImplementedError):
                pass
        if orientation in (2, 3, 4, 5, 6, 7, 8):  # a phone photo's orientation, applied to the reduced image
            method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                      4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                      6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                      8: Image.Transpose.ROTATE_90}[orientation]
            img = img.transpose(method)
        return img

    def raw(self, i: int, size: Optional[tuple[int, int]] = None) -> np.ndarray:
        import warnings
        try:
            with warnings.catch_warnings():  # PIL warns about damaged files it can still read: they are reported
                warnings.simplefilter("ignore")
                img = self._open(i, size)
                with img:
                    img.load()
                    return to_rgb_array(img)
        except BadImage as exc:
            raise BadImage(str(exc) if str(exc).startswith(self.names[i]) else f"{self.names[i]}: {exc}") from None
        except Exception as exc:  # PIL raises many kinds for broken files
            raise BadImage(f"{self.names[i]}: {type(exc).__name__}: {exc}") from None

    def load(self, i: int, size: Optional[tuple[int, int]] = None) -> np.ndarray:
        image = self.raw(i, size)
        if not np.isfinite(image).all():
            raise BadImage(f"{self.names[i]}: NaN or infinite pixel values")
        return resize(image, size)

    def identity(self) -> str:
        """Names, sizes and modification times: an image rewritten in place changes it."""
        stats = []
        for name, p in zip(self.names, self.paths):
            try:
                st = p.stat()
                stats.append([name, st.st_size, st.st_mtime_ns])
            except OSError:
                stats.append([name, None, None])
        return _digest(stats)

    def native_size(self, i: int) -> tuple[int, int]:
        try:
            with Image.open(self.paths[i]) as img:
                orientation = img.getexif().get(0x0112, 1)
                return (img.width, img.height) if orientation in (5, 6, 7, 8) else (img.height, img.width)
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

    def identity(self) -> str:
        a = self.array
        step = max(1, len(a) // 64)  # a strided sample of the pixels: cheap for a memory-mapped array
        return _digest([list(self.names), list(a.shape), str(a.dtype),
                        hashlib.sha256(np.ascontiguousarray(a[::step]).tobytes()).hexdigest()])


class ListSource(ImageSource):
    kind = "array images"

    def __init__(self, arrays: list, names: Optional[Sequence[str]] = None):
        self.arrays = arrays
        self.names = list(names) if names is not None else [f"image[{i}]" for i in range(len(arrays))]

    def raw(self, i: int) -> np.ndarray:
        return array_to_canonical(self.arrays[i])

    def identity(self) -> str:
        h = hashlib.sha256()
        for a in self.arrays:
            h.update(np.ascontiguousarray(a).tobytes())
        return _digest([list(self.names), h.hexdigest()])


def open_source(spec) -> ImageSource:
    """``spec``: a folder, a ``.npy`` file, or the name of a registered source (``demo``); a path on disk
    takes precedence over a name."""
    path = Path(spec)
    if not path.exists():
        from .plugins import get_registry
        registry = get_registry()
        if str(spec) in registry.entries["sources"]:
            return registry.create("sources", str(spec))
        names = ", ".join(registry.names("sources"))
        raise UsageError(f"image source {str(spec)!r} does not exist: give a folder of images, a .npy file"
                         f"{' or one of: ' + names if names else ''}")
    if path.is_dir():
        source = FolderSource(path)
        if not len(source):
            unread = f"; {len(source.unreadable)} folders could not be read ({source.unreadable[0][0]}: " \
                f"{source.unreadable[0][1]})" if source.unreadable else ""
            raise UsageError(f"no images in {str(spec)!r} (looked for {', '.join(sorted(EXTENSIONS))}, "
                             f"recursively){unread}")
        return source
    if path.suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r")
        except Exception as exc:
            raise UsageError(f"cannot read {str(spec)!r} as a .npy array: {exc}") from None
        if not len(array):
            raise UsageError(f"{str(spec)!r} holds no images")
        return ArraySource(array, label=path.name)
    raise UsageError(f"image source {str(spec)!r} is not a folder or a .npy file")


def as_source(images) -> ImageSource:
    """An ImageSource from what a Python caller may pass: a source, a path or name, an N x H x W (x C) array,
    or a list of HW(C) arrays."""
    if isinstance(images, ImageSource):
        return images
    if isinstance(images, (str, os.PathLike)):
        return open_source(images)
    if isinstance(images, np.ndarray):
        return ArraySource(images)
    if isinstance(images, (list, tuple)) and all(isinstance(a, np.ndarray) for a in images):
        return ListSource(list(images))
    raise UsageError(f"images must be a folder, a .npy file, a source name, an array or a list of arrays; "
                     f"got {type(images).__name__}")
