"""Opening a model through the right backend, with the user's input options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

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


def open_model(source, backend: Optional[str] = None, **options):
    """Open ``source`` (a path, an import path, or a framework object) with the right backend."""
    registry = get_registry()
    try:
        chosen = registry.backend_for(source, backend)
    except UsageError:
        if isinstance(source, (str, Path)) and ":" not in str(source) and not Path(source).exists():
            raise UsageError(f"model file {str(source)!r} not found") from None
        raise
    return chosen.open(source, **input_options(source, **options))
