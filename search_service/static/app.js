// The search page: drop, paste or choose a picture; show the best matches; click one to search by it;
// narrow by the catalogue's declared fields; page with "Show more"; browse near-duplicate groups.
// Talks only to this origin (/v1/search, /v1/stats, /v1/duplicates, /v1/images/<name>/file): works offline.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const drop = $("drop"), fileInput = $("file"), preview = $("preview"), hint = $("drop-hint");
  const message = $("message"), results = $("results"), timing = $("timing"), stats = $("stats"), topK = $("top-k");
  const more = $("more"), filters = $("filters"), filterFields = $("filter-fields");
  let previewUrl = null;
  let generation = 0; // a newer search makes older answers irrelevant
  let lastQuery = null; // {file} or {name}: what "Show more" and a filter change search again
  let shown = 0; // results on the page: the next page's offset
  let catalogueCount = null; // from /v1/stats at load: no "Show more" once that many are shown
  let lastPageFull = false; // the last page had as many results as asked for: more may follow
  let fields = {}; // declared scalar fields: name -> type (from /v1/stats)

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

  // A short page is the last; so is a page that shows the whole catalogue, or one whose next offset the
  // API would refuse (above 16284: Milvus's top_k + offset limit, 16384, less the largest top_k). Checked
  // again when the catalogue's count arrives, which can be after the first answer.
  function updateMore() {
    more.hidden = !lastPageFull || (catalogueCount !== null && shown >= catalogueCount) || shown > 16284;
  }

  function renderResults(body, append) {
    if (!append) results.replaceChildren();
    shown = (append ? shown : 0) + body.results.length;
    lastPageFull = body.results.length >= Number(topK.value);
    updateMore();
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
    else if (!shown) showMessage(body.message || "No similar pictures found.", "info");
    else showMessage("", "info");
  }

  // The filter from the field boxes: equality for text and true/false, a range for numbers.
  function currentFilter() {
    const filt = {};
    for (const input of filterFields.querySelectorAll("input")) {
      const value = input.value.trim();
      if (!value) continue;
      const field = input.dataset.field, kind = fields[field];
      if (input.dataset.bound) {
        const number = Number(value);
        if (!Number.isFinite(number)) continue;
        filt[field] = Object.assign(filt[field] || {}, { [input.dataset.bound]: number });
      } else if (kind === "bool") {
        filt[field] = ["true", "yes", "1"].includes(value.toLowerCase());
      } else {
        filt[field] = value;
      }
    }
    return Object.keys(filt).length ? filt : null;
  }

  function searchAgain(append) {
    if (!lastQuery) return;
    if (lastQuery.file) return searchByFile(lastQuery.file, append);
    return searchByName(lastQuery.name, lastQuery.url, append);
  }

  function showFilters(declared) {
    fields = declared || {};
    filterFields.replaceChildren();
    for (const [field, kind] of Object.entries(fields)) {
      const bounds = kind === "int" || kind === "float" ? [["gte", "from"], ["lte", "to"]] : [[null, "="]];
      for (const [bound, label] of bounds) {
        const row = document.createElement("label");
        const input = document.createElement("input");
        input.dataset.field = field;
        if (bound) { input.dataset.bound = bound; input.inputMode = "decimal"; }
        input.placeholder = kind === "bool" ? "true or false" : kind;
        input.addEventListener("change", () => searchAgain(false));
        row.append(field + " " + label, input);
        filterFields.append(row);
      }
    }
    filters.hidden = !Object.keys(fields).length;
  }

  async function runSearch(init, append) {
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
    renderResults(body, append);
  }

  function searchByFile(file, append) {
    if (!file) return;
    if (!append && (!lastQuery || lastQuery.file !== file)) showPreview(URL.createObjectURL(file));
    lastQuery = { file: file };
    const form = new FormData();
    form.append("image", file, file.name || "pasted-image");
    form.append("top_k", topK.value);
    if (append) form.append("offset", String(shown));
    const filt = currentFilter();
    if (filt) form.append("filter", JSON.stringify(filt));
    return runSearch({ method: "POST", body: form }, append);
  }

  function searchByName(name, url, append) {
    if (!append) showPreview(url);
    lastQuery = { name: name, url: url };
    const query = { name: name, top_k: Number(topK.value), offset: append ? shown : 0 };
    const filt = currentFilter();
    if (filt) query.filter = filt;
    return runSearch({
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(query),
    }, append);
  }

  more.addEventListener("click", () => searchAgain(true));
  $("clear-filters").addEventListener("click", () => {
    for (const input of filterFields.querySelectorAll("input")) input.value = "";
    searchAgain(false);
  });

  // Near-duplicate groups: found by the service in the background (202 while it works), then paged.
  const dupSection = $("duplicates"), dupGroups = $("dup-groups"), dupMore = $("dup-more"), dupMessage = $("dup-message");
  let dupCursor = null, dupGeneration = 0;

  async function loadDuplicates(after, mine) {
    if (mine === undefined) mine = ++dupGeneration; // a newer request makes this one's answer irrelevant
    dupSection.hidden = false;
    const params = new URLSearchParams({ threshold: $("dup-threshold").value, limit: "10" });
    if (after) params.set("after", after);
    let resp, body = null;
    try {
      resp = await fetch("/v1/duplicates?" + params);
      body = await resp.json().catch(() => null);
    } catch (e) {
      if (mine !== dupGeneration) return;
      dupMessage.textContent = "Cannot reach the search service.";
      dupMessage.hidden = false;
      return;
    }
    if (mine !== dupGeneration) return;
    if (resp.status === 202 && body) {
      dupMessage.textContent = body.message;
      dupMessage.hidden = false;
      setTimeout(() => loadDuplicates(after, mine), 1000);
      return;
    }
    if (!resp.ok || !body) {
      dupMessage.textContent = describeError(resp.status, body);
      dupMessage.hidden = false;
      return;
    }
    if (!after) dupGroups.replaceChildren();
    dupMessage.hidden = body.groups.length > 0 || Boolean(after);
    dupMessage.textContent = body.message || "No near-duplicates in the catalogue.";
    for (const group of body.groups) {
      const li = document.createElement("li");
      li.className = "group";
      group.names.forEach((name, i) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "result";
        button.title = "Search by " + name;
        const img = document.createElement("img");
        img.src = group.urls[i];
        img.alt = name;
        img.loading = "lazy";
        const label = document.createElement("span");
        label.className = "name";
        label.textContent = name;
        button.append(img, label);
        button.addEventListener("click", () => searchByName(name, group.urls[i]));
        li.append(button);
      });
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = group.size + " pictures, best pair " + group.best_score.toFixed(3);
      li.append(score);
      dupGroups.append(li);
    }
    dupCursor = body.next;
    dupMore.hidden = !dupCursor;
  }

  $("show-duplicates").addEventListener("click", () => loadDuplicates(null));
  $("dup-threshold").addEventListener("change", () => loadDuplicates(null));
  dupMore.addEventListener("click", () => loadDuplicates(dupCursor));

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
      catalogueCount = body.count;
      if (shown) updateMore();
      stats.textContent = body.count + (body.count === 1 ? " picture" : " pictures") + " in the catalogue" +
        (body.model ? " \u00b7 features: " + body.model : "");
      showFilters(body.scalar_fields);
    }
    if (generation) return; // a search has started: its own message wins
    if (!resp.ok) { showMessage(describeError(resp.status, body), "error"); return; }
    if (!body.count) showMessage(body.message || "The catalogue is empty: add pictures first.", "info");
  }).catch(() => { if (!generation) showMessage("Cannot reach the search service.", "error"); });
})();
