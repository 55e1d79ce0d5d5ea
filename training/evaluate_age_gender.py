"""Score a trained age + gender model on the UTKFace test split and ship it with its model card.

    python -m training.evaluate_age_gender --data-dir ../shared/data/utkface --run-dir runs/age_gender

Protocol (validation only). The budgets (--max-latency-ms, --max-size-mb) are fixed by the command
line before anything is scored. Then, from train and val alone: the checkpoint, averaging with
--ensemble-with models, the test-time views (face only, + mirror, + 4 shifts, + 4 shifts each
mirrored), the output corrections of training/ensemble.py (a linear age correction, Platt scaling of
P(female)) and the age interval. Bars fixed before the run (--max-val-age-mae, --min-val-gender-accuracy,
--steadier-than-shipped) are read on val: a setup below one is not shipped and the test split is not read.
Only then is the test split read, and scored once, for the chosen
setup: its accurate views and its live profile (app.pipeline.predict.profile_augmentation), both on the faces the app's own detector
finds (the headline, with the detection recall beside it; a missed face is no answer, as in the app)
and on the tight chips as ready crops. Writes models/age_gender.keras, models/age_gender.json and
plots in reports/.

    # snapshot ensemble: the new run's checkpoint averaged with the model it was warm-started from
    python -m training.evaluate_age_gender --data-dir ../shared/data/utkface --run-dir runs/age_gender_ws \
        --ensemble-with runs/age_gender_ws/init.keras
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from training.ensemble import gender_accuracy, gender_correct
from training.precision import run_precision

# The webcam page analyses every frame; timed on an otherwise idle machine. Not applied under a budget relative
# to the shipped setup: on a busy machine day the shipped setup itself took 38 ms (2026-12-05).
DEFAULT_MAX_LATENCY_MS = 30.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--run-dir", type=Path, default=Path("runs/age_gender"))
    p.add_argument("--checkpoints", default="best.keras,last.keras,swa.keras",
                   help="files in --run-dir to choose from (by validation loss after BatchNorm recalibration)")
    p.add_argument("--cache-dir", type=Path, default=Path("cache"))
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--reports-dir", type=Path, default=Path("reports"))
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--crops", choices=["app", "haar"], default="app",
                   help="how faces are cut: app = the app's default path (BlazeFace, faces turned upright); "
                        "haar = around Haar boxes (how the card of the 2026-11-30 model was measured)")
    p.add_argument("--ensemble-with", type=Path, nargs="*", default=[],
                   help="other trained age/gender models to average with the chosen checkpoint, kept if val says so")
    p.add_argument("--replace-one", action="store_true",
                   help="also offer the checkpoint in place of each network of a shipped ensemble in turn (all "
                        "its other networks kept), so that a size budget with no room for one more network "
                        "can still take the new one where val values the old one least")
    p.add_argument("--no-corrections", action="store_true",
                   help="do not fit the linear age correction and gender Platt scaling on val")
    p.add_argument("--balance-gender", action="store_true",
                   help="also fit on val an offset of the gender logit that gives women and men the same accuracy, "
                        "kept only if on held-out halves of val it cuts their gap by at least 0.5 points for at most "
                        "0.3 points of overall accuracy (training/ensemble.py gender_balance_check); with --rescore, "
                        "for the shipped model as it is")
    p.add_argument("--max-latency-ms", type=float, default=None,
                   help="serving setups (members x test-time views) slower than this per face are scored but "
                        "not chosen: the webcam page analyses every frame (time it on an otherwise idle machine; "
                        f"default {DEFAULT_MAX_LATENCY_MS:g} ms, none when --max-latency-vs-shipped sets the budget)")
    p.add_argument("--latency-statistic", choices=["median", "p10"], default="median",
                   help="which single-face time the budget applies to: median (on an idle machine), or the "
                        "fastest tenth of the calls (p10: nearer the idle cost when other jobs share the CPU)")
    p.add_argument("--latency-calls", type=int, default=200,
                   help="single-face calls timed for the card after 20 warm-up calls, as in evaluate_emotion (each "
                        "candidate setup and the shipped reference: half as many); fewer for a quick run, at the "
                        "cost of noisier times")
    p.add_argument("--rescore", action="store_true",
                   help="measure the shipped models/age_gender.keras again through --crops (networks, views and "
                        "corrections unchanged; the age interval re-estimated on val; test scored once) and "
                        "rewrite its card; --run-dir is not read")
    p.add_argument("--max-val-age-mae", type=float, default=float("inf"),
                   help="a bar fixed before the run: if the chosen setup's val age MAE, as served (views and corrections "
                        "included), is above it, stop before the test split is read and leave --models-dir untouched")
    p.add_argument("--min-val-gender-accuracy", type=float, default=0.0,
                   help="the same bar for val gender accuracy, as served (both bars must be cleared)")
    p.add_argument("--max-size-mb", type=float, default=20.0,
                   help="serving setups whose weights take more than this are not chosen")
    p.add_argument("--weights-float16", action="store_true",
                   help="store the served weights as float16, read back as float32 (2 bytes a weight instead of 4: "
                        "training/weights_float16.py); every candidate is rounded so before it is scored")
    p.add_argument("--max-latency-vs-shipped", type=float, default=0.0,
                   help="a latency budget as a share of the shipped model's own accurate setup (--models-dir, its "
                        "card's views), timed in the same run with the same statistic: machines differ 2-3x from day "
                        "to day, a ratio does not (0: off; given with --max-latency-ms, the tighter applies)")
    p.add_argument("--steadier-than-shipped", action="store_true",
                   help="a bar fixed before the run: on val faces and --steady-copies copies of each moved by a pixel "
                        "or two, the chosen setup as served (views and corrections) must spread its ages less (median "
                        "per-face std) and change fewer gender labels than the shipped model in --models-dir measured "
                        "the same way in the same run; else stop before the test split is read")
    p.add_argument("--choose-only", action="store_true",
                   help="choose the setup on val and write reports/<run>_evaluation.json (with whether it clears "
                        "the bars), then stop: nothing shipped, the test split not read (a run's served val numbers "
                        "without shipping it yet)")
    p.add_argument("--record-name", metavar="NAME",
                   help="name the val record reports/NAME_evaluation.json instead of after the run folder, for a "
                        "second evaluation of the same run (another ensemble, --replace-one) beside the first")
    p.add_argument("--keep-chosen", type=Path, metavar="DIR",
                   help="also write the chosen setup, shipped or not, as a models folder the app loads (Keras files, "
                        "beside the shipped emotion model), to measure it through the app's path: "
                        "bench/steadiness.py --models-dir DIR")
    p.add_argument("--steady-copies", type=int, default=3,
                   help="moved copies of each val face for --steadier-than-shipped (training.common.make_jitter)")
    return p.parse_args(argv)


def candidate_calls(args) -> int:
    """Single-face calls timing each candidate setup (and the shipped reference): half the card's."""
    return max(1, args.latency_calls // 2)


def shipped_reference_ms(args) -> dict | None:
    """The shipped model's single-face time with its card's views, the reference of --max-latency-vs-shipped."""
    import keras
    from training.common import single_face_latency_ms
    card_path, model_path = args.models_dir / "age_gender.json", args.models_dir / "age_gender.keras"
    if args.max_latency_vs_shipped <= 0 or not (card_path.is_file() and model_path.is_file()):
        return None
    card = json.loads(card_path.read_text())
    ms = single_face_latency_ms(keras.models.load_model(model_path, compile=False), card,
                                calls=candidate_calls(args))[args.latency_statistic]
    return {"version": card.get("version"), "views": card.get("serving_setup", {}).get("views"),
            "ms": ms, "share": args.max_latency_vs_shipped, "budget_ms": args.max_latency_vs_shipped * ms}


def predict(model, x):
    from training.common import predict_in_batches
    out = predict_in_batches(model, x)
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


def mae_and_accuracy(age: np.ndarray, p_female: np.ndarray, split: dict) -> tuple[float, float]:
    """Age MAE in years and gender accuracy of answers on a split (P(female) labelled at 0.5)."""
    return (float(np.abs(age - split["age"]).mean()),
            gender_accuracy(p_female, split["gender"]))


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


def setup_latency_ms(members: list, size: int, choice: str, statistic: str = "median", calls: int = 100) -> float:
    """Single-face latency of a serving setup (its median or p10), through the app's own model wrapper."""
    from training.common import single_face_latency_ms
    from training.ensemble import average_models
    flip, shift_px = tta_settings(choice, size)
    card = {"name": "age_gender", "file": "", "version": "", "input": {"size": size, "margin": 0.0},
            "outputs": {}, "test_time_augmentation": {"horizontal_flip": flip, "shift_px": shift_px}}
    return single_face_latency_ms(average_models(members, "timing"), card, calls=calls)[statistic]


def choose_serving_setup(candidates: dict, val: dict, corrections: bool, max_latency_ms: float,
                         max_size_mb: float = float("inf"), latency_statistic: str = "median",
                         bytes_per_weight: int = 4, balance_gender: bool = False, latency_calls: int = 100) -> dict:
    """Members and test-time views by val objective among the setups within the latency and size budgets;
    then each output correction kept only if it helps on held-out halves of val. `candidates` maps a name
    to members, each list a subset of the longest. Takes no test data: nothing here can depend on it."""
    from training.ensemble import (fit_linear_age, fit_platt, gender_balance_check, linear_age, logit,
                                   member_positions, sigmoid_with_platt, size_mb, two_fold_gain, views_at)
    every = max(candidates.values(), key=len)
    size = int(val["x"].shape[1])
    all_views = prediction_views(every, val["x"], *tta_settings("flip + shifts", size))  # each model, each view once
    views = {(name, tta): views_at(all_views, member_positions(members, every), len(every), view_indices(tta, size))
             for name, members in candidates.items() for tta in TTA_CHOICES}
    answers = {key: averaged(v) for key, v in views.items()}
    losses = {key: objective(*answers[key], val) for key in views}
    numbers = {key: mae_and_accuracy(*answers[key], val) for key in views}
    # networks of the same sizes on the same views take the same time: each such setup timed once
    shapes = {name: tuple(sorted(int(m.count_params()) for m in members)) for name, members in candidates.items()}
    timed = {}
    for name, tta in views:
        if (shapes[name], tta) not in timed:
            timed[shapes[name], tta] = setup_latency_ms(candidates[name], size, tta, latency_statistic, latency_calls)
    latency = {(name, tta): timed[shapes[name], tta] for name, tta in views}
    sizes = {name: size_mb(members, bytes_per_weight) for name, members in candidates.items()}
    within = [key for key in views if latency[key] <= max_latency_ms and sizes[key[0]] <= max_size_mb]
    allowed = within or [min(latency, key=latency.get)]
    name, tta = min(allowed, key=losses.get)
    ages, logits = [a for a, _ in views[name, tta]], [logit(p) for _, p in views[name, tta]]
    setup = {"members": name, "tta": tta,
             "val_loss": {f"{n}, views: {t}": v for (n, t), v in losses.items()},
             # before the output corrections, for the record of an evaluation (not used to choose)
             "val_age_mae": {f"{n}, views: {t}": mae for (n, t), (mae, _) in numbers.items()},
             "val_gender_accuracy": {f"{n}, views: {t}": accuracy for (n, t), (_, accuracy) in numbers.items()},
             "latency_ms": {f"{n}, views: {t}": v for (n, t), v in latency.items()},
             "size_mb": sizes, "max_latency_ms": max_latency_ms, "max_size_mb": max_size_mb,
             "latency_statistic": latency_statistic,
             "within_budgets": bool(within),
             "age_correction": np.array([1.0, 0.0]), "gender_platt": np.array([1.0, 0.0])}
    if corrections:
        setup["age_check"] = two_fold_gain(fit_linear_age, linear_age, setup["age_correction"], ages, val["age"],
                                           lambda pred, true: -float(np.abs(pred - true).mean()))
        setup["gender_check"] = two_fold_gain(fit_platt, sigmoid_with_platt, setup["gender_platt"], logits,
                                              val["gender"], gender_accuracy)
        if setup["age_check"]["gain"] > 0:
            setup["age_correction"] = fit_linear_age(ages, val["age"])
        if setup["gender_check"]["gain"] > 0:
            setup["gender_platt"] = fit_platt(logits, val["gender"])
    if balance_gender:
        # after Platt scaling: the offset moves the threshold of the served logit a * z + c
        a, c = setup["gender_platt"]
        setup["gender_balance"] = gender_balance_check([a * z + c for z in logits], val["gender"])
        setup["gender_platt"] = np.array([a, c + setup["gender_balance"]["offset"]])
    return setup


def select_setup(args, val: dict, framed: dict, on_backgrounds: dict | None, run_on_backgrounds: bool) -> dict:
    """Everything the evaluation chooses, from train and val (faces the app detects) alone: the checkpoint,
    the ensemble members, the test-time views, the output corrections.

    BatchNorm is re-estimated on each network's own kind of training faces: edge-framed (`framed`) or on
    random backgrounds (`on_backgrounds`), for the run's checkpoints as its training re-estimated them every
    epoch (`run_on_backgrounds`: a --backgrounds run), for each --ensemble-with run checkpoint as its run.json
    says; a shipped model's networks keep their own (training.common.load_other_members)."""
    from training.common import load_other_members, pick_checkpoint
    from training.ensemble import ensemble_candidates
    from training.weights_float16 import prepare_candidates
    run_faces = on_backgrounds if run_on_backgrounds else framed
    model, chosen, selection = pick_checkpoint(args.run_dir, args.checkpoints.split(","), run_faces["x"],
                                               lambda m: -validation_loss(m, val))
    others = load_other_members(args.ensemble_with, framed["x"],
                                on_backgrounds["x"] if on_backgrounds is not None else None)
    candidates, models_used = ensemble_candidates(model, others, replace_one=args.replace_one)
    bytes_per_weight = prepare_candidates(candidates, args.weights_float16)
    setup = choose_serving_setup(candidates, val, not args.no_corrections, args.max_latency_ms, args.max_size_mb,
                                 args.latency_statistic, bytes_per_weight, args.balance_gender, candidate_calls(args))
    return setup | {"checkpoint": chosen, "checkpoint_selection": selection,
                    "networks": candidates[setup["members"]],
                    "kept_others": args.ensemble_with[:models_used[setup["members"]]]}


def write_evaluation_record(args, setup: dict, reference: dict | None, val_mae: float, val_gender: float,
                            over_bar: bool) -> dict:
    """reports/<run>_evaluation.json: what the evaluation chose and why, on val, written whether or not the
    setup clears the bar (a run that is not shipped leaves its numbers too). Val only: written before the
    test split is read."""
    from training.common import write_json
    record = {"run": str(args.run_dir), "ensemble_with": [str(p) for p in args.ensemble_with],
              "bar": {"max_val_age_mae": args.max_val_age_mae, "min_val_gender_accuracy": args.min_val_gender_accuracy,
                      "max_latency_vs_shipped": args.max_latency_vs_shipped, "max_size_mb": args.max_size_mb,
                      "weights_float16": args.weights_float16},
              "shipped_reference": reference,
              "checkpoint_val_loss": {k: -v for k, v in setup["checkpoint_selection"].items()},
              "chosen": {"checkpoint": setup["checkpoint"], "members": setup["members"], "networks":
                         len(setup["networks"]), "views": setup["tta"]},
              "served_val": {"age_mae": round(val_mae, 4), "gender_accuracy": round(val_gender, 4),
                             "age_correction_kept": bool(setup.get("age_check", {}).get("gain", 0) > 0),
                             "gender_platt_kept": bool(setup.get("gender_check", {}).get("gain", 0) > 0),
                             "gender_balance": setup.get("gender_balance")},
              "over_bar": over_bar,
              "by_candidate": {key: {"val_loss": round(setup["val_loss"][key], 4),
                                     "val_age_mae": round(setup["val_age_mae"][key], 3),
                                     "val_gender_accuracy": round(setup["val_gender_accuracy"][key], 4),
                                     "latency_ms": round(setup["latency_ms"][key], 2),
                                     "size_mb": round(setup["size_mb"][key.split(", views: ")[0]], 2)}
                               for key in setup["val_loss"]},
              "max_latency_ms": setup["max_latency_ms"]}
    write_json(evaluation_record_path(args), record)
    return record


def evaluation_record_path(args) -> Path:
    return args.reports_dir / f"{args.record_name or args.run_dir.name}_evaluation.json"


def served_model(setup: dict, path: Path, float16: bool = False):
    """The chosen networks averaged, the corrections folded in, exported to `path` and read back from it."""
    import keras
    from training.common import export_inference_model
    from training.ensemble import average_models, fold_linear_age, fold_platt
    model = average_models(setup["networks"], "visage_age_gender_ensemble")
    fold_linear_age(model, "age", setup["age_correction"])
    fold_platt(model, "gender", setup["gender_platt"])
    # Score the exported file itself: fold_linear_age sets Rescaling's scale/offset, plain floats that
    # a predict function traced before the fold keeps, so the in-memory model answers uncorrected.
    export_inference_model(model, path, float16=float16)
    return keras.models.load_model(path, compile=False)


def moved_copies(x: np.ndarray, copies: int, seed: int = 7) -> list[np.ndarray]:
    """x and `copies` copies of it, each face moved and rescaled by up to 2% (the jitter --consistency trains
    against); the same seed gives the same moves, at any input size."""
    from training.common import make_jitter
    from training.train_age_gender import STEADY_JITTER
    jitter = make_jitter(STEADY_JITTER, seed)
    return [x] + [np.asarray(jitter(x)) for _ in range(copies)]


def served_steadiness(model, flip: bool, shift_px: int, copies: list[np.ndarray], val: dict) -> dict:
    """training.metrics.steadiness_report of a served model (its views averaged, as the app serves it) over
    val faces and moved copies of them (copies[0]: the faces as cut)."""
    from training.metrics import steadiness_report
    answers = [averaged(prediction_views([model], x, flip, shift_px)) for x in copies]
    return steadiness_report(np.stack([a for a, _ in answers], axis=1), np.stack([p for _, p in answers], axis=1),
                             val["age"], val["gender"])


def steadiness_against_shipped(args, model, flip: bool, shift_px: int, val: dict) -> dict:
    """The bar of --steadier-than-shipped: the candidate and the shipped model on the same val faces and the
    same moved copies, each with its own views and corrections."""
    import keras
    from app.pipeline.predict import ModelCard
    from training import data_utk
    from training.train_age_gender import MARGIN, STEADY_JITTER
    card_json = json.loads((args.models_dir / "age_gender.json").read_text())
    card = ModelCard.from_dict(card_json)
    shipped = keras.models.load_model(args.models_dir / card.file, compile=False)
    copies = moved_copies(val["x"], args.steady_copies)
    shipped_val, shipped_copies = val, copies
    if shipped.input_shape[1] != model.input_shape[1]:      # the same faces, cut at the shipped model's size
        shipped_val = data_utk.detected_only(data_utk.load_utk(
            args.data_dir, card.size, MARGIN, args.crops, args.cache_dir, args.limit, splits=("val",))["val"])
        shipped_copies = moved_copies(shipped_val["x"], args.steady_copies)
    result = {"candidate": served_steadiness(model, flip, shift_px, copies, val),
              "shipped": served_steadiness(shipped, card.flip_average, card.shift_px, shipped_copies, shipped_val),
              "shipped_version": card.version, "copies": args.steady_copies, "jitter": STEADY_JITTER}
    new, old = result["candidate"], result["shipped"]
    result["steadier"] = bool(new["age_spread_median"] < old["age_spread_median"]
                              and new["gender_label_changes"] < old["gender_label_changes"])
    return result


def split_scores(split: dict, age_pred: np.ndarray, p_female: np.ndarray, found: np.ndarray | None = None) -> dict:
    """Age and gender metrics of predictions for the faces in `split`. With `found` (did the app detect
    each image's face; `split` then holds the found faces only), also the detection recall and the
    per-image rates where a missed face counts as no answer, as it is in the app."""
    from training.metrics import age_report, binary_report
    age = age_report(split["age"], age_pred)
    gender = binary_report(split["gender"], p_female) | {"positive_label": "female"}
    out = {"age": age, "gender": gender}
    if found is not None:
        images = int(len(found))
        out["detection"] = {"images": images, "detected": int(found.sum()), "missed": int((~found).sum()),
                            "recall": float(found.mean()) if images else 0.0}
        correct = gender_correct(p_female, split["gender"]).sum()
        out["per_image"] = {"gender_correct": float(correct / max(1, images)),
                            "age_within_5_years": float(age["cs5"] * age["n"] / max(1, images))}
    return out


def fairness_table(split: dict, age_pred, p_female) -> dict:
    """Per race group and gender: the app's detection recall over all test images, then gender accuracy and
    age MAE on the faces it found. `split` holds all images; predictions are for its detected ones."""
    from training.data_utk import GENDERS, RACES
    from training.metrics import CHILD_MAX_AGE, age_report, binary_report
    found = split["detected"]
    child = split["age"] <= CHILD_MAX_AGE
    groups = {f"race={r}": split["race"] == i for i, r in enumerate(RACES)}
    groups |= {f"gender={g}": split["gender"] == i for i, g in enumerate(GENDERS)}
    groups |= {f"age=0-{CHILD_MAX_AGE}": child, f"age={CHILD_MAX_AGE + 1}+": ~child}
    # The race groups hold very different shares of young children (test: Asian 28%, Black 4%), whose gender
    # is read far less well: gender accuracy among faces aged 13+ separates the two effects.
    older = ~child[found]

    def gender_accuracy(rows):
        return binary_report(split["gender"][found][rows], p_female[rows])["accuracy"]
    table = {}
    for name, sel in groups.items():
        answered = sel[found]
        if answered.any():
            table[name] = {"n": int(answered.sum()), "images": int(sel.sum()),
                           "detection_recall": float(found[sel].mean()),
                           "gender_accuracy": gender_accuracy(answered),
                           "age_mae": age_report(split["age"][found][answered], age_pred[answered])["mae"]}
            if name.startswith("race=") and (answered & older).any():
                table[name]["gender_accuracy_ages_13_plus"] = gender_accuracy(answered & older)
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


def measure(model, args, size: int, val_all: dict, flip: bool, shift_px: int, val_pred=None) -> dict:
    """Everything the card reports for a fixed serving setup: the age interval from val, then the test split
    read and scored once (accurate views and live profile, app path and tight chips), the fairness table.
    val_pred: the model's (age, P(female)) on val's detected faces, where the caller has them already."""
    from app.pipeline.predict import profile_augmentation
    from training import data_utk
    from training.metrics import expected_calibration_error, interval_coverage, residual_interval
    from training.train_age_gender import MARGIN
    val = data_utk.detected_only(val_all)
    val_age, val_female = val_pred or averaged(prediction_views([model], val["x"], flip, shift_px))
    interval = residual_interval(val["age"], val_age, coverage=0.8)

    # The setup is fixed: score it on the test split, once (its accurate views and its live profile).
    cache_dir = None if args.rescore else args.cache_dir
    test_all = data_utk.load_utk(args.data_dir, size, MARGIN, args.crops, cache_dir, args.limit,
                                 splits=("test",))["test"]
    found = test_all["detected"]
    test = data_utk.detected_only(test_all)
    test_age, test_female = averaged(prediction_views([model], test["x"], flip, shift_px))
    live_flip, live_shift = profile_augmentation(flip, shift_px, "live")
    live_age, live_female = averaged(prediction_views([model], test["x"], live_flip, live_shift))
    chips = data_utk.load_utk(args.data_dir, size, MARGIN, "chip", cache_dir, args.limit, splits=("test",))["test"]
    if not np.array_equal(chips["age"], test_all["age"]):
        raise RuntimeError("the chip and app-path test splits list different images")
    chip_age, chip_female = averaged(prediction_views([model], chips["x"], flip, shift_px))
    headline = split_scores(test, test_age, test_female, found)
    metrics = {
        "protocol": "budgets fixed before evaluation; every choice on val; test scored once, after the choice",
        "test": headline | {
            "faces": "as the app cuts them: chip set in a frame of its edge pixels (data_utk.chip_as_photo), "
                     + ("the app's default detector (BlazeFace) and settings, largest box turned upright by its eyes, "
                        if args.crops == "app" else "the app's Haar detector and settings, largest box, ") + "the card's margin",
            "age_interval_coverage": interval_coverage(test["age"], test_age, interval["below"], interval["above"]),
            "gender_calibration": expected_calibration_error(test["gender"], test_female)},
        "test_on_tight_chips": {
            "faces": "the UTKFace chips themselves as ready crops (no detector)",
            "all_images": split_scores(chips, chip_age, chip_female),
            "images_the_app_detects": split_scores(data_utk.detected_only(chips | {"detected": found}),
                                                   chip_age[found], chip_female[found])},
        "val": split_scores(val, val_age, val_female, val_all["detected"]) | {
            **dict(zip(("age_mae", "gender_accuracy"), mae_and_accuracy(val_age, val_female, val))),
            "gender_calibration": expected_calibration_error(val["gender"], val_female)},
        "fairness_test": fairness_table(test_all, test_age, test_female),
    }
    # the flat numbers the tables read
    for key in ("all_images", "images_the_app_detects"):
        part = metrics["test_on_tight_chips"][key]
        part |= {"age_mae": part["age"]["mae"], "gender_accuracy": part["gender"]["accuracy"]}
    metrics["test_on_tight_chips"] |= {k: metrics["test_on_tight_chips"]["all_images"][k]
                                       for k in ("age_mae", "gender_accuracy")}
    plot_age(test["age"], test_age, headline["age"]["mae_by_band"], args.reports_dir / "age_gender_test.png")
    metrics["live_profile"] = {
        "views": 2 if live_flip else 1,
        "note": "the same networks on the face" + (" and its mirror" if live_flip else " alone") +
                " (no shifts), as profile=live serves them (app.pipeline.predict.profile_augmentation)",
        "test": split_scores(test, live_age, live_female, found)}
    return {"metrics": metrics, "interval": interval, "test_images": int(len(found)), "test_detected": int(found.sum())}


def add_latencies(metrics: dict, model, card: dict, calls: int = 200) -> None:
    """Single-face times of the accurate views and of the live profile, through the app's model wrapper."""
    from app.pipeline.predict import ModelCard, profile_augmentation
    from training.common import single_face_latency_ms
    views = ModelCard.from_dict(card)
    live_flip, live_shift = profile_augmentation(views.flip_average, views.shift_px, "live")
    live_card = card | {"test_time_augmentation": {"horizontal_flip": live_flip, "shift_px": live_shift}}
    metrics["latency_ms_single_face"] = single_face_latency_ms(model, card, calls)
    metrics["live_profile"]["latency_ms_single_face"] = single_face_latency_ms(model, live_card, calls)


def preprocessing_text(crops: str, size: int) -> str:
    box = "BlazeFace box + margin, turned upright by its eyes" if crops == "app" else "Haar box + margin"
    return (f"app.pipeline.preprocess.prepare_faces: crop ({box}), grayscale, histogram equalization, "
            f"resize to {size}x{size}, pixel/255")


def rescore(args, workdir: Path) -> tuple[dict, Path | None]:
    """The shipped model as it is (networks, views and corrections unchanged; with --balance-gender, the
    gender balance offset where val keeps it), measured again through --crops: the age interval re-estimated
    on val, the test split scored once. Returns the new card, and the new model file in `workdir` where
    the model changed (moved over the shipped one only with its card, once everything is measured)."""
    import keras
    from app.pipeline.predict import ModelCard
    from training import data_utk
    from training.train_age_gender import MARGIN
    card = json.loads((args.models_dir / "age_gender.json").read_text())
    before = card["metrics"]
    model = keras.models.load_model(args.models_dir / card["file"], compile=False)
    shipped = ModelCard.from_dict(card)
    size = shipped.size
    val_all = data_utk.load_utk(args.data_dir, size, MARGIN, args.crops, None, args.limit, splits=("val",))["val"]
    what, new_file = "the shipped networks, views and corrections unchanged", None
    if args.balance_gender:
        model, balance = balanced_gender(model, card, shipped, data_utk.detected_only(val_all), workdir)
        card["serving_setup"]["gender_balance_check_on_val"] = balance
        if balance["kept"]:
            new_file = workdir / card["file"]
            a, c = card["serving_setup"].get("gender_platt_a_c", [1.0, 0.0])
            card["serving_setup"]["gender_platt_a_c"] = [a, c + balance["offset"]]
            card["version"] = card["version"].removesuffix("-balanced") + "-balanced"
            card["date"] = dt.date.today().isoformat()
            what = (f"the shipped networks and views unchanged, the gender logit offset by {balance['offset']:+.2f} "
                    "(fitted on val so that women and men are read equally well, kept on held-out halves of val)")
    measured = measure(model, args, size, val_all, shipped.flip_average, shipped.shift_px)
    card["input"]["preprocessing"] = preprocessing_text(args.crops, size)
    card["outputs"]["age"]["interval"] = measured["interval"]
    card["data"]["crop_stats"] = {**{k: v for k, v in card["data"].get("crop_stats", {}).items() if k == "train"},
                                  "val": {"images": int(len(val_all["detected"])), "detected": int(val_all["detected"].sum())},
                                  "test": {"images": measured["test_images"], "detected": measured["test_detected"]}}
    card["data"]["measured_with_crops"] = args.crops
    card["metrics"] = measured["metrics"] | {
        "rescored": {"date": dt.date.today().isoformat(),
                     "what": f"{what}, measured through the app's "
                             f"{'default path (BlazeFace, faces turned upright)' if args.crops == 'app' else 'Haar path'}; "
                             "the age interval re-estimated on val, the test split scored once"}}
    # Same networks and views, so the same cost per face: keep the times measured when the setup was
    # chosen (on an idle machine) rather than re-time them beside whatever else runs now.
    card["metrics"]["latency_ms_single_face"] = before["latency_ms_single_face"]
    card["metrics"]["live_profile"]["latency_ms_single_face"] = before["live_profile"]["latency_ms_single_face"]
    return card, new_file


def balanced_gender(model, card: dict, shipped, val: dict, folder: Path):
    """The shipped model with the gender balance offset folded in and written to `folder` under its file
    name, where held-out halves of val keep it (else the model untouched). Returns (model, the check)."""
    import keras
    from training.common import export_inference_model
    from training.ensemble import fold_platt, gender_balance_check, logit, members_of
    views = prediction_views(members_of(model), val["x"], shipped.flip_average, shipped.shift_px)
    check = gender_balance_check([logit(p) for _, p in views], val["gender"])
    print(f"gender balance on val: {json.dumps(check)}", flush=True)
    if not check["kept"]:
        return model, check
    fold_platt(model, "gender", np.array([1.0, check["offset"]]))
    path = folder / card["file"]
    float16 = card["serving_setup"].get("weights_stored_as", "").startswith("float16")
    export_inference_model(model, path, float16=float16)
    return keras.models.load_model(path, compile=False), check


def main(argv=None):
    args = parse_args(argv)
    import keras
    from app.pipeline.preprocess import test_time_offsets
    from training import data_utk
    from training.common import (chosen_epoch, member_summaries, read_log, read_run, run_offered_beside_itself,
                                 trained_on_backgrounds, warm_started_from, weight_average_record, write_json)
    from training.ensemble import members_of
    from training.train_age_gender import MARGIN, input_size
    from training.weights_float16 import storage_label

    if args.rescore:
        with tempfile.TemporaryDirectory() as tmp:
            card, new_file = rescore(args, Path(tmp))
            if new_file:
                shutil.copyfile(new_file, args.models_dir / card["file"])
        write_json(args.models_dir / "age_gender.json", card)
        write_json(args.reports_dir / "age_gender_eval.json", card["metrics"])
        print_summary(card["metrics"], card["outputs"]["age"]["interval"])
        return

    run = read_run(args.run_dir)
    size = input_size(run.get("arch", "visage"), run.get("input_size", 0))
    if message := run_offered_beside_itself(args.run_dir, args.ensemble_with):
        print(message)
        return

    # 1. Choose, on train and val only (the test split is not loaded yet).
    reference = shipped_reference_ms(args)
    if reference:
        given = args.max_latency_ms if args.max_latency_ms is not None else float("inf")
        args.max_latency_ms = min(given, reference["budget_ms"])
        print(f"latency budget: {args.max_latency_ms:.2f} ms ({reference['share']} x the shipped "
              f"{reference['version']}'s {reference['ms']:.2f} ms, {args.latency_statistic})", flush=True)
    elif args.max_latency_ms is None:
        args.max_latency_ms = DEFAULT_MAX_LATENCY_MS
    data = data_utk.load_utk(args.data_dir, size, MARGIN, args.crops, args.cache_dir, args.limit, splits=("train", "val"))
    # A --backgrounds run was trained (and its BatchNorm re-estimated) on faces on backgrounds: re-estimating
    # it on edge-framed faces instead read val 0.25 years worse for the same file (age_gender_bins_ws, one view).
    framed = data_utk.detected_only(data["train"])
    on_backgrounds = None
    if run.get("backgrounds") or any(trained_on_backgrounds(m) for m in args.ensemble_with):
        on_backgrounds = data_utk.detected_only(data_utk.load_utk(args.data_dir, size, MARGIN, args.crops, args.cache_dir,
                                                                  args.limit, splits=("train",), backgrounds=True)["train"])
    setup = select_setup(args, data_utk.detected_only(data["val"]), framed, on_backgrounds, bool(run.get("backgrounds")))
    flip, shift_px = tta_settings(setup["tta"], size)
    with tempfile.TemporaryDirectory() as tmp:
        model = served_model(setup, Path(tmp) / "age_gender.keras", args.weights_float16)
        # The bar fixed before the run, on val as served: below it the test split is never read.
        val = data_utk.detected_only(data["val"])
        val_age, val_female = averaged(prediction_views([model], val["x"], flip, shift_px))
        val_mae, val_gender = mae_and_accuracy(val_age, val_female, val)
        print(f"served setup on val: age MAE {val_mae:.3f}, gender {val_gender:.4f}", flush=True)
        over_bar = val_mae <= args.max_val_age_mae and val_gender >= args.min_val_gender_accuracy
        record = write_evaluation_record(args, setup, reference, val_mae, val_gender, over_bar)
        print(f"chosen: {record['chosen']}; record in {evaluation_record_path(args)}",
              flush=True)
        if args.keep_chosen:
            from training.candidate_models import write_age_gender_candidate
            label = f"{args.run_dir.name} {setup['checkpoint']}, {record['chosen']['networks']} networks"
            write_age_gender_candidate(args.keep_chosen, Path(tmp) / "age_gender.keras", args.models_dir, size, MARGIN,
                                       flip, shift_px, label)
            print(f"the chosen setup as a models folder: {args.keep_chosen}", flush=True)
        if args.choose_only:
            print(f"{'over' if over_bar else 'not over'} the bar; --choose-only: not shipped, test split not read")
            return
        if not over_bar:
            print(f"not over the bar (--max-val-age-mae {args.max_val_age_mae}, --min-val-gender-accuracy "
                  f"{args.min_val_gender_accuracy}): not shipped, test split not read")
            return
        steadiness = steadiness_against_shipped(args, model, flip, shift_px, val) if args.steadier_than_shipped else None
        if steadiness:
            new, old = steadiness["candidate"], steadiness["shipped"]
            print(f"served on val, {new['faces']} faces x {new['views']} views a pixel or two apart: age spread "
                  f"median {new['age_spread_median']:.3f} (shipped {old['age_spread_median']:.3f}), gender label "
                  f"changes {new['gender_label_changes']:.4f} (shipped {old['gender_label_changes']:.4f})", flush=True)
            if not steadiness["steadier"]:
                print("not steadier than the shipped model (--steadier-than-shipped): not shipped, test split not read")
                return
        args.models_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "age_gender.keras", args.models_dir / "age_gender.keras")
    model = keras.models.load_model(args.models_dir / "age_gender.keras", compile=False)

    # 2. The setup is fixed: the test split, once.
    measured = measure(model, args, size, data["val"], flip, shift_px, val_pred=(val_age, val_female))
    metrics, interval = measured["metrics"], measured["interval"]
    log = read_log(args.run_dir)
    chosen = setup["checkpoint"]
    shipped_epoch = chosen_epoch(args.run_dir, chosen, [r["val_loss"] for r in log], higher=False)
    kept_others = setup["kept_others"]
    card = {
        "name": "age_gender",
        "file": "age_gender.keras",
        "version": dt.date.today().isoformat() + f"-e{shipped_epoch}",
        "date": dt.date.today().isoformat(),
        "task": "age in years (regression) and gender (binary), one network with two heads",
        "input": {"size": size, "margin": MARGIN, "channels": 1, "preprocessing": preprocessing_text(args.crops, size)},
        "outputs": {"age": {"kind": "regression", "unit": "years", "interval": interval},
                    "gender": {"kind": "sigmoid", "positive_label": "female", "negative_label": "male"}},
        "test_time_augmentation": {"horizontal_flip": bool(flip), "shift_px": int(shift_px)},
        "serving_setup": {
            "chosen_on": "val (faces the app detects); the test split was read only after this setup was fixed",
            "budgets": {"max_latency_ms": setup["max_latency_ms"], "max_size_mb": setup["max_size_mb"],
                        "latency_statistic": setup["latency_statistic"], "relative_to_shipped": reference,
                        "fixed": "by the command line, before evaluation", "met": setup["within_budgets"]},
            "networks": len(members_of(model)),
            "members": [str(args.run_dir / chosen)] + [str(p) for p in kept_others],
            "chosen_candidate": setup["members"],
            "views": len(test_time_offsets(flip, shift_px)),
            "val_loss_by_candidate": setup["val_loss"],
            "latency_ms_by_candidate": setup["latency_ms"], "max_latency_ms": setup["max_latency_ms"],
            "size_mb_by_members": setup["size_mb"],
            "weights_stored_as": storage_label(args.weights_float16),
            "age_correction_alpha_beta": setup["age_correction"].tolist(),
            "age_correction_two_fold_check_on_val": setup.get("age_check"),
            "gender_platt_a_c": setup["gender_platt"].tolist(),
            "gender_platt_two_fold_check_on_val": setup.get("gender_check"),
            "gender_balance_check_on_val": setup.get("gender_balance"),
            "steadiness_on_val_against_shipped": steadiness,
            "other_members": member_summaries(kept_others, this_run=args.run_dir)},
        "data": {"dataset": "UTKFace (aligned & cropped, cleaned copy)", "split": "splits.csv: train/val/test",
                 "selection": "val (best epoch by validation loss)", "benchmark": "test",
                 "train_images": run.get("train_images"), "crops": run.get("crops"), "measured_with_crops": args.crops,
                 "crop_stats": data["crop_stats"] | {"test": {"images": measured["test_images"],
                                                              "detected": measured["test_detected"]}},
                 "age_balance": run.get("age_balance"), "train_backgrounds": run.get("backgrounds"), "distill_from": run.get("distill_from"),
                 "distill_weight": run.get("distill_weight")},
        "architecture": {"name": model.name, "arch": run.get("arch"), "parameters": int(model.count_params()),
                         "age_head": run.get("age_head", "regression"),
                         "summary": "see training/models.py (build_age_gender_model / build_age_gender_baseline)"},
        "training": {"epochs_run": len(log), "epochs_planned": run.get("epochs"), "shipped_epoch": shipped_epoch,
                     "warm_started_from": warm_started_from(args.run_dir, run),
                     "checkpoint_selection": {"val_loss_after_bn_recalibration":
                                              {k: -v for k, v in setup["checkpoint_selection"].items()},
                                              "chosen": chosen,
                                              "weight_average": weight_average_record(args.run_dir, chosen)},
                     "batchnorm": "statistics re-estimated on un-augmented training images (training/common.py)",
                     "precision_from_epoch": run_precision(run),
                     "wall_time_seconds": float(sum(r.get("epoch_seconds", 0) for r in log)),
                     "seed": run.get("seed"), "batch_size": run.get("batch_size"), "peak_lr": run.get("peak_lr"),
                     "curve": [{"epoch": i + 1, "val_age_mae": r["val_age_mae"],
                                "val_gender_accuracy": r["val_gender_accuracy"]} for i, r in enumerate(log)]},
        "metrics": metrics,
    }
    add_latencies(metrics, model, card, args.latency_calls)
    write_json(args.models_dir / "age_gender.json", card)
    write_json(args.reports_dir / "age_gender_eval.json", metrics)
    print_summary(metrics, interval)


def print_summary(metrics: dict, interval: dict) -> None:
    headline, live = metrics["test"], metrics["live_profile"]
    age, gender = headline["age"], headline["gender"]
    print(f"val: age MAE {metrics['val']['age_mae']:.2f}, gender {metrics['val']['gender_accuracy']:.4f}; "
          f"test (app path, {headline['detection']['detected']}/{headline['detection']['images']} faces found): "
          f"age MAE {age['mae']:.2f}, CS@5 {age['cs5']:.3f}; gender accuracy {gender['accuracy']:.4f}; "
          f"80% interval -{interval['below']:.1f}/+{interval['above']:.1f}; live profile: age MAE "
          f"{live['test']['age']['mae']:.2f}, gender {live['test']['gender']['accuracy']:.4f}; tight chips: age MAE "
          f"{metrics['test_on_tight_chips']['age_mae']:.2f}, gender {metrics['test_on_tight_chips']['gender_accuracy']:.4f}")

if __name__ == "__main__":
    main()
