"""The plugin is found through its entry point and registers without importing onnx or onnxruntime."""

from atlas_core.plugins import load
from atlas_core.testing import check_registration_is_lazy

from atlas_onnx import plugin


def test_entry_point_registers_the_onnx_backend():
    registry = load()
    assert "onnx" in registry.names("backends")
    info = registry.plugins["onnx"]
    assert info.distribution == "actatlas-onnx" and info.registers == {"backends": ["onnx"]}
    assert registry.get("backends", "onnx").factory is plugin.OnnxBackend


def test_registration_is_lazy():
    check_registration_is_lazy("atlas_onnx.plugin")


def test_can_open(dynamo_path):
    import onnx
    backend = plugin.OnnxBackend()
    assert backend.can_open(dynamo_path) and backend.can_open(str(dynamo_path))
    assert backend.can_open("missing/model.ONNX")  # the backend then says it is missing
    assert not backend.can_open("model.pt") and not backend.can_open(object()) and not backend.can_open(None)
    assert backend.can_open(onnx.load(str(dynamo_path), load_external_data=False))
