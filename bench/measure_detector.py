"""Pick the Haar cascade settings by measurement.

    python bench/measure_detector.py --data-dir ../shared/data/utkface

Each trial pastes one UTKFace val face (80-240 px wide) at a random place into a
640x480 scene from scikit-image (scenes with no faces), then runs the detector.
Reports, per setting: recall (the face found, IoU >= 0.3), false detections
per frame, and milliseconds per frame. Writes reports/detector.json.
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


def make_trials(data_dir: Path, n: int, seed: int = 0):
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
        side = int(rng.integers(80, 241))
        x, y = int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side))
        frame[y:y + side, x:x + side] = cv2.resize(read_rgb(data_dir, item), (side, side))
        trials.append((frame, (x, y, side, side)))
    return trials


def evaluate(settings: HaarSettings, trials) -> dict:
    detector = HaarFaceDetector(settings)
    found, false, ms = 0, 0, []
    for frame, truth in trials:
        t = time.perf_counter()
        boxes = detector.detect(frame)
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
    p.add_argument("--out", type=Path, default=Path("reports/detector.json"))
    args = p.parse_args()
    trials = make_trials(args.data_dir, args.trials)
    rows = []
    cv2.setNumThreads(1)          # per-frame cost on one core, as a gunicorn worker sees it
    for max_side in (int(v) for v in args.max_sides.split(",")):
        for scale_factor in (1.1, 1.2):
            for min_neighbors in (3, 5):
                s = HaarSettings(scale_factor, min_neighbors, min_size=24, max_side=max_side)
                r = {"max_side": max_side, "scale_factor": scale_factor, "min_neighbors": min_neighbors,
                     **evaluate(s, trials)}
                rows.append(r)
                print(json.dumps(r), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"trials": args.trials, "frame": "640x480", "face_px": [80, 240],
                                    "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
