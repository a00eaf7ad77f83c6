// The review page: one image at a time, keyboard only. The queue comes from
// /api/images/review/ (its order and label); accepting PATCHes the image's tags (the
// curation service marks it reviewed); undo puts the labels an accept replaced back.
"use strict";
(function () {
  const root = document.getElementById("review");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const csrf = root.querySelector("[name=csrfmiddlewaretoken]").value;
  const toggles = [...document.querySelectorAll("#toggles input")];
  const byKey = Object.fromEntries(toggles.filter((t) => t.dataset.key).map((t) => [t.dataset.key, t]));
  let queue = [], index = 0, left = null;
  const undo = [];  // {id, tags}: the labels an accept replaced, last first

  function say(text) { $("saved").textContent = text; }

  async function countLeft() {
    const r = await fetch(root.dataset.left, { headers: { Accept: "application/json" } });
    if (r.ok) { left = (await r.json()).count; showLeft(); }
  }
  function showLeft() {
    if (left !== null) $("left").textContent = `${left} unreviewed image${left === 1 ? "" : "s"} left`;
  }

  function show() {
    const image = queue[index];
    $("empty").hidden = !!image; $("current").hidden = !image;
    if (!image) return;
    $("shown").src = image.urls.display || ""; $("dehazed").src = image.urls.dehazed || "";
    $("page-link").href = image.urls.page;
    $("position").textContent = `${index + 1} of ${queue.length} in this queue` + (image.reviewed ? " (reviewed)" : "");
    const tags = new Set(image.tags);
    toggles.forEach((t) => {
      t.checked = tags.has(t.value);
      const p = image.probabilities[t.value];
      t.closest("li").querySelector(".p").textContent = p === undefined ? "" : `p=${p.toFixed(2)}`;
    });
    const bars = $("bars");
    bars.innerHTML = "";
    Object.entries(image.probabilities).sort((a, b) => b[1] - a[1]).slice(0, 10).forEach(([name, p]) => {
      const li = document.createElement("li");
      li.className = image.predicted_tags.includes(name) ? "predicted" : "";
      const label = document.createElement("span"); label.className = "bar-label"; label.textContent = name;
      const track = document.createElement("span"); track.className = "bar";
      const fill = document.createElement("span"); fill.style.width = `${100 * p}%`; track.appendChild(fill);
      const value = document.createElement("span"); value.className = "bar-value"; value.textContent = p.toFixed(2);
      li.append(label, track, value); bars.appendChild(li);
    });
  }

  async function load() {
    const r = await fetch(root.dataset.api, { headers: { Accept: "application/json" } });
    if (!r.ok) { say("The queue could not be loaded."); return; }
    queue = await r.json(); index = 0; show(); countLeft();
  }

  async function saveTags(image, tags) {
    const r = await fetch(`${root.dataset.images}${image.id}/`, { method: "PATCH",
      body: JSON.stringify({ tags }),
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" } });
    if (!r.ok) { say(`Not saved: ${(await r.text()).slice(0, 200)}`); return null; }
    return r.json();
  }

  function move(step) {
    index = Math.min(Math.max(index + step, 0), queue.length);
    if (index === queue.length) { load(); return; }
    show();
  }

  async function accept() {
    const image = queue[index];
    if (!image) return;
    const tags = toggles.filter((t) => t.checked).map((t) => t.value);
    const before = image.tags.slice();
    const wasReviewed = image.reviewed;
    const saved = await saveTags(image, tags);
    if (!saved) return;
    undo.push({ index, id: image.id, tags: before });
    queue[index] = saved;
    if (!wasReviewed && left !== null) { left -= 1; showLeft(); }
    say(`Saved ${saved.name}: ${saved.tags.join(", ") || "no labels"}`);
    move(1);
  }

  async function undoLast() {
    const last = undo.pop();
    if (!last) { say("Nothing to undo."); return; }
    const saved = await saveTags({ id: last.id }, last.tags);
    if (!saved) return;
    const at = queue.findIndex((i) => i.id === last.id);
    if (at >= 0) { queue[at] = saved; index = at; }
    show();
    say(`Undone: ${saved.name} has its labels back (${saved.tags.join(", ") || "none"}).`);
  }

  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key;
    if (key === "Enter" || key === "a") { e.preventDefault(); accept(); }
    else if (key === "s") { say("Skipped."); move(1); }
    else if (key === "n" || key === "ArrowRight") move(1);
    else if (key === "p" || key === "ArrowLeft") move(-1);
    else if (key === "u") undoLast();
    else if (byKey[key]) { e.preventDefault(); byKey[key].checked = !byKey[key].checked; }
  });
  load();
})();
