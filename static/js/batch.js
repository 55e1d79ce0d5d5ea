// Batch page: send the chosen or dropped photos to POST /api/v1/batches, poll the job for the progress
// bar (photos done / total, rate, time left), then draw the summary with the dashboard's charts
// (Chart.js, vendored), the per-photo table and the download links. Upload and progress: jobs.js.
import { followJobs } from "./jobs.js";

const EMOTION_COLORS = { angry: "#dc2626", disgust: "#65a30d", fear: "#7c3aed", happy: "#f59e0b",
  sad: "#2563eb", surprise: "#db2777", neutral: "#6b7280" };
const POLL_MS = 700;
const form = document.getElementById("batch-form");
const input = form.querySelector("input[type=file]");
const drop = document.getElementById("batch-drop");
const chosenText = document.getElementById("batch-chosen");
const resultBox = document.getElementById("batch-result");
const saveForm = document.getElementById("batch-save");
const charts = {};
let chosen = [];
const jobs = followJobs({
  jobBox: document.getElementById("batch-job"), bar: document.getElementById("batch-progress"),
  statusText: document.getElementById("batch-status"), cancelButton: document.getElementById("batch-cancel"),
  errorBox: document.querySelector("[data-testid=batch-error]"), pollMs: POLL_MS, noun: "batch",
  describe, finished: drawResult,
});

const el = (tag, attrs = {}, text = "") => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== "") node.textContent = text;
  return node;
};
const duration = (s) => (s >= 90 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`);

function choose(files) {
  chosen = Array.from(files);
  const mb = chosen.reduce((sum, f) => sum + f.size, 0) / 1e6;
  chosenText.textContent = chosen.length ? `${chosen.length} file(s) chosen, ${mb.toFixed(1)} MB.` : "No files chosen.";
}
input.addEventListener("change", () => choose(input.files));
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer && e.dataTransfer.files.length) choose(e.dataTransfer.files);
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  jobs.showError("");
  if (!chosen.length) { jobs.showError("Choose or drop some photos first."); return; }
  resultBox.hidden = true;
  const body = new FormData();
  for (const file of chosen) body.append("photos", file, file.webkitRelativePath || file.name);
  for (const name of ["detector", "profile"]) if (form.elements[name].value) body.set(name, form.elements[name].value);
  for (const name of ["thumbnails", "blur"]) body.set(name, form.elements[name].checked ? "true" : "false");
  jobs.submit(form.action, body, form.querySelector("button[type=submit]"));
});

function describe(job) {
  if (job.status === "running" || job.status === "queued") {
    let text = `${job.status} · ${job.done || 0} / ${job.total} photos`;
    if (job.rate) text += ` · ${job.rate.toFixed(1)} photos/s`;
    if (job.eta_s !== null && job.eta_s !== undefined) text += ` · about ${duration(job.eta_s)} left`;
    return text;
  }
  return job.status === "done" ? `done · ${job.total} photos` : job.status;
}

function table(id, labels, counts) {
  const t = document.querySelector(`[data-testid=${id}]`);
  t.replaceChildren();
  const head = el("tr"), body = el("tr");
  labels.forEach((label, i) => { head.append(el("th", { scope: "col" }, label)); body.append(el("td", {}, String(counts[i]))); });
  const thead = el("thead"), tbody = el("tbody");
  thead.append(head); tbody.append(body);
  t.append(thead, tbody);
}

function draw(id, config) {
  if (typeof Chart === "undefined") return;
  if (charts[id]) charts[id].destroy();
  config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: true }, config.options);
  const canvas = document.getElementById(id);
  charts[id] = new Chart(canvas, config);
  canvas.dataset.drawn = "true";
}

function drawResult(job) {
  const result = job.result, s = result.summary;
  let text = `${s.faces} face(s) in ${s.photos} photo(s): ${s.with_faces} with faces, ${s.no_face} without, ` +
    `${s.failed} could not be analysed.`;
  if (s.mean_age !== null) text += ` Mean estimated age ${s.mean_age}.`;
  if (s.seconds) text += ` ${s.photos_per_second} photos/s on ${s.workers} worker(s).`;
  document.getElementById("batch-summary").textContent = text;
  const counts = { y: { beginAtZero: true, ticks: { precision: 0 } } };
  draw("batch-chart-emotions", { type: "bar", data: { labels: s.emotions.labels, datasets: [{ label: "Faces",
    data: s.emotions.counts, backgroundColor: s.emotions.labels.map((l) => EMOTION_COLORS[l]) }] },
    options: { plugins: { legend: { display: false } }, scales: counts } });
  draw("batch-chart-ages", { type: "bar", data: { labels: s.ages.labels, datasets: [{ label: "Faces",
    data: s.ages.counts, backgroundColor: "#2463eb" }] }, options: { plugins: { legend: { display: false } }, scales: counts } });
  draw("batch-chart-genders", { type: "doughnut", data: { labels: s.genders.labels, datasets: [{ label: "Faces",
    data: s.genders.counts, backgroundColor: ["#db2777", "#2563eb"] }] } });
  table("batch-table-emotions", s.emotions.labels, s.emotions.counts);
  table("batch-table-ages", s.ages.labels, s.ages.counts);
  table("batch-table-genders", s.genders.labels, s.genders.counts);

  const tbody = resultBox.querySelector(".batch-files tbody");
  tbody.replaceChildren();
  for (const photo of result.files) {
    const faces = photo.faces || [];
    const rows = Math.max(1, faces.length);
    for (let i = 0; i < rows; i++) {
      const row = el("tr", { "data-testid": "batch-photo" });
      if (i === 0) {
        const thumb = el("td", { rowspan: rows });
        if (photo.thumbnail) thumb.append(el("img", { src: photo.thumbnail, alt: photo.file }));
        row.append(el("td", { rowspan: rows }, String(photo.index + 1)), el("td", { rowspan: rows }, photo.file), thumb);
      }
      if (photo.error) {
        row.append(el("td", { colspan: 4, class: "error" }, `${photo.error.code}: ${photo.error.message}`));
      } else if (!faces.length) {
        row.append(el("td", { colspan: 4, class: "muted" }, "no face"));
      } else {
        const f = faces[i];
        row.append(el("td", {}, `#${i + 1}`), el("td", {}, String(Math.round(f.age))),
          el("td", {}, `${f.gender.label} (${Math.round(100 * f.gender.probability)}%)`),
          el("td", {}, `${f.emotion.label} (${Math.round(100 * f.emotion.probabilities[f.emotion.label])}%)`));
      }
      tbody.append(row);
    }
  }
  const links = resultBox.querySelector(".downloads");
  links.replaceChildren("Download: ");
  links.append(el("a", { href: result.downloads.csv, download: "", "data-testid": "batch-csv" }, "CSV (one row per face)"),
    el("a", { href: result.downloads.json, download: "", "data-testid": "batch-json" }, "JSON"));
  if (saveForm) saveForm.action = saveForm.dataset.action.replace("JOB", job.id);
  resultBox.hidden = false;
  window.visageBatchCharts = charts;
}
