"""Fit BlazeFace's box → Haar's box mapping, then score the app path's age and gender with each detector.

    python bench/detector_mapping.py --data-dir ../shared/data/utkface

The age, gender and emotion models were trained on faces cut around Haar boxes (training.common.face_in_frame:
a UTKFace chip set in a frame of its own edge pixels). So, on UTKFace val chips framed that way:

1. fit: for faces both detectors find, BlazeFace's raw box (each model alone, no tiles) against Haar's:
   median side ratio and centre shift (shares of BlazeFace's side) — the numbers in
   app/pipeline/detect_blazeface.py MODELS; then the same with wider frames (--check-pads), where the
   face is smaller in the networks' input, to see whether one mapping fits all sizes;
2. app path: every other val chip through the app's own predictor (accurate profile) with the largest box of
   each detector: haar, blazeface as shipped (mapped to Haar's frame) and blazeface unmapped; age MAE and
   gender accuracy over the faces each finds, and over the faces all of them find.

Validation chips only (the test split is not read). Writes reports/detector_blazeface_mapping.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.pipeline.detect import HaarFaceDetector  # noqa: E402
from app.pipeline.detect_blazeface import MODELS, BlazeFaceDetector  # noqa: E402
from app.pipeline.predict import load_predictor  # noqa: E402
from training.common import CONTEXT_PAD, framed  # noqa: E402
from training.data_utk import list_items, read_rgb  # noqa: E402


def fit(images: list[np.ndarray]) -> dict:
    haar = HaarFaceDetector()
    out = {}
    for name in MODELS:
        blaze = BlazeFaceDetector((name,), haar_frame=False, tiles=False)
        rows, found_blaze, input_px = [], 0, []
        for image in images:
            h = haar.detect(image)
            b = blaze.detect(image)
            found_blaze += bool(b)
            if not h or not b:
                continue
            (hx, hy, hw, hh), (bx, by, bw, bh) = h[0], b[0]
            side = np.sqrt(bw * bh)
            input_px.append(side * MODELS[name].side / max(image.shape[:2]))
            rows.append((hw / side, (hx + hw / 2 - bx - bw / 2) / side, (hy + hh / 2 - by - bh / 2) / side))
        rows = np.array(rows)
        median = np.median(rows, 0)
        out[name] = {"faces_both_found": len(rows), "found_by_blazeface_model": found_blaze,
                     "median_face_px_at_input": round(float(np.median(input_px)), 1),
                     "haar_scale": round(float(median[0]), 3), "haar_dx": round(float(median[1]), 3),
                     "haar_dy": round(float(median[2]), 3),
                     "spread_iqr": [round(float(v), 3) for v in np.subtract(*np.percentile(rows, [75, 25], 0))],
                     "shipped": {k: getattr(MODELS[name], k) for k in ("haar_scale", "haar_dx", "haar_dy")}}
        print(name, json.dumps(out[name]), flush=True)
    return out


def app_path(images, ages, genders, models_dir: Path) -> dict:
    predictor = load_predictor(models_dir)
    detectors = {"haar": HaarFaceDetector(), "blazeface": BlazeFaceDetector(),
                 "blazeface_unmapped": BlazeFaceDetector(haar_frame=False)}
    pred = {name: [] for name in detectors}       # (age, p_female) or None per image
    for image in images:
        for name, detector in detectors.items():
            boxes = detector.detect(image)
            if not boxes:
                pred[name].append(None)
                continue
            face = predictor.predict(predictor.prepare(image, boxes[:1]), "accurate")[0]
            female = face["gender"]["label"] == "female"
            pred[name].append((face["age"], female))
    all_found = [i for i in range(len(images)) if all(pred[n][i] is not None for n in detectors)]

    def scores(name, idx):
        a = np.array([pred[name][i][0] for i in idx])
        f = np.array([pred[name][i][1] for i in idx])
        return {"n": len(idx), "age_mae": round(float(np.abs(a - ages[idx]).mean()), 3),
                "gender_accuracy": round(float((f == (genders[idx] == 1)).mean()), 4)}

    out = {"images": len(images), "found_by_all": len(all_found)}
    for name in detectors:
        found = [i for i in range(len(images)) if pred[name][i] is not None]
        out[name] = {"found": len(found), "faces_it_finds": scores(name, found),
                     "faces_all_find": scores(name, all_found)}
        print(name, json.dumps(out[name]), flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--every", type=int, default=5, help="use every n-th val chip for the fit, the next ones for scoring")
    p.add_argument("--check-pads", default="0.8,1.5,2.5", help="wider frames for the size check (every 2nd fit chip)")
    p.add_argument("--out", type=Path, default=Path("reports/detector_blazeface_mapping.json"))
    args = p.parse_args()
    import cv2
    cv2.setNumThreads(1)
    items = list_items(args.data_dir)["val"]
    fit_items, score_items = items[::args.every], items[1::args.every]
    report = {"data": f"UTKFace val chips framed as training frames them (pad {CONTEXT_PAD}); "
                      f"fit on every {args.every}th from the first, scored on every {args.every}th from the second",
              "fit": fit([framed(read_rgb(args.data_dir, it)) for it in fit_items])}
    report["size_check"] = {}
    for pad in (float(v) for v in args.check_pads.split(",") if v):
        print("pad", pad, flush=True)
        report["size_check"][f"pad {pad}"] = fit([framed(read_rgb(args.data_dir, it), pad) for it in fit_items[::2]])
    report["app_path"] = app_path([framed(read_rgb(args.data_dir, it)) for it in score_items],
                                  np.array([it.age for it in score_items], float),
                                  np.array([it.gender for it in score_items]), args.models_dir)
    report["load_average"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
