"""`atlas activations`: the full activations of named layers for every image, in one ``.npz`` file.

The file holds one array per layer (keyed by the layer's name; N x H x W x C or N x C, float32, rows in
the source's order, which is file-name order for a folder) and ``image_names``, the name of each row.
Images that cannot be decoded are skipped, counted and named. Activations go to memory-mapped
scratch files beside the output while they are collected, so memory stays flat for large folders.
"""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .images import BadImage
from .types import UsageError

NAMES_KEY = "image_names"


def dump_activations(model, source, layers: Sequence[str], output, batch_size: int = 32,
                     progress: Optional[Callable[[int, int], None]] = None) -> str:
    """Run every image of ``source`` through ``model`` and save ``layers``; returns a one-line report."""
    layers = _check_layers(model, list(dict.fromkeys([layers] if isinstance(layers, str) else layers)))
    output = Path(output)
    if output.suffix != ".npz":
        output = output.with_name(output.name + ".npz")
    if not output.parent.is_dir():
        raise UsageError(f"cannot write {str(output)!r}: folder {str(output.parent)!r} does not exist")
    batch_size = max(1, int(batch_size or 32))
    skipped: list = []
    size = model.input_spec.size or _common_size(source, skipped)
    bad = {name for name, _ in skipped}
    todo = [i for i in range(len(source)) if source.names[i] not in bad]
    names: list = []
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".atlas-activations-") as scratch:
        arrays: dict = {}
        batch: list = []
        batch_names: list = []

        def flush():
            acts = model.activations(np.stack(batch), layers)
            finite = np.all([np.isfinite(acts[layer].reshape(len(batch), -1)).all(axis=1) for layer in layers], axis=0)
            for name in [n for n, ok in zip(batch_names, finite) if not ok]:
                skipped.append((name, "the model's activations are not finite (NaN or infinite)"))
            acts = {layer: acts[layer][finite] for layer in layers}
            batch_names[:] = [n for n, ok in zip(batch_names, finite) if ok]
            if not batch_names:
                batch.clear()
                return
            for layer in layers:
                a = acts[layer]
                if layer not in arrays:
                    path = os.path.join(scratch, f"{len(arrays)}.npy")
                    arrays[layer] = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                                              shape=(len(todo),) + a.shape[1:])
                    with open(path, "r+b") as f:  # reserve the space now: a full disk is an error here, not a
                        os.posix_fallocate(f.fileno(), 0, os.path.getsize(path))  # crash (SIGBUS) mid-write
                arrays[layer][len(names):len(names) + len(a)] = a
            names.extend(batch_names)
            batch.clear()
            batch_names.clear()

        for done, i in enumerate(todo, 1):
            try:
                batch.append(source.load(i, size))
                batch_names.append(source.names[i])
            except BadImage as exc:
                skipped.append((source.names[i], str(exc)))
            if len(batch) == batch_size:
                flush()
            if progress:
                progress(done, len(todo))
        if batch:
            flush()
        if not names:
            raise UsageError(f"none of the {len(source)} images could be decoded; nothing written")
        _write_npz(output, {layer: arrays[layer][:len(names)] for layer in layers},
                   np.array(names))
        shapes = ", ".join(f"{layer} {tuple(arrays[layer].shape[1:])}" for layer in layers)
        arrays.clear()  # drop the memory maps before their folder goes
    for name, reason in skipped:
        print(f"atlas: skipped {reason if reason.startswith(name) else name + ': ' + reason}", file=sys.stderr)
    report = f"wrote {len(layers)} layer{'s' * (len(layers) > 1)} x {len(names)} images to {output}: {shapes}"
    if skipped:
        report += (f"; skipped {len(skipped)} image{'s' * (len(skipped) > 1)} that could not be decoded "
                   f"({', '.join(n for n, _ in skipped[:5])}{', ...' if len(skipped) > 5 else ''})")
    return report


def _check_layers(model, layers: list) -> list:
    if not layers:
        raise UsageError("name at least one --layer (see atlas layers MODEL)")
    known = [layer.name for layer in model.layers()]
    if NAMES_KEY in layers:
        raise UsageError(f"a layer named {NAMES_KEY!r} clashes with the image names array of the .npz file")
    for layer in layers:
        if layer not in known:
            near = difflib.get_close_matches(layer, known, n=3, cutoff=0.5)
            hint = f" (closest: {', '.join(near)})" if near else ""
            raise UsageError(f"unknown layer {layer!r}{hint}; list them with: atlas layers MODEL")
    return layers


def _common_size(source, skipped: list) -> Optional[tuple]:
    """The one size all images share, for a model that takes any size; otherwise ask for --size."""
    sizes: dict = {}
    for i in range(len(source)):
        try:
            sizes.setdefault(tuple(source.native_size(i)), source.names[i])
        except BadImage as exc:
            skipped.append((source.names[i], str(exc)))
    if len(sizes) > 1:
        examples = ", ".join(f"{h}x{w} ({name})" for (h, w), name in list(sizes.items())[:3])
        raise UsageError(f"the model takes any input size but the images come in {len(sizes)} sizes "
                         f"({examples}, ...): give --size HEIGHT,WIDTH to resize them all")
    return next(iter(sizes), None)


def _write_npz(output: Path, arrays: dict, names: np.ndarray) -> None:
    """An ``np.load``-able .npz written array by array (any key, memory-mapped arrays streamed), atomically."""
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, array in list(arrays.items()) + [(NAMES_KEY, names)]:
            with zf.open(key + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
    os.replace(partial, output)
