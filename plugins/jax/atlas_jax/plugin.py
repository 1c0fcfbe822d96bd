"""Registration of the JAX plugin: cheap, imports neither JAX nor onnx."""

from atlas_core import hookimpl


def _jax_backend():
    from .model import JaxBackend
    return JaxBackend()


def _onnx_jax_backend():
    from .model import OnnxJaxBackend
    return OnnxJaxBackend()


def _featureviz():
    from .featureviz import FeatureVizRenderer
    return FeatureVizRenderer()


def _lowering():
    from .provider import JaxLowering
    return JaxLowering()


@hookimpl
def atlas_register_backends(register):
    register("jax", _jax_backend, priority=10,
             description="native JAX models (atlas_jax.JaxModel: a function and its parameters)")
    register("onnx-jax", _onnx_jax_backend, priority=0,
             description="ONNX graphs lowered to a differentiable JAX function (choose with --backend onnx-jax)")


@hookimpl
def atlas_register_renderers(register):
    register("featureviz", _featureviz,
             description="feature visualization of each cell's direction (JAX; the reference's recipe)")


@hookimpl
def atlas_register_gradients(register):
    register("jax-lowering", _lowering,
             description="gradients for models with an ONNX graph (onnxruntime, torch): the graph lowered to JAX")
