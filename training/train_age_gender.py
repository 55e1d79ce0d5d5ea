"""Train the age + gender CNN (one trunk, two heads) on UTKFace.

    python -m training.train_age_gender --data-dir ../shared/data/utkface --epochs 50

Faces are cut the way the app's default path cuts them (BlazeFace, turned upright,
see training/data_utk.py) unless --crops haar or chip. Checkpoints every epoch into
--run-dir (last.keras, best.keras by validation loss, log.csv); the same command
resumes. Then `python -m training.evaluate_age_gender` scores and ships it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from training import precision, watchdog

INPUT_SIZE = 64
MARGIN = 0.15          # crop = Haar box grown by 15% on each side (the app uses this too, via the card)
AGE_LOSS_WEIGHT = 0.1  # age L1 in years vs. gender cross-entropy
# --consistency's jitter: up to 2% of the side each way and ±2% of scale, as bench/steadiness.py moves
# faces (0-2 px at 120 px, ±2%); about 2 px at a 96-px input.
STEADY_JITTER = 0.02
# --age-head distribution: the label's spread over the age bins (DLDL's sigma), and the weight of that
# distribution's cross-entropy, equal to the L1 term's as in DLDL-v2 (which weighs KL and L1 1:1).
AGE_SIGMA = 2.0
AGE_BINS_LOSS_WEIGHT = AGE_LOSS_WEIGHT


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True, help="folder with UTKFace/ (and optionally splits.csv)")
    p.add_argument("--run-dir", type=Path, default=Path("runs/age_gender"))
    p.add_argument("--cache-dir", type=Path, default=Path("cache"))
    p.add_argument("--arch", choices=["visage", "visage-aa", "hires", "res", "baseline"], default="visage",
                   help="res: the residual trunk at 128 px (the long run of docs/training.md); visage-aa: visage "
                        "with every halving low-passed first (anti-aliased, steadier for a face moved a pixel; "
                        "same weights, so --init-from a visage network fits)")
    p.add_argument("--input-size", type=int, default=0,
                   help="face side in pixels (0 = the arch's default: 64, res and baseline 128); the trunk is fully "
                        "convolutional, so --init-from works across sizes")
    p.add_argument("--crops", choices=["app", "haar", "chip"], default="app",
                   help="app: the app's default path (BlazeFace, faces turned upright; default); haar: crops cut "
                        "around Haar boxes (how the shipped model was trained); chip: the tight aligned chips as they are")
    p.add_argument("--backgrounds", action="store_true",
                   help="train on chips set on random backgrounds (flat, noise, pictures without people, or their "
                        "own edges: training.common.on_background) before the app's detect-and-crop path; val stays "
                        "edge-framed, as the cards measure")
    p.add_argument("--no-age-balance", action="store_true", help="do not re-weight rare age bands")
    p.add_argument("--group-balance", action="store_true",
                   help="also re-weight each race x gender group by the square root of its inverse frequency "
                        "(the rarer groups had the larger gender error)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--checkpoint", type=Path,
                   help="the run's one committable file (e.g. checkpoints/age_gender_128.npz): rewritten every epoch, "
                        "and the run resumes from it on a machine without --run-dir (docs/training.md)")
    p.add_argument("--average-last", type=float, default=0.0,
                   help="also keep the mean of the weights of this share of the schedule's last epochs (stochastic "
                        "weight averaging) as swa.keras in --run-dir (and in --checkpoint); evaluation offers it beside "
                        "best.keras and last.keras (0: off; may be added to a run in progress)")
    p.add_argument("--stop-after-epoch", type=int, default=0,
                   help="stop after this epoch (the schedule stays the one of --epochs): a run cut to fit a session")
    p.add_argument("--init-from", type=Path, help="warm start: weights of a shipped model (e.g. models/<name>.keras; "
                   "of an ensemble, its first network)")
    p.add_argument("--distill-from", type=Path,
                   help="a shipped model (with its card beside it) whose answers, averaged over the test-time "
                        "views its card names, are blended into the targets: the student learns in one view "
                        "what the teacher gives in several")
    p.add_argument("--distill-weight", type=float, default=0.5,
                   help="share of the teacher in each target (age and P(female)); the rest is the label")
    p.add_argument("--age-head", choices=["regression", "distribution"], default="regression",
                   help="distribution: age read as the expectation of a softmax over one-year bins, trained also "
                        f"toward a Gaussian of sigma {AGE_SIGMA:g} years around the label (label distribution learning, "
                        "DLDL-v2); the served network keeps its two outputs")
    p.add_argument("--consistency", type=float, default=0.0,
                   help="also train the network to answer the same for a face and a copy of it moved and rescaled "
                        f"by up to {STEADY_JITTER * 100:.0f}%% (a box a pixel or two off): this weight times the age and "
                        "P(female) gaps between the two is added to the loss (0: off). Each step runs the network "
                        "on twice the faces")
    p.add_argument("--consistency-gap", choices=["served", "training"], default="served",
                   help="served (default): the gap between the two answers as the app would give them (dropout off), "
                        "one more pass a step; training: between the training-mode answers, whose independent dropout "
                        "makes most of the gap (docs/training.md)")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="blend each training face with the face of the nearest age in its batch (C-Mixup: partners "
                        "of close labels, so that a blend's age stays an age), the share drawn from Beta(ALPHA, "
                        "ALPHA) per face; images, targets and sample weights blend alike (0: off)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--limit", type=int, default=0, help="use only about N images per split (smoke tests)")
    from training.common import add_machine_options
    add_machine_options(p)
    return p.parse_args(argv)


def age_band_weights(age: np.ndarray) -> np.ndarray:
    """Square-root inverse frequency of each sample's decade (few children and 70+), mean 1."""
    decade = np.minimum(age.astype(int) // 10, 8)
    counts = np.bincount(decade, minlength=9).astype(np.float64)
    w = np.sqrt(counts.sum() / np.maximum(counts, 1))[decade]
    return (w / w.mean()).astype(np.float32)


def group_weights(race: np.ndarray, gender: np.ndarray) -> np.ndarray:
    """Square-root inverse frequency of each sample's race x gender group (race -1 = unknown: its own
    group), mean 1."""
    group = (race.astype(int) + 1) * 2 + gender.astype(int)
    counts = np.bincount(group).astype(np.float64)
    w = np.sqrt(counts.sum() / np.maximum(counts, 1))[group]
    return (w / w.mean()).astype(np.float32)


def teacher_answers(model_path: Path, x: np.ndarray, run_dir: Path, batch: int = 256) -> dict:
    """The teacher's age and P(female) for every training face, through the app's own model wrapper
    (so with the test-time views its card names); cached in the run folder for resumes."""
    cache = run_dir / "teacher.npz"
    if cache.exists():
        z = np.load(cache)
        if len(z["age"]) == len(x):
            return {"age": z["age"], "gender": z["gender"]}
    import keras
    from app.pipeline.predict import LoadedModel, ModelCard
    card = ModelCard.read(Path(model_path).with_suffix(".json"))
    wrapped = LoadedModel(card, keras.models.load_model(model_path, compile=False))
    parts = [wrapped(x[i:i + batch]) for i in range(0, len(x), batch)]
    out = {k: np.concatenate([p[k] for p in parts]).astype(np.float32).reshape(-1, 1) for k in ("age", "gender")}
    np.savez(cache, **out)
    return out


def age_distribution_targets(age: np.ndarray, bins: int, sigma: float = AGE_SIGMA) -> np.ndarray:
    """Each age as a Gaussian over the one-year bins 0..bins-1 (ages past the last bin sit on it), summing to 1."""
    centres = np.arange(bins, dtype=np.float32)
    d = centres[None, :] - np.minimum(np.asarray(age, np.float32), bins - 1)[:, None]
    t = np.exp(-0.5 * (d / sigma) ** 2)
    return (t / t.sum(axis=1, keepdims=True)).astype(np.float32)


def same_side_of_half(y_true, y_pred):
    """Gender accuracy that also holds for soft (distilled) targets: whether P(female) falls on the same side
    of 0.5 as the target. Keras's "accuracy" compares the rounded answer with the target itself, and so read
    0 for targets such as 0.8."""
    import keras
    return keras.ops.cast(keras.ops.equal(y_true > 0.5, y_pred > 0.5), "float32")


def mixup_close_ages(alpha: float, seed: int):
    """A tf.data map over augmented batches (images, targets, weights): each face blended with its
    neighbour in the batch's age order (pairs 1-2, 3-4, ... of the sorted ages swap partners), the face's
    share lam ~ Beta(alpha, alpha). Plain mixup between random faces would train the ages of faces no
    one has (a child blended with an 80-year-old "is" 40); partners of close labels keep a blend's age
    believable (C-Mixup, Yao et al. 2022), while genders still blend into soft targets."""
    import tensorflow as tf

    def mix(images, targets, weights):
        n = tf.shape(images)[0]          # batches are whole (drop_remainder) and even
        order = tf.argsort(targets["age"][:, 0])
        swapped = tf.reshape(tf.reverse(tf.reshape(order, (-1, 2)), axis=[1]), (-1,))
        partner = tf.gather(swapped, tf.math.invert_permutation(order))
        g1 = tf.random.gamma((n,), alpha, seed=seed)
        g2 = tf.random.gamma((n,), alpha, seed=seed + 1)
        lam = g1 / tf.maximum(g1 + g2, 1e-12)

        def blend(a):
            a = tf.cast(a, tf.float32)
            shaped = tf.reshape(lam, [-1] + [1] * (len(a.shape) - 1))
            return shaped * a + (1.0 - shaped) * tf.gather(a, partner)
        return blend(images), {k: blend(v) for k, v in targets.items()}, blend(weights)
    return mix


def distribution_trainer(network):
    """The network with its age_bins softmax as a third output (the same layers and weights), so that it can
    be fitted to the label distribution; only the two-output network is ever saved (training.common.OnNetwork)."""
    import keras
    return keras.Model(network.inputs, {**network.output, "age_bins": network.get_layer("age_bins").output},
                       name=f"{network.name}_bins")


def consistency_trainer(network, served_gap: bool = True):
    """The network on a face and on a jittered copy of it, with shared weights: its answers on the face
    are trained against the labels, the gaps between the two answers (steady_age, steady_gender) against
    zero. Only the network itself is ever saved (training.common.OnNetwork).

    served_gap: the gap is taken between the two answers as served (dropout off, BatchNorm's running
    statistics), one more pass a step; otherwise between the two training-mode answers, whose independent
    dropout masks are part of the gap."""
    import keras

    class SteadyTrainer(keras.Model):
        def __init__(self):
            super().__init__(name=f"{network.name}_steady")
            self.network = network

        def call(self, inputs, training=False):
            face, moved = inputs
            a = self.network(face, training=training)
            if served_gap:     # outside training `a` already is the served answer (validation)
                seen = self.network(face, training=False) if training else a
                seen_moved = self.network(moved, training=False)
            else:
                seen, seen_moved = a, self.network(moved, training=training)
            return {"age": a["age"], "gender": a["gender"],
                    "steady_age": keras.ops.abs(seen["age"] - seen_moved["age"]),
                    "steady_gender": keras.ops.abs(seen["gender"] - seen_moved["gender"])}
    return SteadyTrainer()


def input_size(arch: str, requested: int = 0) -> int:
    return requested or (128 if arch in ("baseline", "res") else INPUT_SIZE)


def main(argv=None):
    args = parse_args(argv)
    if args.mixup and args.consistency:
        raise SystemExit("--mixup and --consistency: pick one (a blend has no moved copy)")
    if args.consistency and args.age_head == "distribution":
        raise SystemExit("--consistency and --age-head distribution each train through their own wrapper: pick one")
    from training.common import configure_threads, set_seeds
    configure_threads(args.threads)
    set_seeds(args.seed)
    import keras
    from training import data_utk, models
    from training.common import (OnNetwork, checkpoint_callbacks, make_augmenter, make_jitter, paired_train_dataset,
                                 resume_point, train_dataset, verbosity, warm_start, write_json)

    size = input_size(args.arch, args.input_size)
    data = data_utk.load_utk(args.data_dir, size, MARGIN, args.crops, args.cache_dir, args.limit,
                             splits=("train", "val"), backgrounds=args.backgrounds)    # the test split is not read
    # Learn from, and validate on, the faces the app's detector finds (the others never reach a model).
    train, val = data_utk.detected_only(data["train"]), data_utk.detected_only(data["val"])
    weights = (np.ones(len(train["age"]), np.float32) if args.no_age_balance else age_band_weights(train["age"]))
    if args.group_balance:
        weights = weights * group_weights(train["race"], train["gender"])
        weights /= weights.mean()
    print(f"train {len(train['age'])}, val {len(val['age'])}; crops {args.crops}: {data['crop_stats']}", flush=True)

    args.run_dir.mkdir(parents=True, exist_ok=True)
    settings = {"task": "age_gender", "arch": args.arch, "input_size": size, "crops": args.crops,
                "epochs": args.epochs, "peak_lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                "group_balance": args.group_balance, "age_balance": not args.no_age_balance, "limit": args.limit,
                "backgrounds": args.backgrounds, "consistency": args.consistency,
                "consistency_gap": args.consistency_gap, "age_head": args.age_head, "mixup": args.mixup}
    # Registered before a compiled last.keras is read back, which names this metric.
    gender_accuracy = keras.metrics.MeanMetricWrapper(
        keras.saving.register_keras_serializable("visage")(same_side_of_half), name="accuracy")
    model, done = resume_point(args.run_dir, args.checkpoint, settings)
    if model is None:
        model = models.AGE_GENDER_ARCHS[args.arch](size, age_head=args.age_head)
        if args.init_from:
            warm_start(model, args.init_from, args.run_dir, sigma=AGE_SIGMA)
        model.summary(print_fn=lambda s, **k: print(s, flush=True))
    else:
        print(f"resuming {args.run_dir} after epoch {done}", flush=True)
    model, mixed = precision.train_in_chosen_precision(model, args.mixed_bfloat16, args.checkpoint, done, settings)
    network = model
    losses = {"age": keras.losses.MeanAbsoluteError(), "gender": keras.losses.BinaryCrossentropy()}
    loss_weights = {"age": AGE_LOSS_WEIGHT, "gender": 1.0}
    if args.consistency:       # trained inside a wrapper, always with a fresh optimizer (the network is saved alone)
        model = consistency_trainer(network, args.consistency_gap == "served")
        losses |= {"steady_age": keras.losses.MeanAbsoluteError(), "steady_gender": keras.losses.MeanAbsoluteError()}
        loss_weights |= {"steady_age": args.consistency * AGE_LOSS_WEIGHT, "steady_gender": args.consistency}
    by_bins = args.age_head == "distribution"
    if by_bins:                # trained through a three-output view of the network, with a fresh optimizer
        model = distribution_trainer(network)
        losses |= {"age_bins": keras.losses.CategoricalCrossentropy()}
        loss_weights |= {"age_bins": AGE_BINS_LOSS_WEIGHT}
    if args.consistency or by_bins or not getattr(model, "compiled", False):   # new, or rebuilt from the checkpoint
        model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=1e-4), loss=losses,
                      loss_weights=loss_weights, metrics={"age": ["mae"], "gender": [gender_accuracy]}, jit_compile=args.jit)

    augment = make_augmenter(rotation_deg=10, shift=0.08, zoom=0.1, seed=args.seed)
    targets = {"age": train["age"][:, None], "gender": train["gender"][:, None]}
    if args.distill_from:
        teacher = teacher_answers(args.distill_from, train["x"], args.run_dir)
        w = args.distill_weight
        targets = {k: ((1 - w) * targets[k] + w * teacher[k]).astype(np.float32) for k in targets}
        print(f"distilling from {args.distill_from} (weight {w}): teacher train age MAE "
              f"{np.abs(teacher['age'][:, 0] - train['age']).mean():.2f}, gender accuracy "
              f"{((teacher['gender'][:, 0] > 0.5) == (train['gender'] > 0.5)).mean():.4f}", flush=True)
    val_data = (val["x"], {"age": val["age"][:, None], "gender": val["gender"][:, None]})
    if by_bins:
        bins = int(network.get_layer("age_bins").units)
        targets["age_bins"] = age_distribution_targets(targets["age"][:, 0], bins)   # around the teacher's blend, if any
        val_data[1]["age_bins"] = age_distribution_targets(val["age"], bins)
    callbacks = checkpoint_callbacks(args.run_dir, "val_loss", "min", args.lr, args.epochs, train["x"],
                                     run_checkpoint=args.checkpoint, settings=settings, average_last=args.average_last,
                                     float32_files=mixed)
    if args.consistency or by_bins:     # the schedule acts on the trainer; the rest see the network alone
        assert isinstance(callbacks[0], keras.callbacks.LearningRateScheduler)
        callbacks = [callbacks[0], OnNetwork(callbacks[1:], network)]
    callbacks.append(watchdog.StallWatchdog(args.restart_if_stalled))
    if args.consistency:
        def with_gaps(n: int, labels: dict) -> dict:
            return labels | {"steady_age": np.zeros((n, 1), np.float32), "steady_gender": np.zeros((n, 1), np.float32)}
        ds = paired_train_dataset(train["x"], with_gaps(len(train["x"]), targets), weights, args.batch_size, augment,
                                  make_jitter(STEADY_JITTER, args.seed + 7), args.seed + done)
        # Val faces go in twice unmoved: their gaps are 0, and val_loss ranks epochs as without --consistency.
        val_data = ((val["x"], val["x"]), with_gaps(len(val["x"]), val_data[1]))
    else:
        mix = mixup_close_ages(args.mixup, args.seed + done) if args.mixup else None
        ds = train_dataset(train["x"], targets, weights, args.batch_size, augment, args.seed + done, mix)
    t0 = time.time()
    model.fit(ds, validation_data=val_data, epochs=min(args.epochs, args.stop_after_epoch or args.epochs),
              initial_epoch=done, callbacks=callbacks, verbose=verbosity())
    write_json(args.run_dir / "run.json", {
        "task": "age_gender", "arch": args.arch, "crops": args.crops, "input_size": size, "margin": MARGIN,
        "age_balance": not args.no_age_balance, "group_balance": args.group_balance, "backgrounds": args.backgrounds,
        "consistency": args.consistency, "age_head": args.age_head, "mixup": args.mixup, "epochs": args.epochs, "batch_size": args.batch_size,
        "peak_lr": args.lr, "seed": args.seed, "limit": args.limit, "train_images": int(len(train["age"])),
        "crop_stats": data["crop_stats"], "data_dir": str(args.data_dir),
        "init_from": str(args.init_from) if args.init_from else None,
        "distill_from": str(args.distill_from) if args.distill_from else None,
        "distill_weight": args.distill_weight if args.distill_from else None,
        "precision_from_epoch": settings["precision_from_epoch"], "last_session_seconds": time.time() - t0})


if __name__ == "__main__":
    main()
