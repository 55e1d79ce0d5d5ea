// Video page: upload through the job API, poll the job for the progress bar (jobs.js), then draw the
// result (summary table, one SVG timeline chart per face, download links). No libraries.
import { followJobs } from "./jobs.js";

const COLORS = { angry: "#dc2626", disgust: "#65a30d", fear: "#7c3aed", happy: "#f59e0b",
  sad: "#2563eb", surprise: "#db2777", neutral: "#6b7280" };
const POLL_MS = 500;
const SVG = "http://www.w3.org/2000/svg";

const form = document.getElementById("video-form");
const resultBox = document.getElementById("video-result");
const jobs = followJobs({
  jobBox: document.getElementById("video-job"), bar: document.getElementById("video-progress"),
  statusText: document.getElementById("video-status"), cancelButton: document.getElementById("video-cancel"),
  errorBox: document.querySelector("[data-testid=video-error]"), pollMs: POLL_MS, noun: "video analysis",
  describe: (job) => (job.status === "running" ? `running · ${Math.round(100 * (job.progress || 0))}%` : job.status),
  finished: (job) => drawResult(job.result),
});

function el(tag, attrs = {}, text = "") {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  resultBox.hidden = true;
  const body = new FormData(form);
  if (!form.elements.blur.checked) body.set("blur", "false");
  jobs.submit(form.action, body, form.querySelector("button"));
});

function seconds(t) {
  const m = Math.floor(t / 60), s = (t % 60).toFixed(1);
  return m ? `${m}:${s.padStart(4, "0")}` : `${s} s`;
}

function drawResult(result) {
  const tbody = resultBox.querySelector("tbody");
  tbody.replaceChildren();
  const charts = document.getElementById("video-charts");
  charts.replaceChildren();
  const d = result.decoding;
  let summary = `${result.tracks.length} face(s) in ${seconds(result.video.duration || 0)} of video, ` +
    `${result.sampling.samples} frames analysed (${result.sampling.fps} per second).`;
  if (!d.complete) summary += ` The video is damaged: ${d.frames_failed} frame(s) could not be decoded; the rest was analysed.`;
  document.getElementById("video-summary").textContent = summary;
  for (const track of result.tracks) {
    const row = el("tr", { "data-testid": "video-track" });
    const thumb = el("td");
    if (track.thumbnail) thumb.append(el("img", { src: track.thumbnail, alt: `Face ${track.id}` }));
    const age = track.age_range ? `${Math.round(track.age)} (${track.age_range[0]}–${track.age_range[1]})` : `${track.age}`;
    row.append(el("td", {}, `#${track.id}`), thumb, el("td", {}, `${seconds(track.first_seen)} – ${seconds(track.last_seen)}`),
      el("td", {}, age), el("td", {}, `${track.gender.label} (${Math.round(100 * track.gender.probability)}%)`),
      el("td", {}, track.dominant_emotion ? track.dominant_emotion.label : ""));
    tbody.append(row);
    charts.append(chart(track));
  }
  const links = resultBox.querySelector(".downloads");
  links.replaceChildren("Download: ");
  const dl = result.downloads;
  links.append(el("a", { href: dl.csv, download: "" }, "CSV"), el("a", { href: dl.json, download: "" }, "JSON"));
  if (dl.annotated_video) links.append(el("a", { href: dl.annotated_video, download: "" },
    result.blurred ? "Annotated video (faces blurred)" : "Annotated video"));
  resultBox.hidden = false;
}

// One line per emotion: smoothed probability (0–1) against time over the face's visible span.
function chart(track) {
  const W = 720, H = 180, L = 36, R = 8, T = 8, B = 24;
  const points = track.timeline;
  const t0 = track.first_seen, t1 = Math.max(track.last_seen, t0 + 0.001);
  const x = (t) => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = (p) => T + (H - T - B) * (1 - p);
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Emotions of face ${track.id} over time` });
  for (const p of [0, 0.5, 1]) {
    svg.append(el("svg:line", { x1: L, x2: W - R, y1: y(p), y2: y(p), stroke: "#e5e7eb" }));
    svg.append(el("svg:text", { x: L - 6, y: y(p) + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7280" }, `${p * 100}%`));
  }
  for (const [t, anchor] of [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]]) {
    svg.append(el("svg:text", { x: x(t), y: H - 6, "text-anchor": anchor, "font-size": 11, fill: "#6b7280" }, seconds(t)));
  }
  for (const [label, color] of Object.entries(COLORS)) {
    const path = points.map((pt) => `${x(pt.t).toFixed(1)},${y(pt.emotion.probabilities[label]).toFixed(1)}`).join(" ");
    svg.append(el("svg:polyline", { points: path, fill: "none", stroke: color, "stroke-width": 2,
      "data-emotion": label }));
  }
  const box = el("figure", { class: "timeline", "data-testid": "video-timeline" });
  box.append(el("h3", {}, `Face #${track.id}`), svg);
  const legend = el("ul", { class: "legend" });
  for (const [label, color] of Object.entries(COLORS)) {
    const item = el("li");
    item.append(el("span", { style: `background:${color}` }), label);
    legend.append(item);
  }
  box.append(legend);
  if (track.segments) {
    box.append(el("p", { class: "segments" },
      track.segments.map((s) => `${seconds(s.start)}–${seconds(s.end)} ${s.label}`).join(" · ")));
  }
  return box;
}
