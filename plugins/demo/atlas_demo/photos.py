"""Real photos bundled in scikit-image and scikit-learn, and many views of them."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from atlas_core.images import ArraySource, ImageSource, array_to_canonical

SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
                  "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
                  "text", "cell", "microaneurysms", "motorcycle_left", "motorcycle_right")
SKLEARN_PHOTOS = ("china", "flower")
PHOTO_NAMES = SKIMAGE_PHOTOS + SKLEARN_PHOTOS
SCALES = (1.0, 0.75, 0.5, 0.35, 0.25)  # crop side as a fraction of the photo's shorter side


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """One photo as float32 HWC RGB in [0, 1]."""
    if name in SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_images
        data = load_sample_images()
        return array_to_canonical(data.images[SKLEARN_PHOTOS.index(name)])
    import skimage.data
    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return array_to_canonical(left if name.endswith("left") else right)
    return array_to_canonical(getattr(skimage.data, name)())


def _views(n_per_photo: int):
    """(scale, cy, cx, flip) views: every scale, a grid of centres, both flips."""
    views = []
    for s in SCALES:
        steps = 1 if s == 1.0 else max(2, int(round(1.6 / s)))
        ys = np.linspace(s / 2, 1 - s / 2, steps) if s < 1 else [0.5]
        for cy in ys:
            for cx in ys:
                for flip in (False, True):
                    views.append((s, float(cy), float(cx), flip))
    return views[:n_per_photo] if n_per_photo else views


class DemoSource(ImageSource):
    """Square crops at several scales and positions, mirrored and not, of every photo."""

    kind = "demo views of real photos"

    def __init__(self, photos=PHOTO_NAMES, n_per_photo: int = 0):
        self.photos = tuple(photos)
        self.views = _views(n_per_photo)
        self.names = [f"{p}/s{s:.2f}_y{cy:.2f}_x{cx:.2f}{'_flip' if f else ''}"
                      for p in self.photos for (s, cy, cx, f) in self.views]

    def raw(self, i: int) -> np.ndarray:
        p, v = divmod(i, len(self.views))
        img = photo(self.photos[p])
        s, cy, cx, flip = self.views[v]
        h, w = img.shape[:2]
        side = int(min(h, w) * s)
        # positions are fractions of the free range along each axis
        y0 = int(round((h - side) * (cy - s / 2) / max(1e-9, 1 - s))) if s < 1 else (h - side) // 2
        x0 = int(round((w - side) * (cx - s / 2) / max(1e-9, 1 - s))) if s < 1 else (w - side) // 2
        crop = img[y0:y0 + side, x0:x0 + side]
        return crop[:, ::-1] if flip else crop

    def describe(self) -> str:
        return f"{len(self)} views ({len(self.views)} crops/scales/flips each) of {len(self.photos)} real photos"


TEST_PHOTOS = ("chelsea", "coffee", "rocket", "china", "flower")  # cat, espresso, missile, palace, daisy


def centre_crop(a: np.ndarray) -> np.ndarray:
    """The largest centred square of an HWC image."""
    h, w = a.shape[:2]
    s = min(h, w)
    return a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def photo_batch(names=TEST_PHOTOS, size: int = 224) -> np.ndarray:
    """Real photos, centre-cropped and resized: float32 NHWC in [0, 1] (for tests and checks)."""
    from atlas_core.images import resize
    return np.stack([resize(centre_crop(photo(n)), (size, size)) for n in names])


def demo_images(n_per_photo: int = 0) -> DemoSource:
    return DemoSource(n_per_photo=n_per_photo)


def lfw():
    """scikit-image's lfw_subset: (ArraySource of 200 grayscale 25x25 images, labels 'face'/'non-face')."""
    import skimage.data
    faces = skimage.data.lfw_subset()
    labels = ["face"] * 100 + ["non-face"] * 100
    names = [f"lfw/{label}-{i:03d}" for i, label in enumerate(labels)]
    return ArraySource(faces, names=names), labels


LFW_LAYER = "/_blocks.8/_swish_1/Clip_output_0"  # EfficientNet-Lite0 (legacy export): 14 x 14 x 480, after ReLU6


def lfw_activations(layer: str = LFW_LAYER):
    """Real activations for reducer tests: the vector at the centre of ``layer`` of EfficientNet-Lite0
    (legacy ONNX export, run by the onnx backend) for each lfw_subset image, and a bool array, True for faces."""
    from atlas_core.models import open_model

    from .assets import efficientnet_lite0_onnx
    source, labels = lfw()
    model = open_model(str(efficientnet_lite0_onnx("legacy")), threads=2)
    images = np.stack([source.load(i, (224, 224)) for i in range(len(source))])
    acts = np.concatenate([model.activations(images[i:i + 50], [layer])[layer] for i in range(0, len(images), 50)])
    h, w = acts.shape[1:3]
    return np.ascontiguousarray(acts[:, h // 2, w // 2, :]), np.array([label == "face" for label in labels])
