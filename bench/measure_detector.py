"""Pick the Haar cascade settings by measurement.

    python bench/measure_detector.py --data-dir ../shared/data/utkface

Each trial pastes one UTKFace val face (80-240 px wide) at a random place into a
640x480 scene from scikit-image (scenes with no faces), then runs the detector.
Reports, per setting: recall (the face found, IoU >= 0.3), false detections
per frame, and milliseconds per frame. Writes reports/detector.json.

    python bench/measure_detector.py --data-dir ../shared/data/utkface --live

measures instead the shipped settings on frames scaled the way live mode sends
them (--send-side) for several min_face values (the smallest face looked for,
as a share of the frame's shorter side); writes reports/detector_live.json.

    python bench/measure_detector.py --data-dir ../shared/data/utkface --detectors haar,blazeface

compares the app's detectors (haar, blazeface; or blazeface:short / blazeface:full for one
BlazeFace model alone) on the same frames, each frame run by every detector
in turn so that load changes hit all alike: photo-sized faces, small faces (--small-face-px) and
live-mode frames (--send-side, min_face 0.12); writes reports/detector_blazeface.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.pipeline.detect import HaarFaceDetector, HaarSettings  # noqa: E402
from app.pipeline.detect_blazeface import BlazeFaceDetector  # noqa: E402
from training.data_utk import list_items, read_rgb  # noqa: E402

SCENES = ["coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "brick", "grass", "gravel"]


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


def make_trials(data_dir: Path, n: int, seed: int = 0, face_px: tuple[int, int] = (80, 240)):
    import skimage.data
    rng = np.random.default_rng(seed)
    scenes = []
    for name in SCENES:
        img = getattr(skimage.data, name)()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        scenes.append(cv2.resize(img, (640, 480), interpolation=cv2.INTER_AREA))
    items = list_items(data_dir)["val"]
    trials = []
    for item in [items[i] for i in rng.choice(len(items), n, replace=False)]:
        frame = scenes[rng.integers(len(scenes))].copy()
        side = int(rng.integers(face_px[0], face_px[1] + 1))
        x, y = int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side))
        frame[y:y + side, x:x + side] = cv2.resize(read_rgb(data_dir, item), (side, side))
        trials.append((frame, (x, y, side, side)))
    return trials


def evaluate(settings: HaarSettings, trials, min_face: float = 0.0) -> dict:
    return evaluate_many({"haar": HaarFaceDetector(settings)}, trials, min_face)["haar"]


def evaluate_many(detectors: dict, trials, min_face: float = 0.0) -> dict:
    """{name: recall, false boxes per frame, median ms}: every frame goes through each detector in turn."""
    found, false, ms = dict.fromkeys(detectors, 0), dict.fromkeys(detectors, 0), {name: [] for name in detectors}
    for frame, truth in trials:
        for name, detector in detectors.items():
            t = time.perf_counter()
            boxes = detector.detect(frame, min_face)
            ms[name].append((time.perf_counter() - t) * 1000)
            hits = [b for b in boxes if iou(b, truth) >= 0.3]
            found[name] += bool(hits)
            false[name] += len(boxes) - len(hits[:1])
    return {name: {"recall": found[name] / len(trials), "false_per_frame": false[name] / len(trials),
                   "ms_median": float(np.median(ms[name]))} for name in detectors}


def make_detector(name: str):
    """haar (shipped settings), blazeface (both models, as shipped), blazeface:short or blazeface:full."""
    if name == "haar":
        return HaarFaceDetector()
    if name == "blazeface":
        return BlazeFaceDetector()
    if name.startswith("blazeface:"):
        return BlazeFaceDetector(tuple(name.split(":", 1)[1].split("+")))
    raise SystemExit(f"unknown detector {name!r}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--max-sides", default="640,480,320", help="longer sides of the image the cascade sees")
    p.add_argument("--out", type=Path, help="default: reports/detector.json (reports/detector_live.json with --live)")
    p.add_argument("--live", action="store_true", help="sweep min_face on frames scaled like live mode's")
    p.add_argument("--face-px", default="80,240", help="smallest,largest face side pasted into the 640x480 frame")
    p.add_argument("--settings", help="instead of the grid: max_side/scale_factor/min_neighbors,... "
                                      "e.g. 480/1.1/5,320/1.1/3 (the first is today's, the reference)")
    p.add_argument("--send-side", type=int, default=400, help="with --live: longer side of the frames sent")
    p.add_argument("--min-faces", default="0,0.08,0.1,0.12,0.15,0.2", help="with --live: min_face values")
    p.add_argument("--detectors", help="compare these detectors on the same frames, e.g. haar,blazeface "
                                       "(the first is the reference for time ratios)")
    p.add_argument("--small-face-px", default="32,80", help="with --detectors: the small-face frames' face sides")
    args = p.parse_args()
    face_px = tuple(int(v) for v in args.face_px.split(","))
    cv2.setNumThreads(1)          # per-frame cost on one core, as a gunicorn worker sees it
    if args.detectors:
        return measure_detectors(args, face_px)
    trials = make_trials(args.data_dir, args.trials, face_px=face_px)
    if args.live:
        return measure_live(args, trials)
    if args.settings:
        return measure_settings(args, trials, face_px)
    rows = []
    for max_side in (int(v) for v in args.max_sides.split(",")):
        for scale_factor in (1.1, 1.2):
            for min_neighbors in (3, 5):
                s = HaarSettings(scale_factor, min_neighbors, min_size=24, max_side=max_side)
                r = {"max_side": max_side, "scale_factor": scale_factor, "min_neighbors": min_neighbors,
                     **evaluate(s, trials)}
                rows.append(r)
                print(json.dumps(r), flush=True)
    write_report(args.out or Path("reports/detector.json"),
                 {"trials": args.trials, "frame": "640x480", "face_px": [80, 240], "rows": rows})


def measure_settings(args, trials, face_px) -> None:
    """The given settings on the same trials, one after the other (time_vs_first: ratio to the first)."""
    settings = []
    for spec in args.settings.split(","):
        max_side, scale_factor, min_neighbors = spec.split("/")
        settings.append(HaarSettings(float(scale_factor), int(min_neighbors), min_size=24, max_side=int(max_side)))
    results = [evaluate(s, trials) for s in settings]
    rows = [{"max_side": s.max_side, "scale_factor": s.scale_factor, "min_neighbors": s.min_neighbors,
             "smallest_face_px_in_frame": round(s.min_size * 640 / min(640, s.max_side)), **r,
             "time_vs_first": round(r["ms_median"] / results[0]["ms_median"], 3)} for s, r in zip(settings, results)]
    for r in rows:
        print(json.dumps(r), flush=True)
    write_report(args.out or Path("reports/detector_schedules.json"),
                 {"trials": args.trials, "frame": "640x480", "face_px": list(face_px), "reference": "first row (today's)",
                  "load_average": list(__import__("os").getloadavg()), "rows": rows})


def live_frames(trials, send_side: int):
    """Frames (and true boxes) downscaled to the longer side live mode sends."""
    scale = send_side / 640
    return [(cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
             tuple(round(v * scale) for v in truth)) for frame, truth in trials]


def measure_detectors(args, face_px) -> None:
    """Each named detector on the same frames: photo faces, small faces, live-sized frames."""
    names = args.detectors.split(",")
    detectors = {name: make_detector(name) for name in names}
    small_px = tuple(int(v) for v in args.small_face_px.split(","))
    photo = make_trials(args.data_dir, args.trials, face_px=face_px)
    sets = [("photo", f"640x480, faces {face_px[0]}-{face_px[1]} px", photo, 0.0),
            ("small_faces", f"640x480, faces {small_px[0]}-{small_px[1]} px",
             make_trials(args.data_dir, args.trials, seed=1, face_px=small_px), 0.0),
            ("live", f"the photo frames scaled to {args.send_side} px wide, min_face 0.12",
             live_frames(photo, args.send_side), 0.12)]
    rows = []
    for key, frames, trials, min_face in sets:
        results = evaluate_many(detectors, trials, min_face)
        reference = results[names[0]]["ms_median"]
        for name in names:
            row = {"frames": key, "detector": name, **results[name],
                   "time_vs_first": round(results[name]["ms_median"] / reference, 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    write_report(args.out or Path("reports/detector_blazeface.json"),
                 {"trials_per_set": args.trials, "sets": {key: frames for key, frames, _, _ in sets},
                  "found": "a box with IoU >= 0.3 against the pasted face; false: every other box",
                  "threads": "one (OpenCV and LiteRT), detectors alternating frame by frame",
                  "reference": names[0], "load_average": list(__import__("os").getloadavg()), "rows": rows})


def measure_live(args, trials) -> None:
    """Shipped settings, frames downscaled to the live send size, a sweep over min_face."""
    scale = args.send_side / 640
    small = live_frames(trials, args.send_side)
    rows = []
    for min_face in (float(v) for v in args.min_faces.split(",")):
        r = {"min_face": min_face, **evaluate(HaarSettings(), small, min_face)}
        rows.append(r)
        print(json.dumps(r), flush=True)
    write_report(args.out or Path("reports/detector_live.json"),
                 {"trials": args.trials, "frame": f"640x480 scaled to {args.send_side}x{round(480 * scale)}",
                  "face_share_of_frame_height": [80 / 480, 240 / 480], "settings": vars(HaarSettings()),
                  "load_average": list(__import__("os").getloadavg()), "rows": rows})


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
