"""Two model folders through the same pipeline, in the same run: what a model change costs per frame.

    python bench/compare_model_versions.py OLD_MODELS_DIR [NEW_MODELS_DIR=models] [--blocks 12] [--block 20]

One 640x480 frame (the astronaut's portrait set in the middle, JPEG q80) through run_pipeline as the
API runs it (decode, BlazeFace, preprocess, predict), with each folder's models, in both profiles.
After a warm-up the folders take turns in blocks of --block frames (the order rotates each block), so
both see the same machine load. Prints and writes median milliseconds per frame (all steps, and the
predict step alone) and new/old ratios. One thread per model call, as `make run` serves.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "VISAGE_OPENCV_THREADS"):
    os.environ.setdefault(var, "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from app.pipeline.analyze import run_pipeline  # noqa: E402
from app.pipeline.predict import PROFILES, load_predictor  # noqa: E402

LIMITS = {"max_bytes": 10 * 2**20, "max_pixels": 40_000_000}


def frame_jpeg() -> bytes:
    from skimage import data
    face = cv2.resize(data.astronaut(), (480, 480), interpolation=cv2.INTER_AREA)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 80:560] = face
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return jpeg.tobytes()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path, nargs="?", default=ROOT / "models")
    p.add_argument("--blocks", type=int, default=12)
    p.add_argument("--block", type=int, default=20)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "model_versions_speed.json")
    args = p.parse_args(argv)
    jpeg = frame_jpeg()
    folders = {"old": args.old, "new": args.new}
    predictors = {name: load_predictor(folder) for name, folder in folders.items()}
    setups = [(name, profile) for name in folders for profile in PROFILES]
    times = {setup: {"total": [], "predict": []} for setup in setups}
    answers = {}
    for name, profile in setups:                      # warm-up, and what each answers
        for _ in range(5):
            answer = run_pipeline(jpeg, predictors[name], profile=profile, **LIMITS)[0]
        answers[f"{name}, {profile}"] = [
            {"age": face["age"], "gender": face["gender"]["label"], "emotion": face["emotion"]["label"],
             "emotion_probability": max(face["emotion"]["probabilities"].values())} for face in answer["faces"]]
    for block in range(args.blocks):
        for setup in setups[block % len(setups):] + setups[:block % len(setups)]:
            for _ in range(args.block):
                timing = run_pipeline(jpeg, predictors[setup[0]], profile=setup[1], **LIMITS)[0]["timing_ms"]
                times[setup]["total"].append(timing["total"])
                times[setup]["predict"].append(timing["predict"])
    medians = {f"{name}, {profile}": {step: round(statistics.median(v), 2) for step, v in times[(name, profile)].items()}
               for name, profile in setups}
    ratios = {profile: {step: round(medians[f"new, {profile}"][step] / medians[f"old, {profile}"][step], 3)
                        for step in ("total", "predict")} for profile in PROFILES}
    report = {"folders": {k: str(v) for k, v in folders.items()},
              "versions": {name: dict(predictors[name].versions) for name in folders},
              "frames_per_setup": args.blocks * args.block, "median_ms": medians, "new_vs_old": ratios,
              "answers": answers, "load_average": os.getloadavg()}
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
