// The admin panel's only script (served from /admin/assets/panel.js; the CSP allows no
// other): asks before destructive forms, and redraws the traffic chart every 2 s.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

function drawChart(seconds) {
  const svg = document.getElementById("traffic");
  if (!svg) return;
  const w = 600, h = 160;
  const n = Math.max(seconds.length - 1, 1);
  const maxRps = Math.max(1, ...seconds.map((s) => s.requests));
  const maxP95 = Math.max(1, ...seconds.map((s) => s.p95_ms || 0));
  const points = (value, max) =>
    seconds
      .map((s, i) => `${((i / n) * w).toFixed(1)},${(h - (value(s) / max) * h).toFixed(1)}`)
      .join(" ");
  document.getElementById("rps-line").setAttribute("points", points((s) => s.requests, maxRps));
  document.getElementById("p95-line").setAttribute("points", points((s) => s.p95_ms || 0, maxP95));
  const last = seconds[seconds.length - 1];
  document.getElementById("rps-now").textContent = last ? String(last.requests) : "0";
  document.getElementById("rps-max").textContent = String(maxRps);
  document.getElementById("p95-now").textContent =
    last && last.p95_ms != null ? `${last.p95_ms.toFixed(2)} ms` : "–";
  document.getElementById("p95-max").textContent = `${maxP95.toFixed(2)} ms`;
}

async function refreshChart() {
  try {
    const response = await fetch("/admin/traffic.json", { credentials: "same-origin" });
    if (!response.ok) return;
    const body = await response.json();
    if (body.metrics) drawChart(body.seconds);
  } catch (_) {
    // The server restarting: the next tick tries again.
  }
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("traffic")) {
    document.body.setAttribute("data-chart", "live");
    refreshChart();
    window.setInterval(refreshChart, 2000);
  }
});
