"""Train the 7-class emotion CNN on FER2013.

    python -m training.train_emotion --data-dir ../shared/data/fer2013 --epochs 40

Checkpoints every epoch into --run-dir (last.keras, best.keras by PublicTest
accuracy, log.csv); running the same command again resumes. Then
`python -m training.evaluate_emotion` scores best.keras on PrivateTest and ships it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from training import precision, watchdog


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True, help="FER2013 folder with train/ and test/")
    p.add_argument("--run-dir", type=Path, default=Path("runs/emotion"))
    p.add_argument("--cache-dir", type=Path, default=Path("cache"), help="preprocessed arrays (.npz)")
    p.add_argument("--arch", choices=["visage", "wide", "res", "baseline"], default="visage")
    p.add_argument("--checkpoint", type=Path,
                   help="the run's one committable file (e.g. checkpoints/emotion_res.npz): rewritten every epoch, "
                        "and the run resumes from it on a machine without --run-dir (docs/training.md)")
    p.add_argument("--labels", choices=["fer", "ferplus", "blend"], default="blend",
                   help="targets: original labels, FER+ vote distribution, or their mean")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--average-last", type=float, default=0.0,
                   help="also keep the mean of the weights of this share of the schedule's last epochs (stochastic "
                        "weight averaging) as swa.keras in --run-dir (and in --checkpoint); evaluation offers it beside "
                        "best.keras and last.keras (0: off; may be added to a run in progress)")
    p.add_argument("--stop-after-epoch", type=int, default=0,
                   help="stop after this epoch (the schedule stays the one of --epochs): a run cut to fit a session")
    p.add_argument("--init-from", type=Path, help="warm start: weights of a shipped model (e.g. models/<name>.keras; "
                   "of an ensemble, its first network)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--limit", type=int, default=0, help="use only N images per split (smoke tests)")
    from training.common import add_machine_options
    add_machine_options(p)
    return p.parse_args(argv)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Square-root inverse-frequency weight per class, mean 1 over the samples (disgust: 436 images)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.sqrt(counts.sum() / (n_classes * np.maximum(counts, 1)))
    return (w / (w[y].mean())).astype(np.float32)


def main(argv=None):
    args = parse_args(argv)
    from training.common import set_seeds, configure_threads
    configure_threads(args.threads)
    set_seeds(args.seed)
    import keras
    from training import data_fer, models
    from training.common import (checkpoint_callbacks, make_augmenter, resume_point, train_dataset,
                                 verbosity, warm_start, write_json)

    cache = None if args.limit else args.cache_dir
    data = data_fer.load_fer(args.data_dir, cache, limit=args.limit)
    train, public = data["train"], data["public"]
    votes = data_fer.load_ferplus_votes(args.data_dir) if args.labels != "fer" else {}
    targets, keep = data_fer.soft_targets(train, votes, args.labels)
    x, y, targets = train.x[keep], train.y[keep], targets[keep]
    weights = class_weights(y, len(data_fer.EMOTIONS))[y]
    print(f"train {len(x)} images ({data['dropped_duplicates']} copies of test images and "
          f"{int((~keep).sum())} FER+ non-faces dropped), PublicTest {len(public.y)}", flush=True)

    args.run_dir.mkdir(parents=True, exist_ok=True)
    settings = {"task": "emotion", "arch": args.arch, "epochs": args.epochs, "peak_lr": args.lr,
                "batch_size": args.batch_size, "labels": args.labels, "seed": args.seed, "limit": args.limit}
    model, done = resume_point(args.run_dir, args.checkpoint, settings)
    if model is None:
        model = models.EMOTION_ARCHS[args.arch]()
        if args.init_from:
            warm_start(model, args.init_from, args.run_dir)
        model.summary(print_fn=lambda s, **k: print(s, flush=True))
    else:
        print(f"resuming {args.run_dir} after epoch {done}", flush=True)
    model, mixed = precision.train_in_chosen_precision(model, args.mixed_bfloat16, args.checkpoint, done, settings)
    if not getattr(model, "compiled", False):     # new, or rebuilt from the checkpoint file
        model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=1e-4),
                      loss=keras.losses.CategoricalCrossentropy(),
                      metrics=["accuracy"], jit_compile=args.jit)

    augment = make_augmenter(rotation_deg=10, shift=0.1, zoom=0.1, seed=args.seed)
    ds = train_dataset(x, targets, weights, args.batch_size, augment, args.seed + done)
    val_targets = np.eye(len(data_fer.EMOTIONS), dtype=np.float32)[public.y]
    t0 = time.time()
    model.fit(ds, validation_data=(public.x, val_targets), batch_size=256,
              epochs=min(args.epochs, args.stop_after_epoch or args.epochs), initial_epoch=done,
              callbacks=[*checkpoint_callbacks(args.run_dir, "val_accuracy", "max", args.lr, args.epochs, x,
                                               run_checkpoint=args.checkpoint, settings=settings,
                                               average_last=args.average_last, float32_files=mixed),
                         watchdog.StallWatchdog(args.restart_if_stalled)],
              verbose=verbosity())
    write_json(args.run_dir / "run.json", {
        "task": "emotion", "arch": args.arch, "labels": args.labels, "epochs": args.epochs,
        "batch_size": args.batch_size, "peak_lr": args.lr, "seed": args.seed, "limit": args.limit,
        "train_images": int(len(x)), "dropped_test_copies": data["dropped_duplicates"],
        "dropped_nonfaces": int((~keep).sum()), "data_dir": str(args.data_dir),
        "init_from": str(args.init_from) if args.init_from else None,
        "precision_from_epoch": settings["precision_from_epoch"], "last_session_seconds": time.time() - t0})


if __name__ == "__main__":
    main()
