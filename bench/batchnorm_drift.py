"""How far each BatchNorm layer's running variance moved in runs that started from the same network.

    python bench/batchnorm_drift.py [--start models/age_gender.keras --member -1]
        [--runs checkpoints/age_gender_steady.npz,checkpoints/age_gender_bins_ws.npz,...]

For each run's committed checkpoint (its last epoch's weights, statistics re-estimated before that epoch's
validation): per BatchNorm layer, the mean running variance over the mean of the start network's, and the
norm of each convolution kernel over the start's. age_gender_steady (with the served-gap consistency term)
and age_gender_bins_ws and _kd (without it) all started from the first network of age/gender 2026-11-30-e10, which
the shipped model carries as its last member. No data is read. Writes reports/batchnorm_drift.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RUNS = ("checkpoints/age_gender_steady.npz", "checkpoints/age_gender_bins_ws.npz", "checkpoints/age_gender_bins_kd.npz")


def named_weights(model) -> dict[str, np.ndarray]:
    return {v.path: np.asarray(v.numpy()) for v in model.weights}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", default="models/age_gender.keras")
    p.add_argument("--member", type=int, default=-1, help="which network of an ensemble (default: its last)")
    p.add_argument("--runs", default=",".join(RUNS))
    p.add_argument("--out", type=Path, default=Path("reports/batchnorm_drift.json"))
    args = p.parse_args(argv)
    import keras
    from training.common import load_run_checkpoint
    from training.ensemble import members_of

    start = named_weights(members_of(keras.models.load_model(args.start, compile=False))[args.member])
    layers = [k.rsplit("/", 1)[0] for k in start if k.endswith("/moving_variance")]
    kernels = [k for k in start if k.endswith("/kernel") and start[k].ndim == 4]
    report = {"start": f"{args.start} network {args.member}", "runs": {}}
    for path in args.runs.split(","):
        weights, meta = load_run_checkpoint(Path(path))
        net = keras.models.model_from_json(meta["model_json"])
        net.set_weights(weights)
        got = named_weights(net)
        report["runs"][Path(path).stem] = {
            "epochs": meta["epochs_done"], "consistency": meta["settings"].get("consistency"),
            "running_variance_ratio": {name: round(float(got[f"{name}/moving_variance"].mean()
                                                         / start[f"{name}/moving_variance"].mean()), 3)
                                       for name in layers if f"{name}/moving_variance" in got},
            "kernel_norm_ratio": {k: round(float(np.linalg.norm(got[k]) / np.linalg.norm(start[k])), 3)
                                  for k in kernels if k in got}}
    for run, r in report["runs"].items():
        print(f"{run} ({r['epochs']} epochs, consistency {r['consistency']}): running variance ×",
              " ".join(f"{v:.2f}" for v in r["running_variance_ratio"].values()), "| kernel norms ×",
              " ".join(f"{v:.2f}" for v in r["kernel_norm_ratio"].values()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
