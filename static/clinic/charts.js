/* Charts of the staff pages (issue #7), drawn with the vendored Chart.js (static/vendor/chartjs/) and, for
 * the INR chart's time scale, its vendored date adapter (static/vendor/chartjs-adapter-date-fns/).
 * Data come from <script type="application/json"> blocks written by Django's json_script.
 * Every chart has a text alternative on the page (aria-label and a table or the timeline). */
(function () {
  "use strict";

  var DANGER = "#ba2121", BELOW = "#205067", OK = "#2e7d32", DOSE = "#6b4ea8", BAND = "rgba(46, 125, 50, 0.14)";

  function jsonData(id) {
    var element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  var DAY = 86400000;

  /* "2026-11-27T05:30:00", the clinic's wall clock, as a time on this browser's calendar (a string without an
   * offset is local time): ticks fall on midnights, so each reading sits on its clinic day. */
  function wallClock(text) {
    return new Date(text).getTime();
  }

  function startOfDay(ms) {
    var d = new Date(ms);
    return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  }

  /* The target band (shaded) and the dose changes (dashed vertical lines), drawn under the data. */
  var bandAndDoses = {
    id: "clinicBandAndDoses",
    beforeDatasetsDraw: function (chart, args, options) {
      var area = chart.chartArea, x = chart.scales.x, y = chart.scales.y, ctx = chart.ctx;
      ctx.save();
      if (options.band) {
        var top = y.getPixelForValue(options.band[1]), bottom = y.getPixelForValue(options.band[0]);
        ctx.fillStyle = BAND;
        ctx.fillRect(area.left, top, area.right - area.left, bottom - top);
      }
      ctx.setLineDash([6, 4]);
      ctx.strokeStyle = DOSE;
      ctx.lineWidth = 1.5;
      (options.doses || []).forEach(function (dose) {
        var px = x.getPixelForValue(dose.x);
        if (px < area.left || px > area.right) { return; }
        ctx.beginPath();
        ctx.moveTo(px, area.top);
        ctx.lineTo(px, area.bottom);
        ctx.stroke();
      });
      ctx.restore();
    }
  };

  function inrChart() {
    var data = jsonData("inr-chart-data");
    var canvas = document.getElementById("inr-chart");
    if (!data || !canvas || !window.Chart) { return; }
    var points = data.points.map(function (p) { return Object.assign({}, p, { x: wallClock(p.t) }); });
    var doses = data.doses.map(function (d) { return Object.assign({}, d, { x: wallClock(d.t) }); });
    /* The y axis in half-INR steps up to the next half above the highest reading (4.5 at least). */
    var top = Math.max(4.5, Math.ceil((Math.max.apply(null, points.map(function (p) { return p.y; })) + 0.3) * 2) / 2);
    var style = function (ctx) {
      var p = points[ctx.dataIndex];
      return p && p.position !== "in" ? "triangle" : "circle";
    };
    var colour = function (ctx) {
      var p = points[ctx.dataIndex];
      if (!p) { return OK; }
      return p.position === "above" ? DANGER : (p.position === "below" ? BELOW : OK);
    };
    var xs = points.map(function (p) { return p.x; }).concat(doses.map(function (d) { return d.x; }));
    new window.Chart(canvas, {
      type: "line",
      data: {
        datasets: [
          {
            label: "INR",
            data: points,
            parsing: false,
            borderColor: "#555",
            borderWidth: 1.5,
            pointStyle: style,
            rotation: function (ctx) { var p = points[ctx.dataIndex]; return p && p.position === "below" ? 180 : 0; },
            pointRadius: function (ctx) { var p = points[ctx.dataIndex]; return p && p.position !== "in" ? 7 : 4; },
            pointHoverRadius: 9,
            pointBackgroundColor: colour,
            pointBorderColor: colour
          },
          {
            label: "Dose change",
            type: "scatter",
            data: doses.map(function (d) { return { x: d.x, y: top - 0.25, label: d.label }; }),
            parsing: false,
            pointStyle: "rectRot",
            pointRadius: 6,
            pointBackgroundColor: DOSE,
            pointBorderColor: DOSE
          }
        ]
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: {
          x: {
            type: "time",
            min: startOfDay(Math.min.apply(null, xs)) - DAY,
            max: startOfDay(Math.max.apply(null, xs)) + 2 * DAY,
            time: {
              minUnit: "day",
              isoWeekday: true,
              displayFormats: { day: "yyyy-MM-dd", week: "yyyy-MM-dd", month: "MMM yyyy", quarter: "MMM yyyy" },
              tooltipFormat: "yyyy-MM-dd HH:mm"
            },
            ticks: { source: "auto", maxRotation: 0, autoSkipPadding: 16 },
            title: { display: true, text: "Date drawn (clinic time)" }
          },
          y: {
            min: 0.5,
            max: top,
            ticks: { stepSize: 0.5, autoSkip: false, callback: function (value) { return Number(value).toFixed(1); } },
            title: { display: true, text: "INR" }
          }
        },
        plugins: {
          clinicBandAndDoses: { band: data.band, doses: doses },
          legend: { labels: { usePointStyle: true } },
          tooltip: { callbacks: { label: function (ctx) { return ctx.raw.label; } } }
        }
      },
      plugins: [bandAndDoses]
    });
  }

  function ttrChart() {
    var data = jsonData("ttr-chart-data");
    var canvas = document.getElementById("ttr-chart");
    if (!data || !canvas || !window.Chart) { return; }
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [{
          label: "Patients",
          data: data.counts,
          backgroundColor: "rgba(32, 80, 103, 0.6)",
          borderColor: "#333",
          borderWidth: 1
        }]
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: {
          x: { title: { display: true, text: "TTR (target: 65 % or more)" } },
          y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "Patients" } }
        },
        plugins: { legend: { display: false } }
      }
    });
  }

  function start() {
    inrChart();
    ttrChart();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
