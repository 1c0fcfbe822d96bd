"""`atlas build`: images to a finished atlas (filled in by the pipeline issue)."""

from __future__ import annotations

from .types import UsageError


def add_build_arguments(p) -> None:
    p.add_argument("--images", required=False, help="folder of images (recursive), a .npy array, or demo")
    p.add_argument("--layer", help="layer to atlas (see atlas layers MODEL)")
    p.add_argument("--out", default="atlas-out", help="output folder (default atlas-out)")


def build_from_args(args) -> int:
    raise UsageError("atlas build is not implemented yet")


def demo(args) -> int:
    raise UsageError("atlas demo is not implemented yet")
