// Dashboard charts (Chart.js, vendored under static/vendor/chartjs/) drawn from the page's JSON
// data block; the tables beside each canvas carry the same numbers for screen readers.
(function () {
  "use strict";
  const block = document.getElementById("dashboard-data");
  if (!block || typeof Chart === "undefined") return;
  const data = JSON.parse(block.textContent);
  if (!data.saved) return;

  const EMOTION_COLORS = {
    angry: "#dc2626", disgust: "#65a30d", fear: "#7c3aed", happy: "#f59e0b",
    sad: "#2563eb", surprise: "#db2777", neutral: "#6b7280",
  };
  const colorsFor = (labels) => labels.map((l) => EMOTION_COLORS[l] || "#2463eb");
  const charts = {};
  const draw = (id, config) => {
    const canvas = document.getElementById(id);
    if (!canvas) return;
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: true }, config.options);
    charts[id] = new Chart(canvas, config);
    canvas.dataset.drawn = "true";
  };
  const countScale = { y: { beginAtZero: true, ticks: { precision: 0 } } };

  draw("chart-emotions", {
    type: "bar",
    data: { labels: data.emotions.labels,
            datasets: [{ label: "Faces", data: data.emotions.counts, backgroundColor: colorsFor(data.emotions.labels) }] },
    options: { plugins: { legend: { display: false } }, scales: countScale },
  });
  draw("chart-over-time", {
    type: "line",
    data: { labels: data.over_time.labels,
            datasets: data.emotions.labels.map((e) => ({ label: e, data: data.over_time.series[e],
                                                       borderColor: EMOTION_COLORS[e], backgroundColor: EMOTION_COLORS[e] })) },
    options: { scales: countScale },
  });
  draw("chart-ages", {
    type: "bar",
    data: { labels: data.ages.labels, datasets: [{ label: "Faces", data: data.ages.counts, backgroundColor: "#2463eb" }] },
    options: { plugins: { legend: { display: false } }, scales: countScale },
  });
  draw("chart-genders", {
    type: "doughnut",
    data: { labels: data.genders.labels,
            datasets: [{ label: "Faces", data: data.genders.counts, backgroundColor: ["#db2777", "#2563eb"] }] },
  });
  data.live.forEach((session, i) => {
    draw(`chart-live-${i}`, {
      type: "line",
      data: { datasets: session.faces.map((face) => ({
        label: face.label, stepped: true, data: face.points.map((p) => ({ x: p.t, y: p.emotion })) })) },
      options: { scales: { x: { type: "linear", title: { display: true, text: "seconds" } },
                           y: { type: "category", labels: data.emotions.labels } } },
    });
  });
  window.visageCharts = charts;   // for tests and the console
})();
