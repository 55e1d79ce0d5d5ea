"""How far a network's answers move when its trunk computes in bfloat16 (--mixed-bfloat16) instead of float32.

    .venv/bin/python bench/bfloat16_answers.py checkpoints/age_gender_aa_long.npz [--data-dir ../shared/data/utkface]
        [--out reports/bfloat16_answers.json]

A run trained with --mixed-bfloat16 also validates in it: each epoch's logged val numbers (and so the
epoch best.keras keeps) come from the bfloat16 trunk, while evaluation, export and serving read the
float32 files. This scores the run's last weights (its checkpoint file) both ways on the UTKFace val faces the
app finds, one view, and prints the gap: val age MAE and gender accuracy each way, the per-face age
difference (median, p99, max) and how many gender labels differ. Validation only; the test split is not read.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data/utkface"))
    p.add_argument("--cache-dir", type=Path, default=Path("cache"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    from training.common import configure_threads, load_run_checkpoint
    configure_threads(args.threads)
    import keras

    from training import data_utk
    from training.precision import mixed_twin
    from training.train_age_gender import MARGIN
    weights, meta = load_run_checkpoint(args.checkpoint)
    settings = meta["settings"]
    network = keras.models.model_from_json(meta["model_json"])
    network.set_weights(weights)
    val = data_utk.detected_only(data_utk.load_utk(args.data_dir, settings["input_size"], MARGIN, settings["crops"],
                                                   args.cache_dir, splits=("val",))["val"])
    answers = {"float32": network.predict(val["x"], batch_size=256, verbose=0),
               "mixed_bfloat16": mixed_twin(network).predict(val["x"], batch_size=256, verbose=0)}
    scores = {}
    for name, a in answers.items():
        scores[name] = {"age_mae": float(np.abs(a["age"][:, 0] - val["age"]).mean()),
                        "gender_accuracy": float(((a["gender"][:, 0] > 0.5) == (val["gender"] > 0.5)).mean())}
    gap = np.abs(answers["float32"]["age"][:, 0] - answers["mixed_bfloat16"]["age"][:, 0])
    flips = (answers["float32"]["gender"][:, 0] > 0.5) != (answers["mixed_bfloat16"]["gender"][:, 0] > 0.5)
    result = {"checkpoint": str(args.checkpoint), "epoch": meta["epochs_done"], "val_faces": int(len(val["age"])),
              "scores": scores, "age_difference_years": {"median": float(np.median(gap)),
                                                         "p99": float(np.quantile(gap, 0.99)), "max": float(gap.max())},
              "gender_labels_differing": int(flips.sum()),
              "p_female_difference_max": float(np.abs(answers["float32"]["gender"] -
                                                      answers["mixed_bfloat16"]["gender"]).max())}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
