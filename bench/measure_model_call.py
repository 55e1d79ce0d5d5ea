"""Time the ways of calling a Keras model on the small batches the app sends (1-4 faces).

    python bench/measure_model_call.py [--repeats 50]

Uses the shipped architectures from training/models.py with random weights
(speed does not depend on the weights). Prints median milliseconds per call.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere


def median_ms(fn, x, repeats: int) -> float:
    for _ in range(3):          # warm-up: tracing / building the predict function
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args(argv)
    import numpy as np
    import tensorflow as tf
    from training import models

    for name, build, size in (("emotion", models.build_emotion_model, 48),
                              ("age_gender", models.build_age_gender_model, 64)):
        model = build()
        spec = tf.TensorSpec((None, size, size, 1), tf.float32)
        compiled = tf.function(lambda t, m=model: m(t, training=False), input_signature=[spec])
        ways = {
            "model.predict(x)": lambda x: model.predict(x, verbose=0),
            "model.predict_on_batch(x)": model.predict_on_batch,
            "model(x, training=False)": lambda x: model(x, training=False),
            "tf.function(model(x)) fixed signature": compiled,
        }
        for batch in (1, 4):
            x = np.random.rand(batch, size, size, 1).astype(np.float32)
            for way, fn in ways.items():
                print(f"{name:10s} batch={batch}  {way:40s} {median_ms(fn, x, args.repeats):7.2f} ms", flush=True)


if __name__ == "__main__":
    main()
