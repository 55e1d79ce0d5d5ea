"""The README's training sentence (training/readme_models.py) says what the card says."""
from training.readme_models import how_trained


def card(training: dict, setup: dict, arch: str = "visage") -> dict:
    return {"training": training, "serving_setup": setup, "architecture": {"arch": arch}}


EARLIER = {"networks": 2, "epochs_run": 25, "wall_time_seconds": 1800, "epochs_in_all": 71,
           "wall_time_seconds_in_all": 12000}


def test_a_new_network_averaged_with_an_earlier_ensemble_counts_every_network_and_minute():
    text = how_trained(card({"epochs_run": 32, "wall_time_seconds": 4800},
                            {"networks": 3, "other_members": {"runs/shipped.keras": EARLIER}}, arch="wide"),
                       "PublicTest")
    assert text.startswith("the average of 3 networks")
    assert "a `wide` network trained from scratch (32 epochs" in text
    assert "the earlier model (71 epochs, 200 min of training behind it)" in text
    assert "280 min of training in all" in text


def test_a_warm_restart_averaged_with_its_start_counts_that_start_once():
    start = {"epochs_run": 46, "wall_time_seconds": 6000}
    text = how_trained(card({"epochs_run": 25, "wall_time_seconds": 1200, "warm_started_from": {"init.keras": start}},
                            {"networks": 2, "other_members": {"init.keras": start}}), "val")
    assert "warm-started from earlier training (46 epochs, 100 min)" in text
    assert "the earlier model itself" in text and "120 min of training in all" in text


def test_a_single_network_from_scratch():
    assert how_trained(card({"epochs_run": 10, "wall_time_seconds": 600}, {}), "val") == \
        "a `visage` network trained from scratch (10 epochs, best chosen on val, 10 min) on a 2-core CPU"


def test_an_earlier_checkpoint_of_the_same_run_adds_no_training_time():
    snapshot = {"card": None, "networks": 1, "epochs_run": None, "wall_time_seconds": None,
                "epochs_in_all": 0, "wall_time_seconds_in_all": 0}
    text = how_trained(card({"epochs_run": 60, "wall_time_seconds": 6000},
                            {"networks": 2, "other_members": {"runs/snap/e33.keras": snapshot}}), "val")
    assert "an earlier checkpoint of the same run (`e33.keras`)" in text
    assert "earlier model" not in text and "100 min of training in all" in text


def test_two_networks_warm_started_from_one_model_count_its_training_once():
    """The shipped way: this run and another run each warm-started from a network of the same earlier model
    (one version), averaged with that model itself: the earlier model's minutes count once."""
    start = {"version": "v1", "networks": 2, "epochs_run": 18, "wall_time_seconds": 600, "epochs_in_all": 200,
             "wall_time_seconds_in_all": 30000}
    other_run = {"card": None, "version": None, "run": "bins_ws", "networks": 1, "epochs_run": 30,
                 "wall_time_seconds": 1800, "warm_started_from": {"shipped/model.keras": start},
                 "epochs_in_all": 230, "wall_time_seconds_in_all": 31800}
    text = how_trained(card({"epochs_run": 30, "wall_time_seconds": 2400,
                             "warm_started_from": {"shipped/model_member2.keras": start}},
                            {"networks": 3, "other_members": {"runs/bins_ws/best.keras": other_run,
                                                              "shipped/model.keras": start}}), "val")
    assert ("a network of the run `bins_ws` (30 epochs warm-started from earlier training, its `best.keras`, "
            "30 min)") in text
    assert "the earlier model itself (200 epochs" in text and "same run" not in text
    assert "570 min of training in all" in text          # 500 + 30 + 40


def test_the_readme_models_block_is_what_the_shipped_cards_write():
    """README.md's generated section must be regenerated (python -m training.readme_models) whenever a card changes."""
    from training.readme_models import ROOT, models_block
    block = models_block(ROOT / "models")
    assert "**Age and gender**" in block and "**Emotion**" in block
    assert block in (ROOT / "README.md").read_text()


def test_the_headline_table_adds_detection_recall_and_the_live_profile_when_a_card_has_them(tmp_path):
    """Cards under the app-path protocol carry detection recall and a live-profile latency; the README row shows both."""
    import json
    import shutil

    from training.readme_models import ROOT, models_block
    for name in ("emotion", "age_gender"):
        shutil.copy(ROOT / "models" / f"{name}.json", tmp_path / f"{name}.json")
    card = json.loads((tmp_path / "age_gender.json").read_text())
    card["metrics"]["test"].pop("detection", None)          # a card from before the app-path protocol
    card["metrics"].pop("live_profile", None)
    (tmp_path / "age_gender.json").write_text(json.dumps(card))
    before = models_block(tmp_path)
    old_row = next(line for line in before.splitlines() if line.startswith("| **Age and gender**"))
    assert "detector" not in old_row and "live profile" not in old_row

    card = json.loads((tmp_path / "age_gender.json").read_text())
    card["metrics"]["test"]["detection"] = {"recall": 0.9612, "detected": 1971, "images": 2051}
    card["metrics"]["live_profile"] = {"latency_ms_single_face": {"median": 3.3}}
    (tmp_path / "age_gender.json").write_text(json.dumps(card))
    row = next(line for line in models_block(tmp_path).splitlines() if line.startswith("| **Age and gender**"))
    assert "faces found by the detector 96.1%" in row
    assert f"{card['metrics']['latency_ms_single_face']['median']:.1f} ms (live profile 3.3 ms)" in row
    assert len(models_block(tmp_path).splitlines()) == len(before.splitlines())   # still one short table


def test_the_emotion_row_says_what_a_user_gets_through_the_app_where_the_card_measured_it():
    from training.readme_models import emotion_row
    test = {"accuracy": 0.664, "macro_f1": 0.627, "per_class": {"happy": {"support": 3000}, "sad": {"support": 589}}}
    card = {"metrics": {"private_test": test, "latency_ms_single_face": {"median": 5.2}}}
    assert "as photos" not in emotion_row(card)
    card["metrics"]["private_test_app_path"] = {"detection_recall": 0.9, "accuracy": 0.6}
    row = emotion_row(card)
    assert "FER2013 PrivateTest (3,589 faces)" in row and "faces found 90.0%" in row and "accuracy 60.0%" in row
