"""atlas_core: activation atlases for any model, with pluggy plugins.

The core knows no framework: it imports numpy, pluggy and pillow only.
"""

import pluggy

from .types import IMAGENET_MEAN, IMAGENET_STD, IconRequest, InputSpec, Layer, UsageError

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("atlas_core")

__all__ = ["hookimpl", "InputSpec", "Layer", "IconRequest", "UsageError", "IMAGENET_MEAN",
           "IMAGENET_STD", "__version__"]
