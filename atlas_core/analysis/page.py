"""Static index.html pages of `atlas health` and `atlas compare`; every string from a model is escaped."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

STYLE = ("body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
         "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
         "td.n{text-align:right}code{font-size:12px}img{max-width:100%}")
SHOWN = 24  # channel indices listed per cell; the JSON has them all


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _indices(values: list) -> str:
    if not values:
        return ""
    head = ", ".join(str(int(v)) for v in values[:SHOWN])
    more = f", … ({len(values) - SHOWN} more)" if len(values) > SHOWN else ""
    return f"<code>{_e(head + more)}</code>"


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>")


def health_page(report: dict, path: Path) -> None:
    holdout = "holdout" in report
    s = report["summary"]
    rows = []
    for e in report["layers"]:
        cells = [f"<td>{_e(e['name'])}</td><td>{_e(e['op_type'])}</td><td>{_e(e['shape'])}</td>",
                 f"<td class=n>{e['channels']}</td>"]
        for key in ("dead", "dormant", "saturated", "constant"):
            cells.append(f"<td class=n>{len(e[key])}</td><td>{_indices(e[key])}</td>")
        if holdout:
            sep = e.get("holdout_separability")
            cells.append(f"<td class=n>{'' if sep is None else f'{sep:.3f}'}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = ("<tr><th>layer</th><th>op</th><th>shape</th><th>channels</th><th colspan=2>dead</th>"
            "<th colspan=2>dormant</th><th colspan=2>saturated</th><th colspan=2>constant</th>"
            + ("<th>holdout separability</th>" if holdout else "") + "</tr>")
    skipped = report["skipped"]
    body = (f"<p>{report['images']} images"
            + (f", {len(skipped)} skipped (could not be decoded)" if skipped else "")
            + (f"; held out: {report['holdout']['images']} images" if holdout else "")
            + f". {s['layers']} layers, {s['channels']} channels: {s['dead']} dead (never &gt; 0), {s['dormant']} "
              f"dormant (score &le; {report['dormant_threshold']:g}), {s['saturated']} saturated, {s['constant']} "
              "constant. Every number per channel is in <a href='health.json'>health.json</a>.</p>"
            + "<p><img src='health.png' alt='per-layer summary'></p>"
            + f"<table>{head}{''.join(rows)}</table>")
    Path(path).write_text(_page(f"Layer health: {report['model']}", body), encoding="utf-8")


def compare_page(report: dict, path: Path) -> None:
    cka = np.array([[np.nan if v is None else v for v in row] for row in report["cka"]], dtype=np.float64)
    rows = []
    for i, name in enumerate(report["layers_a"]):
        j = int(np.nanargmax(cka[i])) if np.isfinite(cka[i]).any() else None
        best = f"{_e(report['layers_b'][j])} ({cka[i, j]:.3f})" if j is not None else ""
        diag = ""
        if name in report["layers_b"]:
            v = cka[i, report["layers_b"].index(name)]
            diag = "" if not np.isfinite(v) else f"{v:.3f}"
        rows.append(f"<tr><td>{_e(name)}</td><td class=n>{diag}</td><td>{best}</td></tr>")
    b = report.get("model_b") or report["model_a"]
    body = (f"<p>Linear CKA between {len(report['layers_a'])} layers of {_e(report['model_a'])} (rows) and "
            f"{len(report['layers_b'])} layers of {_e(b)} (columns) on {report['images']} images, one mean-pooled "
            "vector per image; all values are in <a href='compare.json'>compare.json</a>.</p>"
            "<p><img src='compare.png' alt='CKA heat map'></p>")
    knn = report.get("knn")
    if knn:
        body += (f"<p>kNN overlap (k = {knn['k']}) between {_e(knn['layer_a'])} and {_e(knn['layer_b'])} on "
                 f"{len(knn['overlap'])} images: mean {knn['mean']:.3f}.</p>")
    body += ("<table><tr><th>layer of A</th><th>CKA with the same name in B</th><th>most similar layer of B</th>"
             f"</tr>{''.join(rows)}</table>")
    Path(path).write_text(_page(f"Compare: {report['model_a']} / {b}", body), encoding="utf-8")
