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
    const frame = (i) => {
      const h = rows[i].histogram || {};
      const edges = h.edges || [], values = (h.values || []).map(num);
      const centres = values.map((_, j) => (edges[j] + edges[j + 1]) / 2);
      return [centres, values];
    };
    const plot = new uPlot({
      width: Math.max(300, section.clientWidth - 30), height: 200, legend: { show: false },
      scales: { x: { time: false } },
      series: [{}, { label: "value", fill: "#2f6fdf66", stroke: "#2f6fdf", paths: uPlot.paths.bars({ size: [0.95, 80] }), points: { show: false } }],
    }, frame(rows.length - 1), section.querySelector(".plot"));
    if (slider) {
      slider.addEventListener("input", () => {
        const i = Number(slider.value);
        plot.setData(frame(i));
        label.textContent = String(rows[i].step);
      });
    }
  });
})();
