"""`atlas build`: images to a finished atlas.

Stages (each writes its artifact into the atlas folder and is reused when its
inputs did not change): collect -> lay out -> grid levels -> icons -> exports.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .collect import class_names, collect, find_layer
from .grid import choose_grids, make_level
from .images import ImageSource, open_source
from .layout import normalize, reduce
from .plugins import get_registry
from .progress import Progress
from .quality import icon_fidelity, knn_agreement, trustworthiness
from .store import SampleStore, fingerprint
from .types import IconRequest, UsageError

DEFAULT_LEVELS = (10, 20, 40)
DEMO_LAYER = "add_530"  # EfficientNet-Lite0 (dynamo export): the residual stream of stage 5, 14 x 14 x 112


def _log(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, flush=True)


def read_labels(path, source: ImageSource) -> list:
    """Ground-truth labels from a CSV of ``file,label`` rows, matched by relative path or file name."""
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r]
    except OSError as exc:
        raise UsageError(f"cannot read labels file {path}: {exc.strerror}") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "label"]:
        rows = rows[1:]
    by_name = {}
    for row in rows:
        if len(row) < 2:
            raise UsageError(f"labels file {path}: every row needs file,label; got {row}")
        by_name[row[0].strip()] = row[1].strip()
    labels = [by_name.get(name, by_name.get(Path(name).name)) for name in source.names]
    if not any(label is not None for label in labels):
        raise UsageError(f"no image of the source is named in labels file {path}")
    return labels


def _model(model, backend, options):
    if hasattr(model, "activations") and hasattr(model, "layers"):
        return model
    from .models import open_model
    return open_model(model, backend=backend, **(options or {}))


def build(model, images: Union[str, ImageSource], layer: str, out, *, backend: Optional[str] = None,
          reducer: str = "umap", reducer_params: Optional[dict] = None, icons: Sequence[str] = ("exemplar",),
          levels: Sequence[int] = DEFAULT_LEVELS, default_level: Optional[int] = None, min_count: int = 5,
          samples_per_image: int = 1, pool: bool = False, seed: int = 0, batch_size: int = 32,
          chunk_images: int = 256, labels=None, icon_size: int = 80, icon_options: Optional[dict] = None,
          quiet: bool = False, input_options: Optional[dict] = None):
    """Build an atlas of ``layer`` into folder ``out`` and return it as an :class:`atlas_core.atlas.Atlas`.

    ``model``: a model file, an import path, a framework object, or an opened Model.
    ``images``: a folder, a ``.npy`` file, ``"demo"``, or an ImageSource.
    ``labels``: a CSV path (file,label) or a list with one label per image.
    """
    registry = get_registry()
    timings: dict = {}
    out = Path(out)
    source = open_source(images) if isinstance(images, str) else images
    if not len(source):
        raise UsageError("the image source is empty")
    if samples_per_image < 1:
        raise UsageError("--samples-per-image must be at least 1")
    if min_count < 1:
        raise UsageError("--min-count must be at least 1")
    if not levels or min(levels) < 1:
        raise UsageError(f"grid sizes must be positive integers, got {list(levels)}")
    for name in icons:
        registry.get("renderers", name)  # fail early on an unknown renderer
    registry.get("reducers", reducer)  # ... and reducer
    reducer_params = dict(reducer_params or {})
    m = _model(model, backend, input_options)
    info = find_layer(m, layer)
    if info.shape is not None and len(info.shape) == 1 and not pool:
        _log(quiet, f"note: layer {layer!r} has no spatial dimensions ({info.shape[0]} values): "
                    "one sample per image (pooled)")
        pool = True
    out.mkdir(parents=True, exist_ok=True)
    ground_truth = labels
    if isinstance(labels, (str, Path)):
        ground_truth = read_labels(labels, source)

    # -- collect ------------------------------------------------------------
    config = {"model": getattr(m, "name", str(model)), "layer": layer, "images": fingerprint(list(source.names)),
              "n_images": len(source), "samples_per_image": samples_per_image, "pool": bool(pool), "seed": seed,
              "input": [m.input_spec.size, list(m.input_spec.mean), list(m.input_spec.std), m.input_spec.scale]}
    store = SampleStore(out / "store", config)
    _log(quiet, f"collecting {layer} ({'pooled' if pool else f'{samples_per_image} per image'}) from "
                f"{source.describe()} on {m.provider}")
    t = time.perf_counter()
    result = collect(m, source, layer, store, samples_per_image=samples_per_image, pool=pool, seed=seed,
                     batch_size=batch_size, chunk_images=chunk_images, quiet=quiet)
    timings["collect"] = time.perf_counter() - t
    acts = store.activations()
    prov = store.provenance()
    predictions = store.predictions()
    if len(acts) == 0:
        raise UsageError("no image could be decoded: nothing to atlas (see report.json)")

    # -- lay out ------------------------------------------------------------
    t = time.perf_counter()
    layout_key = fingerprint({"store": store.key, "reducer": reducer, "params": reducer_params, "seed": seed})
    raw_path, key_path = out / "layout.raw.npy", out / "layout.key"
    if raw_path.is_file() and key_path.is_file() and key_path.read_text() == layout_key:
        raw = np.load(raw_path)
        _log(quiet, f"layout: reusing {reducer} layout of {len(raw)} samples")
    else:
        bar = Progress("reduce", 1, quiet=quiet)
        raw = reduce(registry, reducer, acts, seed, reducer_params)
        bar.update(1)
        bar.close()
        np.save(raw_path, raw)
        key_path.write_text(layout_key)
    layout = normalize(raw)
    np.save(out / "layout.npy", layout)
    timings["reduce"] = time.perf_counter() - t

    # -- labels ---------------------------------------------------------------
    names = class_names(result["n_classes"]) if result["n_classes"] else []
    image_top = {int(k): v[0] for k, v in predictions["classes"].items()}
    if ground_truth is not None:
        image_labels, label_source = list(ground_truth), "ground truth"
    elif image_top and names:
        image_labels = [names[image_top[i]] if i in image_top else None for i in range(len(source))]
        label_source = "predicted"
    else:
        image_labels, label_source = None, None
    sample_labels = [image_labels[i] for i in prov[:, 0]] if image_labels is not None else None

    # -- grid levels and icons ------------------------------------------------
    grids = choose_grids(levels, len(acts))
    t = time.perf_counter()
    level_objs = [make_level(layout, acts, g, min_count, sample_labels) for g in grids]
    if not any(level.cells for level in level_objs):
        raise UsageError(f"no cell holds {min_count} samples at grids {grids}: lower --min-count or use coarser "
                         "--levels")
    timings["grid"] = time.perf_counter() - t
    rf = None
    if "exemplar" in icons:
        from .icons import receptive_field
        rf = _cached(out / "store" / "receptive_field.json", lambda: receptive_field(m, layer))
    moment = store.moment() if any(name != "exemplar" for name in icons) else None
    fidelity: dict = {}
    t = time.perf_counter()
    icon_paths: dict = {}
    for name in icons:
        renderer = registry.renderer(name)
        total = sum(len(level.cells) for level in level_objs)
        bar = Progress(f"icons:{name}", total, quiet=quiet)
        scores = []
        for level in level_objs:
            request = IconRequest(model=m, layer=layer, directions=level.directions,
                                  members=[c.members for c in level.cells], store=store, images=source,
                                  icon_size=icon_size, seed=seed, moment=moment,
                                  options=dict(icon_options or {}, receptive_field=rf), progress=bar.update)
            drawn = renderer.render(request)
            folder = out / "icons" / name / str(level.grid)
            folder.mkdir(parents=True, exist_ok=True)
            for cell, icon in zip(level.cells, drawn):
                rel = f"icons/{name}/{level.grid}/{cell.i}_{cell.j}.png"
                icon.save(out / rel)
                icon_paths[(name, level.grid, cell.i, cell.j)] = rel
            fid = icon_fidelity(m, layer, drawn, level.directions, batch_size=batch_size)
            for cell, f in zip(level.cells, fid):
                fidelity[(name, level.grid, cell.i, cell.j)] = float(f)
            scores.extend(fid.tolist())
        bar.close()
        _log(quiet, f"icons:{name}: median fidelity {np.median(scores):.3f} over {len(scores)} cells")
    timings["icons"] = time.perf_counter() - t

    # -- quality ----------------------------------------------------------------
    t = time.perf_counter()
    quality = {"trustworthiness": trustworthiness(np.asarray(acts), layout, seed=seed),
               "label_source": label_source}
    if sample_labels is not None:
        known = np.array([lab is not None for lab in sample_labels])
        if known.sum() > 10:
            labs = np.array([lab for lab in sample_labels if lab is not None], dtype=object)
            quality["knn_2d"] = knn_agreement(layout[known], labs, seed=seed)
            quality["knn_full"] = knn_agreement(np.asarray(acts)[known], labs, metric="cosine", seed=seed)
    quality["fidelity_median"] = {
        name: float(np.median([v for k, v in fidelity.items() if k[0] == name])) for name in icons}
    timings["quality"] = time.perf_counter() - t

    # -- exports ------------------------------------------------------------------
    t = time.perf_counter()
    from .export import write_exports
    default = default_level if default_level is not None else min(1, len(level_objs) - 1)
    if not 0 <= default < len(level_objs):
        raise UsageError(f"--default-level must be between 0 and {len(level_objs) - 1}")
    manifest = write_exports(out, model=str(getattr(m, "name", model)), layer=layer, layer_shape=info.shape,
                             reducer=reducer, reducer_params=reducer_params, source=source, prov=prov,
                             layout=layout, levels=level_objs, icons=list(icons), icon_paths=icon_paths,
                             fidelity=fidelity, predictions=predictions, class_names=names,
                             label_source=label_source, quality=quality, default_level=default, icon_size=icon_size, acts=acts,
                             receptive_field=rf)
    timings["export"] = time.perf_counter() - t
    skipped = predictions.get("skipped", [])
    report = {"skipped": [{"image": i, "name": n, "error": e} for i, n, e in skipped], "timings": timings,
              "n_images": len(source), "n_samples": int(len(acts))}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    _summary(quiet, out, manifest, timings, skipped)
    from .atlas import Atlas
    return Atlas(out)


def _cached(path: Path, compute):
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value))
    return value


def _summary(quiet, out, manifest, timings, skipped) -> None:
    if quiet:
        return
    q = manifest["quality"]
    parts = [f"trustworthiness {q['trustworthiness']:.3f}"]
    if q.get("knn_2d") is not None:
        parts.append(f"kNN label agreement 2-D {q['knn_2d']:.3f} vs full {q['knn_full']:.3f} ({q['label_source']})")
    for name, value in q["fidelity_median"].items():
        parts.append(f"{name} fidelity {value:.3f}")
    print("quality: " + "; ".join(parts))
    if skipped:
        print(f"skipped {len(skipped)} images that could not be decoded (listed in {out / 'report.json'})")
    print("times: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()) +
          f"; total {sum(timings.values()):.1f}s")
    print(f"atlas written to {out.resolve()} (atlas.png, index.html, atlas.json)")


# -- command line ----------------------------------------------------------------------
def add_build_arguments(p) -> None:
    p.add_argument("--images", help="folder of images (recursive), a .npy array, or demo")
    p.add_argument("--layer", help="layer to atlas (see atlas layers MODEL)")
    p.add_argument("--out", default="atlas-out", help="output folder (default atlas-out)")
    p.add_argument("--reducer", default="umap", help="umap (default), tsne, pca, or a plugin's")
    p.add_argument("--reducer-param", action="append", default=[], metavar="KEY=VALUE",
                   help="reducer hyperparameter, e.g. n_neighbors=20 (repeat)")
    p.add_argument("--icons", default="exemplar", help="renderers, comma-separated: exemplar, featureviz")
    p.add_argument("--icon-size", type=int, default=80, help="icon size in pixels (default 80)")
    p.add_argument("--icon-option", action="append", default=[], metavar="KEY=VALUE",
                   help="renderer option, e.g. steps=512, attempts=2, p=4 (repeat)")
    p.add_argument("--levels", default=",".join(map(str, DEFAULT_LEVELS)),
                   help="grid sizes, comma-separated (default 10,20,40; capped by the sample count)")
    p.add_argument("--default-level", type=int, help="index of the level drawn in atlas.png (default 1)")
    p.add_argument("--min-count", type=int, default=5, help="minimum samples for a cell to be kept (default 5)")
    p.add_argument("--samples-per-image", type=int, default=1, help="random positions per image (default 1)")
    p.add_argument("--pool", choices=["none", "mean"], default="none", help="mean: one vector per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", help="CSV of file,label rows: ground-truth labels")
    p.add_argument("--chunk-images", type=int, default=256, help="images per store chunk (default 256)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _key_values(items, what) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{what} must be KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _grids(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--levels must be comma-separated integers, e.g. 10,20,40; got {text!r}") from None


def build_from_args(args) -> int:
    model = args.model_opt or args.model
    if not model:
        raise UsageError("give a model: atlas build MODEL ... or --model package.module:function")
    if not args.images:
        raise UsageError("give --images: a folder of images, a .npy array, or demo")
    if not args.layer:
        raise UsageError(f"give --layer (list them with: atlas layers {model})")
    options = dict(preset=args.preset, mean=args.mean, std=args.std, scale=args.scale, size=args.size,
                   batch_size=args.batch_size, threads=args.threads, device=args.device)
    build(model, args.images, args.layer, args.out, backend=args.backend, reducer=args.reducer,
          reducer_params=_key_values(args.reducer_param, "--reducer-param"),
          icons=[s.strip() for s in args.icons.split(",") if s.strip()], levels=_grids(args.levels),
          default_level=args.default_level, min_count=args.min_count, samples_per_image=args.samples_per_image,
          pool=args.pool == "mean", seed=args.seed, batch_size=args.batch_size, chunk_images=args.chunk_images,
          labels=args.labels, icon_size=args.icon_size, icon_options=_key_values(args.icon_option, "--icon-option"),
          quiet=args.quiet, input_options=options)
    return 0


def demo(args) -> int:
    try:
        import atlas_demo
    except ImportError:
        raise UsageError("the demo needs the demo package: pip install ./plugins/demo") from None
    model = atlas_demo.efficientnet_lite0_onnx("dynamo")
    _log(args.quiet, f"demo: EfficientNet-Lite0 (real ImageNet weights) at {model}")
    build(str(model), atlas_demo.demo_images(), DEMO_LAYER, args.out, reducer=args.reducer,
          samples_per_image=2, levels=(10, 20, 40), quiet=args.quiet)
    return 0
