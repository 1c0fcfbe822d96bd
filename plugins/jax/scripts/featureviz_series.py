"""Featureviz configurations side by side on every k-th cell of a built atlas's level: median fidelity (the
pipeline's, each icon at its extent; the exemplars' at the receptive field) and one strip of icons per
configuration in a PNG. How docs/benchmarks.md's look-alike series was made:

    python plugins/jax/scripts/featureviz_series.py demo-atlas \\
        '[["defaults", {}, {}], ["decay 1", {"decay": 1.0}, {}], ["no decorrelation", {}, {"DECORRELATE": false}]]'

Each configuration is [name, renderer options, module settings of atlas_jax.featureviz].
"""
import sys, json, time, argparse
import numpy as np
from PIL import Image, ImageDraw
import atlas_core, atlas_demo
from atlas_core import IMAGENET_MEAN, IMAGENET_STD, IconRequest
from atlas_core.metrics import icon_fidelity
from atlas_jax import featureviz as fv
from atlas_jax.model import OnnxJaxBackend
ap = argparse.ArgumentParser()
ap.add_argument("atlas")
ap.add_argument("configs", help="json list of [name, options, module settings]")
ap.add_argument("--every", type=int, default=3)
ap.add_argument("--grid", type=int, default=10)
ap.add_argument("--out", default="featureviz-series")
args = ap.parse_args()
root = args.atlas
meta = json.load(open(f"{root}/atlas.json"))
level = next(lv for lv in meta["levels"] if lv["grid"] == args.grid)
cells = level["cells"][::args.every]
dirs = np.load(f"{root}/{level['directions']}")[[c["direction"] for c in cells]]
acts = np.asarray(atlas_core.load(root).store().activations(), dtype=np.float64)
moment = (acts.T @ acts / len(acts)).astype(np.float32)
rf = json.load(open(f"{root}/receptive_field.json"))
model = OnnxJaxBackend().open(str(atlas_demo.efficientnet_lite0_onnx("dynamo")), mean=IMAGENET_MEAN, std=IMAGENET_STD, batch_size=16)
ex = [Image.open(f"{root}/{c['icons']['exemplar']}").convert("RGB") for c in cells]
f_ex = icon_fidelity(model, meta["layer"], ex, dirs, receptive_field=rf)
f_ex_full = icon_fidelity(model, meta["layer"], ex, dirs)
print(f"exemplar: rf-scale median {np.median(f_ex):.3f}, whole-input {np.median(f_ex_full):.3f} ({len(cells)} cells)", flush=True)
rows = [("exemplar", ex, f_ex)]
defaults = {"DECORRELATE": fv.DECORRELATE}
for name, options, knobs in json.loads(args.configs):
    for k, v in knobs.items(): setattr(fv, k, v)
    r = fv.FeatureVizRenderer()
    req = IconRequest(model=model, layer=meta["layer"], directions=dirs, icon_size=80, seed=0, moment=moment, options=options)
    t = time.perf_counter(); icons = r.render(req); dt = time.perf_counter() - t
    f = icon_fidelity(model, meta["layer"], icons, dirs, receptive_field=rf)
    extra = ""
    if icons[0].info.get("extent") != (224, 224):
        g = icon_fidelity(model, meta["layer"], [Image.fromarray(np.asarray(i)) for i in icons], dirs)  # whole-input metric
        extra = f", whole-input metric {np.median(g):.3f}"
    print(f"{name}: median {np.median(f):.3f} (beats exemplar on {np.mean(f > f_ex):.0%}){extra}; {dt:.0f} s, {dt/len(cells):.2f} s/icon; {options} {knobs}", flush=True)
    rows.append((name, icons, f))
    for k in knobs:
        setattr(fv, k, defaults[k])
cols = 11
per = -(-len(cells) // cols)
W, H = cols * 82 + 150, len(rows) * (per * 82 + 4)
canvas = Image.new("RGB", (W, H), "white"); d = ImageDraw.Draw(canvas)
for r, (name, icons, f) in enumerate(rows):
    y0 = r * (per * 82 + 4)
    d.text((4, y0 + 4), f"{name}\n{np.median(f):.3f}", fill="black")
    for k, icon in enumerate(icons):
        canvas.paste(icon.resize((80, 80)), (150 + (k % cols) * 82, y0 + (k // cols) * 82))
canvas.save(args.out + ".png")
print("wrote", args.out + ".png")
