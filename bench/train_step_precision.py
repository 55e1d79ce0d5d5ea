"""Training speed of the age/gender network in float32 against Keras' mixed_bfloat16 policy on this CPU.

    .venv/bin/python bench/train_step_precision.py [--steps 30] [--rounds 3] [--out reports/train_step_precision.json]

CPUs with AMX (Intel Sapphire Rapids and later) multiply bfloat16 in hardware; older ones emulate it,
slower than float32. The same network as the long runs (`--arch visage --input-size 96 --age-head
distribution`), batch 64, random faces (speed only: nothing here is trained toward anything). The two
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


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512_vnni", "avx_vnni")))


def images_per_second(policy: str, steps: int, warmup: int = 3) -> float:
    import keras
    import numpy as np
    from training import models
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = models.build_age_gender_model(SIZE, age_head="distribution")
    model.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=1e-4),
                  loss={"age": "mae", "gender": "binary_crossentropy"})
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, SIZE, SIZE, 1), np.float32)
    y = {"age": rng.uniform(1, 90, (BATCH, 1)).astype(np.float32),
         "gender": rng.integers(0, 2, (BATCH, 1)).astype(np.float32)}
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
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    from training.common import configure_threads
    configure_threads(args.threads)
    runs = {"float32": [], "mixed_bfloat16": []}
    for r in range(args.rounds):
        for policy in runs:
            runs[policy].append(images_per_second(policy, args.steps))
            print(f"round {r + 1}, {policy}: {runs[policy][-1]:.1f} images/s", flush=True)
    best = {k: max(v) for k, v in runs.items()}
    result = {"network": "visage age/gender, 96 px, one-year-bins age head", "batch": BATCH, "steps": args.steps,
              "threads": args.threads, "cpu": platform.processor() or platform.machine(), "cpu_flags": cpu_flags(),
              "images_per_second": runs, "best": best,
              "bfloat16_vs_float32": round(best["mixed_bfloat16"] / best["float32"], 3)}
    print(json.dumps({k: result[k] for k in ("cpu_flags", "best", "bfloat16_vs_float32")}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
