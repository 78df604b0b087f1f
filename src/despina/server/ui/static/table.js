// Runs table: select all, the column chooser (attributes loaded on first open), and the NQL
// error underline that stops matching once the query is edited.
(() => {
  "use strict";
  const all = document.getElementById("pick-all");
  if (all) {
    all.addEventListener("change", () => {
      document.querySelectorAll('#runs-table input[name="run"]').forEach((box) => { box.checked = all.checked; });
    });
  }
  const nql = document.getElementById("nql");
  const mirror = document.querySelector(".nql-mirror");
  let original = nql ? nql.value : "";
  if (nql && mirror) {
    nql.addEventListener("input", () => { mirror.hidden = nql.value !== original; });
    nql.addEventListener("scroll", () => { mirror.scrollLeft = nql.scrollLeft; });
  }
  // A bad query is shown in place, above the table, which keeps the rows it had.
  const form = document.getElementById("nql-form");
  if (form && nql && mirror && window.despinaErrors && document.getElementById("runs-table")) {
    const twin = form.getAttribute("action").replace(/\/?$/, "/runs.json");
    window.despinaErrors.checkBeforeSubmit(form, twin, (body) => {
      const text = nql.value;
      const message = (body.description || body.message)
        + (body.line ? " (line " + body.line + ", column " + body.col + ")" : "");
      const old = document.getElementById("nql-error");
      const box = window.despinaErrors.errorBox("nql-error", text, body.start, body.end, message);
      if (old) old.replaceWith(box); else form.after(box);
      const bad = document.createElement("span");
      bad.className = "nql-bad";
      bad.textContent = text.slice(body.start, body.end) || " ";
      mirror.replaceChildren(text.slice(0, body.start), bad, text.slice(body.end));
      mirror.hidden = false;
      original = text;
      nql.setAttribute("aria-invalid", "true");
      nql.setAttribute("aria-describedby", "nql-error");
      nql.focus();
    }, { limit: "1" });
  }
  const details = document.getElementById("columns");
  const list = document.getElementById("column-list");
  const filter = document.getElementById("column-filter");
  let loaded = false;
  if (details && list) {
    details.addEventListener("toggle", () => {
      if (!details.open || loaded) return;
      loaded = true;
      fetch(list.dataset.url, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error(r.statusText))))
        .then((data) => {
          const chosen = new Set(Array.from(list.querySelectorAll("input")).map((i) => i.value));
          for (const attr of data.attributes) {
            if (chosen.has(attr.path)) continue;
            chosen.add(attr.path);
            const label = document.createElement("label");
            const box = document.createElement("input");
            box.type = "checkbox"; box.name = "col"; box.value = attr.path;
            const type = document.createElement("span");
            type.className = "type"; type.textContent = " " + attr.type;
            label.append(box, " " + attr.path, type);
            list.append(label);
          }
        })
        .catch((err) => { list.append(document.createTextNode("could not load attributes: " + err.message)); });
    });
  }
  if (filter && list) {
    filter.addEventListener("input", () => {
      const needle = filter.value.toLowerCase();
      list.querySelectorAll("label").forEach((label) => {
        label.hidden = needle !== "" && !label.textContent.toLowerCase().includes(needle);
      });
    });
  }
})();
