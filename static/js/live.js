// Live mode: analyze the webcam stream continuously and draw smoothed faces over it.
// At most settings.inFlight requests out at a time (two: one analysed while the next travels, so the
// server's two cores and the browser's work overlap); a new frame goes only when one comes back, so
// frames the server has no time for are dropped, never queued. Answers are used in the order sent.
// A periodic full scan goes out beside the region scans (it only adds faces the hints do not cover);
// only a full-resolution frame, which is slow, goes alone.
import { startCamera, grabFrame, canvasToJpeg } from "./camera.js";
import { FaceTracker } from "./tracker.js";

const settings = JSON.parse(document.getElementById("live-settings").textContent);
const video = document.getElementById("live-video");
const overlay = document.getElementById("live-overlay");
const faceList = document.getElementById("live-faces");
const fpsOut = document.getElementById("live-fps");
const latencyOut = document.getElementById("live-latency");
const serverOut = document.getElementById("live-server");
const status = document.getElementById("camera-status");
const toggle = document.getElementById("live-toggle");
const detectorChoice = document.getElementById("live-detector");

const tracker = new FaceTracker({
  window: settings.smoothingWindow, personWindow: settings.personWindow, matchIou: settings.matchIou,
  reviveS: settings.reviveS, boxMinCutoff: settings.boxMinCutoff, boxBeta: settings.boxBeta });
const sendCanvas = document.createElement("canvas");
let running = false;
let looping = false;  // a loop() is alive (possibly awaiting its last request after a pause)

// Frames per second over a sliding window of the last few seconds of answers.
const FPS_WINDOW_MS = 2000;
const answeredAt = [];

function recordAnswer(roundTripMs, timing) {
  const now = performance.now();
  answeredAt.push(now);
  while (answeredAt[0] < now - FPS_WINDOW_MS) answeredAt.shift();
  const spanMs = now - answeredAt[0];
  const fps = answeredAt.length > 1 ? ((answeredAt.length - 1) * 1000) / spanMs : 0;
  fpsOut.textContent = fps.toFixed(1);
  fpsOut.dataset.value = fps.toFixed(2);
  latencyOut.textContent = `${Math.round(roundTripMs)} ms`;
  latencyOut.dataset.value = roundTripMs.toFixed(1);
  const serverMs = timing && timing.total;
  serverOut.textContent = serverMs === undefined ? "–" : `${Math.round(serverMs)} ms`;
}

function chosenDetector() {
  return detectorChoice.querySelector("input:checked").value;
}

// Another detector frames faces a little differently: start over (new tracks, a full scan).
detectorChoice.addEventListener("change", () => {
  tracker.clear();
  Object.assign(scan, { sinceFull: 0, withoutFace: 0, lost: false });
});

function faceLabel(s) {
  return `${s.gender.label}, ${s.age}, ${s.emotion.label}`;
}

function draw(tracks) {
  overlay.width = video.videoWidth;
  overlay.height = video.videoHeight;
  const ctx = overlay.getContext("2d");
  const lineWidth = Math.max(2, overlay.width / 240);
  ctx.lineWidth = lineWidth;
  ctx.font = `${Math.round(lineWidth * 7)}px system-ui, sans-serif`;
  ctx.textBaseline = "bottom";
  let drawn = 0;
  for (const track of tracks) {
    const { x, y, w, h } = track.box;
    const label = faceLabel(track.smoothed);
    ctx.strokeStyle = "#34d399";
    ctx.strokeRect(x, y, w, h);
    const pad = lineWidth * 2;
    const textWidth = ctx.measureText(label).width + 2 * pad;
    const textHeight = lineWidth * 9;
    const labelY = y > textHeight ? y : y + h + textHeight;  // above the box unless at the top edge
    ctx.fillStyle = "rgba(6, 78, 59, 0.85)";
    ctx.fillRect(x - lineWidth / 2, labelY - textHeight, textWidth, textHeight);
    ctx.fillStyle = "#ecfdf5";
    ctx.fillText(label, x + pad, labelY - lineWidth);
    drawn += 1;
  }
  overlay.dataset.boxes = String(drawn);
}

// The tracks in the DOM as well as on the canvas: readable by tests and screen readers.
function listFaces(tracks) {
  const items = tracks.map((track) => {
    const s = track.smoothed;
    const li = document.createElement("li");
    li.dataset.testid = "live-face";
    // box: the drawn (smoothed) box; rawBox, frameAge, scan: the last detection of it, its single-frame
    // age and the answer's scan (read by bench/bench_live.py and the browser tests: how steady a still face is).
    const round = (box) => [box.x, box.y, box.w, box.h].map((v) => v.toFixed(1)).join(",");
    Object.assign(li.dataset, {
      trackId: track.id, age: s.age, gender: s.gender.label, emotion: s.emotion.label, frames: s.frames,
      box: round(track.box), rawBox: round(track.rawBox), frameAge: track.frameAge, scan: track.lastScan,
      detected: String(track.missed === 0),
    });
    li.textContent = faceLabel(s);
    return li;
  });
  faceList.replaceChildren(...items);
}

// Where to look: the server stays stateless, the tracker knows where the faces were. Most frames
// send the tracked boxes as `regions` (the detector then scans only around them); the whole frame
// is scanned every few frames, when there is no track, and right after a track went undetected.
// When no face has been found for a while, one frame goes at the camera's full resolution, so a
// face too small or too faint for the downscaled frames is still found (and then tracked).
const scan = { sinceFull: 0, withoutFace: 0, lost: false };

function nextRequest() {
  const fullResolution = scan.withoutFace >= settings.fullResolutionAfter;
  const maxSide = fullResolution ? Infinity : settings.sendMaxSide;
  const tracks = tracker.tracks;
  // More tracks than the API takes as hints (a group in front of the camera): the whole frame instead.
  const fullScan = fullResolution || scan.lost || !tracks.length || tracks.length > settings.maxRegions
    || scan.sinceFull >= settings.fullScanEvery - 1;
  const toSent = Math.min(1, maxSide / Math.max(video.videoWidth, video.videoHeight));  // as grabFrame scales
  const regions = fullScan ? null : tracks.map((track) => regionHint(track, toSent));
  return { fullResolution, maxSide, regions };
}

// A tracked face's hint moves only once its box has moved by more than HINT_DEADBAND of its size: the
// detector looks at a crop around the hint, and a crop that followed the box pixel by pixel fed its own
// small changes back (a perfectly still face's box then wandered by 1-2 px for ever).
const HINT_DEADBAND = 0.04;

function regionHint(track, toSent) {
  const box = [track.box.x, track.box.y, track.box.w, track.box.h].map((v) => v * toSent);
  const last = track.hint;
  const slack = HINT_DEADBAND * Math.max(box[2], box[3]);
  if (!last || last.toSent !== toSent || box.some((v, i) => Math.abs(v - last.box[i]) > slack)) {
    track.hint = { box, toSent };
  }
  return track.hint.box.map(Math.round);
}

function count(name) {   // answer counters, read by tests and bench/bench_live.py
  serverOut.dataset[name] = String(Number(serverOut.dataset[name] || 0) + 1);
}

function afterAnswer(request, result) {
  count(result.scan === "regions" ? "regionScans" : "fullScans");
  count("answers");
  serverOut.dataset.detector = result.detector;
  if (result.faces.length) count("answersWithFace");
  if (request.regions && result.faces.length < request.regions.length) scan.lost = true;
  scan.withoutFace = result.faces.length ? 0 : scan.withoutFace + 1;
}

// Counted when a request goes, not when it comes back, so that two requests out never both become
// the periodic full scan (or the full-resolution frame).
function markSent(request) {
  scan.sinceFull = request.regions ? scan.sinceFull + 1 : 0;
  if (!request.regions) scan.lost = false;        // this scan looks for the lost face
  if (request.fullResolution) scan.withoutFace = 0;
}

async function analyze(blob, regions) {
  const body = new FormData();
  body.append("image", blob, "frame.jpg");
  body.append("detector", chosenDetector());
  body.append("min_face", String(settings.minFace));  // webcam faces are large: skip the costly small scales
  body.append("profile", "live");  // face + mirror only: the tracker averages over frames instead
  // The hint goes in the query string: it is the documented place for it beside a multipart body.
  const url = regions ? `${settings.apiUrl}?regions=${encodeURIComponent(JSON.stringify(regions))}` : settings.apiUrl;
  let response;
  try {
    response = await fetch(url, { method: "POST", body, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (err) {
    throw new AnalysisError(err.name === "TimeoutError" ? "no answer for 30 s" : "the server could not be reached");
  }
  const result = await response.json().catch(() => null);     // a proxy's 502 page is not JSON
  if (!response.ok || !result) {
    const message = (result && result.error && result.error.message) || `HTTP ${response.status}`;
    throw new AnalysisError(message, response.status, Number(response.headers.get("Retry-After")) || 0);
  }
  return result;
}

// A failed analysis: worth trying again (the network, a busy or restarting server: 5xx, 429, 408), or
// not (any other 4xx: the request itself, or a login that has ended), then live mode stops and says why.
const REQUEST_TIMEOUT_MS = 30000;
class AnalysisError extends Error {
  constructor(message, status = 0, retryAfterS = 0) {
    super(message);
    this.retryAfterS = retryAfterS;
    this.permanent = status >= 400 && status < 500 && status !== 408 && status !== 429;
  }
}

// Boxes come back in sent-frame pixels; the overlay is in video pixels.
function toVideoPixels(faces, image) {
  const scale = video.videoWidth / image.width;
  return faces.map((face) => ({
    ...face,
    box: { x: face.box.x * scale, y: face.box.y * scale, w: face.box.w * scale, h: face.box.h * scale },
  }));
}

async function loop() {
  looping = true;
  try {
    await analyzeWhileRunning();
  } finally {
    looping = false;
  }
}

// Camera frames as they arrive (requestVideoFrameCallback): a frame is sent once at most, so the
// frames per second shown are distinct camera frames analysed, never one frame counted twice.
let cameraFrames = 0;
const frameWaiters = [];
const NEW_FRAME_WAIT_MS = 200;   // a camera that stops delivering (or a browser without the callback)

function onCameraFrame() {
  cameraFrames += 1;
  frameWaiters.splice(0).forEach((resolve) => resolve());
  video.requestVideoFrameCallback(onCameraFrame);
}
if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onCameraFrame);

function cameraFrameAfter(seen) {
  if (cameraFrames > seen || !video.requestVideoFrameCallback) return Promise.resolve();
  return new Promise((resolve) => {
    frameWaiters.push(resolve);
    setTimeout(() => {          // no new frame in time: this waiter goes (the list never grows)
      const index = frameWaiters.indexOf(resolve);
      if (index >= 0) frameWaiters.splice(index, 1);
      resolve();
    }, NEW_FRAME_WAIT_MS);
  });
}

// The next camera frame after `seen`, scaled to `maxSide` and JPEG-encoded.
async function prepareFrame(maxSide, seen) {
  await cameraFrameAfter(seen);
  const frame = cameraFrames;
  const blob = await canvasToJpeg(grabFrame(video, sendCanvas, maxSide), settings.jpegQuality);
  return { blob, maxSide, frame };
}

// One more request may go out while a periodic full scan is out among the region scans: it takes the
// server longer than a region scan, and the answers after it wait for it (they are used in order), so the
// camera's frames keep going meanwhile. With no face tracked every frame is a full scan: no extra one.
function inFlightLimit(out) {
  const base = Math.max(1, settings.inFlight || 1);
  const periodic = tracker.tracks.length && out.some((o) => !o.request.regions);
  return base + (base > 1 && periodic ? 1 : 0);
}

async function analyzeWhileRunning() {
  const out = [];   // requests sent and not yet used, oldest first: {request, started, answer}
  let lastFrame = -1;
  while (running || out.length) {
    // A full-resolution frame goes alone: nothing more goes out until it is back.
    while (running && out.length < inFlightLimit(out) && !out.some((o) => o.request.fullResolution)) {
      // Each request is a camera frame newer than the last one sent; its hints come from the tracker
      // as it stands (the answer to the request before it may still be out: hints are padded).
      const request = nextRequest();
      if (out.length && request.fullResolution) break;   // it waits until it is the only request out
      let frame;
      try {
        frame = await prepareFrame(request.maxSide, lastFrame);
      } catch (err) {            // the camera gave no picture to encode (gone, or a 0-size frame)
        stopLive(`Live stopped: no picture from the camera (${err.message || err}).`);
        break;
      }
      lastFrame = frame.frame;
      markSent(request);
      const started = performance.now();
      const answer = analyze(frame.blob, request.regions).then((result) => ({ result }), (error) => ({ error }));
      out.push({ request, started, answer });
    }
    if (!out.length) break;
    const { request, started, answer } = out.shift();
    const { result, error } = await answer;
    if (!running) continue;   // paused while requests were out: leave the last picture
    if (error) {
      if (error.permanent) {
        stopLive(`Live stopped: ${error.message}`);
        continue;
      }
      const waitS = Math.min(30, Math.max(1, error.retryAfterS || 0));
      status.textContent = `Analysis failed: ${error.message}. Retrying in ${waitS} s…`;
      await new Promise((resolve) => setTimeout(resolve, waitS * 1000));
      continue;
    }
    if (result.detector !== chosenDetector()) continue;   // asked before the choice changed
    recordAnswer(performance.now() - started, result.timing_ms);
    afterAnswer(request, result);
    const tracks = tracker.update(toVideoPixels(result.faces, result.image), performance.now(), result.scan);
    recordTimeline(tracks, result.models);
    draw(tracks);
    listFaces(tracks);
    status.textContent = result.faces.length ? "" : "No face in view.";
  }
}

function setRunning(on) {
  running = on;
  toggle.textContent = on ? "Pause" : "Resume";
  if (on && !looping) loop();
}

// Stopped by something the page cannot fix by itself: Resume tries again once the user has seen why.
function stopLive(message) {
  setRunning(false);
  status.textContent = message;
}

// A hidden tab sends nothing (it would analyse frames nobody sees); it goes on when shown again.
let pausedByHiding = false;
document.addEventListener("visibilitychange", () => {
  if (document.hidden && running) {
    pausedByHiding = true;
    setRunning(false);
  } else if (!document.hidden && pausedByHiding) {
    pausedByHiding = false;
    setRunning(true);
  }
});

async function start() {
  if (!(await startCamera(video))) return;
  status.textContent = "";
  toggle.disabled = false;
  // A camera unplugged (or taken by another program) ends its track: say so, instead of analysing the
  // last frame again and again.
  for (const track of video.srcObject ? video.srcObject.getVideoTracks() : []) {
    track.addEventListener("ended", () => {
      stopLive("The camera stopped sending pictures. Reconnect it and reload the page.");
      toggle.disabled = true;
    });
  }
  setRunning(true);
}

// Record/Stop (logged-in users): about one smoothed point per face per second, saved to the
// history on Stop. Only these numbers leave the page; frames are never kept anywhere.
const recordButton = document.getElementById("live-record");
const recordStatus = document.getElementById("live-record-status");
const RECORD_INTERVAL_S = 1;
let recording = null;

// expressions: a track's last emotion probabilities (tracker.js), the window its shown label is voted on.
function meanProbabilities(expressions) {
  const sums = {};
  for (const scores of expressions) for (const [label, p] of Object.entries(scores)) sums[label] = (sums[label] || 0) + p;
  return Object.fromEntries(Object.entries(sums).map(([label, total]) => [label, total / expressions.length]));
}

// The history keeps at most settings.maxRecordFaces faces and settings.maxRecordPoints points per
// session: later faces are left out and a full session stops and saves itself, so a long or busy
// recording is never refused whole at Stop.
function recordTimeline(tracks, models) {
  if (!recording) return;
  const t = (performance.now() - recording.startedAt) / 1000;
  recording.models = models || recording.models;
  for (const track of tracks) {
    const known = recording.lastAt.has(track.id);
    if (!known && recording.lastAt.size >= settings.maxRecordFaces) {
      recording.leftOut.add(track.id);
      continue;
    }
    const last = recording.lastAt.get(track.id);
    if (last !== undefined && t - last < RECORD_INTERVAL_S) continue;
    recording.lastAt.set(track.id, t);
    const s = track.smoothed;
    recording.points.push({
      t: Math.round(t * 10) / 10, track: track.id, age: s.age, gender: s.gender.label,
      gender_probability: s.gender.probability, emotion: s.emotion.label,
      probabilities: meanProbabilities(track.expressions),
    });
    if (recording.points.length >= settings.maxRecordPoints) {
      stopRecording();
      return;
    }
  }
  const leftOut = recording.leftOut.size ? ` (${settings.maxRecordFaces} faces kept; later faces left out)` : "";
  recordStatus.textContent = `Recording: ${Math.round(t)} s, ${recording.points.length} points${leftOut}.`;
}

let unsaved = null;      // a session whose saving failed on the way: "Save again" sends it again

async function stopRecording(session = recording) {
  recording = null;
  unsaved = null;
  recordButton.textContent = "Record";
  if (!session.points.length) {
    recordStatus.textContent = "Nothing recorded (no face was in view).";
    return;
  }
  recordStatus.textContent = "Saving…";
  let response = null;
  let answer = {};
  try {
    response = await fetch(settings.saveUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": settings.csrfToken },
      body: JSON.stringify({
        duration_s: session.durationS ?? (performance.now() - session.startedAt) / 1000,
        models: session.models, timeline: session.points, key: session.key,
      }),
    });
    answer = await response.json().catch(() => ({}));
  } catch {
    response = null;
  }
  if (!response || !response.ok) {
    const why = response ? (answer.error && answer.error.message) || `HTTP ${response.status}` : "no answer from the server";
    recordStatus.textContent = `Not saved: ${why}.`;
    if (!response || response.status >= 500 || response.status === 429) {
      session.durationS = session.durationS ?? (performance.now() - session.startedAt) / 1000;
      unsaved = session;
      recordButton.textContent = "Save again";
    }
    return;
  }
  recordStatus.replaceChildren("Saved. ");
  const link = document.createElement("a");
  link.href = answer.url;
  link.textContent = "Open it in your history";
  link.dataset.testid = "live-saved-link";
  recordStatus.append(link);
}

if (recordButton) {
  recordButton.addEventListener("click", () => {
    if (recording) {
      stopRecording();
    } else if (unsaved) {
      stopRecording(unsaved);
    } else {
      // key: "Save again" after an answer lost on the way must not save the session twice
      recording = { startedAt: performance.now(), lastAt: new Map(), leftOut: new Set(), points: [], models: {},
                    key: crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}` };
      recordButton.textContent = "Stop";
      recordStatus.textContent = "Recording…";
    }
  });
}

toggle.addEventListener("click", () => setRunning(!running));
start();
