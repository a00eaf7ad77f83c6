// Upload page: pick files (or folders, or drop them), upload each file in its own request
// (per-file progress), submit the batch, then show the waiting animation with live
// progress until the workers are done, and open the gallery on the batch.
"use strict";
// " · about 3 min left" from the batch's measured rate (empty when unknown).
function timeLeft(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const text = seconds < 90 ? `${Math.max(1, Math.round(seconds))} s` : `${Math.round(seconds / 60)} min`;
  return ` · about ${text} left`;
}
(function () {
  const root = document.getElementById("uploader");
  if (!root) return;
  const api = root.dataset.api;
  const maxBytes = Number(root.dataset.maxBytes);
  const csrf = root.querySelector("[name=csrfmiddlewaretoken]").value;
  const $ = (id) => document.getElementById(id);
  const list = $("file-list");
  let files = [];
  let busy = false;

  function human(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " KB";
    return (bytes / 1048576).toFixed(1) + " MB";
  }

  function render() {
    list.innerHTML = "";
    files.forEach((entry, i) => {
      const li = document.createElement("li");
      li.className = "file";
      li.innerHTML = '<span class="fname"></span><span class="fsize"></span>' +
        '<span class="fbar"><span></span></span><span class="fstate"></span>';
      li.querySelector(".fname").textContent = entry.path;
      li.querySelector(".fsize").textContent = human(entry.file.size);
      entry.row = li;
      list.appendChild(li);
      if (entry.file.size > maxBytes) setState(entry, "failed", "larger than the limit; it will fail");
    });
    $("selection").hidden = files.length === 0;
    $("n-selected").textContent = files.length;
    $("size-selected").textContent = human(files.reduce((s, e) => s + e.file.size, 0));
  }

  function setState(entry, cls, text) {
    entry.row.classList.remove("uploading", "stored", "failed");
    entry.row.classList.add(cls);
    entry.row.querySelector(".fstate").textContent = text;
  }

  function addFiles(fileList) {
    if (busy) return;
    for (const f of fileList) files.push({ file: f, path: f.webkitRelativePath || f.name });
    render();
  }

  // Folders dropped on the page: walk them with the File System Entries API.
  function walk(entry, prefix) {
    return new Promise((resolve) => {
      if (entry.isFile) {
        entry.file((f) => { files.push({ file: f, path: prefix + f.name }); resolve(); }, () => resolve());
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        const all = [];
        const readMore = () => reader.readEntries((batch) => {
          if (!batch.length) {
            Promise.all(all.map((e) => walk(e, prefix + entry.name + "/"))).then(resolve);
          } else { all.push(...batch); readMore(); }
        }, () => resolve());
        readMore();
      } else resolve();
    });
  }

  const zone = $("dropzone");
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => {
    e.preventDefault(); zone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (busy) return;
    const items = e.dataTransfer.items;
    if (items && items.length && items[0].webkitGetAsEntry) {
      const entries = Array.from(items).map((it) => it.webkitGetAsEntry()).filter(Boolean);
      Promise.all(entries.map((en) => walk(en, ""))).then(render);
    } else addFiles(e.dataTransfer.files);
  });
  $("file-input").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  $("folder-input").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  $("clear").addEventListener("click", () => { if (!busy) { files = []; render(); } });

  function request(method, url, body, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("X-CSRFToken", csrf);
      xhr.setRequestHeader("Accept", "application/json");
      if (onProgress) xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onload = () => {
        let data = null;
        try { data = JSON.parse(xhr.responseText); } catch (err) { data = null; }
        if (xhr.status >= 200 && xhr.status < 300) resolve(data);
        else reject(new Error((data && data.detail) || ("HTTP " + xhr.status)));
      };
      xhr.onerror = () => reject(new Error("network error"));
      if (body instanceof FormData) xhr.send(body);
      else { xhr.setRequestHeader("Content-Type", "application/json"); xhr.send(JSON.stringify(body)); }
    });
  }

  function showError(text) { const p = $("upload-error"); p.textContent = text; p.hidden = false; }

  async function uploadOne(batchUrl, entry) {
    const form = new FormData();
    form.append("files", entry.file, entry.path.split("/").pop());
    setState(entry, "uploading", "uploading");
    const bar = entry.row.querySelector(".fbar span");
    try {
      const data = await request("POST", batchUrl + "files/", form,
        (f) => { bar.style.width = (f * 100).toFixed(0) + "%"; });
      bar.style.width = "100%";
      const added = data.added[0];
      if (added.status === "failed") setState(entry, "failed", added.error);
      else if (added.status === "scene") setState(entry, "stored", "scene: will be cut into tiles");
      else setState(entry, "stored", added.status === "done" ? "already known" : "uploaded");
    } catch (err) {
      setState(entry, "failed", "upload failed: " + err.message);
    }
  }

  function showCounts(b) {
    const total = Math.max(b.total, 1);
    $("n-done").textContent = b.done;
    $("n-failed").textContent = b.failed;
    $("n-remaining").textContent = b.remaining;
    $("eta").textContent = timeLeft(b.eta_seconds);
    $("bar-done").style.width = (100 * b.done / total) + "%";
    $("bar-failed").style.width = (100 * b.failed / total) + "%";
  }

  async function poll(batchUrl, galleryUrl) {
    for (;;) {
      let b;
      try { b = await request("GET", batchUrl + "?fields=counts"); } catch (err) {
        $("phase").textContent = "Waiting for the server (" + err.message + ")…";
        await new Promise((r) => setTimeout(r, 3000)); continue;
      }
      showCounts(b);
      $("phase").textContent = b.status === "queued" ? "Queued for a worker…" : "Tagging…";
      if (b.status === "done") {
        $("phase").textContent = "Done. Opening the gallery…";
        files = []; list.innerHTML = "";  // the upload area is cleared
        window.location.assign(galleryUrl);
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  $("start").addEventListener("click", async () => {
    if (busy || !files.length) return;
    busy = true;
    $("start").disabled = true;
    $("upload-error").hidden = true;
    $("waiting").hidden = false;
    $("phase").textContent = "Uploading " + files.length + " files…";
    let batch;
    try { batch = await request("POST", api, { submit: false }); } catch (err) {
      showError("Could not start a batch: " + err.message);
      busy = false; $("start").disabled = false; $("waiting").hidden = true; return;
    }
    const batchUrl = api + batch.id + "/";
    const queue = files.slice();
    const workers = Array.from({ length: Math.min(3, queue.length) }, async () => {
      while (queue.length) await uploadOne(batchUrl, queue.shift());
    });
    await Promise.all(workers);
    $("phase").textContent = "Starting the workers…";
    try { await request("POST", batchUrl + "submit/", {}); } catch (err) {
      showError("Upload finished but the batch could not be submitted: " + err.message +
        ". Open it from the Batches page to try again.");
      return;
    }
    await poll(batchUrl, root.dataset.gallery + "?batch=" + batch.id);
  });
})();
