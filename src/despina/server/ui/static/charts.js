// Charts page: one uPlot chart per metric, one line per run, drawn from server buckets.
// Each bucket gives the drawn point and its min-max band, so spikes stay visible. Dragging
// selects a window that the server re-buckets, in every chart at once; double-click (or "reset
// zoom") goes back. Hover is synced across charts. Smoothing (an exponential moving average of
// the drawn points) happens here, in the browser; the raw line stays, faint. The axis options
// (log x, y range, smoothing) live in the page's URL, so a view can be shared as a link.
(() => {
  "use strict";
  const cfg = JSON.parse(document.getElementById("chart-config").textContent);
  const palette = ["#2f6fdf", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0b7285",
    "#a61e4d", "#5c940d", "#d9480f", "#364fc7", "#862e9c", "#087f5b"];
  // Grouping (?group=<attribute path>): one line per value of the attribute, the mean of its
  // runs with a band (min-max of the runs, or ± one standard deviation); runs take their
  // group's colour.
  const grouping = Boolean(cfg.group);
  const groupOf = (run) => (cfg.groups && Object.prototype.hasOwnProperty.call(cfg.groups, run) ? cfg.groups[run] : "");
  const groupKeys = grouping ? Array.from(new Set(cfg.runs.map(groupOf))) : [];
  const groupName = (key) => cfg.group + " = " + (key === "" ? "(none)" : key);
  const colour = (run) => palette[Math.max(0, grouping ? groupKeys.indexOf(groupOf(run)) : cfg.runs.indexOf(run)) % palette.length];
  // With several metrics in one chart each (run or group, metric) pair gets its own colour.
  const lineColour = (line) => {
    const base = line.group !== undefined ? Math.max(0, groupKeys.indexOf(line.group)) : Math.max(0, cfg.runs.indexOf(line.run));
    return palette[(base * (cfg.together ? cfg.metrics.length : 1) + (line.metricIndex || 0)) % palette.length];
  };
  const lineKey = (line) => line.run + "\u0000" + (line.metric || "");
  const lineName = (line) => (line.metric !== undefined && cfg.together ? line.run + " · " + line.metric : line.run);
  // x axes: the step; the time (epoch ms); the time since the run was created (ms); or another
  // metric's value at the same step (cfg.xmetric)
  const timeAxis = cfg.axis === "time";
  const relativeAxis = cfg.axis === "relative";
  const metricAxis = cfg.axis === "metric";
  const inSeconds = timeAxis || relativeAxis;
  const toPlot = (x) => (inSeconds ? x / 1000 : x);   // uPlot time scales are in seconds
  const toServer = (x) => (inSeconds ? x * 1000 : x);
  const plural = (n, word) => n.toLocaleString() + " " + word + (n === 1 ? "" : "s");
  const params = new URLSearchParams(window.location.search);
  const number = (name) => {
    const v = params.get(name);
    if (v == null || v.trim() === "") return null;
    const f = Number(v);
    return Number.isFinite(f) ? f : null;
  };
  let smoothing = Math.min(0.99, Math.max(0, number("smooth") || 0));
  const logX = params.get("logx") === "1" && !timeAxis;
  const duration = (seconds) => {
    const sign = seconds < 0 ? "-" : "";
    let s = Math.abs(seconds);
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const sec = (Math.round(s * 10) / 10).toFixed(s % 1 ? 1 : 0);
    return sign + (h ? h + "h " + String(m).padStart(2, "0") + "m " : m ? m + "m " : "") + sec + "s";
  };
  const yRange = [number("ymin"), number("ymax")];

  // Run states (running / finished / failed); running runs are marked "live" in the legend and
  // their charts follow them (see the poller at the end).
  const states = Object.assign({}, cfg.states || {});
  const isRunning = (run) => states[run] === "running";
  const legend = document.getElementById("run-legend");
  const legendLinks = new Map();
  function markLegend(run) {
    const a = legendLinks.get(run);
    if (!a) return;
    a.dataset.state = states[run] || "finished";
    const mark = a.querySelector(".live-label");
    if (isRunning(run) && !mark) {
      const label = document.createElement("span");
      label.className = "live-label"; label.title = "running: this chart updates as it logs";
      const dot = document.createElement("span");
      dot.className = "live-dot";
      label.append(dot, "live");
      a.append(label);
    } else if (!isRunning(run) && mark) {
      mark.remove();
    }
  }
  if (grouping) {
    const groups = document.createElement("div");
    groups.className = "legend-groups"; groups.id = "group-legend";
    for (const key of groupKeys) {
      const span = document.createElement("span");
      const sw = document.createElement("span");
      sw.className = "swatch"; sw.style.background = palette[groupKeys.indexOf(key) % palette.length];
      const members = cfg.runs.filter((r) => groupOf(r) === key).length;
      span.append(sw, groupName(key) + " (" + plural(members, "run") + ")");
      span.dataset.group = key;
      groups.append(span);
    }
    legend.before(groups);
  }
  for (const run of cfg.runs) {
    const a = document.createElement("a");
    a.href = cfg.runUrl + "?id=" + encodeURIComponent(run);
    const sw = document.createElement("span");
    sw.className = "swatch"; sw.style.background = colour(run);
    a.append(sw, run);
    legend.append(a);
    legendLinks.set(run, a);
    markLegend(run);
  }
  // A bad metric pattern is shown in place, under the box; the charts drawn stay.
  const controls = document.getElementById("chart-controls");
  const metricInput = document.getElementById("metric-input");
  if (controls && metricInput && window.despinaErrors) {
    window.despinaErrors.checkBeforeSubmit(controls, cfg.chartsUrl, (body) => {
      const slot = document.getElementById("metric-error-slot");
      const box = window.despinaErrors.errorBox("metric-error", metricInput.value.trim().split(/\s+/).join(" "),
        body.start, body.end, body.description || body.message);
      slot.replaceChildren(box);
      metricInput.setAttribute("aria-invalid", "true");
      metricInput.setAttribute("aria-describedby", "metric-error");
      metricInput.focus();
    });
  }
  if (!window.uPlot) return;

  function fmt(v) {
    if (v == null) return "–";
    if (v !== 0 && (Math.abs(v) >= 1e6 || Math.abs(v) < 1e-4)) return v.toExponential(4);
    return String(+v.toPrecision(7));
  }
  function tick(v) {
    if (v == null) return "";
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
    return String(+v.toPrecision(4));
  }
  function fmtX(x) {
    if (timeAxis) return new Date(x * 1000).toISOString().replace("T", " ").replace("Z", "");
    if (relativeAxis) return duration(x) + " in";
    if (metricAxis) return cfg.xmetric + " " + fmt(x);
    return "step " + fmt(x);
  }


  // One bucket per CSS pixel of the plot (100 to the server's 1,000): a narrower chart cannot
  // show more, and its answer is that much smaller (50 runs × 1,000 buckets is ~3.3 MB of JSON).
  function bucketsFor(el) {
    const w = Math.round((el && el.clientWidth) || 0);
    return w > 0 ? Math.max(100, Math.min(1000, w)) : 1000;
  }

  function request(metric, win, signal, buckets) {
    const p = new URLSearchParams();
    p.set("metric", metric);
    p.set("x", cfg.axis);
    if (buckets) p.set("buckets", String(buckets));
    if (metricAxis) p.set("xmetric", cfg.xmetric);
    for (const run of cfg.runs) p.append("run", run);
    if (win) { p.set("from", String(win[0])); p.set("to", String(win[1])); }
    return fetch(cfg.chartUrl + "?" + p.toString(), { credentials: "same-origin", signal }).then((r) =>
      r.json().then((body) => { if (!r.ok) throw new Error(body.message || r.statusText); return body; }));
  }

  function requestTail(metric, runs, after, width) {
    const p = new URLSearchParams();
    p.set("metric", metric);
    p.set("x", cfg.axis);
    runs.forEach((run, i) => { p.append("run", run); p.append("after", after[i] == null ? "" : String(after[i])); });
    if (width > 0) p.set("width", String(width));
    return fetch(cfg.tailUrl + "?" + p.toString(), { credentials: "same-origin" }).then((r) =>
      r.json().then((body) => { if (!r.ok) throw new Error(body.message || r.statusText); return body; }));
  }

  // Exponential moving average with TensorBoard's debiasing (the first points are not pulled
  // towards zero); missing points stay missing and do not reset the average.
  function smooth(ys, weight) {
    const out = new Array(ys.length);
    let last = 0, n = 0;
    for (let i = 0; i < ys.length; i++) {
      const v = ys[i];
      if (v == null || !Number.isFinite(v)) { out[i] = v; continue; }
      last = last * weight + (1 - weight) * v;
      n++;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }
  // One line per group: the x range of the runs' buckets is cut into as many bins as the
  // longest line has buckets; each run gives one value per bin (the mean of its buckets there,
  // so a run with more buckets does not weigh more), and the group line is the mean over its
  // runs, with their min and max or ± one standard deviation.
  function groupLines(lines) {
    let lo = Infinity, hi = -Infinity, most = 1;
    for (const l of lines) {
      most = Math.max(most, l.x.length);
      for (const x of l.x) { if (x < lo) lo = x; if (x > hi) hi = x; }
    }
    if (!(hi >= lo)) return [];
    const bins = Math.min(1000, most);
    const width = hi > lo ? (hi - lo) / bins : 1;
    const binOf = (x) => Math.min(bins - 1, Math.floor((x - lo) / width));
    const out = [];
    for (const key of groupKeys) {
      const members = lines.filter((l) => groupOf(l.run) === key);
      if (!members.length) continue;
      const sum = new Float64Array(bins), sq = new Float64Array(bins), n = new Int32Array(bins);
      const min = new Float64Array(bins).fill(Infinity), max = new Float64Array(bins).fill(-Infinity);
      const xs = new Float64Array(bins).fill(-Infinity);
      for (const l of members) {
        const rs = new Float64Array(bins), rn = new Int32Array(bins), rx = new Float64Array(bins).fill(-Infinity);
        l.x.forEach((x, i) => {
          const y = l.y[i];
          if (y == null || !Number.isFinite(y)) return;
          const b = binOf(x);
          rs[b] += y; rn[b]++; if (x > rx[b]) rx[b] = x;
        });
        for (let b = 0; b < bins; b++) {
          if (!rn[b]) continue;
          const v = rs[b] / rn[b];
          sum[b] += v; sq[b] += v * v; n[b]++;
          if (v < min[b]) min[b] = v;
          if (v > max[b]) max[b] = v;
          if (rx[b] > xs[b]) xs[b] = rx[b];
        }
      }
      const line = { run: groupName(key) + " (" + plural(members.length, "run") + ")", group: key, members: members.length,
        x: [], y: [], low: [], high: [], points: members.reduce((t, l) => t + l.points, 0), last_step: null };
      for (let b = 0; b < bins; b++) {
        if (!n[b]) continue;
        const mean = sum[b] / n[b];
        const std = Math.sqrt(Math.max(0, sq[b] / n[b] - mean * mean));
        line.x.push(xs[b]); line.y.push(mean);
        line.low.push(cfg.band === "std" ? mean - std : min[b]);
        line.high.push(cfg.band === "std" ? mean + std : max[b]);
      }
      out.push(line);
    }
    return out;
  }

  // uPlot series per line: the line, its band's low and high, and with smoothing the smoothed line
  const perLine = () => (smoothing > 0 ? 4 : 3);

  // uPlot wants one shared x array, with nulls where a line has no point (lines are drawn
  // across the gaps). Each bucket's x is a real point of its run, so the x of different runs
  // rarely coincide: their union grows with every line (100 runs × 1,000 buckets gave 100,000
  // x values × 300 columns). When the union is much longer than the longest line, x snaps to
  // a grid of GRID cells over the range (the end of each cell; a cell is narrower than a
  // bucket), so every line shares at most GRID x values. The readout keeps each point's own x.
  const GRID = 2000;
  function columns(data) {
    let most = 0;
    const xs = new Set();
    for (const line of data.lines) {
      most = Math.max(most, line.x.length);
      for (const x of line.x) if (!logX || x > 0) xs.add(x);
    }
    let snap = (v) => v;
    if (xs.size > 2 * most && xs.size > GRID) {
      let lo = Infinity, hi = -Infinity;
      for (const v of xs) { if (v < lo) lo = v; if (v > hi) hi = v; }
      if (logX) {
        const a = Math.log(lo), w = (Math.log(hi) - a) / GRID || 1;
        snap = (v) => Math.exp(a + Math.min(GRID, Math.ceil((Math.log(v) - a) / w)) * w);
      } else {
        const w = (hi - lo) / GRID || 1;
        snap = (v) => lo + Math.min(GRID, Math.ceil((v - lo) / w)) * w;
      }
      xs.clear();
      for (const line of data.lines) for (const x of line.x) if (!logX || x > 0) xs.add(snap(x));
    }
    const x = Float64Array.from(xs).sort();
    const at = new Map();
    x.forEach((v, i) => at.set(v, i));
    const cols = [Array.from(x, toPlot)];
    cols.realX = [];
    const clean = (v) => (v == null || (cfg.log && v <= 0) ? null : v);
    for (const line of data.lines) {
      const y = new Array(x.length).fill(null);
      const lo = new Array(x.length).fill(null);
      const hi = new Array(x.length).fill(null);
      const real = new Map();
      line.x.forEach((v, i) => {
        if (logX && !(v > 0)) return;
        const j = at.get(snap(v));
        if (j === undefined) return;
        y[j] = clean(line.y[i]); lo[j] = clean(line.low[i]); hi[j] = clean(line.high[i]);
        real.set(j, v);
      });
      cols.push(y, lo, hi);
      cols.realX.push(real);
      if (smoothing > 0) cols.push(smooth(y, smoothing).map(clean));
    }
    return cols;
  }

  function download(name, blob) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    a.hidden = true;
    document.body.append(a);
    a.click();
    // the browser reads the blob after this handler returns: keep both a while
    setTimeout(() => { a.remove(); URL.revokeObjectURL(a.href); }, 60000);
  }
  const fileName = (metric, ext) => metric.replace(/[^A-Za-z0-9._-]+/g, "_") + "." + ext;
  const csvCell = (v) => (v == null ? "" : /[",\n]/.test(String(v)) ? '"' + String(v).replace(/"/g, '""') + '"' : String(v));

  function nearest(data, seriesIdx, idx) {
    const ys = data[seriesIdx];
    if (ys == null || idx == null) return idx;
    if (ys[idx] != null) return idx;
    const xs = data[0];
    let left = idx - 1, right = idx + 1;
    while (left >= 0 && ys[left] == null) left--;
    while (right < ys.length && ys[right] == null) right++;
    if (left < 0) return right < ys.length ? right : null;
    if (right >= ys.length) return left;
    return xs[idx] - xs[left] <= xs[right] - xs[idx] ? left : right;
  }

  class Chart {
    constructor(section) {
      this.section = section;
      this.metric = section.dataset.metric;
      // one chart may draw several metrics (?together=1): one request per metric, lines merged
      this.metrics = section.dataset.metrics ? JSON.parse(section.dataset.metrics) : [this.metric];
      this.plotEl = section.querySelector(".plot");
      this.readout = section.querySelector(".readout");
      this.state = section.querySelector(".state");
      this.reset = section.querySelector(".reset");
      this.reset.addEventListener("click", () => zoomAll(null));
      section.querySelector(".export-png").addEventListener("click", () => this.exportPng());
      section.querySelector(".export-csv").addEventListener("click", () => this.exportCsv());
      this.plot = null;
      this.lines = [];
      this.drawn = [];
      this.missing = [];
      this.win = null;         // the zoom window (no live updates while zoomed)
      this.width = 0;          // the width of a bucket, for the live points
      this.tailing = false;    // a live update in flight
      this.seq = 0;            // the latest request; older answers are dropped
      this.inflight = null;    // its AbortController
      this.load(null);
    }

    // Zooming quickly sends several requests; the answers may come back in any order. Only the
    // latest one is drawn: older ones are aborted, and dropped should they arrive anyway.
    load(win) {
      const seq = ++this.seq;
      if (this.inflight) this.inflight.abort();
      const controller = typeof AbortController === "function" ? new AbortController() : null;
      this.inflight = controller;
      this.state.textContent = "loading…";
      this.section.dataset.loading = "1";
      const signal = controller ? controller.signal : undefined;
      const buckets = bucketsFor(this.plotEl);
      Promise.all(this.metrics.map((m) => request(m, win, signal, buckets))).then((answers) => {
        if (seq === this.seq) this.buckets = buckets;
        if (seq !== this.seq) return;
        this.inflight = null;
        this.draw(this.merge(answers), win);
      }).catch((err) => {
        if (seq !== this.seq) return;
        this.inflight = null;
        this.state.textContent = "error: " + err.message;
        delete this.section.dataset.loading;
      });
    }

    // The answers of the chart's metrics as one: each line knows its metric.
    merge(answers) {
      if (answers.length === 1) return answers[0];
      const merged = { lines: [], missing: [], range: null };
      answers.forEach((data, i) => {
        for (const line of data.lines) { line.metric = this.metrics[i]; line.metricIndex = i; merged.lines.push(line); }
        for (const run of data.missing || []) if (!merged.missing.includes(run)) merged.missing.push(run);
        if (data.range) merged.range = merged.range ? [Math.min(merged.range[0], data.range[0]), Math.max(merged.range[1], data.range[1])] : data.range.slice();
      });
      return merged;
    }

    // Points logged since the last answer, for the running runs of this chart: appended to
    // their lines (bucketed by the chart's bucket width) without redrawing the chart anew.
    follow() {
      const runs = cfg.runs.filter(isRunning);
      if (metricAxis || !runs.length || this.win || this.inflight || this.tailing) return;
      const byRun = new Map(this.lines.map((l) => [lineKey(l), l]));
      const seq = this.seq;
      this.tailing = true;
      Promise.all(this.metrics.map((m, i) => {
        const key = (run) => run + "\u0000" + (this.metrics.length > 1 ? m : "");
        const after = runs.map((run) => (byRun.has(key(run)) ? byRun.get(key(run)).last_step : null));
        return requestTail(m, runs, after, this.width);
      })).then((answers) => ({ lines: this.merge(answers).lines, states: answers[0].states })).then((data) => {
        this.tailing = false;
        for (const [run, state] of Object.entries(data.states || {})) {
          if (states[run] !== state) { states[run] = state; markLegend(run); }
        }
        if (seq !== this.seq || this.win) return;  // a zoom or reload began meanwhile
        let added = 0;
        for (const fresh of data.lines) {
          const line = byRun.get(lineKey(fresh));
          if (line && line.last_step != null && fresh.last_step != null && fresh.last_step <= line.last_step) continue;
          if (!fresh.x.length) continue;
          added += fresh.x.length;
          if (line) {
            line.x = line.x.concat(fresh.x); line.y = line.y.concat(fresh.y);
            line.low = line.low.concat(fresh.low); line.high = line.high.concat(fresh.high);
            line.points += fresh.points; line.last_step = fresh.last_step;
          } else {
            this.lines.push(fresh);
            this.lines.sort((a, b) => (a.metricIndex || 0) - (b.metricIndex || 0) || cfg.runs.indexOf(a.run) - cfg.runs.indexOf(b.run));
            this.missing = this.missing.filter((r) => r !== fresh.run);
          }
        }
        this.section.dataset.polls = String(Number(this.section.dataset.polls || 0) + 1);
        if (!added) { this.describe(); return; }
        // lines twice the bucket budget long: re-bucket the whole range from the server
        if (this.lines.some((l) => l.x.length > 2 * 1000)) { this.load(null); return; }
        const drawn = this.shown();
        if (this.plot && this.plot.series.length === 1 + perLine() * drawn.length) {
          this.drawn = drawn;
          const cols = columns({ lines: drawn });
          this.realX = cols.realX;
          this.plot.setData(cols);
          this.describe();
        } else {
          this.draw({ lines: this.lines, missing: this.missing, range: this.range }, null);
        }
      }).catch(() => { this.tailing = false; });  // retried at the next tick
    }

    describe() {
      const win = this.win;
      const most = Math.max(0, ...this.lines.map((l) => l.x.length));
      const points = this.lines.reduce((n, l) => n + l.points, 0);
      const live = this.lines.filter((l) => isRunning(l.run)).length;
      const marked = this.lines.reduce((n, l) => n + (l.marks ? l.marks.length : 0), 0);
      this.state.textContent = (win ? "zoomed to " + fmtX(toPlot(win[0])) + " – " + fmtX(toPlot(win[1])) + " · " : "")
        + plural(this.lines.length, "run") + (grouping ? " in " + plural(this.drawn.length, "group") : "")
        + " · ≤" + plural(most, "bucket") + " per line · "
        + plural(points, "point") + (this.missing.length ? " · not in " + plural(this.missing.length, "run") : "")
        + (live ? " · " + live + " live" + (win ? " (paused while zoomed)" : "") : "")
        + (marked && !grouping ? " · NaN/inf marked (▲ +inf, ▼ -inf, ○ NaN)" : "");
      this.section.dataset.marks = String(marked);
      this.section.dataset.buckets = String(most);
      this.section.dataset.points = String(points);
      if (live) this.section.dataset.live = String(live); else delete this.section.dataset.live;
    }

    draw(data, win) {
      this.lines = data.lines.filter((l) => l.x.length);
      this.missing = data.missing || [];
      this.win = win;
      this.range = data.range;
      // the server's buckets are equal-width over the range: new points get that width
      this.width = !win && data.range && data.range[1] > data.range[0] ? (data.range[1] - data.range[0]) / (this.buckets || 1000) : 0;
      this.drawn = this.shown();
      const cols = columns({ lines: this.drawn });
      this.realX = cols.realX;
      this.describe();
      this.reset.hidden = !win;
      this.section.dataset.window = win ? win.join(",") : "";
      delete this.section.dataset.loading;
      if (this.plot) { this.plot.destroy(); this.plot = null; }
      if (!this.drawn.length) { this.plotEl.textContent = "no data"; return; }
      this.plotEl.textContent = "";
      const series = [{ label: cfg.axis }];
      const bands = [];
      const per = perLine();
      this.drawn.forEach((line, i) => {
        const c = lineColour(line);
        // with smoothing the raw line stays, faint, under the smoothed one
        const name = lineName(line);
        series.push({ label: name, stroke: smoothing > 0 ? c + "59" : c, width: smoothing > 0 ? 1 : 1.5, spanGaps: true, points: { show: false } });
        series.push({ label: name + " min", stroke: "transparent", width: 0, spanGaps: true, points: { show: false } });
        series.push({ label: name + " max", stroke: "transparent", width: 0, spanGaps: true, points: { show: false } });
        if (smoothing > 0) series.push({ label: name + " smoothed", stroke: c, width: 1.75, spanGaps: true, points: { show: false } });
        bands.push({ series: [3 + per * i, 2 + per * i], fill: c + (smoothing > 0 ? "1f" : "33") });
      });
      const yScale = { distr: cfg.log ? 3 : 1 };
      if (yRange[0] != null || yRange[1] != null) {
        yScale.range = (u, dataMin, dataMax) => [yRange[0] != null ? yRange[0] : dataMin, yRange[1] != null ? yRange[1] : dataMax];
      }
      const chart = this;
      const opts = {
        width: Math.max(300, this.plotEl.clientWidth),
        height: 240,
        legend: { show: false },
        scales: { x: { time: timeAxis, distr: logX ? 3 : 1 }, y: yScale },
        axes: [{ stroke: "#667085", grid: { stroke: "#eef0f3" }, ...(relativeAxis ? { values: (u, splits) => splits.map(duration) } : {}) },
          { stroke: "#667085", grid: { stroke: "#eef0f3" }, size: 60, values: (u, splits) => splits.map(tick) }],
        series,
        bands,
        cursor: {
          sync: { key: "despina-charts" },  // hover one chart: every chart shows the same x
          drag: { x: true, y: false, setScale: false },
          dataIdx: (u, seriesIdx, closestIdx) => nearest(u.data, seriesIdx, closestIdx),
        },
        hooks: {
          setSelect: [(u) => {
            if (u.select.width < 4) return;
            const lo = u.posToVal(u.select.left, "x");
            const hi = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            if (hi > lo) zoomAll([toServer(lo), toServer(hi)]);
          }],
          setCursor: [(u) => chart.show(u)],
          draw: [(u) => chart.drawMarks(u)],
        },
      };
      this.plot = new uPlot(opts, cols, this.plotEl);
      this.plot.over.addEventListener("dblclick", () => { if (win) zoomAll(null); });
      if (win) this.plot.setScale("x", { min: toPlot(win[0]), max: toPlot(win[1]) });
    }

    show(u) {
      const parts = [];
      if (u.cursor.idx == null) { this.readout.textContent = ""; return; }
      const per = perLine();
      this.drawn.forEach((line, i) => {
        const s = 1 + per * i;
        const idx = u.cursor.idxs ? u.cursor.idxs[s] : u.cursor.idx;
        if (idx == null || u.data[s][idx] == null) return;
        const lo = u.data[s + 1][idx], hi = u.data[s + 2][idx];
        const smoothed = per === 4 && u.data[s + 3][idx] != null ? " (smoothed " + fmt(u.data[s + 3][idx]) + ")" : "";
        const span = (lo != null && hi != null && lo !== hi ? " [" + fmt(lo) + " … " + fmt(hi) + "]" : "") + smoothed;
        const el = document.createElement("span");
        const sw = document.createElement("span");
        sw.className = "swatch"; sw.style.background = lineColour(line);
        const own = this.realX && this.realX[i] ? this.realX[i].get(idx) : undefined;
        el.append(sw, lineName(line) + ": " + fmt(u.data[s][idx]) + " @ " + fmtX(own !== undefined ? toPlot(own) : u.data[0][idx]) + span);
        parts.push(el);
      });
      this.readout.replaceChildren(...parts);
    }

    // NaN and ±inf cannot be drawn as points: each is marked where it is, in the line's
    // colour (▲ at the top for +inf, ▼ at the bottom for -inf, ○ above the x axis for NaN).
    drawMarks(u) {
      const ctx = u.ctx;
      const ratio = window.devicePixelRatio || 1;
      const { left, top, width, height } = u.bbox;
      const size = 4 * ratio;
      for (const line of this.drawn) {
        if (!line.marks || !line.marks.length) continue;
        ctx.save();
        ctx.fillStyle = ctx.strokeStyle = lineColour(line);
        ctx.lineWidth = 1.5 * ratio;
        for (const [x, kind] of line.marks) {
          const px = u.valToPos(toPlot(x), "x", true);
          if (!(px >= left && px <= left + width)) continue;
          ctx.beginPath();
          if (kind === "+inf") {
            ctx.moveTo(px, top); ctx.lineTo(px - size, top + 1.7 * size); ctx.lineTo(px + size, top + 1.7 * size); ctx.fill();
          } else if (kind === "-inf") {
            const bottom = top + height;
            ctx.moveTo(px, bottom); ctx.lineTo(px - size, bottom - 1.7 * size); ctx.lineTo(px + size, bottom - 1.7 * size); ctx.fill();
          } else {
            ctx.arc(px, top + height - 3 * size, size, 0, 2 * Math.PI); ctx.stroke();
          }
        }
        ctx.restore();
      }
    }

    // What is drawn: the runs' lines, or one line per group.
    shown() {
      if (!grouping) return this.lines;
      if (this.metrics.length === 1) return groupLines(this.lines);
      // one group line per (group, metric)
      return this.metrics.flatMap((m, i) => groupLines(this.lines.filter((l) => l.metric === m)).map((g) => {
        g.metric = m; g.metricIndex = i; return g;
      }));
    }

    redraw() {
      if (this.lines.length) this.draw({ lines: this.lines, missing: this.missing, range: this.range }, this.win);
    }

    // The chart as drawn (axes and lines), on white, with its metric name above.
    exportPng() {
      if (!this.plot) return;
      const src = this.plot.ctx.canvas;
      const title = 28 * (window.devicePixelRatio || 1);
      const out = document.createElement("canvas");
      out.width = src.width; out.height = src.height + title;
      const ctx = out.getContext("2d");
      ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, out.width, out.height);
      ctx.fillStyle = "#101828"; ctx.font = Math.round(title * 0.55) + "px sans-serif";
      ctx.fillText(this.metrics.join(", "), 8, title * 0.7);
      ctx.drawImage(src, 0, title);
      out.toBlob((blob) => { if (blob) download(fileName(this.metrics.join("+"), "png"), blob); }, "image/png");
    }

    // The drawn points: one row per run and bucket (x is the bucket's last step or time).
    exportCsv() {
      const xName = timeAxis ? "time_ms" : relativeAxis ? "since_start_ms" : metricAxis ? cfg.xmetric : "step";
      const head = ["run", ...(this.metrics.length > 1 ? ["metric"] : []), xName, "value", "min", "max"];
      if (smoothing > 0) head.push("smoothed");
      const rows = [head.join(",")];
      for (const line of this.drawn || []) {
        const sm = smoothing > 0 ? smooth(line.y, smoothing) : null;
        line.x.forEach((x, i) => {
          const row = [line.run, ...(this.metrics.length > 1 ? [line.metric] : []), x, line.y[i], line.low[i], line.high[i]];
          if (sm) row.push(sm[i]);
          rows.push(row.map(csvCell).join(","));
        });
      }
      download(fileName(this.metrics.join("+"), "csv"), new Blob([rows.join("\n") + "\n"], { type: "text/csv" }));
    }
  }

  // One zoom for every chart: the x range is the same question asked of every metric.
  function zoomAll(win) {
    for (const c of charts) c.load(win);
  }

  const charts = [];
  for (const s of document.querySelectorAll("section.chart")) charts.push(new Chart(s));
  window.despinaCharts = charts;  // for tests and the console

  // Smoothing applies at once; the URL keeps it (shared links and reloads show the same view).
  const slider = document.getElementById("smoothing");
  const shown = document.getElementById("smoothing-value");
  if (slider) {
    slider.addEventListener("input", () => {
      smoothing = Math.min(0.99, Math.max(0, Number(slider.value) || 0));
      if (shown) shown.textContent = slider.value;
      const url = new URL(window.location.href);
      if (smoothing > 0) url.searchParams.set("smooth", String(smoothing)); else url.searchParams.delete("smooth");
      window.history.replaceState(null, "", url.toString());
      for (const c of charts) c.redraw();
    });
  }

  // Live: while a shown run is running, every few seconds each chart asks for the points its
  // running runs logged since its last step (GET, small answers); nothing is asked once no
  // shown run runs, nor while the tab is hidden.
  const POLL_MS = cfg.pollMs || 3000;
  let poller = null;
  function pollCharts() {
    poller = null;
    if (!cfg.runs.some(isRunning)) return;  // stop: nothing runs
    if (document.visibilityState !== "hidden") for (const c of charts) c.follow();
    poller = setTimeout(pollCharts, POLL_MS);
  }
  if (cfg.runs.some(isRunning)) poller = setTimeout(pollCharts, POLL_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && poller === null && cfg.runs.some(isRunning)) pollCharts();
  });
  let timer = null;
  window.addEventListener("resize", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      for (const c of charts) if (c.plot) c.plot.setSize({ width: Math.max(300, c.plotEl.clientWidth), height: 240 });
    }, 150);
  });
})();
