"""The JAX plugin's gradient provider: a model that has an ONNX graph (onnxruntime's, torch's export) but no
gradients of its own gets them by lowering that graph to JAX."""

from __future__ import annotations


class JaxLowering:
    """Gradient provider ``jax-lowering`` (:class:`atlas_core.contracts.GradientProvider`)."""

    name = "jax-lowering"

    def can_differentiate(self, model) -> bool:
        return callable(getattr(model, "onnx_model", None))

    def differentiate(self, model):
        from .model import OnnxJaxModel
        lowered = OnnxJaxModel(model.onnx_model(), batch_size=getattr(model, "batch_size", 32))
        lowered.input_spec = model.input_spec  # the same mapping of canonical images to the graph's input
        lowered._set_placeholder()
        lowered.name = getattr(model, "name", lowered.name)
        return lowered.gradients()
