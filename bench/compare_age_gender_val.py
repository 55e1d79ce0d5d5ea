"""Age/gender networks side by side on UTKFace val, one view each: age MAE, gender accuracy, and gender
accuracy per race group (the largest gap between groups is the fairness number of issue #17), also among
faces aged 13 and over: the groups hold very different shares of young children (UTKFace test: Asian 28%,
Black 4%), whose gender the networks read far less well.

    python bench/compare_age_gender_val.py --data-dir ../shared/data/utkface \
        models/age_gender.keras runs/ag128_ws/best.keras [--out reports/ablation_x.json] [--no-cache]

Each model gets the val faces the app's detector finds, cut at its own input size (the card's margin,
training.data_utk's cached app-path crops). An ensemble file is scored whole and network by network.
Validation split only: the test split is not read. For choosing what to try next, not for shipping
(training/evaluate_age_gender.py does that, with its views and corrections).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.data_utk import RACES  # noqa: E402  (after the path insert)
from training.metrics import CHILD_MAX_AGE  # noqa: E402


def by_race(right: np.ndarray, race: np.ndarray) -> dict:
    return {name: round(float(right[race == r].mean()), 4) for r, name in enumerate(RACES) if (race == r).any()}


def gap(accuracies: dict) -> float:
    return round(max(accuracies.values()) - min(accuracies.values()), 4)


def scores(model, val: dict) -> dict:
    out = model.predict(val["x"], batch_size=128, verbose=0)
    age, female = np.ravel(out["age"]), np.ravel(out["gender"]) > 0.5
    right = female == (val["gender"] == 1)
    child = val["age"] <= CHILD_MAX_AGE
    race = by_race(right, val["race"])
    older = by_race(right[~child], val["race"][~child])
    return {"faces": int(len(age)), "age_mae": round(float(np.abs(age - val["age"]).mean()), 3),
            "gender_accuracy": round(float(right.mean()), 4), "gender_by_race": race, "largest_gap": gap(race),
            "gender_accuracy_ages_0_12": round(float(right[child].mean()), 4),
            "gender_accuracy_ages_13_plus": round(float(right[~child].mean()), 4),
            "gender_by_race_ages_13_plus": older, "largest_gap_ages_13_plus": gap(older),
            "share_aged_0_12_by_race": by_race(child, val["race"])}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, default=Path("cache"))
    p.add_argument("--no-cache", action="store_true",
                   help="cut the val faces only (minutes) instead of building the whole app-path crop cache")
    p.add_argument("models", type=Path, nargs="+")
    p.add_argument("--out", type=Path)
    p.add_argument("--crops", choices=["app", "haar"], default="app",
                   help="app: the app's default path (BlazeFace, faces turned upright); haar: around Haar boxes")
    args = p.parse_args()
    import keras

    from training import data_utk
    from training.ensemble import members_of
    from training.train_age_gender import MARGIN
    report, vals = {"split": "val (faces the app's detector finds)", "views": 1, "models": {}}, {}
    for path in args.models:
        model = keras.models.load_model(path, compile=False)
        size = model.input_shape[1]
        if size not in vals:
            data = data_utk.load_utk(args.data_dir, size, MARGIN, args.crops, None if args.no_cache else args.cache_dir,
                                     splits=("val",))
            vals[size] = data_utk.detected_only(data["val"])
        networks = members_of(model)
        named = {f"{path}": model} | ({f"{path} network {i + 1}": m for i, m in enumerate(networks)}
                                     if len(networks) > 1 else {})
        for name, m in named.items():
            report["models"][name] = {"input_size": size} | scores(m, vals[size])
            print(name, json.dumps(report["models"][name]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
        print("wrote", args.out)


if __name__ == "__main__":
    main()
