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
  function render(b) {
    const total = Math.max(b.total, 1);
    $("n-done").textContent = b.done; $("n-failed").textContent = b.failed;
    $("n-remaining").textContent = b.remaining; $("n-total").textContent = b.total;
    $("bar-done").style.width = (100 * b.done / total) + "%";
    $("bar-failed").style.width = (100 * b.failed / total) + "%";
    const status = $("batch-status");
    status.textContent = b.status; status.className = "status " + b.status;
    const body = $("failures").querySelector("tbody");
    const failed = b.images.filter((i) => i.status === "failed");
    if (failed.length) {
      body.innerHTML = "";
      failed.forEach((i) => {
        const tr = document.createElement("tr");
        [i.position + 1, i.filename, i.error].forEach((v) => {
          const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
        });
        body.appendChild(tr);
      });
    }
  }
  async function tick() {
    try {
      const r = await fetch(root.dataset.api, { headers: { Accept: "application/json" } });
      if (r.ok) { const b = await r.json(); render(b); if (b.status === "done") return; }
    } catch (err) { /* retry */ }
    setTimeout(tick, 1500);
  }
  tick();
})();
