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

  // Live rows: while a row's run is running, its state and cells are refreshed every few
  // seconds (GET only, only the running rows are asked for); polling stops when none runs and
  // pauses while the tab is hidden.
  const configEl = document.getElementById("table-config");
  const table = document.getElementById("runs-table");
  if (configEl && table) {
    const config = JSON.parse(configEl.textContent);
    const POLL_MS = 3000;
    const FIRST = 3;  // cells before the columns: pick, label, state
    let pending = false;
    let timer = null;
    const running = () => Array.from(table.querySelectorAll("tbody tr[data-run]"))
      .filter((tr) => tr.querySelector("td.run-state").dataset.state === "running");
    const setCell = (td, cell) => {
      if (cell.type === "string_set") {
        td.replaceChildren(...cell.value.map((t) => {
          const span = document.createElement("span");
          span.className = "tag"; span.textContent = t; return span;
        }));
      } else if (cell.type === "file" || cell.type === "file_series") {
        return;  // a link to the file: kept
      } else {
        td.textContent = cell.text;
        td.title = cell.type === "string" ? cell.text : String(cell.value);
      }
      td.classList.remove("empty");
    };
    const apply = (rows) => {
      const byRun = new Map(rows.map((r) => [r.run_id, r]));
      for (const tr of table.querySelectorAll("tbody tr[data-run]")) {
        const row = byRun.get(tr.dataset.run);
        if (!row) continue;
        const state = tr.querySelector("td.run-state");
        state.dataset.state = row.state;
        state.className = "run-state s-" + row.state;
        state.textContent = row.state;
        config.columns.forEach((column, i) => {
          const cell = row.cells[column];
          const td = tr.cells[FIRST + i];
          if (cell && td) setCell(td, cell);
        });
      }
    };
    const poll = () => {
      timer = null;
      const live = running();
      if (!live.length) return;  // nothing runs: stop
      if (document.visibilityState === "hidden" || pending) { schedule(); return; }
      const p = new URLSearchParams();
      for (const tr of live) p.append("run", tr.dataset.run);
      for (const c of config.columns) p.append("col", c);
      pending = true;
      fetch(config.liveUrl + "?" + p.toString(), { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error(r.statusText))))
        .then((data) => apply(data.rows))
        .catch(() => {})  // a failed poll is retried at the next tick
        .finally(() => { pending = false; schedule(); });
    };
    const schedule = () => { if (timer === null && running().length) timer = setTimeout(poll, POLL_MS); };
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && timer === null) poll();
    });
    schedule();
  }
})();
