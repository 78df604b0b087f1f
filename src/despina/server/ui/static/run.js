// Run page: a sparkline (with its min-max band) for every float series, and histograms with a
// step slider, drawn with uPlot from the data embedded in the page.
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("run-data").textContent);
  if (!window.uPlot) return;
  const num = (v) => (typeof v === "number" ? v : null);   // "NaN"/"Infinity" strings: gaps

  document.querySelectorAll("td.spark").forEach((cell) => {
    const s = data.sparklines[cell.dataset.path];
    if (!s || !s.x.length) return;
    const opts = {
      width: 180, height: 34, legend: { show: false }, cursor: { show: false },
      scales: { x: { time: false } },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: "#2f6fdf", width: 1.2, spanGaps: true, points: { show: false } },
        { stroke: "transparent", width: 0, spanGaps: true, points: { show: false } },
        { stroke: "transparent", width: 0, spanGaps: true, points: { show: false } }],
      bands: [{ series: [3, 2], fill: "#2f6fdf30" }],
    };
    new uPlot(opts, [s.x, s.y.map(num), s.low.map(num), s.high.map(num)], cell);
  });

  document.querySelectorAll("section.histogram").forEach((section) => {
    const rows = data.histograms[section.dataset.path] || [];
    if (!rows.length) return;
    const slider = section.querySelector(".hslider");
    const label = section.querySelector(".hstep");
    // Each bin is drawn over its real edges (bins may differ in width): a stepped line through
    // the edges, filled down to zero, holds each bin's value from its left edge to its right.
    const frame = (i) => {
      const h = rows[i].histogram || {};
      const edges = (h.edges || []).map(num), values = (h.values || []).map(num);
      if (!values.length || edges.length !== values.length + 1) return [[], []];
      return [edges, values.concat([values[values.length - 1]])];
    };
    const plot = new uPlot({
      width: Math.max(300, section.clientWidth - 30), height: 200, legend: { show: false },
      scales: { x: { time: false } },
      series: [{}, { label: "value", fill: "#2f6fdf66", stroke: "#2f6fdf", paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } }],
    }, frame(rows.length - 1), section.querySelector(".plot"));
    section.dataset.bins = String(Math.max(0, frame(rows.length - 1)[0].length - 1));
    if (slider) {
      slider.addEventListener("input", () => {
        const i = Number(slider.value);
        plot.setData(frame(i));
        label.textContent = String(rows[i].step);
        section.dataset.bins = String(Math.max(0, frame(i)[0].length - 1));
      });
    }
  });

  // Small text files are shown in place (fetched from the same download link, shown as text:
  // never as HTML); images show inline, file series as a gallery by step.
  const TEXT = /^(text\/|application\/(json|x-yaml|yaml|x-ndjson|csv|toml))/;
  const TEXT_NAME = /\.(txt|log|json|jsonl|csv|tsv|ya?ml|toml|md|ini|cfg|py)$/i;
  document.querySelectorAll("#files tr[data-preview]").forEach((tr) => {
    const link = tr.querySelector("a[download]");
    const size = Number(tr.dataset.size || "0");
    const type = tr.dataset.mime || "";
    if (!link || !(TEXT.test(type) || TEXT_NAME.test(link.textContent)) || !(size > 0 && size <= 65536)) return;
    fetch(link.href, { credentials: "same-origin" }).then((r) => (r.ok ? r.text() : Promise.reject(new Error(r.statusText))))
      .then((text) => {
        const row = document.createElement("tr");
        const cell = document.createElement("td");
        cell.colSpan = tr.cells.length;
        const pre = document.createElement("pre");
        pre.className = "file-text";
        pre.textContent = text;
        cell.append(pre);
        row.append(cell);
        tr.after(row);
      }).catch(() => {});
  });
})();
