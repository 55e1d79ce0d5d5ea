"""Write docs/models.md from the model cards, with the same layout as the app's /models page
(app/card_summary.py), so the numbers there stay true.

    python -m training.models_doc            # rewrite docs/models.md from models/*.json
    python -m training.models_doc --check    # exit 1 if docs/models.md is out of date
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.card_summary import summarize_folder

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "models.md"


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(t: dict) -> list[str]:
    lines = [f"**{cell(t['title'])}**", "", "| " + " | ".join(cell(c) or " " for c in t["columns"]) + " |",
             "|" + "---|" * len(t["columns"])]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in t["rows"]]
    return lines + ([""] + [t["note"]] if t["note"] else []) + [""]


def model_section(m: dict) -> list[str]:
    lines = [f"## {m['title']}", ""]
    if m["unreadable"]:
        return lines + [f"This model's card could not be read ({m['unreadable']}).", ""]
    facts = [f"`{m['file']}`" if m["file"] else "", f"version {m['version']}" if m["version"] else "", m["task"] or ""]
    lines += [" · ".join(f for f in facts if f), ""]
    if m["estimates"]:
        lines += [m["estimates"], ""]
    lines += ["### How well it does", ""]
    if m["headline"]:
        lines += ["| measure | value |", "|---|---|"] + [f"| {cell(k)} | **{cell(v)}** |" for k, v in m["headline"]] + [""]
    else:
        lines += ["This card carries no test measurements.", ""]
    for t in m["tables"]:
        lines += md_table(t)
    lines += ["### Known failure modes", ""] + [f"- {f}" for f in m["failure_modes"]] + [""]
    lines += ["### Data and licences", ""] + [f"- {k}: {v}" for k, v in m["data"]] + [""]
    if m["licences"]:
        lines += ["| dataset | licence |", "|---|---|"] + [f"| {cell(d)} | {cell(lic)} |" for d, lic in m["licences"]]
        lines += ["", "A model trained on research-only data is for research use too.", ""]
    if m["trained"]:
        lines += [f"Training: {m['trained']}.", ""]
    if m["served"]:
        lines += [f"As served: {m['served']}.", ""]
    lines += ["### Uses", "", "Intended:", ""] + [f"- {u}" for u in m["intended_uses"]]
    lines += ["", "Not suitable:", ""] + [f"- {u}" for u in m["unsuitable_uses"]] + [""]
    if m["other"]:
        lines += ["### More measurements from the card", ""]
        for t in m["other"]:
            lines += md_table(t)
    return lines


def render(models_dir) -> str:
    lines = [
        "# Models",
        "",
        "<!-- Generated from models/*.json by `python -m training.models_doc`: edit the cards or "
        "app/card_summary.py, not this file. -->",
        "",
        "What each model behind Visage estimates, what it learnt from, how well it does on photos it never saw, "
        "where it goes wrong, and what it must not be used for. The running app shows the same at `/models`, "
        "read from the cards it serves.",
        "",
        "> These are estimates from appearance, not facts about a person. Do not use them to make decisions "
        "about people: not for hiring, policing, security or access control.",
        "",
    ]
    for m in summarize_folder(models_dir):
        lines += model_section(m)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument("--out", type=Path, default=DOC)
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if the file differs")
    args = p.parse_args(argv)
    text = render(args.models_dir)
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            sys.exit(f"{args.out} is out of date: run python -m training.models_doc")
        print(f"{args.out} matches the cards")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"{args.out} written from {args.models_dir}")


if __name__ == "__main__":
    main()
