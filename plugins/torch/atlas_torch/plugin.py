"""Entry point: registers the ``torch`` backend without importing torch."""

from atlas_core import hookimpl


def _backend():
    from .backend import TorchBackend
    return TorchBackend()


@hookimpl
def atlas_register_backends(register):
    register("torch", _backend,
             description="torch.nn.Module (or import path package.module:function), forward hooks")
