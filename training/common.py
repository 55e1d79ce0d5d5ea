"""Shared training machinery: seeds, augmentation, input batches, LR schedule, checkpoints, resume."""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from app.card_summary import training_in_all


def add_machine_options(p) -> None:
    """The training commands' options for how a run uses this machine, not what it learns: none of them is
    run-defining, so a run resumed on another machine may set them differently."""
    from training import precision, watchdog
    p.add_argument("--threads", type=int, default=0, help="CPU threads for TensorFlow (0 = all)")
    p.add_argument("--jit", action="store_true",
                   help="XLA-compile the train step (measured 47 vs 124 images/s per core here, so off by default)")
    precision.add_option(p)
    watchdog.add_option(p)


def set_seeds(seed: int) -> None:
    import keras
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


def make_augmenter(rotation_deg: float, shift: float, zoom: float, seed: int):
    """Random flip, small rotation/shift/zoom and brightness/contrast, applied to a batch in [0, 1]."""
    import keras
    from keras import layers
    geometric = keras.Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(rotation_deg / 360.0, fill_mode="reflect", seed=seed + 1),
        layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=seed + 2),
        layers.RandomZoom((-zoom, zoom), fill_mode="reflect", seed=seed + 3),
    ])

    if keras.backend.backend() != "tensorflow":      # PyTorch or JAX on a lent GPU: the same steps in keras.ops
        from keras import ops
        draws = keras.random.SeedGenerator(seed + 4)

        def augment(x):
            x = geometric(x, training=True)
            n = ops.shape(x)[0]
            contrast = keras.random.uniform((n, 1, 1, 1), 0.8, 1.2, seed=draws)
            brightness = keras.random.uniform((n, 1, 1, 1), -0.1, 0.1, seed=draws)
            mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
            return ops.clip((x - mean) * contrast + mean + brightness, 0.0, 1.0)
        if keras.backend.backend() == "jax":
            return compiled_augmenter(augment, [l.generator for l in geometric.layers] + [draws])
        return built_once(augment)
    import tensorflow as tf

    def augment(x):
        x = geometric(x, training=True)
        n = tf.shape(x)[0]
        contrast = tf.random.uniform((n, 1, 1, 1), 0.8, 1.2)
        brightness = tf.random.uniform((n, 1, 1, 1), -0.1, 0.1)
        mean = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
        return tf.clip_by_value((x - mean) * contrast + mean + brightness, 0.0, 1.0)
    return augment


def built_once(augment):
    """`augment`, its first call (which builds its layers) made by one worker thread while the others wait."""
    import threading
    lock, built = threading.Lock(), []

    def first_call_alone(x):
        if not built:
            with lock:
                if not built:
                    y = augment(x)
                    built.append(True)
                    return y
        return augment(x)
    return first_call_alone


def compiled_augmenter(augment, generators: list):
    """`augment` as one compiled JAX function (step by step it dispatches ~100 small operations per batch,
    ~100 ms on a CPU): the random generators' states go in and come out explicitly (keras.StatelessScope),
    so each call draws new numbers as the step-by-step version does. A lock keeps the states in order
    when worker threads call it."""
    import threading
    import jax
    import keras
    states = [g.state for g in generators]

    @jax.jit
    def step(x, values):
        with keras.StatelessScope(state_mapping=list(zip(states, values))) as scope:
            y = augment(x)
        return y, [scope.get_current_value(s) for s in states]

    lock = threading.Lock()

    def compiled(x):
        with lock:
            y, values = step(x, [s.value for s in states])
            for s, v in zip(states, values):
                s.assign(v)
        return y
    return compiled


def train_dataset(x, targets, weights, batch_size: int, augment, seed: int, mix=None):
    """Shuffled, augmented, prefetched batches. `targets` may be an array or a dict of arrays. `mix`: a
    function of an augmented batch (images, targets, weights) that blends its examples (mixup)."""
    import keras
    if keras.backend.backend() != "tensorflow":
        if mix is not None:
            raise SystemExit("mixup runs only on the TensorFlow backend")
        return ShuffledBatches(x, targets, weights, batch_size, augment, seed)
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((x, targets, weights))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda a, b, c: (augment(a), b, c), num_parallel_calls=tf.data.AUTOTUNE)
    if mix is not None:
        ds = ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


class ShuffledBatches:
    """train_dataset for a backend without tf.data (PyTorch or JAX on a lent GPU): a keras PyDataset of the same
    batches (reshuffled every epoch, the last partial batch dropped, `augment` applied to each batch),
    prepared by worker threads while the accelerator trains on the previous ones."""
    def __new__(cls, x, targets, weights, batch_size: int, augment, seed: int, workers: int = 4):
        import keras

        class _Batches(keras.utils.PyDataset):
            def __init__(self):
                super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=16)
                self.rng = np.random.default_rng(seed)
                self.order = self.rng.permutation(len(x))

            def __len__(self):
                return len(x) // batch_size

            def __getitem__(self, i):
                idx = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
                picked = ({k: v[idx] for k, v in targets.items()} if isinstance(targets, dict) else targets[idx])
                # as NumPy, the form every backend's PyDataset adapter takes (one 0.6 MB copy a batch)
                return keras.ops.convert_to_numpy(augment(x[idx])), picked, weights[idx]

            def on_epoch_end(self):
                self.order = self.rng.permutation(len(x))
        return _Batches()


def make_jitter(share: float, seed: int):
    """A small random move (up to `share` of the side each way) and rescale (1 ± share) of a batch,
    bilinear: what a detector's box that strays by a pixel or two does to a face crop."""
    import keras
    from keras import layers
    jitter = keras.Sequential([
        layers.RandomTranslation(share, share, fill_mode="reflect", interpolation="bilinear", seed=seed),
        layers.RandomZoom((-share, share), fill_mode="reflect", interpolation="bilinear", seed=seed + 1),
    ])
    return lambda x: jitter(x, training=True)


def paired_train_dataset(x, targets, weights, batch_size: int, augment, jitter, seed: int):
    """train_dataset's batches as pairs: each augmented image and a jittered copy of it, ((x, x'), targets,
    weights), for a model trained to give both the same answer."""
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((x, targets, weights))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size, drop_remainder=True)

    def pair(a, b, c):
        a = augment(a)
        return (a, jitter(a)), b, c
    return ds.map(pair, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class OnNetwork:
    """Callbacks that save, average or recalibrate a network, handed that network while fit() trains a
    wrapper around it (a consistency trainer): they see the network, not the wrapper; their order is kept."""
    HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_test_begin", "on_test_end")

    def __new__(cls, callbacks: list, network):
        import keras

        class _OnNetwork(keras.callbacks.Callback):
            def set_model(self, model):
                super().set_model(model)
                for c in callbacks:
                    c.set_model(network)

            def set_params(self, params):
                super().set_params(params)
                for c in callbacks:
                    c.set_params(params)

        def forward(hook):
            def call_each(self, *args, **kwargs):
                for c in callbacks:
                    getattr(c, hook)(*args, **kwargs)
            return call_each
        for hook in cls.HOOKS:
            setattr(_OnNetwork, hook, forward(hook))
        return _OnNetwork()


def cosine_lr(peak: float, epochs: int, warmup: int = 2):
    """Epoch → learning rate: linear warm-up, then cosine decay to 1% of peak."""
    def lr(epoch, _current=None):
        if epoch < warmup:
            return peak * (epoch + 1) / warmup
        t = (epoch - warmup) / max(1, epochs - warmup)
        return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
    return lr


class EpochTimer:
    """Adds seconds per epoch to the logs (so the CSV log records the training wall time)."""
    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.time()

            def on_epoch_end(self, epoch, logs=None):
                logs["epoch_seconds"] = time.time() - self.t0
        return _Timer()


class BatchNormRecalibration:
    """Before each epoch's validation, re-estimate BatchNorm statistics on clean training images.

    Training itself is unchanged (it normalises with batch statistics); what changes is that the
    per-epoch validation numbers, best.keras and last.keras describe the model as it will be served.
    Without it the logged val age MAE swung between 6.8 and 21 years from epoch to epoch.
    """
    def __new__(cls, x_clean: np.ndarray, batches: int = 40, seed: int = 0):
        import keras

        class _Recalibrate(keras.callbacks.Callback):
            def on_test_begin(self, logs=None):      # fit() validates through evaluate(): runs first
                recalibrate_batchnorm(self.model, x_clean, batches=batches, seed=seed)
        return _Recalibrate()


def checkpoint_callbacks(run_dir: Path, monitor: str, mode: str, peak_lr: float, epochs: int,
                         x_clean: np.ndarray | None = None, run_checkpoint: Path | None = None,
                         settings: dict | None = None, average_last: float = 0.0, float32_files: bool = False):
    """Per-epoch checkpoints: last.keras (for resume, with optimizer state), best.keras (by `monitor`),
    with `average_last` > 0 swa.keras (the mean of the weights of that share of the schedule's last
    epochs: WeightAverage), and with `run_checkpoint` the run's one committable file (save_run_checkpoint).

    With `x_clean` (un-augmented training images) BatchNorm statistics are re-estimated before each
    validation, so `monitor` ranks epochs the way evaluation will. float32_files: the model trains in mixed
    bfloat16, and last.keras and best.keras get float32 layers again once written (training.precision)."""
    import keras
    from training.precision import Float32Files
    # On resume, best.keras must only be replaced by an epoch better than the ones already logged.
    logged = [r[monitor] for r in read_log(run_dir)] if (run_dir / "log.csv").exists() else []
    best_so_far = (max if mode == "max" else min)(logged) if logged else None
    average = WeightAverage(run_dir, first_averaged_epoch(average_last, epochs)) if average_last > 0 else None
    return [
        keras.callbacks.LearningRateScheduler(cosine_lr(peak_lr, epochs)),
        EpochTimer(),
        *([BatchNormRecalibration(x_clean)] if x_clean is not None else []),
        keras.callbacks.ModelCheckpoint(run_dir / "last.keras"),
        keras.callbacks.ModelCheckpoint(run_dir / "best.keras", monitor=monitor, mode=mode, save_best_only=True,
                                        initial_value_threshold=best_so_far),
        *([Float32Files([run_dir / "last.keras", run_dir / BEST_FILE])] if float32_files else []),
        *([average] if average else []),
        *([RunCheckpointCallback(run_checkpoint, settings or {}, run_dir, average, monitor, mode)]
          if run_checkpoint else []),
        keras.callbacks.CSVLogger(run_dir / "log.csv", append=True),
    ]


# --- Stochastic weight averaging over the schedule's tail ----------------------------------------------

AVERAGE_FILE, AVERAGE_RECORD = "swa.keras", "swa.json"
BEST_FILE = "best.keras"


def first_averaged_epoch(share: float, epochs: int) -> int:
    """The first epoch (1-based) of the last `share` of an `epochs`-long schedule."""
    return max(1, epochs - int(round(share * epochs)) + 1)


def save_weight_average(run_dir: Path, model, weights: list, record: dict) -> None:
    """swa.keras (the network with the averaged weights, no optimizer) and swa.json (which epochs)."""
    export_inference_model(model, run_dir / AVERAGE_FILE, weights)
    write_json(run_dir / AVERAGE_RECORD, record)


def chosen_epoch(run_dir: Path, chosen: str, scores: list[float], higher: bool) -> int | None:
    """The epoch a chosen checkpoint file stands for (the card's version): last.keras the last one logged,
    swa.keras the last epoch of its average, best.keras the best by the monitored `scores`."""
    if not scores:
        return None
    if chosen == "last.keras":
        return len(scores)
    average = weight_average_record(run_dir, chosen)
    if average:
        return int(average["through_epoch"])
    return int(np.argmax(scores) if higher else np.argmin(scores)) + 1


def weight_average_record(run_dir: Path, chosen: str) -> dict | None:
    """For the card: which epochs the chosen swa.keras averages (None for the other files)."""
    if chosen != AVERAGE_FILE or not (run_dir / AVERAGE_RECORD).exists():
        return None
    return json.loads((run_dir / AVERAGE_RECORD).read_text())


def load_weight_average(run_dir: Path) -> tuple[list | None, dict]:
    """(weights, record) of the run's average so far, or (None, {}) when it has none."""
    import keras
    if not ((run_dir / AVERAGE_FILE).exists() and (run_dir / AVERAGE_RECORD).exists()):
        return None, {}
    record = json.loads((run_dir / AVERAGE_RECORD).read_text())
    return keras.models.load_model(run_dir / AVERAGE_FILE, compile=False).get_weights(), record


class WeightAverage:
    """From epoch `first_epoch` on, the running mean of the weights after each epoch (SWA, Izmailov et al.
    2018, over the low-learning-rate tail of the cosine schedule), in swa.keras; evaluation offers it beside
    best.keras and last.keras and recalibrates its BatchNorm statistics like theirs. Continues a resumed
    run's average when that average ends at the epoch before; otherwise starts afresh (and says so)."""
    def __new__(cls, run_dir: Path, first_epoch: int):
        import keras

        class _Average(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.weights, self.record = load_weight_average(run_dir)

            def on_epoch_end(self, epoch, logs=None):
                done = epoch + 1
                if done < first_epoch:
                    return
                if self.weights is not None and self.record.get("through_epoch") != done - 1:
                    print(f"swa: the saved average ends at epoch {self.record.get('through_epoch')}, not {done - 1}: "
                          "starting it again", flush=True)
                    self.weights, self.record = None, {}
                current = self.model.get_weights()
                n = int(self.record.get("epochs_averaged", 0))
                self.weights = ([np.array(w, np.float32) for w in current] if self.weights is None else
                                [a + (np.asarray(w, np.float32) - a) / (n + 1) for a, w in zip(self.weights, current)])
                self.record = {"first_epoch": self.record.get("first_epoch", done), "through_epoch": done,
                               "epochs_averaged": n + 1}
                save_weight_average(run_dir, self.model, self.weights, self.record)
        return _Average()


def resume_point(run_dir: Path, checkpoint: Path | None = None, settings: dict | None = None
                 ) -> tuple[object | None, int]:
    """(model, epochs done) if the run can continue, else (None, 0).

    From `run_dir` (last.keras with its optimizer state, log.csv) when it is at least as far as the
    committed `checkpoint`; otherwise from that one file (a new machine, a new clone): the network and
    its weights, with log.csv rebuilt from the rows it carries. A model from the checkpoint comes back
    uncompiled (its optimizer starts afresh; the learning-rate schedule continues by epoch)."""
    import keras
    log, last = run_dir / "log.csv", run_dir / "last.keras"
    local_done = 0
    if log.exists() and last.exists():
        with open(log) as f:
            local_done = len(list(csv.DictReader(f)))
    if checkpoint is not None and Path(checkpoint).exists():
        weights, meta = load_run_checkpoint(checkpoint)
        check_same_run(meta, settings or {}, checkpoint)
        if meta["epochs_done"] > local_done:
            model = keras.models.model_from_json(meta["model_json"])
            model.set_weights(weights)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_log(run_dir, meta["log"])
            if meta.get("weight_average") and meta["average_weights"]:
                save_weight_average(run_dir, model, meta["average_weights"], meta["weight_average"])
            if meta["best_weights"]:
                export_inference_model(model, run_dir / BEST_FILE, meta["best_weights"])
            print(f"resuming from {checkpoint} after epoch {meta['epochs_done']} of {meta['settings'].get('epochs')}",
                  flush=True)
            return model, meta["epochs_done"]
    if local_done:
        return keras.models.load_model(last), local_done
    return None, 0


# --- One file per run, committed between working sessions -------------------------------------------

CHECKPOINT_FORMAT = 1
MAX_CHECKPOINT_BYTES = 10 * 1024 * 1024
# Settings that fix what the run is: resuming with other values would be a different run.
RUN_DEFINING = ("task", "arch", "epochs", "peak_lr", "batch_size", "labels", "input_size", "crops", "seed",
                "group_balance", "age_balance", "backgrounds", "consistency", "consistency_gap", "age_head", "mixup")


def save_run_checkpoint(path: Path, model, settings: dict, log_rows: list[dict],
                        average: tuple[list, dict] | None = None, best: tuple[list, int] | None = None
                        ) -> tuple[int, bool]:
    """Write the run's one checkpoint file (weights as float32, the network's definition, the settings
    that define the run and every epoch's log row; its layers float32 even where the run trains in mixed
    bfloat16); replaced atomically so a killed process never leaves half a file. No optimizer state:
    AdamW's two moments would triple the size. `average`: the run's weight average so far and its record
    (WeightAverage), kept as float16 to stay under 10 MB.
    `best`: the best epoch's weights and that epoch (1-based), kept as float16 only while the file stays
    within MAX_CHECKPOINT_BYTES (the 1.2M-parameter networks' files: yes; the 1.58M ResNets' with an
    average: no), so that an evaluation on another machine can still offer best.keras. Returns the file's
    bytes and whether the best epoch's weights are in it."""
    from training.precision import float32_json
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": CHECKPOINT_FORMAT, "settings": settings, "epochs_done": len(log_rows), "log": log_rows,
            "wall_seconds_in_all": float(sum(r.get("epoch_seconds", 0.0) for r in log_rows)),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model_json": float32_json(model.to_json()), "weight_average": average[1] if average else None,
            "best_epoch": None}
    arrays = {f"w{i:04d}": np.asarray(w, np.float32) for i, w in enumerate(model.get_weights())}
    if average:
        arrays |= {f"a{i:04d}": np.asarray(w, np.float16) for i, w in enumerate(average[0])}
    best_arrays = {f"b{i:04d}": np.asarray(w, np.float16) for i, w in enumerate(best[0])} if best else {}
    size = write_checkpoint_file(path, {**meta, "best_epoch": best[1]} if best else meta, arrays | best_arrays)
    best_kept = bool(best)
    if best and size > MAX_CHECKPOINT_BYTES:     # the best epoch's weights do not fit: keep the rest
        size, best_kept = write_checkpoint_file(path, meta, arrays), False
    if size > MAX_CHECKPOINT_BYTES:
        print(f"warning: {path} is {size / 2**20:.1f} MB, over the {MAX_CHECKPOINT_BYTES / 2**20:.0f} MB "
              "a committed checkpoint may take", flush=True)
    return size, best_kept


def write_checkpoint_file(path: Path, meta: dict, arrays: dict) -> int:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)
    return path.stat().st_size


def load_run_checkpoint(path: Path) -> tuple[list, dict]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: checkpoint format {meta.get('format')}, this code reads {CHECKPOINT_FORMAT}")
        weights = [z[k] for k in sorted(k for k in z.files if k.startswith("w"))]
        meta["average_weights"] = [z[k].astype(np.float32) for k in sorted(k for k in z.files if k.startswith("a"))]
        meta["best_weights"] = [z[k].astype(np.float32) for k in sorted(k for k in z.files if k.startswith("b"))]
    return weights, meta


def check_same_run(meta: dict, settings: dict, path: Path) -> None:
    saved = meta["settings"]
    differ = {k: (saved.get(k), settings[k]) for k in RUN_DEFINING
              if k in settings and k in saved and saved[k] != settings[k]}
    if differ:
        listed = ", ".join(f"{k}: checkpoint {a!r}, asked {b!r}" for k, (a, b) in differ.items())
        raise SystemExit(f"{path} is a different run ({listed}); pass the same options to resume it, "
                         "or another --checkpoint to start a new run")


def write_log(run_dir: Path, rows: list[dict]) -> None:
    """log.csv as Keras' CSVLogger writes it (epoch first, then the keys sorted), so it appends after."""
    keys = sorted({k for r in rows for k in r if k != "epoch"})
    with open(run_dir / "log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["epoch", *keys])
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({"epoch": i, **{k: r.get(k, "") for k in keys}})


class RunCheckpointCallback:
    """After every epoch (validation included), rewrite the run's checkpoint file with this epoch's row
    (and the weight average so far, when `average`, a WeightAverage callback that runs before it, has one;
    and the weights of the best epoch by `monitor`, carried on from best.keras on a resumed run)."""
    def __new__(cls, path: Path, settings: dict, run_dir: Path, average=None, monitor: str = "val_loss",
                mode: str = "min"):
        import keras

        class _Checkpoint(keras.callbacks.Callback):
            best: tuple[list, int] | None = None
            best_fits = True        # once the best weights did not fit, later epochs' files are written once

            def on_train_begin(self, logs=None):
                rows = read_log(run_dir) if (run_dir / "log.csv").exists() else []
                scores = [float(r.get(monitor, "nan")) for r in rows]
                if scores and not np.all(np.isnan(scores)) and (run_dir / BEST_FILE).exists():
                    epoch = int(np.nanargmax(scores) if mode == "max" else np.nanargmin(scores)) + 1
                    self.best = (keras.models.load_model(run_dir / BEST_FILE, compile=False).get_weights(), epoch)

            def on_epoch_end(self, epoch, logs=None):
                rows = read_log(run_dir) if (run_dir / "log.csv").exists() else []
                rows = rows[:epoch] + [{k: float(v) for k, v in (logs or {}).items()}]
                *before, now = [float(r.get(monitor, "nan")) for r in rows]
                better = np.greater if mode == "max" else np.less        # strictly, as ModelCheckpoint
                if not np.isnan(now) and all(better(now, b) or np.isnan(b) for b in before):
                    self.best = (self.model.get_weights(), epoch + 1)
                kept = (average.weights, average.record) if average is not None and average.weights is not None else None
                offered = self.best if self.best_fits else None
                size, best_kept = save_run_checkpoint(path, self.model, settings, rows, kept, offered)
                self.best_fits = best_kept or offered is None
                print(f"checkpoint {path}: epoch {epoch + 1}, {size / 2**20:.1f} MB", flush=True)
        return _Checkpoint()


def warm_start_network(path: Path):
    """The model at `path`; of a shipped ensemble, its first (newest) network."""
    import keras
    from training.ensemble import members_of
    return members_of(keras.models.load_model(path, compile=False))[0]


def bins_from_regression(kernel: np.ndarray, bias: np.ndarray, scale: float, offset: float, bins: int,
                         sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights of a softmax over one-year bins that answers a Gaussian of `sigma` years around the age a
    regression head reads (a = scale * (h @ kernel + bias) + offset). Its logits k*a/sigma^2 - k^2/(2 sigma^2)
    drop the a^2 term that every bin shares, so they are linear in h: the distribution head starts where
    the regression stood instead of from noise that would shake the trained trunk."""
    k = np.arange(bins, dtype=np.float64)
    new_kernel = np.outer(kernel[:, 0] * scale, k) / sigma ** 2
    new_bias = k * (scale * bias[0] + offset) / sigma ** 2 - k ** 2 / (2 * sigma ** 2)
    return new_kernel.astype(np.float32), new_bias.astype(np.float32)


def transfer_weights(source, model, sigma: float | None = None) -> list[str]:
    """Copy `source`'s weights into `model`: all of them when the two are the same network; else the trunk
    (the weighted layers the two share from the input on, shape for shape), the layers both name alike
    (gender), and a regression age head turned into `model`'s one-year bins (bins_from_regression).
    Returns the names of `model`'s layers that start fresh."""
    mine = [layer for layer in model.layers if layer.weights]
    theirs = [layer for layer in source.layers if layer.weights]
    shapes = lambda layer: [tuple(w.shape) for w in layer.weights]
    if [shapes(a) for a in mine] == [shapes(b) for b in theirs]:
        model.set_weights(source.get_weights())
        return []
    pairs = {}
    for a, b in zip(mine, theirs):
        if shapes(a) != shapes(b):
            break
        pairs[a.name] = b
    names = {layer.name: layer for layer in theirs}
    pairs |= {a.name: names[a.name] for a in mine if a.name in names and shapes(a) == shapes(names[a.name])
              and a.name not in pairs}
    for a in mine:
        if a.name in pairs:
            a.set_weights(pairs[a.name].get_weights())
    if "age_bins" in [a.name for a in mine] and "age_bins" not in pairs:
        # the regression's Dense(1): the one weighted layer of the source left over (the Rescaling named
        # "age" after it holds no weights, and carries any linear correction an evaluation folded in)
        left = [b for b in theirs if all(b is not p for p in pairs.values())]
        if sigma is None or len(left) != 1 or tuple(left[0].weights[0].shape)[-1] != 1:
            raise SystemExit(f"cannot start one-year age bins from {source.name}: no single regression head")
        age_dense, rescale = left[0], source.get_layer("age")
        kernel, bias = age_dense.get_weights()
        bins = model.get_layer("age_bins")
        bins.set_weights(list(bins_from_regression(kernel, bias, float(rescale.scale), float(rescale.offset),
                                                   int(bins.units), sigma)))
        pairs["age_bins"] = age_dense
    return [a.name for a in mine if a.name not in pairs and a.trainable_weights]


WARM_START_RECORD = "warm_start.json"


def warm_start(model, path: Path, run_dir: Path, sigma: float | None = None) -> None:
    """Start `model` from the weights at `path` (transfer_weights; sigma: the width of a one-year-bins age head
    started from a regression one), and record in the run folder what that model's card says
    now: the card beside it may be replaced (e.g. by shipping this very run) before the run is evaluated."""
    fresh = transfer_weights(warm_start_network(path), model, sigma)
    write_json(run_dir / WARM_START_RECORD, member_summaries([path]))
    print(f"warm start from {path}" + (f"; starting fresh: {', '.join(fresh)}" if fresh else ""), flush=True)


def warm_started_from(run_dir: Path, run: dict) -> dict:
    """For the card: the model the run started from, as recorded at its start (older runs: its card now)."""
    if (run_dir / WARM_START_RECORD).exists():
        return json.loads((run_dir / WARM_START_RECORD).read_text())
    return member_summaries([run["init_from"]]) if run.get("init_from") else {}


def read_run(run_dir: Path) -> dict:
    """The run's settings as its training command wrote them (run.json), which its model card repeats.

    A run carried to this machine by its checkpoint file has none until the training command has run
    here: it writes the file when it ends, at once for a finished run."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run the run's training command here once more, with its "
                         "--checkpoint (a finished run ends at once), to write it; then evaluate")
    return json.loads(path.read_text())


def read_log(run_dir: Path) -> list[dict]:
    return read_log_file(run_dir / "log.csv")


def read_log_file(path: Path) -> list[dict]:
    """A log.csv's rows as numbers (a run's own, or a copy under reports/training_logs/)."""
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]


def export_inference_model(model, path: Path, weights: list | None = None, float16: bool = False) -> None:
    """Save weights (the model's own, or `weights` for the same network) + architecture only (no optimizer
    state): what the app loads. float16: the weights stored as float16 (training/weights_float16.py)."""
    # from_config builds an uncompiled twin (clone_model keeps the optimizer: 3x the file size), in float32
    # where the model trains in mixed bfloat16.
    from training.precision import float32_config
    clean = model.__class__.from_config(float32_config(model.get_config()))
    clean.set_weights(model.get_weights() if weights is None else weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean.save(path)
    if float16:
        from training.weights_float16 import store_keras_float16
        store_keras_float16(path)


def verbosity() -> int:
    """Keras progress bar on a terminal, one line per epoch in a log file."""
    return 1 if sys.stdout.isatty() else 2


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=float) + "\n")


def configure_threads(threads: int) -> None:
    """Limit TensorFlow to `threads` CPU threads (0 = all), e.g. to train two models side by side.

    One inter-op thread: hundreds of float32 epochs ran so without a hang. Runs in mixed bfloat16 hung
    twice at an epoch's start, once with one inter-op thread and once with two (training/watchdog.py)."""
    if threads and os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def single_face_latency_ms(model, card: dict, calls: int = 200) -> dict:
    """Median, p10 and p90 of single-face calls after warm-up, through the app's own model wrapper.

    On a shared machine the median grows with the load (about 1.4-1.8x beside a training run);
    the fastest tenth of the calls stays near what the setup costs when it has the CPU."""
    import time
    from app.pipeline.predict import LoadedModel, ModelCard
    size = card["input"]["size"]
    wrapped = LoadedModel(ModelCard.from_dict(card), model)
    x = np.random.default_rng(0).random((1, size, size, 1), np.float32)
    for _ in range(min(20, calls)):        # warm-up: tracing and caches, no more of it than is timed after
        wrapped(x)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        wrapped(x)
        times.append((time.perf_counter() - t) * 1000)
    return {"median": float(np.median(times)), "p10": float(np.percentile(times, 10)),
            "p90": float(np.percentile(times, 90)), "calls": calls}


def predict_in_batches(model, x: np.ndarray, batch_size: int = 512):
    """model.predict(x, batch_size)'s answers from the same traced step, without the tf.data pipeline that
    model.predict builds (and traces) anew on every call: an evaluation makes dozens of calls, one per
    network and test-time view, and on small splits that pipeline cost more than the networks."""
    if len(x) == 0:
        return model.predict(x, batch_size=batch_size, verbose=0)
    import keras
    parts = [model.predict_on_batch(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return keras.tree.map_structure(lambda *a: np.concatenate(a), *parts)


CONTEXT_PAD = 0.3   # share of a face image's longer side added on every side, as the rest of a photo would be


def framed(image: np.ndarray, pad: float = CONTEXT_PAD) -> np.ndarray:
    """A face image (a dataset's crop) set in a frame of its own edge pixels, `pad` of its longer side wide."""
    import cv2
    p = int(round(pad * max(image.shape[:2])))
    return cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_REPLICATE)


# Pictures without people for training backgrounds, from scikit-image; none of the benches' backgrounds
# (bench/scenes_by_group.py, bench/steadiness.py), so that those still measure unseen surroundings.
BACKGROUND_PICTURES = ("moon", "page", "text", "colorwheel", "checkerboard", "stereo_motorcycle", "cell",
                       "microaneurysms")
# Shares of the kinds of background a training face gets (on_background).
BACKGROUND_KINDS = {"edges": 0.25, "flat": 0.25, "noise": 0.2, "picture": 0.3}


@functools.lru_cache(maxsize=1)
def background_pictures() -> tuple[np.ndarray, ...]:
    from skimage import data
    out = []
    for name in BACKGROUND_PICTURES:
        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image          # stereo_motorcycle: a pair
        image = np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]
        out.append(np.ascontiguousarray(image.astype(np.uint8)))
    return tuple(out)


def background(side: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A side x side RGB background of one kind: flat (a colour or grey with sensor noise), noise (blurred,
    at a random grain), picture (a random, rescaled, maybe mirrored piece of BACKGROUND_PICTURES)."""
    import cv2
    if kind == "flat":
        colour = rng.integers(0, 256, 3) if rng.random() < 0.5 else np.full(3, rng.integers(0, 256))
        out = colour[None, None, :] + rng.normal(0, rng.uniform(0, 4), (side, side, 3))
    elif kind == "noise":
        out = cv2.GaussianBlur(rng.uniform(0, 255, (side, side, 3)).astype(np.float32), (0, 0), rng.uniform(1, 8))
        out = 128 + (out - out.mean()) * rng.uniform(1, 6)
    else:
        pictures = background_pictures()
        picture = pictures[rng.integers(len(pictures))]
        scale = side / min(picture.shape[:2]) * rng.uniform(1.0, 2.5)
        big = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        y0, x0 = rng.integers(0, big.shape[0] - side + 1), rng.integers(0, big.shape[1] - side + 1)
        out = big[y0:y0 + side, x0:x0 + side]
        out = out[:, ::-1] if rng.random() < 0.5 else out
    return np.clip(out, 0, 255).astype(np.uint8)


def on_background(image: np.ndarray, rng: np.random.Generator, pad: float = CONTEXT_PAD) -> np.ndarray:
    """A face image (a dataset's crop) set on a random background `pad` of its longer side wide (training
    only): its own edge pixels as framed() does, or a flat, noise or picture background (BACKGROUND_KINDS),
    the seam softened over a few pixels. A face's box plus margin reaches beyond a UTKFace chip on every
    side, so a model trained on edge frames alone has never seen the walls and rooms that real photos
    put there."""
    import cv2
    kinds = list(BACKGROUND_KINDS)
    kind = kinds[rng.choice(len(kinds), p=list(BACKGROUND_KINDS.values()))]
    if kind == "edges":
        return framed(image, pad)
    h, w = image.shape[:2]
    p = int(round(pad * max(h, w)))
    side = max(h, w) + 2 * p
    canvas = background(side, kind, rng)
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    mask = np.zeros((side, side), np.float32)
    y0, x0 = (side - h) // 2, (side - w) // 2
    mask[y0:y0 + h, x0:x0 + w] = 1
    mask = cv2.GaussianBlur(mask, (0, 0), 0.01 * max(h, w) + 0.5) * mask      # soft only inside the edge
    face = cv2.copyMakeBorder(image[..., :3], y0, side - h - y0, x0, side - w - x0, cv2.BORDER_REPLICATE)
    out = face * mask[..., None] + canvas * (1 - mask[..., None])
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def face_in_frame(image: np.ndarray, pad: float = CONTEXT_PAD, detector: str | None = None,
                  background_rng: np.random.Generator | None = None) -> tuple[np.ndarray, tuple | None, float]:
    """A face image (a dataset's crop) set in a frame of its own edge pixels, and the face the app finds in
    it: the app's detector (default: the app's default, BlazeFace) and settings
    (app.pipeline.analyze.locate_faces), its largest box or None, and that face's roll (degrees; what
    preprocess.crop_face turns it upright by, as serving does; 0 for Haar and for no face).

    A tight crop fills its image; the Haar cascade needs some surroundings (sent as they are, about
    half of the UTKFace chips give no face), which any real photo has. The one way training cuts faces.
    background_rng: a random background instead (on_background; the training split's faces).
    """
    from app.pipeline.analyze import locate_faces
    from app.pipeline.detect import DEFAULT_DETECTOR
    detector = detector or DEFAULT_DETECTOR
    if background_rng is not None:
        frame = on_background(image, background_rng, pad)
        return (frame, *largest_face(locate_faces(frame, detector)))
    frame = framed(image, pad)
    key = (hashlib.blake2b(np.ascontiguousarray(frame), digest_size=16).digest(), frame.shape, detector)
    if key not in FOUND_IN_FRAME:
        if len(FOUND_IN_FRAME) >= 200_000:
            FOUND_IN_FRAME.clear()
        FOUND_IN_FRAME[key] = largest_face(locate_faces(frame, detector))
    return (frame, *FOUND_IN_FRAME[key])


# What the detector found in each framed image this process has looked at (the detector is deterministic):
# an evaluation reads the same val faces for its margin and its scores, and a rescore reads them again.
FOUND_IN_FRAME: dict = {}


def largest_face(found: tuple[list, list]) -> tuple[tuple | None, float]:
    boxes, rolls = found
    return (boxes[0] if boxes else None), (rolls[0] if rolls else 0.0)


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def recalibrate_batchnorm(model, x: np.ndarray, batches: int = 150, batch_size: int = 128, seed: int = 0) -> None:
    """Re-estimate BatchNorm statistics on clean (un-augmented) training images; weights unchanged.

    The moving statistics gathered during training describe augmented inputs
    with dropout on, which measurably biased validation predictions (UTKFace
    val age MAE 7.23 → 6.41 years, mean bias +3.3 → +1.2 years after this step).
    """
    import keras
    layers = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    momenta = [l.momentum for l in layers]
    dropouts = [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
    rates = [l.rate for l in dropouts]
    for l in dropouts:          # statistics as at inference: no dropout
        l.rate = 0.0
    rng = np.random.default_rng(seed)
    batches = min(batches, max(4, 4 * len(x) // batch_size))    # a small (smoke-test) set needs few passes
    for k in range(batches):
        for l in layers:        # momentum k/(k+1): the statistics become the plain mean over the k+1 batches
            l.momentum = k / (k + 1)
        model(x[rng.choice(len(x), min(batch_size, len(x)), replace=False)], training=True)
    for l, m in zip(layers, momenta):
        l.momentum = m
    for l, r in zip(dropouts, rates):
        l.rate = r


def pick_checkpoint(run_dir: Path, names: list[str], x_train: np.ndarray, val_score) -> tuple[object, str, dict]:
    """Recalibrate BatchNorm in each checkpoint, keep the one whose `val_score(model)` is highest.

    Selection still uses validation data only; the test split is not looked at.
    """
    import keras
    best, scores = None, {}
    for name in names:
        if not (run_dir / name).exists():
            continue
        model = keras.models.load_model(run_dir / name)
        recalibrate_batchnorm(model, x_train)
        scores[name] = float(val_score(model))
        if best is None or scores[name] > scores[best[1]]:
            best = (model, name)
    if best is None:
        raise FileNotFoundError(f"none of {names} in {run_dir}")
    return best[0], best[1], scores


def card_beside(model_path) -> dict:
    """The model card (<model>.json) beside a model file, or {} where there is none."""
    card_path = Path(model_path).with_suffix(".json")
    return json.loads(card_path.read_text()) if card_path.exists() else {}


def is_shipped(path) -> bool:
    """Whether `path` is a shipped model (or one network of it, training.split_ensemble): a card with a
    serving setup beside it."""
    return "serving_setup" in card_beside(path)


def shipped_from_run(run_dir: Path, model_path: Path) -> str | None:
    """The version of the shipped model at `model_path` (its card beside it) if it already serves a checkpoint
    of the run in `run_dir`, else None. Offered with --ensemble-with, such a model would put the run beside
    itself, and could ship its network twice over."""
    card = card_beside(model_path)
    members = card.get("serving_setup", {}).get("members", [])
    run = Path(run_dir).resolve()
    return card.get("version") if any(Path(m).resolve().parent == run for m in members) else None


def run_offered_beside_itself(run_dir: Path, ensemble_with) -> str | None:
    """A message if one of the --ensemble-with models already serves the run (make models evaluates each
    model's latest run beside the shipped model, which holds that run's network once it has shipped)."""
    for path in ensemble_with:
        if version := shipped_from_run(run_dir, path):
            return f"{run_dir} already serves in {path} (version {version}): not offered beside itself, nothing to evaluate"
    return None


def trained_on_backgrounds(path) -> bool:
    """Whether the run checkpoint at `path` learnt from faces set on backgrounds (--backgrounds), as the
    run.json of the run folder it sits in says."""
    run = Path(path).parent / "run.json"
    return bool(run.exists() and json.loads(run.read_text()).get("backgrounds"))


def load_other_members(paths, x_train: np.ndarray, x_train_backgrounds: np.ndarray | None = None) -> list[list]:
    """For --ensemble-with: each model's single networks, smallest first (a shipped ensemble joins as its
    networks, so that every network is one averaged view). A run's checkpoint gets its BatchNorm statistics
    re-estimated like the run's own, on the kind of faces it learnt from (x_train_backgrounds for a run on
    backgrounds). A shipped model's networks keep theirs: each was re-estimated on its own kind of faces when
    it was evaluated, and one card cannot say which network of a mixed ensemble learnt from which."""
    import keras
    from training.ensemble import members_of
    # smallest network first: ensemble_candidates adds them in this order, so a size budget keeps the small ones
    others = [sorted(members_of(keras.models.load_model(path, compile=False)), key=lambda net: net.count_params())
              for path in paths]
    for path, networks in zip(paths, others):
        if is_shipped(path):
            continue
        on_backgrounds = x_train_backgrounds is not None and trained_on_backgrounds(path)
        for net in networks:
            recalibrate_batchnorm(net, x_train_backgrounds if on_backgrounds else x_train)
    return others


def member_summaries(paths, this_run: Path | None = None) -> dict:
    """For models averaged into an ensemble (or warmed from): what their own cards (<model>.json beside them)
    say about them. A checkpoint of another run (no card; the run's log.csv beside it) is summed up from
    that run: its name, its epochs and their seconds, and what it was warm-started from. A checkpoint of
    `this_run` (the run being evaluated) is an earlier snapshot of the same training: no epochs of its own."""
    out = {}
    for path in paths:
        card = card_beside(path)
        folder = Path(path).parent
        if not card and (folder / "log.csv").exists() and (this_run is None or
                                                            folder.resolve() != Path(this_run).resolve()):
            out[str(path)] = run_summary(folder)
            continue
        training = card.get("training", {})
        # That model may itself continue an earlier one and average several networks: count all of it.
        epochs_in_all, seconds_in_all = training_in_all(card) if training else (0, 0.0)
        setup = card.get("serving_setup", {})
        networks = setup.get("networks", len(setup.get("members", [])) or 1)
        out[str(path)] = {"card": str(Path(path).with_suffix(".json")) if card else None,
                          "version": card.get("version"), "networks": networks,
                          "epochs_run": training.get("epochs_run"),
                          "wall_time_seconds": training.get("wall_time_seconds"),
                          "epochs_in_all": epochs_in_all, "wall_time_seconds_in_all": seconds_in_all}
    return out


def training_behind(earlier: dict) -> tuple[int, float]:
    """Epochs and seconds of training in all behind the models a network started from (member_summaries
    entries, each with its own lineage)."""
    return (sum(m.get("epochs_in_all", m.get("epochs_run")) or 0 for m in earlier.values()),
            sum(m.get("wall_time_seconds_in_all", m.get("wall_time_seconds")) or 0 for m in earlier.values()))


def run_summary(run_dir: Path) -> dict:
    """member_summaries' entry for one network of a run folder: the run's epochs and seconds from its
    log.csv, and its warm start as recorded when it began (warm_start.json)."""
    rows = read_log(run_dir)
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    earlier = warm_started_from(run_dir, run)
    seconds = float(sum(r.get("epoch_seconds", 0.0) for r in rows))
    epochs_before, seconds_before = training_behind(earlier)
    return {"card": None, "version": None, "run": run_dir.name, "networks": 1, "epochs_run": len(rows),
            "wall_time_seconds": seconds, "warm_started_from": earlier,
            "epochs_in_all": len(rows) + epochs_before, "wall_time_seconds_in_all": seconds + seconds_before}
