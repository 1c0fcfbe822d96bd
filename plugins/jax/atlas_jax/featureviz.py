"""Feature-visualization icons (the reference's recipe, REFERENCE.md section 4), batched in JAX.

Each icon is an image optimized so that the layer's activation at the centre position points along the
cell's direction:

- parameterization: a Fourier spectrum per icon, scaled by 1/frequency, inverse FFT, colour
  decorrelation (the ImageNet colour-correlation square root), sigmoid to [0, 1];
- the icon is seen at its own scale, one icon pixel per model pixel, through the graph's convolutional
  prefix (the lowering takes any spatial size up to a spatial layer), as the reference feeds its 80 px
  image to the model as it is; ``view=input`` resizes it to the model's input instead (the old way);
- transforms per step and per icon, the reference's: pad 2 (white), jitter 4, 4, 8, 8, 8, a random
  scale and rotation from its lists, jitter 2, where each jitter is a crop: the model sees a window of
  ``icon + 4 - 34`` pixels (50 for 80 px icons) at a random offset;
- objective: dot = mean(acts * v), cossim = max(0.1, dot / (1e-4 + |acts|)), maximize dot * cossim^p;
  with ``whiten=true``, v is replaced by the reference's v @ inv(moment);
- Adam; with several attempts, the one with the higher final objective (the whole icon, untransformed)
  is kept.

Every icon of a level is a row of one batch; ``batch`` rows (icons x attempts) share one compiled step.
The icons carry ``info["extent"]``: the input pixels they stand for, at which the atlas measures their
fidelity (``atlas_core.metrics.icon_fidelity``). docs/jax.md says where this differs from the reference
and why.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, Optional

import numpy as np

from atlas_core import INPUT, UsageError

DEFAULTS = {
    "steps": 256,       # lucid recipe 128, notebooks 512, production 1024
    "attempts": 1,      # the reference keeps the best of 1..4
    "p": 4.0,           # cossim power of the notebooks (recipe default 2)
    "lr": 0.05,
    "decay": 1.25,      # the spectrum is scaled by 1 / frequency ** decay (the reference: 1)
    "batch": 64,        # rows (icons x attempts) optimized together per compiled step, at most
    "view": "icon",     # "icon": at the icon's own scale (the reference); "input": resized to the model's input
    "transforms": True,
    "crop": True,       # the jitters crop (the reference): the model sees a window of the icon
    "jitter": "model",  # view=input only: jitters in the model's input pixels, or in the icon's ("icon")
    "whiten": False,    # the reference whitens (v @ inv(moment)); see docs/jax.md
    "preview": False,   # a quick look: 48 steps at lr 0.1, 1 attempt (where those are left at their defaults)
}
PREVIEW = {"steps": 48, "attempts": 1, "lr": 0.1}

# square root of the colour correlation of ImageNet (lucid's constant, a fact of the data)
COLOR_CORRELATION_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02],
                                         [0.27, 0.00, -0.05],
                                         [0.27, -0.09, 0.03]], dtype=np.float32)
COLOR_MATRIX = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
LUMINANCE = np.asarray([0.299, 0.587, 0.114], np.float32)

DECORRELATE = True  # colour decorrelation (else the channels are independent; a module setting for experiments)

PAD = 2
JITTERS = (4, 4, 8, 8, 8, 2)
SCALES = np.asarray([0.995 ** n for n in range(-5, 80)] + [0.998 ** n for n in 2 * list(range(20, 40))],
                    dtype=np.float32)
ANGLES = np.asarray(list(range(-20, 20)) + list(range(-10, 10)) + list(range(-5, 5)) + 5 * [0], dtype=np.float32)
MIN_SPATIAL = 3  # a layer map smaller than this at the icon's size has no centre to speak of: view=input


# -- parameterization ------------------------------------------------------------
def spectrum_scale(size: int, decay_power: float = 1.0) -> np.ndarray:
    """1/frequency ** decay_power weights of a ``size`` x ``size`` real FFT (size x (size//2+1))."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / size) ** decay_power
    return (scale * size).astype(np.float32)  # times sqrt(h * w)


def init_spectrum(key, n: int, size: int, sd: float = 0.01):
    """Random spectra (n, 3, size, size//2+1, 2): real and imaginary parts."""
    import jax
    return sd * jax.random.normal(key, (n, 3, size, size // 2 + 1, 2), dtype=np.float32)


def to_image(spectrum, scale, grey: bool = False):
    """Spectra -> float NHWC images in [0, 1]: inverse FFT, colour decorrelation, sigmoid (and the
    luminance in all three channels for a 1-channel model)."""
    import jax
    import jax.numpy as jnp
    size = spectrum.shape[2]
    complex_ = (spectrum[..., 0] + 1j * spectrum[..., 1]) * scale
    img = jnp.fft.irfft2(complex_, s=(size, size), axes=(2, 3)) / 4.0  # (n, 3, h, w)
    colour = COLOR_MATRIX if DECORRELATE else np.eye(3, dtype=np.float32)
    img = jax.nn.sigmoid(jnp.transpose(img, (0, 2, 3, 1)) @ jnp.asarray(colour.T))
    if grey:
        img = jnp.repeat(img @ jnp.asarray(LUMINANCE)[:, None], 3, axis=-1)
    return img


# -- transforms ------------------------------------------------------------------------
def random_affine(key, n: int, size: int, unit: float = 1.0):
    """Per-icon (scale, angle in radians, dy, dx in icon pixels) drawn from the reference's lists;
    the jitters are in pixels of ``unit`` icon pixels (the model's pixels when it sees the icon resized)."""
    import jax
    import jax.numpy as jnp
    k_s, k_a, k_j = jax.random.split(key, 3)
    scale = jnp.asarray(SCALES)[jax.random.randint(k_s, (n,), 0, len(SCALES))]
    angle = jnp.asarray(ANGLES)[jax.random.randint(k_a, (n,), 0, len(ANGLES))] * (math.pi / 180)
    # each jitter d crops at an offset in [0, d]: a translation of offset - d/2
    j = jnp.asarray(JITTERS, dtype=np.float32)
    offs = jax.random.randint(k_j, (n, 2, len(JITTERS)), 0, np.asarray(JITTERS) + 1).astype(np.float32)
    shift = jnp.sum(offs - j / 2, axis=-1) * unit
    return scale, angle, shift[:, 0], shift[:, 1]


def window_size(icon_size: int) -> int:
    """What the model sees of an icon per step when the jitters crop, as in the reference: the icon padded
    by 2 on each side, less the six jitters (34 pixels), at least 5/8 of the icon (small icons)."""
    return max(icon_size + 2 * PAD - sum(JITTERS), int(math.ceil(icon_size * 5 / 8)))


def warp(images, out_size: int, scale=None, angle=None, dy=None, dx=None, fill: float = 1.0,
         pitch: Optional[float] = None):
    """Resample NHWC icons onto an ``out_size`` grid (bilinear) about the icon's centre, optionally scaled,
    rotated and shifted; outside the icon (and its 2-pixel pad) is ``fill``, as the reference's white pad.
    ``pitch`` is icon pixels per output pixel: by default the grid spans the icon (a resize); 1 cuts a
    window of ``out_size`` icon pixels (the reference's crop)."""
    import jax.numpy as jnp
    n, size = images.shape[0], images.shape[1]
    pitch = size / out_size if pitch is None else pitch
    # output pixel centres in icon pixels, relative to the centre
    t = (jnp.arange(out_size, dtype=np.float32) + 0.5 - out_size / 2) * pitch
    gy, gx = jnp.meshgrid(t, t, indexing="ij")
    gy, gx = gy[None], gx[None]
    if scale is not None:
        s = scale[:, None, None]
        c, si = jnp.cos(angle)[:, None, None], jnp.sin(angle)[:, None, None]
        # inverse map: undo the shift, the rotation and the scale
        y0, x0 = gy - dy[:, None, None], gx - dx[:, None, None]
        gy, gx = (c * y0 - si * x0) / s, (si * y0 + c * x0) / s
    sy, sx = gy + size / 2 - 0.5, gx + size / 2 - 0.5
    if scale is None:  # a plain resize: clamp at the edges, as PIL's bilinear filter does
        sy, sx = jnp.clip(sy, 0, size - 1), jnp.clip(sx, 0, size - 1)
    padded = jnp.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)), constant_values=fill)
    sy, sx = sy + PAD, sx + PAD
    full = size + 2 * PAD
    y0f, x0f = jnp.floor(sy), jnp.floor(sx)
    wy, wx = (sy - y0f)[..., None], (sx - x0f)[..., None]
    y0i, x0i = y0f.astype(np.int32), x0f.astype(np.int32)
    flat = padded.reshape(n, full * full, 3)

    def tap(yi, xi):
        inside = ((yi >= 0) & (yi < full) & (xi >= 0) & (xi < full))[..., None]
        idx = (jnp.clip(yi, 0, full - 1) * full + jnp.clip(xi, 0, full - 1)).reshape(n, -1)
        v = jnp.take_along_axis(flat, idx[..., None], axis=1).reshape(idx.shape[:1] + yi.shape[1:] + (3,))
        return jnp.where(inside, v, fill)

    y0i = jnp.broadcast_to(y0i, (n,) + y0i.shape[1:])
    x0i = jnp.broadcast_to(x0i, (n,) + x0i.shape[1:])
    top = tap(y0i, x0i) * (1 - wx) + tap(y0i, x0i + 1) * wx
    bottom = tap(y0i + 1, x0i) * (1 - wx) + tap(y0i + 1, x0i + 1) * wx
    return top * (1 - wy) + bottom * wy


def resize_matrix(size: int, out_size: int) -> np.ndarray:
    """(out_size, size) bilinear resampling matrix, half-pixel centres and clamped edges (PIL's
    bilinear filter when enlarging; a triangle filter of the output's pixel width when shrinking)."""
    scale = size / out_size
    support = max(scale, 1.0)
    centres = (np.arange(out_size) + 0.5) * scale
    src = np.arange(size) + 0.5
    w = np.maximum(0.0, 1.0 - np.abs(src[None, :] - centres[:, None]) / support)
    # PIL clamps the window at the edges and renormalizes
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


# -- objective -------------------------------------------------------------------------------
def centre(acts):
    """The activation vector at the centre position (NHWC), or the vector itself (NC)."""
    if acts.ndim == 4:
        return acts[:, acts.shape[1] // 2, acts.shape[2] // 2, :]
    return acts


def objective(acts, targets, p: float):
    """Per-row dot * cossim^p of the reference (targets are already whitened, if at all: ``whitened``)."""
    import jax.numpy as jnp
    a = centre(acts)
    dot = jnp.mean(a * targets, axis=-1)
    mag = jnp.sqrt(jnp.sum(a * a, axis=-1))
    cossim = jnp.maximum(0.1, dot / (1e-4 + mag))
    return dot * cossim ** p


def whitened(directions: np.ndarray, moment: Optional[np.ndarray]) -> np.ndarray:
    """v @ S with S = inv(moment), the reference's whitening (a tiny ridge keeps a rank-deficient
    moment invertible); v itself without a moment."""
    v = np.asarray(directions, dtype=np.float64)
    if moment is None:
        return v.astype(np.float32)
    m = np.asarray(moment, dtype=np.float64)
    ridge = 1e-6 * max(float(np.mean(np.diag(m))), 1e-12)
    return (v @ np.linalg.inv(m + ridge * np.eye(len(m)))).astype(np.float32)


# -- the optimizer ------------------------------------------------------------------------------
class Plan:
    """What the model sees of an icon: ``icon`` pixels parameterized; per step a ``window`` of them (the
    reference's crop), or the whole icon resized to ``view`` = (height, width) model pixels (view=input)."""

    def __init__(self, icon: int, view: Optional[tuple] = None, crop: bool = True, jitter: str = "model",
                 grey: bool = False):
        self.icon, self.view, self.jitter, self.grey = int(icon), view, jitter, bool(grey)
        self.window = window_size(self.icon) if (crop and view is None) else self.icon

    def key(self) -> tuple:
        return (self.icon, self.view, self.window, self.jitter, self.grey)

    @property
    def extent(self) -> tuple:
        """The input pixels an icon stands for."""
        return tuple(self.view) if self.view is not None else (self.icon, self.icon)


def make_optimizer(apply: Callable, plan: Plan, p: float, lr: float, transforms: bool = True,
                   decay: float = 1.0):
    """``(step, final)``: ``step(params, state, targets, key, i)`` is one compiled Adam step of every row
    (state = (spectrum, m, v)); ``final(params, spectrum, targets)`` the objective of each whole,
    untransformed icon as the model sees it. Called once per step: XLA:CPU ran the same step twice as
    slowly inside a ``lax.fori_loop``, and on a GPU the calls queue up asynchronously."""
    import jax
    import jax.numpy as jnp
    size = plan.icon
    scale = jnp.asarray(spectrum_scale(size, decay))[None, None, :, :]
    if plan.view is not None:
        ry = jnp.asarray(resize_matrix(size, plan.view[0]))
        rx = jnp.asarray(resize_matrix(size, plan.view[1]))
        units = (size / plan.view[0], size / plan.view[1]) if plan.jitter == "model" else (1.0, 1.0)

    def view(spectrum, key=None):
        img = to_image(spectrum, scale, plan.grey)
        if plan.view is None:  # the icon at its own scale: per step a window (the reference's crops)
            if key is not None:
                s, a, dy, dx = random_affine(key, img.shape[0], size)
                img = warp(img, plan.window, s, a, dy, dx, pitch=1.0)
            return img
        if key is not None:
            s, a, dy, dx = random_affine(key, img.shape[0], size)
            img = warp(img, size, s, a, dy * units[0], dx * units[1])
        return jnp.einsum("ah,nhwc,bw->nabc", ry, img, rx)

    def loss(spectrum, params, targets, key):
        acts = apply(params, view(spectrum, key))
        return -jnp.sum(objective(acts, targets, p))

    grad = jax.grad(loss)
    b1, b2, eps = 0.9, 0.999, 1e-8

    def adam(i, state, g):
        x, m, v = state
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        t = (i + 1).astype(np.float32)
        lr_t = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return x - lr_t * m / (jnp.sqrt(v) + eps), m, v

    @jax.jit
    def step(params, state, targets, key, i):
        g = grad(state[0], params, targets, jax.random.fold_in(key, i) if transforms else None)
        return adam(i, state, g)

    @jax.jit
    def final(params, spectrum, targets):
        return objective(apply(params, view(spectrum)), targets, p)

    return step, final


def icon_function(grads, layer: str):
    """The JAX function from images to ``layer`` of a model's gradient capability (a one-line error when it
    is not JAX's)."""
    if grads is None or getattr(grads, "engine", None) != "jax":
        raise UsageError("featureviz needs the model's gradients in JAX (the JAX plugin gives them to ONNX, torch "
                         "and JAX models); use --icons exemplar")
    return grads.function(INPUT, [layer])


def open_scale(fn, layer: str, size: int, channels: int = 3) -> Optional[str]:
    """None if ``fn`` runs on ``size`` x ``size`` images up to a spatial ``layer`` whose map grows with the
    input (a convolutional prefix, so the icon can be seen at its own scale), else why not."""
    import jax
    import jax.numpy as jnp
    shapes = []
    for s in (size, 2 * size):
        try:
            out = jax.eval_shape(fn.apply, fn.params, jax.ShapeDtypeStruct((1, s, s, channels), jnp.float32))
        except Exception as exc:  # a Reshape to a fixed size, a Gemm: the graph wants its own input size
            return f"the graph up to {layer} does not take {s} px images ({type(exc).__name__})"
        shape = tuple(out[layer].shape)
        if len(shape) != 4:
            return f"{layer} is not a spatial layer"
        shapes.append(shape)
    (h, w), (h2, w2) = shapes[0][1:3], shapes[1][1:3]
    if h2 <= h or w2 <= w:
        return f"{layer}'s map does not grow with the input (it is not behind a convolutional prefix)"
    if min(h, w) < MIN_SPATIAL:
        return f"{layer}'s map is {h}x{w} at {size} px: too small for a centre position"
    return None


def _quiet(progress) -> bool:
    return progress is None or bool(getattr(getattr(progress, "__self__", None), "quiet", False))


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class FeatureVizRenderer:
    """Renderer ``featureviz``: one optimized image per cell direction."""

    name = "featureviz"
    options = DEFAULTS
    requires = frozenset({"gradients", "moment"})

    def __init__(self, stream=None):
        self.stream = stream  # where the time estimate goes (stderr)
        self.last_plan: Optional[Plan] = None

    def settings(self, request) -> dict:
        """The options of a request, checked, with ``preview`` applied."""
        opts = dict(DEFAULTS)
        opts.update({k: v for k, v in (request.options or {}).items() if k in DEFAULTS})
        for name in ("whiten", "transforms", "crop", "preview"):
            if not isinstance(opts[name], bool):
                raise UsageError(f"featureviz {name}={opts[name]!r}: use true or false")
        if opts["view"] not in ("icon", "input"):
            raise UsageError(f"featureviz view={opts['view']!r}: use icon (the icon at its own scale) or input "
                             "(resized to the model's input)")
        if opts["jitter"] not in ("model", "icon"):
            raise UsageError(f"featureviz jitter={opts['jitter']!r}: use model or icon")
        if opts["preview"]:
            for k, v in PREVIEW.items():
                if opts[k] == DEFAULTS[k]:
                    opts[k] = v
        for name, kind in (("steps", int), ("attempts", int), ("batch", int), ("p", float), ("lr", float),
                           ("decay", float)):
            try:
                opts[name] = kind(opts[name])
            except (TypeError, ValueError):
                raise UsageError(f"featureviz {name}={opts[name]!r}: use a {'whole ' * (kind is int)}number") \
                    from None
        return opts

    def plan(self, request, fn, opts) -> Plan:
        """Where the icon is seen: at its own scale where the graph allows it, else at the model's input."""
        size = int(request.icon_size)
        spec = getattr(request.model, "input_spec", None)
        grey = getattr(spec, "channels", 3) == 1
        model_size = fn.input_size or getattr(spec, "size", None)
        if opts["view"] == "icon":
            why = open_scale(fn, request.layer, window_size(size) if opts["crop"] else size)
            if why is None:
                return Plan(size, None, opts["crop"], grey=grey)
            if model_size is None:
                raise UsageError(f"featureviz cannot see the icon at its own scale: {why}")
            self.note(request, f"featureviz: the icon is seen resized to the model's input ({why})")
        if model_size is None:
            raise UsageError("featureviz view=input needs a model with a fixed input size; use view=icon")
        return Plan(size, (int(model_size[0]), int(model_size[1])), jitter=opts["jitter"], grey=grey)

    def grid_settings(self, options=None) -> dict:
        """The options of ``render_grid``, checked, defaults filled in (a one-line error for a bad one)."""
        from .gridviz import grid_settings
        return grid_settings(options)

    def render_grid(self, grads, layer: str, vectors, weights, options=None, seed: int = 0, model=None,
                    quiet: bool = True) -> dict:
        """Icons of every position of an activation grid, optimized together with shared NMF-group images
        (``atlas grid --icons featureviz``); see :func:`atlas_jax.gridviz.render_grid`."""
        from .gridviz import render_grid
        return render_grid(grads, layer, vectors, weights, options, seed=seed, model=model, quiet=quiet,
                           stream=self.stream)

    def note(self, request, text: str) -> None:
        if not _quiet(request.progress):
            stream = self.stream or sys.stderr
            stream.write(text + "\n")
            stream.flush()

    def render(self, request) -> list:
        import jax
        import jax.numpy as jnp
        from PIL import Image
        opts = self.settings(request)
        steps, attempts, batch = opts["steps"], max(1, opts["attempts"]), max(1, opts["batch"])
        size = int(request.icon_size)
        directions = np.asarray(request.directions, dtype=np.float32)
        n = len(directions)
        if n == 0:
            return []
        grads = request.gradients
        if grads is None:  # called outside a build: ask the model's capability
            from atlas_core.gradients import gradients
            grads = gradients(request.model)
        fn = icon_function(grads, request.layer)
        plan = self.last_plan = self.plan(request, fn, opts)
        targets = whitened(directions, request.moment if opts["whiten"] else None)
        decay = float(opts["decay"])
        config = plan.key() + (float(opts["p"]), float(opts["lr"]), opts["transforms"], decay, DECORRELATE)
        cache = fn.__dict__.setdefault("_optimizers", {})  # one compiled step per configuration
        if config not in cache:
            layer = request.layer
            cache[config] = make_optimizer(lambda p, x: fn.apply(p, x)[layer], plan, float(opts["p"]),
                                           float(opts["lr"]), opts["transforms"], decay)
        step, final = cache[config]
        rows = np.repeat(np.arange(n), attempts)  # row r optimizes direction rows[r]
        # as few batches of at most ``batch`` rows as there must be, as even as can be (little padding)
        batch = -(-len(rows) // -(-len(rows) // batch))
        batches = list(range(0, len(rows), batch))
        # commit every input where the weights are: a step called with uncommitted arrays first compiles
        # again when it gets its own (committed) outputs back
        leaves = jax.tree_util.tree_leaves(fn.params)
        where = getattr(leaves[0], "sharding", None) if leaves else None
        key = jax.random.PRNGKey(int(request.seed))
        best = np.full(n, -np.inf)
        images = [None] * n
        scale = jnp.asarray(spectrum_scale(size, decay))[None, None, :, :]
        progress = _Steps(request.progress, n, len(batches) * steps)
        for b, start in enumerate(batches):
            idx = rows[start:start + batch]
            real = len(idx)
            idx = np.concatenate([idx, np.repeat(idx[:1], batch - real)])  # one compiled shape
            k_init, k_run = jax.random.split(jax.random.fold_in(key, b))
            spectrum = init_spectrum(k_init, batch, size)
            zeros = jnp.zeros_like(spectrum)
            state, t_targets = (spectrum, zeros, zeros), jnp.asarray(targets[idx])
            if where is not None:
                state, t_targets, k_run = jax.device_put((state, t_targets, k_run), where)
            for i in range(steps):
                state = step(fn.params, state, t_targets, k_run, np.int32(i))
                progress.step(state[0])
                if b == 0 and i == min(steps - 1, 3):
                    self._estimate(request, progress, n, attempts, steps, batch, len(batches))
            score = np.asarray(final(fn.params, state[0], t_targets))
            pixels = np.asarray(to_image(state[0], scale, plan.grey))
            for r in range(real):
                d = int(idx[r])
                if score[r] > best[d] or images[d] is None:
                    best[d], images[d] = score[r], pixels[r]
        progress.close()
        out = []
        for img in images:
            icon = Image.fromarray(np.clip(np.round(img * 255), 0, 255).astype(np.uint8), "RGB")
            icon.info["extent"] = plan.extent
            out.append(icon)
        return out

    def _estimate(self, request, progress, n, attempts, steps, batch, batches) -> None:
        """Once the step is compiled and has run a few times: how long the rest will take."""
        per_step = progress.seconds_per_step()
        if per_step is None:
            return
        left = per_step * (batches * steps - progress.steps)
        self.note(request, f"featureviz: {n} icons x {attempts} attempt{'s' * (attempts > 1)} x {steps} steps, "
                           f"{batches} batch{'es' * (batches > 1)} of {batch} rows, {per_step * 1000:.0f} ms per "
                           f"step: about {_duration(left)} left")


class _Steps:
    """Per-step progress in icons: after each step the icons done so far in proportion to the steps done
    (integers, as the core's progress counts icons); times the steps after the first (which compiles)."""

    def __init__(self, progress, icons: int, total_steps: int):
        self.progress, self.icons, self.total = progress, icons, max(1, total_steps)
        self.steps, self.reported = 0, 0
        self.times: list = []

    def step(self, value) -> None:
        """After each step: its value (blocked on while timing the first steps, and before each report, so
        that what is reported is done, not only dispatched)."""
        self.steps += 1
        if self.steps <= 5:  # the first call compiles: time the next ones
            value.block_until_ready()
            self.times.append(time.perf_counter())
        done = self.icons * self.steps // self.total
        if self.progress is not None and done > self.reported:
            value.block_until_ready()
            self.progress(done - self.reported)
            self.reported = done

    def seconds_per_step(self) -> Optional[float]:
        if len(self.times) < 3:
            return None
        return (self.times[-1] - self.times[1]) / (len(self.times) - 2)

    def close(self) -> None:
        if self.progress is not None and self.reported < self.icons:
            self.progress(self.icons - self.reported)
            self.reported = self.icons
