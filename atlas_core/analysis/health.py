"""`atlas health`: dead, dormant and saturated channels of every chosen layer, in one pass over the images.

Every chosen layer is tapped at once; per-channel statistics are streamed (see ``channels.py``), so memory
does not grow with the number of images. With a held-out image set, each layer also gets a kNN two-sample
accuracy between the training images' and the held-out images' activations (one mean-pooled vector per
image, on a fixed random subsample of at most ``holdout_cap`` images per set). See docs/health.md.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from ..progress import Progress
from ..types import UsageError
from . import stream
from .channels import SATURATION_TOLERANCE, ChannelStats
from .similarity import two_sample_accuracy

DORMANT_THRESHOLD = 0.025  # ReDo's tau
SATURATED_SHARE = 0.99  # at a bound on at least this share of positions
HOLDOUT_CAP = 500  # images per set kept for the two-sample test
HOLDOUT_K = 10
THREADS = max(1, min(4, os.cpu_count() or 1))  # layers' statistics are computed in parallel (numpy frees the GIL)


def health(model, source, out, layers=None, holdout=None, dormant_threshold: float = DORMANT_THRESHOLD,
           batch_size: int = 32, quiet: bool = False, saturated_share: float = SATURATED_SHARE,
           holdout_cap: int = HOLDOUT_CAP, seed: int = 0) -> dict:
    """Run ``model`` over ``source`` with ``layers`` (None or "all": every layer; names, or a comma-separated
    string) tapped at once; write OUT/health.json, OUT/health.png and OUT/index.html; return the JSON's dict.

    ``model`` is an opened model (``atlas_core.models.open_model``) or a path; ``source`` and ``holdout`` are
    image sources (``atlas_core.images.open_source``) or their specs.
    """
    model, source, holdout = _open(model, source, holdout)
    chosen = stream.choose_layers(model, layers)
    stream.check_source(source)
    if holdout is not None:
        stream.check_source(holdout, "--holdout")
    if not 0 <= float(dormant_threshold) < float("inf"):
        raise UsageError(f"the dormant threshold must be a number >= 0 (ReDo uses 0.025); got {dormant_threshold}")
    batch_size = positive(batch_size, "the batch size")
    if not 0 < float(saturated_share) <= 1:
        raise UsageError(f"the saturated share must be in (0, 1]; got {saturated_share}")
    out = _out_dir(out)
    names = [layer.name for layer in chosen]
    per_call = stream.forward_batch(chosen, batch_size)

    keep = set(stream.fixed_subset(len(source), holdout_cap, seed).tolist()) if holdout is not None else set()
    decoder = stream.Decoder(source, model.input_spec.size)
    stats, kept, seen = channel_statistics(model, decoder, chosen, per_call, keep=keep, quiet=quiet)
    if not seen:
        raise UsageError(f"none of the {len(source)} images could be decoded; nothing written")

    separability: dict = {}
    held: dict = {}
    if holdout is not None:
        held, held_skipped = _pooled_pass(model, holdout, names, per_call, holdout_cap, seed + 1, quiet)
        for name in names:
            separability[name] = two_sample_accuracy(np.concatenate(kept[name]), held[name], k=HOLDOUT_K, seed=seed)

    report = {
        "model": str(getattr(model, "name", "")),
        "images": seen,
        "skipped": stream.skipped_report(decoder.skipped),
        "dormant_threshold": float(dormant_threshold),
        "saturated_share": float(saturated_share),
        "saturation_tolerance": SATURATION_TOLERANCE,
        "layers": [_layer_report(layer, stats[layer.name], dormant_threshold, saturated_share,
                                 separability.get(layer.name)) for layer in chosen],
    }
    if holdout is not None:
        report["holdout"] = {"images": len(next(iter(held.values()))) if held else 0,
                             "training_images_used": int(sum(len(p) for p in kept[names[0]])),
                             "skipped": stream.skipped_report(held_skipped), "k": HOLDOUT_K,
                             "cap": int(holdout_cap), "pool": "mean over positions", "metric": "euclidean"}
    report["summary"] = _summary(report["layers"])
    (out / "health.json").write_text(json.dumps(report, indent=1))
    from .draw import health_figure
    from .page import health_page
    health_figure(report, out / "health.png")
    health_page(report, out / "index.html")
    return report


def channel_statistics(model, decoder: stream.Decoder, layers: list, per_call: int, keep=frozenset(),
                       quiet: bool = True) -> tuple:
    """The pass itself: ``{name: ChannelStats}`` of ``layers`` over the images of ``decoder`` (``per_call`` images
    per forward call), the mean-pooled vectors of the images whose indices are in ``keep`` (``{name: [arrays]}``),
    and the number of images seen."""
    names = [layer.name for layer in layers]
    by_name = {layer.name: layer for layer in layers}
    kept: dict = {name: [] for name in names}
    stats: dict = {}
    progress = Progress("health", len(decoder.source), quiet=quiet)
    order = sorted(names, key=lambda n: -stream.per_image_bytes([by_name[n]]))  # big layers first
    seen = 0
    fetched = ((batch, stream.channel_values(model, batch.images, names)) for batch in decoder.batches(per_call))
    with ThreadPoolExecutor(THREADS) as pool:
        for batch, values in stream.prefetch(fetched):
            for name in names:
                if name not in stats:
                    a, axis = values[name]
                    stats[name] = ChannelStats(a.shape[3 - axis], by_name[name].op_type, by_name[name].bounds)
            list(pool.map(lambda n: stats[n].update(*values[n]), order))
            rows = [r for r, i in enumerate(batch.indices) if i in keep]
            if rows:
                for name in names:
                    a, axis = values[name]
                    kept[name].append(stream.pooled(a[rows], axis))
            seen += len(batch.indices)
            progress.update(seen + len(decoder.skipped) - progress.done)
    progress.close()
    return stats, kept, seen


def _open(model, source, holdout):
    if isinstance(model, (str, os.PathLike)):
        from ..models import open_model
        model = open_model(model)
    from ..images import open_source
    if isinstance(source, (str, os.PathLike)):
        source = open_source(str(source))
    if isinstance(holdout, (str, os.PathLike)):
        holdout = open_source(str(holdout))
    return model, source, holdout


def positive(value, what: str) -> int:
    """``value`` as a whole number >= 1, else a UsageError naming ``what``."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or (isinstance(value, float) and value != number):
        raise UsageError(f"{what} must be a positive whole number; got {value!r}")
    return number


def _out_dir(out) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file: give a folder to write the report into")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _pooled_pass(model, source, names: list, per_call: int, cap: int, seed: int, quiet: bool) -> tuple:
    """Mean-pooled vectors of every layer for a fixed random subset of at most ``cap`` images of ``source``."""
    subset = stream.fixed_subset(len(source), cap, seed)
    decoder = stream.Decoder(source, model.input_spec.size)
    parts: dict = {name: [] for name in names}
    with Progress("holdout", len(subset), quiet=quiet) as progress:
        for batch in decoder.batches(per_call, subset.tolist()):
            values = stream.channel_values(model, batch.images, names)
            for name in names:
                parts[name].append(stream.pooled(*values[name]))
            progress.update(len(batch.indices))
    if not parts[names[0]]:
        raise UsageError(f"--holdout: none of its {len(source)} images could be decoded")
    return {name: np.concatenate(p) for name, p in parts.items()}, decoder.skipped


def _layer_report(layer, s: ChannelStats, threshold: float, share: float, separability: Optional[float]) -> dict:
    verdicts = s.verdicts(threshold, share)
    sat = s.saturation_fraction
    entry = {
        "name": layer.name,
        "op_type": layer.op_type,
        "shape": list(layer.shape) if layer.shape is not None else None,
        "bounds": list(layer.bounds) if layer.bounds is not None else None,
        "channels": s.channels,
        "positions": s.positions // max(1, s.images),
        **verdicts,
        "active_fraction": _rounded(s.active_fraction),
        "mean_abs": _rounded(s.mean_abs),
        "max": _rounded(s.max),
        "min": _rounded(s.min),
        "dormant_score": _rounded(s.dormant_score),
        "saturation_fraction": _rounded(sat) if sat is not None else None,
    }
    if separability is not None:
        entry["holdout_separability"] = None if np.isnan(separability) else round(float(separability), 4)
    return entry


def _rounded(a: np.ndarray) -> list:
    return [float(f"{v:.6g}") for v in np.asarray(a, dtype=np.float64)]


def _summary(layers: list) -> dict:
    channels = sum(entry["channels"] for entry in layers)
    out = {"layers": len(layers), "channels": channels}
    for key in ("dead", "dormant", "saturated", "constant"):
        out[key] = sum(len(entry[key]) for entry in layers)
    return out


def summary_line(report: dict, out) -> str:
    """One line for the command to print after a run."""
    s = report["summary"]
    line = (f"wrote {Path(out) / 'health.json'}: {report['images']} images, {s['layers']} layers, {s['channels']} "
            f"channels: {s['dead']} dead, {s['dormant']} dormant, {s['saturated']} saturated, {s['constant']} constant")
    if "holdout" in report:
        seps = [e["holdout_separability"] for e in report["layers"] if e.get("holdout_separability") is not None]
        if seps:
            line += f"; holdout separability {min(seps):.3f} to {max(seps):.3f}"
    if report["skipped"]:
        line += f"; skipped {len(report['skipped'])} images that could not be decoded"
    return line
