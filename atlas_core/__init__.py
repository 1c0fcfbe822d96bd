"""atlas_core: activation atlases for any model, with pluggy plugins.

The core knows no framework: it imports numpy, pluggy and pillow only.
"""

import pluggy

from .types import IMAGENET_MEAN, IMAGENET_STD, INPUT, IconRequest, InputSpec, Layer, UsageError

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("atlas_core")


def build(*args, **kwargs):
    """Build an atlas; see :func:`atlas_core.stages.build`."""
    from .stages import build as _build
    return _build(*args, **kwargs)


def load(path):
    """Open a built atlas folder."""
    from .atlas import Atlas
    return Atlas(path)


__all__ = ["build", "load", "hookimpl", "InputSpec", "Layer", "IconRequest", "UsageError", "INPUT",
           "IMAGENET_MEAN", "IMAGENET_STD", "__version__"]
