"""/models: the model cards, read from VISAGE_MODELS_DIR on each request, laid out for a person."""
from __future__ import annotations

import copy
import html
import json
import re
import shutil
from pathlib import Path

import pytest

from app.card_summary import fmt, summarize

SHIPPED = Path(__file__).resolve().parents[1] / "models"


def shipped_card(name: str) -> dict:
    return json.loads((SHIPPED / f"{name}.json").read_text())


@pytest.fixture
def cards_dir(tmp_path):
    """A copy of the shipped cards that a test may edit (the page only reads the .json files)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("emotion", "age_gender"):
        shutil.copy(SHIPPED / f"{name}.json", folder / f"{name}.json")
    return folder


@pytest.fixture
def page_for(app):
    """page_for(folder) → the /models HTML with the app's models folder pointed at `folder` for one request."""
    def render(folder) -> str:
        saved = app.config["VISAGE_MODELS_DIR"]
        app.config["VISAGE_MODELS_DIR"] = str(folder)
        try:
            r = app.test_client().get("/models")
        finally:
            app.config["VISAGE_MODELS_DIR"] = saved
        assert r.status_code == 200
        return html.unescape(r.get_data(as_text=True))
    return render


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_page_shows_both_shipped_cards_headline_numbers(page_for):
    text = text_of(page_for(SHIPPED))
    emotion, age_gender = shipped_card("emotion"), shipped_card("age_gender")
    m = emotion["metrics"]["private_test"]
    assert f"accuracy on FER2013 PrivateTest {100 * m['accuracy']:.1f}%" in text
    assert f"{m['macro_f1']:.3f}" in text
    for cls, v in m["per_class"].items():
        assert f"{cls} {100 * v['precision']:.1f}% {100 * v['recall']:.1f}% {fmt('f1', v['f1'])} {v['support']}" in text
    test = age_gender["metrics"]["test"]
    assert f"{test['age']['mae']:.2f} years" in text
    assert f"{100 * test['gender']['accuracy']:.1f}%" in text
    assert f"holds the true age {100 * test['age_interval_coverage']:.1f}%" in text
    for band, v in test["age"]["mae_by_band"].items():
        assert f"{band} {v['mae']:.2f} {v['n']:,}" in text
    for group, v in age_gender["metrics"]["fairness_test"].items():
        assert f"{group} {v['n']:,} {100 * v['gender_accuracy']:.1f}%" in text
    assert "gender calibration" in text and f"{test['gender_calibration']['ece']:.3f}" in text


def test_page_says_what_not_to_use_it_for_and_each_datasets_licence(page_for):
    text = text_of(page_for(SHIPPED))
    for word in ("hiring", "policing", "access control"):
        assert word in text
    assert "FER2013 images (ICML 2013 challenge) research and non-commercial use only" in text
    assert "FER+ labels (Microsoft FERPlus votes) MIT licence" in text
    assert "UTKFace non-commercial research use only" in text
    for failure in ("Profile and turned faces", "Small faces", "Lighting", "Children"):
        assert failure in text


def test_a_modified_card_changes_the_page_without_code(page_for, cards_dir):
    card = shipped_card("age_gender")
    card["metrics"]["test"]["age"]["mae"] = 4.321
    card["metrics"]["fairness_test"]["race=Asian"]["gender_accuracy"] = 0.9512
    (cards_dir / "age_gender.json").write_text(json.dumps(card))
    text = text_of(page_for(cards_dir))
    assert "4.32 years" in text and f"{shipped_card('age_gender')['metrics']['test']['age']['mae']:.2f} years" not in text
    assert f"race=Asian {card['metrics']['fairness_test']['race=Asian']['n']} 95.1%" in text


def test_gender_by_group_among_faces_aged_13_and_over_and_for_children(page_for, cards_dir):
    # A card from the current evaluator separates the children (whose gender is read less well, and whose share
    # differs between race groups) from the rest.
    card = shipped_card("age_gender")
    fair = card["metrics"]["fairness_test"]
    fair["race=Asian"]["gender_accuracy_ages_13_plus"] = 0.9432
    fair["age=0-12"] = {"n": 280, "images": 300, "gender_accuracy": 0.7821, "age_mae": 1.9}
    fair["age=13+"] = {"n": 1700, "images": 1750, "gender_accuracy": 0.9567, "age_mae": 5.9}
    (cards_dir / "age_gender.json").write_text(json.dumps(card))
    text = text_of(page_for(cards_dir))
    assert "gender accuracy, ages 13+" in text
    assert f"race=Asian {fair['race=Asian']['n']} {100 * fair['race=Asian']['gender_accuracy']:.1f}% 94.3%" in text
    assert "gender is right for 78.2% of children vs 95.7% from 13 on (test)" in text
    assert "age=0-12 280 78.2%" in text


def test_emotion_read_through_the_apps_own_path_is_a_headline_number(page_for, cards_dir):
    card = shipped_card("emotion")
    card["metrics"]["private_test_app_path"] = {"images": 3589, "detected": 3410, "detection_recall": 0.9501,
                                                "accuracy": 0.6123, "macro_f1": 0.58, "accuracy_per_image": 0.5817}
    (cards_dir / "emotion.json").write_text(json.dumps(card))
    text = text_of(page_for(cards_dir))
    assert "the same faces as photos, through the app's detector: faces found / accuracy 95.0% / 61.2%" in text


def test_new_card_fields_and_a_new_model_are_shown_without_code(page_for, cards_dir):
    card = shipped_card("age_gender")
    card["metrics"]["live"] = {"age": {"mae": 5.432, "mae_by_band": {"0-12": {"mae": 2.5, "n": 290}}},
                               "gender": {"accuracy": 0.9123}, "latency_ms_single_face": {"median": 4.6}}
    card["metrics"]["detection_recall"] = 0.876
    (cards_dir / "age_gender.json").write_text(json.dumps(card))
    (cards_dir / "glasses.json").write_text(json.dumps({
        "name": "glasses", "outputs": {"glasses": {"kind": "sigmoid", "positive_label": "glasses",
                                                   "negative_label": "none"}},
        "metrics": {"test": {"accuracy": 0.9432}}}))
    page = page_for(cards_dir)
    text = text_of(page)
    assert "5.43 years" in text and "91.2%" in text and "2.50" in text      # the live profile, laid out like test
    assert "detection recall 87.6%" in text
    assert 'data-model="glasses"' in page and "94.3%" in text


MINIMAL_DELETIONS = [
    ("metrics",), ("training",), ("serving_setup",), ("data",), ("outputs",), ("input",),
    ("metrics", "private_test", "per_class"), ("metrics", "private_test", "confusion_matrix"),
    ("metrics", "test", "age"), ("metrics", "test", "gender_calibration"), ("metrics", "fairness_test"),
    ("training", "wall_time_seconds"), ("outputs", "age", "interval"), ("metrics", "latency_ms_single_face"),
]


@pytest.mark.parametrize("path", MINIMAL_DELETIONS, ids=lambda p: ".".join(p))
def test_a_card_with_fields_removed_still_renders(page_for, cards_dir, path):
    for name in ("emotion", "age_gender"):
        card = shipped_card(name)
        node = card
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
        (cards_dir / f"{name}.json").write_text(json.dumps(card))
    page = page_for(cards_dir)
    assert page.count('data-testid="model-card"') == 2
    assert "hiring" in page


def test_broken_and_bare_cards_render(page_for, cards_dir):
    (cards_dir / "emotion.json").write_text("{not json")
    (cards_dir / "age_gender.json").write_text(json.dumps({"name": "age_gender", "metrics": {}}))
    page = page_for(cards_dir)
    assert "could not be read" in page and "emotion.json" in page
    assert "This card carries no test measurements" in page


def test_tiny_test_models_cards_render(client):
    """The app's own models folder in tests holds bare cards (conftest): the page still renders."""
    r = client.get("/models")
    assert r.status_code == 200 and r.get_data(as_text=True).count('data-testid="model-card"') == 2


def test_odd_value_types_do_not_crash_the_summary():
    card = copy.deepcopy(shipped_card("age_gender"))
    card["metrics"]["test"]["age"]["mae_by_band"] = {"0-12": "n/a"}
    card["metrics"]["fairness_test"] = {"race=White": None}
    card["training"] = "unknown"
    card["unsuitable_uses"] = "not a list"
    summary = summarize("age_gender", card)
    assert summary["headline"] and summary["trained"] is None
    assert "hiring" in " ".join(summary["unsuitable_uses"])
    for broken in ({"outputs": ["age"], "metrics": []}, {"outputs": {"age": "regression"}, "metrics": {"test": 1}}):
        assert summarize("age_gender", broken)["unsuitable_uses"]


def test_served_line_tells_the_gender_balance_offset_apart_from_platt_scaling():
    """Both are folded into the one gender logit (gender_platt_a_c holds their sum)."""
    card = copy.deepcopy(shipped_card("age_gender"))
    setup = card["serving_setup"]
    setup["gender_platt_a_c"] = [1.0, 0.3]
    setup["gender_balance_check_on_val"] = {"kept": True, "offset": 0.3}
    served = summarize("age_gender", card)["served"]
    assert "Platt scaling of P(female) fitted on val: no" in served
    assert "women and men are read equally well: yes (logit +0.30)" in served
    setup["gender_platt_a_c"] = [1.2, 0.5]
    assert "Platt scaling of P(female) fitted on val: yes" in summarize("age_gender", card)["served"]
    setup["gender_balance_check_on_val"] = {"kept": False, "offset": 0.0}
    setup["gender_platt_a_c"] = [1.0, 0.0]
    served = summarize("age_gender", card)["served"]
    assert "fitted on val: no" in served and "read equally well: no" in served


def test_a_card_may_state_its_own_uses_and_failure_modes():
    card = shipped_card("emotion") | {"intended_uses": ["Only this."], "known_failure_modes": ["Hats."]}
    summary = summarize("emotion", card)
    assert summary["intended_uses"] == ["Only this."] and summary["failure_modes"][0] == "Hats."


def test_models_page_is_linked_from_the_footer_and_every_result_page(client, astronaut_jpeg):
    assert 'href="/models"' in client.get("/").get_data(as_text=True).split("<footer")[1]
    r = client.post("/analyze", data={"image": (__import__("io").BytesIO(astronaut_jpeg), "a.jpg")},
                    content_type="multipart/form-data")
    assert r.status_code == 200
    assert 'data-testid="models-link"' in r.get_data(as_text=True)
