// Compare page: the "only differences" toggle hides the rows whose runs all hold the same value
// (the server marks each row; the flags also travel in the #compare-data JSON block). The
// choice is kept in the URL (#differences) so a shared link shows the same rows.
(() => {
  "use strict";
  const toggle = document.getElementById("only-differences");
  const table = document.getElementById("compare-table");
  if (!toggle || !table) return;
  const block = document.getElementById("compare-data");
  const flags = block ? JSON.parse(block.textContent).rows.map((r) => r.differs) : [];
  const rows = Array.from(table.querySelectorAll("tbody tr[data-path]"));
  const apply = () => {
    rows.forEach((row, i) => {
      const differs = i < flags.length ? flags[i] : row.dataset.differs === "true";
      row.hidden = toggle.checked && !differs;
    });
    table.classList.toggle("only-differences", toggle.checked);
    const hash = toggle.checked ? "#differences" : "";
    if (window.location.hash !== hash) {
      history.replaceState(null, "", window.location.pathname + window.location.search + hash);
    }
  };
  toggle.checked = window.location.hash === "#differences";
  toggle.addEventListener("change", apply);
  apply();
})();
