"""Where each committed training run stands: its settings, epochs done, last and best validation numbers.

    python -m training.checkpoint_status checkpoints/*.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path

from training.common import load_run_checkpoint

# The number each task's checkpoint is ranked by, and whether higher is better.
MONITOR = {"emotion": ("val_accuracy", True), "age_gender": ("val_loss", False)}


def summary(path: Path) -> str:
    _, meta = load_run_checkpoint(path)
    settings, log = meta["settings"], meta["log"]
    key, higher = MONITOR.get(settings.get("task"), ("val_loss", False))
    lines = [f"{path}: {settings.get('task')} {settings.get('arch')}, epoch {meta['epochs_done']} of "
             f"{settings.get('epochs')}, {meta['wall_seconds_in_all'] / 3600:.1f} h of training, saved {meta['saved_at']}"]
    if log:
        scores = [row.get(key) for row in log]
        best = (max if higher else min)(range(len(scores)), key=lambda i: scores[i])
        last = log[-1]
        shown = {k: v for k, v in last.items() if k.startswith("val_") or k in ("accuracy", "loss")}
        lines.append("  last: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(shown.items())))
        lines.append(f"  best {key}: {scores[best]:.4f} at epoch {best + 1}")
    precision = settings.get("precision_from_epoch")
    if precision:
        lines.append("  precision: " + ", ".join(f"{policy} from epoch {first}" for first, policy in precision.items()))
    average = meta.get("weight_average")
    if average:
        lines.append(f"  weight average (swa.keras): epochs {average['first_epoch']}-{average['through_epoch']} "
                     f"({average['epochs_averaged']} epochs)")
    if meta.get("best_epoch"):
        lines.append(f"  best epoch's weights (best.keras): epoch {meta['best_epoch']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path)
    for path in p.parse_args(argv).files:
        print(summary(path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
