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
    detector = HaarFaceDetector(settings)
    found, false, ms = 0, 0, []
    for frame, truth in trials:
        t = time.perf_counter()
        boxes = detector.detect(frame, min_face)
        ms.append((time.perf_counter() - t) * 1000)
        hits = [b for b in boxes if iou(b, truth) >= 0.3]
        found += bool(hits)
        false += len(boxes) - len(hits[:1])
    return {"recall": found / len(trials), "false_per_frame": false / len(trials), "ms_median": float(np.median(ms))}


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
    args = p.parse_args()
    face_px = tuple(int(v) for v in args.face_px.split(","))
    trials = make_trials(args.data_dir, args.trials, face_px=face_px)
    cv2.setNumThreads(1)          # per-frame cost on one core, as a gunicorn worker sees it
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


def measure_live(args, trials) -> None:
    """Shipped settings, frames downscaled to the live send size, a sweep over min_face."""
    scale = args.send_side / 640
    small = [(cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
              tuple(round(v * scale) for v in truth)) for frame, truth in trials]
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
