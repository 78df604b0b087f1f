// Runs table: the selection, the column chooser (attributes loaded on first open), and the NQL
// error underline that stops matching once the query is edited.
(() => {
  "use strict";
  // The selection holds across pages, sorts and filters: it is kept per project in the
  // browser's storage, in the order runs were selected. "Chart" and "Compare" send the whole
  // selection, not only this page's boxes; charts draw the first runs of a bigger selection
  // and say so.
  const all = document.getElementById("pick-all");
  const bar = document.getElementById("selection");
  const chartForm = document.getElementById("chart-form");
  if (bar && chartForm) {
    const key = "despina:selection:" + bar.dataset.project;
    const limit = Number(bar.dataset.limit) || 100;
    const total = Number(bar.dataset.total) || 0;
    const load = () => {
      try { const v = JSON.parse(window.localStorage.getItem(key) || "[]"); return Array.isArray(v) ? v.map(String) : []; } catch (e) { return []; }
    };
    let selected = load();
    const boxes = () => Array.from(document.querySelectorAll('#runs-table input[name="run"]'));
    const count = document.getElementById("selection-count");
    const note = document.getElementById("selection-note");
    const render = () => {
      const chosen = new Set(selected);
      const here = boxes();
      for (const box of here) box.checked = chosen.has(box.value);
      if (all) all.checked = here.length > 0 && here.every((b) => b.checked);
      count.textContent = selected.length.toLocaleString() + (selected.length === 1 ? " run" : " runs") + " selected";
      bar.dataset.selected = String(selected.length);
      if (selected.length > limit) {
        note.textContent = "charts show the first " + limit + " selected runs; compare shows the first 20";
        note.className = "warning";
      } else {
        note.textContent = "the selection stays across pages, sorts and filters";
        note.className = "hint";
      }
    };
    const save = () => {
      try { window.localStorage.setItem(key, JSON.stringify(selected)); } catch (e) { /* private mode: this page only */ }
      render();
    };
    const add = (ids) => { const have = new Set(selected); for (const id of ids) if (!have.has(id)) { selected.push(id); have.add(id); } };
    const remove = (ids) => { const gone = new Set(ids); selected = selected.filter((id) => !gone.has(id)); };
    for (const box of boxes()) {
      box.removeAttribute("form");  // the whole selection is sent on submit, not the boxes
      box.addEventListener("change", () => { if (box.checked) add([box.value]); else remove([box.value]); save(); });
    }
    if (all) {
      all.addEventListener("change", () => {
        const ids = boxes().map((b) => b.value);
        if (all.checked) add(ids); else remove(ids);
        save();
      });
    }
    document.getElementById("selection-clear").addEventListener("click", () => { selected = []; save(); });
    // The runs matching this page's query, in its sort order, a page of the twin at a time.
    const twin = () => {
      const url = new URL(window.location.href);
      url.pathname = url.pathname.replace(/\/?$/, "/runs.json");
      for (const name of ["page", "offset", "limit", "col"]) url.searchParams.delete(name);
      return url;
    };
    const matching = async (n) => {
      const ids = [];
      while (ids.length < n) {
        const url = twin();
        url.searchParams.set("offset", String(ids.length));
        url.searchParams.set("limit", String(Math.min(500, n - ids.length)));
        const r = await fetch(url.toString(), { credentials: "same-origin" });
        if (!r.ok) throw new Error(r.statusText);
        const body = await r.json();
        if (!body.rows.length) break;
        for (const row of body.rows) ids.push(row.run_id);
      }
      return ids;
    };
    const pick = (n) => {
      count.textContent = "selecting…";
      matching(n).then((ids) => { selected = ids; save(); })
        .catch((err) => { render(); note.textContent = "could not select: " + err.message; note.className = "warning"; });
    };
    document.getElementById("select-first").addEventListener("click", () => {
      pick(Math.max(1, Number(document.getElementById("select-first-n").value) || 1));
    });
    document.getElementById("select-matching").addEventListener("click", () => pick(total));
    chartForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const submitter = event.submitter;
      const action = (submitter && submitter.getAttribute("formaction")) || chartForm.getAttribute("action");
      const url = new URL(action, window.location.href);
      const compare = /\/compare$/.test(url.pathname);
      const metric = chartForm.querySelector('input[name="metric"]');
      if (!compare && metric && metric.value.trim()) url.searchParams.set("metric", metric.value);
      const sent = selected.slice(0, compare ? 20 : limit);
      for (const id of sent) url.searchParams.append(compare ? "id" : "run", id);
      if (!compare && selected.length > sent.length) url.searchParams.set("selected", String(selected.length));
      window.location.assign(url.toString());
    });
    // Trash or restore the selection: a form posted with this page's CSRF token; the server
    // checks the session's reach as for any change, then comes back to this page.
    const editForm = document.getElementById("edit-form");
    for (const button of document.querySelectorAll("#trash-selected, #restore-selected")) {
      button.addEventListener("click", () => {
        if (!selected.length || !editForm) { note.textContent = "select runs first"; note.className = "warning"; return; }
        editForm.querySelector('input[name="action"]').value = button.dataset.action;
        editForm.querySelectorAll('input[name="run"]').forEach((i) => i.remove());
        for (const id of selected) {
          const input = document.createElement("input");
          input.type = "hidden"; input.name = "run"; input.value = id;
          editForm.append(input);
        }
        if (button.dataset.action === "trash") { selected = []; save(); }  // gone from the table
        editForm.submit();
      });
    }
    window.addEventListener("storage", (event) => { if (event.key === key) { selected = load(); render(); } });
    render();
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
          // a float series can also be shown as its min, max or mean (kept by the store)
          const addAggregates = (label, path) => {
            for (const agg of ["min", "max", "mean"]) {
              const spec = agg + "(" + path + ")";
              if (chosen.has(spec)) continue;
              chosen.add(spec);
              const extra = document.createElement("input");
              extra.type = "checkbox"; extra.name = "col"; extra.value = spec;
              extra.title = spec;
              const small = document.createElement("span");
              small.className = "agg";
              small.append(extra, agg);
              label.append(small);
            }
          };
          for (const attr of data.attributes) {
            if (chosen.has(attr.path)) {
              const shown = Array.from(list.querySelectorAll("input")).find((i) => i.value === attr.path);
              if (attr.type === "float_series" && shown && shown.closest("label")) addAggregates(shown.closest("label"), attr.path);
              continue;
            }
            chosen.add(attr.path);
            const label = document.createElement("label");
            const box = document.createElement("input");
            box.type = "checkbox"; box.name = "col"; box.value = attr.path;
            const type = document.createElement("span");
            type.className = "type"; type.textContent = " " + attr.type;
            label.append(box, " " + attr.path, type);
            if (attr.type === "float_series") addAggregates(label, attr.path);
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

  // Pinned columns (◆ in their header) come first and, with the run and its state, stay in
  // view while the table scrolls sideways: each gets a sticky offset, the widths before it.
  const runsTable = document.getElementById("runs-table");
  const pinnedHeads = runsTable ? Array.from(runsTable.querySelectorAll("thead th.pinned")) : [];
  if (runsTable && pinnedHeads.length) {
    const stick = () => {
      const heads = Array.from(runsTable.tHead.rows[0].cells);
      let left = 0;
      for (const th of heads.slice(0, 3).concat(pinnedHeads)) {
        for (const row of runsTable.rows) {
          const cell = row.cells[th.cellIndex];
          if (!cell || cell.colSpan > 1) continue;
          cell.classList.add("stuck");
          cell.style.left = left + "px";
        }
        left += th.offsetWidth;
      }
    };
    stick();
    window.addEventListener("resize", stick);
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
