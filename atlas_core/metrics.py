"""Quality measures of an atlas: layout trustworthiness, kNN label agreement, icon fidelity."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .images import resize


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosines(acts: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Cosine of every row of ``acts`` with ``direction``."""
    return _unit(acts) @ _unit(direction)


def centre_vector(act: np.ndarray) -> np.ndarray:
    """The activation vector at the centre position of NHWC activations (NC passes through)."""
    if act.ndim == 4:
        return act[:, act.shape[1] // 2, act.shape[2] // 2, :]
    return act


EXTENT = "extent"  # an icon's ``info`` key: (height, width) of input pixels it stands for


def neutral_colour(spec) -> np.ndarray:
    """The canonical colour the model sees as zero (its mean, ``mean / scale``), where that is a colour in
    [0, 1] other than black; mid grey otherwise (a model that takes raw pixels)."""
    mean = np.asarray(spec.mean, dtype=np.float64) / float(spec.scale or 1.0)
    if np.any(mean > 0) and np.all((mean >= 0) & (mean <= 1)):
        return mean.astype(np.float32)
    return np.full(len(mean), 0.5, np.float32)


def icon_fidelity(model, layer: str, icons: Sequence, directions: np.ndarray, batch_size: int = 32,
                  receptive_field: Optional[dict] = None) -> np.ndarray:
    """Cosine between each cell's direction and what its icon produces at the layer's centre position.

    Each icon is measured at the scale it stands for. An icon stands for ``icon.info["extent"]`` input
    pixels (a renderer may say so; featureviz does), else for the layer's ``receptive_field`` (an exemplar
    is that patch of its image), else for the whole input. At the whole input's size it is resized to the
    model's input; at a smaller extent it is resized to that extent and placed, on a canvas of the model's
    neutral colour (its mean: zero after normalization), where the centre position looks: centred on
    ((h // 2 + 0.5) * stride, (w // 2 + 0.5) * stride), as exemplar patches are cut. So every renderer is
    measured the same way, by what the layer sees of the icon alone at its own scale.
    """
    size = model.input_spec.size
    arrays = [np.asarray(icon, dtype=np.float32) / (255.0 if not isinstance(icon, np.ndarray) else 1.0)
              for icon in icons]
    if not arrays:
        return np.zeros(0, dtype=np.float32)
    if size is None:
        size = arrays[0].shape[:2]
    size = (int(size[0]), int(size[1]))
    extents = []
    for icon in icons:
        info = getattr(icon, "info", None) or {}
        extent = info.get(EXTENT) or (receptive_field or {}).get("size") or size
        extent = (min(int(round(float(extent[0]))), size[0]), min(int(round(float(extent[1]))), size[1]))
        extents.append(extent)
    centre = None
    if any(e != size for e in extents):
        centre = _centre_pixel(model, layer, size)
        background = neutral_colour(model.input_spec)
    views = []
    for a, extent in zip(arrays, extents):
        a = a[..., :3] if a.ndim == 3 else np.repeat(a[..., None], 3, axis=-1)
        if extent == size:
            views.append(resize(a, size))
            continue
        canvas = np.empty(size + (3,), np.float32)
        canvas[:] = background if len(background) == 3 else background[:1]
        patch = resize(a, extent)
        y0, x0 = int(round(centre[0] - extent[0] / 2)), int(round(centre[1] - extent[1] / 2))
        ys, xs = slice(max(y0, 0), min(y0 + extent[0], size[0])), slice(max(x0, 0), min(x0 + extent[1], size[1]))
        canvas[ys, xs] = patch[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        views.append(canvas)
    out = []
    for start in range(0, len(views), batch_size):
        act = model.activations(np.stack(views[start:start + batch_size]), [layer])[layer]
        out.append(centre_vector(act))
    produced = np.concatenate(out)
    return np.sum(_unit(produced) * _unit(directions), axis=1).astype(np.float32)


def _centre_pixel(model, layer: str, size: tuple) -> tuple:
    """Where in the input the layer's centre position looks: ((h // 2 + 0.5) * H / h, ...)."""
    shape = next((lyr.shape for lyr in model.layers() if lyr.name == layer), None)
    if shape is None or len(shape) != 3 or None in shape:
        probe = model.activations(np.full((1,) + size + (3,), 0.5, np.float32), [layer])[layer]
        shape = probe.shape[1:]
    if len(shape) != 3:
        return (size[0] / 2, size[1] / 2)
    h, w = shape[0], shape[1]
    return ((h // 2 + 0.5) * size[0] / h, (w // 2 + 0.5) * size[1] / w)


def trustworthiness(X: np.ndarray, Y: np.ndarray, k: int = 10, max_samples: int = 1000, seed: int = 0) -> float:
    """Trustworthiness (Venna & Kaski) of layout Y for data X, on a subsample, cosine in X."""
    rng = np.random.default_rng(seed)
    n = len(X)
    idx = rng.choice(n, size=min(n, max_samples), replace=False) if n > max_samples else np.arange(n)
    X, Y = _unit(X[idx]), np.asarray(Y[idx], dtype=np.float64)
    n = len(X)
    k = min(k, (n - 1) // 2) if n > 3 else 0
    if k < 1:
        return float("nan")
    dx = 1 - X @ X.T
    dy = ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    rank_x = np.argsort(np.argsort(dx, axis=1), axis=1)  # 0 = nearest
    nn_y = np.argsort(dy, axis=1)[:, :k]
    r = np.take_along_axis(rank_x, nn_y, axis=1) + 1
    penalty = np.clip(r - k, 0, None).sum()
    return float(1 - 2.0 / (n * k * (2 * n - 3 * k - 1)) * penalty)


def knn_agreement(Z: np.ndarray, labels: Sequence, k: int = 10, metric: str = "euclidean",
                  max_samples: int = 2000, seed: int = 0) -> Optional[float]:
    """Leave-one-out kNN accuracy: how often a sample's k neighbours vote for its own label."""
    labels = np.asarray(labels)
    if len(set(labels.tolist())) < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(Z), size=min(len(Z), max_samples), replace=False) if len(Z) > max_samples \
        else np.arange(len(Z))
    Z, labels = np.asarray(Z[idx], dtype=np.float64), labels[idx]
    if metric == "cosine":
        U = _unit(Z)
        d = 1 - U @ U.T
    else:
        d = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    k = min(k, len(Z) - 1)
    nn = np.argsort(d, axis=1)[:, :k]
    _, codes = np.unique(labels, return_inverse=True)
    votes = codes[nn]
    pred = np.array([np.bincount(v, minlength=codes.max() + 1).argmax() for v in votes])
    return float((pred == codes).mean())
