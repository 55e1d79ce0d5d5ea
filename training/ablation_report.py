"""Compare short training runs that differ in one choice (labels, crops, re-weighting) from their model cards.

    python -m training.ablation_report --task age_gender --out reports/ablation_age_gender.json \
        reference=runs/abl_ag_ref/out chip=runs/abl_ag_chip/out no_balance=runs/abl_ag_nobal/out

Each DIR holds the card that `training.evaluate_*` wrote with `--models-dir DIR`. Prints a Markdown
table and saves the numbers. The runs justify recipe choices, so they are compared on validation
data only (UTKFace val on the faces the app detects, FER2013 PublicTest), like every other choice.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def emotion_row(card: dict) -> dict:
    setup = card["serving_setup"]
    shift_check = setup.get("class_shift_two_fold_check_on_public_test") or {}
    return {"labels": card["data"]["labels"], "arch": card["architecture"].get("arch"),
            "epochs": card["training"]["epochs_run"],
            "minutes": card["training"]["wall_time_seconds"] / 60,
            "public_accuracy_best_epoch": max(r["public_accuracy"] for r in card["training"]["curve"]),
            "public_accuracy_plain": setup["public_test_accuracy"]["checkpoint, flip False"],
            "public_accuracy_flip_and_shift_held_out": shift_check.get("accuracy_with")}


def age_gender_row(card: dict) -> dict:
    val = card["metrics"]["val"]
    return {"crops": card["data"]["crops"], "age_balance": card["data"]["age_balance"],
            "arch": card["architecture"].get("arch"), "epochs": card["training"]["epochs_run"],
            "minutes": card["training"]["wall_time_seconds"] / 60,
            "val_age_mae": val["age_mae"], "val_gender_accuracy": val["gender_accuracy"],
            "val_age_mae_by_band": {k: v["mae"] for k, v in val["age"]["mae_by_band"].items()}}


def markdown(rows: dict) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3f}"
        if isinstance(v, dict):
            return " / ".join(f"{x:.1f}" for x in v.values())
        return str(v)
    keys = list(next(iter(rows.values())))
    lines = ["| run | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(r[k]) for k in keys) + " |" for name, r in rows.items()]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=["emotion", "age_gender"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("runs", nargs="+", metavar="NAME=DIR")
    args = p.parse_args(argv)
    row = emotion_row if args.task == "emotion" else age_gender_row
    rows = {}
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        rows[name] = row(json.loads((Path(folder) / f"{args.task}.json").read_text()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
