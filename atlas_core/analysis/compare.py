"""`atlas compare`: linear CKA between every chosen layer of model A and every chosen layer of model B (or of A
with itself) on the same images, and the per-sample kNN overlap of one pair of layers.

Each image gives one vector per layer, the mean over its positions (layers of different spatial sizes compare
that way). CKA is accumulated from minibatches of ``cka_batch`` images (Nguyen et al. 2021), so memory stays
flat in the number of images; the kNN overlap is computed on a fixed random subsample of at most ``knn_cap``
images. See docs/health.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..images import BadImage
from ..progress import Progress
from ..receptive import receptive_field
from ..types import UsageError
from . import stream
from .health import _open, _out_dir, positive
from .similarity import MinibatchCKA, knn_overlap

CKA_BATCH = 256  # images per minibatch of HSIC terms
KNN_CAP = 2000  # images kept for the kNN overlap


def compare(model_a, model_b, source, out, layers_a=None, layers_b=None, knn_pair=None, k: int = 10,
            batch_size: int = 32, cka_batch: int = CKA_BATCH, knn_cap: int = KNN_CAP, seed: int = 0,
            quiet: bool = False, align=None, align_method=None, align_grid=None, align_reducer: str = "umap",
            labels=None, align_samples: str = "pool") -> dict:
    """CKA of ``layers_a`` of ``model_a`` against ``layers_b`` of ``model_b`` (None: of ``model_a`` itself) over
    ``source``; the kNN overlap (``k`` neighbours) of ``knn_pair`` = (layer of A, layer of B), by default the last
    chosen layer of each. Writes OUT/compare.json, OUT/compare.png and OUT/index.html; returns the JSON's dict.

    ``align`` = (layer of A, layer of B) also draws their aligned atlases on the same (at most ``knn_cap``)
    images (:mod:`atlas_core.analysis.align`: both methods measured, ``align_method`` drawn, ``align_grid``
    cells a side, reducer ``align_reducer``; ``labels``: ground truth per image of ``source``, or a CSV path or
    "folders", for the cells' labels; ``align_samples``: "pool", one mean-pooled vector per image, or
    "position", the vectors at one random inner position per image, the same for both layers, as the reference
    samples): OUT/aligned.json, aligned*.png, aligned.html.

    Layers are None or "all" (every layer), names, or a comma-separated string; models and sources may be
    given as opened objects or as paths."""
    model_a, source, _ = _open(model_a, source, None)
    same = model_b is None
    if not same:
        model_b, _, _ = _open(model_b, source, None)
    chosen_a = stream.choose_layers(model_a, layers_a)
    chosen_b = stream.choose_layers(model_a if same else model_b, layers_b if layers_b is not None or not same
                                    else [layer.name for layer in chosen_a])
    stream.check_source(source)
    k, cka_batch = positive(k, "k"), positive(cka_batch, "the CKA minibatch")
    batch_size = positive(batch_size, "the batch size")
    if cka_batch < MinibatchCKA.MIN_BATCH:
        raise UsageError(f"the CKA minibatch must hold at least {MinibatchCKA.MIN_BATCH} images; got {cka_batch}")
    names_a, names_b = [x.name for x in chosen_a], [x.name for x in chosen_b]
    pair = _pair(knn_pair, names_a, names_b, model_a, model_b if not same else model_a)
    aligned = grid_hw = None
    if align is None and labels is not None:
        raise UsageError("labels name the aligned atlases' cells: give --align LAYER_A,LAYER_B with --labels")
    if align is not None:
        aligned = _pair(align, names_a, names_b, model_a, model_b if not same else model_a, "--align")
        from .align import METHODS
        if align_method is not None and align_method not in METHODS:
            raise UsageError(f"--align-method must be one of {', '.join(METHODS)}; got {align_method!r}")
        if align_grid is not None:
            positive(align_grid, "--align-grid")
        from ..plugins import get_registry
        registry = get_registry()
        probe = registry.reducer(align_reducer, n_components=2, random_state=seed)  # an unknown one: refused now
        if align_method == "aligned-umap" and not callable(getattr(probe, "fit_transform_aligned", None)):
            raise UsageError(f"--align-method aligned-umap needs a reducer with fit_transform_aligned (umap); "
                             f"{align_reducer!r} has none")
        if labels is not None and not isinstance(labels, (list, tuple)):
            from ..labels import read_labels
            labels = read_labels(labels, source)
        if labels is not None and len(labels) != len(source):
            raise UsageError(f"labels: {len(labels)} for {len(source)} images")
        grid_hw = _position_grid(align_samples, aligned, model_a, model_a if same else model_b)
    out = _out_dir(out)

    extra_a = [aligned[0]] if aligned else []
    extra_b = [aligned[1]] if aligned else []
    taps_a = list(dict.fromkeys(names_a + [pair[0]] + extra_a + (names_b + [pair[1]] + extra_b if same else [])))
    taps_b = [] if same else list(dict.fromkeys(names_b + [pair[1]] + extra_b))
    by_a = {x.name: x for x in model_a.layers()}
    per_call = stream.forward_batch([by_a[n] for n in taps_a] + ([] if same else
                                    [{x.name: x for x in model_b.layers()}[n] for n in taps_b]), batch_size)
    size_a = model_a.input_spec.size
    size_b = None if same else model_b.input_spec.size
    keep = set(stream.fixed_subset(len(source), knn_cap, seed).tolist())
    knn_a: list = []
    knn_b: list = []
    knn_names: list = []
    knn_index: list = []
    align_a: list = []
    align_b: list = []
    cka = MinibatchCKA(len(names_a), len(names_b))
    pending_a: dict = {n: [] for n in names_a}
    pending_b: dict = {n: [] for n in names_b}
    pending = 0
    dropped = 0
    decoder = stream.Decoder(source, size_a)

    def flush():
        nonlocal pending, dropped
        xs_a = [np.concatenate(pending_a[n]) for n in names_a]
        xs_b = [np.concatenate(pending_b[n]) for n in names_b]
        if not cka.update(xs_a, None if same and names_b == names_a else xs_b):
            dropped += pending
        for d in (pending_a, pending_b):
            for n in d:
                d[n] = []
        pending = 0

    def fetch(batch):
        at_a = at_b = None
        if aligned and grid_hw:
            where = np.array([_inner_position(seed, i, grid_hw) for i in batch.indices]).reshape(-1, 2)
            flat = where[:, 0] * grid_hw[1] + where[:, 1]
            at_a = {aligned[0]: flat}
            at_b = {aligned[1]: flat}
            if same:
                at_a = {**at_a, **at_b}
        va = _pooled(model_a, batch.images, taps_a, at_a)
        if same:
            return va, va
        images_b = batch.images
        if size_b is not None and tuple(size_b) != tuple(batch.images.shape[1:3]):
            images_b = np.stack([_reload(source, i, size_b) for i in batch.indices])
        return va, _pooled(model_b, images_b, taps_b, at_b)

    progress = Progress("compare", len(source), quiet=quiet)
    seen = 0
    # a random order (fixed seed): each minibatch is then a random sample of the images, as the estimator needs
    order = np.random.default_rng(seed).permutation(len(source)).tolist()
    fetched = ((batch,) + fetch(batch) for batch in decoder.batches(per_call, order))
    for batch, va, vb in stream.prefetch(fetched):
        start = 0
        while start < len(batch.indices):  # fill minibatches of exactly cka_batch images
            take = min(cka_batch - pending, len(batch.indices) - start)
            for n in names_a:
                pending_a[n].append(va[n][start:start + take])
            for n in names_b:
                pending_b[n].append(vb[n][start:start + take])
            pending += take
            start += take
            if pending == cka_batch:
                flush()
        rows = [r for r, i in enumerate(batch.indices) if i in keep]
        if rows:
            knn_a.append(va[pair[0]][rows])
            knn_b.append(vb[pair[1]][rows])
            knn_names.extend(batch.names[r] for r in rows)
            knn_index.extend(batch.indices[r] for r in rows)
            if aligned:
                key_a, key_b = ((("at", aligned[0]), ("at", aligned[1])) if grid_hw else aligned)
                align_a.append(va[key_a][rows])
                align_b.append(vb[key_b][rows])
        seen += len(batch.indices)
        progress.update(seen + len(decoder.skipped) - progress.done)
    if pending:
        flush()
    progress.close()
    if not seen:
        raise UsageError(f"none of the {len(source)} images could be decoded; nothing written")
    if not cka.minibatches:
        raise UsageError(f"CKA needs at least {MinibatchCKA.MIN_BATCH} images; only {seen} could be decoded")

    matrix = cka.cka
    report = {
        "model_a": str(getattr(model_a, "name", "")),
        "model_b": None if same else str(getattr(model_b, "name", "")),
        "images": seen,
        "skipped": stream.skipped_report(decoder.skipped),
        "pool": "mean over positions",
        "estimator": "linear CKA from unbiased HSIC summed over minibatches (Nguyen et al. 2021)",
        "cka_batch": int(cka_batch),
        "minibatches": cka.minibatches,
        "images_not_in_cka": int(dropped),
        "layers_a": names_a,
        "layers_b": names_b,
        "cka": [[None if not np.isfinite(v) else round(float(v), 5) for v in row] for row in matrix],
    }
    if knn_a:
        overlap = knn_overlap(np.concatenate(knn_a), np.concatenate(knn_b), k) if len(knn_names) > 1 else \
            np.zeros(len(knn_names))
        report["knn"] = {"layer_a": pair[0], "layer_b": pair[1], "k": int(min(k, max(1, len(knn_names) - 1))),
                         "metric": "euclidean", "cap": int(knn_cap), "images": knn_names,
                         "overlap": [round(float(v), 4) for v in overlap], "mean": round(float(overlap.mean()), 4)}
    if aligned and knn_a:
        from .align import aligned_atlases
        b_model = model_a if same else model_b

        def load(row):  # the image of an aligned row, for its icon
            return _reload(source, knn_index[row], decoder.size)

        report["aligned"] = aligned_atlases(
            registry, np.concatenate(align_a), np.concatenate(align_b), knn_names,
            load, load,
            out, aligned[0], aligned[1], report["model_a"], str(getattr(b_model, "name", "")),
            method=align_method, reducer=align_reducer, grid=align_grid,
            labels=None if labels is None else [labels[i] for i in knn_index], seed=seed,
            where=None if not grid_hw else [_inner_position(seed, i, grid_hw) for i in knn_index],
            fields=None if not grid_hw else (receptive_field(model_a, aligned[0]),
                                             receptive_field(b_model, aligned[1])))
    (out / "compare.json").write_text(json.dumps(report, indent=1))
    from .draw import heatmap_figure
    from .page import compare_page
    b_name = report["model_b"] or report["model_a"]
    knn = report.get("knn")
    heatmap_figure(matrix, names_a, names_b, out / "compare.png",
                   f"Linear CKA: {report['model_a']} / {b_name} ({seen} images)",
                   f"rows: layers of {report['model_a']}; columns: layers of {b_name}; one mean-pooled vector "
                   "per image",
                   overlap=np.array(knn["overlap"]) if knn else None, k=knn["k"] if knn else 10,
                   overlap_title=(f"kNN overlap per image (k = {knn['k']}): {knn['layer_a']} / {knn['layer_b']}"
                                  if knn else ""))
    compare_page(report, out / "index.html")
    return report


def _pair(knn_pair, names_a: list, names_b: list, model_a, model_b, what: str = "the kNN pair") -> tuple:
    if knn_pair is None:
        return (names_a[-1], names_b[-1])
    if isinstance(knn_pair, str):
        knn_pair = knn_pair.split(",")
    pair = [str(p).strip() for p in knn_pair]
    if len(pair) == 1:
        pair = pair * 2
    if len(pair) != 2 or not all(pair):
        raise UsageError(f"{what} is one layer of A and one of B (LAYER_A,LAYER_B); got {knn_pair!r}")
    a = stream.choose_layers(model_a, [pair[0]])[0].name
    b = stream.choose_layers(model_b, [pair[1]])[0].name
    return (a, b)


def _pooled(model, images: np.ndarray, names: list, at: dict = None) -> dict:
    """Each layer's mean-pooled vectors; for the layers of ``at`` also, under ("at", layer), the vectors at the
    given flat position of each image."""
    values = stream.channel_values(model, images, names)
    out = {n: stream.pooled(v, axis) for n, (v, axis) in values.items()}
    for n, flat in (at or {}).items():
        v, axis = values[n]
        rows = np.arange(len(v))
        out[("at", n)] = np.asarray(v[rows, :, flat] if axis == 2 else v[rows, flat, :], np.float32)
    return out


def _position_grid(samples: str, pair: tuple, model_a, model_b):
    """None for pooled aligned samples; for "position", the (H, W) both layers share (else a UsageError)."""
    if samples == "pool":
        return None
    if samples != "position":
        raise UsageError(f"--align-samples must be pool or position; got {samples!r}")
    shapes = [{x.name: x for x in m.layers()}[n].shape for m, n in ((model_a, pair[0]), (model_b, pair[1]))]
    hw = [tuple(s[:2]) if s is not None and len(s) == 3 and None not in s[:2] else None for s in shapes]
    if hw[0] is None or hw[0] != hw[1]:
        raise UsageError(f"--align-samples position needs two spatial layers of one size; {pair[0]} is "
                         f"{_shape_text(shapes[0])}, {pair[1]} is {_shape_text(shapes[1])} (use pool)")
    return hw[0]


def _shape_text(shape) -> str:
    return "dense" if shape is not None and len(shape) == 1 else " x ".join(map(str, shape or ("?",)))


def _inner_position(seed: int, image: int, hw: tuple) -> tuple:
    """The one position (y, x) sampled from image ``image``: random, fixed by the seed and the image, away from
    the edges where the layer is at least 3 positions wide (the reference skips the first row and column)."""
    rng = np.random.default_rng([int(seed), int(image)])
    return tuple(int(rng.integers(1, n - 1)) if n >= 3 else int(rng.integers(0, n)) for n in hw)


def _reload(source, i: int, size) -> np.ndarray:
    try:
        return source.load(i, size)
    except BadImage as exc:  # it decoded a moment ago for model A
        raise UsageError(f"image {source.names[i]!r} could not be decoded again for model B: {exc}") from None


def summary_line(report: dict, out) -> str:
    """One line for the command to print after a run."""
    line = (f"wrote {Path(out) / 'compare.json'}: CKA of {len(report['layers_a'])} x {len(report['layers_b'])} "
            f"layers on {report['images']} images")
    if report.get("knn"):
        knn = report["knn"]
        line += f"; kNN overlap {knn['layer_a']} / {knn['layer_b']}: mean {knn['mean']:.3f} (k = {knn['k']})"
    if report.get("aligned"):
        al = report["aligned"]
        m = al["methods"][al["method"]]
        line += (f"; aligned atlases {al['layer_a']} / {al['layer_b']} ({al['method']}, trustworthiness "
                 f"{m['trustworthiness_a']:.3f} / {m['trustworthiness_b']:.3f}): {Path(out) / 'aligned.html'}")
    if report["skipped"]:
        line += f"; skipped {len(report['skipped'])} images that could not be decoded"
    return line
