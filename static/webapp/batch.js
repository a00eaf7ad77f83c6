// Batch page: live counts and failures until the batch is done.
"use strict";
(function () {
  const root = document.getElementById("batch");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const csrfInput = document.querySelector("[name=csrfmiddlewaretoken]");
  const form = $("submit-form");
  if (form) form.addEventListener("submit", async (e) => {
    e.preventDefault();
    await fetch(root.dataset.api + "submit/", { method: "POST", headers: { "X-CSRFToken": csrfInput.value } });
    window.location.reload();
  });
  // Scenes of the batch (cut into tiles by the worker): one row each, keyed by id.
  const scenes = $("scenes");
  const SCENE_FINISHED = ["done", "failed"];
  function sceneBar(span, done, total) {
    span.style.width = (total ? 100 * done / total : 0) + "%";
  }
  if (scenes) scenes.querySelectorAll(".progress span").forEach((span) =>
    sceneBar(span, Number(span.dataset.done), Number(span.dataset.total)));
  function sceneRow(s) {
    const body = scenes.querySelector("tbody");
    let tr = body.querySelector(`tr[data-scene="${s.id}"]`);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.scene = s.id;
      tr.innerHTML = '<td><a></a></td><td><span class="status"></span></td>' +
        '<td><span class="tiles-done"></span> / <span class="tiles"></span></td>' +
        '<td><div class="progress"><span></span></div></td><td class="nodata"></td><td class="error"></td>';
      tr.querySelector("a").href = scenes.dataset.sceneUrl.replace(/0\/$/, s.id + "/");
      body.appendChild(tr);
    }
    return tr;
  }
  function renderScenes(list) {
    if (!scenes || !list) return;
    list.forEach((s) => {
      const tr = sceneRow(s);
      tr.querySelector("a").textContent = s.filename;
      const badge = tr.querySelector(".status");
      badge.textContent = s.status; badge.className = "status " + s.status;
      tr.querySelector(".tiles-done").textContent = s.tiles_done;
      tr.querySelector(".tiles").textContent = s.tiles;
      sceneBar(tr.querySelector(".progress span"), s.tiles_done, s.tiles);
      tr.querySelector(".nodata").textContent = s.tiles_nodata;
      tr.querySelector(".error").textContent = s.error || "";
    });
  }
  function render(b) {
    const total = Math.max(b.total, 1);
    $("n-done").textContent = b.done; $("n-failed").textContent = b.failed;
    $("n-remaining").textContent = b.remaining; $("n-total").textContent = b.total;
    const eta = b.eta_seconds;
    $("eta").textContent = eta === null || eta === undefined ? "" :
      ` · about ${eta < 90 ? Math.max(1, Math.round(eta)) + " s" : Math.round(eta / 60) + " min"} left`;
    $("bar-done").style.width = (100 * b.done / total) + "%";
    $("bar-failed").style.width = (100 * b.failed / total) + "%";
    const status = $("batch-status");
    status.textContent = b.status; status.className = "status " + b.status;
    renderScenes(b.scenes);
  }
  // Failures: fetched (first page of failed items) only when their count changes; the
  // poll itself asks for counts only, whatever the batch's size.
  let shownFailed = -1;
  async function renderFailures(count) {
    if (count === shownFailed) return;
    const r = await fetch(root.dataset.api + "?images_status=failed", { headers: { Accept: "application/json" } });
    if (!r.ok) return;
    shownFailed = count;
    const failed = (await r.json()).images;
    if (!failed.length) return;
    const body = $("failures").querySelector("tbody");
    body.innerHTML = "";
    failed.forEach((i) => {
      const tr = document.createElement("tr");
      [i.position + 1, i.filename, i.error].forEach((v) => {
        const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }
  async function tick() {
    try {
      const r = await fetch(root.dataset.api + "?fields=counts", { headers: { Accept: "application/json" } });
      if (r.ok) {
        const b = await r.json(); render(b);
        if (b.failed > 0) await renderFailures(b.failed);
        const tiling = (b.scenes || []).some((s) => !SCENE_FINISHED.includes(s.status));
        if (b.status === "done" && !tiling) return;
      }
    } catch (err) { /* retry */ }
    setTimeout(tick, 1500);
  }
  tick();
})();
