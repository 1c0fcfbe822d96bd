"""The PNG summaries of `atlas health` and `atlas compare`, drawn with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

INK, GRID, PAPER, MISSING = (30, 30, 30), (215, 215, 215), (255, 255, 255), (190, 190, 190)
VERDICT_COLOURS = {"dead": (200, 40, 40), "dormant": (240, 150, 30), "saturated": (40, 100, 200)}
# a perceptually even dark-blue to yellow ramp (anchors of the viridis map)
RAMP = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], np.float64)
BINS = 20


def font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font, one size
        return ImageFont.load_default()


def colour(v: float) -> tuple:
    """``v`` in [0, 1] on the ramp; NaN is grey."""
    if v is None or not np.isfinite(v):
        return MISSING
    t = float(np.clip(v, 0, 1)) * (len(RAMP) - 1)
    i = min(int(t), len(RAMP) - 2)
    return tuple(int(round(c)) for c in RAMP[i] + (RAMP[i + 1] - RAMP[i]) * (t - i))


def _fit(text: str, f, width: int, draw: ImageDraw.ImageDraw) -> str:
    """``text`` shortened from the left with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=f) <= width:
        return text
    while text and draw.textlength("…" + text, font=f) > width:
        text = text[1:]
    return "…" + text


def health_figure(report: dict, path: Path) -> None:
    """Per layer a row: dead / dormant / saturated share as bars, the histogram of per-channel active
    fractions, and the holdout separability where measured."""
    layers = report["layers"]
    holdout = any("holdout_separability" in e for e in layers)
    row = 22
    f, small, big = font(12), font(10), font(15)
    name_w, bar_w, count_w, hist_w, sep_w, gap = 190, 220, 150, 220, 170 if holdout else 0, 14
    top = 78
    width = 12 + name_w + bar_w + count_w + hist_w + sep_w + gap * 5 + 10
    height = top + row * len(layers) + 34
    img = Image.new("RGB", (width, height), PAPER)
    d = ImageDraw.Draw(img)
    d.text((12, 8), _fit(f"Layer health: {report['model']} ({report['images']} images)", big, width - 24, d),
           font=big, fill=INK)
    x_bar = 12 + name_w + gap
    x_count = x_bar + bar_w + 2 * gap + 10
    x_hist = x_count + count_w + gap
    x_sep = x_hist + hist_w + gap
    lx = 12
    for key, c in VERDICT_COLOURS.items():
        d.rectangle((lx, 58, lx + 10, 68), fill=c)
        d.text((lx + 14, 56), key, font=small, fill=INK)
        lx += 64
    d.text((x_bar, 32), "share of channels", font=small, fill=INK)
    for q in range(5):
        tick = f"{25 * q}%"
        d.text((x_bar + bar_w * q // 4 - d.textlength(tick, font=small) // 2, 56), tick, font=small, fill=INK)
    d.text((x_count, 56), "dead / dormant / saturated", font=small, fill=INK)
    d.text((x_hist, 32), "channels by active fraction", font=small, fill=INK)
    d.text((x_hist, 56), "0", font=small, fill=INK)
    d.text((x_hist + hist_w - 8, 56), "1", font=small, fill=INK)
    if holdout:
        d.text((x_sep, 32), "holdout separability", font=small, fill=INK)
        d.text((x_sep, 56), "0.5", font=small, fill=INK)
        d.text((x_sep + sep_w - 30, 56), "1.0", font=small, fill=INK)
    for q in range(5):
        x = x_bar + bar_w * q // 4
        d.line((x, top - 4, x, top + row * len(layers)), fill=GRID)
    for r, e in enumerate(layers):
        y = top + r * row
        if r % 2:
            d.rectangle((0, y, width, y + row - 1), fill=(246, 246, 246))
        d.text((12, y + 4), _fit(e["name"], f, name_w, d), font=f, fill=INK)
        n = max(1, e["channels"])
        for k, (key, c) in enumerate(VERDICT_COLOURS.items()):
            share = len(e[key]) / n
            y0 = y + 3 + k * 6
            if share > 0:
                d.rectangle((x_bar, y0, x_bar + max(1, int(round(share * bar_w))), y0 + 4), fill=c)
        d.text((x_count, y + 4), f"{len(e['dead'])} / {len(e['dormant'])} / {len(e['saturated'])} of {n}",
               font=small, fill=INK)
        counts, _ = np.histogram(np.asarray(e["active_fraction"], dtype=np.float64), bins=BINS, range=(0, 1))
        top_count = max(1, counts.max())
        bw = hist_w / BINS
        d.line((x_hist, y + row - 3, x_hist + hist_w, y + row - 3), fill=GRID)
        for b, cnt in enumerate(counts):
            if cnt:
                h = max(1, int(round((row - 6) * cnt / top_count)))
                d.rectangle((int(x_hist + b * bw), y + row - 3 - h, int(x_hist + (b + 1) * bw) - 1, y + row - 3),
                            fill=(90, 90, 90))
        sep = e.get("holdout_separability")
        if holdout and sep is not None:
            x = x_sep + int(round(np.clip((sep - 0.5) / 0.5, 0, 1) * (sep_w - 50)))
            d.line((x_sep, y + row // 2, x_sep + sep_w - 50, y + row // 2), fill=GRID)
            d.ellipse((x - 4, y + row // 2 - 4, x + 4, y + row // 2 + 4), fill=colour((sep - 0.5) / 0.5))
            d.text((x_sep + sep_w - 42, y + 4), f"{sep:.3f}", font=small, fill=INK)
    s = report["summary"]
    d.text((12, height - 24), f"{s['layers']} layers, {s['channels']} channels: {s['dead']} dead, {s['dormant']} "
           f"dormant (score <= {report['dormant_threshold']:g}), {s['saturated']} saturated "
           f"(at a bound on >= {report['saturated_share']:.0%} of positions)", font=small, fill=INK)
    img.save(path)


def _rotated_text(text: str, f, fill=INK) -> Image.Image:
    box = f.getbbox(text)
    label = Image.new("RGBA", (max(1, box[2] + 2), max(1, box[3] + 2)), (0, 0, 0, 0))
    ImageDraw.Draw(label).text((0, 0), text, font=f, fill=fill)
    return label.rotate(90, expand=True)


def heatmap_figure(matrix: np.ndarray, rows: list, cols: list, path: Path, title: str, subtitle: str,
                   overlap=None, k: int = 10, overlap_title: str = "") -> None:
    """A [0, 1] matrix as a heat map with layer names on both axes and a colour bar (values written in the
    cells when they are large enough); optionally a histogram of per-sample kNN overlaps below it."""
    matrix = np.asarray(matrix, dtype=np.float64)
    nr, nc = matrix.shape
    cell = int(max(3, min(34, 720 // max(nr, nc, 1))))
    label_every = max(1, int(np.ceil(11 / cell)))
    fs = int(max(8, min(12, cell - 2))) if label_every == 1 else 10
    f, small, big = font(fs), font(10), font(15)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = int(min(200, max([probe.textlength(str(r), font=f) for r in rows] + [20]))) + 8
    label_h = int(min(200, max([probe.textlength(str(c), font=f) for c in cols] + [20]))) + 8
    left, top = 18 + label_w, 56
    hist_h = 190 if overlap is not None else 0
    width = max(left + nc * cell + 100, int(probe.textlength(title, font=big)) + 24,
                int(probe.textlength(subtitle, font=small)) + 24, 480)
    height = top + nr * cell + label_h + 16 + hist_h
    img = Image.new("RGB", (width, height), PAPER)
    d = ImageDraw.Draw(img)
    d.text((12, 8), title, font=big, fill=INK)
    d.text((12, 30), subtitle, font=small, fill=INK)
    for i in range(nr):
        for j in range(nc):
            x0, y0 = left + j * cell, top + i * cell
            c = colour(matrix[i, j])
            d.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=c)
            if cell >= 30 and np.isfinite(matrix[i, j]):
                text = f"{matrix[i, j]:.2f}"
                ink = INK if sum(c) > 380 else PAPER
                d.text((x0 + (cell - d.textlength(text, font=small)) / 2, y0 + cell / 2 - 6), text, font=small,
                       fill=ink)
    for i, name in enumerate(rows):
        if i % label_every == 0:
            text = _fit(str(name), f, label_w - 8, d)
            d.text((left - 6 - d.textlength(text, font=f), top + i * cell + (cell - fs) // 2 - 1), text,
                   font=f, fill=INK)
    for j, name in enumerate(cols):
        if j % label_every == 0:
            label = _rotated_text(_fit(str(name), f, label_h - 8, d), f)
            img.paste(label, (left + j * cell + (cell - label.width) // 2, top + nr * cell + 4), label)
    bx, bh = left + nc * cell + 24, max(60, min(300, nr * cell))
    for y in range(bh):
        d.line((bx, top + y, bx + 14, top + y), fill=colour(1 - y / (bh - 1)))
    d.text((bx + 18, top - 4), "1", font=small, fill=INK)
    d.text((bx + 18, top + bh - 10), "0", font=small, fill=INK)
    d.text((bx - 4, top + bh + 4), "CKA", font=small, fill=INK)
    if overlap is not None:
        _overlap_histogram(d, np.asarray(overlap, dtype=np.float64), k, 12, height - hist_h + 8,
                           min(img.width - 24, 460), hist_h - 40, overlap_title, small)
    img.save(path)


def _overlap_histogram(d, values, k, x, y, w, h, title, f) -> None:
    """Bars of how many samples share 0, 1, ..., k of their k neighbours, and the mean as a red line."""
    d.text((x, y), title, font=f, fill=INK)
    counts = np.bincount(np.rint(values * k).astype(np.int64), minlength=k + 1)[:k + 1]
    top, base = y + 18, y + h - 2
    peak = max(1, int(counts.max()))
    bw = w / (k + 1)
    for b, cnt in enumerate(counts):
        bh = int(round((base - top) * cnt / peak))
        d.rectangle((int(x + b * bw), base - bh, int(x + (b + 1) * bw) - 2, base), fill=(90, 90, 90))
    d.line((x, base, x + w, base), fill=INK)
    d.text((x, base + 2), "0", font=f, fill=INK)
    d.text((x + w - 8, base + 2), f"{k}", font=f, fill=INK)
    d.text((x + w / 2 - 60, base + 2), "neighbours shared", font=f, fill=INK)
    if values.size:
        mx = x + int(round((float(values.mean()) * k + 0.5) * bw))
        d.line((mx, top, mx, base), fill=(200, 40, 40))
        d.text((min(mx + 4, x + w - 90), top), f"mean {values.mean():.3f}", font=f, fill=(200, 40, 40))


def aligned_figure(report: dict, mosaics: list, path: Path) -> None:
    """aligned.png: the two aligned atlases side by side with their names, a shared grid, and the
    trustworthiness of each side."""
    big, small = font(15), font(11)
    side = max(m.width for m in mosaics)
    gap, left, top = 24, 12, 64
    width = left * 2 + 2 * side + gap
    img = Image.new("RGB", (width, top + side + 40), PAPER)
    d = ImageDraw.Draw(img)
    d.text((left, 8), _fit(f"Aligned atlases ({report['method']}, {report['images']} images, grid "
                           f"{report['grid']})", big, width - 24, d), font=big, fill=INK)
    m = report["methods"][report["method"]]
    for k, (mosaic, s) in enumerate(zip(mosaics, report["sides"])):
        x = left + k * (side + gap)
        d.text((x, 34), _fit(f"{'AB'[k]}: {s['layer']} of {s['model']}", small, side, d), font=small, fill=INK)
        trust = m["trustworthiness_a" if k == 0 else "trustworthiness_b"]
        d.text((x, 48), f"trustworthiness {trust:.3f}", font=small, fill=INK)
        img.paste(mosaic, (x, top))
        g = report["grid"]
        for q in range(g + 1):  # the shared grid, so a cell can be found on both sides
            t = int(round(q * mosaic.width / g))
            d.line((x + t, top, x + t, top + mosaic.height), fill=GRID)
            d.line((x, top + t, x + mosaic.width, top + t), fill=GRID)
    d.text((left, top + side + 12), f"same cell on both sides: {m['same_cell']:.1%} of the images",
           font=small, fill=INK)
    img.save(path)
