// StatsView front end (anywidget ESM, no build step, no library): one canvas chart per
// metric, one line per remote, over the last `window` seconds of the kernel's samples.
//
// The kernel sends the series as a synced trait about once a second while some view exists;
// views announce themselves ("rendered") and report their count when they go ("views"), so
// the kernel pauses when no page shows the widget. Each chart keeps data-points / data-last
// (and the root data-draws) for tests and for anyone inspecting the page.

const COLORS = ["#1976d2", "#e65100", "#2e7d32", "#6a1b9a", "#c62828", "#00838f", "#827717"];
const HEIGHT = 96; // css px of a chart's plot area

function newId() {
  try {
    return crypto.randomUUID();
  } catch {
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function format(value) {
  if (value == null || !Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

// Rounds a maximum up to 1, 2 or 5 times a power of ten, so that axes read well.
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function makeChart(meta) {
  const box = el("div", "peerix-stats-chart");
  box.dataset.metric = meta.name;
  box.dataset.points = "0";
  box.dataset.last = "{}";
  const head = el("div", "peerix-stats-head");
  head.append(el("span", "peerix-stats-label", meta.label), el("span", "peerix-stats-unit", meta.unit));
  const canvas = el("canvas", "peerix-stats-canvas");
  const legend = el("div", "peerix-stats-legend");
  box.append(head, canvas, legend);
  return { box, canvas, legend, meta };
}

function drawChart(chart, lines, names, colorOf, span) {
  const { canvas, legend, box } = chart;
  const dpr = globalThis.devicePixelRatio || 1;
  const width = Math.max(120, canvas.clientWidth || 240);
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(HEIGHT * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, HEIGHT);

  let tMax = -Infinity;
  let yMax = 0;
  let points = 0;
  for (const line of Object.values(lines)) {
    for (const [t, v] of line) {
      tMax = Math.max(tMax, t);
      if (Number.isFinite(v)) yMax = Math.max(yMax, v);
    }
  }
  const top = niceMax(yMax * 1.05);
  const pad = { left: 4, right: 4, top: 12, bottom: 4 };
  const plotW = width - pad.left - pad.right;
  const plotH = HEIGHT - pad.top - pad.bottom;
  const x = (t) => pad.left + plotW * (1 - (tMax - t) / span);
  const y = (v) => pad.top + plotH * (1 - v / top);

  const style = getComputedStyle(box);
  const ink = style.color || "#333";
  ctx.strokeStyle = ink;
  ctx.globalAlpha = 0.25;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(pad.left, y(0) + 0.5);
  ctx.lineTo(width - pad.right, y(0) + 0.5);
  ctx.moveTo(pad.left, y(top / 2) + 0.5);
  ctx.lineTo(width - pad.right, y(top / 2) + 0.5);
  ctx.stroke();
  ctx.globalAlpha = 0.7;
  ctx.fillStyle = ink;
  ctx.font = "10px sans-serif";
  ctx.fillText(format(top), pad.left + 2, 10);
  ctx.globalAlpha = 1;

  const last = {};
  legend.replaceChildren();
  for (const [remote, line] of Object.entries(lines)) {
    const color = colorOf(remote);
    const visible = line.filter(([t, v]) => Number.isFinite(v) && tMax - t <= span);
    if (visible.length) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      visible.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
      ctx.stroke();
      if (visible.length === 1) {
        ctx.fillStyle = color;
        ctx.fillRect(x(visible[0][0]) - 1.5, y(visible[0][1]) - 1.5, 3, 3);
      }
      points += visible.length;
    }
    const value = visible.length ? visible[visible.length - 1][1] : null;
    last[remote] = value;
    const item = el("span", "peerix-stats-item");
    const swatch = el("span", "peerix-stats-swatch");
    swatch.style.background = color;
    item.append(swatch, `${names[remote] || remote.slice(0, 8)} ${format(value)}`);
    legend.append(item);
  }
  if (!Object.keys(lines).length) legend.append(el("span", "peerix-stats-none", "no data"));
  box.dataset.points = String(points);
  box.dataset.last = JSON.stringify(last);
}

function makeView(root, model) {
  const wrap = el("div", "peerix-stats");
  wrap.dataset.draws = "0";
  const bar = el("div", "peerix-stats-bar");
  const status = el("span", "peerix-stats-status");
  const conditions = el("div", "peerix-stats-conditions");
  const error = el("div", "peerix-stats-error");
  bar.append(status, conditions);
  const grid = el("div", "peerix-stats-grid");
  wrap.append(bar, error, grid);
  root.appendChild(wrap);
  let charts = [];
  const colors = new Map();
  const colorOf = (remote) => {
    if (!colors.has(remote)) colors.set(remote, COLORS[colors.size % COLORS.length]);
    return colors.get(remote);
  };

  function layout() {
    grid.replaceChildren();
    charts = (model.get("meta") || []).map(makeChart);
    for (const chart of charts) grid.append(chart.box);
  }

  function draw() {
    const series = model.get("series") || {};
    const names = model.get("names") || {};
    const span = Number(model.get("window")) || 60;
    for (const chart of charts) drawChart(chart, series[chart.meta.name] || {}, names, colorOf, span);
    const state = model.get("status");
    wrap.dataset.status = state;
    status.textContent = state;
    const cond = model.get("conditions") || {};
    const parts = [`network: ${cond.peer || "none"}`];
    for (const [remote, text] of Object.entries(cond.remotes || {})) {
      if (text !== cond.peer) parts.push(`${names[remote] || remote.slice(0, 8)}: ${text}`);
    }
    conditions.textContent = parts.join(" · ");
    const message = model.get("error");
    error.textContent = message;
    error.hidden = !message;
    wrap.dataset.draws = String(Number(wrap.dataset.draws) + 1);
  }

  layout();
  draw();
  return {
    draw,
    layout() {
      layout();
      draw();
    },
  };
}

export default () => {
  const views = new Set();
  const frontend = newId(); // this page; the kernel counts views per page
  let model = null;

  function send(content) {
    try {
      model.send({ ...content, frontend });
    } catch {
      // the widget was closed: nothing to tell
    }
  }

  return {
    initialize(ctx) {
      model = ctx.model;
    },
    render(ctx) {
      const view = makeView(ctx.el, ctx.model);
      const redraw = () => view.draw();
      const relayout = () => view.layout();
      const events = ["change:series", "change:status", "change:conditions", "change:error"];
      for (const name of events) ctx.model.on(name, redraw);
      ctx.model.on("change:meta", relayout);
      views.add(view);
      send({ type: "rendered", views: views.size });
      return () => {
        for (const name of events) ctx.model.off(name, redraw);
        ctx.model.off("change:meta", relayout);
        views.delete(view);
        send({ type: "views", views: views.size });
      };
    },
  };
};
