"""Training runs' validation curves side by side, as means over windows of epochs.

    python -m training.compare_curves reports/training_logs/age_gender_long.csv checkpoints/age_gender_mix.npz \
        [--columns val_age_mae val_gender_accuracy] [--window 10] [--out reports/curves.json]

Each run is read from its log.csv (runs/<name>/log.csv, reports/training_logs/<name>.csv) or from its
checkpoint file, which carries every finished epoch's log row, so a run on another machine compares from
what is committed. Windows start at epoch 1 (1-10, 11-20, ...); a window a run has not finished is marked
with the epochs it holds. One epoch's validation number moves by tenths of a year from epoch to epoch: the
runs' docs (docs/training.md) decide on these means, not on single epochs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_COLUMNS = {"age_gender": ["val_age_mae", "val_gender_accuracy"], "emotion": ["val_accuracy"]}


def read_curve(path: Path) -> list[dict]:
    """One dict of numbers per finished epoch, in order (epoch 1 first)."""
    from training.common import load_run_checkpoint, read_log_file
    if path.suffix == ".npz":
        return [dict(row) for row in load_run_checkpoint(path)[1]["log"]]
    return sorted(read_log_file(path), key=lambda r: r.get("epoch", 0))


def window_means(rows: list[dict], column: str, window: int) -> list[dict]:
    """Mean of `column` over epochs 1..window, window+1..2*window, ...; the last window may be partial."""
    out = []
    for start in range(0, len(rows), window):
        block = rows[start:start + window]
        values = [r[column] for r in block if column in r]
        if values:
            out.append({"epochs": [start + 1, start + len(block)],
                        "mean": sum(values) / len(values), "complete": len(values) == window})
    return out


def compare(paths: list[Path], columns: list[str], window: int) -> dict:
    curves = {str(p): read_curve(p) for p in paths}
    return {"window": window, "epochs_done": {p: len(rows) for p, rows in curves.items()},
            "means": {c: {p: window_means(rows, c, window) for p, rows in curves.items()} for c in columns}}


def run_name(path: str) -> str:
    """runs/<name>/log.csv is named by its folder, a checkpoint or a saved log by its file."""
    path = Path(path)
    return path.parent.name if path.name == "log.csv" else path.stem


def table(result: dict) -> str:
    lines = []
    names = list(result["epochs_done"])
    for column, by_run in result["means"].items():
        lines.append(f"{column} (means over {result['window']} epochs)")
        lines.append("epochs".ljust(10) + "".join(run_name(n).rjust(22) for n in names))
        longest = max(len(w) for w in by_run.values())
        for i in range(longest):
            first = i * result["window"] + 1
            cells = []
            for n in names:
                w = by_run[n][i] if i < len(by_run[n]) else None
                cells.append("" if w is None else f"{w['mean']:.3f}"
                             + ("" if w["complete"] else f" ({w['epochs'][1] - w['epochs'][0] + 1} ep)"))
            lines.append(f"{first}-{first + result['window'] - 1}".ljust(10) + "".join(c.rjust(22) for c in cells))
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="log.csv files or checkpoint .npz files")
    p.add_argument("--columns", nargs="+", help="default: the task's validation numbers (age_gender, emotion)")
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--out", type=Path, help="also write the means as JSON")
    args = p.parse_args(argv)
    if args.window < 1:
        p.error("--window must be at least 1")
    missing = [str(r) for r in args.runs if not r.exists()]
    if missing:
        p.error(f"not found: {', '.join(missing)}")
    columns = args.columns
    if not columns:
        first = read_curve(args.runs[0])
        keys = set(first[0]) if first else set()
        columns = next((c for c in DEFAULT_COLUMNS.values() if set(c) <= keys), sorted(k for k in keys if k.startswith("val_")))
    result = compare(args.runs, columns, args.window)
    print(table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
