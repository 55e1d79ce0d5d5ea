"""Training speed of the age/gender network in float32 against Keras' mixed_bfloat16 policy on this CPU.

    .venv/bin/python bench/train_step_precision.py [--steps 30] [--rounds 3] [--arch visage-aa]
        [--out reports/train_step_precision_aa.json]

CPUs with AMX (Intel Sapphire Rapids and later) multiply bfloat16 in hardware; older ones emulate it,
slower than float32. The network of the long runs (`--arch visage-aa` or `visage`, `--input-size 96
--age-head distribution`) trained as train_age_gender trains it, in --mixed-bfloat16's policies (trunk
bfloat16, heads float32), batch 64, random faces (speed only: nothing here is trained toward anything). The two
precisions alternate, a fresh model each round, so a machine's load drifts over both alike; the first
steps of each round (tracing) are not timed. Prints and saves images/s per precision and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 64
SIZE = 96


def bfloat16_flags() -> list[str]:
    from app.pipeline.predict import cpu_flags
    return sorted(f for f in cpu_flags() if f.startswith(("amx", "avx512_bf16", "avx512_vnni", "avx_vnni")))


def images_per_second(policy: str, arch: str, steps: int, warmup: int = 3) -> float:
    """The training step as train_age_gender takes it (the three-output view with the bins' loss), with the
    trunk in `policy` the way --mixed-bfloat16 sets it (training/precision.py: heads float32)."""
    import keras
    import numpy as np
    from training import models
    from training.precision import mixed_twin
    from training.train_age_gender import age_distribution_targets, distribution_trainer
    keras.utils.set_random_seed(0)
    network = models.AGE_GENDER_ARCHS[arch](SIZE, age_head="distribution")
    model = distribution_trainer(mixed_twin(network) if policy == "mixed_bfloat16" else network)
    model.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=1e-4),
                  loss={"age": "mae", "gender": "binary_crossentropy", "age_bins": "categorical_crossentropy"})
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, SIZE, SIZE, 1), np.float32)
    age = rng.uniform(1, 90, BATCH).astype(np.float32)
    y = {"age": age[:, None], "gender": rng.integers(0, 2, (BATCH, 1)).astype(np.float32),
         "age_bins": age_distribution_targets(age, models.AGE_BINS)}
    for _ in range(warmup):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * BATCH / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--arch", choices=("visage", "visage-aa"), default="visage-aa")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    from training.common import configure_threads
    configure_threads(args.threads)
    runs = {"float32": [], "mixed_bfloat16": []}
    for r in range(args.rounds):
        for policy in runs:
            runs[policy].append(images_per_second(policy, args.arch, args.steps))
            print(f"round {r + 1}, {policy}: {runs[policy][-1]:.1f} images/s", flush=True)
    best = {k: max(v) for k, v in runs.items()}
    result = {"network": f"{args.arch} age/gender, 96 px, one-year-bins age head", "arch": args.arch, "batch": BATCH, "steps": args.steps,
              "threads": args.threads, "cpu": platform.processor() or platform.machine(), "cpu_flags": bfloat16_flags(),
              "images_per_second": runs, "best": best,
              "bfloat16_vs_float32": round(best["mixed_bfloat16"] / best["float32"], 3)}
    print(json.dumps({k: result[k] for k in ("cpu_flags", "best", "bfloat16_vs_float32")}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
