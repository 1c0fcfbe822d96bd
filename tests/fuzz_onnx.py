"""Hostile ONNX files, made here (no binary fixtures): `make(folder)` writes them and returns their names.

Each is a model a user might hand `atlas layers` or `atlas activations`: not ONNX at all, truncated, with odd
inputs, odd dimensions, hostile external-data entries (path traversal, NUL bytes, bad offsets), ops no backend
knows, broken graphs. A file ``secret.bin`` beside the models' folder is what a traversal would reach.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SECRET = "secret.bin"


def _tiny(input_dims=("N", 3, 16, 16), elem=None, opset=13, conv=True):
    """A small real graph: Conv 3->4 (3x3, pad 1), Relu, GlobalAveragePool, Flatten, Gemm 4->5."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    elem = TensorProto.FLOAT if elem is None else elem
    x = helper.make_tensor_value_info("x", elem, list(input_dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fw"),
             numpy_helper.from_array(np.zeros(5, np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv") if conv else
             helper.make_node("Identity", ["x"], ["c"], name="id"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1, name="fc")]
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _save(model, path: Path) -> None:
    import onnx
    path.write_bytes(model.SerializeToString())


def _external(model, folder: Path, name: str, **entry) -> Path:
    """The tiny model with its Conv weights in an external file, whose entry gets ``entry`` fields."""
    from onnx import TensorProto
    data = folder / f"{name}.data"
    w = next(t for t in model.graph.initializer if t.name == "w")
    raw = w.raw_data if w.raw_data else np.asarray(w.float_data, np.float32).tobytes()
    data.write_bytes(raw)
    w.ClearField("raw_data")
    del w.float_data[:]
    w.data_location = TensorProto.EXTERNAL
    fields = {"location": data.name, "offset": "0", "length": str(len(raw))}
    fields.update(entry)
    for k, v in fields.items():
        e = w.external_data.add()
        e.key, e.value = k, v
    path = folder / f"{name}.onnx"
    _save(model, path)
    return path


def make(folder: Path) -> list[str]:
    """Write every hostile model into ``folder`` (and the secret beside it); returns their file names."""
    from onnx import TensorProto, helper
    folder.mkdir(parents=True, exist_ok=True)
    (folder.parent / SECRET).write_bytes(b"\0" * 4096)
    names = []

    def put(name, data=None, model=None):
        path = folder / name
        if model is not None:
            _save(model, path)
        else:
            path.write_bytes(data)
        names.append(name)

    good = _tiny().SerializeToString()
    # not ONNX at all
    put("empty.onnx", b"")
    put("text.onnx", b"this is not a model\n")
    put("json.onnx", b'{"graph": {"node": []}}')
    put("zip.onnx", b"PK\x03\x04" + bytes(60))
    for seed in range(6):
        put(f"random-{seed}.onnx", np.random.default_rng(seed).integers(0, 256, 200 + 97 * seed, np.uint8).tobytes())
    for frac in (0.05, 0.3, 0.5, 0.8, 0.95, 0.999):
        put(f"truncated-{int(frac * 1000)}.onnx", good[:int(len(good) * frac)])
    flipped = bytearray(good)
    for k in range(10, len(flipped), 37):
        flipped[k] ^= 0xFF
    put("bit-flipped.onnx", bytes(flipped))
    # odd inputs
    m = _tiny()
    del m.graph.input[:]
    put("no-inputs.onnx", model=m)
    m = _tiny()
    m.graph.input.append(m.graph.input[0])
    put("duplicate-input.onnx", model=m)
    for dims, tag in [((1, 48), "rank2"), ((1, 3, 16), "rank3"), ((1, 3, 4, 16, 16), "rank5"), ((), "scalar"),
                      (("N", 3, 0, 16), "zero-height"), (("N", 0, 16, 16), "zero-channels"),
                      (("N", 3, -1, -1), "minus-one"), (("N", 3, -7, 16), "negative"),
                      (("N", 3, 2 ** 63 - 1, 16), "int64-max"), (("N", 3, 10 ** 9, 10 ** 9), "huge"),
                      ((0, 3, 16, 16), "batch-zero"), ((-1, 3, 16, 16), "batch-minus-one"),
                      (("N", 3, "H", "W"), "symbolic"), ((1, 7, 16, 16), "seven-channels"),
                      (("N", 16, 16, 3), "nhwc-but-conv"), ((1, 3, 1, 1), "one-pixel")]:
        try:
            put(f"dims-{tag}.onnx", model=_tiny(dims))
        except Exception:  # onnx refuses to build it: then nobody can hand it to us either
            pass
    for elem, tag in [(TensorProto.STRING, "string"), (TensorProto.INT64, "int64"), (TensorProto.BOOL, "bool"),
                      (TensorProto.COMPLEX64, "complex")]:
        put(f"input-{tag}.onnx", model=_tiny(elem=elem))
    # graphs that are broken or hold nothing to tap
    m = _tiny()
    del m.graph.node[:]
    put("no-nodes.onnx", model=m)
    nodes_only_shape = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Cast", ["s"], ["y"], to=TensorProto.INT64)],
        "shape-only", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    put("nothing-tappable.onnx", model=helper.make_model(nodes_only_shape, opset_imports=[helper.make_opsetid("", 13)],
                                                         ir_version=8))
    m = _tiny()
    m.graph.node[1].input[0] = "undefined_tensor"
    put("undefined-input.onnx", model=m)
    m = _tiny()
    m.graph.node[0].input[0] = "r"  # a cycle: conv reads relu's output
    put("cycle.onnx", model=m)
    m = _tiny()
    m.graph.node[2].output[0] = "c"  # two producers of one tensor
    put("duplicate-output.onnx", model=m)
    m = _tiny()
    m.graph.node[1].op_type = "FancyReluThatDoesNotExist"
    put("unknown-op.onnx", model=m)
    m = _tiny()
    m.graph.node[1].domain = "com.example.secret"
    put("custom-domain.onnx", model=m)
    m = _tiny()
    m.graph.output[0].name = "not_produced"
    put("output-not-produced.onnx", model=m)
    m = _tiny()
    m.graph.node[0].attribute[0].ints[:] = [-5, -5, -5, -5]
    put("negative-pads.onnx", model=m)
    m = _tiny()
    del m.graph.initializer[0]
    put("missing-weight.onnx", model=m)
    put("opset-1.onnx", model=_tiny(opset=1))
    put("opset-999.onnx", model=_tiny(opset=999))
    m = _tiny()
    del m.opset_import[:]
    put("no-opset.onnx", model=m)
    m = _tiny()
    m.ir_version = 0
    put("ir-version-0.onnx", model=m)
    m = _tiny()
    for node in m.graph.node:
        node.name = "<script>alert(1)</script>"
    put("markup-names.onnx", model=m)
    # external data: hostile entries (the weights exist in a file beside the model where it makes sense)
    for tag, entry in [("traversal", {"location": f"../{SECRET}"}), ("absolute", {"location": str(folder.parent / SECRET)}),
                       ("nul-byte", {"location": "w.data\0../../etc/passwd"}), ("offset-text", {"offset": "ten"}),
                       ("offset-negative", {"offset": "-64"}), ("offset-beyond", {"offset": str(10 ** 9)}),
                       ("length-huge", {"length": str(2 ** 62)}), ("length-text", {"length": "a lot"}),
                       ("location-empty", {"location": ""}), ("location-folder", {"location": "."}),
                       ("location-missing", {"location": "no-such-file.data"}),
                       ("checksum-junk", {"checksum": "\0\1\2"}), ("unknown-key", {"colour": "blue"})]:
        _external(_tiny(), folder, f"external-{tag}", **entry)
        names.append(f"external-{tag}.onnx")
    link = folder / "escape.data"
    if not link.exists():
        os.symlink(folder.parent / SECRET, link)
    _external(_tiny(), folder, "external-symlink-out", location="escape.data")
    names.append("external-symlink-out.onnx")
    # good ones, so that the suite also sees success
    put("good.onnx", model=_tiny())
    put("good-fixed-batch.onnx", model=_tiny((1, 3, 16, 16)))
    return names
