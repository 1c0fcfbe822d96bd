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
    al = report.get("aligned")
    if al:
        m = al["methods"][al["method"]]
        body += (f"<p><a href='aligned.html'>Aligned atlases</a> of {_e(al['layer_a'])} and {_e(al['layer_b'])} "
                 f"on {al['images']} images ({_e(al['method'])}; trustworthiness {m['trustworthiness_a']:.3f} / "
                 f"{m['trustworthiness_b']:.3f}).</p><p><a href='aligned.html'><img src='aligned.png' "
                 "alt='aligned atlases'></a></p>")
    body += ("<table><tr><th>layer of A</th><th>CKA with the same name in B</th><th>most similar layer of B</th>"
             f"</tr>{''.join(rows)}</table>")
    Path(path).write_text(_page(f"Compare: {report['model_a']} / {b}", body), encoding="utf-8")


def _json_script(data) -> str:
    """``data`` as JSON inside a script element, every ``<`` written ``\\u003c`` so no string can end it."""
    import json
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def _trust_rows(report: dict) -> str:
    rows = []
    for name, m in list(report["methods"].items()) + [("plain (each layer alone)", report.get("plain"))]:
        if m is None:
            if name != "plain (each layer alone)":
                rows.append(f"<tr><td>{_e(name)}</td><td colspan=4>not available with this reducer</td></tr>")
            continue
        drawn = " (drawn)" if name == report["method"] else ""
        rows.append(f"<tr><td>{_e(name)}{drawn}</td><td class=n>{m['trustworthiness_a']:.4f}</td>"
                    f"<td class=n>{m['trustworthiness_b']:.4f}</td>"
                    f"<td class=n>{'' if 'same_cell' not in m else format(m['same_cell'], '.3f')}</td>"
                    f"<td class=n>{'' if 'mean_shift' not in m else format(m['mean_shift'], '.3f')}</td></tr>")
    return ("<table><tr><th>layout</th><th>trustworthiness A</th><th>trustworthiness B</th>"
            "<th>same cell on both sides</th><th>mean shift</th></tr>" + "".join(rows) + "</table>")


ALIGNED_STYLE = (".pair{display:flex;gap:16px;flex-wrap:wrap}.side h2{font-size:15px;margin:.3em 0}"
                 ".view{position:relative;width:460px;height:460px;overflow:hidden;border:1px solid #bbb;"
                 "cursor:crosshair;background:#fff;user-select:none}.stage{position:absolute;left:0;top:0;"
                 "width:460px;height:460px;transform-origin:0 0}.stage img{width:100%;height:100%;display:block;"
                 "image-rendering:pixelated;pointer-events:none}.mark{position:absolute;box-sizing:border-box;"
                 "border:2px solid #d62728;pointer-events:none;display:none}.spread{position:absolute;"
                 "background:rgba(214,39,40,.35);pointer-events:none}#info{display:flex;gap:16px;min-height:7em}"
                 "#info>div{width:460px}#info b{font-weight:600}.lbl{color:#555}")

ALIGNED_SCRIPT = r"""
(function(){
const D = JSON.parse(document.getElementById('data').textContent);
const G = D.grid, S = 460, C = S / G;
const view = {scale: 1, tx: 0, ty: 0};
const sides = D.sides.map((s, k) => {
  const cells = new Map();
  s.cells.forEach(c => cells.set(c.j * G + c.i, c));
  return {data: s, cells: cells, el: document.getElementById('view-' + 'ab'[k]),
          stage: document.getElementById('stage-' + 'ab'[k]), mark: document.getElementById('mark-' + 'ab'[k]),
          info: document.getElementById('info-' + 'ab'[k]), spread: document.getElementById('spread-' + 'ab'[k])};
});
function apply(){
  for (const s of sides) s.stage.style.transform = `translate(${view.tx}px,${view.ty}px) scale(${view.scale})`;
  document.documentElement.dataset.zoom = view.scale.toFixed(3);
}
function clampView(){
  view.scale = Math.min(12, Math.max(1, view.scale));
  view.tx = Math.min(0, Math.max(S - S * view.scale, view.tx));
  view.ty = Math.min(0, Math.max(S - S * view.scale, view.ty));
}
function cellAt(side, ev){
  const r = side.el.getBoundingClientRect();
  const x = (ev.clientX - r.left - view.tx) / view.scale, y = (ev.clientY - r.top - view.ty) / view.scale;
  if (x < 0 || y < 0 || x >= S || y >= S) return null;
  return [Math.floor(x / C), Math.floor(y / C)];
}
function line(parent, label, text){
  const p = document.createElement('div');
  const l = document.createElement('span'); l.className = 'lbl'; l.textContent = label + ': ';
  const v = document.createElement('span'); v.textContent = text;
  p.append(l, v); parent.append(p);
}
function describe(side, key, from){
  const box = side.info; box.replaceChildren();
  const h = document.createElement('b');
  h.textContent = side.data.model + ' / ' + side.data.layer + ' - cell ' + (key % G) + ',' + Math.floor(key / G);
  box.append(h);
  const c = side.cells.get(key);
  if (!c) line(box, 'cell', 'empty (fewer than ' + D.min_count + ' images)');
  else {
    line(box, 'images', String(c.count));
    line(box, 'exemplar', D.names[c.exemplar]);
    if (c.labels.length) line(box, 'labels', c.labels.map(l => l[0] + ' ' + Math.round(l[1] * 100) + '%').join(', '));
  }
  if (from) {
    const same = from.ids.filter(i => side.data.cell_of[i] === key).length;
    const spread = new Set(from.ids.map(i => side.data.cell_of[i])).size;
    line(box, 'of the hovered cell\'s images here', same + ' of ' + from.ids.length + ' (they lie in ' + spread +
         (spread === 1 ? ' cell' : ' cells') + ' on this side)');
  }
}
function hover(k, ij){
  const other = sides[1 - k];
  if (!ij) { for (const s of sides) { s.mark.style.display = 'none'; s.spread.replaceChildren(); }
             delete document.documentElement.dataset.hover; return; }
  const key = ij[1] * G + ij[0];
  for (const s of sides) {
    s.mark.style.display = 'block';
    Object.assign(s.mark.style, {left: ij[0] * C + 'px', top: ij[1] * C + 'px', width: C + 'px', height: C + 'px'});
  }
  const here = sides[k].cells.get(key);
  other.spread.replaceChildren(); sides[k].spread.replaceChildren();
  if (here) {  // where the hovered cell's images lie on the other side
    const counts = new Map();
    for (const i of here.ids) { const c = other.data.cell_of[i]; counts.set(c, (counts.get(c) || 0) + 1); }
    for (const [c, n] of counts) {
      const d = document.createElement('div'); d.className = 'spread';
      Object.assign(d.style, {left: (c % G) * C + 'px', top: Math.floor(c / G) * C + 'px', width: C + 'px',
                              height: C + 'px', opacity: String(0.25 + 0.75 * n / here.ids.length)});
      other.spread.append(d);
    }
  }
  describe(sides[k], key, null);
  describe(other, key, here);
  document.documentElement.dataset.hover = 'ab'[k] + ':' + ij[0] + ',' + ij[1];
}
let drag = null;
sides.forEach((s, k) => {
  s.el.addEventListener('mousemove', ev => {
    if (drag) {
      view.tx = drag.tx + ev.clientX - drag.x; view.ty = drag.ty + ev.clientY - drag.y; clampView(); apply();
    }
    hover(k, cellAt(s, ev));
  });
  s.el.addEventListener('mouseleave', () => { drag = null; hover(k, null); });
  s.el.addEventListener('mousedown', ev => {
    drag = {x: ev.clientX, y: ev.clientY, tx: view.tx, ty: view.ty}; ev.preventDefault();
  });
  s.el.addEventListener('mouseup', () => { drag = null; });
  s.el.addEventListener('dblclick', () => { view.scale = 1; view.tx = 0; view.ty = 0; apply(); });
  s.el.addEventListener('wheel', ev => {
    ev.preventDefault();
    const r = s.el.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top;
    const f = Math.exp(-ev.deltaY * 0.0015), old = view.scale;
    view.scale = Math.min(12, Math.max(1, old * f));
    view.tx = mx - (mx - view.tx) * view.scale / old; view.ty = my - (my - view.ty) * view.scale / old;
    clampView(); apply(); hover(k, cellAt(s, ev));
  }, {passive: false});
});
window.alignedAtlas = {view: view, apply: apply, hover: hover, data: D};
apply();
document.documentElement.dataset.ready = '1';
})();
"""


def aligned_page(report: dict, path: Path) -> None:
    """aligned.html: the two aligned atlases side by side with linked hover, zoom (wheel) and pan (drag)."""
    data = {"grid": report["grid"], "min_count": report["min_count"], "names": report["names"],
            "sides": [{"model": s["model"], "layer": s["layer"], "cell_of": s["cell_of"],
                       "cells": [{k: c[k] for k in ("i", "j", "count", "ids", "exemplar", "labels")}
                                 for c in s["cells"]]} for s in report["sides"]]}
    panels = []
    for tag, s in zip("ab", report["sides"]):
        panels.append(f"<div class=side><h2>{tag.upper()}: {_e(s['model'])} / {_e(s['layer'])}</h2>"
                      f"<div class=view id=view-{tag}><div class=stage id=stage-{tag}>"
                      f"<img src='{_e(s['image'])}' alt='aligned atlas {tag.upper()}'>"
                      f"<div id=spread-{tag}></div><div class=mark id=mark-{tag}></div></div></div></div>")
    body = (f"<p>{report['images']} images, one layout per layer in one coordinate system "
            f"(method <b>{_e(report['method'])}</b>, reducer {_e(report['reducer'])}, grid {report['grid']} x "
            f"{report['grid']}, cells of at least {report['min_count']} images). Hover a cell: the same cell is "
            "framed on the other side, and the cells where its images lie there are shaded (darker: more). "
            "Wheel: zoom, drag: pan, double-click: reset; both sides move together. Every number is in "
            "<a href='aligned.json'>aligned.json</a>.</p>"
            + _trust_rows(report)
            + f"<div class=pair>{''.join(panels)}</div><div id=info><div id=info-a></div><div id=info-b></div></div>"
            + f"<script type='application/json' id=data>{_json_script(data)}</script>"
            + f"<script>{ALIGNED_SCRIPT}</script>")
    title = f"Aligned atlases: {report['sides'][0]['model']} / {report['sides'][0]['layer']} and " \
            f"{report['sides'][1]['model']} / {report['sides'][1]['layer']}"
    html_text = (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
                 f"<style>{STYLE}{ALIGNED_STYLE}</style></head><body><h1 id=title>{_e(title)}</h1>{body}</body></html>")
    Path(path).write_text(html_text, encoding="utf-8")
