// The portal's small script: charts (uPlot) drawn from the JSON in their data-chart-spec attribute, redrawn when htmx
// swaps new figures in; live lists kept scrolled to their end. No build step.
(function () {
  "use strict";
  var charts = new WeakMap();

  function drawCharts(root) {
    (root || document).querySelectorAll("[data-chart-spec]").forEach(function (box) {
      if (typeof uPlot === "undefined") return;
      var spec = JSON.parse(box.getAttribute("data-chart-spec"));
      var old = charts.get(box);
      if (old) old.destroy();
      var palette = ["#2456d6", "#1e8a4c", "#c22f2f", "#b26b00", "#7a3fc2", "#0f8aa0", "#5d6576"];
      var series = [{}].concat(spec.series.map(function (s, i) {
        return { label: s.label, stroke: palette[i % palette.length], width: 2, points: { show: false },
                 fill: spec.fill ? palette[i % palette.length] + "22" : undefined };
      }));
      var width = Math.max(260, box.clientWidth || 600);
      var opts = { width: width, height: spec.height || 220, series: series,
                   scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(4, max)]; } } },
                   axes: [{}, { size: 50 }],
                   legend: { live: false } };
      var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
      box.innerHTML = "";
      charts.set(box, new uPlot(opts, data, box));
    });
  }

  function scrollLive(root) {
    (root || document).querySelectorAll("[data-autoscroll]").forEach(function (el) {
      el.scrollTop = el.scrollHeight;
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawCharts(); scrollLive(); });
  document.addEventListener("htmx:afterSettle", function (e) { drawCharts(e.target); scrollLive(e.target.closest("[data-autoscroll]") ? e.target.parentNode : e.target); });
  document.addEventListener("htmx:sseMessage", function (e) { scrollLive(e.target.closest("[data-autoscroll]") || e.target); });
  var resizeTimer;
  window.addEventListener("resize", function () { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawCharts, 200); });
})();
