"""``atlas grid``: activation grids of one image at several layers, written as PNGs, ``grid.json`` and a page."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from atlas_core import INPUT, UsageError
from atlas_core.gradients import gradients
from atlas_core.labels import class_names
from atlas_core.stages.collect import classifier_output, probabilities
from atlas_core.store import atomic_write, atomic_write_text

from . import compute
from .icons import AtlasIcons, ExemplarIcons
from .page import write_page
from .render import layer_picture

FORMAT_VERSION = 1
ICON_MODES = ("atlas", "exemplar", "featureviz")


def load_image(path, size) -> np.ndarray:
    """One image file as canonical float32 HWC RGB in [0, 1] at the model's input size."""
    from atlas_core.images import BadImage, FolderSource, resize, to_rgb_array
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"image {str(path)!r} not found: give one image file")
    try:
        with Image.open(path) as im:
            im.load()
            return resize(to_rgb_array(im), size)
    except Exception as exc:
        raise UsageError(f"cannot decode {str(path)!r} as an image: {type(exc).__name__}: {exc}") from None


def _layers(model, names: Sequence[str]) -> list:
    known = {layer.name: k for k, layer in enumerate(model.layers())}
    layers = {layer.name: layer for layer in model.layers()}
    out = []
    for name in names:
        if name not in known:
            model.activations(np.zeros((1, *model.input_spec.size, 3), np.float32), [name])  # the backend's error
            raise UsageError(f"unknown layer {name!r}")
        if not layers[name].spatial:
            raise UsageError(f"layer {name!r} has no spatial positions (shape {layers[name].shape}); choose a layer "
                             "with H x W x C activations")
        out.append(layers[name])
    return sorted(out, key=lambda layer: known[layer.name])  # graph order: flows go from each to the next


def grid(model, image, layers: Sequence[str], out, *, atlases: Optional[dict] = None, icons: Optional[str] = None,
         images=None, class_name=None, n_groups: int = 6, size_mode: str = "area", flows: bool = True,
         icon_size: int = 48, atlas_level: Optional[int] = None, relax_maxpool: bool = True, seed: int = 0,
         attribution: bool = True, icon_options: Optional[dict] = None,
         backend: Optional[str] = None, input_options: Optional[dict] = None, quiet: bool = False) -> dict:
    """Activation grids of ``image`` at ``layers`` into folder ``out``; returns what grid.json holds.

    ``atlases`` maps a layer to a built atlas folder of it (``icons="atlas"``, the default when given);
    ``icons="exemplar"`` takes patches from those atlases' samples or from ``images``. ``class_name`` (default:
    the image's top class) is the class of the attribution maps; ``attribution=False`` skips the maps and the
    flows (the parts that need gradients). ``size_mode`` is ``area`` (an icon's area follows ‖h‖) or ``opacity``.
    ``icons="featureviz"`` optimizes a feature visualization of every position's vector, all positions of a layer
    together with shared NMF-group images (the gradient capability in JAX); ``icon_options`` are its options
    (``steps``, ``size``, ``lr``, ``p``, ``decay``, ``own``, ``shared``, ``transforms``, ``crop``).
    """
    from atlas_core.models import as_model
    t0 = time.perf_counter()
    atlases = dict(atlases or {})
    icons = icons or ("atlas" if atlases else "exemplar")
    if icons not in ICON_MODES:
        raise UsageError(f"--icons must be one of {', '.join(ICON_MODES)}, got {icons!r}")
    if size_mode not in ("area", "opacity"):
        raise UsageError(f"--size-mode must be area or opacity, got {size_mode!r}")
    m = as_model(model, backend=backend, **(input_options or {}))
    if m.input_spec.size is None:
        raise UsageError("the model's input size is open: give --size (e.g. --size 224)")
    chosen = _layers(m, list(dict.fromkeys(layers)))
    if not chosen:
        raise UsageError("name at least one layer: --layers L1,L2,...")
    missing = [layer.name for layer in chosen if icons == "atlas" and layer.name not in atlases]
    if missing:
        raise UsageError(f"atlas icons need an atlas of every layer: give --atlas {missing[0]}=DIR (or --icons "
                         "exemplar with --images DIR)")
    if icon_options and icons != "featureviz":
        raise UsageError(f"--icon-option applies to --icons featureviz, not {icons}")
    painter, fv_options = _featureviz(m, icon_options) if icons == "featureviz" else (None, None)
    picture = image if isinstance(image, np.ndarray) else load_image(image, m.input_spec.size)
    classifier = classifier_output(m, chosen[0].name)
    output = classifier.name if classifier else None
    acts = m.activations(picture[None], [layer.name for layer in chosen] + ([output] if output else []))
    names = class_names(m, classifier.shape[0]) if classifier else []
    result = {"version": FORMAT_VERSION, "model": Path(str(m.name)).name,
              "image": str(image) if not isinstance(image, np.ndarray) else "(array)",
              "input_size": list(m.input_spec.size), "icons": icons, "size_mode": size_mode, "layers": []}
    c = None
    if output:
        p = probabilities(acts[output].reshape(1, -1))[0]
        if class_name is not None:
            from atlas_core.classes.filters import resolve_class
            c = resolve_class(class_name, names)
        else:
            c = int(np.argmax(p))
        result["class"] = {"index": c, "name": names[c], "probability": round(float(p[c]), 5),
                           "top": [[names[k], round(float(p[k]), 5)] for k in np.argsort(-p)[:5]]}
    grads = gradients(m) if (attribution or painter is not None) else None  # lowering a graph costs seconds
    notes = []
    timings: dict = {}
    clock = [time.perf_counter()]

    def lap(name):
        now = time.perf_counter()
        timings[name] = round(timings.get(name, 0.0) + now - clock[0], 3)
        clock[0] = now
    if grads is None and attribution:
        notes.append("no gradients for this model (pip install ./plugins/jax): no attribution maps or flows")
    out = Path(out)
    (out / "icons").mkdir(parents=True, exist_ok=True)
    atomic_write(out / "image.png", lambda f: Image.fromarray((picture * 255 + 0.5).astype(np.uint8)).save(
        f, format="PNG"))
    for k, layer in enumerate(chosen):
        a = acts[layer.name][0]
        h, w, ch = a.shape
        lap("activations")
        entry = {"name": layer.name, "op_type": layer.op_type, "height": h, "width": w, "channels": ch,
                 "magnitude": compute.magnitude(a).round(5).tolist()}
        if attribution and grads is not None and c is not None:
            reason = grads.supports(layer.name, [output])
            if reason is None:
                cmap = compute.class_map(grads, layer.name, output, a, c, len(names), relax_maxpool)
                entry["class_attribution"] = {"class": names[c], "index": c, "map": cmap.round(6).tolist()}
            else:
                notes.append(f"{layer.name}: no class attribution ({reason})")
        lap("class_maps")
        maps, directions = compute.groups(a, n_groups, seed)
        lap("groups")
        entry["groups"] = [{"map": g.round(5).tolist()} for g in maps]
        chooser = None if painter else _icon_source(icons, m, layer.name, atlases, images, atlas_level, icon_size)
        if painter is not None:
            entry.update(_featureviz_icons(painter, fv_options, grads, layer.name, a, maps, out, k, seed, quiet))
            for g, rel in enumerate(entry.pop("group_icons")):
                entry["groups"][g]["icon"] = rel
        if chooser is not None:
            pick, score = chooser.choose(a.reshape(-1, ch))
            unique = sorted(set(pick.tolist()))
            files = []
            for u in unique:
                rel = f"icons/{k}/{u}.png"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                img = chooser.icon(u)
                atomic_write(out / rel, lambda f, img=img: img.save(f, format="PNG"))
                files.append(rel)
            index = {u: n for n, u in enumerate(unique)}
            entry["icon_files"] = files
            entry["icon_index"] = np.array([index[u] for u in pick.tolist()]).reshape(h, w).tolist()
            entry["icon_cosine"] = score.reshape(h, w).round(4).tolist()
            entry["icon_sources"] = [chooser.describe(u) for u in unique]
            if isinstance(chooser, AtlasIcons):
                entry["cell"] = pick.reshape(h, w).tolist()
                entry["atlas"] = {"dir": str(Path(atlases[layer.name]).resolve()), "grid": chooser.level["grid"],
                                  "renderer": chooser.renderer,
                                  "cells": [[cc["i"], cc["j"]] for cc in chooser.level["cells"]]}
            group_pick, _ = chooser.choose(directions)
            group_files = []
            for g, u in enumerate(group_pick.tolist()):
                rel = f"icons/{k}/group-{g}.png"
                img = chooser.icon(u)
                atomic_write(out / rel, lambda f, img=img: img.save(f, format="PNG"))
                group_files.append(rel)
            for g, rel in enumerate(group_files):
                entry["groups"][g]["icon"] = rel
        lap("icons")
        rel = f"grid-{k}-{_safe(layer.name)}.png"
        shot = layer_picture(out, entry, size_mode, icon_size)
        atomic_write(out / rel, lambda f: shot.save(f, format="PNG"))
        entry["picture"] = rel
        result["layers"].append(entry)
        lap("pictures")
    if flows and attribution and grads is not None:
        for k in range(len(chosen) - 1):
            early, late = chosen[k].name, chosen[k + 1].name
            reason = grads.supports(early, [late])
            if reason:
                notes.append(f"no flow from {early} to {late} ({reason})")
                continue
            matrix = compute.flow(grads, early, late, acts[early][0], acts[late][0])
            rel = f"flow-{k}.npy"
            atomic_write(out / rel, lambda f, mtx=matrix: np.save(f, mtx.astype(np.float16)))
            result["layers"][k + 1]["flow_from_previous"] = {"layer": early, "file": rel,
                                                             "shape": list(matrix.shape)}
    lap("flows")
    result["notes"] = notes
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["timings"] = timings
    write_page(out, result, _flow_data(out, result))
    lap("page")
    result["timings"] = timings
    atomic_write_text(out / "grid.json", json.dumps(result))
    if not quiet:
        for note in notes:
            print(f"note: {note}")
        cls = f" for class {result['class']['name']!r}" if "class" in result else ""
        print(f"activation grids of {len(chosen)} layers{cls} in {result['seconds']:.1f}s, written to "
              f"{out.resolve()} (index.html, grid.json, {', '.join(e['picture'] for e in result['layers'])})")
    return result


def _icon_source(mode, model, layer, atlases, images, level, icon_size):
    if mode == "atlas":
        return AtlasIcons(atlases[layer], layer, level)
    if mode == "exemplar":
        return ExemplarIcons(model, layer, folder=atlases.get(layer), images=images, icon_size=icon_size)
    raise UsageError(f"unknown icon mode {mode!r}")


def _featureviz(model, options):
    """The featureviz renderer that optimizes grids, checked before any work: the model needs the gradient
    capability in JAX, and the options must be its grid options."""
    from atlas_core.plugins import get_registry
    grads = gradients(model)
    if grads is None or getattr(grads, "engine", None) != "jax":
        raise UsageError("featureviz icons need the model's gradients in JAX, and no installed plugin gives them to "
                         f"this {type(model).__name__} (pip install ./plugins/jax); use --icons atlas or exemplar")
    registry = get_registry()
    if "featureviz" not in registry.names("renderers"):
        raise UsageError("featureviz icons need the featureviz renderer (pip install ./plugins/jax); use --icons "
                         "atlas or exemplar")
    painter = registry.renderer("featureviz")
    if not hasattr(painter, "render_grid"):
        raise UsageError("the installed featureviz renderer cannot optimize activation grids; use --icons atlas "
                         "or exemplar")
    return painter, painter.grid_settings(options)  # the options checked now, before any work


def _featureviz_icons(painter, options, grads, layer, acts, maps, out: Path, k: int, seed: int, quiet: bool) -> dict:
    """Every position's featureviz icon (one file each) and the groups' shared images, as grid.json entries."""
    h, w, ch = acts.shape
    weights = maps.reshape(len(maps), -1).T  # positions x groups: the NMF weights
    t = time.perf_counter()
    got = painter.render_grid(grads, layer, acts.reshape(-1, ch), weights, options, seed=seed,
                              quiet=quiet)
    files, group_files = [], []
    for n, img in enumerate(got["icons"]):
        rel = f"icons/{k}/fv-{n}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out / rel, lambda f, img=img: img.save(f, format="PNG"))
        files.append(rel)
    for g, img in enumerate(got["groups"]):
        rel = f"icons/{k}/fv-group-{g}.png"
        atomic_write(out / rel, lambda f, img=img: img.save(f, format="PNG"))
        group_files.append(rel)
    opts = got["options"]
    return {"icon_files": files, "icon_index": np.arange(h * w).reshape(h, w).tolist(),
            "icon_cosine": got["cosine"].reshape(h, w).round(4).tolist(),
            "icon_sources": [{"y": int(n // w), "x": int(n % w)} for n in range(h * w)],
            "featureviz": {"size": got["size"], "view": got["view"], "steps": opts["steps"], "seed": seed,
                           "options": opts, "objective_mean": round(float(np.mean(got["objective"])), 6),
                           "cosine_mean": round(float(np.mean(got["cosine"])), 4),
                           "seconds": round(time.perf_counter() - t, 2),
                           "seconds_per_step": None if got["seconds_per_step"] is None
                           else round(got["seconds_per_step"], 4)},
            "group_icons": group_files}


def _flow_data(out: Path, result: dict) -> dict:
    """Each flow as uint8 rows scaled to their own positive maximum, base64 (for the page)."""
    data = {}
    for k, entry in enumerate(result["layers"]):
        info = entry.get("flow_from_previous")
        if info:
            m = np.load(out / info["file"]).astype(np.float32)
            top = np.maximum(m.max(axis=1, keepdims=True), 1e-12)
            q = np.clip(np.round(255 * np.maximum(m, 0) / top), 0, 255).astype(np.uint8)
            data[k] = base64.b64encode(q.tobytes()).decode("ascii")
    return data


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:60]
