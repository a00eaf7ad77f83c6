// Scene page: the overview with its tile grid coloured by one label's probability (SVG in
// scene pixel units over the preview image), counts per label, and a Leaflet map of the
// footprint and tiles when the scene is georeferenced. Data: tiles.geojson and the scene
// API, polled every 2 s until the scene is done or failed. No inline script or style (the
// CSP): colours are SVG attributes or element.style set from here.
"use strict";
(function () {
  const root = document.getElementById("scene");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const conf = root.dataset;
  const width = Number(conf.width);
  const height = Number(conf.height);
  const select = $("overlay-label");
  const overview = $("overview");
  const preview = $("preview");
  const cellsGroup = overview.querySelector("g.cells");
  const tilesGroup = overview.querySelector("g.tiles");
  const FINISHED = ["done", "failed"];
  const POLL_MS = 2000;
  const OPACITY = 0.55;
  const UNTAGGED = "#9aa3ad";
  // viridis at 0, 0.25, 0.5, 0.75, 1 (the legend's gradient in app.css uses the same stops)
  const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  let features = [];
  let status = conf.status;

  overview.style.aspectRatio = `${width} / ${height}`;

  function colour(p) {
    const x = Math.min(Math.max(p, 0), 1) * (RAMP.length - 1);
    const i = Math.min(Math.floor(x), RAMP.length - 2);
    const t = x - i;
    const rgb = RAMP[i].map((c, k) => Math.round(c + (RAMP[i + 1][k] - c) * t));
    return `rgb(${rgb.join(",")})`;
  }

  function label() { return select ? select.value : ""; }

  // The probability of the current label for a tile, or null while it is not tagged.
  function probability(props) {
    const p = props.probabilities && props.probabilities[label()];
    return typeof p === "number" ? p : null;
  }

  function imageUrl(id) { return conf.imageUrl.replace(/0\/$/, `${id}/`); }

  // A scene edge tile with less data than MIN_TILE_COVERAGE (hidden from lists).
  function isPartial(props) {
    return typeof props.coverage === "number" && props.coverage < Number(conf.minCoverage);
  }

  function describe(props) {
    const p = probability(props);
    const lines = [`row ${props.row}, col ${props.col}`];
    if (props.status === "failed") lines.push("tagging failed");
    else if (p === null) lines.push("not tagged yet");
    else lines.push(`${label()}: ${p.toFixed(3)}`);
    if (props.tags && props.tags.length) lines.push(`tags: ${props.tags.join(", ")}`);
    else if (p !== null) lines.push("tags: none");
    if (isPartial(props)) {
      lines.push(`partial: ${Math.round(props.coverage * 100)}% data, tagged from it; ` +
                 "hidden from the gallery and search");
    }
    return lines.join("\n");
  }

  // --- the overview ---------------------------------------------------------------------

  function drawCells() {
    // The whole grid, faintly (cells without a tile were all nodata, or are not cut yet).
    const rows = Number(conf.rows), cols = Number(conf.cols);
    const size = Number(conf.tileSize), stride = size - Number(conf.overlap);
    cellsGroup.textContent = "";
    if (!(stride > 0)) return;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const x = c * stride, y = r * stride;
        if (x >= width || y >= height) continue;
        const rect = document.createElementNS(SVG, "rect");
        rect.setAttribute("class", "cell");
        rect.setAttribute("x", x); rect.setAttribute("y", y);
        rect.setAttribute("width", Math.min(size, width - x));
        rect.setAttribute("height", Math.min(size, height - y));
        cellsGroup.appendChild(rect);
      }
    }
  }

  const drawn = new Map();  // "row,col" -> {link, rect, title}

  function tileElement(props) {
    const key = `${props.row},${props.col}`;
    let entry = drawn.get(key);
    if (!entry) {
      const link = document.createElementNS(SVG, "a");
      const rect = document.createElementNS(SVG, "rect");
      const title = document.createElementNS(SVG, "title");
      rect.setAttribute("class", "tile");
      rect.appendChild(title);
      link.appendChild(rect);
      tilesGroup.appendChild(link);
      entry = { link, rect, title };
      drawn.set(key, entry);
    }
    return entry;
  }

  function drawTiles() {
    const seen = new Set();
    for (const feature of features) {
      const props = feature.properties;
      const { link, rect, title } = tileElement(props);
      seen.add(`${props.row},${props.col}`);
      const [x, y, w, h] = props.pixels;
      const p = probability(props);
      link.setAttribute("href", imageUrl(props.image));
      rect.setAttribute("x", x); rect.setAttribute("y", y);
      rect.setAttribute("width", w); rect.setAttribute("height", h);
      rect.setAttribute("fill", p === null ? UNTAGGED : colour(p));
      rect.setAttribute("fill-opacity", p === null ? 0.35 : OPACITY);
      rect.classList.toggle("untagged", p === null);
      rect.classList.toggle("failed", props.status === "failed");
      rect.classList.toggle("partial", isPartial(props));
      rect.dataset.row = props.row;
      rect.dataset.col = props.col;
      rect.dataset.image = props.image;
      rect.dataset.p = p === null ? "" : p.toFixed(3);
      title.textContent = describe(props);
    }
    for (const [key, entry] of drawn) {
      if (!seen.has(key)) { entry.link.remove(); drawn.delete(key); }
    }
  }

  // --- counts per label -----------------------------------------------------------------

  const counts = $("label-counts");
  const options = new Set(select ? Array.from(select.options, (o) => o.value) : []);

  function drawCounts() {
    const body = counts.querySelector("tbody");
    const n = {};
    for (const feature of features) {
      for (const name of feature.properties.labels || []) n[name] = (n[name] || 0) + 1;
    }
    const names = Object.keys(n).sort((a, b) => n[b] - n[a] || (a < b ? -1 : a > b ? 1 : 0));
    body.textContent = "";
    if (!names.length) {
      const tr = document.createElement("tr");
      tr.className = "none";
      const td = document.createElement("td");
      td.colSpan = 3; td.textContent = "no tags yet";
      tr.appendChild(td); body.appendChild(tr);
      return;
    }
    const total = Math.max(features.length, 1);
    for (const name of names) {
      const tr = document.createElement("tr");
      tr.dataset.label = name;
      if (options.has(name)) tr.classList.add("pick");
      [name, n[name], `${Math.round(100 * n[name] / total)}%`].forEach((v) => {
        const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
      });
      body.appendChild(tr);
    }
    markLabel();
  }

  function markLabel() {
    for (const tr of counts.querySelectorAll("tbody tr[data-label]")) {
      tr.classList.toggle("on", tr.dataset.label === label());
    }
  }

  counts.addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-label]");
    if (!tr || !options.has(tr.dataset.label) || !select) return;
    select.value = tr.dataset.label;
    select.dispatchEvent(new Event("change"));
  });

  // --- the map --------------------------------------------------------------------------

  const mapEl = $("map");
  let map = null, footprintLayer = null, tilesLayer = null, fitted = false;

  function tileStyle(feature) {
    const p = probability(feature.properties);
    return {
      color: "#ffffff", weight: 1, opacity: 0.9,
      fillColor: p === null ? UNTAGGED : colour(p),
      fillOpacity: p === null ? 0.35 : OPACITY,
    };
  }

  function setupMap() {
    if (!mapEl || map || typeof window.L === "undefined") return;
    const L = window.L;
    map = L.map(mapEl, { maxZoom: 22, zoomSnap: 0.25 });
    if (mapEl.dataset.basemap) {
      L.tileLayer(mapEl.dataset.basemap, {
        maxZoom: 22, maxNativeZoom: 19, attribution: mapEl.dataset.attribution || "",
      }).addTo(map);
    }
    tilesLayer = L.geoJSON(null, {
      style: tileStyle,
      onEachFeature: (feature, layer) => {
        const props = feature.properties;
        layer.bindTooltip(() => {
          const tip = document.createElement("div");
          tip.className = "map-tip";
          tip.textContent = describe(props);  // text, not HTML
          return tip;
        }, { sticky: true });
        layer.on("click", () => window.location.assign(imageUrl(props.image)));
        layer.on("add", () => {  // the path element exists once the layer is on the map
          const path = layer.getElement();
          if (path) { path.dataset.image = props.image; path.dataset.row = props.row; path.dataset.col = props.col; }
        });
      },
    });
  }

  function drawMap(collection) {
    if (!mapEl) return;
    setupMap();
    if (!map) return;
    const L = window.L;
    const ring = collection && collection.footprint;
    if (ring && ring.length && !footprintLayer) {
      footprintLayer = L.polygon(ring.map(([lon, lat]) => [lat, lon]), {
        color: "#1f6feb", weight: 2, fill: false, interactive: false,
      });
    }
    if (!fitted) {
      const bounds = footprintLayer ? footprintLayer.getBounds() : null;
      if (bounds && bounds.isValid()) map.fitBounds(bounds, { padding: [12, 12] });
      else if (features.some((f) => f.geometry)) map.fitBounds(L.geoJSON(features).getBounds());
      else return;  // nothing to place yet
      fitted = true;
      if (footprintLayer) footprintLayer.addTo(map);
      tilesLayer.addTo(map);
    }
    tilesLayer.clearLayers();
    tilesLayer.addData(features.filter((f) => f.geometry));
  }

  // --- label choice ---------------------------------------------------------------------

  function showLabel() {
    const name = label();
    $("legend-label").textContent = name;
    $("download-label").textContent = name;
    $("download-probabilities").href = `${conf.probabilities}?label=${encodeURIComponent(name)}`;
    markLabel();
  }

  if (select) select.addEventListener("change", () => {
    showLabel();
    drawTiles();
    if (tilesLayer) tilesLayer.setStyle(tileStyle);
  });

  // --- status and polling ---------------------------------------------------------------

  function showScene(scene) {
    status = scene.status;
    const badge = $("scene-status");
    badge.textContent = scene.status;
    badge.className = `status ${scene.status}`;
    $("tiles-done").textContent = scene.tiles_done;
    $("tiles-total").textContent = scene.tiles;
    $("tiles-nodata").textContent = scene.tiles_nodata;
    const error = $("scene-error");
    error.textContent = scene.error || "";
    error.hidden = !scene.error;
    if (scene.preview && !preview.getAttribute("src")) {
      preview.src = scene.preview;
      preview.hidden = false;
    }
    showProgress(scene.tiles_done, scene.tiles);
  }

  function showProgress(done, total) {
    $("bar-done").style.width = total ? `${(100 * done / total).toFixed(1)}%` : "0%";
  }

  async function getJson(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r.json();
  }

  async function refresh(withScene) {
    if (withScene) showScene(await getJson(conf.api));
    const collection = await getJson(conf.geojson);
    features = collection.features || [];
    drawTiles();
    drawCounts();
    drawMap(collection);
  }

  async function tick() {
    try {
      await refresh(true);
      if (FINISHED.includes(status)) return;
    } catch (err) { /* retry */ }
    setTimeout(tick, POLL_MS);
  }

  drawCells();
  showLabel();
  showProgress(Number($("tiles-done").textContent), Number($("tiles-total").textContent));
  if (FINISHED.includes(status)) {
    refresh(false).catch(() => setTimeout(tick, POLL_MS));
  } else tick();
})();
