"""Where a moved face's unsteady age and gender come from: the detector's box or the network.

    python bench/steadiness_sources.py --data-dir ../shared/data/utkface [--faces 150]

The "moved" frames of bench/steadiness.py (UTKFace val faces at 120 px on a grey 640x480 scene, moved by
0-2 px and scaled by -2/0/+2 %, 9 frames a face; the test split is not read), each face read five ways
with the app's models and accurate views:

* **served**: the app's default path as it is (BlazeFace box and roll, cut by app.pipeline.preprocess);
* **exact box**: the first frame's box and roll, moved and scaled exactly as the face was: what is
  left is the network's answer to the same face cut a pixel apart (boxes still whole pixels);
* **refined box**: the detected box looked at again by BlazeFace's short-range model on a crop of twice
  its side (the face at half of the model's 128-px input) and on that crop's mirror, the two averaged;
* **3 box sizes**: the served box at 0.97, 1.00 and 1.03 of its side, the three answers averaged
  (three times the model time);
* **refined box, 3 sizes**: both.

Per face: the spread (std) of the age over the frames and whether the gender label changes; also how
far the detected boxes stray from the exact ones. Writes reports/steadiness_sources.json.
Targets (issue 24): median spread <= 0.5 years, p90 <= 1.0, gender changing on <= 2 % of faces.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from steadiness import FRAMES, backgrounds, scene  # noqa: E402  (after the path insert)

READINGS = ("served", "exact box", "refined box", "3 box sizes", "refined box, 3 sizes")
SIZES = (0.97, 1.0, 1.03)
REFINE_CROP = 2.0        # the refining crop's side, in box sides


def refined_row(net, image: np.ndarray, row: np.ndarray) -> np.ndarray:
    """A detected face row (Haar-frame corners, then eyes) looked at again by one BlazeFace net on a
    square crop of REFINE_CROP box sides and on its mirror; the two rows averaged, in image pixels."""
    import cv2
    from app.pipeline.detect_blazeface import to_haar_frame, weighted_nms
    n = net.model.side
    cx, cy = (row[0] + row[2]) / 2, (row[1] + row[3]) / 2
    s = n / (REFINE_CROP * (row[2] - row[0]))
    to_crop = np.array([[s, 0, n / 2 - s * cx], [0, s, n / 2 - s * cy]], np.float32)
    crop = cv2.warpAffine(image, to_crop, (n, n), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    rows = []
    for mirrored in (False, True):
        found, scores = net(np.ascontiguousarray(crop[:, ::-1]) if mirrored else crop)
        if not len(scores):
            return row
        r = min((r for r, _ in weighted_nms(found, scores)),
                key=lambda r: np.hypot((r[0] + r[2]) / 2 - n / 2, (r[1] + r[3]) / 2 - n / 2))
        if mirrored:   # back to the crop's own side: x mirrored, and the two eyes swap places
            r = np.array([n - r[2], r[1], n - r[0], r[3], n - r[6], r[7], n - r[4], r[5]])
        rows.append(r)
    r = to_haar_frame(net.model, np.mean(rows, 0)[None])[0]
    r[0::2] = r[0::2] / s + cx - n / 2 / s
    r[1::2] = r[1::2] / s + cy - n / 2 / s
    return r


def resized(row: np.ndarray, k: float) -> np.ndarray:
    cx, cy, half = (row[0] + row[2]) / 2, (row[1] + row[3]) / 2, (row[2] - row[0]) * k / 2
    return np.concatenate([[cx - half, cy - half, cx + half, cy + half], row[4:]])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--faces", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("reports/steadiness_sources.json"))
    args = p.parse_args(argv)
    import cv2
    cv2.setNumThreads(1)
    from app import settings
    from app.pipeline.analyze import face_detector
    from app.pipeline.detect_blazeface import MODELS, BlazeNet, faces_with_rolls
    from app.pipeline.predict import load_predictor
    from training.data_utk import list_items, read_rgb

    predictor = load_predictor(settings.from_environment()["VISAGE_MODELS_DIR"])
    detector, short = face_detector("blazeface"), BlazeNet(MODELS["short"])

    def read(image: np.ndarray, rows: list[np.ndarray]) -> tuple[float, bool]:
        """Age and gender label of one face cut at each of `rows` (Haar-frame rows), answers averaged."""
        ages, females = [], []
        for row in rows:
            (box, roll), = faces_with_rolls([(row, 1.0)], image.shape[:2], 0.0)
            out = predictor.predict(predictor.prepare(image, [box], [roll]), "accurate")[0]
            ages.append(out["age"])
            g = out["gender"]
            females.append(g["probability"] if g["label"] == "female" else 1 - g["probability"])
        return float(np.mean(ages)), bool(np.mean(females) >= 0.5)

    rng = np.random.default_rng(args.seed)       # the same faces and places as bench/steadiness.py
    items = list_items(args.data_dir)["val"]
    items = [items[i] for i in sorted(rng.choice(len(items), min(args.faces, len(items)), replace=False))]
    gray = backgrounds(args.seed)["gray"]
    t0 = time.time()
    spreads, changes = {r: [] for r in READINGS}, {r: [] for r in READINGS}
    strays = []      # detected box against the exact one: centre x, y (px), side (share)
    for n, item in enumerate(items):
        chip = read_rgb(args.data_dir, item)
        cx, cy = rng.uniform(150, 640 - 150), rng.uniform(130, 480 - 130)
        reads, first, stray = {r: [] for r in READINGS}, None, []
        for dx, dy, s in FRAMES:
            frame, (x, y, w, h) = scene(gray, chip, 120 * s, cx + dx, cy + dy)
            rows = [r for r, _ in detector.raw_detect(frame)
                    if x <= (r[0] + r[2]) / 2 <= x + w and y <= (r[1] + r[3]) / 2 <= y + h]
            if not rows:
                continue
            row = max(rows, key=lambda r: r[2] - r[0])
            first = first or (cx + dx, cy + dy, s, row)
            # The first frame's row, moved and scaled about the face's centre exactly as the face was.
            fx, fy, fs, frow = first
            k = s / fs
            exact = np.concatenate([[cx + dx + (v - fx) * k if i % 2 == 0 else cy + dy + (v - fy) * k
                                     for i, v in enumerate(frow)]])
            stray.append([(row[0] + row[2] - exact[0] - exact[2]) / 2, (row[1] + row[3] - exact[1] - exact[3]) / 2,
                          (row[2] - row[0]) / (exact[2] - exact[0]) - 1])
            refined = refined_row(short, frame, row)
            reads["served"].append(read(frame, [row]))
            reads["exact box"].append(read(frame, [exact]))
            reads["refined box"].append(read(frame, [refined]))
            reads["3 box sizes"].append(read(frame, [resized(row, k) for k in SIZES]))
            reads["refined box, 3 sizes"].append(read(frame, [resized(refined, k) for k in SIZES]))
        if len(reads["served"]) >= 2:
            for r in READINGS:
                spreads[r].append(float(np.std([a for a, _ in reads[r]])))
                changes[r].append(len({f for _, f in reads[r]}) > 1)
            strays.append(np.std(stray, axis=0))
        if (n + 1) % 25 == 0:
            print(f"{n + 1}/{len(items)} faces, {time.time() - t0:.0f} s", flush=True)

    report = {"faces": len(items), "faces_read": len(spreads["served"]), "split": "val",
              "frames_per_face": len(FRAMES), "face_px": 120, "profile": "accurate",
              "models": dict(predictor.versions), "runtimes": {m.card.name: m.runtime for m in predictor.models},
              "readings": {r: {"age_spread_median": round(float(np.median(spreads[r])), 3),
                               "age_spread_p90": round(float(np.percentile(spreads[r], 90)), 3),
                               "gender_label_changes_share": round(float(np.mean(changes[r])), 4)}
                           for r in READINGS},
              "detected_box_against_exact_std_median": dict(zip(
                  ("centre_x_px", "centre_y_px", "side_share"), np.round(np.median(strays, axis=0), 4).tolist())),
              "seconds": round(time.time() - t0, 1)}
    for r in READINGS:
        print(f"{r:22s}", json.dumps(report["readings"][r]))
    print("detected box against the exact one (s.d. per face, median):", report["detected_box_against_exact_std_median"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
