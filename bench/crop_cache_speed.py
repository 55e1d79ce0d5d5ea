"""How fast a new machine cuts the UTKFace crop caches: one process against one per core.

    python bench/crop_cache_speed.py --data-dir ../shared/data/utkface [--images 1200]

Cuts the first IMAGES val chips the app's way (training.data_utk.cut_all: frame, BlazeFace, the
largest face turned upright, 128 px) with 1 worker, then with one per core, checks that both give
the same crops, and prints images per second. Run it with the cores free (no training beside it).
Writes reports/crop_cache_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.data_utk import SPLITS, cut_all, list_items  # noqa: E402
from training.train_age_gender import MARGIN  # noqa: E402

SIZE = 128


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data/utkface"))
    p.add_argument("--images", type=int, default=1200)
    p.add_argument("--out", type=Path, default=Path("reports/crop_cache_speed.json"))
    args = p.parse_args(argv)
    splits = list_items(args.data_dir)
    items = splits["val"][: args.images]
    cores = len(os.sched_getaffinity(0))
    runs, crops = {}, {}
    for workers in (1, cores):
        start = time.perf_counter()
        crops[workers] = cut_all(args.data_dir, items, SIZE, MARGIN, "app", workers=workers)
        seconds = time.perf_counter() - start
        runs[workers] = {"seconds": round(seconds, 1), "images_per_s": round(len(items) / seconds, 1)}
        print(f"{workers} worker(s): {seconds:.1f} s, {len(items) / seconds:.1f} images/s", flush=True)
    same = all(np.array_equal(crops[1][i], crops[cores][i]) for i in range(2))
    total = sum(len(splits[s]) for s in SPLITS) + len(splits["train"])    # edge-framed splits + backgrounds
    report = {
        "what": "UTKFace val chips cut the app's way (data_utk.cut_all, 128 px), 1 worker vs one per core",
        "images": len(items), "cores": cores, "runs": {str(k): v for k, v in runs.items()},
        "speedup": round(runs[1]["seconds"] / runs[cores]["seconds"], 2), "same_crops": same,
        "new_machine_estimate_min": {str(k): round(total / v["images_per_s"] / 60, 1) for k, v in runs.items()},
        "new_machine_images": total,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
