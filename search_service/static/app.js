// The search page: drop, paste or choose a picture; show the best matches; click one to search by it.
// Talks only to this origin (/v1/search, /v1/stats, /v1/images/<name>/file), so it works offline.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const drop = $("drop"), fileInput = $("file"), preview = $("preview"), hint = $("drop-hint");
  const message = $("message"), results = $("results"), timing = $("timing"), stats = $("stats"), topK = $("top-k");
  let previewUrl = null;
  let generation = 0; // a newer search makes older answers irrelevant

  function showMessage(text, kind) {
    message.textContent = text;
    message.className = "message " + kind;
    message.hidden = !text;
  }

  // A file the browser cannot show (not a picture) leaves the hint instead of a broken image.
  preview.addEventListener("error", () => { preview.hidden = true; hint.hidden = false; });

  function showPreview(src) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = src.startsWith("blob:") ? src : null;
    preview.src = src;
    preview.hidden = false;
    hint.hidden = true;
  }

  function describeError(status, body) {
    const err = body && body.error;
    if (err && err.message) return err.message;
    if (status === 413) return "That picture is too large for the service.";
    return "The search failed (HTTP " + status + "). Try again.";
  }

  function renderResults(body) {
    results.replaceChildren();
    for (const hit of body.results) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "result";
      button.title = "Search by " + hit.name;
      button.dataset.name = hit.name;
      const img = document.createElement("img");
      img.src = hit.url;
      img.alt = hit.name;
      img.loading = "lazy";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = hit.name;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = "score " + hit.score.toFixed(3);
      button.append(img, name, score);
      button.addEventListener("click", () => searchByName(hit.name, hit.url));
      li.append(button);
      results.append(li);
    }
    const t = body.took_ms || {};
    timing.textContent = t.total !== undefined
      ? "took " + t.total.toFixed(0) + " ms" +
        (t.extract !== undefined ? " (features " + t.extract.toFixed(0) + " ms" : " (") +
        (t.search !== undefined ? (t.extract !== undefined ? ", " : "") + "search " + t.search.toFixed(0) + " ms)" : ")")
      : "";
    if (body.empty) showMessage(body.message || "The catalogue is empty.", "info");
    else if (!body.results.length) showMessage(body.message || "No similar pictures found.", "info");
    else showMessage("", "info");
  }

  async function runSearch(init) {
    const mine = ++generation;
    showMessage("Searching…", "busy");
    drop.setAttribute("aria-busy", "true");
    let resp, body = null;
    try {
      resp = await fetch("/v1/search", init);
      try { body = await resp.json(); } catch (e) { body = null; }
    } catch (e) {
      if (mine === generation) showMessage("Cannot reach the search service. Check your connection and try again.", "error");
      return;
    } finally {
      if (mine === generation) drop.removeAttribute("aria-busy");
    }
    if (mine !== generation) return;
    if (!resp.ok || !body) {
      results.replaceChildren();
      timing.textContent = "";
      showMessage(describeError(resp.status, body), "error");
      return;
    }
    renderResults(body);
  }

  function searchByFile(file) {
    if (!file) return;
    showPreview(URL.createObjectURL(file));
    const form = new FormData();
    form.append("image", file, file.name || "pasted-image");
    form.append("top_k", topK.value);
    return runSearch({ method: "POST", body: form });
  }

  function searchByName(name, url) {
    showPreview(url);
    return runSearch({
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: name, top_k: Number(topK.value) }),
    });
  }

  fileInput.addEventListener("change", () => {
    searchByFile(fileInput.files[0]);
    fileInput.value = ""; // choosing the same file again searches again
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("dragging");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) searchByFile(file);
    else showMessage("Drop a picture file (JPEG, PNG, ...).", "error");
  });
  document.addEventListener("paste", (e) => {
    const items = (e.clipboardData && e.clipboardData.items) || [];
    for (const item of items) {
      if (item.kind === "file" && item.type.startsWith("image/")) {
        e.preventDefault();
        searchByFile(item.getAsFile());
        return;
      }
    }
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); }
  });

  // Say up front when the catalogue is empty or the service cannot reach its database.
  fetch("/v1/stats").then(async (resp) => {
    const body = await resp.json().catch(() => null);
    if (resp.ok && body) {
      stats.textContent = body.count + (body.count === 1 ? " picture" : " pictures") + " in the catalogue" +
        (body.model ? " \u00b7 features: " + body.model : "");
    }
    if (generation) return; // a search has started: its own message wins
    if (!resp.ok) { showMessage(describeError(resp.status, body), "error"); return; }
    if (!body.count) showMessage(body.message || "The catalogue is empty: add pictures first.", "info");
  }).catch(() => { if (!generation) showMessage("Cannot reach the search service.", "error"); });
})();
