// The dashboard's charts, drawn with uPlot (vendored next to this file, MIT: see uPlot.LICENSE): a time axis, a value
// axis with its unit, the latest value beside the title, the value under the cursor, sized to the card.
"use strict";

const CHART_HEIGHT = 180;
const CHART_STALE_SECONDS = 120; // a latest value older than this says when it was taken
const CHART_COLOURS = ["#2563eb", "#ea580c", "#15803d", "#9333ea", "#0891b2", "#be123c", "#4d7c0f", "#a16207"];
const AXIS = { stroke: "#687083", font: "11px system-ui, sans-serif", grid: { stroke: "#eceef2", width: 1 },
  ticks: { stroke: "#d5d9e0", width: 1, size: 4 } };

// A figure as read on the page: one decimal (as the host figures), none from 1000 on, then its unit.
function chartValue(value, unit) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return `${value.toFixed(Math.abs(value) >= 1000 ? 0 : 1)} ${unit}`;
}

// A tick label: no trailing zeros ("25 %", "2.5 W").
const chartTick = (value, unit) => `${Number(value.toFixed(2))} ${unit}`;

function chartClock(t, seconds) {
  const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (seconds) options.second = "2-digit";
  return new Date(t * 1000).toLocaleTimeString([], options);
}

class DashboardCharts {
  constructor(box) {
    this.box = box;
    this.plots = new Map(); // chart name -> {figure, plot, chart, data, signature}
    this.observer = new ResizeObserver((entries) => {
      for (const entry of entries) {
        const shown = this.plots.get(entry.target.dataset.series);
        if (shown) shown.plot.setSize(this.size(entry.target));
      }
    });
  }

  size(figure) {
    return { width: Math.max(120, Math.floor(figure.clientWidth)), height: CHART_HEIGHT };
  }

  // Draw `charts` (from the state endpoint) up to `now` (Unix seconds): existing plots get the new data, a chart whose
  // lines changed is drawn anew, a chart no longer sent goes.
  render(charts, now) {
    if (!charts.length) return;
    const names = new Set(charts.map((c) => c.name));
    for (const [name, shown] of this.plots) {
      if (!names.has(name)) this.drop(name, shown);
    }
    if (this.box.querySelector(":scope > p")) this.box.replaceChildren();
    charts.forEach((chart) => this.show(chart, now));
  }

  drop(name, shown) {
    this.observer.unobserve(shown.figure);
    shown.plot.destroy();
    shown.figure.remove();
    this.plots.delete(name);
  }

  show(chart, now) {
    const signature = chart.lines.map((l) => l.label).join("\n");
    let shown = this.plots.get(chart.name);
    if (shown && shown.signature !== signature) {
      this.drop(chart.name, shown);
      shown = undefined;
    }
    const data = uPlot.join(chart.lines.map((l) => [l.points.map((p) => p[0]), l.points.map((p) => p[1])]));
    const first = data[0][0];
    // The span the samples cover (at least a minute), up to now: a stopped monitor shows as a gap at the right.
    const range = [Math.min(first, now - 60), Math.max(now, data[0][data[0].length - 1])];
    if (shown) {
      Object.assign(shown, { chart, data, range });
      shown.plot.setData(data);
    } else {
      shown = this.create(chart, signature, data, range);
      this.plots.set(chart.name, shown);
      this.box.append(shown.figure);
      this.observer.observe(shown.figure);
    }
    this.latest(shown, now);
  }

  create(chart, signature, data, range) {
    const title = el("span", { class: "chart-title" }, chart.label);
    const current = el("strong", { class: "current" });
    const readout = el("span", { class: "readout muted" });
    const figure = el("figure", { class: "chart", "data-series": chart.name }, el("figcaption", {}, title, readout, current));
    const host = el("div", { class: "plot" });
    figure.append(host);
    const shown = { figure, current, readout, signature, chart, data, range };
    const record = (key, labels) => { figure.dataset[key] = labels.join("|"); return labels; };
    const unit = chart.unit;
    const y = chart.top !== null
      ? { range: [0, chart.top] }
      : { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.15 : 1] };
    const options = {
      ...this.size(figure.isConnected ? figure : this.box),
      legend: { show: false },
      cursor: { y: false, drag: { x: false, y: false, setScale: false }, points: { size: 7 } },
      scales: { x: { time: true, range: () => shown.range }, y },
      series: [{}, ...chart.lines.map((line, i) => ({
        label: line.label,
        stroke: CHART_COLOURS[i % CHART_COLOURS.length],
        width: 1.5,
        spanGaps: true,
        points: { show: false },
        fill: chart.lines.length === 1 ? "rgba(37, 99, 235, 0.08)" : undefined,
      }))],
      axes: [
        { ...AXIS, size: 32, space: 70, values: (u, splits) => {
          const seconds = u.scales.x.max - u.scales.x.min < 600;
          return record("xTicks", splits.map((t) => chartClock(t, seconds)));
        } },
        { ...AXIS, size: 54, space: 28, values: (u, splits) => record("yTicks", splits.map((v) => chartTick(v, unit))) },
      ],
      hooks: { setCursor: [(u) => this.readout(shown, near(u, shown.data, u.cursor.idx))] },
    };
    shown.plot = new uPlot(options, data, host);
    return shown;
  }

  // The latest value of each line under the title (with the time it was taken once that is a while ago).
  latest(shown, now) {
    const { chart, data } = shown;
    const many = chart.lines.length > 1;
    const values = chart.lines.map((line) => chartValue(line.points.at(-1)[1], chart.unit));
    const parts = values.map((text, i) => el("span", { class: "line-value" },
      many ? swatch(i) : null, many ? `${chart.lines[i].label} ` : null, text));
    const taken = data[0][data[0].length - 1];
    const old = now - taken > CHART_STALE_SECONDS;
    if (old) parts.push(el("span", { class: "muted taken" }, `at ${chartClock(taken, false)}`));
    shown.current.replaceChildren(...parts);
    shown.figure.setAttribute("aria-label", `${chart.label}: ${values.join(", ")} ${old ? `at ${chartClock(taken, false)}` : "now"}`);
  }

  // Beside the title, the time and value(s) of the sample under the pointer (nothing when there is none).
  readout(shown, idx) {
    const { chart, data } = shown;
    if (idx === null || !data || data[0][idx] === undefined) {
      shown.readout.textContent = "";
      return;
    }
    const many = chart.lines.length > 1;
    const values = chart.lines.map((line, i) => (many ? `${line.label} ` : "") + chartValue(data[i + 1][idx], chart.unit));
    shown.readout.textContent = `${values.join(" · ")} at ${chartClock(data[0][idx], true)}`;
  }
}

// The sample under the pointer, or null where there is none near it (uPlot snaps to the nearest one however far).
function near(u, data, idx) {
  if (idx === null || idx === undefined || u.cursor.left === undefined || u.cursor.left < 0) return null;
  return Math.abs(u.valToPos(data[0][idx], "x") - u.cursor.left) <= 16 ? idx : null;
}

function swatch(i) {
  const mark = el("span", { class: "swatch" });
  mark.style.background = CHART_COLOURS[i % CHART_COLOURS.length]; // CSSOM: allowed under the page's style-src
  return mark;
}
