"""What the live profile costs: per-frame spread of the answers on a still face, and time, beside accurate.

    python bench/measure_profiles.py [--frames 120] [--out reports/profiles.json]

Two still-face inputs, each run through both profiles in the same process, interleaved:
- box jitter: the astronaut webcam frame (tests/browser/make_clip.py, 640x480) sent as live.js sends
  it (400 px JPEG), its Haar box moved by random whole pixels (x, y, size each in -3..3);
- clip: the browser tests' fake-camera clip (a 2 px sway), each frame through the whole pipeline
  (decode, Haar with live mode's min_face, preprocess, predict) as POST /api/v1/analyze runs it.
Reports age s.d., the share of frames whose gender / emotion label differs from the majority, the
same after a 15-frame running median / vote (what the browser's tracker shows), and milliseconds.
Real models from models/ (or --models-dir). Timings depend on the machine's load: compare ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from app.pipeline.analyze import run_pipeline  # noqa: E402
from app.pipeline.detect import HaarFaceDetector  # noqa: E402
from app.pipeline.predict import PROFILES, load_predictor  # noqa: E402
from tests.browser.make_clip import face_frame, jittered  # noqa: E402

from app.webcam import LIVE_SMOOTHING_WINDOW as WINDOW  # noqa: E402  (the tracker's window)

SEND_SIDE, JPEG_QUALITY, MIN_FACE = 400, 80, 0.12   # what live mode sends (app/webcam.py)
# The four faces are 50 px, 0.10 of the frame's shorter side: ask for faces down to 0.08 of it. (A
# smaller min_face asks for faces down to that size, which makes BlazeFace's tiles smaller and more
# numerous: 0.05 = 24-px faces, 20 tiles per model, about 2.5x the detection time.)
FOUR_FACES_MIN_FACE = 0.08
LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def as_sent(frame: np.ndarray) -> bytes:
    scale = SEND_SIDE / max(frame.shape[:2])
    return as_jpeg(cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), JPEG_QUALITY)


def camera_frames() -> dict[str, tuple[np.ndarray, float]]:
    """Issue #13's in-process frames (also bench/compare_fer.py): name -> (640x480 RGB picture, min_face).
    four_faces = the one-face frame tiled 2x2 at half size."""
    one = face_frame()
    small = cv2.resize(one, (320, 240), interpolation=cv2.INTER_AREA)
    four = np.concatenate([np.concatenate([small, small], 1)] * 2, 0)
    return {"one_face": (one, MIN_FACE), "four_faces": (four, FOUR_FACES_MIN_FACE)}


def as_jpeg(picture: np.ndarray, quality: int = 80) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return jpeg.tobytes()


def frame_setups(data: bytes, predictor, min_face: float) -> dict[str, dict]:
    """run_pipeline options per setup; live mode's region hints are the boxes a full scan finds."""
    boxes = [[f["box"][k] for k in "xywh"] for f in
             run_pipeline(data, predictor, min_face=min_face, **LIMITS)[0]["faces"]]
    return {"accurate, full scan": {}, "live, full scan": {"profile": "live"},
            "live, regions": {"profile": "live", "regions": boxes}}


def spread(faces: list[dict]) -> dict:
    ages = [f["age"] for f in faces]
    genders = [f["gender"]["label"] for f in faces]
    emotions = [f["emotion"]["label"] for f in faces]

    def off_majority(labels):
        return round(1 - Counter(labels).most_common(1)[0][1] / len(labels), 3)

    def changes(labels):
        return round(sum(a != b for a, b in zip(labels, labels[1:])) / max(1, len(labels) - 1), 3)
    # A running median / majority over the tracker's window, from the first full window on.
    smoothed_age = [statistics.median(ages[i - WINDOW:i]) for i in range(WINDOW, len(ages) + 1)]
    smoothed_gender = [Counter(genders[i - WINDOW:i]).most_common(1)[0][0] for i in range(WINDOW, len(ages) + 1)]
    smoothed_emotion = [Counter(emotions[i - WINDOW:i]).most_common(1)[0][0] for i in range(WINDOW, len(ages) + 1)]
    return {"frames": len(faces), "age_mean": round(statistics.mean(ages), 2),
            "age_sd": round(statistics.pstdev(ages), 2),
            "gender_majority": Counter(genders).most_common(1)[0][0], "gender_off_majority": off_majority(genders),
            "gender_frame_to_frame_changes": changes(genders),
            "emotion_majority": Counter(emotions).most_common(1)[0][0], "emotion_off_majority": off_majority(emotions),
            "emotion_frame_to_frame_changes": changes(emotions),
            f"age_sd_after_{WINDOW}_frame_median": round(statistics.pstdev(smoothed_age), 2),
            f"gender_changes_after_{WINDOW}_frame_vote": changes(smoothed_gender),
            f"emotion_changes_after_{WINDOW}_frame_vote": changes(smoothed_emotion)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "profiles.json")
    args = p.parse_args(argv)
    predictor = load_predictor(args.models_dir)
    rng = np.random.default_rng(0)

    # Box jitter: one decoded 400 px frame, its Haar box moved.
    sent = as_sent(face_frame())
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(sent, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    x, y, w, h = HaarFaceDetector().detect(image, MIN_FACE)[0]
    jitters = rng.integers(-3, 4, size=(args.frames, 3))
    boxes = [(x + dx, y + dy, w + dw, h + dw) for dx, dy, dw in jitters]
    jitter = {profile: {"faces": [], "ms": []} for profile in PROFILES}
    for box in boxes:
        for profile in PROFILES:           # interleaved: both see the same load
            t0 = time.perf_counter()
            face = predictor.predict(predictor.prepare(image, [box]), profile)[0]
            jitter[profile]["ms"].append((time.perf_counter() - t0) * 1000)
            jitter[profile]["faces"].append(face)

    # Clip: the browser tests' swaying frames through the whole pipeline.
    frames = [as_sent(f) for f in jittered(face_frame(), args.frames)]
    clip = {profile: {"faces": [], "ms": [], "detect_ms": [], "faces_per_frame": []} for profile in PROFILES}
    for data in frames:
        for profile in PROFILES:
            t0 = time.perf_counter()
            answer, _ = run_pipeline(data, predictor, min_face=MIN_FACE, profile=profile, **LIMITS)
            clip[profile]["ms"].append((time.perf_counter() - t0) * 1000)
            clip[profile]["detect_ms"].append(answer["timing_ms"]["detect"])
            clip[profile]["faces_per_frame"].append(len(answer["faces"]))
            if answer["faces"]:
                clip[profile]["faces"].append(answer["faces"][0])

    # One 640x480 camera frame in-process (issue #13's comparison with `fer`), one face and four faces.
    frame_ms = {}
    for name, (picture, min_face) in camera_frames().items():
        data = as_jpeg(picture)
        setups = frame_setups(data, predictor, min_face)
        times = {setup: [] for setup in setups}
        found = {}
        for _ in range(max(10, args.frames // 4)):
            for setup, options in setups.items():
                t0 = time.perf_counter()
                answer, _ = run_pipeline(data, predictor, min_face=min_face, **options, **LIMITS)
                times[setup].append((time.perf_counter() - t0) * 1000)
                found[setup] = len(answer["faces"])
        frame_ms[name] = {setup: {"median_ms": round(statistics.median(t), 2), "faces": found[setup]}
                          for setup, t in times.items()}

    def summary(runs, extra=()):
        out = {}
        for profile, r in runs.items():
            out[profile] = {**spread(r["faces"]), "median_ms": round(statistics.median(r["ms"]), 2),
                            **{f"median_{k}": round(statistics.median(r[k]), 2) for k in extra}}
        out["live_time_ratio"] = round(out["live"]["median_ms"] / out["accurate"]["median_ms"], 3)
        return out

    report = {
        "command": "python bench/measure_profiles.py " + " ".join(argv or sys.argv[1:]),
        "models": dict(predictor.versions),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()], "cpu_count": os.cpu_count(),
        "box_jitter": {"what": f"Haar box on the 400 px astronaut webcam frame moved by whole pixels, x/y/size "
                               f"each uniform in -3..3; prepare + predict, one face", "box": [x, y, w, h],
                       **summary(jitter)},
        "clip": {"what": "tests/browser/make_clip.py frames (2 px sway), 400 px JPEG q80, whole pipeline "
                         f"(min_face {MIN_FACE}); ms = decode + detect + preprocess + predict",
                 **summary(clip, extra=("detect_ms", "faces_per_frame"))},
        "frame_640x480": {"what": "one 640x480 JPEG (q80) in-process through run_pipeline (decode, detect, "
                                  f"preprocess, predict); four_faces = the frame tiled 2x2 at half size, min_face {FOUR_FACES_MIN_FACE}",
                          **frame_ms},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
