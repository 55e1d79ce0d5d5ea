"""Would Haar's faces be read better turned upright by eyes found in the crop? The cascade gives no
eye key points; OpenCV's eye cascade (haarcascade_eye.xml) could find them inside each face box.

    python bench/haar_eyes.py --data-dir ../shared/data/utkface [--limit 800]

The scenes of bench/scenes_by_group.py (same generator and seed), detector=haar in-process; for the
faces it finds: gender accuracy and age MAE read as found (what ships) and turned by the eye cascade's
roll (when it finds one eye in each half of the face's upper part), upright against turned faces, and
how often the eyes are found. Validation split only. Writes reports/haar_eyes.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.scenes_by_group import backgrounds, is_the_face, scene  # noqa: E402
from training.data_utk import list_items, read_rgb  # noqa: E402

EYES = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")


def eye_cascade_roll(image: np.ndarray, box) -> float | None:
    """The roll (preprocess.eye_roll's sign) from the largest eye found in each half of the box's
    upper 60%, or None when either half has none."""
    from app.pipeline.preprocess import crop_face, eye_roll, to_gray
    x, y, w, h = box
    gray = to_gray(crop_face(image, box, 0.0))[: int(0.6 * h)]
    found = EYES.detectMultiScale(gray, 1.1, 3, minSize=(max(8, w // 10),) * 2, maxSize=(w // 2,) * 2)
    halves = [[e for e in found if (e[0] + e[2] / 2 < w / 2) == left] for left in (True, False)]
    if not all(halves):
        return None
    (lx, ly, lw, lh), (rx, ry, rw, rh) = (max(h_, key=lambda e: e[2]) for h_ in halves)
    return eye_roll((lx + lw / 2, ly + lh / 2), (rx + rw / 2, ry + rh / 2))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--limit", type=int, default=800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("reports/haar_eyes.json"))
    args = p.parse_args()
    cv2.setNumThreads(1)
    from app.pipeline.analyze import locate_faces
    from app.pipeline.predict import load_predictor
    predictor = load_predictor(args.models_dir)
    rng = np.random.default_rng(args.seed)
    items = list_items(args.data_dir)["val"]
    order = rng.permutation(len(items))
    items = [items[i] for i in order[:args.limit]]
    pictures = backgrounds()
    rows = []
    for i, item in enumerate(items):
        turn = i % 2 == 1
        image, truth = scene(read_rgb(args.data_dir, item), pictures[int(rng.integers(len(pictures)))], rng, turn)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        image = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        boxes, _ = locate_faces(image, "haar")
        hit = next((b for b in boxes if is_the_face(dict(zip("xywh", b)), truth)), None)
        if hit is None:
            continue
        roll = eye_cascade_roll(image, hit)
        row = {"pose": "turned" if turn else "upright", "age": item.age,
               "gender": "female" if item.gender == 1 else "male", "eyes_found": roll is not None,
               "roll_error": None if roll is None else abs(roll - truth["roll"])}
        for mode, r in (("as found", 0.0), ("turned by the eye cascade", roll or 0.0)):
            out = predictor.predict(predictor.prepare(image, [hit], [r]), "accurate")[0]
            row[mode] = (out["age"], out["gender"]["label"])
        rows.append(row)
    report = {"split": "val", "scenes": len(items), "faces_found_by_haar": len(rows), "results": {}}
    for pose in ("upright", "turned"):
        sel = [r for r in rows if r["pose"] == pose]
        errors = [r["roll_error"] for r in sel if r["roll_error"] is not None]
        entry = {"n": len(sel), "eyes_found": round(float(np.mean([r["eyes_found"] for r in sel])), 4),
                 "roll_error_deg_median": round(float(np.median(errors)), 2) if errors else None}
        for mode in ("as found", "turned by the eye cascade"):
            entry[mode] = {"gender_accuracy": round(float(np.mean([r[mode][1] == r["gender"] for r in sel])), 4),
                           "age_mae": round(float(np.mean([abs(r[mode][0] - r["age"]) for r in sel])), 2)}
        report["results"][pose] = entry
    print(json.dumps(report, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
