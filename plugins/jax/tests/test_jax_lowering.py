"""The ONNX-to-JAX lowering equals onnxruntime: on every graph of onnx's light test models and
both EfficientNet-Lite0 exports (several tapped tensors each), and on single-op graphs for the
common vision ops those graphs do not use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from atlas_core import UsageError
from atlas_jax.lowering import OnnxGraph, UnsupportedOp

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
RTOL = 1e-4  # max |difference| relative to the largest |activation| of the tensor

LIGHT_GRAPHS = sorted(p.stem for p in LIGHT.glob("*.onnx"))


def ort_run(model: onnx.ModelProto, feeds: dict, outputs: list) -> list:
    """onnxruntime's values of ``outputs`` (any tensors of the graph)."""
    import onnxruntime as ort
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    for name in outputs:
        m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(outputs, feeds)


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    assert got.shape == ref.shape, (got.shape, ref.shape)
    # the light graphs' constant 0.02 weights overflow float32 near some outputs (resnet50, squeezenet):
    # there inf or NaN depends on summation order, so only values finite on both sides are compared
    finite = np.isfinite(ref) & np.isfinite(got)
    if not finite.any():
        return 0.0
    scale = max(float(np.abs(ref[finite]).max()), 1e-12)
    return float(np.abs(got[finite] - ref[finite]).max() / scale)


def taps(graph: OnnxGraph, shape) -> list:
    """Four float tensors spread over the graph: quarter, half, three quarters, the output."""
    kinds = graph.traced_tensors(shape)
    masks = {node.output[1] for node in graph.nodes if node.op_type == "Dropout" and len(node.output) > 1}
    names = [n for n, (op, s, dt) in kinds.items() if np.dtype(dt) == np.float32 and n not in masks]
    picks = [names[len(names) // 4], names[len(names) // 2], names[3 * len(names) // 4], names[-1]]
    return list(dict.fromkeys(picks))


def check_graph(model, x, outputs=None) -> dict:
    import jax
    graph = OnnxGraph(model)
    outputs = outputs or taps(graph, x.shape)
    ref = ort_run(graph.proto, {graph.input_name: x}, outputs)
    got = jax.jit(graph.function(outputs))(graph.params, x)
    return {name: relative_error(np.asarray(g), r) for name, g, r in zip(outputs, got, ref)}


@pytest.mark.parametrize("name", LIGHT_GRAPHS)
def test_light_graph_equals_onnxruntime(name):
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    errors = check_graph(str(LIGHT / f"{name}.onnx"), x)
    assert len(errors) >= 3 and not any(np.isnan(e) for e in errors.values())
    assert max(errors.values()) <= RTOL, errors


def test_mean_after_convolution_at_large_values():
    """light_squeezenet's global average pool (values near 1e10) under jit: XLA:CPU's YNNPACK reduce
    fusion gave 0 or inf here, so the plugin turns that fusion off (atlas_jax/__init__.py)."""
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for _ in range(3):
        errors = check_graph(str(LIGHT / "light_squeezenet.onnx"), x, ["r65"])
        assert errors["r65"] <= RTOL, errors


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_efficientnet_equals_onnxruntime(exporter, dynamo_path, legacy_path, photos):
    path = dynamo_path if exporter == "dynamo" else legacy_path
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = ((photos - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
    graph = OnnxGraph(str(path))
    outputs = taps(graph, x.shape)
    errors = check_graph(graph.proto, x, outputs)
    assert max(errors.values()) <= RTOL, errors
    # the real model's predictions agree
    logits_ref = ort_run(graph.proto, {graph.input_name: x}, [graph.output_names[0]])[0]
    import jax
    logits = np.asarray(jax.jit(graph.function(graph.output_names[:1]))(graph.params, x)[0])
    assert (logits.argmax(1) == logits_ref.argmax(1)).all()


# -- single-op graphs: the common vision ops beyond the graphs above -------------------------------
def single_op_model(op_type, inputs, attrs=None, n_out=1, opset=17, weights=()):
    """A graph of one node; ``inputs`` are (name, array) pairs, the first is the graph input,
    names in ``weights`` become initializers."""
    nodes_in = [name for name, _ in inputs]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op_type, nodes_in, outs, name=f"the_{op_type.lower()}", **(attrs or {}))
    graph_inputs, inits = [], []
    for i, (name, arr) in enumerate(inputs):
        if name == "":
            continue
        if i == 0 or name not in weights:
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, np.shape(arr)))
        else:
            inits.append(numpy_helper.from_array(np.asarray(arr), name))
    graph = helper.make_graph([node], "g", graph_inputs[:1],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), outs


def r(*shape, seed=0, positive=False):
    a = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return np.abs(a) + 0.1 if positive else a


def i64(*v):
    return np.asarray(v, dtype=np.int64)


X = r(2, 4, 9, 11)
CASES = {
    "conv_groups_dilations": ("Conv", [("x", X), ("w", r(6, 2, 3, 3, seed=1)), ("b", r(6, seed=2))],
                              {"group": 2, "dilations": [2, 1], "strides": [1, 2], "pads": [2, 1, 1, 0]}),
    "conv_depthwise_stride": ("Conv", [("x", X), ("w", r(4, 1, 5, 5, seed=1))],
                              {"group": 4, "strides": [2, 2], "pads": [2, 2, 2, 2]}),
    "conv_same_upper": ("Conv", [("x", X), ("w", r(3, 4, 3, 3, seed=1))], {"auto_pad": "SAME_UPPER",
                                                                           "strides": [2, 2]}),
    "conv_transpose": ("ConvTranspose", [("x", X), ("w", r(4, 3, 3, 3, seed=1)), ("b", r(3, seed=2))],
                       {"strides": [2, 2], "pads": [1, 0, 1, 1], "output_padding": [1, 0]}),
    "conv_transpose_groups": ("ConvTranspose", [("x", X), ("w", r(4, 2, 4, 4, seed=1))],
                              {"group": 2, "strides": [2, 3], "dilations": [1, 2]}),
    "batch_norm": ("BatchNormalization", [("x", X), ("s", r(4, seed=1)), ("b", r(4, seed=2)),
                                          ("m", r(4, seed=3)), ("v", r(4, seed=4, positive=True))], {}),
    "leaky_relu": ("LeakyRelu", [("x", X)], {"alpha": 0.2}),
    "prelu": ("PRelu", [("x", X), ("slope", r(4, 1, 1, seed=1))], {}),
    "clip": ("Clip", [("x", X), ("lo", np.float32(-0.5)), ("hi", np.float32(0.7))], {}),
    "sigmoid": ("Sigmoid", [("x", X)], {}),
    "hard_sigmoid": ("HardSigmoid", [("x", X)], {"alpha": 0.3, "beta": 0.4}),
    "hard_swish": ("HardSwish", [("x", X * 4)], {}),
    "tanh": ("Tanh", [("x", X)], {}),
    "gelu": ("Gelu", [("x", X)], {}, 1, 20),
    "gelu_tanh": ("Gelu", [("x", X)], {"approximate": "tanh"}, 1, 20),
    "erf": ("Erf", [("x", X)], {}),
    "sub": ("Sub", [("x", X), ("c", r(1, 4, 1, 1, seed=1))], {}),
    "div": ("Div", [("x", X), ("c", r(11, seed=1, positive=True))], {}),
    "pow": ("Pow", [("x", np.abs(X) + 0.1), ("c", np.float32(1.7))], {}),
    "sqrt": ("Sqrt", [("x", np.abs(X))], {}),
    "max_pool_ceil": ("MaxPool", [("x", X)], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1,
                                               "pads": [1, 0, 0, 1]}),
    "max_pool_dilated": ("MaxPool", [("x", X)], {"kernel_shape": [2, 3], "dilations": [2, 1]}),
    "average_pool_include_pad": ("AveragePool", [("x", X)], {"kernel_shape": [3, 3], "strides": [2, 2],
                                                             "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    "average_pool_ceil": ("AveragePool", [("x", X)], {"kernel_shape": [3, 3], "strides": [2, 2],
                                                      "ceil_mode": 1}),
    "global_max_pool": ("GlobalMaxPool", [("x", X)], {}),
    "global_average_pool": ("GlobalAveragePool", [("x", X)], {}),
    "lrn": ("LRN", [("x", X)], {"size": 3, "alpha": 0.01, "beta": 0.6, "bias": 2.0}),
    "concat": ("Concat", [("x", X), ("c", r(2, 1, 9, 11, seed=1))], {"axis": 1}),
    "split": ("Split", [("x", X), ("s", i64(1, 3))], {"axis": 1}, 2),
    "split_even": ("Split", [("x", X)], {"axis": 3, "num_outputs": 3}, 3, 18),
    "slice_steps": ("Slice", [("x", X), ("st", i64(1, -1)), ("en", i64(100, 0)), ("ax", i64(2, 3)),
                              ("sp", i64(2, -3))], {}),
    "pad_reflect": ("Pad", [("x", X), ("p", i64(0, 0, 1, 2, 0, 0, 2, 1))], {"mode": "reflect"}),
    "pad_constant": ("Pad", [("x", X), ("p", i64(0, 1, 1, -1, 0, 0, 2, 3)), ("v", np.float32(0.5))],
                     {"mode": "constant"}),
    "reshape": ("Reshape", [("x", X), ("s", i64(0, -1, 11))], {}),
    "flatten": ("Flatten", [("x", X)], {"axis": 2}),
    "transpose": ("Transpose", [("x", X)], {"perm": [0, 2, 3, 1]}),
    "squeeze": ("Squeeze", [("x", r(2, 1, 9, 1)), ("a", i64(1, -1))], {}),
    "unsqueeze": ("Unsqueeze", [("x", X), ("a", i64(0, -1))], {}),
    "gather": ("Gather", [("x", X), ("i", i64(3, 0, -1))], {"axis": 1}),
    "gemm": ("Gemm", [("x", r(3, 5)), ("w", r(4, 5, seed=1)), ("c", r(4, seed=2))],
             {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    "matmul": ("MatMul", [("x", X), ("w", r(11, 6, seed=1))], {}),
    "reduce_mean": ("ReduceMean", [("x", X), ("a", i64(2, 3))], {"keepdims": 1}, 1, 18),
    "reduce_sum": ("ReduceSum", [("x", X), ("a", i64(1))], {"keepdims": 0}),
    "reduce_max": ("ReduceMax", [("x", X)], {"axes": [1, -1], "keepdims": 0}, 1, 17),
    "softmax": ("Softmax", [("x", X)], {"axis": 1}),
    "softmax_opset11": ("Softmax", [("x", X)], {"axis": 2}, 1, 11),
    "resize_nearest": ("Resize", [("x", X), ("", None), ("sc", np.asarray([1, 1, 2.0, 1.5], np.float32))],
                       {"mode": "nearest"}),
    "resize_linear": ("Resize", [("x", X), ("", None), ("", None), ("sz", i64(2, 4, 16, 7))],
                      {"mode": "linear"}),
    "resize_linear_align": ("Resize", [("x", X), ("", None), ("sc", np.asarray([1, 1, 2.0, 2.0], np.float32))],
                            {"mode": "linear", "coordinate_transformation_mode": "align_corners"}),
    "resize_asymmetric": ("Resize", [("x", X), ("", None), ("sc", np.asarray([1, 1, 3.0, 0.5], np.float32))],
                          {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                           "nearest_mode": "floor"}),
    "dropout": ("Dropout", [("x", X)], {}),
    "identity": ("Identity", [("x", X)], {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op_equals_onnxruntime(case):
    spec = CASES[case]
    op_type, inputs, attrs = spec[:3]
    n_out = spec[3] if len(spec) > 3 else 1
    opset = spec[4] if len(spec) > 4 else 17
    weights = {name for name, _ in inputs[1:]}
    model, outs = single_op_model(op_type, [(n, a) for n, a in inputs], attrs, n_out, opset, weights)
    if op_type == "Dropout":
        outs = outs[:1]
    x = inputs[0][1]
    errors = check_graph(model, x, outs)
    assert max(errors.values()) <= RTOL, errors


def test_constants_and_shape_arithmetic():
    """Constant, ConstantOfShape, Shape, Gather, Concat, Reshape: folded while tracing."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["i"], value=numpy_helper.from_array(np.asarray(0, np.int64))),
        helper.make_node("Gather", ["s", "i"], ["n"], axis=0),
        helper.make_node("Constant", [], ["m1"], value=numpy_helper.from_array(i64(-1))),
        helper.make_node("Unsqueeze", ["n", "zero"], ["n1"]),
        helper.make_node("Concat", ["n1", "m1_1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("ConstantOfShape", ["cshape"], ["ones"],
                         value=numpy_helper.from_array(np.asarray([1.5], np.float32))),
        helper.make_node("Add", ["flat", "ones"], ["y"]),
    ]
    inits = [numpy_helper.from_array(i64(0), "zero"), numpy_helper.from_array(i64(-1), "m1_1"),
             numpy_helper.from_array(i64(1, 396), "cshape")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, X.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    errors = check_graph(model, X, ["y", "flat"])
    assert max(errors.values()) <= RTOL


def test_unsupported_op_is_one_line_naming_op_and_node():
    model, outs = single_op_model("Det", [("x", r(2, 3, 3))], {})
    graph = OnnxGraph(model)
    with pytest.raises(UnsupportedOp) as err:
        graph.function(outs)
    text = str(err.value)
    assert "'Det'" in text and "the_det" in text and "\n" not in text
    assert isinstance(err.value, UsageError)


def test_gradients_flow_to_the_input(dynamo_path):
    """The lowered function is differentiable: d(centre activation)/d(input) matches finite differences."""
    import jax
    import jax.numpy as jnp
    graph = OnnxGraph(str(dynamo_path))
    f = graph.function(["add_140"])  # an early residual tensor: cheap
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    v = np.random.default_rng(1).standard_normal(24).astype(np.float32)

    def loss(x):
        return jnp.dot(f(graph.params, x)[0][0, :, 4, 4], v)

    loss = jax.jit(loss)
    g = np.asarray(jax.jit(jax.grad(loss))(x))
    assert np.abs(g).max() > 0
    d = np.zeros_like(x)
    d[0, :, 14:18, 14:18] = 1e-2 * np.sign(g[0, :, 14:18, 14:18])
    predicted = float((g * d).sum())
    actual = float(loss(x + d) - loss(x - d)) / 2
    assert abs(predicted - actual) <= 0.05 * abs(actual) + 1e-4


@pytest.mark.parametrize("kernel,strides,dil,pads", [
    ((3, 3), (1, 1), (1, 1), ((1, 1), (1, 1))),
    ((5, 5), (2, 2), (1, 1), ((2, 2), (2, 2))),
    ((3, 5), (2, 1), (2, 1), ((2, 1), (0, 3))),
    ((3, 3), (2, 2), (1, 1), ((0, 1), (0, 1))),  # the TF-style "same" padding of stride-2 exports
])
def test_depthwise_gradients_equal_grouped_convolution(kernel, strides, dil, pads):
    """The shifted-slice depthwise convolution and its hand-written gradient equal XLA's grouped
    convolution and its autodiff, for the input and the weights (odd sizes, strides, dilations,
    asymmetric pads)."""
    import jax
    import jax.numpy as jnp
    from jax import lax
    from atlas_jax.ops import _depthwise_shift
    x = r(2, 6, 13, 10, seed=3)
    w = r(6, 1, *kernel, seed=4)
    probe = r(*np.asarray(_depthwise_shift(x, w, strides, dil, pads)).shape, seed=5)

    def grouped(x, w):
        return lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dil, feature_group_count=6,
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                        precision=lax.Precision.HIGHEST)

    def shifted(x, w):
        return _depthwise_shift(x, w, strides, dil, pads)

    np.testing.assert_allclose(shifted(x, w), grouped(x, w), rtol=1e-5, atol=1e-5)
    for argnum in (0, 1):
        got = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(shifted(x, w)) * probe), argnum))(x, w)
        ref = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(grouped(x, w)) * probe), argnum))(x, w)
        assert relative_error(np.asarray(got), np.asarray(ref)) < 1e-5


def _quantized_graph(kind: str):
    """float x -> QuantizeLinear (uint8) -> QLinearConv / QLinearMatMul (int8 weights, per output channel
    scales and zero points) -> DequantizeLinear -> y; or float x -> DynamicQuantizeLinear -> MatMulInteger
    (per-column zero points) -> Cast -> Mul."""
    rng = np.random.default_rng(0)
    u8 = lambda v: np.asarray(v, np.uint8)  # noqa: E731
    f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(f32(0.02), "xs"), numpy_helper.from_array(u8(128), "xz"),
             numpy_helper.from_array(f32(0.05), "ys"), numpy_helper.from_array(u8(100), "yz")]
    if kind == "conv":
        shape = (2, 4, 9, 11)
        w = rng.integers(-100, 100, (6, 4, 3, 3)).astype(np.int8)
        inits += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(f32(rng.uniform(0.001, 0.004, 6)), "ws"),
                  numpy_helper.from_array(np.zeros(6, np.int8), "wz"),
                  numpy_helper.from_array(rng.integers(-500, 500, 6).astype(np.int32), "b")]
        core = helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["yq"],
                                name="the_qlinearconv", pads=[1, 1, 1, 1], strides=[1, 2])
    elif kind == "matmul":
        shape = (3, 5, 7)
        w = rng.integers(0, 255, (7, 6)).astype(np.uint8)
        inits += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(f32(0.003), "ws"),
                  numpy_helper.from_array(u8(120), "wz")]
        core = helper.make_node("QLinearMatMul", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"],
                                name="the_qlinearmatmul")
    if kind in ("conv", "matmul"):
        nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), core,
                 helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    else:  # dynamic quantization, as quantize_dynamic writes it
        shape = (4, 7)
        w = rng.integers(0, 255, (7, 5)).astype(np.uint8)
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(rng.integers(100, 150, 5).astype(np.uint8),
                                                                           "wz"),
                 numpy_helper.from_array(f32(0.004), "ws")]
        nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
                 helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["acc"], name="the_matmulinteger"),
                 helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["xs", "ws"], ["scale"]),
                 helper.make_node("Mul", ["accf", "scale"], ["y"])]
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), shape


@pytest.mark.parametrize("kind", ["conv", "matmul", "dynamic"])
def test_quantized_ops_equal_onnxruntime(kind):
    """QuantizeLinear, QLinearConv (per-channel weight scales, int32 bias), QLinearMatMul, DequantizeLinear,
    DynamicQuantizeLinear and MatMulInteger (per-column zero points) equal onnxruntime: all but a few
    values exactly, none by more than one quantization step (a float32 ulp can round the other way)."""
    import jax
    model, shape = _quantized_graph(kind)
    x = r(*shape, seed=7)
    graph = OnnxGraph(model)
    ref = ort_run(graph.proto, {"x": x}, ["y"])[0]
    got = np.asarray(jax.jit(graph.function(["y"]))(graph.params, x)[0])
    assert got.shape == ref.shape
    step = 0.05 if kind != "dynamic" else float(np.abs(ref).max()) / 255 * 2
    diff = np.abs(got - ref)
    assert diff.max() <= step * 1.01 and np.mean(diff > 1e-5 * np.abs(ref).max()) < 0.02, (diff.max(), step)
