"""Per-frame age spread on a still face, with and without turning faces upright (alignment).

    python bench/still_face_spread.py --data-dir ../shared/data/utkface [--faces 120 --frames 12]

UTKFace val faces pasted into 640x480 scenes as a webcam would show them (160 px, half of them turned
by 10-30 degrees of roll; bench/scenes_by_group.scene), each seen as FRAMES frames. Two kinds of frames:
- camera: the same scene with fresh sensor noise (Gaussian, s.d. 3 levels) and JPEG each frame;
  BlazeFace finds the box and roll anew every frame (its own jitter);
- box jitter: one detection, the box moved by up to +-2 px and scaled by up to +-5 % each frame
  (the roll kept).
Per face: the standard deviation of the age over its frames (live profile: one view and its mirror,
as live mode reads each frame), and of the box's centre and side (camera frames). Reported: the mean
over faces, for faces read as found (roll 0) and turned upright by their roll. Validation split only.
Writes reports/still_face_spread.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.scenes_by_group import backgrounds, scene  # noqa: E402
from training.data_utk import list_items, read_rgb  # noqa: E402

SIDE = 160
PROFILE = "live"


def camera_frame(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)


def jittered(box, rng: np.random.Generator) -> tuple[int, int, int, int]:
    x, y, w, h = box
    scale = rng.uniform(0.95, 1.05)
    side = int(round(w * scale))
    cx, cy = x + w / 2 + rng.integers(-2, 3), y + h / 2 + rng.integers(-2, 3)
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side, side


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--faces", type=int, default=120)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("reports/still_face_spread.json"))
    args = p.parse_args()
    cv2.setNumThreads(1)
    from app.pipeline.analyze import locate_faces
    from app.pipeline.predict import load_predictor
    predictor = load_predictor(args.models_dir)
    rng = np.random.default_rng(args.seed)
    items = list_items(args.data_dir)["val"]
    items = [items[i] for i in rng.permutation(len(items))[:args.faces]]
    pictures = backgrounds()

    def age(image, box, roll) -> float:
        return predictor.predict(predictor.prepare(image, [box], [roll]), PROFILE)[0]["age"]

    spreads = {f"{kind}, {pose}, {mode}": [] for kind in ("camera", "box jitter")
               for pose in ("upright", "turned") for mode in ("as found", "turned upright")}
    box_spread = {f"{pose}: {what}": [] for pose in ("upright", "turned") for what in ("centre", "side")}
    roll_spread = {"upright": [], "turned": []}
    for i, item in enumerate(items):
        pose = "turned" if i % 2 else "upright"
        face = cv2.resize(read_rgb(args.data_dir, item), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        image, truth = scene(face, pictures[int(rng.integers(len(pictures)))], rng, pose == "turned")
        frames = [camera_frame(image, rng) for _ in range(args.frames)]
        found = [locate_faces(f, "blazeface") for f in frames]
        if not all(boxes for boxes, _ in found):
            continue
        boxes = [b[0] for b, _ in found]
        rolls = [r[0] for _, r in found]
        centres = np.array([(x + w / 2, y + h / 2, w) for x, y, w, h in boxes])
        box_spread[f"{pose}: centre"].append(float(np.mean(centres.std(0)[:2])))
        box_spread[f"{pose}: side"].append(float(centres[:, 2].std()))
        roll_spread[pose].append(float(np.std(rolls)))
        moved = [jittered(boxes[0], rng) for _ in range(args.frames)]     # the same boxes for both modes
        for mode, turn in (("as found", False), ("turned upright", True)):
            ages = [age(f, b, r if turn else 0.0) for f, b, r in zip(frames, boxes, rolls)]
            spreads[f"camera, {pose}, {mode}"].append(float(np.std(ages)))
            ages = [age(frames[0], b, rolls[0] if turn else 0.0) for b in moved]
            spreads[f"box jitter, {pose}, {mode}"].append(float(np.std(ages)))
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(items)} faces", flush=True)
    report = {"split": "val", "faces": {k: len(v) for k, v in roll_spread.items()}, "frames_per_face": args.frames,
              "profile": PROFILE, "face_side_px": SIDE,
              "age_sd_years_mean_over_faces": {k: round(float(np.mean(v)), 3) for k, v in spreads.items() if v},
              "box_sd_px_mean_over_faces (camera frames)": {k: round(float(np.mean(v)), 3) for k, v in box_spread.items() if v},
              "roll_sd_deg_mean_over_faces (camera frames)": {k: round(float(np.mean(v)), 3) for k, v in roll_spread.items() if v}}
    print(json.dumps(report, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
