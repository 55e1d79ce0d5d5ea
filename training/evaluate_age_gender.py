"""Score a trained age + gender model on the UTKFace test split and ship it with its model card.

    python -m training.evaluate_age_gender --data-dir ../shared/data/utkface --run-dir runs/age_gender

The checkpoint, averaging with --ensemble-with models, the output corrections
of training/ensemble.py (a linear age correction, Platt scaling of P(female)),
the age interval and the gender calibration check all come from `val`; every
reported number comes from `test`, which was never used for selection. Writes
models/age_gender.keras, models/age_gender.json and plots in reports/.

    # snapshot ensemble: the new run's checkpoint averaged with the model it was warm-started from
    python -m training.evaluate_age_gender --data-dir ../shared/data/utkface --run-dir runs/age_gender_ws \
        --ensemble-with runs/age_gender_ws/init.keras
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--run-dir", type=Path, default=Path("runs/age_gender"))
    p.add_argument("--checkpoints", default="best.keras,last.keras",
                   help="files in --run-dir to choose from (by validation loss after BatchNorm recalibration)")
    p.add_argument("--cache-dir", type=Path, default=Path("cache"))
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--reports-dir", type=Path, default=Path("reports"))
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--ensemble-with", type=Path, nargs="*", default=[],
                   help="other trained age/gender models to average with the chosen checkpoint, kept if val says so")
    p.add_argument("--no-corrections", action="store_true",
                   help="do not fit the linear age correction and gender Platt scaling on val")
    p.add_argument("--max-latency-ms", type=float, default=30.0,
                   help="serving setups (members x test-time views) slower than this per face are scored but "
                        "not chosen: the webcam page analyses every frame (time it on an otherwise idle machine)")
    return p.parse_args(argv)


def predict(model, x):
    out = model.predict(x, batch_size=512, verbose=0)
    return out["age"][:, 0], out["gender"][:, 0]


# Test-time views the evaluation chooses among: (mirrored too, shift in pixels as a fraction of the face side).
TTA_CHOICES = {"none": (False, 0.0), "flip": (True, 0.0), "shifts": (False, 1 / 32), "flip + shifts": (True, 1 / 32)}


def tta_settings(choice: str, size: int) -> tuple[bool, int]:
    flip, shift = TTA_CHOICES[choice]
    return flip, round(shift * size)


def prediction_views(members: list, x, flip: bool, shift_px: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(age, P(female)) of every member on every test-time view of x (app.pipeline.preprocess), view by view:
    what the served model averages."""
    from app.pipeline.preprocess import test_time_views
    return [predict(m, view) for view in test_time_views(x, flip, shift_px) for m in members]


def view_indices(choice: str, size: int) -> list[int]:
    """Where the views of one TTA choice sit among the views of the richest choice."""
    from app.pipeline.preprocess import test_time_offsets
    every = test_time_offsets(*tta_settings("flip + shifts", size))
    return [every.index(o) for o in test_time_offsets(*tta_settings(choice, size))]


def averaged(views) -> tuple[np.ndarray, np.ndarray]:
    return np.mean([a for a, _ in views], axis=0), np.mean([p for _, p in views], axis=0)


def validation_loss(model, val: dict) -> float:
    return objective(*predict(model, val["x"]), val)


def objective(age: np.ndarray, p: np.ndarray, split: dict) -> float:
    """The training objective: AGE_LOSS_WEIGHT * age L1 + gender cross-entropy."""
    from training.train_age_gender import AGE_LOSS_WEIGHT
    p = np.clip(p, 1e-7, 1 - 1e-7)
    bce = -np.mean(split["gender"] * np.log(p) + (1 - split["gender"]) * np.log(1 - p))
    return float(AGE_LOSS_WEIGHT * np.abs(age - split["age"]).mean() + bce)


def setup_latency_ms(members: list, size: int, choice: str) -> float:
    """Median single-face latency of a serving setup, through the app's own model wrapper."""
    from training.common import single_face_latency_ms
    from training.ensemble import average_models
    flip, shift_px = tta_settings(choice, size)
    card = {"name": "age_gender", "file": "", "version": "", "input": {"size": size, "margin": 0.0},
            "outputs": {}, "test_time_augmentation": {"horizontal_flip": flip, "shift_px": shift_px}}
    return single_face_latency_ms(average_models(members, "timing"), card, calls=100)["median"]


def choose_serving_setup(candidates: dict, val: dict, corrections: bool, max_latency_ms: float) -> dict:
    """Members and test-time views by val objective among the setups within the latency budget; then each
    output correction kept only if it helps on held-out halves of val. `candidates` maps a name to members,
    each list a prefix of the longest."""
    from training.ensemble import fit_linear_age, fit_platt, linear_age, logit, sigmoid_with_platt, two_fold_gain, views_of
    every = max(candidates.values(), key=len)
    size = int(val["x"].shape[1])
    all_views = prediction_views(every, val["x"], *tta_settings("flip + shifts", size))  # each model, each view once
    views = {(name, tta): views_of(all_views, len(members), len(every), view_indices(tta, size))
             for name, members in candidates.items() for tta in TTA_CHOICES}
    losses = {key: objective(*averaged(v), val) for key, v in views.items()}
    latency = {(name, tta): setup_latency_ms(candidates[name], size, tta) for name, tta in views}
    allowed = [key for key in views if latency[key] <= max_latency_ms] or [min(latency, key=latency.get)]
    name, tta = min(allowed, key=losses.get)
    ages, logits = [a for a, _ in views[name, tta]], [logit(p) for _, p in views[name, tta]]
    setup = {"members": name, "tta": tta,
             "val_loss": {f"{n}, views: {t}": v for (n, t), v in losses.items()},
             "latency_ms": {f"{n}, views: {t}": v for (n, t), v in latency.items()},
             "max_latency_ms": max_latency_ms,
             "age_correction": np.array([1.0, 0.0]), "gender_platt": np.array([1.0, 0.0])}
    if corrections:
        setup["age_check"] = two_fold_gain(fit_linear_age, linear_age, setup["age_correction"], ages, val["age"],
                                           lambda pred, true: -float(np.abs(pred - true).mean()))
        setup["gender_check"] = two_fold_gain(fit_platt, sigmoid_with_platt, setup["gender_platt"], logits,
                                              val["gender"], lambda p, true: float(((p >= 0.5) == true).mean()))
        if setup["age_check"]["gain"] > 0:
            setup["age_correction"] = fit_linear_age(ages, val["age"])
        if setup["gender_check"]["gain"] > 0:
            setup["gender_platt"] = fit_platt(logits, val["gender"])
    return setup


def fairness_table(split: dict, age_pred, p_female) -> dict:
    """Gender accuracy and age MAE for each race group and each gender."""
    from training.data_utk import GENDERS, RACES
    from training.metrics import age_report, binary_report
    groups = {f"race={r}": split["race"] == i for i, r in enumerate(RACES)}
    groups |= {f"gender={g}": split["gender"] == i for i, g in enumerate(GENDERS)}
    table = {}
    for name, sel in groups.items():
        if sel.any():
            table[name] = {"n": int(sel.sum()),
                           "gender_accuracy": binary_report(split["gender"][sel], p_female[sel])["accuracy"],
                           "age_mae": age_report(split["age"][sel], age_pred[sel])["mae"]}
    return table


def plot_age(age_true, age_pred, bands: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.common import save_figure
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    a.scatter(age_true, age_pred, s=3, alpha=0.3)
    a.plot([0, 100], [0, 100], "k--", lw=1)
    a.set_xlabel("true age"), a.set_ylabel("predicted age"), a.set_title("UTKFace test: predicted vs true")
    names = list(bands)
    b.bar(names, [bands[n]["mae"] or 0 for n in names], color="#4c72b0")
    for i, n in enumerate(names):
        b.text(i, (bands[n]["mae"] or 0) + 0.1, f"{bands[n]['mae']:.1f}\n(n={bands[n]['n']})", ha="center", fontsize=8)
    b.set_xlabel("true age band"), b.set_ylabel("MAE (years)"), b.set_title("Age error by band")
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(argv)
    import keras

    from training import data_utk
    from training.common import (export_inference_model, load_other_members, member_summaries, pick_checkpoint,
                                 read_log, single_face_latency_ms, warm_started_from, write_json)
    from training.ensemble import average_models, ensemble_candidates, fold_linear_age, fold_platt, members_of, views_of
    from training.metrics import (age_report, binary_report, expected_calibration_error, interval_coverage,
                                  residual_interval)
    from training.train_age_gender import MARGIN, input_size

    run = json.loads((args.run_dir / "run.json").read_text()) if (args.run_dir / "run.json").exists() else {}
    size = input_size(run.get("arch", "visage"), run.get("input_size", 0))
    data = data_utk.load_utk(args.data_dir, size, MARGIN, "haar", args.cache_dir, args.limit)
    val, test = data["val"], data["test"]
    model, chosen, selection = pick_checkpoint(args.run_dir, args.checkpoints.split(","), data["train"]["x"],
                                               lambda m: -validation_loss(m, val))
    candidates, models_used = ensemble_candidates(model, load_other_members(args.ensemble_with, data["train"]["x"]))
    test_alternatives = {}   # scored only, for the card: not used for any choice
    every = max(candidates.values(), key=len)
    test_all = prediction_views(every, test["x"], *tta_settings("flip + shifts", size))
    for name, members in candidates.items():
        for tta in TTA_CHOICES:
            alt_age, alt_female = averaged(views_of(test_all, len(members), len(every), view_indices(tta, size)))
            test_alternatives[f"{name}, views: {tta}"] = {
                "age_mae": age_report(test["age"], alt_age)["mae"],
                "gender_accuracy": binary_report(test["gender"], alt_female)["accuracy"]}
    setup = choose_serving_setup(candidates, val, not args.no_corrections, args.max_latency_ms)
    kept_others = args.ensemble_with[:models_used[setup["members"]]]     # the --ensemble-with models kept
    model = average_models(candidates[setup["members"]], "visage_age_gender_ensemble")
    fold_linear_age(model, "age", setup["age_correction"])
    fold_platt(model, "gender", setup["gender_platt"])
    # Score the exported file itself: fold_linear_age sets Rescaling's scale/offset, plain floats that
    # a predict function traced before the fold keeps, so the in-memory model answers uncorrected.
    export_inference_model(model, args.models_dir / "age_gender.keras")
    model = keras.models.load_model(args.models_dir / "age_gender.keras", compile=False)

    flip, shift_px = tta_settings(setup["tta"], size)
    val_age, val_female = averaged(prediction_views([model], val["x"], flip, shift_px))
    interval = residual_interval(val["age"], val_age, coverage=0.8)
    test_age, test_female = averaged(prediction_views([model], test["x"], flip, shift_px))
    age = age_report(test["age"], test_age)
    gender = binary_report(test["gender"], test_female) | {"positive_label": "female"}
    metrics = {
        "test": {"age": age, "gender": gender,
                 "age_interval_coverage": interval_coverage(test["age"], test_age, interval["below"], interval["above"]),
                 "gender_calibration": expected_calibration_error(test["gender"], test_female)},
        "val": {"age_mae": age_report(val["age"], val_age)["mae"],
                "gender_accuracy": binary_report(val["gender"], val_female)["accuracy"],
                "gender_calibration": expected_calibration_error(val["gender"], val_female)},
        "fairness_test": fairness_table(test, test_age, test_female),
    }
    if not args.limit:   # the same model on the tight chips, for the train/serve framing comparison
        chips = data_utk.load_utk(args.data_dir, size, MARGIN, "chip", args.cache_dir)["test"]
        chip_age, chip_female = averaged(prediction_views([model], chips["x"], flip, shift_px))
        metrics["test_on_tight_chips"] = {"age_mae": age_report(chips["age"], chip_age)["mae"],
                                          "gender_accuracy": binary_report(chips["gender"], chip_female)["accuracy"]}

    plot_age(test["age"], test_age, age["mae_by_band"], args.reports_dir / "age_gender_test.png")
    log = read_log(args.run_dir)
    shipped_epoch = (len(log) if chosen == "last.keras" else int(np.argmin([r["val_loss"] for r in log])) + 1) if log else None
    card = {
        "name": "age_gender",
        "file": "age_gender.keras",
        "version": dt.date.today().isoformat() + f"-e{shipped_epoch}",
        "date": dt.date.today().isoformat(),
        "task": "age in years (regression) and gender (binary), one network with two heads",
        "input": {"size": size, "margin": MARGIN, "channels": 1,
                  "preprocessing": "app.pipeline.preprocess.prepare_faces: crop (Haar box + margin), grayscale, "
                                   f"histogram equalization, resize to {size}x{size}, pixel/255"},
        "outputs": {"age": {"kind": "regression", "unit": "years", "interval": interval},
                    "gender": {"kind": "sigmoid", "positive_label": "female", "negative_label": "male"}},
        "test_time_augmentation": {"horizontal_flip": bool(flip), "shift_px": int(shift_px)},
        "serving_setup": {
            "chosen_on": "val",
            "networks": len(members_of(model)),
            "members": [str(args.run_dir / chosen)] + [str(p) for p in kept_others],
            "val_loss_by_candidate": setup["val_loss"],
            "latency_ms_by_candidate": setup["latency_ms"], "max_latency_ms": setup["max_latency_ms"],
            "age_correction_alpha_beta": setup["age_correction"].tolist(),
            "age_correction_two_fold_check_on_val": setup.get("age_check"),
            "gender_platt_a_c": setup["gender_platt"].tolist(),
            "gender_platt_two_fold_check_on_val": setup.get("gender_check"),
            "test_metrics_of_uncorrected_candidates": test_alternatives,
            "other_members": member_summaries(kept_others)},
        "data": {"dataset": "UTKFace (aligned & cropped, cleaned copy)", "split": "splits.csv: train/val/test",
                 "selection": "val (best epoch by validation loss)", "benchmark": "test",
                 "train_images": run.get("train_images"), "crops": run.get("crops"),
                 "crop_stats": data["crop_stats"], "fallback_box": data["fallback_box"],
                 "age_balance": run.get("age_balance")},
        "architecture": {"name": model.name, "arch": run.get("arch"), "parameters": int(model.count_params()),
                         "summary": "see training/models.py (build_age_gender_model / build_age_gender_baseline)"},
        "training": {"epochs_run": len(log), "epochs_planned": run.get("epochs"), "shipped_epoch": shipped_epoch,
                     "warm_started_from": warm_started_from(args.run_dir, run),
                     "checkpoint_selection": {"val_loss_after_bn_recalibration": {k: -v for k, v in selection.items()},
                                              "chosen": chosen},
                     "batchnorm": "statistics re-estimated on un-augmented training images (training/common.py)",
                     "wall_time_seconds": float(sum(r.get("epoch_seconds", 0) for r in log)),
                     "seed": run.get("seed"), "batch_size": run.get("batch_size"), "peak_lr": run.get("peak_lr"),
                     "curve": [{"epoch": i + 1, "val_age_mae": r["val_age_mae"],
                                "val_gender_accuracy": r["val_gender_accuracy"]} for i, r in enumerate(log)]},
        "metrics": metrics,
    }
    metrics["latency_ms_single_face"] = single_face_latency_ms(model, card)
    write_json(args.models_dir / "age_gender.json", card)
    write_json(args.reports_dir / "age_gender_eval.json", metrics)
    print(f"test age MAE {age['mae']:.2f}, CS@5 {age['cs5']:.3f}; gender accuracy {gender['accuracy']:.4f}; "
          f"80% interval -{interval['below']:.1f}/+{interval['above']:.1f}")


if __name__ == "__main__":
    main()
