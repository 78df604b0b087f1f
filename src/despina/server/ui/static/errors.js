// Errors shown in place (runs table and charts): the text as typed with the bad span marked and
// a caret under it, then the message; the same markup as the server's _errors.html. Built with
// DOM nodes and textContent only: the query is the user's text.
(() => {
  "use strict";
  function errorBox(id, text, start, end, message) {
    const box = document.createElement("div");
    box.className = "nql-error"; box.id = id; box.setAttribute("role", "alert");
    box.dataset.start = String(start); box.dataset.end = String(end);
    const echo = document.createElement("pre");
    echo.className = "nql-echo";
    const bad = document.createElement("mark");
    bad.className = "nql-bad";
    bad.textContent = text.slice(start, end) || " ";
    echo.append(text.slice(0, start), bad, text.slice(end));
    box.append(echo);
    if (!text.includes("\n")) {
      const caret = document.createElement("pre");
      caret.className = "nql-caret"; caret.setAttribute("aria-hidden", "true");
      caret.textContent = " ".repeat(start) + "^".repeat(Math.max(1, end - start));
      box.append(caret);
    }
    const p = document.createElement("p");
    p.className = "nql-message"; p.textContent = message;
    box.append(p);
    return box;
  }

  // Check a GET form against its JSON twin before leaving the page: a 400 naming a span is
  // shown in place by show(body) and the page (the table, the charts) stays as it was; any
  // other answer lets the browser submit the form.
  function checkBeforeSubmit(form, twinUrl, show, extra) {
    let checked = false;
    form.addEventListener("submit", (event) => {
      if (checked) return;
      event.preventDefault();
      const params = new URLSearchParams(new FormData(form));
      for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
      fetch(twinUrl + "?" + params.toString(), { credentials: "same-origin" })
        .then((r) => (r.status === 400 ? r.json().then((body) => ({ bad: true, body })) : { bad: false }))
        .catch(() => ({ bad: false }))
        .then(({ bad, body }) => {
          if (bad && body && typeof body.start === "number") { show(body); return; }
          checked = true;
          form.submit();
        });
    });
  }

  window.despinaErrors = { errorBox, checkBeforeSubmit };
})();
