"""Which faces each detector finds, by group: UTKFace val chips framed the way the app path frames them
(training.common.face_in_frame), the share found by Haar (as shipped: two passes), by Haar with one full
scan, and by BlazeFace, per race, gender and age band.

    python bench/detector_recall_by_group.py --data-dir ../shared/data/utkface

Validation split only (the test split is not read). Writes reports/detector_recall_by_group.json.
The model cards report the same for Haar on the test split (models/age_gender.json).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.pipeline.detect import HaarFaceDetector, HaarSettings  # noqa: E402
from app.pipeline.detect_blazeface import BlazeFaceDetector  # noqa: E402
from training.common import framed  # noqa: E402
from training.data_utk import RACES, list_items, read_rgb  # noqa: E402
from training.metrics import AGE_BANDS  # noqa: E402


def groups_of(item) -> list[str]:
    band = next(f"age {name}" for name, lo, hi in AGE_BANDS if lo <= item.age <= hi)
    race = RACES[item.race] if item.race in range(len(RACES)) else "unknown"
    return ["all", f"race {race}", "female" if item.gender == 1 else "male", band]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--limit", type=int, default=0, help="only the first N val chips")
    p.add_argument("--out", type=Path, default=Path("reports/detector_recall_by_group.json"))
    args = p.parse_args()
    import cv2
    cv2.setNumThreads(1)
    detectors = {"haar (two passes, shipped)": HaarFaceDetector(),
                 "haar (one full scan)": HaarFaceDetector(HaarSettings(candidate_cascade=None)),
                 "blazeface": BlazeFaceDetector()}
    items = list_items(args.data_dir)["val"]
    items = items[:args.limit] if args.limit else items
    found = {name: {} for name in detectors}
    totals = {}
    for item in items:
        frame = framed(read_rgb(args.data_dir, item))
        for group in groups_of(item):
            totals[group] = totals.get(group, 0) + 1
        for name, detector in detectors.items():
            if detector.detect(frame):
                for group in groups_of(item):
                    found[name][group] = found[name].get(group, 0) + 1
    report = {"split": "val", "images": len(items), "faces_per_group": totals,
              "recall": {name: {g: round(counts.get(g, 0) / n, 4) for g, n in totals.items()}
                         for name, counts in found.items()}}
    print(json.dumps(report["recall"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
