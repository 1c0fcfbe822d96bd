/* actatlas viewer: pan and zoom an activation atlas with Leaflet (CRS.Simple).
 * Each zoom shows the finest grid level whose cells are still at least MIN_CELL_PX on screen; tiles of 256 px
 * are built lazily from that level's cells. A level whose cells are not in atlas-data.js (it has a `script`)
 * is loaded the first time it is needed, as a script that calls window.ATLAS_LEVEL(k, data) (file:// pages
 * may not fetch()); the next finer level is prefetched once a level is on screen. Every string from the data goes into the DOM through textContent or
 * a property, never through HTML. State for tests and scripts: data-level, data-grid, data-ready on <html>. */
(function () {
  "use strict";
  var D = window.ATLAS_DATA;
  var root = document.documentElement;
  var files = D.files || {};
  var WORLD = 256;          // the atlas side in map units (pixels at zoom 0)
  var MIN_CELL_PX = 40;     // a level is shown once its cells are at least this big on screen
  var LABEL_MIN_PX = 48;    // no labels on smaller cells: the icons need the room
  var TILE = 256;
  var MAX_THUMBS = 12;

  var state = { renderer: 0, query: "", heat: -1, attr: -1, pinned: null, hover: null, level: -1 };
  D.images = D.images || {};
  function setCells(lv, cells) {
    lv.cells = cells;
    cells.forEach(function (c) { lv.byKey.set(c[1] * lv.grid + c[0], c); });
  }
  var levels = D.levels.map(function (lv) {
    var out = { grid: lv.grid, cells: null, byKey: new Map(), script: lv.script || null, waiting: [],
                nCells: lv.cells ? lv.cells.length : lv.n_cells || 0 };
    if (lv.cells) setCells(out, lv.cells);
    return out;
  });
  // a level's script calls this with its cells and the names of its members' images
  window.ATLAS_LEVEL = function (k, data) {
    var lv = levels[k];
    if (!lv || lv.cells) return;
    Object.keys(data.images || {}).forEach(function (id) { D.images[id] = data.images[id]; });
    setCells(lv, data.cells);
    var waiting = lv.waiting;
    lv.waiting = [];
    waiting.forEach(function (fn) { fn(); });
  };
  // call fn once level k's cells are here (at once if they are)
  function withLevel(k, fn) {
    var lv = levels[k];
    if (lv.cells) { if (fn) fn(); return; }
    if (fn) lv.waiting.push(fn);
    if (lv.loading || !lv.script) return;
    lv.loading = true;
    var s = document.createElement("script");
    s.src = lv.script; s.async = true;
    s.onerror = function () { lv.loading = false; root.dataset.levelError = lv.script; };
    document.head.appendChild(s);
  }
  var $ = function (id) { return document.getElementById(id); };
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function src(path) { return files[path] || path; }
  function pct(x) { return (100 * x).toFixed(x < 0.1 ? 1 : 0) + "%"; }

  // cell = [i, j, count, [labelIndex, share, ...], [icon per renderer], [[image, y, x], ...],
  //         [classIndex, mean attribution, ...], {other label source: [labelIndex, share, ...]}]
  function cellLabel(c) { return c[3].length ? D.labels[c[3][0]] : ""; }
  function labelShare(c) { return c[3].length ? c[3][1] : 0; }
  function cellAttr(c, li) {
    var a = c[6] || [];
    for (var k = 0; k < a.length; k += 2) if (a[k] === li) return a[k + 1];
    return 0;
  }
  // a level's largest attribution to the chosen class: the heat map's full colour (the article's normalization)
  var attrMax = new Map();
  function levelAttrMax(lv) {
    var key = lv.grid + ":" + state.attr;
    if (!attrMax.has(key)) {
      var m = 0;
      (lv.cells || []).forEach(function (c) { m = Math.max(m, cellAttr(c, state.attr)); });
      attrMax.set(key, m);
    }
    return attrMax.get(key);
  }
  function cellShare(c, li) {
    for (var k = 0; k < c[3].length; k += 2) if (c[3][k] === li) return c[3][k + 1];
    return 0;
  }
  function cellIcon(c) { return c[4][state.renderer] || c[4].find(function (p) { return p; }) || null; }
  function matches(c) {
    for (var k = 0; k < c[3].length; k += 2) if (D.labels[c[3][k]].toLowerCase().indexOf(state.query) >= 0) return true;
    return false;
  }

  // which level a zoom shows
  function atlasPx(z) { return WORLD * Math.pow(2, z); }
  function levelFor(z) {
    var best = 0;
    levels.forEach(function (lv, k) { if (atlasPx(z) / lv.grid >= MIN_CELL_PX) best = k; });
    return best;
  }

  // label widths, measured once per label
  var ctx = document.createElement("canvas").getContext("2d");
  var probe = el("div", "cell-label"), probeLabel = el("div", "label", "x");
  probe.appendChild(probeLabel); probe.style.visibility = "hidden"; document.body.appendChild(probe);
  var font = getComputedStyle(probeLabel);
  ctx.font = font.fontWeight + " " + font.fontSize + " " + font.fontFamily;  // the font the labels are drawn in
  probe.remove();
  var widths = new Map();
  function labelWidth(s) {
    if (!widths.has(s)) widths.set(s, ctx.measureText(s).width);
    return widths.get(s);
  }

  // A label is drawn once per run of cells with the same label, at the run's first cell, where it fits: over its
  // cell and the next cells of the row that are empty or share it (at most MAX_LABEL_CELLS).
  var MAX_LABEL_CELLS = 3;
  function labelSpan(lv, c, cellPx) {
    var text = cellLabel(c), i = c[0], j = c[1];
    if (!text || cellPx < LABEL_MIN_PX) return 0;
    var left = i > 0 && lv.byKey.get(j * lv.grid + i - 1);
    if (left && cellLabel(left) === text) return 0;
    var n = 1;
    while (n < MAX_LABEL_CELLS && i + n < lv.grid) {
      var next = lv.byKey.get(j * lv.grid + i + n);
      if (next && cellLabel(next) !== text) break;
      n++;
    }
    var need = labelWidth(text) + 6;
    return need <= n * cellPx ? Math.max(cellPx, need) : 0;
  }

  // the map
  var map = L.map("map", {
    crs: L.CRS.Simple, zoomSnap: 0.5, zoomDelta: 0.5, wheelPxPerZoomLevel: 80, attributionControl: false,
    keyboard: true, keyboardPanDelta: 120, inertia: true, zoomAnimation: true
  });
  var bounds = L.latLngBounds([[-WORLD, 0], [0, WORLD]]);
  var finest = levels[levels.length - 1].grid;
  map.setMaxZoom(Math.ceil(Math.log2(4 * MIN_CELL_PX * finest / WORLD) * 2) / 2);
  map.setMaxBounds(bounds.pad(0.25));
  // the first view shows the whole atlas, every row of it, at the finest level that fits
  map.fitBounds(bounds, { padding: [6, 6], animate: false });
  map.setMinZoom(map.getZoom() - 1);

  // The cells of a 256 px tile: those whose top-left corner lies in it, each called with its box's position.
  function eachCell(coords, fn) {
    var k = levelFor(coords.z), lv = levels[k];
    if (!lv.cells) { withLevel(k, redrawAll); return; }  // drawn again once its script is here
    var cellPx = atlasPx(coords.z) / lv.grid;
    var x0 = coords.x * TILE, y0 = coords.y * TILE;
    var i0 = Math.max(0, Math.ceil(x0 / cellPx)), i1 = Math.min(lv.grid, Math.ceil((x0 + TILE) / cellPx));
    var j0 = Math.max(0, Math.ceil(y0 / cellPx)), j1 = Math.min(lv.grid, Math.ceil((y0 + TILE) / cellPx));
    for (var j = j0; j < j1; j++) {
      for (var i = i0; i < i1; i++) {
        var c = lv.byKey.get(j * lv.grid + i);
        if (c) fn(c, lv, cellPx, i * cellPx - x0, j * cellPx - y0);
      }
    }
  }
  function cellBox(cls, left, top, cellPx) {
    var box = el("div", cls);
    box.style.left = left + "px"; box.style.top = top + "px";
    box.style.width = box.style.height = cellPx + "px";
    return box;
  }

  // icons: a tile is done when its icons have loaded
  var IconLayer = L.GridLayer.extend({
    createTile: function (coords, done) {
      var tile = el("div", "atlas-tile"), pending = 1;
      function loaded() { if (--pending === 0) done(null, tile); }
      eachCell(coords, function (c, lv, cellPx, left, top) {
        var box = cellBox("cell", left, top, cellPx);
        box.dataset.i = c[0]; box.dataset.j = c[1];
        var mean = D.meta.n_samples / (lv.grid * lv.grid);
        var size = Math.max(2, 0.96 * cellPx * Math.min(1, Math.sqrt(c[2] / mean)));
        var path = cellIcon(c), img = el(path ? "img" : "div", path ? "" : "no-icon");
        img.style.width = img.style.height = Math.round(size) + "px";
        if (path) {
          img.alt = ""; img.draggable = false; img.decoding = "async";
          pending++;
          img.onload = img.onerror = loaded;
          img.src = src(path);
        }
        box.appendChild(img);
        if (state.heat >= 0 || state.attr >= 0) {
          var h = el("div", "heat"), top = state.attr >= 0 ? levelAttrMax(lv) : 1;
          var v = state.attr >= 0 ? Math.max(0, cellAttr(c, state.attr)) / (top || 1) : cellShare(c, state.heat);
          h.style.opacity = (0.85 * v).toFixed(3);
          box.dataset.heat = v.toFixed(4);
          box.appendChild(h);
        }
        if (state.query && matches(c)) box.classList.add("hit");
        tile.appendChild(box);
      });
      setTimeout(loaded, 0);
      return tile;
    }
  });
  // labels: in their own pane above every icon tile, since a label may run over its neighbours
  var LabelLayer = L.GridLayer.extend({
    createTile: function (coords) {
      var tile = el("div", "atlas-tile");
      eachCell(coords, function (c, lv, cellPx, left, top) {
        var span = labelSpan(lv, c, cellPx);
        if (!span) return;
        var box = cellBox("cell-label", left, top, cellPx), lab = el("div", "label", cellLabel(c));
        lab.style.width = span + "px";
        // a weak label is faded: its opacity follows its share of the cell (full from a share of one half)
        lab.style.opacity = (0.35 + 0.65 * Math.min(1, labelShare(c) / 0.5)).toFixed(2);
        lab.title = cellLabel(c) + " " + pct(labelShare(c));
        box.appendChild(lab);
        tile.appendChild(box);
      });
      return tile;
    }
  });
  map.createPane("labels").style.zIndex = 450;
  var tileOptions = { tileSize: TILE, bounds: bounds, noWrap: true, updateWhenZooming: false, keepBuffer: 2 };
  var layer = new IconLayer(tileOptions).addTo(map);
  var labelLayer = new LabelLayer(L.extend({ pane: "labels" }, tileOptions)).addTo(map);
  var redrawPending = false;
  function redrawAll() {  // once per batch of tiles that waited for the same level
    if (redrawPending) return;
    redrawPending = true;
    setTimeout(function () { redrawPending = false; layer.redraw(); labelLayer.redraw(); }, 0);
  }
  function onLoad() {  // ready: the tiles of a loaded level have their icons
    if (!levels[currentLevel()].cells) return;
    layer.off("load", onLoad);
    root.dataset.ready = "1";
    if (window.performance && performance.mark) performance.mark("atlas-icons-loaded");
    var next = currentLevel() + 1;  // prefetch the next finer level while the user looks
    if (next < levels.length) setTimeout(function () { withLevel(next); }, 0);
  }
  layer.on("load", onLoad);

  function currentLevel() { return levelFor(Math.round(map.getZoom())); }
  function showLevel() {
    var k = currentLevel(), lv = levels[k];
    if (!lv.cells) { withLevel(k, showLevel); return; }  // the level's state once its cells are here
    if (k + 1 < levels.length) withLevel(k + 1);
    root.dataset.level = k; root.dataset.grid = lv.grid; root.dataset.cells = lv.cells.length;
    $("level-info").textContent = "level " + (k + 1) + " of " + levels.length + ": " + lv.grid + "\u00d7" + lv.grid +
      " grid, " + lv.cells.length + " cells" +
      (D.meta.levels_left_out ? " (" + D.meta.levels_left_out + " finer levels only in the atlas folder's index.html)" : "");
    if (k !== state.level) { state.level = k; updateSearchInfo(); }
  }
  map.on("zoomend", showLevel);

  // hover and click: find the cell under the pointer in the level on screen
  var outline = L.rectangle([[0, 0], [0, 0]], { color: "#e8590c", weight: 2, fill: false, interactive: false, className: "cell-outline" });
  function cellAt(latlng) {
    var lv = levels[currentLevel()];
    var i = Math.floor(latlng.lng / WORLD * lv.grid), j = Math.floor(-latlng.lat / WORLD * lv.grid);
    if (i < 0 || j < 0 || i >= lv.grid || j >= lv.grid) return null;
    var c = lv.byKey.get(j * lv.grid + i);
    return c ? { cell: c, grid: lv.grid } : null;
  }
  function mark(hit) {
    if (!hit) { outline.remove(); return; }
    var s = WORLD / hit.grid, i = hit.cell[0], j = hit.cell[1];
    outline.setBounds([[-j * s, i * s], [-(j + 1) * s, (i + 1) * s]]).addTo(map);
  }
  map.on("mousemove", function (e) {
    if (state.pinned) return;
    var hit = cellAt(e.latlng);
    if ((hit && hit.cell) === state.hover) return;
    state.hover = hit && hit.cell;
    mark(hit);
    if (hit) showCell(hit, false);
  });
  function pin(latlng) {
    var hit = cellAt(latlng);
    state.pinned = hit;
    state.hover = null;
    mark(hit);
    if (hit) showCell(hit, true);
  }
  map.on("click", function (e) { pin(e.latlng); });
  // keyboard: Enter pins the cell at the centre of the view, Escape releases it
  map.getContainer().addEventListener("keydown", function (e) {
    if (e.key === "Enter") pin(map.getCenter());
    else if (e.key === "Escape") { state.pinned = null; outline.remove(); }
  });
  map.on("zoomstart", function () { if (!state.pinned) outline.remove(); });
  map.on("zoomend", function () {
    var grid = levels[currentLevel()].grid;
    if (state.pinned && state.pinned.grid !== grid) { state.pinned = null; outline.remove(); }
    if (!state.pinned && state.shown && state.shown !== grid) {  // the panel showed a cell of another level
      state.hover = null; state.shown = null; outline.remove();
      $("info").replaceChildren(el("p", "hint", "Hover or click a cell to see what it holds."));
    }
  });

  function shareList(pairs) {
    var ul = el("ul", "shares");
    for (var k = 0; k < pairs.length; k += 2) {
      var li = el("li"), bar = el("span", "bar");
      bar.style.width = pct(pairs[k + 1]);
      li.appendChild(bar);
      li.appendChild(el("span", "share", pct(pairs[k + 1])));
      li.appendChild(el("span", "name", D.labels[pairs[k]]));
      ul.appendChild(li);
    }
    return ul;
  }
  function showCell(hit, pinned) {
    var c = hit.cell, info = $("info");
    state.shown = hit.grid;
    info.replaceChildren();
    info.appendChild(el("h2", "", cellLabel(c) || "cell " + c[0] + ", " + c[1]));
    info.appendChild(el("p", "meta", c[2] + " samples \u00b7 cell (" + c[0] + ", " + c[1] + ") of the " +
      hit.grid + "\u00d7" + hit.grid + " grid"));
    info.lastChild.dataset.count = c[2];
    var icons = el("div", "icons");
    D.meta.renderers.forEach(function (r, k) {
      if (!c[4][k]) return;
      var f = el("figure"), img = el("img");
      img.alt = r; img.src = src(c[4][k]);
      f.appendChild(img); f.appendChild(el("figcaption", "", r));
      icons.appendChild(f);
    });
    info.appendChild(icons);
    if (c[3].length) {
      info.appendChild(el("div", "meta", "Labels (" + (D.meta.label_source || "labels") + ")"));
      info.appendChild(shareList(c[3].slice(0, 10)));
    }
    if (c[6] && c[6].length) {
      info.appendChild(el("div", "meta", "Mean attribution (a \u00b7 \u2202logit/\u2202a)"));
      var ol = el("ol", "attr");
      for (var a = 0; a < Math.min(10, c[6].length); a += 2) {
        var item = el("li");
        item.appendChild(el("span", "name", D.labels[c[6][a]]));
        item.appendChild(el("span", "share", c[6][a + 1].toFixed(4)));
        ol.appendChild(item);
      }
      info.appendChild(ol);
    }
    Object.keys(c[7] || {}).forEach(function (source) {
      if (!c[7][source].length) return;
      info.appendChild(el("div", "meta", "Labels (" + source + ")"));
      info.appendChild(shareList(c[7][source]));
    });
    if (c[5].length) {
      info.appendChild(el("div", "meta", "Members" + (c[2] > c[5].length ? " (" + c[5].length + " of " + c[2] + ")" : "") +
        ", sampled position marked"));
      var grid = el("div", "thumbs"), shape = D.meta.layer_shape || [], r = D.meta.receptive_field;
      var rf = r && r.size && r.input ? [r.size[0] / r.input[0], r.size[1] / r.input[1]] : null;
      c[5].slice(0, MAX_THUMBS).forEach(function (m) {
        var f = el("figure", "thumb"), pic = el("div", "pic"), img = el("img"), name = D.images[m[0]] || ("image " + m[0]);
        img.alt = name; img.title = name; img.loading = "lazy";
        img.onerror = function () { f.hidden = true; };
        img.src = src("thumbs/" + m[0] + ".jpg");
        pic.appendChild(img);
        if (m[1] >= 0 && shape.length >= 2) {
          var y = (m[1] + 0.5) / shape[0], x = (m[2] + 0.5) / shape[1];
          if (rf) {  // the receptive field of the sampled position
            var box = el("span", "rf");
            box.style.top = pct(y - rf[0] / 2); box.style.left = pct(x - rf[1] / 2);
            box.style.height = pct(rf[0]); box.style.width = pct(rf[1]);
            pic.appendChild(box);
          }
          var dot = el("span", "mark");
          dot.style.top = pct(y); dot.style.left = pct(x);
          pic.appendChild(dot);
        }
        f.appendChild(pic);
        f.appendChild(el("figcaption", "", name));
        grid.appendChild(f);
      });
      info.appendChild(grid);
    }
    if (pinned) info.appendChild(el("p", "pinned-note", "Pinned: click elsewhere to release."));
  }

  // search, heatmap, renderer
  var totals = new Map();
  levels[0].cells.forEach(function (c) {
    for (var k = 0; k < c[3].length; k += 2) totals.set(c[3][k], (totals.get(c[3][k]) || 0) + c[2] * c[3][k + 1]);
  });
  var order = D.labels.map(function (_, k) { return k; }).sort(function (a, b) { return (totals.get(b) || 0) - (totals.get(a) || 0); });
  order.forEach(function (k) {
    var o = el("option"); o.value = D.labels[k]; $("label-list").appendChild(o);
    var h = el("option", "", D.labels[k]); h.value = k; $("heat").appendChild(h);
  });
  function updateSearchInfo() {
    if (!state.query) { $("search-info").textContent = ""; return; }
    var n = (levels[currentLevel()].cells || []).filter(matches).length;
    $("search-info").textContent = n + " matching cell" + (n === 1 ? "" : "s") + " at this level";
  }
  $("search").addEventListener("input", function () {
    state.query = this.value.trim().toLowerCase();
    $("map").classList.toggle("searching", !!state.query);
    updateSearchInfo();
    layer.redraw();
  });
  function heating() {
    $("map").classList.toggle("heating", state.heat >= 0 || state.attr >= 0);
    $("heat-legend").hidden = state.heat < 0 && state.attr < 0;
    $("heat-max").textContent = state.attr >= 0 ? "max" : "100%";
    root.dataset.heat = state.attr >= 0 ? "attribution" : state.heat >= 0 ? "share" : "";
    layer.redraw();
  }
  $("heat").addEventListener("change", function () {
    state.heat = this.value === "" ? -1 : +this.value;
    if (state.heat >= 0) { state.attr = -1; $("attr").value = ""; }
    heating();
  });
  // the class heat map: cells coloured by their mean attribution to a class, picked by name with search
  if (D.meta.attribution) {
    $("attr-box").hidden = false;
    var attrTotals = new Map();
    levels[0].cells.forEach(function (c) {
      for (var k = 0; k < (c[6] || []).length; k += 2) attrTotals.set(c[6][k], (attrTotals.get(c[6][k]) || 0) + Math.max(0, c[6][k + 1]) * c[2]);
    });
    Array.from(attrTotals.keys()).sort(function (a, b) { return attrTotals.get(b) - attrTotals.get(a); }).forEach(function (k) {
      var o = el("option"); o.value = D.labels[k]; $("class-list").appendChild(o);
    });
    $("attr").addEventListener("input", function () {
      var li = D.labels.indexOf(this.value.trim());
      var found = li >= 0 && attrTotals.has(li);
      state.attr = found ? li : -1;
      $("attr-info").textContent = this.value.trim() && !found ? "no cell is attributed to that class" : "";
      if (found) { state.heat = -1; $("heat").value = ""; }
      heating();
    });
  }
  // a two-class comparison: which class is on which side
  if (D.meta.axis && D.meta.axis.x) {
    $("axis").hidden = false;
    $("axis-left").textContent = "\u2190 " + D.meta.axis.x.left;
    $("axis-right").textContent = D.meta.axis.x.right + " \u2192";
    $("axis").title = D.meta.axis.x.meaning || "";
  }
  if (D.meta.renderers.length > 1) {
    $("renderer-box").hidden = false;
    D.meta.renderers.forEach(function (r, k) { var o = el("option", "", r); o.value = k; $("renderer").appendChild(o); });
    $("renderer").addEventListener("change", function () { state.renderer = +this.value; layer.redraw(); });
  }

  // a link to a cell: index.html#cell=GRID:I,J (from an activation grid's page) zooms to it and pins it
  function openHashCell() {
    var m = /^#cell=(\d+):(\d+),(\d+)$/.exec(window.location.hash || "");
    if (!m) return;
    var grid = +m[1], i = +m[2], j = +m[3], k = -1;
    levels.forEach(function (lv, n) { if (lv.grid === grid) k = n; });
    if (k < 0) return;
    var z = map.getZoom();
    while (levelFor(z) < k && z < map.getMaxZoom()) z += 0.5;
    var s = WORLD / grid, centre = L.latLng(-(j + 0.5) * s, (i + 0.5) * s);
    map.setView(centre, z, { animate: false });
    withLevel(k, function () { showLevel(); pin(centre); });
  }
  window.addEventListener("hashchange", openHashCell);

  var title = [D.meta.model, D.meta.layer].filter(Boolean).join(" \u00b7 ");
  var kind = D.meta.class ? "Class atlas of " + D.meta.class.name : D.meta.axis && D.meta.axis.x ?
    "Comparison of " + D.meta.axis.x.left + " and " + D.meta.axis.x.right : "Activation atlas";
  $("title").textContent = kind + (title ? ": " + title : "");
  document.title = $("title").textContent;
  root.dataset.levels = levels.length;
  showLevel();
  openHashCell();
  window.atlasViewer = { map: map, levels: levels, levelFor: levelFor, state: state };
})();
