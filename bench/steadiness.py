"""How steady the age and gender estimates are when nothing about the face changes, through the app's path.

    python bench/steadiness.py --data-dir ../shared/data/utkface [--faces 150] [--detector blazeface]
        [--models-dir DIR] [--keras-float]

UTKFace val faces (a fixed sample; the test split is not read) are pasted into 640x480 scenes and sent
through `run_pipeline` with the app's default options (or --detector), as an upload would be:

* **moved**: each face at 120 px on one background, moved by 0-2 px and scaled by -2/0/+2 % (9 frames).
  Per face: the spread (std) of the age over the frames, and whether the gender label changes.
  Targets (issue 24): median spread <= 0.5 years, p90 <= 1.0, gender changing on <= 2 % of faces.
* **size and background**: the same faces at 64, 120 and 200 px on three backgrounds (plain gray, a
  photo, noise), one frame each: age MAE and gender accuracy per size and per background.
  Target: within 0.3 years and 1 point of one another.

Only frames in which a face is found near the pasted place count; the share found is reported.
Writes reports/steadiness_<detector>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAME_W, FRAME_H = 640, 480
SCALES = (0.98, 1.0, 1.02)
# (dx px, dy px, scale): every scale with no move and two moves of 1-2 px
FRAMES = [(dx, dy, s) for s in SCALES for dx, dy in ((0, 0), (2, 1), (1, 2))]
SIZES = (64, 120, 200)


def backgrounds(seed: int = 0) -> dict[str, np.ndarray]:
    import cv2
    from skimage import data
    rng = np.random.default_rng(seed)
    photo = cv2.resize(data.coffee(), (FRAME_W, FRAME_H), interpolation=cv2.INTER_AREA)
    noise = cv2.GaussianBlur(rng.integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8), (0, 0), 3)
    return {"gray": np.full((FRAME_H, FRAME_W, 3), 128, np.uint8), "photo": photo, "noise": noise}


def scene(background: np.ndarray, chip: np.ndarray, size: float, cx: float, cy: float) -> tuple[np.ndarray, tuple]:
    """The chip resized to `size` px, centred at (cx, cy) with sub-pixel accuracy (warpAffine)."""
    import cv2
    s = size / chip.shape[1]
    m = np.array([[s, 0, cx - s * chip.shape[1] / 2], [0, s, cy - s * chip.shape[0] / 2]], np.float32)
    frame = background.copy()
    warped = cv2.warpAffine(chip, m, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.warpAffine(np.full(chip.shape[:2], 255, np.uint8), m, (FRAME_W, FRAME_H), flags=cv2.INTER_NEAREST)
    frame[mask > 0] = warped[mask > 0]
    return frame, (cx - size / 2, cy - size / 2, size, size)


def read_face(frame: np.ndarray, pasted: tuple, analyse) -> dict | None:
    """The answer's face nearest the pasted chip (its centre inside the chip), or None."""
    import cv2
    ok, png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    faces = analyse(png.tobytes())["faces"]
    x, y, w, h = pasted
    inside = [f for f in faces if x <= f["box"]["x"] + f["box"]["w"] / 2 <= x + w
              and y <= f["box"]["y"] + f["box"]["h"] / 2 <= y + h]
    if not inside:
        return None
    face = max(inside, key=lambda f: f["box"]["w"])
    return {"age": face["age"], "female": face["gender"]["label"] == "female"}


def summary_of(reads: list[dict | None], item) -> dict:
    found = [r for r in reads if r]
    return {"found": len(found), "frames": len(reads),
            "ages": [round(r["age"], 2) for r in found], "female": [r["female"] for r in found],
            "true_age": item.age, "true_female": item.gender == 1}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--faces", type=int, default=150)
    p.add_argument("--detector", default="", help="default: the app's default detector")
    p.add_argument("--profile", default="accurate")
    p.add_argument("--models-dir", default="")
    p.add_argument("--keras-float", action="store_true",
                   help="serve the models' .keras files, not their ONNX/int8 copies (as a candidate that has not "
                        "shipped is served: evaluate_age_gender --keep-chosen)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    import cv2
    cv2.setNumThreads(1)
    from app import settings
    from app.pipeline.analyze import run_pipeline
    from app.pipeline.predict import load_predictor
    from training.data_utk import list_items, read_rgb

    cfg = settings.from_environment()
    detector = args.detector or cfg["VISAGE_DEFAULT_DETECTOR"]
    models_dir = args.models_dir or cfg["VISAGE_MODELS_DIR"]
    if args.keras_float:
        import tempfile

        from training.candidate_models import keras_only_copy
        models_dir = keras_only_copy(models_dir, Path(tempfile.mkdtemp(prefix="visage_keras_")))
    predictor = load_predictor(models_dir)

    def analyse(data: bytes) -> dict:
        return run_pipeline(data, predictor, detector=detector, profile=args.profile,
                            max_bytes=cfg["VISAGE_MAX_BYTES"], max_pixels=cfg["VISAGE_MAX_PIXELS"])[0]

    rng = np.random.default_rng(args.seed)
    items = list_items(args.data_dir)["val"]
    items = [items[i] for i in sorted(rng.choice(len(items), min(args.faces, len(items)), replace=False))]
    bgs = backgrounds(args.seed)
    t0 = time.time()
    moved, sized = [], []
    for n, item in enumerate(items):
        chip = read_rgb(args.data_dir, item)
        cx, cy = rng.uniform(150, FRAME_W - 150), rng.uniform(130, FRAME_H - 130)
        reads = [read_face(*scene(bgs["gray"], chip, 120 * s, cx + dx, cy + dy), analyse) for dx, dy, s in FRAMES]
        moved.append(summary_of(reads, item))
        per = {}
        for bg_name, bg in bgs.items():
            for size in SIZES:
                per[f"{bg_name} {size}"] = read_face(*scene(bg, chip, size, cx, cy), analyse)
        sized.append({"true_age": item.age, "true_female": item.gender == 1, "reads": per})
        if (n + 1) % 25 == 0:
            print(f"{n + 1}/{len(items)} faces, {time.time() - t0:.0f} s", flush=True)

    spreads = [float(np.std(m["ages"])) for m in moved if m["found"] >= 2]
    flips = [len(set(m["female"])) > 1 for m in moved if m["found"] >= 2]
    report = {"detector": detector, "profile": args.profile, "faces": len(items), "split": "val",
              "served_as": "keras files" if args.keras_float else "as the app serves them",
              "models": dict(predictor.versions),
              "moved": {"frames_per_face": len(FRAMES), "face_px": 120, "moves_px": "0-2", "scales": SCALES,
                        "found_share": round(sum(m["found"] for m in moved) / sum(m["frames"] for m in moved), 4),
                        "age_spread_median": round(float(np.median(spreads)), 3),
                        "age_spread_p90": round(float(np.percentile(spreads, 90)), 3),
                        "gender_label_changes_share": round(float(np.mean(flips)), 4)},
              "size_and_background": {}}
    for key in sized[0]["reads"]:
        reads = [(s["reads"][key], s) for s in sized if s["reads"][key]]
        report["size_and_background"][key] = {
            "found_share": round(len(reads) / len(sized), 4),
            "age_mae": round(float(np.mean([abs(r["age"] - s["true_age"]) for r, s in reads])), 3),
            "gender_accuracy": round(float(np.mean([r["female"] == s["true_female"] for r, s in reads])), 4)}
    # Like for like: only faces found in every setting, so the comparison is not about which faces were found.
    everywhere = [s for s in sized if all(s["reads"].values())]
    report["size_and_background_same_faces"] = {"faces": len(everywhere), **{
        key: {"age_mae": round(float(np.mean([abs(s["reads"][key]["age"] - s["true_age"]) for s in everywhere])), 3),
              "gender_accuracy": round(float(np.mean([s["reads"][key]["female"] == s["true_female"]
                                                      for s in everywhere])), 4)}
        for key in sized[0]["reads"]}} if everywhere else {"faces": 0}
    same = report["size_and_background_same_faces"]
    if everywhere:
        maes = [v["age_mae"] for k, v in same.items() if k != "faces"]
        accs = [v["gender_accuracy"] for k, v in same.items() if k != "faces"]
        report["size_and_background_range"] = {"age_mae": round(max(maes) - min(maes), 3),
                                               "gender_accuracy_points": round(100 * (max(accs) - min(accs)), 2)}
    report["seconds"] = round(time.time() - t0, 1)
    print(json.dumps({k: v for k, v in report.items() if k != "size_and_background"}, indent=1))
    out = args.out or Path(f"reports/steadiness_{detector}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
