"""Train each model for one short epoch on a handful of real images, then evaluate and export it.

Needs the datasets in ../shared/data (skipped with a reason when absent).
"""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA as DATA

# Evaluations time every candidate setup; five calls each (not 100) keep these runs short, and no assertion
# here depends on how fast a setup is.
QUICK_TIMING = ["--latency-calls", "5"]

pytestmark = pytest.mark.skipif(not (DATA / "fer2013").is_dir() or not (DATA / "utkface").is_dir(),
                                reason=f"datasets not found at {DATA} (see its README)")


def test_emotion_training_and_evaluation_produce_model_and_card(tmp_path, monkeypatch):
    from training import data_fer, evaluate_emotion, train_emotion
    run = tmp_path / "run"
    # in bfloat16 (any CPU can, if slowly): the evaluation reads float32 files and the card says how it trained
    train_emotion.main(["--data-dir", str(DATA / "fer2013"), "--run-dir", str(run), "--limit", "140",
                        "--epochs", "1", "--batch-size", "16", "--mixed-bfloat16", "on"])
    assert (run / "last.keras").exists() and (run / "best.keras").exists()
    assert len((run / "log.csv").read_text().strip().splitlines()) == 2      # header + one epoch

    def evaluate(out: str, *extra) -> dict:
        evaluate_emotion.main(["--data-dir", str(DATA / "fer2013"), "--run-dir", str(run), "--limit", "140", *QUICK_TIMING,
                               "--models-dir", str(tmp_path / out), "--reports-dir", str(tmp_path / out / "reports"),
                               "--ensemble-with", str(run / "last.keras"), *extra])
        return json.loads((tmp_path / out / "emotion.json").read_text())

    card = evaluate("models")
    assert (tmp_path / "models" / "emotion.keras").exists()
    assert card["outputs"]["emotion"]["labels"][0] == "angry" and card["input"]["size"] == 48
    assert card["training"]["precision_from_epoch"] == {"1": "mixed_bfloat16"}
    from training.precision import file_policies
    assert file_policies(tmp_path / "models" / "emotion.keras") == {"float32"}
    assert 0 <= card["metrics"]["private_test"]["accuracy"] <= 1
    # live: the face and, where the chosen setup mirrors, its mirror (app.pipeline.predict.profile_augmentation)
    assert card["metrics"]["live_profile"]["views"] == (2 if card["test_time_augmentation"]["horizontal_flip"] else 1)
    assert 0 <= card["metrics"]["live_profile"]["private_test"]["accuracy"] <= 1
    # through the app's own path: PrivateTest images as photos, the default detector, the card's margin
    app = card["metrics"]["private_test_app_path"]
    images = sum(c["support"] for c in card["metrics"]["private_test"]["per_class"].values())
    assert app["images"] == images and 0 < app["detected"] <= app["images"]
    assert app["accuracy_per_image"] <= app["accuracy"] and app["detection_recall"] == app["detected"] / app["images"]
    # --rescore: a shipped model as it is, read again through the app's path; nothing else in its card changes
    import shutil
    shutil.copytree(tmp_path / "models", tmp_path / "rescored")
    evaluate_emotion.main(["--data-dir", str(DATA / "fer2013"), "--limit", "140", "--rescore",
                           "--models-dir", str(tmp_path / "rescored")])
    rescored = json.loads((tmp_path / "rescored" / "emotion.json").read_text())
    again = rescored["metrics"].pop("private_test_app_path")
    assert again["images"] == app["images"] and again["margin"] == card["input"]["margin"]
    assert rescored == {**card, "metrics": {k: v for k, v in card["metrics"].items() if k != "private_test_app_path"}}
    assert card["training"]["epochs_run"] == 1
    assert set(card["serving_setup"]["class_logit_shift"]) == set(card["outputs"]["emotion"]["labels"])
    assert "private_test_accuracy_of_alternatives" not in card["serving_setup"]
    assert "Haar" not in card["input"]["preprocessing"].split("serving")[0]     # FER images are not Haar-cropped
    assert (tmp_path / "models" / "reports" / "emotion_confusion.png").stat().st_size > 1000
    from training.models_doc import render          # docs/models.md and /models show the live profile too
    assert "live profile" in render(tmp_path / "models")

    # PrivateTest is asked for only after the setup is fixed and the model written: with its labels shuffled
    # the choice is the same, the score is not.
    load_fer, calls = data_fer.load_fer, []

    def shuffled_private(*args, splits=data_fer.SPLITS, **kwargs):
        calls.append((splits, (tmp_path / "other" / "emotion.keras").exists()))
        out = load_fer(*args, splits=splits, **kwargs)
        if "private" in out:
            out["private"].y = np.random.default_rng(0).permutation(out["private"].y)
        return out
    monkeypatch.setattr(data_fer, "load_fer", shuffled_private)
    other = evaluate("other")
    assert [(("private" in splits), written) for splits, written in calls] == [(False, False), (True, True)]
    assert other["serving_setup"] == card["serving_setup"] and other["training"] == card["training"]
    assert other["metrics"]["private_test"]["confusion_matrix"] != card["metrics"]["private_test"]["confusion_matrix"]

    # --weights-float16: the served file keeps its weights as float16, and the card says so.
    from training.weights_float16 import keras_stores_float16
    half = evaluate("half", "--weights-float16")
    assert half["serving_setup"]["weights_stored_as"].startswith("float16")
    assert keras_stores_float16(tmp_path / "half" / "emotion.keras")

    # A bar fixed beforehand that the chosen setup does not clear: PrivateTest is not read, nothing is written.
    calls.clear()
    evaluate_emotion.main(["--data-dir", str(DATA / "fer2013"), "--run-dir", str(run), "--limit", "140",
                           "--models-dir", str(tmp_path / "barred"), "--min-public-accuracy", "1.01"])
    assert [("private" in splits) for splits, _ in calls] == [False]
    assert not (tmp_path / "barred").exists()


def test_emotion_training_resumes_after_the_last_epoch(tmp_path):
    from training import train_emotion
    args = ["--data-dir", str(DATA / "fer2013"), "--run-dir", str(tmp_path), "--limit", "70", "--batch-size", "16"]
    train_emotion.main(args + ["--epochs", "1"])
    train_emotion.main(args + ["--epochs", "2"])        # picks up at epoch 2, does not start over
    assert len((tmp_path / "log.csv").read_text().strip().splitlines()) == 3


def test_emotion_run_continues_from_its_one_checkpoint_file_on_a_new_machine(tmp_path):
    """The committed file alone (no runs/ folder, as on a fresh clone) continues the run where it stopped,
    with the same schedule; another run's options are refused instead of silently starting over."""
    from training import train_emotion
    from training.common import MAX_CHECKPOINT_BYTES, load_run_checkpoint
    ckpt = tmp_path / "checkpoints" / "emotion.npz"
    args = ["--data-dir", str(DATA / "fer2013"), "--limit", "70", "--batch-size", "16", "--epochs", "3",
            "--checkpoint", str(ckpt)]
    train_emotion.main(args + ["--run-dir", str(tmp_path / "machine1"), "--stop-after-epoch", "1"])
    weights, meta = load_run_checkpoint(ckpt)
    assert meta["epochs_done"] == 1 and ckpt.stat().st_size <= MAX_CHECKPOINT_BYTES
    assert not list(ckpt.parent.glob("*.tmp"))                       # replaced atomically, nothing left over

    train_emotion.main(args + ["--run-dir", str(tmp_path / "machine2"), "--stop-after-epoch", "2"])
    _, meta = load_run_checkpoint(ckpt)
    assert meta["epochs_done"] == 2
    lrs = [row["learning_rate"] for row in meta["log"]]
    assert lrs[1] > lrs[0]                                            # the warm-up continued, not restarted
    log = (tmp_path / "machine2" / "log.csv").read_text().strip().splitlines()
    assert len(log) == 3 and log[0].startswith("epoch,")              # rebuilt first row + the new epoch
    from training.checkpoint_status import summary
    assert "emotion visage, epoch 2 of 3" in summary(ckpt) and "best val_accuracy" in summary(ckpt)

    with pytest.raises(SystemExit, match="different run"):
        train_emotion.main([*args[:-4], "--epochs", "5", "--checkpoint", str(ckpt),
                            "--run-dir", str(tmp_path / "machine3")])


def test_weight_average_of_the_last_epochs_continues_from_the_checkpoint_file_on_another_machine(tmp_path):
    """--average-last: swa.keras is the mean of the last epochs' weights, carried (float16) in the run's one
    file from one machine to the next, and the evaluators offer it beside best.keras and last.keras."""
    import keras

    from training import evaluate_age_gender, evaluate_emotion, train_emotion
    from training.checkpoint_status import summary
    from training.common import chosen_epoch, load_run_checkpoint
    ckpt = tmp_path / "emotion.npz"
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["--data-dir", str(DATA / "fer2013"), "--limit", "70", "--batch-size", "16", "--epochs", "3",
            "--average-last", "0.67", "--checkpoint", str(ckpt)]          # the last 2 of 3 epochs
    train_emotion.main(args + ["--run-dir", str(one), "--stop-after-epoch", "1"])
    assert not (one / "swa.keras").exists() and load_run_checkpoint(ckpt)[1]["weight_average"] is None
    train_emotion.main(args + ["--run-dir", str(one), "--stop-after-epoch", "2"])
    after_2 = keras.models.load_model(one / "last.keras").get_weights()
    assert load_run_checkpoint(ckpt)[1]["weight_average"] == {"first_epoch": 2, "through_epoch": 2, "epochs_averaged": 1}

    train_emotion.main(args + ["--run-dir", str(two)])                  # a new machine: the file alone
    after_3 = keras.models.load_model(two / "last.keras").get_weights()
    average = keras.models.load_model(two / "swa.keras").get_weights()
    assert json.loads((two / "swa.json").read_text()) == {"first_epoch": 2, "through_epoch": 3, "epochs_averaged": 2}
    moved = 0
    for a, x, y in zip(average, after_2, after_3):
        np.testing.assert_allclose(a, (x + y) / 2, rtol=1e-2, atol=1e-3)   # float16 between the machines
        moved += not np.allclose(x, y)
    assert moved                                                         # epoch 3 did change the weights
    assert "weight average (swa.keras): epochs 2-3 (2 epochs)" in summary(ckpt)
    assert chosen_epoch(two, "swa.keras", [0.3, 0.5, 0.4], higher=True) == 3
    assert chosen_epoch(two, "best.keras", [0.3, 0.5, 0.4], higher=True) == 2
    for evaluator in (evaluate_emotion, evaluate_age_gender):
        assert "swa.keras" in evaluator.parse_args(["--data-dir", "x"]).checkpoints.split(",")


def test_best_epochs_weights_travel_in_the_checkpoint_file_while_it_stays_small(tmp_path, monkeypatch):
    """best.keras can be offered on another machine: the best epoch's weights ride in the run's one file
    (float16), and are left out of it, not the file refused, when they would take it over the limit."""
    import keras

    from training import common, train_emotion
    from training.checkpoint_status import summary
    ckpt = tmp_path / "emotion.npz"
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["--data-dir", str(DATA / "fer2013"), "--limit", "70", "--batch-size", "16", "--epochs", "3",
            "--checkpoint", str(ckpt)]
    train_emotion.main(args + ["--run-dir", str(one), "--stop-after-epoch", "2"])
    _, meta = common.load_run_checkpoint(ckpt)
    scores = [row["val_accuracy"] for row in meta["log"]]
    assert meta["best_epoch"] == int(np.argmax(scores)) + 1 and meta["best_weights"]
    assert f"best epoch's weights (best.keras): epoch {meta['best_epoch']}" in summary(ckpt)

    train_emotion.main(args + ["--run-dir", str(two), "--stop-after-epoch", "2"])   # another machine, the
    best_on_one = keras.models.load_model(one / "best.keras", compile=False).get_weights()    # file alone
    for a, b in zip(keras.models.load_model(two / "best.keras", compile=False).get_weights(), best_on_one):
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-3)

    monkeypatch.setattr(common, "MAX_CHECKPOINT_BYTES", 1)
    train_emotion.main(args + ["--run-dir", str(two)])
    _, meta = common.load_run_checkpoint(ckpt)
    assert meta["epochs_done"] == 3 and meta["best_epoch"] is None and not meta["best_weights"]


def test_a_checkpoint_whose_best_weights_do_not_fit_is_written_once_an_epoch_after_the_first_miss(tmp_path,
                                                                                               monkeypatch):
    """Once the best epoch's weights have been left out for size, later epochs do not try them again
    (each try writes the whole compressed file)."""
    import keras

    from training import common
    writes = []
    write = common.write_checkpoint_file
    monkeypatch.setattr(common, "write_checkpoint_file", lambda path, meta, arrays: writes.append(
        meta["best_epoch"]) or write(path, meta, arrays))
    monkeypatch.setattr(common, "MAX_CHECKPOINT_BYTES", 1)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    callback = common.RunCheckpointCallback(tmp_path / "run.npz", {"task": "t"}, tmp_path)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_end(0, {"val_loss": 1.0})
    assert writes == [1, None]                        # offered with the best weights, then written without
    callback.on_epoch_end(1, {"val_loss": 0.5})       # a better epoch: its weights are not offered again
    assert writes == [1, None, None]
    assert common.load_run_checkpoint(tmp_path / "run.npz")[1]["best_epoch"] is None


def shuffled_test_labels(data_dir: Path, folder: Path) -> Path:
    """A copy of the UTKFace folder (images linked) whose test rows have their labels shuffled among them."""
    folder.mkdir()
    (folder / "UTKFace").symlink_to(data_dir / "UTKFace")
    with open(data_dir / "splits.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    test = [r for r in rows if r["split"] == "test"]
    labels = [(r["age"], r["gender"], r["race"]) for r in test]
    for r, i in zip(test, np.random.default_rng(0).permutation(len(test))):
        r["age"], r["gender"], r["race"] = labels[i]
    with open(folder / "splits.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def chosen_setup(card: dict) -> dict:
    """Everything the evaluation chooses (not the timings, which are measured, nor the test numbers)."""
    setup = card["serving_setup"]
    return {"members": setup["members"], "views": card["test_time_augmentation"], "val": setup["val_loss_by_candidate"],
            "age_correction": setup["age_correction_alpha_beta"], "platt": setup["gender_platt_a_c"],
            "interval": card["outputs"]["age"]["interval"], "checkpoint": card["training"]["checkpoint_selection"],
            "val_metrics": card["metrics"]["val"]}


def test_age_gender_training_and_evaluation_produce_model_and_card(tmp_path, monkeypatch):
    from training import evaluate_age_gender, train_age_gender
    run = tmp_path / "run"
    train_age_gender.main(["--data-dir", str(DATA / "utkface"), "--run-dir", str(run), "--limit", "60",
                           "--epochs", "1", "--batch-size", "16"])
    assert (run / "best.keras").exists()

    def evaluate(data_dir: Path, out: str, *extra) -> dict:
        evaluate_age_gender.main(["--data-dir", str(data_dir), "--run-dir", str(run), "--limit", "60", *QUICK_TIMING,
                                  "--models-dir", str(tmp_path / out), "--reports-dir", str(tmp_path / out / "reports"),
                                  "--ensemble-with", str(run / "last.keras"), *extra])
        return json.loads((tmp_path / out / "age_gender.json").read_text())

    card = evaluate(DATA / "utkface", "models")
    assert (tmp_path / "models" / "age_gender.keras").exists()
    assert card["outputs"]["gender"]["positive_label"] == "female"
    assert card["outputs"]["age"]["interval"]["coverage"] == 0.8
    assert card["training"]["precision_from_epoch"] == {"1": "float32"}
    test = card["metrics"]["test"]
    assert set(card["metrics"]["fairness_test"]) >= {"gender=male", "gender=female"}
    # the headline counts the faces the app finds; missed ones are no answer, reported beside it
    found = test["detection"]
    assert found["detected"] + found["missed"] == found["images"] > 0 and test["age"]["n"] == found["detected"]
    assert card["data"]["crop_stats"]["test"] == {"images": found["images"], "detected": found["detected"]}
    assert test["age"]["mae"] > 0 and test["per_image"]["gender_correct"] <= test["gender"]["accuracy"]
    assert card["metrics"]["test_on_tight_chips"]["all_images"]["age"]["n"] == found["images"]
    live = card["metrics"]["live_profile"]
    assert live["views"] == (2 if card["test_time_augmentation"]["horizontal_flip"] else 1)
    assert live["test"]["age"]["n"] == found["detected"]
    assert live["latency_ms_single_face"]["median"] > 0 and card["metrics"]["latency_ms_single_face"]["median"] > 0
    # 2 candidates x 4 sets of test-time views, each timed and none scored on test; budgets recorded
    assert "test_metrics_of_uncorrected_candidates" not in card["serving_setup"]
    latency = card["serving_setup"]["latency_ms_by_candidate"]
    assert len(latency) == 8 and all(v > 0 for v in latency.values())
    assert card["serving_setup"]["budgets"]["max_latency_ms"] == 30.0
    tta = card["test_time_augmentation"]
    assert isinstance(tta["horizontal_flip"], bool) and tta["shift_px"] in (0, round(64 / 32))
    from training.models_doc import render
    text = render(tmp_path / "models")
    assert f"| detection | {found['images']:,} | {found['detected']:,} |" in text and "live profile" in text

    # The choice is made before the test labels are read: shuffling them changes the test numbers, not the choice.
    # (No latency budget here, so that timing noise cannot change the choice between the two runs.) Both store
    # their weights as float16 (--weights-float16, checked below).
    shuffled = shuffled_test_labels(DATA / "utkface", tmp_path / "shuffled")
    again_options = ("--max-latency-ms", "1e9", "--latency-statistic", "p10", "--weights-float16")
    again = evaluate(DATA / "utkface", "again", *again_options)
    other = evaluate(shuffled, "other", *again_options)
    assert other["serving_setup"]["budgets"]["latency_statistic"] == "p10"
    assert chosen_setup(other) == chosen_setup(again)
    assert other["metrics"]["test"]["age"]["mae"] != again["metrics"]["test"]["age"]["mae"]

    # A latency budget relative to the shipped model, timed in the same run, replaces the default absolute one
    # (which a busy machine's shipped setup itself can exceed); given both, the tighter applies.
    relative = evaluate(DATA / "utkface", "models", "--max-latency-vs-shipped", "3")["serving_setup"]["budgets"]
    reference = relative["relative_to_shipped"]
    assert reference["version"] == card["version"] and reference["ms"] > 0 and reference["share"] == 3
    assert relative["max_latency_ms"] == pytest.approx(3 * reference["ms"])
    both = evaluate(DATA / "utkface", "models", "--max-latency-vs-shipped", "3", "--max-latency-ms", "1")
    assert both["serving_setup"]["budgets"]["max_latency_ms"] == 1.0

    # --weights-float16: the served file keeps its weights as float16 (half the bytes), and the card says so.
    from training.weights_float16 import keras_stores_float16
    assert again["serving_setup"]["weights_stored_as"].startswith("float16")
    assert card["serving_setup"]["weights_stored_as"] == "float32"
    assert keras_stores_float16(tmp_path / "again" / "age_gender.keras")
    assert again["serving_setup"]["size_mb_by_members"]["checkpoint"] == pytest.approx(
        card["serving_setup"]["size_mb_by_members"]["checkpoint"] / 2)

    # A bar fixed beforehand that the chosen setup does not clear: nothing is written, the test split not read.
    from training import data_utk
    read, real_load = [], data_utk.load_utk

    def recording_load(*a, splits=data_utk.SPLITS, **k):
        read.append(tuple(splits))
        return real_load(*a, splits=splits, **k)
    monkeypatch.setattr(data_utk, "load_utk", recording_load)
    evaluate_age_gender.main(["--data-dir", str(DATA / "utkface"), "--run-dir", str(run), "--limit", "60", *QUICK_TIMING,
                              "--models-dir", str(tmp_path / "barred"), "--reports-dir", str(tmp_path / "barred_reports"),
                              "--max-latency-ms", "1e9", "--min-val-gender-accuracy", "1.01"])
    assert read == [("train", "val")] and not (tmp_path / "barred").exists()
    record = json.loads((tmp_path / "barred_reports" / f"{run.name}_evaluation.json").read_text())
    assert record["over_bar"] is False and record["bar"]["min_val_gender_accuracy"] == 1.01   # the numbers stay
    assert record["served_val"]["gender_accuracy"] < 1.01
    assert {"val_age_mae", "val_gender_accuracy", "latency_ms"} <= set(record["by_candidate"]["checkpoint, views: none"])

    # --choose-only: the same choice and record over a bar it clears, and still nothing shipped or tested.
    read.clear()
    evaluate_age_gender.main(["--data-dir", str(DATA / "utkface"), "--run-dir", str(run), "--limit", "60", *QUICK_TIMING,
                              "--models-dir", str(tmp_path / "chosen"), "--reports-dir", str(tmp_path / "chosen_reports"),
                              "--max-latency-ms", "1e9", "--choose-only"])
    chosen = json.loads((tmp_path / "chosen_reports" / f"{run.name}_evaluation.json").read_text())
    assert read == [("train", "val")] and not (tmp_path / "chosen").exists()
    assert chosen["over_bar"] is True and chosen["served_val"] == record["served_val"]

    # --keep-chosen: the chosen setup as a models folder the app serves from its Keras file, beside the shipped
    # emotion model, so that it can be measured through the app's path before (or without) shipping.
    import cv2
    from skimage import data as skdata

    from app.pipeline.analyze import run_pipeline
    from app.pipeline.predict import load_predictor
    from training.candidate_models import keras_only_copy
    shipped = keras_only_copy(Path(__file__).resolve().parents[2] / "models", tmp_path / "shipped")
    shipped_card = (shipped / "age_gender.json").read_text()
    evaluate_age_gender.main(["--data-dir", str(DATA / "utkface"), "--run-dir", str(run), "--limit", "60", *QUICK_TIMING,
                              "--models-dir", str(shipped), "--reports-dir", str(tmp_path / "kept_reports"),
                              "--max-latency-ms", "1e9", "--choose-only", "--keep-chosen", str(tmp_path / "kept"),
                              "--balance-gender", "--record-name", "second_look"])
    assert (shipped / "age_gender.json").read_text() == shipped_card          # nothing shipped
    # --record-name: a second evaluation of the same run keeps its own record beside the first.
    assert not (tmp_path / "kept_reports" / f"{run.name}_evaluation.json").exists()
    balance = json.loads((tmp_path / "kept_reports" / "second_look_evaluation.json").read_text())["served_val"]
    assert {"gap_without", "gap_with", "kept", "offset"} <= set(balance["gender_balance"])
    kept = json.loads((tmp_path / "kept" / "age_gender.json").read_text())
    assert kept["version"].startswith(f"candidate {run.name} ") and "runtime" not in kept
    assert kept["input"]["size"] == 64 and kept["candidate"]["not_shipped"] is True
    predictor = load_predictor(tmp_path / "kept")
    assert {m.card.name: m.runtime for m in predictor.models} == {"age_gender": "keras", "emotion": "keras"}
    photo = cv2.imencode(".jpg", cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))[1].tobytes()
    faces = run_pipeline(photo, predictor, max_bytes=10 << 20, max_pixels=50_000_000)[0]["faces"]
    assert len(faces) == 1 and 0 < faces[0]["age"] < 100

    # The steadiness bar: the same setup again is not steadier than itself shipped (same val faces, same
    # moved copies): the shipped card stays as it was and the test split is not read.
    read.clear()
    shipped_card = (tmp_path / "again" / "age_gender.json").read_text()
    evaluate(DATA / "utkface", "again", *again_options, "--steadier-than-shipped")
    assert read == [("train", "val")] and (tmp_path / "again" / "age_gender.json").read_text() == shipped_card


def test_age_gender_input_size_flag_reaches_the_card_the_app_reads(tmp_path):
    """--input-size trains at another resolution (warm-started from the shipped 64-pixel model) and the card says so;
    the card also names the start as it was then, even if the card beside it is replaced before evaluation."""
    import shutil
    from training import evaluate_age_gender, train_age_gender
    models_dir = Path(__file__).resolve().parents[2] / "models"
    start = tmp_path / "start"
    start.mkdir()
    for suffix in (".keras", ".json"):
        shutil.copy(models_dir / f"age_gender{suffix}", start / f"age_gender{suffix}")
    shipped_version = json.loads((start / "age_gender.json").read_text())["version"]
    run = tmp_path / "run"
    train_age_gender.main(["--data-dir", str(DATA / "utkface"), "--run-dir", str(run), "--limit", "30", "--epochs", "1",
                           "--batch-size", "16", "--input-size", "80", "--init-from", str(start / "age_gender.keras")])
    (start / "age_gender.json").write_text(json.dumps({"version": "replaced after the warm start"}))
    evaluate_age_gender.main(["--data-dir", str(DATA / "utkface"), "--run-dir", str(run), "--limit", "30", *QUICK_TIMING,
                              "--models-dir", str(tmp_path / "models"), "--reports-dir", str(tmp_path / "reports")])
    card = json.loads((tmp_path / "models" / "age_gender.json").read_text())
    assert card["input"]["size"] == 80 and "80x80" in card["input"]["preprocessing"]
    assert [m["version"] for m in card["training"]["warm_started_from"].values()] == [shipped_version]
    import keras
    assert keras.saving.load_model(tmp_path / "models" / "age_gender.keras").input_shape == (None, 80, 80, 1)


def test_age_distribution_head_trains_resumes_elsewhere_and_ships_two_outputs_with_an_onnx_copy(tmp_path):
    """--age-head distribution: trained through its three-output view, continued on another machine from the
    run's file, evaluated and exported like any other age/gender network; the card names the head."""
    import keras

    from training import evaluate_age_gender, export_runtime, train_age_gender
    ckpt = tmp_path / "bins.npz"
    args = ["--data-dir", str(DATA / "utkface"), "--limit", "30", "--epochs", "2", "--batch-size", "16",
            "--input-size", "64", "--age-head", "distribution", "--checkpoint", str(ckpt)]
    train_age_gender.main(args + ["--run-dir", str(tmp_path / "one"), "--stop-after-epoch", "1"])
    run = tmp_path / "two"
    train_age_gender.main(args + ["--run-dir", str(run)])
    log = (run / "log.csv").read_text().splitlines()
    assert len(log) == 3 and "val_age_bins_loss" in log[0]
    assert json.loads((run / "run.json").read_text())["age_head"] == "distribution"
    with pytest.raises(SystemExit, match="different run"):           # the head defines the run
        train_age_gender.main([a for a in args if a not in ("--age-head", "distribution")] +
                              ["--run-dir", str(tmp_path / "three")])

    evaluate_age_gender.main(["--data-dir", str(DATA / "utkface"), "--run-dir", str(run), "--limit", "30", *QUICK_TIMING,
                              "--models-dir", str(tmp_path / "models"), "--reports-dir", str(tmp_path / "reports")])
    card = json.loads((tmp_path / "models" / "age_gender.json").read_text())
    assert card["architecture"]["age_head"] == "distribution"
    served = keras.saving.load_model(tmp_path / "models" / "age_gender.keras", compile=False)
    assert set(served.output) == {"age", "gender"}
    assert export_runtime.main([str(tmp_path / "models"), "--models", "age_gender"]) == 0
    onnx_file = json.loads((tmp_path / "models" / "age_gender.json").read_text())["runtime"]["onnx"]["file"]

    # Its int8 copy keeps the bins' softmax and the expectation in float (int8 would round the years).
    import onnx

    from training.quantize_runtime import kept_in_float, quantize
    faces = np.random.default_rng(0).uniform(0, 1, (32, 64, 64, 1)).astype(np.float32)
    quantize(tmp_path / "models" / onnx_file, tmp_path / "int8.onnx", "face", faces)
    int8 = onnx.load(str(tmp_path / "int8.onnx"))
    dequantized = {o for n in int8.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    kept = [n for n in int8.graph.node if n.name in kept_in_float(int8)]
    assert {n.op_type for n in kept} >= {"Softmax", "MatMul"}
    after_features = [n for n in kept if n.op_type == "Softmax" or "/age_expectation" in n.name]
    assert not [i for n in after_features for i in n.input if i in dequantized]
    assert any(n.op_type == "DequantizeLinear" for n in int8.graph.node)       # the rest is int8


def test_shipped_network_warm_starts_a_bins_head_and_distils_from_its_own_views(tmp_path, capsys):
    """age_gender_bins_kd's command, in small: the shipped regression network goes into a bins network with
    nothing left to start from noise, and the shipped model's multi-view answers are blended into its targets."""
    from training import train_age_gender
    run, shipped = tmp_path / "kd", Path(__file__).resolve().parents[2] / "models" / "age_gender.keras"
    train_age_gender.main(["--data-dir", str(DATA / "utkface"), "--limit", "30", "--epochs", "1", "--batch-size", "16",
                           "--input-size", "96", "--age-head", "distribution", "--init-from", str(shipped),
                           "--distill-from", str(shipped), "--run-dir", str(run)])
    out = capsys.readouterr().out
    assert f"warm start from {shipped}\n" in out                      # no layer named as starting fresh
    assert f"distilling from {shipped} (weight 0.5)" in out
    with np.load(run / "teacher.npz") as teacher:
        assert teacher["age"].shape == teacher["gender"].shape and 0 < len(teacher["age"]) < 100   # --limit: about 30 faces
        assert 0 < float(teacher["age"].min()) and float(teacher["gender"].max()) <= 1
    assert "val_age_bins_loss" in (run / "log.csv").read_text().splitlines()[0]


def test_distilled_regression_run_logs_gender_accuracy_and_resumes_its_compiled_file(tmp_path):
    """Soft (distilled) gender targets: the logged training accuracy is the share on the right side of 0.5
    (Keras's own "accuracy" read 0 for them), and last.keras, compiled with that metric, reads back to resume."""
    from training import train_age_gender
    from training.common import read_log
    run, shipped = tmp_path / "kd", Path(__file__).resolve().parents[2] / "models" / "age_gender.keras"
    args = ["--data-dir", str(DATA / "utkface"), "--limit", "30", "--epochs", "2", "--batch-size", "16",
            "--input-size", "96", "--init-from", str(shipped), "--distill-from", str(shipped), "--run-dir", str(run)]
    train_age_gender.main(args + ["--stop-after-epoch", "1"])
    train_age_gender.main(args)
    rows = read_log(run)
    assert len(rows) == 2
    assert all(float(r["gender_accuracy"]) > 0.5 for r in rows)    # warm-started from the shipped network


def copy_of_shipped_age_gender(tmp_path: Path) -> tuple[Path, Path, dict]:
    """(the repository's models folder, a copy of its age/gender model and card, that card)."""
    import shutil
    models_dir = Path(__file__).resolve().parents[2] / "models"
    shipped = tmp_path / "models"
    shipped.mkdir()
    for suffix in (".keras", ".json"):
        shutil.copy(models_dir / f"age_gender{suffix}", shipped / f"age_gender{suffix}")
    return models_dir, shipped, json.loads((shipped / "age_gender.json").read_text())


def test_rescore_measures_the_shipped_model_through_the_default_path_and_keeps_its_setup(tmp_path):
    """--rescore: the shipped networks, views and corrections unchanged (same file, same serving setup),
    the card's numbers measured again through the app's default path (BlazeFace, faces turned upright)."""
    from training import evaluate_age_gender
    models_dir, shipped, before = copy_of_shipped_age_gender(tmp_path)
    evaluate_age_gender.main(["--data-dir", str(DATA / "utkface"), "--rescore", "--limit", "30", "--crops", "app",
                              "--models-dir", str(shipped), "--reports-dir", str(tmp_path / "reports"),
                              "--run-dir", str(tmp_path / "no-such-run")])
    card = json.loads((shipped / "age_gender.json").read_text())
    assert (shipped / "age_gender.keras").read_bytes() == (models_dir / "age_gender.keras").read_bytes()
    assert card["serving_setup"] == before["serving_setup"] and card["version"] == before["version"]
    assert "turned upright" in card["input"]["preprocessing"] and card["data"]["measured_with_crops"] == "app"
    assert "default path" in card["metrics"]["rescored"]["what"]
    found = card["metrics"]["test"]["detection"]
    assert found["images"] > 0 and card["metrics"]["test"]["age"]["n"] == found["detected"]
    assert card["data"]["crop_stats"]["test"] == {"images": found["images"], "detected": found["detected"]}
    assert card["metrics"]["live_profile"]["latency_ms_single_face"]["median"] > 0
    assert card["outputs"]["age"]["interval"] != before["outputs"]["age"]["interval"]


def test_rescore_with_gender_balance_changes_the_file_and_the_version_together(tmp_path):
    """--rescore --balance-gender: the check is recorded in the card; where val keeps the offset, the file the
    app loads and the card's version change with it, and only then (a few faces: either may happen)."""
    from training import evaluate_age_gender
    models_dir, shipped, before = copy_of_shipped_age_gender(tmp_path)
    evaluate_age_gender.main(["--data-dir", str(DATA / "utkface"), "--rescore", "--balance-gender", "--limit", "40",
                              "--models-dir", str(shipped), "--reports-dir", str(tmp_path / "reports")])
    card = json.loads((shipped / "age_gender.json").read_text())
    check = card["serving_setup"]["gender_balance_check_on_val"]
    assert set(check) >= {"gap_without", "gap_with", "accuracy_without", "accuracy_with", "kept", "offset"}
    same_file = (shipped / "age_gender.keras").read_bytes() == (models_dir / "age_gender.keras").read_bytes()
    assert same_file == (not check["kept"])
    assert card["version"] == (before["version"].removesuffix("-balanced") + "-balanced" if check["kept"]
                               else before["version"])
    assert card["metrics"]["rescored"]["what"].startswith(
        "the shipped networks and views unchanged, the gender logit offset" if check["kept"]
        else "the shipped networks, views and corrections unchanged")


def test_age_gender_run_continues_from_its_checkpoint_file(tmp_path):
    """The long run's setup (--arch res at 128 px, faces on random backgrounds) across two "machines"
    through its one file."""
    from training import train_age_gender
    from training.common import load_run_checkpoint
    ckpt = tmp_path / "age_gender.npz"
    args = ["--data-dir", str(DATA / "utkface"), "--limit", "30", "--batch-size", "16", "--epochs", "2",
            "--arch", "res", "--backgrounds", "--cache-dir", str(tmp_path / "cache"), "--checkpoint", str(ckpt)]
    train_age_gender.main(args + ["--run-dir", str(tmp_path / "one"), "--stop-after-epoch", "1"])
    train_age_gender.main(args + ["--run-dir", str(tmp_path / "two")])
    _, meta = load_run_checkpoint(ckpt)
    assert meta["epochs_done"] == 2 and meta["settings"]["task"] == "age_gender"
    assert meta["settings"]["arch"] == "res" and meta["settings"]["input_size"] == 128
    assert meta["settings"]["backgrounds"] is True
    assert {"val_age_mae", "val_gender_accuracy"} <= set(meta["log"][1])


def test_evaluation_reestimates_batchnorm_on_the_faces_each_network_was_trained_on(tmp_path, monkeypatch):
    """A --backgrounds run's checkpoints get their BatchNorm statistics from its faces on backgrounds (as its
    training re-estimated them every epoch); each --ensemble-with network from the kind of faces it learnt from."""
    from training import common, data_utk, evaluate_age_gender, train_age_gender
    run, framed_run = tmp_path / "run", tmp_path / "framed"
    for folder, extra in ((run, ["--backgrounds"]), (framed_run, [])):
        train_age_gender.main(["--data-dir", str(DATA / "utkface"), "--limit", "30", "--batch-size", "16",
                               "--epochs", "1", "--run-dir", str(folder)] + extra)
    assert common.trained_on_backgrounds(run / "last.keras") and not common.trained_on_backgrounds(framed_run / "last.keras")
    seen, original = [], common.recalibrate_batchnorm
    monkeypatch.setattr(common, "recalibrate_batchnorm", lambda model, x, **k: (seen.append(x), original(model, x, **k)))
    evaluate_age_gender.main(["--data-dir", str(DATA / "utkface"), "--run-dir", str(run), "--limit", "30", *QUICK_TIMING,
                              "--checkpoints", "last.keras", "--choose-only",
                              "--ensemble-with", str(framed_run / "last.keras"), str(run / "last.keras"),
                              "--models-dir", str(tmp_path / "models"), "--reports-dir", str(tmp_path / "reports")])
    on_backgrounds = data_utk.detected_only(data_utk.load_utk(DATA / "utkface", train_age_gender.INPUT_SIZE, train_age_gender.MARGIN, "app",
                                                              None, 30, ("train",), backgrounds=True)["train"])["x"]
    framed = data_utk.detected_only(data_utk.load_utk(DATA / "utkface", train_age_gender.INPUT_SIZE, train_age_gender.MARGIN, "app",
                                                      None, 30, ("train",))["train"])["x"]
    assert len(seen) == 3 and not np.array_equal(on_backgrounds, framed)
    np.testing.assert_array_equal(seen[0], on_backgrounds)         # the run's checkpoint
    np.testing.assert_array_equal(seen[1], framed)                 # a network trained on edge-framed faces
    np.testing.assert_array_equal(seen[2], on_backgrounds)         # one trained on backgrounds


def test_age_gender_consistency_run_saves_the_network_alone_and_continues_from_its_checkpoint(tmp_path):
    """--consistency trains the network inside a two-input wrapper (a face and a jittered copy of it);
    what is saved, averaged and carried over to another machine is the network itself, one input."""
    import keras

    from training import train_age_gender
    from training.common import load_run_checkpoint
    ckpt = tmp_path / "age_gender.npz"
    args = ["--data-dir", str(DATA / "utkface"), "--limit", "30", "--batch-size", "16", "--epochs", "2",
            "--consistency", "1.0", "--average-last", "0.5", "--cache-dir", str(tmp_path / "cache"),
            "--checkpoint", str(ckpt)]
    train_age_gender.main(args + ["--run-dir", str(tmp_path / "one"), "--stop-after-epoch", "1"])
    # another weight, or none, would be another run
    for other in ([a if a != "1.0" else "2.0" for a in args], [a for a in args if a not in ("--consistency", "1.0")]):
        with pytest.raises(SystemExit, match="consistency"):
            train_age_gender.main(other + ["--run-dir", str(tmp_path / "x")])
    train_age_gender.main(args + ["--run-dir", str(tmp_path / "two")])
    _, meta = load_run_checkpoint(ckpt)
    assert meta["epochs_done"] == 2 and meta["settings"]["consistency"] == 1.0
    first, second = meta["log"]
    # the two copies differ, so their answers do; val faces go in twice unmoved, so there the gap is 0
    assert first["steady_age_loss"] > 0 and second["val_steady_age_loss"] == 0
    assert {"val_age_mae", "val_gender_accuracy", "val_loss"} <= set(second)
    for name in ("last.keras", "swa.keras"):
        network = keras.models.load_model(tmp_path / "two" / name, compile=False)
        assert network.input_shape == (None, 64, 64, 1) and sorted(network.output_names) == ["age", "gender"]


def test_mixed_bfloat16_epochs_write_float32_files_and_the_checkpoint_records_each_epochs_precision(tmp_path, capsys):
    """A run goes float32 → mixed bfloat16 (a machine with AMX) → float32 (one without) through its one file;
    every file a mixed epoch wrote loads as float32, and the card's run.json says which epochs ran how."""
    from training import train_age_gender
    from training.common import load_run_checkpoint
    from training.precision import file_policies, policies_in
    ckpt = tmp_path / "mixed.npz"
    args = ["--data-dir", str(DATA / "utkface"), "--limit", "30", "--epochs", "3", "--batch-size", "16",
            "--arch", "visage-aa", "--input-size", "64", "--age-head", "distribution", "--average-last", "0.7",
            "--checkpoint", str(ckpt)]
    train_age_gender.main(args + ["--run-dir", str(tmp_path / "one"), "--stop-after-epoch", "1"])
    mixed = tmp_path / "two"
    train_age_gender.main(args + ["--run-dir", str(mixed), "--stop-after-epoch", "2", "--mixed-bfloat16", "on"])
    assert "training in mixed_bfloat16 from epoch 2" in capsys.readouterr().out
    for name in ("last.keras", "best.keras", "swa.keras"):
        assert file_policies(mixed / name) == {"float32"}, name
    _, meta = load_run_checkpoint(ckpt)
    assert meta["epochs_done"] == 2 and policies_in(json.loads(meta["model_json"])) == {"float32"}
    assert meta["settings"]["precision_from_epoch"] == {"1": "float32", "2": "mixed_bfloat16"}
    train_age_gender.main(args + ["--run-dir", str(tmp_path / "three"), "--mixed-bfloat16", "off"])
    _, meta = load_run_checkpoint(ckpt)
    history = {"1": "float32", "2": "mixed_bfloat16", "3": "float32"}
    assert meta["epochs_done"] == 3 and meta["settings"]["precision_from_epoch"] == history
    assert json.loads((tmp_path / "three" / "run.json").read_text())["precision_from_epoch"] == history
    from training.checkpoint_status import summary
    assert "precision: float32 from epoch 1, mixed_bfloat16 from epoch 2, float32 from epoch 3" in summary(ckpt)
