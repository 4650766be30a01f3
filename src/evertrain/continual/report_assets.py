"""The report page's style sheet and charting script, inlined into every page.

A small vanilla-JavaScript + SVG chart library written for this page (no third-party code, no
network at view time). It reads the page's embedded JSON and draws:

- line panels sharing one x axis (tokens or steps into the model; log x optional): hover shows
  the nearest point's run and values, dragging selects an x range to zoom (every panel follows),
  the wheel zooms around the pointer, double-click or "reset zoom" undoes it, each panel has a
  log-y switch and an "SVG" download; y fits the points in view;
- a legend: click a run to hide or show it everywhere, hover it to fade the others;
- bar charts of the final average loss, forgetting and tokens, each value printed on its bar.

Tests and tools reach the drawn state through ``window.evertrainReport`` (data, state, render,
``series(panelId)``).
"""

STYLE = r"""
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1240px;
  margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.subtitle { color: #444; margin: 0.2em 0; } .context { color: #555; font-size: 0.92em; margin: 0.2em 0; }
.headline { font-size: 1.08em; background: #eef5ee; padding: 0.6em; border-radius: 4px; }
.error { background: #fdecea; color: #8a1f11; padding: 0.6em; }
.notes { font-size: 0.88em; color: #444; }
table { border-collapse: collapse; font-size: 0.86em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td:first-child, td:nth-child(2) { text-align: left; }
#toolbar { position: sticky; top: 0; z-index: 5; background: rgba(255,255,255,0.96);
  border-bottom: 1px solid #ddd; padding: 0.4em 0; }
.controls { display: flex; flex-wrap: wrap; gap: 0.4em 1.1em; align-items: center; font-size: 0.88em; }
.controls button, .panel-head button { font: inherit; font-size: 0.9em; padding: 1px 8px; cursor: pointer; }
.hint { color: #777; font-size: 0.92em; }
#legend { display: flex; flex-wrap: wrap; gap: 2px 4px; margin-top: 0.35em; }
.legend-item { display: inline-flex; align-items: center; gap: 4px; border: 1px solid #ddd;
  background: #fff; border-radius: 3px; padding: 1px 6px 1px 3px; font: inherit; font-size: 0.84em;
  cursor: pointer; }
.legend-item.off { opacity: 0.35; text-decoration: line-through; }
#charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(520px, 100%), 1fr)); gap: 0.8em; }
.panel { border: 1px solid #e3e3e3; border-radius: 4px; padding: 0.3em 0.4em 0.1em; min-width: 0; }
.panel.wide { grid-column: 1 / -1; }
.panel-head { display: flex; justify-content: space-between; align-items: baseline; gap: 0.6em;
  font-size: 0.9em; }
.panel-head h3 { font-size: 1em; margin: 0.1em 0; font-weight: 600; }
.panel-head label { white-space: nowrap; color: #444; }
.plot { width: 100%; }
svg.chart { display: block; user-select: none; }
svg .grid { stroke: #eee; } svg .axis { stroke: #999; }
svg text { font-size: 11px; fill: #444; font-family: inherit; }
svg .series { fill: none; stroke-linejoin: round; stroke-linecap: round; }
svg .faded { opacity: 0.12; }
svg .selection { fill: rgba(70,130,180,0.15); stroke: steelblue; stroke-dasharray: 3 2; }
svg .overlay { fill: transparent; cursor: crosshair; }
svg .hover-dot { fill: none; stroke: #000; stroke-width: 1.5; pointer-events: none; }
#bars { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(360px, 100%), 1fr)); gap: 0.8em; }
svg .bar.off { opacity: 0.2; }
svg .bar-value { font-size: 10px; fill: #222; }
.caption { font-size: 0.8em; color: #666; margin: 0 0 0.3em; }
#tooltip { position: fixed; z-index: 10; pointer-events: none; background: rgba(255,255,255,0.97);
  border: 1px solid #999; border-radius: 3px; padding: 4px 7px; font-size: 12px; line-height: 1.35;
  box-shadow: 0 1px 4px rgba(0,0,0,0.2); display: none; white-space: nowrap; }
#tooltip .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";  // the SVG namespace name, not a network address
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var RUNS = DATA.runs, CURVES = DATA.curves, SUMMARY = DATA.summary;
  var state = { hidden: {}, xKey: "x", logX: false, logY: {}, domain: null };
  var charts = [], barCharts = [], tooltip = null;
  CURVES.panels.forEach(function (p) { state.logY[p.id] = false; });

  function svgEl(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function htmlEl(tag, attrs, text, parent) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  // ---- numbers ------------------------------------------------------------------------------
  function short(v) { return String(parseFloat(v.toPrecision(3))); }
  function fmtTick(v) {
    if (v === null || !isFinite(v)) return "";
    var a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 1e9) return short(v / 1e9) + "G";
    if (a >= 1e6) return short(v / 1e6) + "M";
    if (a >= 1e4) return short(v / 1e3) + "k";
    if (a < 1e-2) return v.toExponential(1).replace(".0e", "e");
    return String(parseFloat(v.toPrecision(4)));
  }
  function fmtValue(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
    return String(parseFloat(v.toPrecision(5)));
  }
  function fmtCount(v) { return Math.round(v).toLocaleString("en-US"); }

  // ---- scales and ticks -----------------------------------------------------------------------
  function makeScale(domain, range, log) {
    var t = log ? function (v) { return Math.log10(v); } : function (v) { return v; };
    var d0 = t(domain[0]), d1 = t(domain[1]), span = (d1 - d0) || 1;
    var f = function (v) { return range[0] + (t(v) - d0) / span * (range[1] - range[0]); };
    f.invert = function (p) {
      var u = d0 + (p - range[0]) / (range[1] - range[0]) * span;
      return log ? Math.pow(10, u) : u;
    };
    return f;
  }
  function linearTicks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    var raw = (hi - lo) / Math.max(count, 1), mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var n = raw / mag, step = (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag, out = [];
    // i * step, not a running sum: no 2.8e-17 where 0 belongs
    for (var i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-9; i++) out.push(+(i * step).toPrecision(12));
    return out;
  }
  // One unit for every label of a linear axis ("2k 4k ... 24k", not "8000 10k").
  function linearFormat(ticks) {
    var top = ticks.reduce(function (a, v) { return Math.max(a, Math.abs(v)); }, 0);
    var unit = top >= 1e9 ? [1e9, "G"] : top >= 1e6 ? [1e6, "M"] : top >= 1e4 ? [1e3, "k"] : null;
    return function (v) {
      if (Math.abs(v) <= top * 1e-12) return "0";
      if (unit) return String(parseFloat((v / unit[0]).toPrecision(4))) + unit[1];
      if (top < 1e-2) return v.toExponential(1).replace(".0e", "e");
      return String(parseFloat(v.toPrecision(4)));
    };
  }
  function tickFormat(ticks, log) { return log ? fmtTick : linearFormat(ticks); }
  function logTicks(lo, hi, count) {
    if (hi / lo < 4) return linearTicks(lo, hi, count);  // a narrow range: plain values
    var a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi)), out = [];
    var mults = b - a <= 3 ? [1, 2, 5] : [1];
    for (var e = a; e <= b; e++) mults.forEach(function (m) {
      var v = m * Math.pow(10, e);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
    });
    while (out.length > 2 * count) out = out.filter(function (_, i) { return i % 2 === 0; });
    return out;
  }

  // ---- data helpers -----------------------------------------------------------------------
  function xsOf(s) { return state.xKey === "steps" && s.steps && s.steps.length ? s.steps : s.x; }
  function usableX(x) { return x !== null && isFinite(x) && (!state.logX || x > 0); }
  function fullXExtent() {
    var lo = Infinity, hi = -Infinity;
    CURVES.panels.forEach(function (p) {
      p.series.forEach(function (s, i) {
        if (state.hidden[i]) return;
        var xs = xsOf(s);
        for (var j = 0; j < xs.length; j++) if (usableX(xs[j])) {
          if (xs[j] < lo) lo = xs[j];
          if (xs[j] > hi) hi = xs[j];
        }
      });
    });
    if (!isFinite(lo)) return null;
    if (lo === hi) return state.logX ? [lo / 2, hi * 2] : [lo - 1, hi + 1];
    return [lo, hi];
  }
  function currentXDomain() { return state.domain || fullXExtent(); }

  // ---- markers ----------------------------------------------------------------------------
  function markerPath(kind, x, y, r) {
    switch (kind) {
      case "square": return "M" + (x - r) + " " + (y - r) + "h" + 2 * r + "v" + 2 * r + "h" + -2 * r + "Z";
      case "triangle": return "M" + x + " " + (y - 1.25 * r) + "L" + (x + 1.15 * r) + " " + (y + 0.85 * r) + "L" + (x - 1.15 * r) + " " + (y + 0.85 * r) + "Z";
      case "triangle-down": return "M" + x + " " + (y + 1.25 * r) + "L" + (x + 1.15 * r) + " " + (y - 0.85 * r) + "L" + (x - 1.15 * r) + " " + (y - 0.85 * r) + "Z";
      case "diamond": return "M" + x + " " + (y - 1.3 * r) + "L" + (x + r) + " " + y + "L" + x + " " + (y + 1.3 * r) + "L" + (x - r) + " " + y + "Z";
      case "plus": return "M" + (x - 1.2 * r) + " " + y + "h" + 2.4 * r + "M" + x + " " + (y - 1.2 * r) + "v" + 2.4 * r;
      case "cross": return "M" + (x - r) + " " + (y - r) + "l" + 2 * r + " " + 2 * r + "M" + (x + r) + " " + (y - r) + "l" + -2 * r + " " + 2 * r;
      default: return "M" + (x - r) + " " + y + "a" + r + " " + r + " 0 1 0 " + 2 * r + " 0a" + r + " " + r + " 0 1 0 " + -2 * r + " 0";
    }
  }
  function openMarker(kind) { return kind === "plus" || kind === "cross"; }
  function markerIndices(n, runIndex, every) {
    if (every) { var all = []; for (var j = 0; j < n; j++) all.push(j); return all; }
    // train panels: 8 markers, shifted per run so that runs on the same curve do not stack them
    var out = [], shift = (runIndex * 0.618034) % 1;
    for (var k = 0; k < 8; k++) {
      var j2 = Math.floor(n * (k + shift) / 8);
      if (j2 < n) out.push(j2);
    }
    return out;
  }

  // ---- line charts ------------------------------------------------------------------------
  function LineChart(panel, index, host) {
    this.panel = panel;
    this.index = index;
    var box = htmlEl("div", { "class": "panel" + (panel.id === "avg" ? " wide" : ""), "data-panel": panel.id }, null, host);
    var head = htmlEl("div", { "class": "panel-head" }, null, box);
    htmlEl("h3", {}, panel.title, head);
    var tools = htmlEl("span", {}, null, head);
    var label = htmlEl("label", {}, null, tools);
    var box2 = htmlEl("input", { type: "checkbox", "class": "logy", "data-panel": panel.id }, null, label);
    label.appendChild(document.createTextNode(" log y "));
    var self = this;
    box2.addEventListener("change", function () { state.logY[panel.id] = box2.checked; self.render(); });
    this.logBox = box2;
    var save = htmlEl("button", { type: "button", title: "download this chart as SVG" }, "SVG", tools);
    save.addEventListener("click", function () { downloadSvg(self.svg, panel.id); });
    this.host = htmlEl("div", { "class": "plot" }, null, box);
  }

  LineChart.prototype.render = function () {
    var panel = this.panel, host = this.host;
    host.textContent = "";
    var W = Math.max(320, Math.floor(host.clientWidth || 600)), H = panel.id === "avg" ? 300 : 240;
    var m = { l: 64, r: 14, t: 8, b: 38 };
    var logY = !!state.logY[panel.id];
    this.logBox.checked = logY;
    var svg = svgEl("svg", { "class": "chart", width: W, height: H, viewBox: "0 0 " + W + " " + H,
      "data-panel": panel.id, "data-yscale": logY ? "log" : "linear",
      "data-xscale": state.logX ? "log" : "linear", "data-xkey": state.xKey }, host);
    this.svg = svg;
    this.points = [];
    var xd = currentXDomain();
    if (!xd) { svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = "no data"; return; }
    var lo = Infinity, hi = -Infinity;
    panel.series.forEach(function (s, i) {
      if (state.hidden[i]) return;
      var xs = xsOf(s);
      for (var j = 0; j < xs.length; j++) {
        var y = s.y[j];
        if (y === null || !usableX(xs[j]) || xs[j] < xd[0] || xs[j] > xd[1]) continue;
        if (logY && !(y > 0)) continue;
        if (y < lo) lo = y;
        if (y > hi) hi = y;
      }
    });
    if (!isFinite(lo)) { lo = logY ? 0.1 : 0; hi = 1; }
    if (logY) { lo /= 1.06; hi *= 1.06; if (lo === hi) { lo /= 2; hi *= 2; } }
    else { var pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.05 || 1; lo -= pad; hi += pad; }
    var sx = makeScale(xd, [m.l, W - m.r], state.logX), sy = makeScale([lo, hi], [H - m.b, m.t], logY);
    this.sx = sx;
    // grid, ticks and axis labels
    var xt = (state.logX ? logTicks : linearTicks)(xd[0], xd[1], Math.max(3, Math.floor(W / 110)));
    var yt = (logY ? logTicks : linearTicks)(lo, hi, 5);
    var grid = svgEl("g", {}, svg), fx = tickFormat(xt, state.logX), fy = tickFormat(yt, logY);
    xt.forEach(function (v) {
      var px = sx(v);
      svgEl("line", { "class": "grid", x1: px, x2: px, y1: m.t, y2: H - m.b }, grid);
      svgEl("text", { "class": "tick-x", x: px, y: H - m.b + 14, "text-anchor": "middle" }, grid).textContent = fx(v);
    });
    yt.forEach(function (v) {
      var py = sy(v);
      svgEl("line", { "class": "grid", x1: m.l, x2: W - m.r, y1: py, y2: py }, grid);
      svgEl("text", { "class": "tick-y", x: m.l - 5, y: py + 4, "text-anchor": "end" }, grid).textContent = fy(v);
    });
    svgEl("line", { "class": "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }, svg);
    svgEl("line", { "class": "axis", x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }, svg);
    svgEl("text", { x: (m.l + W - m.r) / 2, y: H - 4, "text-anchor": "middle" }, svg).textContent =
      (state.xKey === "steps" ? CURVES.xlabel_steps : CURVES.xlabel) + (state.logX ? " (log)" : "");
    svgEl("text", { x: 12, y: (m.t + H - m.b) / 2, "text-anchor": "middle",
      transform: "rotate(-90 12 " + (m.t + H - m.b) / 2 + ")" }, svg).textContent = panel.ylabel + (logY ? " (log)" : "");
    var clipId = "clip-" + this.index;
    var clip = svgEl("clipPath", { id: clipId }, svgEl("defs", {}, svg));
    svgEl("rect", { x: m.l, y: m.t - 4, width: W - m.l - m.r, height: H - m.t - m.b + 8 }, clip);
    var plot = svgEl("g", { "clip-path": "url(#" + clipId + ")" }, svg);
    var points = this.points, every = panel.kind === "eval";
    panel.series.forEach(function (s, i) {
      if (state.hidden[i] || !s.x.length) return;
      var run = RUNS[i], xs = xsOf(s), d = "", pen = false, kept = [];
      for (var j = 0; j < xs.length; j++) {
        var y = s.y[j];
        if (y === null || !usableX(xs[j]) || (logY && !(y > 0))) { pen = false; continue; }
        var px = sx(xs[j]), py = sy(y);
        d += (pen ? "L" : "M") + px.toFixed(1) + " " + py.toFixed(1);
        pen = true;
        kept.push(j);
        points.push([px, py, i, j]);
      }
      svgEl("path", { "class": "series", d: d, stroke: run.color, "stroke-width": run.width,
        "stroke-dasharray": run.dash || null, "data-run": i, "data-name": run.name,
        "data-points": kept.length }, plot);
      var md = "", pos = {};
      kept.forEach(function (j) { pos[j] = true; });
      markerIndices(xs.length, i, every).forEach(function (j) {
        if (!pos[j]) return;
        md += markerPath(run.marker, sx(xs[j]), sy(s.y[j]), 3.2);
      });
      if (md) {
        var open = openMarker(run.marker);
        svgEl("path", { "class": "markers", d: md, fill: open ? "none" : run.color,
          stroke: open ? run.color : "#fff", "stroke-width": open ? 1.6 : 0.7, "data-run": i }, plot);
      }
    });
    // a law's predicted curve of run i (panel.predicted[i]): its band shaded, the line dashed
    (panel.predicted || []).forEach(function (p, i) {
      if (!p || state.hidden[i]) return;
      var run = RUNS[i], xs = xsOf(p), line = "", upper = "", lower = "";
      for (var j = 0; j < xs.length; j++) {
        if (!usableX(xs[j]) || (logY && !(p.y[j] > 0))) continue;
        var px = sx(xs[j]).toFixed(1), c = line ? "L" : "M";
        line += c + px + " " + sy(p.y[j]).toFixed(1);
        if (p.lower) {
          upper += c + px + " " + sy(p.upper[j]).toFixed(1);
          lower = "L" + px + " " + sy(p.lower[j]).toFixed(1) + lower;
        }
      }
      if (upper) svgEl("path", { "class": "band", d: upper + lower + "Z", fill: run.color,
        "fill-opacity": 0.15, stroke: "none", "data-run": i }, plot);
      if (line) svgEl("path", { "class": "predicted", d: line, fill: "none", stroke: run.color,
        "stroke-width": 1.3, "stroke-dasharray": "5 3", "data-run": i }, plot);
    });
    this.attachPointer(svg, m, W, H);
  };

  LineChart.prototype.attachPointer = function (svg, m, W, H) {
    var self = this, drag = null;
    var overlay = svgEl("rect", { "class": "overlay", x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b }, svg);
    var dot = svgEl("circle", { "class": "hover-dot", r: 5, cx: -10, cy: -10 }, svg);
    var sel = null;
    function local(ev) { var r = svg.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; }
    overlay.addEventListener("mousedown", function (ev) {
      ev.preventDefault();
      drag = local(ev)[0];
      sel = svgEl("rect", { "class": "selection", x: drag, y: m.t, width: 0, height: H - m.t - m.b }, svg);
    });
    overlay.addEventListener("mousemove", function (ev) {
      var p = local(ev);
      if (drag !== null && sel) {
        sel.setAttribute("x", Math.min(drag, p[0]));
        sel.setAttribute("width", Math.abs(p[0] - drag));
        hideTooltip(); return;
      }
      var best = null, bestD = 28 * 28;
      for (var k = 0; k < self.points.length; k++) {
        var q = self.points[k], dx = q[0] - p[0], dy = q[1] - p[1], dd = dx * dx + dy * dy;
        if (dd < bestD) { bestD = dd; best = q; }
      }
      if (!best) { dot.setAttribute("cx", -10); hideTooltip(); return; }
      dot.setAttribute("cx", best[0]); dot.setAttribute("cy", best[1]);
      showTooltip(ev, self.panel, best[2], best[3]);
    });
    overlay.addEventListener("mouseup", function (ev) {
      if (drag === null) return;
      var x1 = local(ev)[0], x0 = drag;
      drag = null;
      if (sel) { sel.remove(); sel = null; }
      if (Math.abs(x1 - x0) < 5) return;
      var a = self.sx.invert(Math.min(x0, x1)), b = self.sx.invert(Math.max(x0, x1));
      state.domain = [a, b];
      renderCharts();
    });
    overlay.addEventListener("mouseleave", function () {
      drag = null; if (sel) { sel.remove(); sel = null; }
      dot.setAttribute("cx", -10); hideTooltip();
    });
    overlay.addEventListener("dblclick", function () { state.domain = null; renderCharts(); });
    overlay.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var full = fullXExtent(), d = currentXDomain();
      if (!full || !d) return;
      var factor = ev.deltaY < 0 ? 0.8 : 1.25, c = self.sx.invert(local(ev)[0]);
      var t = state.logX ? Math.log10 : function (v) { return v; };
      var u = state.logX ? function (v) { return Math.pow(10, v); } : function (v) { return v; };
      var a = u(t(c) - (t(c) - t(d[0])) * factor), b = u(t(c) + (t(d[1]) - t(c)) * factor);
      state.domain = (a <= full[0] && b >= full[1]) ? null : [Math.max(a, full[0]), Math.min(b, full[1])];
      renderCharts();
    }, { passive: false });
  };

  function showTooltip(ev, panel, runIndex, j) {
    if (!tooltip) tooltip = htmlEl("div", { id: "tooltip" }, null, document.body);
    var s = panel.series[runIndex], run = RUNS[runIndex];
    tooltip.textContent = "";
    var head = htmlEl("div", {}, null, tooltip);
    var sw = htmlEl("span", { "class": "swatch" }, null, head);
    sw.style.background = run.color;
    htmlEl("b", {}, run.name, head);
    htmlEl("div", {}, panel.ylabel + ": " + fmtValue(s.y[j]), tooltip);
    var where = "tokens " + fmtCount(s.x[j]);
    if (s.steps && s.steps.length) where += " · step " + fmtCount(s.steps[j]);
    htmlEl("div", {}, where, tooltip);
    tooltip.style.display = "block";
    var x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + tooltip.offsetWidth > window.innerWidth - 4) x = ev.clientX - tooltip.offsetWidth - 14;
    if (y + tooltip.offsetHeight > window.innerHeight - 4) y = ev.clientY - tooltip.offsetHeight - 14;
    tooltip.style.left = x + "px"; tooltip.style.top = y + "px";
  }
  function hideTooltip() { if (tooltip) tooltip.style.display = "none"; }

  function downloadSvg(svg, name) {
    if (!svg) return;
    var text = new XMLSerializer().serializeToString(svg);
    var url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
    var a = htmlEl("a", { href: url, download: "evertrain-" + name.replace(/[^a-z0-9]+/gi, "-") + ".svg" }, null, document.body);
    a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  // ---- bar charts -------------------------------------------------------------------------
  var BAR_CHARTS = [
    { key: "loss_avg", title: "final average validation loss (lower is better)", digits: 4, truncate: true },
    { key: "forgetting", title: "forgetting on old data (after − before; > 0: forgot)", digits: 4, signed: true },
    { key: "tokens", title: "tokens trained (compute)", count: true }
  ];
  function barLabel(spec, v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    if (spec.count) return fmtCount(v);
    var text = v.toFixed(spec.digits);
    return spec.signed && v > 0 ? "+" + text : text;
  }
  function BarChart(spec, host) {
    this.spec = spec;
    var box = htmlEl("div", { "class": "panel bars", "data-bars": spec.key }, null, host);
    htmlEl("div", { "class": "panel-head" }, null, box).appendChild(htmlEl("h3", {}, spec.title));
    this.caption = htmlEl("p", { "class": "caption" }, "", box);
    this.host = htmlEl("div", { "class": "plot" }, null, box);
  }
  BarChart.prototype.render = function () {
    var spec = this.spec, host = this.host, names = SUMMARY.runs, values = SUMMARY[spec.key] || [];
    host.textContent = "";
    var W = Math.max(300, Math.floor(host.clientWidth || 400)), row = 18;
    var longest = names.reduce(function (a, n) { return Math.max(a, n.length); }, 4);
    var m = { l: Math.min(190, 12 + 6.4 * longest), r: 70, t: 4, b: 22 };
    var H = m.t + m.b + row * names.length;
    var svg = svgEl("svg", { "class": "chart", width: W, height: H, viewBox: "0 0 " + W + " " + H, "data-bars": spec.key }, host);
    var finite = values.filter(function (v) { return v !== null && isFinite(v); });
    var lo = 0, hi = 1;
    if (finite.length) {
      lo = Math.min.apply(null, finite); hi = Math.max.apply(null, finite);
      if (spec.truncate) {
        var span = Math.max(hi - lo, 0.05); lo -= 0.5 * span; hi += 0.1 * span;
        this.caption.textContent = "The axis starts at " + fmtValue(lo) + ", not 0: read the printed values.";
      } else { lo = Math.min(lo, 0); hi = Math.max(hi, 0); if (lo === hi) hi = 1; }
    }
    var sx = makeScale([lo, hi], [m.l, W - m.r], false), zero = sx(spec.truncate ? lo : 0);
    var ticks = linearTicks(lo, hi, 4), fx = linearFormat(ticks);
    ticks.forEach(function (v) {
      svgEl("line", { "class": "grid", x1: sx(v), x2: sx(v), y1: m.t, y2: H - m.b }, svg);
      svgEl("text", { x: sx(v), y: H - m.b + 14, "text-anchor": "middle" }, svg).textContent = fx(v);
    });
    names.forEach(function (name, i) {
      var v = values[i], y = m.t + i * row, run = RUNS[i];
      svgEl("text", { x: m.l - 5, y: y + row * 0.68, "text-anchor": "end" }, svg).textContent = name;
      if (v === null || v === undefined || !isFinite(v)) {
        svgEl("text", { "class": "bar-value", x: zero + 4, y: y + row * 0.68 }, svg).textContent = "–";
        return;
      }
      var x1 = sx(v), left = Math.min(zero, x1), width = Math.max(Math.abs(x1 - zero), 1);
      var bar = svgEl("rect", { "class": "bar" + (state.hidden[i] ? " off" : ""), x: left, y: y + 2,
        width: width, height: row - 4, fill: run.color, "data-run": i }, svg);
      svgEl("title", {}, bar).textContent = name + ": " + barLabel(spec, v);
      // the value beside the bar's end; inside it (white) where the name column would cover it
      var label = barLabel(spec, v), textWidth = 6 * label.length + 4;
      var negative = v < 0 && !spec.truncate, inside = negative && left - textWidth < m.l;
      var tx = negative ? (inside ? left + 3 : left - 3) : left + width + 3;
      var text = svgEl("text", { "class": "bar-value", x: tx, y: y + row * 0.68,
        "text-anchor": negative && !inside ? "end" : "start", "data-run": i }, svg);
      text.textContent = label;
      if (inside) text.style.fill = "#fff";
    });
    svgEl("line", { "class": "axis", x1: zero, x2: zero, y1: m.t, y2: H - m.b }, svg);
  };

  // ---- toolbar and legend -----------------------------------------------------------------
  function buildToolbar(host) {
    var controls = htmlEl("div", { "class": "controls" }, null, host);
    var xs = htmlEl("span", {}, "x axis: ", controls);
    [["x", "tokens"], ["steps", "steps"]].forEach(function (o) {
      var l = htmlEl("label", {}, null, xs);
      var r = htmlEl("input", { type: "radio", name: "xkey", value: o[0], id: "xkey-" + o[0] }, null, l);
      if (o[0] === state.xKey) r.checked = true;
      l.appendChild(document.createTextNode(" " + o[1] + " "));
      r.addEventListener("change", function () { if (r.checked) { state.xKey = o[0]; state.domain = null; renderCharts(); } });
    });
    var lx = htmlEl("label", {}, null, controls);
    var logx = htmlEl("input", { type: "checkbox", id: "logx" }, null, lx);
    lx.appendChild(document.createTextNode(" log x"));
    logx.addEventListener("change", function () { state.logX = logx.checked; state.domain = null; renderCharts(); });
    var ly = htmlEl("label", {}, null, controls);
    var logy = htmlEl("input", { type: "checkbox", id: "logy-all" }, null, ly);
    ly.appendChild(document.createTextNode(" log y (all panels)"));
    logy.addEventListener("change", function () {
      CURVES.panels.forEach(function (p) { state.logY[p.id] = logy.checked; });
      renderCharts();
    });
    var reset = htmlEl("button", { type: "button", id: "reset-zoom" }, "reset zoom", controls);
    reset.addEventListener("click", function () { state.domain = null; renderCharts(); });
    var all = htmlEl("button", { type: "button", id: "show-all" }, "show all runs", controls);
    all.addEventListener("click", function () { state.hidden = {}; renderAll(); });
    var none = htmlEl("button", { type: "button", id: "hide-all" }, "hide all", controls);
    none.addEventListener("click", function () { RUNS.forEach(function (_, i) { state.hidden[i] = true; }); renderAll(); });
    htmlEl("span", { "class": "hint" }, "drag or scroll on a chart to zoom x · double-click to reset · click a run to hide or show it", controls);
    var legend = htmlEl("div", { id: "legend" }, null, host);
    RUNS.forEach(function (run, i) {
      var item = htmlEl("button", { type: "button", "class": "legend-item", "data-run": i, title: run.recipe }, null, legend);
      var sw = svgEl("svg", { width: 34, height: 12, viewBox: "0 0 34 12" }, item);
      svgEl("path", { d: "M1 6H33", stroke: run.color, "stroke-width": Math.min(run.width, 2.4),
        "stroke-dasharray": run.dash || null, fill: "none" }, sw);
      var open = openMarker(run.marker);
      svgEl("path", { d: markerPath(run.marker, 17, 6, 3.2), fill: open ? "none" : run.color,
        stroke: open ? run.color : "#fff", "stroke-width": open ? 1.5 : 0.6 }, sw);
      htmlEl("span", {}, run.name, item);
      item.addEventListener("click", function () { state.hidden[i] = !state.hidden[i]; renderAll(); });
      item.addEventListener("mouseenter", function () { focusRun(i); });
      item.addEventListener("mouseleave", function () { focusRun(null); });
    });
  }
  function focusRun(index) {
    var nodes = document.querySelectorAll("#charts [data-run], #bars [data-run]");
    for (var k = 0; k < nodes.length; k++) {
      var fade = index !== null && nodes[k].getAttribute("data-run") !== String(index);
      nodes[k].classList.toggle("faded", fade);
    }
  }
  function syncLegend() {
    var items = document.querySelectorAll(".legend-item");
    for (var k = 0; k < items.length; k++) {
      var off = !!state.hidden[items[k].getAttribute("data-run")];
      items[k].classList.toggle("off", off);
      items[k].setAttribute("aria-pressed", off ? "false" : "true");
    }
  }

  function renderCharts() { charts.forEach(function (c) { c.render(); }); }
  function renderAll() {
    syncLegend();
    renderCharts();
    barCharts.forEach(function (c) { c.render(); });
  }

  function init() {
    buildToolbar(document.getElementById("toolbar"));
    var host = document.getElementById("charts");
    CURVES.panels.forEach(function (p, i) { charts.push(new LineChart(p, i, host)); });
    var bars = document.getElementById("bars");
    BAR_CHARTS.forEach(function (spec) { barCharts.push(new BarChart(spec, bars)); });
    renderAll();
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(renderAll, 150);
    });
  }

  window.evertrainReport = {
    data: DATA, state: state, render: renderAll,
    // what a panel draws now: one entry per visible run, with its point count
    series: function (panelId) {
      var svg = document.querySelector('svg.chart[data-panel="' + panelId + '"]');
      if (!svg) return [];
      return Array.prototype.map.call(svg.querySelectorAll("path.series"), function (p) {
        return { name: p.getAttribute("data-name"), points: +p.getAttribute("data-points") };
      });
    }
  };
  try { init(); } catch (error) {
    var box = document.getElementById("charts");
    htmlEl("p", { "class": "error" }, "The charts could not be drawn: " + error, box);
    throw error;
  }
})();
"""
