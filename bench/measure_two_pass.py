"""The photo detector's schedule: one full Haar scan against two passes (a coarse, permissive scan
proposes places, the shipped cascade and settings then look only around each).

    python bench/measure_two_pass.py --data-dir ../shared/data/utkface

Three sets of frames, every setting on every frame in turn (so machine load falls on all alike):
UTKFace val faces pasted at 80-240 px and at 32-80 px into 640x480 scenes without faces
(bench/measure_detector.py's trials), and UTKFace val faces the way the app path frames them
(training.common.CONTEXT_PAD). Reports recall (IoU >= 0.3 with the pasted face; on the app-path
frames: any face found), false boxes per frame, median ms, the median per-frame time ratio to one
full scan, and how closely the boxes agree with one full scan's (mean IoU). Writes
reports/detector_two_pass.json.

    python bench/measure_two_pass.py --data-dir ../shared/data/utkface --models 400

runs instead N UTKFace val app-path frames through the whole pipeline (the shipped models, accurate
profile) with one full scan and with the shipped two passes: faces found, age MAE, gender accuracy,
and how much each face's age moves. Writes reports/detector_two_pass_models.json.
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
from measure_detector import iou, make_trials  # noqa: E402

SCHEDULES = {   # name: candidate pass (cascade file, scale factor, min neighbours); None = one full scan
    "one full scan": None,
    "two passes, default 1.2/1 (shipped)": ("haarcascade_frontalface_default.xml", 1.2, 1),
    "two passes, alt2 1.2/1": ("haarcascade_frontalface_alt2.xml", 1.2, 1),
    "two passes, default 1.15/1": ("haarcascade_frontalface_default.xml", 1.15, 1),
}


def detector(candidates) -> HaarFaceDetector:
    if candidates is None:
        return HaarFaceDetector(HaarSettings(candidate_cascade=None))
    cascade, scale_factor, min_neighbors = candidates
    return HaarFaceDetector(HaarSettings(candidate_cascade=cascade, candidate_scale_factor=scale_factor,
                                         candidate_min_neighbors=min_neighbors))


def app_path_frames(data_dir: Path, n: int, seed: int):
    """(val item, its chip framed as the app path frames it), for n items drawn with `seed`."""
    from training.common import framed
    from training.data_utk import list_items, read_rgb
    items = list_items(data_dir)["val"]
    for i in np.random.default_rng(seed).choice(len(items), n, replace=False):
        yield items[i], framed(read_rgb(data_dir, items[i]))


def measure(frames, detectors: dict) -> dict:
    stats = {name: {"found": 0, "false": 0, "ms": [], "iou": []} for name in detectors}
    reference = next(iter(detectors))
    for frame, truth in frames:
        boxes = {}
        for name, det in detectors.items():
            t = time.perf_counter()
            boxes[name] = det.detect(frame)
            stats[name]["ms"].append(1000 * (time.perf_counter() - t))
        for name, found in boxes.items():
            hits = [b for b in found if truth is None or iou(b, truth) >= 0.3]
            stats[name]["found"] += bool(hits)
            stats[name]["false"] += len(found) - len(hits[:1]) if truth is not None else 0
            if hits and boxes[reference]:
                stats[name]["iou"].append(max(iou(hits[0], b) for b in boxes[reference]))
    n = len(stats[reference]["ms"])
    ref_ms = np.array(stats[reference]["ms"])
    return {name: {"recall": s["found"] / n, "false_per_frame": s["false"] / n,
                   "ms_median": float(np.median(s["ms"])),
                   "time_vs_one_scan": float(np.median(np.array(s["ms"]) / ref_ms)),
                   "box_iou_with_one_scan": float(np.mean(s["iou"])) if s["iou"] else None}
            for name, s in stats.items()} | {"frames": n}


def compare_through_models(data_dir: Path, n: int, models_dir: Path) -> dict:
    """Val faces through run_pipeline with each schedule: what a user gets, not only the boxes."""
    from app.pipeline import analyze
    from app.pipeline.predict import load_predictor
    predictor = load_predictor(models_dir)
    detectors = {"one full scan": detector(None), "two passes (shipped)": detector(SCHEDULES["two passes, default 1.2/1 (shipped)"])}
    answers = {name: {} for name in detectors}
    for item, frame in app_path_frames(data_dir, n, seed=0):
        png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()
        for name, det in detectors.items():
            analyze._local.haar = det          # the pipeline's per-thread detector
            answer, _ = analyze.run_pipeline(png, predictor, max_bytes=10 ** 8, max_pixels=10 ** 8)
            if answer["faces"]:
                face = max(answer["faces"], key=lambda f: f["box"]["w"])
                answers[name][item.filename] = (face["age"], face["gender"]["label"] == "female", item)
    del analyze._local.haar
    report = {}
    for name, found in answers.items():
        report[name] = {"found": len(found) / n,
                        "age_mae": float(np.mean([abs(a - it.age) for a, _, it in found.values()])),
                        "gender_accuracy": float(np.mean([f == (it.gender == 1) for _, f, it in found.values()]))}
    both = set.intersection(*(set(found) for found in answers.values()))
    moves = [answers["two passes (shipped)"][k][0] - answers["one full scan"][k][0] for k in both]
    report["age_change_per_face"] = {"faces": len(both), "mean_abs_years": float(np.mean(np.abs(moves))),
                                     "unchanged": int(sum(abs(m) < 1e-6 for m in moves))}
    return report | {"frames": n}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--trials", type=int, default=200, help="frames per set")
    p.add_argument("--threads", type=int, default=1, help="OpenCV threads (the app's workers use 1)")
    p.add_argument("--models", type=int, default=0, metavar="N",
                   help="instead: N val faces through the whole pipeline with each schedule")
    p.add_argument("--models-dir", type=Path, default=Path(__file__).resolve().parents[1] / "models")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    cv2.setNumThreads(args.threads)
    if args.models:
        report = compare_through_models(args.data_dir, args.models, args.models_dir)
        report["load_average"] = open("/proc/loadavg").read().split()[:3]
        print(json.dumps(report, indent=1))
        out = args.out or Path("reports/detector_two_pass_models.json")
        out.write_text(json.dumps(report, indent=1))
        print("wrote", out)
        return
    detectors = {name: detector(c) for name, c in SCHEDULES.items()}
    sets = {
        "faces 80-240 px in 640x480 scenes": make_trials(args.data_dir, args.trials, seed=1, face_px=(80, 240)),
        "faces 32-80 px in 640x480 scenes": make_trials(args.data_dir, args.trials, seed=2, face_px=(32, 80)),
        "UTKFace val, app-path frames": [(frame, None) for _, frame in app_path_frames(args.data_dir, args.trials, seed=3)],
    }
    report = {"settings": {k: v for k, v in vars(HaarSettings()).items()}, "opencv_threads": args.threads,
              "load_average_before": open("/proc/loadavg").read().split()[:3], "sets": {}}
    for name, frames in sets.items():
        report["sets"][name] = rows = measure(frames, detectors)
        print(name, f"({rows['frames']} frames)")
        for schedule, r in rows.items():
            if schedule != "frames":
                print(f"  {schedule:28s} recall {r['recall']:.3f}  false/frame {r['false_per_frame']:.3f}  "
                      f"{r['ms_median']:6.1f} ms  {r['time_vs_one_scan']:.2f}x  box IoU {r['box_iou_with_one_scan']}",
                      flush=True)
    report["load_average_after"] = open("/proc/loadavg").read().split()[:3]
    out = args.out or Path("reports/detector_two_pass.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
