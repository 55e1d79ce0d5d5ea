"""How live mode should look for faces: each way of detecting, on what live mode sends.

UTKFace val faces (validation split only) pasted at a random size (12-67% of the frame height, live
mode's min_face and up) and place into 400x300 frames of a random grey (what live.js sends), JPEG q80.
For each way: the share of faces found (a box whose centre lies within 30% of the face's side of the
face's centre) and the median time per frame, one thread:

  blazeface full          BlazeFace detect() as shipped: both models and, for small faces, tiles
  blazeface full, no tiles  the same without the tiles
  blazeface regions       detect_in_regions() with a hint where a tracker one frame behind may have
                          the face: the detector's own full-scan box shifted by up to 15% of its
                          side and scaled 0.8-1.2x (found: the share of the faces the full scan found)
  haar full / haar regions  the cascade as shipped (two passes) and its region scan, hinted alike

    python bench/measure_live_detect.py --data-dir ../shared/data/utkface [--faces 300]

Writes reports/live_detect.json. Not a test: times depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.pipeline.detect import HaarFaceDetector  # noqa: E402
from app.pipeline.detect_blazeface import BlazeFaceDetector  # noqa: E402
from training.data_utk import list_items, read_rgb  # noqa: E402

WIDTH, HEIGHT = 400, 300
MIN_FACE = 0.12          # app/settings.py VISAGE_LIVE_MIN_FACE


def scene(chip: np.ndarray, rng: random.Random) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(frame as live.js sends it, (face centre x, y, side)): the chip pasted at a random size and place."""
    side = rng.randint(int(MIN_FACE * HEIGHT / 0.6) + 1, 200)    # the face is about 60% of a chip
    frame = np.full((HEIGHT, WIDTH, 3), rng.randint(60, 200), np.uint8)
    x, y = rng.randint(0, WIDTH - side), rng.randint(0, HEIGHT - side)
    frame[y:y + side, x:x + side] = cv2.resize(chip, (side, side), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), (x + side / 2, y + side / 2, 0.6 * side)


def hint_for(box, rng: random.Random) -> tuple[int, int, int, int]:
    """Where a tracker one frame behind may have the face the detector boxed as `box`."""
    x, y, w, h = box
    side = max(w, h)
    s = side * rng.uniform(0.8, 1.2)
    cx, cy = x + w / 2 + side * rng.uniform(-0.15, 0.15), y + h / 2 + side * rng.uniform(-0.15, 0.15)
    return int(cx - s / 2), int(cy - s / 2), int(s), int(s)


def found(boxes, face) -> bool:
    cx, cy, side = face
    return any(abs(x + w / 2 - cx) < 0.3 * side and abs(y + h / 2 - cy) < 0.3 * side for x, y, w, h in boxes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--faces", type=int, default=300, help="val faces drawn (seeded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("reports/live_detect.json"))
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    rng = random.Random(args.seed)
    items = rng.sample(list_items(args.data_dir)["val"], args.faces)
    blaze, blaze_no_tiles, haar = BlazeFaceDetector(), BlazeFaceDetector(tiles=False), HaarFaceDetector()
    full = {"blazeface": lambda f: blaze.detect(f, MIN_FACE), "haar": lambda f: haar.detect(f, MIN_FACE)}
    regions = {"blazeface": lambda f, h: blaze.detect_in_regions(f, [h], MIN_FACE),
               "haar": lambda f, h: haar.detect_in_regions(f, [h], MIN_FACE)}
    ways = ["blazeface full", "blazeface full, no tiles", "blazeface regions", "haar full", "haar regions"]
    hits = {name: 0 for name in ways}
    tries = {name: 0 for name in ways}
    times = {name: [] for name in ways}

    def timed(name, call, face):
        t0 = time.perf_counter()
        boxes = call()
        times[name].append((time.perf_counter() - t0) * 1000)
        tries[name] += 1
        hits[name] += found(boxes, face)
        return boxes

    load_before = os.getloadavg()
    for item in items:
        frame, face = scene(read_rgb(args.data_dir, item), rng)
        timed("blazeface full, no tiles", lambda: blaze_no_tiles.detect(frame, MIN_FACE), face)
        for detector in ("blazeface", "haar"):     # interleaved: every way sees the same load
            boxes = timed(f"{detector} full", lambda: full[detector](frame), face)
            mine = [b for b in boxes if found([b], face)]
            if mine:
                hint = hint_for(mine[0], rng)
                timed(f"{detector} regions", lambda: regions[detector](frame, hint), face)
    report = {"split": "val", "faces": len(items), "frame": f"{WIDTH}x{HEIGHT} JPEG q80", "min_face": MIN_FACE,
              "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in os.getloadavg()],
              "ways": {name: {"found": round(hits[name] / max(1, tries[name]), 4), "of": tries[name],
                              "median_ms": round(statistics.median(times[name]), 2),
                              "p90_ms": round(float(np.percentile(times[name], 90)), 2)} for name in ways}}
    for name, r in report["ways"].items():
        print(f"{name:26s} found {r['found']:.1%} of {r['of']}  median {r['median_ms']:.1f} ms  p90 {r['p90_ms']:.1f} ms")
    print(f"load average before {report['load_before']}, after {report['load_after']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
