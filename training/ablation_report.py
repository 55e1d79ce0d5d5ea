"""Compare short training runs that differ in one choice (labels, crops, re-weighting) from their model cards.

    python -m training.ablation_report --task age_gender --out reports/ablation_age_gender.json \
        reference=runs/abl_ag_ref/out chip=runs/abl_ag_chip/out no_balance=runs/abl_ag_nobal/out

Each DIR holds the card that `training.evaluate_*` wrote with `--models-dir DIR`. Prints a Markdown
table and saves the numbers. Test-split numbers are reported, but no choice here is made on them:
the runs exist to show the effect of a choice, the shipped models are chosen on validation data.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def emotion_row(card: dict) -> dict:
    private = card["metrics"]["private_test"]
    alternatives = card["serving_setup"]["private_test_accuracy_of_alternatives"]
    return {"labels": card["data"]["labels"], "arch": card["architecture"].get("arch"),
            "epochs": card["training"]["epochs_run"],
            "minutes": card["training"]["wall_time_seconds"] / 60,
            "public_accuracy_best_epoch": max(r["public_accuracy"] for r in card["training"]["curve"]),
            "private_accuracy_plain": alternatives["checkpoint, flip False, no prior correction"],
            "private_accuracy_served": private["accuracy"], "private_macro_f1_served": private["macro_f1"]}


def age_gender_row(card: dict) -> dict:
    test = card["metrics"]["test"]
    chips = card["metrics"].get("test_on_tight_chips", {})
    return {"crops": card["data"]["crops"], "age_balance": card["data"]["age_balance"],
            "arch": card["architecture"].get("arch"), "epochs": card["training"]["epochs_run"],
            "minutes": card["training"]["wall_time_seconds"] / 60,
            "test_age_mae": test["age"]["mae"], "test_gender_accuracy": test["gender"]["accuracy"],
            "test_age_mae_by_band": {k: v["mae"] for k, v in test["age"]["mae_by_band"].items()},
            "tight_chips_age_mae": chips.get("age_mae"), "tight_chips_gender_accuracy": chips.get("gender_accuracy")}


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
