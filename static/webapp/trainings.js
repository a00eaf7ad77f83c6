// "Train a model": start a training (POST /api/trainings/) and follow every job live:
// status, progress, epochs, time left and a validation F2 chart per network.
"use strict";
(function () {
  const root = document.getElementById("trainings");
  if (!root) return;
  const api = root.dataset.api;
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]");
  const form = document.getElementById("train-form");
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = ["#2a6df4", "#e8590c", "#2b8a3e", "#862e9c"];

  function minutes(seconds) {
    if (seconds === null || seconds === undefined) return "";
    return seconds < 90 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
  }

  // A small line chart of validation F2 per epoch, one line per network.
  function chart(history) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 160 60"); svg.setAttribute("width", "160"); svg.setAttribute("height", "60");
    svg.setAttribute("role", "img");
    if (!history.length) return svg;
    const byNetwork = {};
    history.forEach((row) => (byNetwork[row.network] = byNetwork[row.network] || []).push(row));
    const values = history.map((r) => r.val_f2);
    const low = Math.min(...values) - 0.01, high = Math.max(...values) + 0.01;
    const epochs = Math.max(...history.map((r) => r.epoch), 2);
    const title = document.createElementNS(SVG, "title");
    title.textContent = Object.entries(byNetwork).map(([n, rows]) =>
      `${n}: validation F2 ${rows.map((r) => r.val_f2.toFixed(3)).join(", ")}; ` +
      `training loss ${rows.map((r) => r.train_loss.toFixed(3)).join(", ")}`).join("\n");
    svg.appendChild(title);
    Object.values(byNetwork).forEach((rows, i) => {
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", rows.map((r) =>
        `${5 + 150 * (r.epoch - 1) / (epochs - 1)},${55 - 50 * (r.val_f2 - low) / (high - low)}`).join(" "));
      line.setAttribute("fill", "none"); line.setAttribute("stroke", COLOURS[i % COLOURS.length]);
      line.setAttribute("stroke-width", "2");
      svg.appendChild(line);
    });
    return svg;
  }

  function row(job) {
    const body = document.querySelector("#jobs tbody");
    body.querySelector("tr.none")?.remove();
    let tr = body.querySelector(`tr[data-job="${job.id}"]`);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.job = job.id;
      for (let i = 0; i < 8; i++) tr.appendChild(document.createElement("td"));
      body.prepend(tr);
    }
    const cells = tr.children;
    cells[0].textContent = job.id;
    cells[1].innerHTML = "";
    const badge = document.createElement("span");
    badge.className = "status " + job.status;
    badge.textContent = job.status + (job.phase ? ` (${job.phase})` : "");
    cells[1].appendChild(badge);
    if (job.error) { const e = document.createElement("div"); e.className = "error"; e.textContent = job.error; cells[1].appendChild(e); }
    cells[2].innerHTML = '<div class="progress"><span></span></div>';
    cells[2].querySelector("span").style.width = `${Math.round(100 * job.progress)}%`;
    cells[2].title = `${Math.round(100 * job.progress)}%`;
    cells[3].textContent = `${job.epoch} / ${job.epochs}`;
    cells[4].textContent = job.status === "running" ? minutes(job.eta_seconds) : "";
    cells[5].innerHTML = ""; cells[5].appendChild(chart(job.history));
    cells[6].innerHTML = "";
    if (job.model) {
      const a = document.createElement("a");
      a.href = root.dataset.compare.replace(/0\/compare\/$/, `${job.model}/compare/`);
      a.textContent = "compare the candidate";
      cells[6].appendChild(a);
    }
    cells[7].innerHTML = "";
    if (form && (job.status === "queued" || job.status === "running") && !job.cancel_requested) {
      const button = document.createElement("button");
      button.textContent = "cancel";
      button.addEventListener("click", async () => {
        await fetch(`${api}${job.id}/cancel/`, { method: "POST", headers: { "X-CSRFToken": csrf.value } });
        refresh();
      });
      cells[7].appendChild(button);
    }
  }

  async function refresh() {
    const r = await fetch(api, { headers: { Accept: "application/json" } });
    if (!r.ok) return false;
    const data = await r.json();
    const jobs = data.results || data;
    jobs.slice().reverse().forEach(row);
    return jobs.some((j) => j.status === "queued" || j.status === "running");
  }

  async function poll() {
    const busy = await refresh();
    setTimeout(poll, busy ? 2000 : 10000);
  }

  if (form) form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const labels = [...document.querySelectorAll("input[name=labels]:checked")].map((i) => i.value);
    const body = { base: form.base.value, epochs: Number(form.epochs.value),
                   reviewed_only: form.reviewed_only.checked, labels };
    const error = document.getElementById("train-error");
    error.textContent = "";
    const r = await fetch(api, { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf.value, Accept: "application/json" } });
    if (r.status !== 202) {
      const data = await r.json().catch(() => ({}));
      error.textContent = data.detail || JSON.stringify(data);
      return;
    }
    row(await r.json());
  });
  poll();
})();
