/* actatlas activation grids: one panel per layer, an icon per position sized by its magnitude; hover shows the
 * position's numbers and, through the layer-to-layer attribution, the positions of the layer before that it comes
 * from and of the layer after that it feeds. Every string from the data goes in as text, never as HTML.
 * State for tests: data-ready on <html>, data-hover (layer:y,x) after a hover. */
(function () {
  "use strict";
  var D = window.GRID_DATA, root = document.documentElement, SIDE = 300;
  var $ = function (id) { return document.getElementById(id); };
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function max2(m) { var v = 0; m.forEach(function (r) { r.forEach(function (x) { if (x > v) v = x; }); }); return v; }
  function flow(k) {  // the flow into layer k (from layer k - 1): Uint8Array of (H_k W_k) rows of (H_{k-1} W_{k-1})
    if (!D.flows || !D.flows[k]) return null;
    if (!flow.cache) flow.cache = {};
    if (!flow.cache[k]) {
      var s = atob(D.flows[k]), a = new Uint8Array(s.length);
      for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
      flow.cache[k] = a;
    }
    return flow.cache[k];
  }

  var panels = [];
  var state = { overlay: "", hover: null };
  D.layers.forEach(function (L, k) {
    var fig = el("figure"), box = el("div", "layer"), canvas = el("canvas");
    canvas.width = L.width; canvas.height = L.height;
    var cell = SIDE / Math.max(L.width, L.height), top = max2(L.magnitude) || 1;
    var boxes = [];
    for (var y = 0; y < L.height; y++) {
      for (var x = 0; x < L.width; x++) {
        var pos = el("div", "pos");
        pos.style.left = (x * cell) + "px"; pos.style.top = (y * cell) + "px";
        pos.style.width = pos.style.height = cell + "px";
        pos.dataset.y = y; pos.dataset.x = x;
        var rel = L.magnitude[y][x] / top;
        if (L.icon_files) {
          var img = el("img");
          img.alt = "";
          img.src = L.icon_files[L.icon_index[y][x]];
          if (D.size_mode === "opacity") { img.style.width = img.style.height = cell + "px"; img.style.opacity = rel.toFixed(3); }
          else { var side = Math.max(1, cell * Math.sqrt(rel)); img.style.width = img.style.height = side + "px"; }
          pos.appendChild(img);
        } else {
          pos.style.background = "rgba(0,0,0," + rel.toFixed(3) + ")";
        }
        box.appendChild(pos);
        boxes.push(pos);
      }
    }
    box.appendChild(canvas);
    box.addEventListener("mousemove", function (e) {
      var r = box.getBoundingClientRect();
      var x = Math.floor((e.clientX - r.left) / cell), y = Math.floor((e.clientY - r.top) / cell);
      if (x < 0 || y < 0 || x >= L.width || y >= L.height) return;
      if (state.hover && state.hover.k === k && state.hover.y === y && state.hover.x === x) return;
      hover(k, y, x);
    });
    box.addEventListener("click", function () {
      var h = state.hover;
      if (!h || h.k !== k || !L.atlas || !L.cell) return;
      var c = L.atlas.cells[L.cell[h.y][h.x]];
      window.location.href = L.atlas.href + "/index.html#cell=" + L.atlas.grid + ":" + c[0] + "," + c[1];
    });
    fig.appendChild(box);
    fig.appendChild(el("figcaption", "", L.name + " \u00b7 " + L.height + "\u00d7" + L.width + "\u00d7" + L.channels +
      (L.atlas ? " \u00b7 click a position to open its cell in the atlas" : "")));
    $("layers").appendChild(fig);
    panels.push({ box: box, canvas: canvas, boxes: boxes, layer: L });
  });

  // overlays: the class attribution map or a neuron group's map, on every layer
  function paint(panel, values, colour) {
    var L = panel.layer, ctx = panel.canvas.getContext("2d"), img = ctx.createImageData(L.width, L.height);
    var top = 0;
    if (values) for (var i = 0; i < values.length; i++) if (values[i] > top) top = values[i];
    for (var p = 0; p < L.width * L.height; p++) {
      var v = values && top > 0 ? Math.max(0, values[p]) / top : 0;
      img.data[4 * p] = colour[0]; img.data[4 * p + 1] = colour[1]; img.data[4 * p + 2] = colour[2];
      img.data[4 * p + 3] = Math.round(200 * v);
    }
    ctx.putImageData(img, 0, 0);
  }
  function flat(m) { var out = []; m.forEach(function (r) { r.forEach(function (x) { out.push(x); }); }); return out; }
  function overlays() {
    panels.forEach(function (panel) {
      var L = panel.layer, values = null;
      if (state.overlay === "class" && L.class_attribution) values = flat(L.class_attribution.map);
      else if (state.overlay.indexOf("group:") === 0) {
        var g = L.groups[+state.overlay.slice(6)];
        values = g ? flat(g.map) : null;
      }
      paint(panel, values, [232, 89, 12]);
    });
  }
  var sel = $("overlay");
  if (D.layers.some(function (L) { return L.class_attribution; })) {
    var o = el("option", "", "class attribution" + (D["class"] ? ": " + D["class"].name : "")); o.value = "class"; sel.appendChild(o);
  }
  var groups = Math.max.apply(null, D.layers.map(function (L) { return (L.groups || []).length; }));
  for (var g = 0; g < groups; g++) { var og = el("option", "", "neuron group " + (g + 1)); og.value = "group:" + g; sel.appendChild(og); }
  sel.addEventListener("change", function () { state.overlay = this.value; overlays(); });

  // hover: the position's numbers, and the flow to the layers before and after
  function hover(k, y, x) {
    state.hover = { k: k, y: y, x: x };
    root.dataset.hover = D.layers[k].name + ":" + y + "," + x;
    panels.forEach(function (p) { p.boxes.forEach(function (b) { b.classList.remove("hover"); }); });
    var L = D.layers[k], panel = panels[k];
    panel.boxes[y * L.width + x].classList.add("hover");
    var info = $("info");
    info.replaceChildren();
    info.appendChild(el("h2", "", L.name + " at (" + y + ", " + x + ")"));
    var dl = el("dl");
    function row(k2, v) { dl.appendChild(el("dt", "", k2)); dl.appendChild(el("dd", "", v)); }
    row("\u2016h\u2016", L.magnitude[y][x].toFixed(4));
    if (L.class_attribution) row("attribution to " + L.class_attribution["class"], L.class_attribution.map[y][x].toFixed(5));
    if (L.icon_cosine) row("icon's cosine", L.icon_cosine[y][x].toFixed(3));
    info.appendChild(dl);
    if (L.icon_files) {
      var img = el("img", "icon"); img.alt = "icon"; img.src = L.icon_files[L.icon_index[y][x]];
      info.appendChild(img);
      var src = L.icon_sources[L.icon_index[y][x]];
      if (L.atlas) info.appendChild(el("p", "", "atlas cell (" + src.i + ", " + src.j + ") of the " + L.atlas.grid +
        "\u00d7" + L.atlas.grid + " grid" + (src.label ? ": " + src.label : "") + ", " + src.count + " samples"));
      else if (src.image) info.appendChild(el("p", "", "exemplar from " + src.image + " at (" + src.y + ", " + src.x + ")"));
      else if (L.featureviz) info.appendChild(el("p", "", "feature visualization of this position's vector (" +
        L.featureviz.steps + " steps, " + L.featureviz.size + " px, optimized with the layer's other positions)"));
    }
    if (!$("flow").checked) { overlays(); return; }
    overlays();
    var into = flow(k);  // where it comes from: row (y, x) of the flow into this layer
    if (into && k > 0) {
      var P = D.layers[k - 1], n = P.width * P.height, q = y * L.width + x, vals = [];
      for (var p = 0; p < n; p++) vals.push(into[q * n + p]);
      paint(panels[k - 1], vals, [25, 113, 194]);
    }
    var onward = flow(k + 1);  // where it goes: column (y, x) of the flow into the next layer
    if (onward && k + 1 < D.layers.length) {
      var N = D.layers[k + 1], m = L.width * L.height, p2 = y * L.width + x, vals2 = [];
      for (var q2 = 0; q2 < N.width * N.height; q2++) vals2.push(onward[q2 * m + p2]);
      paint(panels[k + 1], vals2, [47, 158, 68]);
    }
  }

  var title = [D.model, D.image].filter(Boolean).join(" \u00b7 ");
  $("title").textContent = "Activation grids" + (title ? ": " + title : "");
  document.title = $("title").textContent;
  if (D["class"]) $("class-info").textContent = "top class " + D["class"].name + " (" + (100 * D["class"].probability).toFixed(1) + "%)";
  root.dataset.ready = "1";
  window.atlasGrid = { hover: hover, data: D };
})();
