// A model against another on the evaluation images: summary, PR curves, per-label
// table, disagreements; activation with live re-tagging progress.
"use strict";
(function () {
  const root = document.getElementById("compare");
  if (!root) return;
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const fmt = (v) => (v === null || v === undefined ? "unknown" : v.toFixed(3));

  function svgEl(name, attrs) {
    const el = document.createElementNS(SVG, name);
    Object.entries(attrs).forEach(([k, v]) => el.setAttribute(k, v));
    return el;
  }

  function curves(pr) {
    const svg = $("pr");
    svg.innerHTML = "";
    const x = (r) => 40 + 260 * r, y = (p) => 210 - 190 * p;
    svg.appendChild(svgEl("rect", { x: 40, y: 20, width: 260, height: 190, fill: "none", stroke: "#ccd" }));
    [["recall", 170, 235], ["precision", 2, 14]].forEach(([t, tx, ty]) => {
      const label = svgEl("text", { x: tx, y: ty, "font-size": 11 }); label.textContent = t; svg.appendChild(label);
    });
    [["candidate", "#2a6df4"], ["active", "#e8590c"]].forEach(([who, colour], i) => {
      const points = pr[who] || [];
      if (points.length) svg.appendChild(svgEl("polyline", {
        points: points.map(([r, p]) => `${x(r)},${y(p)}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
      const key = svgEl("text", { x: 190, y: 190 - 14 * i, "font-size": 11, fill: colour });
      key.textContent = who === "candidate" ? "this model" : "compared with";
      svg.appendChild(key);
    });
  }

  function table(rows) {
    const body = document.querySelector("#per-label tbody");
    body.innerHTML = "";
    rows.forEach((r) => {
      const tr = document.createElement("tr");
      [r.label, r.support, fmt(r.f2_candidate), fmt(r.f2_active), fmt(r.precision_candidate),
       fmt(r.precision_active), fmt(r.recall_candidate), fmt(r.recall_active)].forEach((v) => {
        const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
      });
      if (r.f2_candidate !== null && r.f2_active !== null && r.f2_candidate < r.f2_active) tr.className = "worse";
      body.appendChild(tr);
    });
  }

  function disagreements(list) {
    const box = $("disagreements");
    box.innerHTML = "";
    if (!list.length) { box.textContent = "They agree on every evaluation image."; return; }
    list.forEach((d) => {
      const a = document.createElement("a");
      a.className = "tile";
      a.href = root.dataset.image.replace(/0\/$/, `${d.image}/`);
      const img = document.createElement("img");
      img.src = root.dataset.thumb.replace("/0/", `/${d.image}/`); img.alt = `image ${d.image}`; img.loading = "lazy";
      a.appendChild(img);
      [["truth", d.truth], [`this model (F2 ${d.f2_candidate.toFixed(2)})`, d.candidate],
       [`compared with (F2 ${d.f2_active.toFixed(2)})`, d.active]].forEach(([t, tags]) => {
        const p = document.createElement("p"); p.className = "tags";
        p.textContent = `${t}: ${tags.join(", ") || "none"}`; a.appendChild(p);
      });
      box.appendChild(a);
    });
  }

  async function load() {
    const r = await fetch(root.dataset.api, { headers: { Accept: "application/json" } });
    if (!r.ok) { $("summary").textContent = "The comparison could not be loaded."; return; }
    const c = await r.json();
    const f = c.f2;
    $("summary").textContent = c.evaluation_images
      ? `${c.evaluation_images} evaluation images. F2: this model ${fmt(f.candidate)}, compared with ${fmt(f.active)}; ` +
        `difference ${f.difference >= 0 ? "+" : ""}${f.difference.toFixed(3)} (95% interval ${f.interval[0].toFixed(3)} to ${f.interval[1].toFixed(3)}).` +
        (c.missing.candidate || c.missing.active ? ` Not yet predicted: ${c.missing.candidate} by this model, ${c.missing.active} by the other.` : "")
      : "No reviewed evaluation image has predictions of both models yet.";
    curves(c.pr_curves); table(c.labels); disagreements(c.disagreements);
  }

  async function retag() {
    const r = await fetch(root.dataset.model, { headers: { Accept: "application/json" } });
    if (!r.ok) return;
    const m = await r.json();
    if (!m.retag) return;
    $("retag").hidden = false;
    const t = m.retag;
    $("retag-bar").style.width = `${t.total ? 100 * t.done / t.total : 100}%`;
    $("retag-text").textContent = `Re-tagging with this model: ${t.status}, ${t.done} of ${t.total} images` +
      (t.predicted ? ` (${t.predicted} predicted, the rest from stored predictions)` : "");
    if (t.status === "queued" || t.status === "running") setTimeout(retag, 2000);
  }

  const form = $("activate-form");
  if (form) form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
    const r = await fetch(root.dataset.model + "activate/", { method: "POST",
      body: JSON.stringify({ retag: form.retag.checked }),
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" } });
    if (r.status === 202) { form.hidden = true; retag(); }
  });
  load(); retag();
})();
