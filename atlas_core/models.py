"""Opening a model through the right backend, with the user's input options."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Optional

from .plugins import get_registry
from .types import IMAGENET_MEAN, IMAGENET_STD, UsageError

PRESETS = {
    "imagenet": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "scale": 1.0},
    "none": {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "scale": 1.0},
    "raw255": {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "scale": 255.0},
}
SIDECAR_SUFFIX = ".input.json"


def parse_floats(text: str, what: str) -> tuple:
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise UsageError(f"{what} must be comma-separated numbers, e.g. 0.485,0.456,0.406; got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    return values


def parse_size(text) -> tuple[int, int]:
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = str(text).replace("x", ",").split(",")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--size must be one number or height,width (e.g. 224 or 48,192); got {text!r}") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise UsageError(f"--size must be one number or height,width (e.g. 224 or 48,192); got {text!r}")
    return (dims[0], dims[1])


def sidecar_path(source) -> Optional[Path]:
    if not isinstance(source, (str, Path)):
        return None
    p = Path(source)
    for candidate in (p.with_name(p.name + SIDECAR_SUFFIX), p.with_suffix(SIDECAR_SUFFIX)):
        if candidate.is_file():
            return candidate
    return None


def input_options(source=None, *, preset: Optional[str] = None, mean=None, std=None, scale=None,
                  size=None, **rest) -> dict:
    """Merge the sidecar file next to the model, a preset, then explicit options (last wins)."""
    opts: dict[str, Any] = {}
    side = sidecar_path(source)
    if side is not None:
        try:
            data = json.loads(side.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read input sidecar {side}: {exc}") from None
        preset = preset or data.pop("preset", None)
        for key in ("mean", "std"):
            if key in data:
                opts[key] = parse_floats(",".join(map(str, data[key])) if isinstance(data[key], list)
                                         else data[key], key)
        if "scale" in data:
            opts["scale"] = float(data["scale"])
        if "size" in data:
            opts["size"] = parse_size(data["size"])
        if "layout" in data:
            opts["layout"] = str(data["layout"])
    if preset:
        if preset not in PRESETS:
            raise UsageError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        opts.update(PRESETS[preset])
    if mean is not None:
        opts["mean"] = parse_floats(mean, "--mean") if not isinstance(mean, tuple) else mean
    if std is not None:
        opts["std"] = parse_floats(std, "--std") if not isinstance(std, tuple) else std
    if scale is not None:
        opts["scale"] = float(scale)
    if size is not None:
        opts["size"] = parse_size(size)
    opts.update({k: v for k, v in rest.items() if v is not None})
    return opts


def open_model(source, backend: Optional[str] = None, registry=None, **options):
    """Open ``source`` (a path, an import path, or a framework object) with the right backend."""
    registry = registry or get_registry()
    try:
        chosen = registry.backend_for(source, backend)
    except UsageError:
        if isinstance(source, (str, Path)) and ":" not in str(source) and not Path(source).exists():
            raise UsageError(f"model file {str(source)!r} not found") from None
        raise
    return chosen.open(source, **input_options(source, **options))


def is_model(obj) -> bool:
    """An opened Model (the contract of :class:`atlas_core.contracts.Model`) rather than something to open."""
    return all(hasattr(obj, a) for a in ("activations", "layers", "input_spec", "identity"))


def as_model(model, backend: Optional[str] = None, registry=None, **options):
    """``model`` itself if it is an opened Model, else ``open_model(model, ...)``."""
    if is_model(model) and not backend and not any(v is not None for v in options.values()):
        return model
    if is_model(model):
        raise UsageError("backend and input options apply when opening a model; this one is already open")
    if hasattr(model, "activations") and hasattr(model, "layers"):
        missing = [a for a in ("input_spec", "identity") if not hasattr(model, a)]
        raise UsageError(f"{type(model).__name__} looks like an opened model but has no {' or '.join(missing)} "
                         "(the Model contract of docs/hooks.md)")
    return open_model(model, backend=backend, registry=registry, **options)


def external_data_file(folder, location: str, offset="0", length="0", tensor: str = "?") -> Path:
    """The file an ONNX external-data entry names, checked: inside the model's folder (after following links,
    as onnxruntime does), no NUL byte, integer offset and length, and long enough. A one-line UsageError
    otherwise. Pure text and path checks, for every backend that reads ONNX files."""
    import os
    root = os.path.realpath(folder)
    if "\0" in location or "\0" in str(offset) or "\0" in str(length):
        raise UsageError(f"external data entry of tensor {tensor!r} holds a NUL byte: the model file is damaged")
    try:
        start, size = int(offset or 0), int(length or 0)
    except ValueError:
        raise UsageError(f"external data entry of tensor {tensor!r} has offset {offset!r} and length {length!r}: "
                         "both must be whole numbers; the model file is damaged") from None
    if start < 0 or size < 0:
        raise UsageError(f"external data entry of tensor {tensor!r} has a negative offset or length")
    target = os.path.realpath(os.path.join(root, location))
    if (not location or os.path.isabs(location) or os.path.splitdrive(location)[0]
            or os.path.commonpath([root, target]) != root or target == root):
        raise UsageError(f"refusing external data location {location!r} of tensor {tensor!r}: it must be a file "
                         "inside the model's folder (path traversal)")
    if not os.path.isfile(target):
        raise UsageError(f"external data file {location!r} (weights of tensor {tensor!r}) is missing: put it next "
                         f"to the model in {root}")
    if start + size > os.path.getsize(target):
        raise UsageError(f"external data file {location!r} is shorter ({os.path.getsize(target)} bytes) than tensor "
                         f"{tensor!r} needs ({start + size} bytes): the file is truncated or from another export")
    return Path(target)


def content_hash(paths: Iterable, extra=None) -> str:
    """A hash of the bytes of ``paths`` (a model file and its external data), and of ``extra``."""
    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def array_hash(arrays: Iterable, extra=None) -> str:
    """A hash of numeric arrays (an object model's weights), and of ``extra``."""
    import numpy as np
    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
