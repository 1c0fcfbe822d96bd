"""Real, offline demo assets: a real ImageNet classifier and real photos.

- :func:`efficientnet_lite0` is EfficientNet-Lite0 with its real ImageNet weights (torch).
- :func:`efficientnet_lite0_onnx` exports it to ONNX once and caches it outside the
  repository (``$ATLAS_CACHE`` or ``~/.cache/actatlas``), with an input sidecar
  that names the ImageNet mean/std.
- :func:`demo_images` gives a few thousand crops, scales and flips of the real
  photos bundled in scikit-image and scikit-learn (about two dozen distinct photos:
  the variety is honest but limited).
- :func:`lfw` gives scikit-image's ``lfw_subset``: 100 faces then 100 non-faces.
"""

from .assets import cache_dir, efficientnet_lite0, efficientnet_lite0_onnx
from .fashion import CLASS_NAMES, fashion_available, fashion_images, fashion_labels, fashion_models  # noqa: F401
from .photos import (PHOTO_NAMES, TEST_PHOTOS, DemoSource, centre_crop, demo_images, lfw, lfw_activations, photo,
                     photo_batch)

__all__ = ["cache_dir", "efficientnet_lite0", "efficientnet_lite0_onnx", "PHOTO_NAMES", "TEST_PHOTOS",
           "DemoSource", "centre_crop", "demo_images", "lfw", "lfw_activations", "photo", "photo_batch"]
