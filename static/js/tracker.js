// Temporal smoothing for live mode: keep each face's identity across frames by box
// overlap, and average its last few predictions so labels do not flicker.

export function iou(a, b) {
  const x0 = Math.max(a.x, b.x), y0 = Math.max(a.y, b.y);
  const x1 = Math.min(a.x + a.w, b.x + b.w), y1 = Math.min(a.y + a.h, b.y + b.h);
  const inter = Math.max(0, x1 - x0) * Math.max(0, y1 - y0);
  const union = a.w * a.h + b.w * b.h - inter;
  return union > 0 ? inter / union : 0;
}

// `sorted`: numbers in ascending order.
function quantile(sorted, q) {
  const at = (sorted.length - 1) * q, below = Math.floor(at);
  return sorted[below] + (sorted[Math.min(below + 1, sorted.length - 1)] - sorted[below]) * (at - below);
}

// Hysteresis, so that a face between two answers does not blink between them:
// a new label must lead the shown one by this much mean probability over the window,
const LABEL_MARGIN = 0.1;
// and the shown age moves only by at least this many years: the age model's test error
// is 5-6 years (models/age_gender.json), and single frames of a still face spread about as
// much (a 1-3 px shift of the Haar box moves it by 4.6 years, s.d., on the astronaut portrait).
const AGE_STEP = 5;

// One-Euro filter (Casiraghi et al., CHI 2012) for one box coordinate: a low-pass filter whose
// cutoff rises with the coordinate's speed, so a still face's box holds steady (detector noise of
// a pixel or two is smoothed away) while a moving one is followed without lag.
const DERIVATIVE_CUTOFF = 1;   // Hz: smoothing of the speed estimate itself
const NOMINAL_FRAME_S = 1 / 30;  // when update() is given no clock (synthetic tests)

function smoothingFactor(cutoffHz, dtS) {
  const tau = 1 / (2 * Math.PI * cutoffHz);
  return 1 / (1 + tau / dtS);
}

export class OneEuroFilter {
  constructor(minCutoff = 1, beta = 0.05) {
    Object.assign(this, { minCutoff, beta, value: null, speed: 0 });
  }

  filter(x, dtS) {
    if (this.value === null) {
      this.value = x;
      return x;
    }
    const speed = (x - this.value) / dtS;
    this.speed += smoothingFactor(DERIVATIVE_CUTOFF, dtS) * (speed - this.speed);
    const cutoff = this.minCutoff + this.beta * Math.abs(this.speed);
    this.value += smoothingFactor(cutoff, dtS) * (x - this.value);
    return this.value;
  }
}

const BOX_KEYS = ["x", "y", "w", "h"];

// Label with the highest summed score over the window (a probability-weighted vote),
// unless the label shown so far is within LABEL_MARGIN of it.
function votedLabel(scores, n, shown) {
  let best = null;
  for (const [label, score] of Object.entries(scores)) if (best === null || score > scores[best]) best = label;
  if (shown && best !== shown && (scores[best] - (scores[shown] || 0)) / n < LABEL_MARGIN) return shown;
  return best;
}

function addScores(total, scores) {
  for (const [label, score] of Object.entries(scores)) total[label] = (total[label] || 0) + score;
  return total;
}

export class FaceTracker {
  // window: observations averaged per face for its expression, which changes from moment to moment;
  // personWindow: observations averaged for its age and gender, which belong to the person and do not
  // change while a track lasts: the longer memory averages out the per-frame spread (a still face's
  // single-frame ages spread 3-6 years, s.d., as its box moves by 1-2 px) and its slow drifts;
  // matchIou: overlap that continues a track; minHits: detections before a face is shown (one-frame
  // false positives never are); maxMissed: frames a face may go undetected (still shown) before its
  // track is dropped; reviveS: seconds a dropped track waits to be continued (below);
  // boxMinCutoff (Hz), boxBeta: the One-Euro box filter (app/webcam.py).
  constructor({ window = 8, personWindow = 4 * window, matchIou = 0.3, minHits = 2, maxMissed = 3,
                reviveS = 3, boxMinCutoff = 1, boxBeta = 0.05 } = {}) {
    Object.assign(this, { window, personWindow: Math.max(window, personWindow), matchIou, minHits, maxMissed,
                          reviveS, boxMinCutoff, boxBeta });
    this.clear();
  }

  // Forget every face (another detector was chosen). Track ids keep counting.
  clear() {
    this.tracks = [];
    this.dropped = [];   // tracks lost less than reviveS ago, each with its droppedAt (this.clock)
    this.nextId = this.nextId || 1;
    this.lastTime = null;
    this.clock = 0;      // seconds of answers seen (real time when update() is given a clock)
  }

  // faces: the API's faces, boxes already in display pixels; now: the answer's time in ms
  // (performance.now()), for the box filter; scan: the answer's "full" or "regions" (live.js).
  // Returns the tracks to show.
  update(faces, now = null, scan = null) {
    const dtS = now !== null && this.lastTime !== null ? Math.max(1e-3, (now - this.lastTime) / 1000) : NOMINAL_FRAME_S;
    this.lastTime = now;
    this.dtS = dtS;
    this.clock += dtS;
    const pairs = [];
    faces.forEach((face, f) => this.tracks.forEach((track, t) => {
      const overlap = iou(face.box, track.box);
      if (overlap >= this.matchIou) pairs.push({ f, t, overlap });
    }));
    // Greedy best-overlap-first matching: plenty for the handful of faces in a webcam view.
    pairs.sort((p, q) => q.overlap - p.overlap);
    const usedFaces = new Set(), usedTracks = new Set();
    for (const { f, t } of pairs) {
      if (usedFaces.has(f) || usedTracks.has(t)) continue;
      usedFaces.add(f); usedTracks.add(t);
      this.observe(this.tracks[t], faces[f], scan);
    }
    this.tracks.forEach((track, t) => { if (!usedTracks.has(t)) track.missed += 1; });
    for (const track of this.tracks) {
      // Only a face that was shown can come back: a one-frame false positive is forgotten.
      if (track.missed > this.maxMissed && track.hits >= this.minHits) this.dropped.push({ track, droppedAt: this.clock });
    }
    this.tracks = this.tracks.filter((track) => track.missed <= this.maxMissed);
    this.dropped = this.dropped.filter((lost) => this.clock - lost.droppedAt <= this.reviveS);
    faces.forEach((face, f) => {
      if (usedFaces.has(f)) return;
      const track = this.revive(face.box) || { id: this.nextId++, history: [], expressions: [], hits: 0 };
      track.box = face.box;
      track.missed = 0;
      track.filters = Object.fromEntries(BOX_KEYS.map((key) => [key, new OneEuroFilter(this.boxMinCutoff, this.boxBeta)]));
      this.observe(track, face, scan);
      this.tracks.push(track);
    });
    return this.tracks.filter((track) => track.hits >= this.minHits);
  }

  // A face found again where a track was lost a moment ago (a look away, a hand before the face, a few
  // missed detections) continues that track: the same id (one person in a recording, not two) and its
  // age and gender readings, so the shown age does not start over from two frames. Its expression does
  // start over: the face may have changed it meanwhile. Returns null when no dropped track is there.
  revive(box) {
    let best = null, bestOverlap = this.matchIou;
    for (const lost of this.dropped) {
      const overlap = iou(box, lost.track.rawBox);
      if (overlap >= bestOverlap) [best, bestOverlap] = [lost, overlap];
    }
    if (!best) return null;
    this.dropped = this.dropped.filter((lost) => lost !== best);
    const track = best.track;
    track.expressions = [];
    track.smoothed = { ...track.smoothed, emotion: null };
    track.lastScan = null;
    return track;
  }

  observe(track, face, scan) {
    track.hits += 1;
    track.missed = 0;
    track.rawBox = face.box;
    track.frameAge = face.age;
    // A lone full scan between region scans only confirms a track: a whole-frame scan frames a face a
    // few pixels apart from a region scan (BlazeFace sees it at another input scale), and taking both
    // would shake a still face's box and reading every few frames. Two full scans in a row (the region
    // scan lost the face) are followed as usual.
    const confirmOnly = scan === "full" && track.lastScan === "regions";
    track.lastScan = scan;
    if (confirmOnly) return;
    // The drawn box: the detections through the One-Euro filter (steady at rest, quick in motion).
    track.box = Object.fromEntries(BOX_KEYS.map((key) => [key, track.filters[key].filter(face.box[key], this.dtS)]));
    track.history.push({ age: face.age, gender: { [face.gender.label]: face.gender.probability } });
    if (track.history.length > this.personWindow) track.history.shift();
    track.expressions.push(face.emotion.probabilities);
    if (track.expressions.length > this.window) track.expressions.shift();
    track.smoothed = smooth(track.history, track.expressions, track.smoothed, this.window);
  }
}

// The consensus: emotion voted over the last `windowSize` observations (`expressions`); age (a trimmed
// mean, robust to odd frames) and gender (voted) over the whole `history` (the person window). `shown`
// is the previous consensus, kept unless the new one clearly differs. When the history first reaches
// `windowSize`, the age shown since the first two frames is re-checked against half a step:
// the full AGE_STEP would hold an early guess up to 5 years off, and then jump.
function smooth(history, expressions, shown, windowSize) {
  const emotion = expressions.reduce((total, scores) => addScores(total, scores), {});
  const emotionLabel = votedLabel(emotion, expressions.length, shown && shown.emotion && shown.emotion.label);
  const n = history.length;
  const gender = history.reduce((total, obs) => addScores(total, obs.gender), {});
  const genderLabel = votedLabel(gender, n, shown && shown.gender.label);
  const ages = history.map((obs) => obs.age).sort((p, r) => p - r);
  // The mean of the middle half: as robust to odd frames as the median, and steadier when single
  // frames cluster on two values a few years apart (the median then jumps between the clusters).
  const quarter = Math.floor(n / 4);              // n - 2 * quarter >= 1: the middle is never empty
  const middle = ages.slice(quarter, n - quarter);
  const age = middle.reduce((sum, v) => sum + v, 0) / middle.length;
  const fillsWindow = shown && shown.personFrames < windowSize && n >= windowSize;
  const ageStep = fillsWindow ? AGE_STEP / 2 : AGE_STEP;
  // Also kept while the shown age is still within the middle half of the window's ages: single
  // frames of a still face can settle on two values years apart (live profile, few views), and the
  // consensus then flips between them although nothing changed.
  // Not when the window first fills: that re-check is what corrects an early guess.
  const low = quantile(ages, 0.25), high = quantile(ages, 0.75);
  const typical = shown && !fillsWindow && n >= windowSize && shown.age >= low && shown.age <= high;
  // And a move smaller than the window's own spread (its interquartile range) is noise, not news:
  // the readings of a still, swaying face drift by about that much as the window slides.
  const step = fillsWindow ? ageStep : Math.max(ageStep, high - low);
  return {
    age: shown && (Math.abs(age - shown.age) < step || typical) ? shown.age : Math.round(age),
    gender: { label: genderLabel, probability: (gender[genderLabel] || 0) / n },
    emotion: { label: emotionLabel, probability: (emotion[emotionLabel] || 0) / expressions.length },
    frames: expressions.length,     // observations behind the emotion
    personFrames: n,            // observations behind the age and gender
  };
}
