"""The torch backend on EfficientNet-Lite0 with its real ImageNet weights and real photos."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import atlas_demo
from atlas_core import IMAGENET_MEAN, IMAGENET_STD, UsageError
from atlas_core.images import resize
from atlas_core.models import open_model
from atlas_core.plugins import load
from atlas_core.testing import check_backend, check_registration_is_lazy

import atlas_torch.plugin
from atlas_torch import TorchBackend
from atlas_torch.backend import resolve_import_path

torch = pytest.importorskip("torch")

ATLAS = str(Path(sys.executable).with_name("atlas"))
PHOTOS = ("chelsea", "coffee", "rocket", "china", "flower")
IMAGENET = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)

# Torch module name -> tensor name in atlas_demo's dynamo ONNX export of the same model. Found through the
# exporter's node metadata (pkg "namespace"): batch norms are folded into the convolutions before them, so a
# block without a skip connection ends at its project convolution (getitem_*), one with a skip at an Add.
TORCH_TO_ONNX = {
    "_swish#0": "hardtanh",                   # stem ReLU6, 112 x 112 x 32
    "_blocks.3": "getitem_33",                # stage 3 (stride 2, no skip), 28 x 28 x 40
    "_blocks.10._swish#1": "hardtanh_21",     # ReLU6 after the depthwise conv of block 10, 14 x 14 x 672
    "_blocks.10": "add_530",                  # residual stream of stage 5, 14 x 14 x 112
    "_swish#1": "hardtanh_32",                # head ReLU6, 7 x 7 x 1280
    "output": "logits",                       # 1000 logits
}


def square(img: np.ndarray, size: int = 224) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return resize(img[y:y + s, x:x + s], (size, size))


@pytest.fixture(scope="session")
def module():
    return atlas_demo.efficientnet_lite0()


@pytest.fixture(scope="session")
def model(module):
    return TorchBackend().open(module, **IMAGENET)


@pytest.fixture(scope="session")
def photos():
    return np.stack([square(atlas_demo.photo(name)) for name in PHOTOS])


@pytest.fixture(scope="session")
def onnx_reference(photos):
    """Activations of the same model exported to ONNX, run by the onnx backend (onnxruntime)."""
    if "onnx" not in load().names("backends"):
        pytest.skip("needs the onnx backend (pip install ./plugins/onnx)")
    model = open_model(str(atlas_demo.efficientnet_lite0_onnx("dynamo")), backend="onnx", threads=2)
    assert tuple(model.input_spec.mean) == IMAGENET_MEAN  # from the export's sidecar
    acts = model.activations(photos, list(TORCH_TO_ONNX.values()))
    return {t: acts[o] for t, o in TORCH_TO_ONNX.items()}


def max_rel(a, b) -> float:
    """Largest absolute difference relative to the reference layer's largest magnitude."""
    return float(np.abs(a - b).max() / np.abs(b).max())


# -- registration and the conformance kit ---------------------------------------------------
def test_registration_and_can_open_import_no_torch():
    check_registration_is_lazy("atlas_torch.plugin")
    code = ("import sys, json; from atlas_torch import TorchBackend; b = TorchBackend();"
            "r = [b.can_open('pkg.mod:fn'), b.can_open('model.onnx'), b.can_open(3)];"
            "print(json.dumps([r, 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [[True, False, False], False]


def test_check_backend_on_module(module, photos):
    model = check_backend(TorchBackend(), module, images=photos[:2],
                          layers=["_blocks.3", "_blocks.10", "output"], **IMAGENET)
    assert model.provider == "cpu" and model.output == "output"


def test_check_backend_on_import_path(photos):
    model = check_backend(TorchBackend(), "atlas_demo:efficientnet_lite0", images=photos[:2], **IMAGENET)
    assert model.name == "atlas_demo:efficientnet_lite0"


def test_can_open(tmp_path, monkeypatch, module):
    backend = TorchBackend()
    assert backend.can_open(module) and backend.can_open(module._fc)
    assert backend.can_open("atlas_demo:efficientnet_lite0")
    assert backend.can_open("a.b.c:make.model")
    for other in ("model.onnx", "atlas_demo", "a:b:c", "C:\\models\\net.onnx", "pkg.mod:", Path("x:y"),
                  torch.zeros(2), object()):
        assert not backend.can_open(other), other
    monkeypatch.chdir(tmp_path)
    Path("pkg.mod:fn").write_text("a file, not an import path")
    assert not backend.can_open("pkg.mod:fn")


def test_registry_picks_torch_for_module_and_import_path(atlas_registry, module):
    registry = atlas_registry(atlas_torch.plugin)
    assert registry.backend_for(module).name == "torch"
    assert registry.backend_for("atlas_demo:efficientnet_lite0").name == "torch"


# -- layers ----------------------------------------------------------------------------------
def test_layers_from_one_dry_run(model):
    layers = model.layers()
    names = [layer.name for layer in layers]
    by_name = {layer.name: layer for layer in layers}
    assert len(layers) == 200
    assert by_name["_blocks.10"].shape == (14, 14, 112) and by_name["_blocks.10"].op_type == "MBConvBlock"
    assert by_name["_swish#0"].shape == (112, 112, 32) and by_name["_swish#1"].shape == (7, 7, 1280)
    assert by_name["_fc"].shape == (1000,) and by_name["output"].shape == (1000,)
    assert by_name["_avg_pooling"].shape == (1, 1, 1280)
    # graph order: a module's output comes after its children's, the whole model last
    assert names.index("_blocks.10._bn2") < names.index("_blocks.10") < names.index("_blocks.11") \
        < names.index("output") == len(names) - 1
    assert "_blocks" not in by_name and "_swish" not in by_name  # a container; a module run twice
    assert model.input_spec.size == (224, 224) and model.input_spec.layout == "NCHW"
    assert tuple(model.input_spec.mean) == IMAGENET_MEAN


def test_size_option_changes_layer_shapes(module):
    small = TorchBackend().open(module, size="160", **IMAGENET)
    assert small.input_spec.size == (160, 160)
    assert {lay.name: lay.shape for lay in small.layers()}["_blocks.10"] == (10, 10, 112)


def test_bad_size_is_one_line_error(module):
    with pytest.raises(UsageError, match=r"fails on an input of shape \(2, 3, 1, 1\)") as info:
        TorchBackend().open(module, size=1)
    assert "\n" not in str(info.value)


# -- activations -------------------------------------------------------------------------------
def test_predictions_on_real_photos(model, photos):
    logits = model.activations(photos, ["output"])["output"]
    top = logits.argmax(1)
    assert 281 <= top[0] <= 287  # chelsea: a cat (285 Egyptian cat)
    assert top[1] == 967  # coffee: espresso
    assert top[2] in (657, 744)  # rocket: missile / projectile


def test_activations_equal_onnx_export(model, photos, onnx_reference):
    acts = model.activations(photos, list(TORCH_TO_ONNX))
    for name, ref in onnx_reference.items():
        assert acts[name].shape == ref.shape, name
        assert max_rel(acts[name], ref) < 1e-4, (name, max_rel(acts[name], ref))


def test_batches_and_early_stop_do_not_change_results(model, photos):
    full = model.activations(photos, ["_blocks.3", "output"])
    model.batch_size = 2
    try:
        small = model.activations(photos, ["_blocks.3"])  # three batches, each stopped after _blocks.3
    finally:
        model.batch_size = 32
    np.testing.assert_array_equal(small["_blocks.3"], full["_blocks.3"])
    assert model.activations(photos[:0], ["_blocks.3"])["_blocks.3"].shape == (0, 28, 28, 40)


def test_hooks_removed_after_success_and_after_failure(model, module, photos):
    model.activations(photos[:1], ["_blocks.3", "_swish#1"])
    assert not any(m._forward_hooks for m in module.modules())
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        model.activations(np.zeros((2, 1, 1, 3), np.float32), ["output"])
    assert not any(m._forward_hooks for m in module.modules())


def test_in_place_ops_do_not_change_captured_activations(module, photos):
    """A ReLU(inplace=True) after a tapped module must not rewrite what was captured."""
    stem = torch.nn.Sequential(copy.deepcopy(module._conv_stem), copy.deepcopy(module._bn0),
                               torch.nn.ReLU(inplace=True))
    model = TorchBackend().open(stem, **IMAGENET)
    acts = model.activations(photos[:2], ["1", "2"])
    assert acts["1"].min() < 0 <= acts["2"].min()
    np.testing.assert_allclose(np.maximum(acts["1"], 0), acts["2"], atol=1e-6)


class _FlattenByView(torch.nn.Module):
    def forward(self, x):
        return x.view(x.shape[0], -1)  # fails on a channels_last tensor


def test_channels_last_and_fallback_for_models_that_cannot_take_it(module, model, photos):
    assert model.channels_last  # the fast path for EfficientNet
    net = torch.nn.Sequential(copy.deepcopy(module._conv_stem), _FlattenByView())
    opened = TorchBackend().open(net, size=32, **IMAGENET)
    assert not opened.channels_last
    small = np.stack([resize(p, (32, 32)) for p in photos[:2]])
    flat = opened.activations(small, ["1"])["1"]
    stem = opened.activations(small, ["0"])["0"]  # NHWC
    np.testing.assert_array_equal(flat, stem.transpose(0, 3, 1, 2).reshape(2, -1))


def test_unknown_layers_are_one_line_errors_with_close_matches(model, photos):
    cases = {"_blocks.10x": "did you mean _blocks.10", "_swish": "_swish#0 ... _swish#1",
             "_blocks": "does not run in forward", "_blocks.10.swish#1": "_blocks.10._swish#1"}
    for name, expected in cases.items():
        with pytest.raises(UsageError) as info:
            model.activations(photos[:1], [name])
        assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)


# -- import paths ------------------------------------------------------------------------------
@pytest.mark.parametrize("path, expected", [
    ("no_such_pkg.models:net", "no module named 'no_such_pkg'"),
    ("atlas_demo:efficientnet_lite", "did you mean efficientnet_lite0"),
    ("atlas_demo:cache_dir", "returned pathlib.PosixPath, not a torch.nn.Module"),
    ("atlas_demo:PHOTO_NAMES", "is a tuple, not a function"),
    ("atlas_demo:photo", "calling atlas_demo:photo() failed: TypeError"),
])
def test_bad_import_paths(path, expected):
    with pytest.raises(UsageError) as info:
        resolve_import_path(path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_import_path_sets_passive_openmp_waiting_unless_the_user_chose():
    code = ("import os; from atlas_torch.backend import resolve_import_path;"
            "m = resolve_import_path('torch.nn:Identity'); print(type(m).__name__, os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["Identity", "PASSIVE"]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(env, OMP_WAIT_POLICY="ACTIVE"))
    assert out.stdout.split() == ["Identity", "ACTIVE"]


def test_import_path_from_working_folder(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(
        "import torch\n"
        "def tiny():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    net = resolve_import_path("my_nets:tiny")
    assert isinstance(net, torch.nn.Sequential)


def test_cli_layers_import_path_and_errors():
    ok = subprocess.run([ATLAS, "layers", "atlas_demo:efficientnet_lite0", "--preset", "imagenet", "--json"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    layers = {lay["name"]: lay for lay in json.loads(ok.stdout)}
    assert layers["_blocks.10"]["shape"] == [14, 14, 112] and len(layers) == 200
    assert "Loaded pretrained weights" in ok.stderr  # the loader's chatter is kept off stdout
    for path, expected in [("no_such_pkg.models:net", "no module named"),
                           ("atlas_demo:cache_dir", "not a torch.nn.Module")]:
        bad = subprocess.run([ATLAS, "layers", path], capture_output=True, text=True)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        assert bad.stderr.startswith("atlas: error:") and expected in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


# -- devices ---------------------------------------------------------------------------------------
def test_device_option(module):
    assert TorchBackend().open(module, device="cpu", **IMAGENET).provider == "cpu"
    with pytest.raises(UsageError, match="unknown device"):
        TorchBackend().open(module, device="tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="sees no CUDA GPU"):
            TorchBackend().open(module, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(photos):
    gpu_module = atlas_demo.efficientnet_lite0()
    cpu = TorchBackend().open(copy.deepcopy(gpu_module), device="cpu", **IMAGENET)
    gpu = TorchBackend().open(gpu_module, **IMAGENET)  # CUDA by default when available
    assert gpu.provider.startswith("cuda:")
    a, b = gpu.activations(photos, ["_blocks.10", "output"]), cpu.activations(photos, ["_blocks.10", "output"])
    for name in a:
        assert max_rel(a[name], b[name]) < 1e-2, name  # TF32 convolutions on recent GPUs


# -- ONNX export for gradient-based renderers ------------------------------------------------
def test_onnx_model_names_every_layer(model, photos):
    import onnxruntime as ort
    proto = model.onnx_model()
    names = [lay.name for lay in model.layers()]
    assert [o.name for o in proto.graph.output] == ["output"] + names[:-1]  # the model's output first
    assert [i.name for i in proto.graph.input] == ["input"]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = ["_blocks.10", "_swish#1", "output"]
    outs = session.run(names, {"input": model.input_spec.normalize(photos)})
    acts = model.activations(photos, names)
    for name, o in zip(names, outs):
        o = o.transpose(0, 2, 3, 1) if o.ndim == 4 else o
        assert max_rel(o, acts[name]) < 1e-4, name
    assert model.onnx_model() is proto  # cached
    if "onnx" in load().names("backends"):  # the export opened by the onnx backend keeps the torch names
        opened = open_model(proto, backend="onnx", preset="imagenet")
        assert opened.output == "output"
        again = opened.activations(photos[:2], ["_blocks.10"])["_blocks.10"]
        assert max_rel(again, acts["_blocks.10"][:2]) < 1e-4


def test_jax_lowering_of_the_export_gives_the_same_activations_and_gradients(model, photos):
    """The gradient capability a torch model gets from the JAX plugin: its ``onnx_model()`` lowered to JAX."""
    pytest.importorskip("atlas_jax", reason="needs the JAX plugin")
    import jax
    from atlas_core import INPUT
    from atlas_core.gradients import gradients
    grads = gradients(model)
    assert grads is not None and grads.engine == "jax"
    fn = grads.function(INPUT, ["_blocks.3"])  # an early layer keeps XLA's compile short
    x = photos[:1]
    y = np.asarray(jax.jit(fn.apply)(fn.params, x)["_blocks.3"])
    assert max_rel(y, model.activations(x, ["_blocks.3"])["_blocks.3"]) < 1e-4
    grad = np.asarray(jax.jit(jax.grad(lambda im: fn.apply(fn.params, im)["_blocks.3"][:, 14, 14, 5].sum()))(x))
    assert grad.shape == x.shape and np.abs(grad).max() > 0
    assert np.abs(grad[:, 100:124, 100:124]).sum() > np.abs(grad[:, :24, :24]).sum()  # centre matters more
