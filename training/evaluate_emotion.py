"""Score a trained emotion model on FER2013 PrivateTest and ship it with its model card.

    python -m training.evaluate_emotion --data-dir ../shared/data/fer2013 --run-dir runs/emotion

Protocol: every choice (best epoch, averaging with --ensemble-with models, the
mirrored test-time view, the class-prior correction of training/ensemble.py) is
made on PublicTest alone; PrivateTest is read only after the setup is fixed and
scored once, for the chosen setup and for its live profile (profile_augmentation). Writes
models/emotion.keras, models/emotion.json (the card the app reads) and
reports/emotion_confusion.png.

    # snapshot ensemble: the new run's checkpoint averaged with the model it was warm-started from
    python -m training.evaluate_emotion --data-dir ../shared/data/fer2013 --run-dir runs/emotion_ws \
        --ensemble-with runs/emotion_ws/init.keras
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np

from training.precision import run_precision


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--run-dir", type=Path, default=Path("runs/emotion"))
    p.add_argument("--checkpoints", default="best.keras,last.keras,swa.keras",
                   help="files in --run-dir to choose from (by PublicTest accuracy after BatchNorm recalibration)")
    p.add_argument("--cache-dir", type=Path, default=Path("cache"))
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--reports-dir", type=Path, default=Path("reports"))
    p.add_argument("--limit", type=int, default=0, help="evaluate on about N images per split (smoke tests)")
    p.add_argument("--ensemble-with", type=Path, nargs="*", default=[],
                   help="other trained emotion models to average with the chosen checkpoint, kept if PublicTest says so")
    p.add_argument("--no-prior-correction", action="store_true",
                   help="do not fit per-class logit shifts on PublicTest")
    p.add_argument("--min-public-accuracy", type=float, default=0.0,
                   help="a bar fixed before the run (e.g. the shipped model's PublicTest accuracy plus a margin): if "
                        "the chosen setup's PublicTest accuracy, as served (class shift included), is below it, "
                        "stop before PrivateTest is read and leave --models-dir untouched")
    p.add_argument("--latency-calls", type=int, default=200,
                   help="single-face calls timed for the card after 20 warm-up calls; fewer for a quick run, at "
                        "the cost of noisier times")
    p.add_argument("--max-size-mb", type=float, default=10.0,
                   help="serving setups whose weights take more than this are scored but not chosen "
                        "(the repository's 10 MB limit per file: with --ensemble-with, part of a shipped ensemble)")
    p.add_argument("--weights-float16", action="store_true",
                   help="store the served weights as float16, read back as float32 (2 bytes a weight instead of 4: "
                        "training/weights_float16.py); every candidate is rounded so before it is scored")
    p.add_argument("--rescore", action="store_true",
                   help="measure the shipped model in --models-dir as it is through the app's default path "
                        "(PrivateTest as photos) and add that to its card; nothing is chosen or trained")
    return p.parse_args(argv)


def log_prob_views(members: list, x: np.ndarray, flip: bool) -> list[np.ndarray]:
    """log P(class) of every member on every test-time view of x (app.pipeline.preprocess, as the served
    model averages them), view by view: [m1..mN on x] + [m1..mN on mirrored x]."""
    from app.pipeline.preprocess import test_time_views
    from training.common import predict_in_batches
    return [np.log(predict_in_batches(m, view) + 1e-12)
            for view in test_time_views(x, flip, 0) for m in members]


def served_probs(model, x: np.ndarray, flip: bool) -> np.ndarray:
    """What the app's model wrapper answers: the mean of the probabilities over the test-time views."""
    return np.mean([np.exp(v) for v in log_prob_views([model], x, flip)], axis=0)


def app_path_scores(model, data_dir: Path, split, margin: float, flip: bool) -> dict:
    """The split's images as photos through the app's default detect-and-crop path (data_fer.app_path_inputs),
    read by `model` with its views: faces found, and accuracy on them and per image (a miss is wrong)."""
    from training import data_fer
    from training.metrics import classification_report
    x, found = data_fer.app_path_inputs(data_dir, split, margin)
    report = classification_report(split.y[found], served_probs(model, x[found], flip).argmax(1), data_fer.EMOTIONS)
    return {"faces": f"each PrivateTest image upscaled {data_fer.APP_PATH_UPSCALE}x, set in a frame of its edge "
                     "pixels, its face found by the app's default detector, cut with this card's margin and "
                     "turned upright (data_fer.app_path_inputs); a face not found counts as wrong per image",
            "margin": margin, "images": int(len(found)), "detected": int(found.sum()),
            "detection_recall": float(found.mean()), "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
            "accuracy_per_image": float(report["accuracy"] * found.sum() / max(1, len(found)))}


def rescore(args) -> None:
    """The shipped model as it is (networks, views, class shift and margin unchanged): its PrivateTest
    images read again through the app's default path, added to its card as private_test_app_path."""
    import keras
    from training import data_fer
    from training.common import write_json
    from app.pipeline.predict import ModelCard
    fields, card = ModelCard.read_with_json(args.models_dir / "emotion.json")
    model = keras.models.load_model(args.models_dir / fields.file, compile=False)
    cache_dir = None if args.limit else args.cache_dir
    private = data_fer.load_fer(args.data_dir, cache_dir, limit=args.limit, splits=("private",))["private"]
    card["metrics"]["private_test_app_path"] = app = app_path_scores(model, args.data_dir, private,
                                                                     fields.margin, fields.flip_average)
    write_json(args.models_dir / "emotion.json", card)
    print(f"through the app's path (margin {app['margin']}): {app['detected']}/{app['images']} faces found, "
          f"accuracy {app['accuracy']:.4f} ({app['accuracy_per_image']:.4f} per image); card "
          f"{card['version']}: crops {card['metrics']['private_test']['accuracy']:.4f}")


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean())


def choose_serving_setup(candidates: dict, public, use_prior_correction: bool,
                         max_size_mb: float = float("inf"), bytes_per_weight: int = 4) -> dict:
    """Members, flip TTA and class shift with the best PublicTest accuracy (held-out for the shift), among
    the setups within max_size_mb (the checkpoint alone where none is).

    Each (members, flip) is judged as it would be served: with its class shift where that helps on held-out
    halves of PublicTest (two_fold_gain), else plain. The shift changes which views pay: on the shipped
    networks the mirror was worth -0.03 points before it and +0.7 after it (PublicTest, 2026-12-03).
    `candidates` maps a name to a list of members, each list a prefix of the longest one. Takes no
    PrivateTest data: nothing here can depend on it."""
    from training.ensemble import candidate_views, fit_class_shift, size_mb, softmax_with_shift, two_fold_gain
    every = max(candidates.values(), key=len)
    all_views = log_prob_views(every, public.x, flip=True)      # each model predicts each image once
    no_shift = np.zeros(all_views[0].shape[1])
    options = []
    for name, members in candidates.items():
        for flip in (False, True):
            views = candidate_views(all_views, len(members), len(every), flip)
            plain = accuracy(softmax_with_shift(views, no_shift), public.y)
            check = (two_fold_gain(fit_class_shift, softmax_with_shift, no_shift, views, public.y, accuracy)
                     if use_prior_correction else None)
            options.append({"members": name, "flip": flip, "views": views, "public_accuracy": plain,
                            "shift_check": check,
                            "score": max(plain, check["accuracy_with"]) if check and check["gain"] > 0 else plain})
    sizes = {name: size_mb(members, bytes_per_weight) for name, members in candidates.items()}
    within = [o for o in options if sizes[o["members"]] <= max_size_mb]
    best = max(within or [o for o in options if o["members"] == "checkpoint"], key=lambda o: o["score"])
    best["size_mb"], best["max_size_mb"] = sizes, max_size_mb
    best["public_accuracy_all"] = {f"{o['members']}, flip {o['flip']}": o["public_accuracy"] for o in options}
    best["public_accuracy_held_out_with_shift"] = {
        f"{o['members']}, flip {o['flip']}": o["shift_check"]["accuracy_with"] for o in options if o["shift_check"]}
    best["shift"] = no_shift
    if best["shift_check"] and best["shift_check"]["gain"] > 0:
        best["shift"] = fit_class_shift(best["views"], public.y)
    return best


def plot_confusion(cm: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.common import save_figure
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(argv)
    if args.rescore:
        return rescore(args)
    import keras

    from app.pipeline.predict import profile_augmentation
    from training import data_fer
    from training.common import (chosen_epoch, export_inference_model, load_other_members, member_summaries,
                                 pick_checkpoint, read_log, read_run, run_offered_beside_itself,
                                 single_face_latency_ms, warm_started_from,
                                 weight_average_record, write_json)
    from training.ensemble import average_models, ensemble_candidates, fold_class_shift, members_of, softmax_with_shift
    from training.weights_float16 import prepare_candidates, storage_label
    from training.metrics import classification_report

    run = read_run(args.run_dir)     # before anything is scored: the card repeats the run's settings
    if message := run_offered_beside_itself(args.run_dir, args.ensemble_with):
        print(message)
        return None

    # 1. Choose, on PublicTest only (PrivateTest is not loaded yet).
    cache_dir = None if args.limit else args.cache_dir
    data = data_fer.load_fer(args.data_dir, cache_dir, limit=args.limit, splits=("train", "public"))
    labels = data_fer.EMOTIONS
    public = data["public"]
    model, chosen, selection = pick_checkpoint(
        args.run_dir, args.checkpoints.split(","), data["train"].x,
        lambda m: accuracy(served_probs(m, public.x, flip=False), public.y))
    print(f"checkpoints, PublicTest accuracy after BatchNorm re-estimation: {json.dumps(selection)}; "
          f"chosen {chosen}", flush=True)
    candidates, models_used = ensemble_candidates(model, load_other_members(args.ensemble_with, data["train"].x))
    bytes_per_weight = prepare_candidates(candidates, args.weights_float16)
    setup = choose_serving_setup(candidates, public, not args.no_prior_correction, args.max_size_mb,
                                 bytes_per_weight)
    kept_others = args.ensemble_with[:models_used[setup["members"]]]     # the --ensemble-with models kept
    members, use_flip, shift = candidates[setup["members"]], setup["flip"], setup["shift"]
    public_acc = setup["public_accuracy_all"]
    served_public = accuracy(softmax_with_shift(setup["views"], shift), public.y)
    print(f"PublicTest accuracy before the class shift: {json.dumps(public_acc)}", flush=True)
    print(f"chosen on PublicTest: {setup['members']}, flip {use_flip}; served PublicTest accuracy {served_public:.4f}",
          flush=True)
    if served_public < args.min_public_accuracy:
        print(f"below --min-public-accuracy {args.min_public_accuracy}: not shipped, PrivateTest not read")
        return
    model = average_models(members, "visage_emotion_ensemble")
    fold_class_shift(model, "emotion", shift)     # the served model now outputs the corrected probabilities
    model_file = args.models_dir / "emotion.keras"
    export_inference_model(model, model_file, float16=args.weights_float16)
    model = keras.models.load_model(model_file, compile=False)      # score the file the app will load
    file_public = accuracy(served_probs(model, public.x, use_flip), public.y)
    print(f"PublicTest accuracy of {model_file} as written: {file_public:.4f}", flush=True)

    # 2. The setup is fixed: score it on PrivateTest, once (its views, and its live profile's).
    private = data_fer.load_fer(args.data_dir, cache_dir, limit=args.limit, splits=("private",))["private"]
    report = classification_report(private.y, served_probs(model, private.x, use_flip).argmax(1), labels)
    live_flip, _ = profile_augmentation(use_flip, 0, "live")
    live = classification_report(private.y, served_probs(model, private.x, live_flip).argmax(1), labels)

    # What a user gets: PrivateTest faces as photos through the app's default detect-and-crop path.
    margin = data_fer.serving_margin(data["train"].x)
    app_path = app_path_scores(model, args.data_dir, private, margin, use_flip)

    log = read_log(args.run_dir)
    plot_confusion(np.array(report["confusion_matrix"]["rows_true_cols_pred"]), labels,
                   f"FER2013 PrivateTest — accuracy {report['accuracy']:.1%}", args.reports_dir / "emotion_confusion.png")

    shipped_epoch = chosen_epoch(args.run_dir, chosen, [r["val_accuracy"] for r in log], higher=True)
    card = {
        "name": "emotion",
        "file": "emotion.keras",
        "version": dt.date.today().isoformat() + f"-e{shipped_epoch}",
        "date": dt.date.today().isoformat(),
        "task": "facial expression, 7 classes",
        "input": {"size": data_fer.INPUT_SIZE, "margin": margin, "channels": 1,
                  "preprocessing": "training and evaluation: the FER2013 48x48 grayscale images whole (the dataset's "
                                   "own face crops, not cut by our detector) through app.pipeline.preprocess."
                                   "prepare_face (histogram equalization, pixel/255); serving: the detector's box "
                                   "(BlazeFace by default, in the frame the Haar cascade draws) grown by this margin, "
                                   "measured so that a face the default detector finds is framed like a FER2013 image "
                                   "(data_fer.serving_margin), turned upright by its eyes, then the same steps"},
        "outputs": {"emotion": {"kind": "softmax", "labels": labels}},
        "test_time_augmentation": {"horizontal_flip": bool(use_flip)},
        "serving_setup": {
            "chosen_on": "PublicTest; PrivateTest was read only after this setup was fixed",
            "networks": len(members_of(model)),
            "members": [f"{args.run_dir / chosen}"] + [str(p) for p in kept_others],
            "public_test_accuracy": public_acc,
            "public_test_accuracy_as_served": served_public,
            "class_logit_shift": {label: float(v) for label, v in zip(labels, shift)},
            "class_shift_two_fold_check_on_public_test": setup.get("shift_check"),
            "public_test_accuracy_held_out_with_class_shift": setup.get("public_accuracy_held_out_with_shift"),
            "public_test_accuracy_of_the_written_file": file_public,
            "weights_stored_as": storage_label(args.weights_float16),
            "size_mb_by_members": setup["size_mb"], "max_size_mb": setup["max_size_mb"],
            "other_members": member_summaries(kept_others, this_run=args.run_dir)},
        "data": {"dataset": "FER2013 (ICML 2013)", "train": "Training (pixel copies of test images removed)",
                 "selection": "PublicTest (best epoch by accuracy)", "benchmark": "PrivateTest (original labels)",
                 "train_images": run.get("train_images"), "dropped_test_copies": data["dropped_duplicates"],
                 "labels": run.get("labels")},
        "architecture": {"name": model.name, "arch": run.get("arch"), "parameters": int(model.count_params()),
                         "summary": "see training/models.py (build_emotion_model / build_emotion_baseline)"},
        "training": {"epochs_run": len(log), "epochs_planned": run.get("epochs"), "shipped_epoch": shipped_epoch,
                     "warm_started_from": warm_started_from(args.run_dir, run),
                     "checkpoint_selection": {"public_test_accuracy_after_bn_recalibration": selection,
                                              "chosen": chosen,
                                              "weight_average": weight_average_record(args.run_dir, chosen)},
                     "batchnorm": "statistics re-estimated on un-augmented training images (training/common.py)",
                     "precision_from_epoch": run_precision(run),
                     "wall_time_seconds": float(sum(r.get("epoch_seconds", 0) for r in log)),
                     "seed": run.get("seed"), "batch_size": run.get("batch_size"), "peak_lr": run.get("peak_lr"),
                     "curve": [{"epoch": i + 1, "train_accuracy": r["accuracy"], "public_accuracy": r["val_accuracy"]}
                               for i, r in enumerate(log)]},
        "metrics": {"protocol": "every choice on PublicTest; PrivateTest scored once, after the choice",
                    "private_test": report, "private_test_app_path": app_path},
    }
    card["metrics"]["latency_ms_single_face"] = latency = single_face_latency_ms(model, card, args.latency_calls)
    card["metrics"]["live_profile"] = {
        "views": 2 if live_flip else 1,
        "note": "the same networks on the face" + (" and its mirror" if live_flip else " alone") +
                ", as profile=live serves them (app.pipeline.predict.profile_augmentation)",
        "private_test": {"accuracy": live["accuracy"], "macro_f1": live["macro_f1"]},
        "latency_ms_single_face": single_face_latency_ms(
            model, card | {"test_time_augmentation": {"horizontal_flip": live_flip}}, args.latency_calls)}
    write_json(args.models_dir / "emotion.json", card)
    write_json(args.reports_dir / "emotion_eval.json", card["metrics"])
    print(f"PrivateTest accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f} "
          f"({setup['members']}, flip TTA: {use_flip}, class shift {np.round(shift, 2).tolist()}); live profile "
          f"{live['accuracy']:.4f}; latency median {latency['median']:.2f} ms; margin {margin}; through the app's "
          f"path: {app_path['detected']}/{app_path['images']} faces found, accuracy {app_path['accuracy']:.4f}; "
          f"-> {model_file}")


if __name__ == "__main__":
    main()
