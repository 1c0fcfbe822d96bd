"""The ``featureviz`` renderer on the real EfficientNet-Lite0: the conformance kit, reproducibility, that
optimizing raises the icons' fidelity at the scale they stand for, the old way (view=input), per-step
progress and its estimate, preview, and which models and layers it can serve. CPU tests stay small: an
early layer, few steps, small icons."""

from __future__ import annotations

import io
import types

import numpy as np
import pytest

from atlas_core import IconRequest, UsageError
from atlas_core.metrics import icon_fidelity
from atlas_core.testing import check_renderer
from atlas_jax.featureviz import DEFAULTS, FeatureVizRenderer, resize_matrix, whitened, window_size

LAYER = "add_140"  # 56x56x24 at 224 px, an early residual tensor: cheap to differentiate


@pytest.fixture(scope="module")
def cells(lite0, photos):
    """Directions of four 'cells' made from real activations of real photos, and their moment."""
    acts = lite0.activations(photos, [LAYER])[LAYER]
    rng = np.random.default_rng(0)
    samples = acts[:, 4:-4, 4:-4].reshape(-1, acts.shape[-1])
    samples = samples[rng.choice(len(samples), 2000, replace=False)]
    moment = samples.T @ samples / len(samples)
    directions = np.stack([samples[rng.choice(len(samples), 8)].mean(0) for _ in range(4)])
    return directions.astype(np.float32), moment


class Counter:
    """A progress callback like the icons stage's (``bar.update``), recording each call."""

    quiet = False

    def __init__(self):
        self.calls = []

    def update(self, n):
        self.calls.append(n)


def request(model, cells, layer=LAYER, **options):
    directions, moment = cells
    size = options.pop("icon_size", 32)
    seed = options.pop("seed", 0)
    counter = Counter()
    req = IconRequest(model=model, layer=layer, directions=directions, icon_size=size, seed=seed, moment=moment,
                      options=dict(dict(steps=4, attempts=1, batch=4), **options), progress=counter.update)
    return req, counter


def test_conformance_and_progress(lite0, cells):
    """Per step, in icons: 4 icons x 2 attempts in batches of 3 rows (3 batches of 3, padded), 4 steps each:
    progress comes in more calls than batches, adds up to the icons, and an estimate is printed first."""
    req, counter = request(lite0, cells, attempts=2, batch=3)
    stream = io.StringIO()
    icons = check_renderer(FeatureVizRenderer(stream=stream), req)
    assert sum(counter.calls) == len(cells[0]) and len(counter.calls) > 3
    assert len({icon.tobytes() for icon in icons}) == len(icons)  # one distinct icon per direction
    assert all(icon.info["extent"] == (32, 32) for icon in icons)  # seen at its own scale
    assert "4 icons x 2 attempts x 4 steps, 3 batches of 3 rows" in stream.getvalue()
    assert "left" in stream.getvalue() and stream.getvalue().count("\n") == 1


def test_seed_makes_it_reproducible(lite0, cells):
    a = FeatureVizRenderer().render(request(lite0, cells)[0])
    b = FeatureVizRenderer().render(request(lite0, cells)[0])
    c = FeatureVizRenderer().render(request(lite0, cells, seed=1)[0])
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


def test_optimizing_raises_fidelity_at_the_icons_scale(lite0, cells):
    """At the defaults' scale (the icon seen as it is, the reference's cropping jitters), 32 steps (at the
    preview's learning rate) raise the fidelity that the atlas measures (the icon at its extent, on the
    model's neutral colour) well above that of the starting images (0 steps). The old way (view=input: the
    icon resized to 224) is measured on the whole input and rises too."""
    directions = cells[0]

    def fidelity(**options):
        icons = FeatureVizRenderer().render(request(lite0, cells, icon_size=48, lr=0.1, **options)[0])
        return icons, icon_fidelity(lite0, LAYER, icons, directions)

    _, f0 = fidelity(steps=0)
    _, f1 = fidelity(steps=32)
    old, f_old = fidelity(steps=32, view="input")
    print("fidelity medians", *(np.median(f) for f in (f0, f1, f_old)))
    assert np.median(f1) > np.median(f0) + 0.25, (f0, f1)
    assert old[0].info["extent"] == (224, 224) and np.median(f_old) > np.median(f0) + 0.2, f_old


def test_icon_fidelity_measures_each_icon_at_its_extent(lite0, photos):
    """A receptive-field patch of a real photo, measured at its extent on the neutral canvas, points where
    the photo's own centre activation points (as an exemplar should); the old measure, the patch stretched
    over the whole input, does not. An icon's own ``extent`` wins over the receptive field."""
    from PIL import Image
    acts = lite0.activations(photos, [LAYER])[LAYER]
    h = acts.shape[1]
    direction = acts[:, h // 2, h // 2]
    rf = {"size": [64.0, 64.0], "stride": [4.0, 4.0], "input": [224, 224]}
    centre = int((h // 2 + 0.5) * 224 / h)
    patches = [Image.fromarray((p[centre - 32:centre + 32, centre - 32:centre + 32] * 255).astype(np.uint8))
               for p in photos]
    at_extent = icon_fidelity(lite0, LAYER, patches, direction, receptive_field=rf)
    stretched = icon_fidelity(lite0, LAYER, patches, direction)
    print("at extent", at_extent, "stretched", stretched)
    assert np.median(at_extent) > 0.8 and np.median(at_extent) > np.median(stretched) + 0.2
    for p in patches:
        p.info["extent"] = (224, 224)
    np.testing.assert_allclose(icon_fidelity(lite0, LAYER, patches, direction, receptive_field=rf), stretched,
                               atol=1e-6)


def test_preview_and_defaults(lite0, cells):
    renderer = FeatureVizRenderer()
    req = request(lite0, cells, preview=True)[0]
    req.options.pop("steps"), req.options.pop("attempts")
    opts = renderer.settings(req)
    assert (opts["steps"], opts["attempts"], opts["lr"]) == (48, 1, 0.1)
    req.options["steps"] = 7  # an option given explicitly stays
    assert renderer.settings(req)["steps"] == 7
    assert DEFAULTS["view"] == "icon" and DEFAULTS["crop"] is True
    assert window_size(80) == 50 and window_size(32) == 20


def test_layers_without_a_centre_are_seen_at_the_models_input(lite0, cells):
    """The logits (a dense layer behind the pooling) have no position: the icon stands for the whole input,
    and the renderer says so in one line."""
    import jax
    from atlas_core import INPUT
    logits = lite0.activations(np.full((2, 224, 224, 3), 0.5, np.float32), ["logits"])["logits"]
    stream = io.StringIO()
    req, _ = request(lite0, (logits, None), layer="logits", steps=1)
    icons = FeatureVizRenderer(stream=stream).render(req)
    assert icons[0].info["extent"] == (224, 224)
    assert "resized to the model's input" in stream.getvalue() and "does not take 20 px" in stream.getvalue()
    fn = lite0.gradients().function(INPUT, [LAYER])
    assert jax.eval_shape(fn.apply, fn.params, jax.ShapeDtypeStruct((1, 40, 40, 3), np.float32))[LAYER].shape == \
        (1, 10, 10, 24)  # the lowering takes an open size up to a spatial layer


def test_lowers_a_model_that_only_gives_its_onnx_graph(lite0, cells):
    """A backend without jax_function but with onnx_model() (onnxruntime's, torch's) gets icons too."""
    graph_only = types.SimpleNamespace(input_spec=lite0.input_spec, onnx_model=lite0.onnx_model,
                                       activations=lite0.activations)
    a = FeatureVizRenderer().render(request(graph_only, cells)[0])
    b = FeatureVizRenderer().render(request(lite0, cells)[0])
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def test_model_without_gradients_says_so():
    no_grad = types.SimpleNamespace(input_spec=None, activations=lambda images, layers: {})
    req = IconRequest(model=no_grad, layer="x", directions=np.ones((1, 3), np.float32), icon_size=16)
    with pytest.raises(UsageError, match="exemplar") as err:
        FeatureVizRenderer().render(req)
    assert "\n" not in str(err.value)


def test_resize_matrix_is_pils_bilinear():
    from atlas_core.images import resize
    x = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    for out in (112, 24):
        R = resize_matrix(40, out)
        np.testing.assert_allclose(np.einsum("ah,hwc,bw->abc", R, x, R), resize(x, (out, out)), atol=1e-5)


def test_whitening_uses_the_inverse_moment(cells):
    directions, moment = cells
    v = whitened(directions, moment)
    np.testing.assert_allclose(v @ moment, directions, rtol=1e-3, atol=1e-3 * np.abs(directions).max())
    np.testing.assert_array_equal(whitened(directions, None), directions)


def test_jitters_crop_a_window_in_model_pixels():
    """The crops: the window is the icon less the jitters; the shifts are the jitters' (in model pixels,
    which with view=input are 80/224 of an icon pixel); scale and rotation do not depend on the unit; a
    window warp with no transform is the icon's centre, pixel for pixel."""
    import jax
    from atlas_jax.featureviz import JITTERS, random_affine, warp
    key = jax.random.PRNGKey(3)
    icon = random_affine(key, 64, 80)
    model = random_affine(key, 64, 80, unit=80 / 224)
    np.testing.assert_allclose(np.asarray(model[2]), np.asarray(icon[2]) * 80 / 224, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(model[0]), np.asarray(icon[0]))
    assert np.abs(np.asarray(icon[2])).max() <= sum(JITTERS) / 2
    assert np.asarray(icon[2]).std() > 1  # the shifts do vary
    x = np.random.default_rng(0).random((2, 80, 80, 3)).astype(np.float32)
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    np.testing.assert_allclose(np.asarray(warp(x, 50, ones, zeros, zeros, zeros, pitch=1.0)), x[:, 15:65, 15:65],
                               atol=1e-5)


def test_bad_options_are_one_line_errors(lite0, cells):
    for option in (dict(whiten="sideways"), dict(jitter="far"), dict(view="sideways"), dict(crop="yes"),
                   dict(steps="many")):
        with pytest.raises(UsageError) as err:
            FeatureVizRenderer().render(request(lite0, cells, **option)[0])
        assert list(option)[0] in str(err.value) and "\n" not in str(err.value)


def test_atlas_build_with_featureviz_icons(tmp_path, dynamo_path, crops):
    """`atlas build ... --icons exemplar,featureviz` end to end (small: 24 px icons, 2 steps); the atlas
    lists both renderers and their fidelity. Collection runs on the default backend (onnxruntime when
    installed: featureviz then lowers its onnx_model())."""
    import json
    from atlas_core.cli import main
    np.save(tmp_path / "views.npy", crops(40))
    out = tmp_path / "atlas"
    rc = main(["build", str(dynamo_path), "--images", str(tmp_path / "views.npy"),
               "--layer", LAYER, "--out", str(out), "--reducer", "pca", "--levels", "3", "--min-count", "2",
               "--icons", "exemplar,featureviz", "--icon-size", "32", "--icon-option", "steps=2", "--no-attribution",
               "--quiet"])
    assert rc == 0
    meta = json.loads((out / "atlas.json").read_text())
    assert set(meta["quality"]["fidelity_median"]) == {"exemplar", "featureviz"}
    cells = meta["levels"][0]["cells"]
    assert cells and all((out / c["icons"]["featureviz"]).is_file() for c in cells)
