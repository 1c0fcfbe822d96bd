"""ONNX operators as JAX (or, for shape arithmetic, numpy) functions.

Each lowering has the signature ``op(ctx, inputs, attrs) -> list of outputs``.
``ctx.xp`` is numpy when every input is a compile-time constant (shape
arithmetic is folded while tracing) and ``jax.numpy`` otherwise; ``ctx.opset``
is the graph's default-domain opset. Missing optional inputs are ``None``.
Tensors keep ONNX semantics (NCHW for images).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import numpy as np

import jax
import jax.numpy as jnp
from jax import lax

OPS: dict[str, Callable] = {}
# ops that may run in numpy when all inputs are constants (the rest always run in JAX)
FOLDABLE = set()

# how depthwise convolutions are lowered: "shift" (sum of shifted slices; fast on XLA:CPU) or "lax"
DEPTHWISE = "shift"
CONV_LAYOUT = "nchw"
# how 1x1 convolutions are lowered: "dot" (a matrix product; faster on XLA:CPU) or "conv"
POINTWISE = "dot"


def op(*names, fold=False):
    def deco(fn):
        for n in names:
            OPS[n] = fn
            if fold:
                FOLDABLE.add(n)
        return fn
    return deco


def static(v, what="value") -> np.ndarray:
    """A compile-time constant as numpy (shapes, axes, pads...)."""
    if v is None:
        return None
    if isinstance(v, (np.ndarray, np.generic, int, float, list, tuple)):
        return np.asarray(v)
    try:
        return np.asarray(v)  # concrete jax arrays
    except Exception:
        raise NotImplementedError(f"{what} must be a constant, but it is computed from the input") from None


def ints(v, what="value") -> list:
    return [int(i) for i in static(v, what).reshape(-1)]


def _axis(a, rank):
    return a + rank if a < 0 else a


# -- elementwise ------------------------------------------------------------
def _unary(name, fn):
    OPS[name] = lambda ctx, x, a: [fn(ctx.xp, x[0])]


_unary("Relu", lambda xp, x: xp.maximum(x, 0))
_unary("Sigmoid", lambda xp, x: jax.nn.sigmoid(x))
_unary("Tanh", lambda xp, x: xp.tanh(x))
_unary("Sqrt", lambda xp, x: xp.sqrt(x))
_unary("Exp", lambda xp, x: xp.exp(x))
_unary("Log", lambda xp, x: xp.log(x))
_unary("Abs", lambda xp, x: xp.abs(x))
_unary("Neg", lambda xp, x: -x)
_unary("Reciprocal", lambda xp, x: 1.0 / x)
_unary("Floor", lambda xp, x: xp.floor(x))
_unary("Ceil", lambda xp, x: xp.ceil(x))
_unary("Erf", lambda xp, x: jax.scipy.special.erf(x))
_unary("Softplus", lambda xp, x: jax.nn.softplus(x))
_unary("Softsign", lambda xp, x: x / (1 + xp.abs(x)))
_unary("Mish", lambda xp, x: x * xp.tanh(jax.nn.softplus(x)))
_unary("HardSwish", lambda xp, x: x * xp.clip(x / 6.0 + 0.5, 0.0, 1.0))
_unary("Not", lambda xp, x: xp.logical_not(x))
for _n in ("Abs", "Neg", "Floor", "Ceil", "Sqrt", "Not"):
    FOLDABLE.add(_n)


@op("LeakyRelu")
def leaky_relu(ctx, x, a):
    alpha = a.get("alpha", 0.01)
    return [jnp.where(x[0] >= 0, x[0], alpha * x[0])]


@op("Elu")
def elu(ctx, x, a):
    alpha = a.get("alpha", 1.0)
    return [jnp.where(x[0] > 0, x[0], alpha * (jnp.exp(x[0]) - 1))]


@op("Selu")
def selu(ctx, x, a):
    alpha, gamma = a.get("alpha", 1.67326319217681884765625), a.get("gamma", 1.05070102214813232421875)
    return [gamma * jnp.where(x[0] > 0, x[0], alpha * (jnp.exp(x[0]) - 1))]


@op("PRelu")
def prelu(ctx, x, a):
    return [jnp.where(x[0] >= 0, x[0], x[0] * x[1])]


@op("HardSigmoid")
def hard_sigmoid(ctx, x, a):
    return [jnp.clip(a.get("alpha", 0.2) * x[0] + a.get("beta", 0.5), 0.0, 1.0)]


@op("Gelu")
def gelu(ctx, x, a):
    approx = a.get("approximate", "none")
    return [jax.nn.gelu(x[0], approximate=(approx == "tanh"))]


@op("Clip", fold=True)
def clip(ctx, x, a):
    lo, hi = (x + [None, None])[1:3]
    if ctx.opset < 11:
        lo, hi = a.get("min"), a.get("max")
    y = x[0]
    if lo is not None:
        y = ctx.xp.maximum(y, lo)
    if hi is not None:
        y = ctx.xp.minimum(y, hi)
    return [y]


def _binary(name, fn):
    OPS[name] = lambda ctx, x, a: [fn(ctx.xp, x[0], x[1])]
    FOLDABLE.add(name)


def _div(xp, a, b):
    """ONNX Div: integer division truncates towards zero."""
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return xp.trunc(a / b).astype(a.dtype)
    return a / b


_binary("Add", lambda xp, a, b: a + b)
_binary("Sub", lambda xp, a, b: a - b)
_binary("Mul", lambda xp, a, b: a * b)
_binary("Div", _div)
_binary("Pow", lambda xp, a, b: xp.power(a, b).astype(a.dtype) if xp is np else jnp.power(a, b).astype(a.dtype))
_binary("Equal", lambda xp, a, b: xp.equal(a, b))
_binary("Less", lambda xp, a, b: xp.less(a, b))
_binary("Greater", lambda xp, a, b: xp.greater(a, b))
_binary("And", lambda xp, a, b: xp.logical_and(a, b))
_binary("Or", lambda xp, a, b: xp.logical_or(a, b))
_binary("Mod", lambda xp, a, b: xp.mod(a, b))


def _variadic(name, fn):
    def lower(ctx, x, a):
        y = x[0]
        for v in x[1:]:
            y = fn(ctx.xp, y, v)
        return [y]
    OPS[name] = lower
    FOLDABLE.add(name)


_variadic("Sum", lambda xp, a, b: a + b)
_variadic("Max", lambda xp, a, b: xp.maximum(a, b))
_variadic("Min", lambda xp, a, b: xp.minimum(a, b))


@op("Mean", fold=True)
def mean(ctx, x, a):
    y = x[0]
    for v in x[1:]:
        y = y + v
    return [y / len(x)]


@op("Where", fold=True)
def where(ctx, x, a):
    return [ctx.xp.where(x[0], x[1], x[2])]


# -- constants and shapes -----------------------------------------------------
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
          10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


@op("Constant", fold=True)
def constant(ctx, x, a):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            v = a[key]
            if key == "value":
                return [v]
            return [np.asarray(v, dtype=np.float32 if "float" in key else np.int64)]
    raise NotImplementedError("Constant without a numeric value")


@op("ConstantOfShape", fold=True)
def constant_of_shape(ctx, x, a):
    shape = tuple(ints(x[0], "ConstantOfShape shape"))
    value = a.get("value", np.zeros(1, np.float32))
    v = np.asarray(value).reshape(-1)[0]
    if int(np.prod(shape)) > 4096:  # large (e.g. weights of the onnx test graphs): let XLA broadcast it
        return [jnp.full(shape, v, dtype=np.asarray(value).dtype)]
    return [np.full(shape, v, dtype=np.asarray(value).dtype)]


@op("Shape", fold=True)
def shape(ctx, x, a):
    s = np.asarray(x[0].shape, dtype=np.int64)
    rank = len(s)
    start = a.get("start", 0)
    end = a.get("end", rank)
    return [s[_axis(start, rank) if start < 0 else start: _axis(end, rank) if end < 0 else end]]


@op("Size", fold=True)
def size(ctx, x, a):
    return [np.asarray(int(np.prod(x[0].shape)), dtype=np.int64)]


@op("Cast", fold=True)
def cast(ctx, x, a):
    to = DTYPES.get(a["to"])
    if to is None:
        raise NotImplementedError(f"Cast to ONNX type {a['to']}")
    return [x[0].astype(to)]


@op("Identity", fold=True)
def identity(ctx, x, a):
    return [x[0]]


@op("Dropout")
def dropout(ctx, x, a):
    """Inference: the input itself, and a mask of ones (of the input's type before opset 10, boolean after)."""
    mask = jnp.ones(x[0].shape, dtype=x[0].dtype if ctx.opset < 10 else bool)
    return [x[0], mask]


@op("Reshape", fold=True)
def reshape(ctx, x, a):
    target = ints(x[1], "Reshape shape") if ctx.opset >= 5 else list(a["shape"])
    allowzero = a.get("allowzero", 0)
    shape_in = x[0].shape
    out = [shape_in[i] if (t == 0 and not allowzero) else t for i, t in enumerate(target)]
    return [ctx.xp.reshape(x[0], out)]


@op("Flatten", fold=True)
def flatten(ctx, x, a):
    axis = _axis(a.get("axis", 1), x[0].ndim)
    s = x[0].shape
    return [ctx.xp.reshape(x[0], (int(np.prod(s[:axis])), int(np.prod(s[axis:]))))]


@op("Transpose", fold=True)
def transpose(ctx, x, a):
    perm = a.get("perm") or list(range(x[0].ndim))[::-1]
    return [ctx.xp.transpose(x[0], perm)]


def _axes(ctx, x, a, index, since):
    if ctx.opset >= since:
        return ints(x[index], "axes") if len(x) > index and x[index] is not None else None
    return a.get("axes")


@op("Squeeze", fold=True)
def squeeze(ctx, x, a):
    axes = _axes(ctx, x, a, 1, 13)
    if axes is None:
        axes = [i for i, d in enumerate(x[0].shape) if d == 1]
    return [ctx.xp.squeeze(x[0], axis=tuple(_axis(i, x[0].ndim) for i in axes))]


@op("Unsqueeze", fold=True)
def unsqueeze(ctx, x, a):
    axes = _axes(ctx, x, a, 1, 13)
    rank = x[0].ndim + len(axes)
    y = x[0]
    for ax in sorted(_axis(i, rank) for i in axes):
        y = ctx.xp.expand_dims(y, ax)
    return [y]


@op("Concat", fold=True)
def concat(ctx, x, a):
    parts = [v for v in x if v is not None and not (v.ndim == 1 and v.shape[0] == 0)] or x[:1]
    return [ctx.xp.concatenate(parts, axis=a["axis"])]


@op("Split")
def split(ctx, x, a):
    axis = _axis(a.get("axis", 0), x[0].ndim)
    n_out = ctx.n_outputs
    if ctx.opset >= 13:
        sizes = ints(x[1], "split") if len(x) > 1 and x[1] is not None else None
    else:
        sizes = a.get("split")
    if sizes is None:
        total = x[0].shape[axis]
        n = a.get("num_outputs", n_out)
        chunk = -(-total // n)
        sizes = [min(chunk, total - i * chunk) for i in range(n)]
    cuts = np.cumsum(sizes)[:-1].tolist()
    xp = ctx.xp
    return list(xp.split(x[0], cuts, axis=axis))


FOLDABLE.add("Split")


@op("Slice", fold=True)
def slice_(ctx, x, a):
    data = x[0]
    if ctx.opset < 10:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts, ends = ints(x[1], "Slice starts"), ints(x[2], "Slice ends")
        axes = ints(x[3], "Slice axes") if len(x) > 3 and x[3] is not None else None
        steps = ints(x[4], "Slice steps") if len(x) > 4 and x[4] is not None else None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        dim = data.shape[_axis(ax, data.ndim)]
        # clamp like the ONNX spec (huge ends mean "to the end")
        s = max(-dim - 1, min(dim, s))
        e = max(-dim - 1, min(dim, e))
        if st < 0 and e < -dim:
            e = None
        index[_axis(ax, data.ndim)] = slice(s, e, st)
    return [data[tuple(index)]]


@op("Gather", fold=True)
def gather(ctx, x, a):
    axis = _axis(a.get("axis", 0), x[0].ndim)
    idx = x[1]
    if isinstance(idx, np.ndarray):
        idx = np.where(idx < 0, idx + x[0].shape[axis], idx)
    else:
        idx = jnp.where(idx < 0, idx + x[0].shape[axis], idx)
    return [ctx.xp.take(x[0], idx, axis=axis)]


@op("Expand", fold=True)
def expand(ctx, x, a):
    shape = ints(x[1], "Expand shape")
    out = np.broadcast_shapes(tuple(x[0].shape), tuple(shape))
    return [ctx.xp.broadcast_to(x[0], out)]


@op("Tile", fold=True)
def tile(ctx, x, a):
    return [ctx.xp.tile(x[0], ints(x[1], "Tile repeats"))]


@op("Range", fold=True)
def range_(ctx, x, a):
    s, l, d = (static(v, "Range bound").item() for v in x)
    return [np.arange(s, l, d, dtype=np.asarray(x[0]).dtype)]


@op("Pad", fold=True)
def pad(ctx, x, a):
    data = x[0]
    mode = a.get("mode", "constant")
    if ctx.opset < 11:
        pads, value, axes = a.get("pads", a.get("paddings")), a.get("value", 0.0), None
    else:
        pads = ints(x[1], "Pad pads")
        value = static(x[2], "Pad value").item() if len(x) > 2 and x[2] is not None and np.size(x[2]) else 0
        axes = ints(x[3], "Pad axes") if len(x) > 3 and x[3] is not None else None
    rank = data.ndim
    axes = [_axis(i, rank) for i in axes] if axes is not None else list(range(rank))
    n = len(axes)
    widths = [(0, 0)] * rank
    for k, ax in enumerate(axes):
        widths[ax] = (int(pads[k]), int(pads[k + n]))
    # negative pads crop
    crop = tuple(slice(-b if b < 0 else 0, (data.shape[i] + e) if e < 0 else None)
                 for i, (b, e) in enumerate(widths))
    data = data[crop]
    widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    xp = ctx.xp
    if mode == "constant":
        return [xp.pad(data, widths, mode="constant", constant_values=value)]
    mode = {"reflect": "reflect", "edge": "edge", "wrap": "wrap"}.get(mode)
    if mode is None:
        raise NotImplementedError(f"Pad mode {a.get('mode')!r}")
    return [xp.pad(data, widths, mode=mode)]


# -- reductions ------------------------------------------------------------------
def _reduce(name, fn, since):
    def lower(ctx, x, a):
        keep = bool(a.get("keepdims", 1))
        axes = _axes(ctx, x, a, 1, since)
        if axes is None or len(axes) == 0:
            if a.get("noop_with_empty_axes", 0) and axes is not None:
                return [x[0]]
            axes = list(range(x[0].ndim))
        axes = tuple(_axis(i, x[0].ndim) for i in axes)
        return [fn(ctx.xp, x[0], axes, keep)]
    OPS[name] = lower
    FOLDABLE.add(name)


_reduce("ReduceMean", lambda xp, v, ax, k: xp.mean(v, axis=ax, keepdims=k), 18)
_reduce("ReduceSum", lambda xp, v, ax, k: xp.sum(v, axis=ax, keepdims=k), 13)
_reduce("ReduceMax", lambda xp, v, ax, k: xp.max(v, axis=ax, keepdims=k), 18)
_reduce("ReduceMin", lambda xp, v, ax, k: xp.min(v, axis=ax, keepdims=k), 18)
_reduce("ReduceProd", lambda xp, v, ax, k: xp.prod(v, axis=ax, keepdims=k), 18)
_reduce("ReduceSumSquare", lambda xp, v, ax, k: xp.sum(v * v, axis=ax, keepdims=k), 18)


def _softmax(fn):
    def lower(ctx, x, a):
        v = x[0]
        if ctx.opset < 13:  # coerce to 2-D at axis (default 1)
            axis = _axis(a.get("axis", 1), v.ndim)
            flat = jnp.reshape(v, (int(np.prod(v.shape[:axis])), -1))
            return [jnp.reshape(fn(flat, axis=1), v.shape)]
        return [fn(v, axis=a.get("axis", -1))]
    return lower


OPS["Softmax"] = _softmax(jax.nn.softmax)
OPS["LogSoftmax"] = _softmax(jax.nn.log_softmax)


# -- linear algebra ----------------------------------------------------------------
@op("MatMul")
def matmul(ctx, x, a):
    return [jnp.matmul(x[0], x[1])]


@op("Gemm")
def gemm(ctx, x, a):
    A, B = x[0], x[1]
    if a.get("transA", 0):
        A = A.T
    if a.get("transB", 0):
        B = B.T
    y = a.get("alpha", 1.0) * jnp.matmul(A, B)
    if len(x) > 2 and x[2] is not None:
        y = y + a.get("beta", 1.0) * x[2]
    return [y]


# -- normalization ----------------------------------------------------------------
def _channel(v, rank):
    """A per-channel vector broadcast against NC... tensors."""
    return jnp.reshape(v, (1, -1) + (1,) * (rank - 2))


@op("BatchNormalization")
def batch_norm(ctx, x, a):
    X, scale, bias, mean_, var = x[:5]
    eps = a.get("epsilon", 1e-5)
    r = X.ndim
    k = scale / jnp.sqrt(var + eps)
    return [X * _channel(k, r) + _channel(bias - mean_ * k, r)]


@op("InstanceNormalization")
def instance_norm(ctx, x, a):
    X, scale, bias = x
    axes = tuple(range(2, X.ndim))
    mu = jnp.mean(X, axis=axes, keepdims=True)
    var = jnp.var(X, axis=axes, keepdims=True)
    return [(X - mu) / jnp.sqrt(var + a.get("epsilon", 1e-5)) * _channel(scale, X.ndim) + _channel(bias, X.ndim)]


@op("LRN")
def lrn(ctx, x, a):
    X = x[0]
    size = a["size"]
    alpha, beta, bias = a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
    sq = X * X
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    window = (1, size) + (1,) * (X.ndim - 2)
    pads = [(0, 0), (lo, hi)] + [(0, 0)] * (X.ndim - 2)
    s = lax.reduce_window(sq, 0.0, lax.add, window, (1,) * X.ndim, pads)
    return [X / jnp.power(bias + (alpha / size) * s, beta)]


# -- convolution and pooling ------------------------------------------------------------
def _spatial_pads(a, in_shape, kernel, strides, dilations):
    """(begin, end) pads per spatial axis from ``pads`` or ``auto_pad``."""
    n = len(kernel)
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for i in range(n):
            o = -(-in_shape[i] // strides[i])
            total = max(0, (o - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_shape[i])
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out
    if auto == "VALID":
        return [(0, 0)] * n
    pads = a.get("pads", [0] * (2 * n))
    return [(int(pads[i]), int(pads[i + n])) for i in range(n)]


def _dn(rank):
    sp = "DHW"[-(rank - 2):] if rank <= 5 else None
    return ("NC" + sp, "OI" + sp, "NC" + sp)


def _conv_attrs(a, W, n):
    """Kernel shape, strides, dilations and group count of a Conv or ConvTranspose node."""
    return (list(a.get("kernel_shape") or W.shape[2:]), list(a.get("strides", [1] * n)),
            list(a.get("dilations", [1] * n)), a.get("group", 1))


@op("Conv")
def conv(ctx, x, a):
    X, W = x[0], x[1]
    B = x[2] if len(x) > 2 else None
    n = X.ndim - 2
    kernel, strides, dil, groups = _conv_attrs(a, W, n)
    pads = _spatial_pads(a, X.shape[2:], kernel, strides, dil)
    cin, cout = X.shape[1], W.shape[0]
    if groups > 1 and groups == cin == cout and W.shape[1] == 1 and n == 2 and DEPTHWISE == "shift":
        depthwise = _depthwise_plain if ctx.variant.forward_mode else _depthwise_shift
        Y = depthwise(X, W, tuple(strides), tuple(dil), tuple(tuple(p) for p in pads))
    elif POINTWISE == "dot" and groups == 1 and all(k == 1 for k in kernel) and all(s == 1 for s in strides) \
            and all(p == (0, 0) for p in pads):
        Y = jnp.einsum("nc...,oc->no...", X, W.reshape(W.shape[0], W.shape[1]),
                       precision=lax.Precision.HIGHEST)
    elif CONV_LAYOUT == "nhwc" and n == 2:
        Xt = jnp.transpose(X, (0, 2, 3, 1))
        Wt = jnp.transpose(W, (2, 3, 1, 0))
        Y = lax.conv_general_dilated(Xt, Wt, window_strides=strides, padding=pads, rhs_dilation=dil,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
                                     precision=lax.Precision.HIGHEST)
        Y = jnp.transpose(Y, (0, 3, 1, 2))
    else:
        Y = lax.conv_general_dilated(X, W, window_strides=strides, padding=pads, rhs_dilation=dil,
                                     dimension_numbers=_dn(X.ndim), feature_group_count=groups,
                                     precision=lax.Precision.HIGHEST)
    if B is not None:
        Y = Y + _channel(B, Y.ndim)
    return [Y]


def _taps(Xp, strides, dil, kernel, out):
    """The strided, shifted slices of a padded NCHW tensor that each kernel tap (i, j) reads."""
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            y0, x0 = i * dil[0], j * dil[1]
            yield i, j, lax.slice(Xp, (0, 0, y0, x0),
                                  (Xp.shape[0], Xp.shape[1], y0 + (out[0] - 1) * strides[0] + 1,
                                   x0 + (out[1] - 1) * strides[1] + 1),
                                  (1, 1, strides[0], strides[1]))


def _shift_sum(Xp, W, strides, dil, out):
    """Sum over taps of slice x per-channel weight: a depthwise correlation of the padded input."""
    Y = None
    for i, j, patch in _taps(Xp, strides, dil, W.shape[2:], out):
        term = patch * W[:, 0, i, j][None, :, None, None]
        Y = term if Y is None else Y + term
    return Y


def _depthwise_out(X, W, strides, dil, pads):
    Xp = jnp.pad(X, [(0, 0), (0, 0)] + [tuple(p) for p in pads])
    out = tuple((Xp.shape[2 + d] - (W.shape[2 + d] - 1) * dil[d] - 1) // strides[d] + 1 for d in range(2))
    return Xp, out


def _depthwise_plain(X, W, strides, dil, pads):
    """Depthwise 2-D convolution as a sum of strided, shifted slices times per-channel weights.

    XLA:CPU runs ``feature_group_count`` convolutions slowly; this form fuses into elementwise loops. JAX
    differentiates it in forward mode as it is (JVPs); :func:`_depthwise_shift` adds a reverse-mode rule.
    """
    Xp, out = _depthwise_out(X, W, strides, dil, pads)
    return _shift_sum(Xp, W, strides, dil, out)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise_shift(X, W, strides, dil, pads):
    """:func:`_depthwise_plain` with its gradient written the same way (autodiff of the slices gives one
    padded copy per tap). A custom VJP has no forward mode: graphs lowered for JVPs use the plain form."""
    return _depthwise_plain(X, W, strides, dil, pads)


def _depthwise_fwd(X, W, strides, dil, pads):
    return _depthwise_shift(X, W, strides, dil, pads), (X, W)


def _depthwise_bwd(strides, dil, pads, res, dY):
    """dX: the cotangent dilated by the stride, padded, and correlated with the flipped kernel;
    dW: per tap, the sum of the slice it reads times the cotangent."""
    X, W = res
    config = [(0, 0, 0), (0, 0, 0)]
    for d in range(2):
        k, n, (lo, hi) = W.shape[2 + d], X.shape[2 + d], pads[d]
        dilated = (dY.shape[2 + d] - 1) * strides[d] + 1
        config.append(((k - 1) * dil[d] - lo, n + lo - dilated, strides[d] - 1))
    D = lax.pad(dY, jnp.zeros((), dY.dtype), config)
    dX = _shift_sum(D, W[:, :, ::-1, ::-1], (1, 1), dil, X.shape[2:])
    Xp, out = _depthwise_out(X, W, strides, dil, pads)
    dW = jnp.zeros_like(W)
    for i, j, patch in _taps(Xp, strides, dil, W.shape[2:], out):
        dW = dW.at[:, 0, i, j].set(jnp.sum(patch * dY, axis=(0, 2, 3)))
    return dX, dW


_depthwise_shift.defvjp(_depthwise_fwd, _depthwise_bwd)


@op("ConvTranspose")
def conv_transpose(ctx, x, a):
    X, W = x[0], x[1]
    B = x[2] if len(x) > 2 else None
    n = X.ndim - 2
    kernel, strides, dil, groups = _conv_attrs(a, W, n)
    out_pad = list(a.get("output_padding", [0] * n))
    cin = X.shape[1]
    cout_g = W.shape[1]
    in_sp = X.shape[2:]
    auto = a.get("auto_pad", "NOTSET")
    if "output_shape" in a or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = list(a["output_shape"])[-n:] if "output_shape" in a else [in_sp[i] * strides[i] for i in range(n)]
        pads = []
        for i in range(n):
            total = max(0, strides[i] * (in_sp[i] - 1) + out_pad[i] + (kernel[i] - 1) * dil[i] + 1 - target[i])
            if auto == "SAME_UPPER":
                pads.append((total // 2, total - total // 2))
            else:
                pads.append((total - total // 2, total // 2))
    elif auto == "VALID":
        pads = [(0, 0)] * n
    else:
        p = a.get("pads", [0] * (2 * n))
        pads = [(int(p[i]), int(p[i + n])) for i in range(n)]
    # as a dilated-input convolution with a flipped, transposed kernel
    k = W.reshape((groups, cin // groups, cout_g) + tuple(W.shape[2:]))
    k = jnp.swapaxes(k, 1, 2).reshape((groups * cout_g, cin // groups) + tuple(W.shape[2:]))
    k = jnp.flip(k, axis=tuple(range(2, 2 + n)))
    padding = [((kernel[i] - 1) * dil[i] - pads[i][0], (kernel[i] - 1) * dil[i] - pads[i][1] + out_pad[i])
               for i in range(n)]
    Y = lax.conv_general_dilated(X, k, window_strides=[1] * n, padding=padding, lhs_dilation=strides,
                                 rhs_dilation=dil, dimension_numbers=_dn(X.ndim), feature_group_count=groups,
                                 precision=lax.Precision.HIGHEST)
    if B is not None:
        Y = Y + _channel(B, Y.ndim)
    return [Y]


def _pool_geometry(X, a):
    n = X.ndim - 2
    kernel = list(a["kernel_shape"])
    strides = list(a.get("strides", [1] * n))
    dil = list(a.get("dilations", [1] * n))
    pads = _spatial_pads(a, X.shape[2:], kernel, strides, dil)
    extra = [0] * n
    if a.get("ceil_mode", 0):
        for i in range(n):
            size = X.shape[2 + i] + pads[i][0] + pads[i][1]
            eff = (kernel[i] - 1) * dil[i] + 1
            out = -(-(size - eff) // strides[i]) + 1
            if (out - 1) * strides[i] >= X.shape[2 + i] + pads[i][0]:
                out -= 1
            extra[i] = max(0, (out - 1) * strides[i] + eff - size)
    return n, kernel, strides, dil, pads, extra


@op("MaxPool")
def max_pool(ctx, x, a):
    X = x[0]
    n, kernel, strides, dil, pads, extra = _pool_geometry(X, a)
    padding = [(0, 0), (0, 0)] + [(pads[i][0], pads[i][1] + extra[i]) for i in range(n)]

    def maximum(v):
        return lax.reduce_window(v, -jnp.inf, lax.max, (1, 1) + tuple(kernel), (1, 1) + tuple(strides), padding,
                                 window_dilation=(1, 1) + tuple(dil))

    if not ctx.variant.relax_maxpool:
        return [maximum(X)]

    @jax.custom_jvp
    def relaxed(v):
        return maximum(v)

    @relaxed.defjvp
    def relaxed_jvp(primals, tangents):  # the derivative of an average pool over the same windows
        return maximum(primals[0]), _average(tangents[0], a, count_include_pad=False)

    return [relaxed(X)]


@op("AveragePool")
def average_pool(ctx, x, a):
    return [_average(x[0], a, bool(a.get("count_include_pad", 0)))]


def _average(X, a, count_include_pad: bool):
    """Average pooling with the geometry of pool node attributes ``a``."""
    n, kernel, strides, dil, pads, extra = _pool_geometry(X, a)
    window, stride = (1, 1) + tuple(kernel), (1, 1) + tuple(strides)
    wdil = (1, 1) + tuple(dil)
    padding = [(0, 0), (0, 0)] + [(pads[i][0], pads[i][1] + extra[i]) for i in range(n)]
    total = lax.reduce_window(X, 0.0, lax.add, window, stride, padding, window_dilation=wdil)
    # the divisor: window positions inside the input (and inside explicit pads if count_include_pad)
    ones_shape = (1, 1) + tuple(X.shape[2:])
    ones = np.ones(ones_shape, np.float32)
    if count_include_pad:
        ones = np.pad(ones, [(0, 0), (0, 0)] + [tuple(p) for p in pads], constant_values=1.0)
        cpad = [(0, 0), (0, 0)] + [(0, extra[i]) for i in range(n)]
    else:
        cpad = padding
    count = lax.reduce_window(jnp.asarray(ones), 0.0, lax.add, window, stride, cpad, window_dilation=wdil)
    return total / count


@op("GlobalAveragePool")
def global_average_pool(ctx, x, a):
    return [jnp.mean(x[0], axis=tuple(range(2, x[0].ndim)), keepdims=True)]


@op("GlobalMaxPool")
def global_max_pool(ctx, x, a):
    return [jnp.max(x[0], axis=tuple(range(2, x[0].ndim)), keepdims=True)]


# -- resizing -------------------------------------------------------------------------
def _resize_axis(v, axis, out_size, scale, mode, coord, nearest_mode):
    in_size = v.shape[axis]
    if out_size == in_size and scale == 1.0:
        return v
    o = np.arange(out_size, dtype=np.float64)
    if coord == "half_pixel":
        src = (o + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        src = (o + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(o)
    elif coord == "align_corners":
        src = o * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(o)
    elif coord == "asymmetric":
        src = o / scale
    elif coord == "half_pixel_symmetric":
        adj = out_size / (scale * in_size)
        centre = in_size / 2
        offset = centre * (1 - adj)
        src = offset + (o + 0.5) / scale - 0.5
    else:
        raise NotImplementedError(f"Resize coordinate_transformation_mode {coord!r}")
    if mode == "nearest":
        if nearest_mode == "round_prefer_floor":
            idx = np.where(src - np.floor(src) == 0.5, np.floor(src), np.round(src))
        elif nearest_mode == "round_prefer_ceil":
            idx = np.where(src - np.floor(src) == 0.5, np.ceil(src), np.round(src))
        elif nearest_mode == "floor":
            idx = np.floor(src)
        else:
            idx = np.ceil(src)
        idx = np.clip(idx, 0, in_size - 1).astype(np.int64)
        return jnp.take(v, idx, axis=axis)
    if mode == "linear":
        src = np.clip(src, 0, in_size - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, in_size - 1)
        w = (src - lo).astype(np.float32)
        shape = [1] * v.ndim
        shape[axis] = out_size
        w = jnp.asarray(w.reshape(shape))
        return jnp.take(v, lo, axis=axis) * (1 - w) + jnp.take(v, hi, axis=axis) * w
    raise NotImplementedError(f"Resize mode {mode!r}")


@op("Resize", "Upsample")
def resize(ctx, x, a):
    X = x[0]
    mode = a.get("mode", "nearest")
    if ctx.op_type == "Upsample" or ctx.opset < 11:
        scales = a.get("scales") if len(x) < 2 else [float(s) for s in static(x[1], "scales").reshape(-1)]
        sizes, coord, nearest_mode = None, "asymmetric", "floor"
    else:
        scales = x[2] if len(x) > 2 and x[2] is not None and np.size(static(x[2])) else None
        sizes = x[3] if len(x) > 3 and x[3] is not None and np.size(static(x[3])) else None
        scales = [float(s) for s in static(scales).reshape(-1)] if scales is not None else None
        sizes = ints(sizes, "Resize sizes") if sizes is not None else None
        coord = a.get("coordinate_transformation_mode", "half_pixel")
        nearest_mode = a.get("nearest_mode", "round_prefer_floor")
        if a.get("axes") is not None:
            axes = a["axes"]
            full_s, full_z = [1.0] * X.ndim, list(X.shape)
            for k, ax in enumerate(axes):
                if scales is not None:
                    full_s[_axis(ax, X.ndim)] = scales[k]
                if sizes is not None:
                    full_z[_axis(ax, X.ndim)] = sizes[k]
            scales = full_s if scales is not None else None
            sizes = full_z if sizes is not None else None
    if mode in ("bilinear", "trilinear"):
        mode = "linear"
    if mode == "cubic":
        raise NotImplementedError("Resize mode 'cubic'")
    if sizes is not None:
        scales = [sizes[i] / X.shape[i] for i in range(X.ndim)]
    else:
        sizes = [int(math.floor(X.shape[i] * scales[i])) for i in range(X.ndim)]
    y = X
    for axis in range(X.ndim):
        if sizes[axis] != X.shape[axis] or scales[axis] != 1.0:
            y = _resize_axis(y, axis, sizes[axis], scales[axis], mode, coord, nearest_mode)
    return [y]


# -- quantization -----------------------------------------------------------------------------------
# Quantized tensors are carried as float32 arrays that hold integer values (exact below 2**24), so that a
# quantized graph stays differentiable: rounding has the straight-through derivative (the identity; a
# quantized graph's exact derivative is zero almost everywhere), saturation the clip's. The integer
# products of ConvInteger, MatMulInteger and the QLinear ops are summed in float32 at the highest
# precision: a convolution's sums reach about 1e8, where float32 is off by a few units of the 32-bit
# accumulator, a relative 1e-7 once scaled. Listings take each tensor's type from the graph (onnx's type
# inference), not from these floats.
QRANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127), np.dtype(np.uint16): (0, 65535),
          np.dtype(np.int16): (-32768, 32767)}


@jax.custom_jvp
def _round_ste(x):
    return jnp.round(x)


@_round_ste.defjvp
def _round_ste_jvp(primals, tangents):
    return jnp.round(primals[0]), tangents[0]


def _round(xp, x):
    """Round half to even (ONNX's rounding); in JAX with the straight-through derivative."""
    return np.round(x) if xp is np else _round_ste(x)


def _qrange(zero_point, a) -> tuple:
    """The range of a quantized tensor's integer type: its zero point's type, else the ``output_dtype``
    attribute, else uint8 (the default of QuantizeLinear)."""
    kind = np.dtype(getattr(zero_point, "dtype", np.float32))
    if kind in QRANGE:
        return QRANGE[kind]
    out = DTYPES.get(int(a.get("output_dtype", 0) or 2))
    if np.dtype(out) not in QRANGE:
        raise NotImplementedError(f"quantization to ONNX type {a.get('output_dtype')}")
    return QRANGE[np.dtype(out)]


def _f32(xp, v):
    return np.asarray(v, np.float32) if xp is np else jnp.asarray(v, jnp.float32)


def _along(v, axis: int, rank: int):
    """A scale or zero point against a tensor of ``rank``: a scalar (or one value) as it is, a vector along
    ``axis``."""
    if np.ndim(v) == 0 or rank == 0:
        return v
    if np.size(v) == 1:
        return v.reshape(())
    shape = [1] * rank
    shape[_axis(axis, rank)] = -1
    return v.reshape(shape)


def _minus_zero_point(xp, v, zp, axis: int):
    v = _f32(xp, v)
    return v if zp is None else v - _along(_f32(xp, zp), axis, np.ndim(v))


def _xp_of(*arrays):
    return np if all(a is None or isinstance(a, np.ndarray) for a in arrays) else jnp


def _no_blocks(a):
    if a.get("block_size", 0):
        raise NotImplementedError("blocked quantization (block_size)")


@op("QuantizeLinear", fold=True)
def quantize_linear(ctx, x, a):
    _no_blocks(a)
    X, scale = x[0], x[1]
    zp = x[2] if len(x) > 2 else None
    xp, rank, axis = ctx.xp, np.ndim(X), a.get("axis", 1)
    lo, hi = _qrange(zp, a)
    q = _round(xp, _f32(xp, X) / _along(_f32(xp, scale), axis, rank))
    if zp is not None:
        q = q + _along(_f32(xp, zp), axis, rank)
    return [xp.clip(q, lo, hi)]


@op("DequantizeLinear", fold=True)
def dequantize_linear(ctx, x, a):
    _no_blocks(a)
    X, scale = x[0], x[1]
    zp = x[2] if len(x) > 2 else None
    xp, axis = ctx.xp, a.get("axis", 1)
    v = _minus_zero_point(xp, X, zp, axis)
    return [v * _along(_f32(xp, scale), axis, np.ndim(v))]


@op("DynamicQuantizeLinear")
def dynamic_quantize_linear(ctx, x, a):
    """uint8 quantization over the range of the whole tensor (the batch included, as onnxruntime does it)."""
    X = jnp.asarray(x[0], jnp.float32)
    lo = jnp.minimum(0.0, jnp.min(X))
    hi = jnp.maximum(0.0, jnp.max(X))
    # a true division, as onnxruntime's: XLA turns a division by a constant into a product with its
    # reciprocal, which is 1 ulp off here and moves whole tensors by one quantization step
    scale = (hi - lo) / lax.optimization_barrier(jnp.float32(255.0))
    scale = jnp.where(scale == 0, 1.0, scale)
    zp = jnp.clip(_round_ste(-lo / scale), 0, 255)
    return [jnp.clip(_round_ste(X / scale) + zp, 0, 255), scale, zp]


@op("ConvInteger")
def conv_integer(ctx, x, a):
    X, W = x[0], x[1]
    xzp = x[2] if len(x) > 2 else None
    wzp = x[3] if len(x) > 3 else None
    Xc = _minus_zero_point(jnp, X, xzp, 1)
    Wc = _minus_zero_point(_xp_of(W, wzp), W, wzp, 0)
    return conv(ctx, [Xc, Wc], a)


def _matmul_centred(A, azp, B, bzp):
    """(A - a_zero_point) @ (B - b_zero_point): A's zero point per tensor or per row, B's per tensor or per
    column."""
    A = _f32(jnp, A)
    if azp is not None:
        z = _f32(jnp, azp)
        A = A - (z.reshape(()) if np.size(azp) == 1 else z.reshape(-1, 1))
    xp = _xp_of(B, bzp)
    B = _f32(xp, B)
    if bzp is not None:
        B = B - _f32(xp, bzp).reshape(() if np.size(bzp) == 1 else (-1,))
    return jnp.matmul(A, B, precision=lax.Precision.HIGHEST)


@op("MatMulInteger")
def matmul_integer(ctx, x, a):
    return [_matmul_centred(x[0], x[2] if len(x) > 2 else None, x[1], x[3] if len(x) > 3 else None)]


def _requantize(acc, scale, y_scale, y_zp, a):
    lo, hi = _qrange(y_zp, a)
    q = _round_ste(acc * (scale / _f32(jnp, y_scale)))
    if y_zp is not None:
        q = q + _f32(jnp, y_zp)
    return jnp.clip(q, lo, hi)


@op("QLinearConv")
def qlinear_conv(ctx, x, a):
    X, xs, xzp, W, ws, wzp, ys, yzp = x[:8]
    B = x[8] if len(x) > 8 else None
    Xc = _minus_zero_point(jnp, X, xzp, 1)
    Wc = _minus_zero_point(_xp_of(W, wzp), W, wzp, 0)
    acc = conv(ctx, [Xc, Wc] + ([_f32(jnp, B)] if B is not None else []), a)[0]
    scale = _f32(jnp, xs) * _along(_f32(jnp, ws), 1, acc.ndim)
    return [_requantize(acc, scale, ys, yzp, a)]


@op("QLinearMatMul")
def qlinear_matmul(ctx, x, a):
    A, as_, azp, B, bs, bzp, ys, yzp = x[:8]
    acc = _matmul_centred(A, azp, B, bzp)
    scale = _f32(jnp, as_) * _along(_f32(jnp, bs), -1, acc.ndim)
    return [_requantize(acc, scale, ys, yzp, a)]
