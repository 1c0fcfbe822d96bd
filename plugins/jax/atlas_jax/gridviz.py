"""Feature-visualization icons for an activation grid: every position of one image's layer, optimized together.

The reference's activation grid (lucid's Building Blocks grid, REFERENCE.md section 6): the image of position
i is the decorrelated FFT image of ``own * its own spectrum + shared * sum_g w[i, g] * group spectrum g``, where
``w`` are the position's NMF group weights (each group scaled to a maximum of 1) and the ``k`` group spectra
are shared by every position. Positions with similar vectors share group images, so neighbouring icons stay
coherent. The objective is the featureviz renderer's: per position, dot * cossim^p of the layer's activation at
the icon's centre against the position's own vector, summed over positions; every position is a row of one
batch, optimized with Adam on the model's gradient capability (JAX), on CPU or GPU alike.

The parameterization, the transforms, the view at the icon's own scale and the objective are those of
:mod:`atlas_jax.featureviz`; only the sharing of spectra between rows is new here.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional

import numpy as np

from atlas_core import UsageError

from .featureviz import (Plan, centre, icon_function, init_spectrum, objective, open_scale, random_affine,
                         resize_matrix, spectrum_scale, to_image, warp, window_size)

GRID_DEFAULTS = {
    "steps": 64,        # the reference: 1024 (on a GPU); modest for a CPU
    "lr": 0.05,
    "p": 4.0,           # the featureviz renderer's cossim power
    "decay": 1.25,      # the renderer's spectrum decay
    "size": 0,          # icon pixels; 0: the smallest that the layer sees at its own scale with a centre
    "own": 0.7,         # the reference's weight of a position's own parameters
    "shared": 0.5,      # the reference's weight of the NMF-weighted group images
    "transforms": True,
    "crop": True,       # per step the model sees a window of the icon (the reference's jitters crop)
}
SIZES = range(24, 257, 8)  # candidates for size=0


def grid_settings(options: Optional[dict]) -> dict:
    """The grid's featureviz options, checked; an unknown one is a one-line error naming the valid ones."""
    opts = dict(GRID_DEFAULTS)
    for key, value in (options or {}).items():
        name = key.rpartition(".")[2]
        if name not in GRID_DEFAULTS:
            import difflib
            near = difflib.get_close_matches(name, list(GRID_DEFAULTS), n=2)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise UsageError(f"unknown featureviz grid option {name!r}{hint}; valid: {', '.join(GRID_DEFAULTS)}")
        opts[name] = value
    for name in ("transforms", "crop"):
        if not isinstance(opts[name], bool):
            raise UsageError(f"featureviz {name}={opts[name]!r}: use true or false")
    for name, kind in (("steps", int), ("size", int), ("lr", float), ("p", float), ("decay", float),
                       ("own", float), ("shared", float)):
        try:
            opts[name] = kind(opts[name])
        except (TypeError, ValueError):
            raise UsageError(f"featureviz {name}={opts[name]!r}: use a {'whole ' * (kind is int)}number") from None
    if opts["steps"] < 0 or opts["size"] < 0 or (opts["size"] and opts["size"] < 8):
        raise UsageError("featureviz steps must be >= 0 and size 0 (automatic) or at least 8 pixels")
    return opts


def grid_plan(fn, layer: str, opts: dict, model_size=None, grey: bool = False) -> Plan:
    """The icon size and where the model sees it: the given size (or the smallest of ``SIZES``) at its own
    scale when the layer has a centre there, else resized to the model's input."""
    crop = opts["crop"]
    seen = (lambda s: window_size(s) if crop else s)
    if opts["size"]:
        why = open_scale(fn, layer, seen(opts["size"]))
        if why is None:
            return Plan(opts["size"], None, crop, grey=grey)
        size = opts["size"]
    else:
        sizes = list(SIZES)  # the smallest that works: a larger window only gives a larger map
        why = open_scale(fn, layer, seen(sizes[-1]))
        if why is None:
            lo, hi = 0, len(sizes) - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if open_scale(fn, layer, seen(sizes[mid])) is None:
                    hi = mid
                else:
                    lo = mid + 1
            return Plan(sizes[lo], None, crop, grey=grey)
        size = 48
    if model_size is None:
        raise UsageError(f"featureviz grid icons cannot be seen at their own scale ({why}) and the model's input "
                         "size is open")
    return Plan(size, (int(model_size[0]), int(model_size[1])), grey=grey)


def _viewer(plan: Plan, decay: float):
    """Spectra -> what the model sees: a random window at the icon's own scale per step (the reference's
    transforms), the whole icon without a key; or the icon resized to the model's input (view=input)."""
    import jax.numpy as jnp
    size = plan.icon
    scale = jnp.asarray(spectrum_scale(size, decay))[None, None, :, :]
    if plan.view is not None:
        ry = jnp.asarray(resize_matrix(size, plan.view[0]))
        rx = jnp.asarray(resize_matrix(size, plan.view[1]))

    def view(spectrum, key=None):
        img = to_image(spectrum, scale, plan.grey)
        if key is not None:
            s, a, dy, dx = random_affine(key, img.shape[0], size)
            if plan.view is None:
                return warp(img, plan.window, s, a, dy, dx, pitch=1.0)
            img = warp(img, size, s, a, dy * size / plan.view[0], dx * size / plan.view[1])
        if plan.view is None:
            return img
        return jnp.einsum("ah,nhwc,bw->nabc", ry, img, rx)

    return view, scale


def make_grid_optimizer(apply: Callable, plan: Plan, p: float, lr: float, own: float, shared: float,
                        transforms: bool = True, decay: float = 1.0):
    """``(step, final, combine)``: ``step(params, state, targets, weights, key, i)`` is one compiled Adam step of
    every position (state = ((own spectra, group spectra), m, v)); ``final(params, x, targets, weights)`` gives
    (objective, cosine) of each whole, untransformed icon; ``combine(x, weights)`` each position's spectrum."""
    import jax
    import jax.numpy as jnp
    view, _ = _viewer(plan, decay)

    def combine(x, weights):
        mine, groups = x
        return own * mine + shared * jnp.einsum("nk,k...->n...", weights, groups)

    def loss(x, params, targets, weights, key):
        acts = apply(params, view(combine(x, weights), key))
        return -jnp.sum(objective(acts, targets, p))

    grad = jax.grad(loss)
    b1, b2, eps = 0.9, 0.999, 1e-8

    def adam(i, state, g):
        x, m, v = state
        m = jax.tree_util.tree_map(lambda m_, g_: b1 * m_ + (1 - b1) * g_, m, g)
        v = jax.tree_util.tree_map(lambda v_, g_: b2 * v_ + (1 - b2) * g_ * g_, v, g)
        t = (i + 1).astype(np.float32)
        lr_t = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        x = jax.tree_util.tree_map(lambda x_, m_, v_: x_ - lr_t * m_ / (jnp.sqrt(v_) + eps), x, m, v)
        return x, m, v

    @jax.jit
    def step(params, state, targets, weights, key, i):
        g = grad(state[0], params, targets, weights, jax.random.fold_in(key, i) if transforms else None)
        return adam(i, state, g)

    @jax.jit
    def final(params, x, targets, weights):
        acts = apply(params, view(combine(x, weights)))
        a = centre(acts)
        cos = jnp.sum(a * targets, -1) / (1e-12 + jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(targets, axis=-1))
        return objective(acts, targets, p), cos

    return step, final, combine


def render_grid(grads, layer: str, vectors: np.ndarray, weights: np.ndarray, options: Optional[dict] = None,
                seed: int = 0, model=None, quiet: bool = True, stream=None) -> dict:
    """Feature-visualization icons of every position of an activation grid, optimized together.

    ``vectors`` (positions, channels) are the layer's vectors at the image's positions, ``weights``
    (positions, groups) their NMF group weights (non-negative; each group is scaled to a maximum of 1 here).
    Returns ``{"icons": [PIL image per position], "groups": [PIL image per group: its shared image alone],
    "cosine": (positions,) cosine of the activation at each whole icon's centre to its vector, "objective",
    "size", "view", "seconds_per_step", "options"}``. Deterministic for a ``seed``.
    """
    import jax
    import jax.numpy as jnp
    from PIL import Image
    opts = grid_settings(options)
    fn = icon_function(grads, layer)
    spec = getattr(model, "input_spec", None)
    plans = fn.__dict__.setdefault("_grid_plans", {})  # the size search traces the graph: once per layer
    plan_key = (layer, opts["size"], opts["crop"])
    if plan_key not in plans:
        plans[plan_key] = grid_plan(fn, layer, opts, fn.input_size or getattr(spec, "size", None),
                                    grey=getattr(spec, "channels", 3) == 1)
    plan = plans[plan_key]
    vectors = np.asarray(vectors, np.float32)
    w = np.maximum(np.asarray(weights, np.float32), 0)
    w = w / np.maximum(w.max(axis=0, keepdims=True), 1e-12)
    n, k = w.shape
    config = ("grid",) + plan.key() + tuple(float(opts[x]) for x in ("p", "lr", "own", "shared", "decay")) + \
        (opts["transforms"],)
    cache = fn.__dict__.setdefault("_optimizers", {})
    if config not in cache:
        cache[config] = make_grid_optimizer(lambda pr, x: fn.apply(pr, x)[layer], plan, opts["p"], opts["lr"],
                                            opts["own"], opts["shared"], opts["transforms"], opts["decay"])
    step, final, combine = cache[config]
    key = jax.random.PRNGKey(int(seed))
    k_own, k_groups, k_run = jax.random.split(key, 3)
    x = (init_spectrum(k_own, n, plan.icon), init_spectrum(k_groups, k, plan.icon))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, x)
    state = (x, zeros, zeros)
    targets, t_weights = jnp.asarray(vectors), jnp.asarray(w)
    leaves = jax.tree_util.tree_leaves(fn.params)  # commit everything where the weights are (no recompiles)
    where = getattr(leaves[0], "sharding", None) if leaves else None
    if where is not None:
        state, targets, t_weights, k_run = jax.device_put((state, targets, t_weights, k_run), where)
    times = []
    for i in range(opts["steps"]):
        state = step(fn.params, state, targets, t_weights, k_run, np.int32(i))
        if i < 6 or i == opts["steps"] - 1:  # the first step compiles: time the others
            state[0][0].block_until_ready()
            times.append((i, time.perf_counter()))
        if i == 5 and not quiet:
            per = (times[-1][1] - times[1][1]) / 4
            (stream or sys.stderr).write(f"featureviz {layer}: {n} icons of {plan.icon} px, {per * 1000:.0f} ms per "
                                         f"step, about {per * (opts['steps'] - 6):.0f} s left\n")
    per_step = (times[-1][1] - times[0][1]) / (times[-1][0] - times[0][0]) if len(times) >= 2 else None
    score, cos = final(fn.params, state[0], targets, t_weights)
    _, scale = _viewer(plan, opts["decay"])
    pixels = np.asarray(to_image(combine(state[0], t_weights), scale, plan.grey))
    group_pixels = np.asarray(to_image(opts["shared"] * state[0][1], scale, plan.grey))

    def icon(a):
        im = Image.fromarray(np.clip(np.round(a * 255), 0, 255).astype(np.uint8), "RGB")
        im.info["extent"] = plan.extent
        return im
    return {"icons": [icon(a) for a in pixels], "groups": [icon(a) for a in group_pixels],
            "cosine": np.asarray(cos, np.float32), "objective": np.asarray(score, np.float32), "size": plan.icon,
            "view": "icon" if plan.view is None else "input", "seconds_per_step": per_step, "options": opts}
