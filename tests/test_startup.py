"""Without its models the app must refuse to start, naming the file and how to produce it."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from app import create_app, settings
from app.pipeline.errors import ModelUnavailable


def start(models_dir):
    return create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir)})


def copy_models(models_dir, tmp_path):
    target = tmp_path / "models"
    shutil.copytree(models_dir, target)
    return target


def test_empty_models_dir(tmp_path):
    with pytest.raises(ModelUnavailable, match=r"emotion\.json.*python -m training\.train_emotion"):
        start(tmp_path)


def test_missing_model_file(models_dir, tmp_path):
    folder = copy_models(models_dir, tmp_path)
    (folder / "age_gender.keras").unlink()
    with pytest.raises(ModelUnavailable, match=r"age_gender\.keras.*training\.train_age_gender"):
        start(folder)


def test_unreadable_card(models_dir, tmp_path):
    folder = copy_models(models_dir, tmp_path)
    (folder / "emotion.json").write_text("{not json")
    with pytest.raises(ModelUnavailable, match=r"emotion\.json"):
        start(folder)


@pytest.mark.parametrize("change", [lambda card: card["outputs"].update(emotion="softmax"),
                                    lambda card: card.update(test_time_augmentation=["flip"])])
def test_a_card_with_a_field_of_the_wrong_shape_names_the_card(models_dir, tmp_path, change):
    """Such a card was an AttributeError traceback at start-up (and exit 1 from the CLI instead of 2)."""
    folder = copy_models(models_dir, tmp_path)
    card = json.loads((folder / "emotion.json").read_text())
    change(card)
    (folder / "emotion.json").write_text(json.dumps(card))
    with pytest.raises(ModelUnavailable, match=r"emotion\.json is unreadable \(TypeError"):
        start(folder)


def test_corrupt_model_file(models_dir, tmp_path):
    folder = copy_models(models_dir, tmp_path)
    (folder / "emotion.keras").write_bytes(b"garbage")
    with pytest.raises(ModelUnavailable, match=r"emotion\.keras.*could not be loaded"):
        start(folder)


def test_card_without_required_output(models_dir, tmp_path):
    folder = copy_models(models_dir, tmp_path)
    card = json.loads((folder / "age_gender.json").read_text())
    del card["outputs"]["gender"]
    (folder / "age_gender.json").write_text(json.dumps(card))
    with pytest.raises(ModelUnavailable, match="gender"):
        start(folder)


def test_environment_variable_selects_models_dir(models_dir, monkeypatch):
    monkeypatch.setenv("VISAGE_MODELS_DIR", str(models_dir))
    assert create_app().config["VISAGE_MODELS_DIR"] == str(models_dir)


def test_live_settings_come_from_the_environment_with_their_types(models_dir, monkeypatch):
    monkeypatch.setenv("VISAGE_LIVE_MAX_SIDE", "480")
    monkeypatch.setenv("VISAGE_LIVE_MIN_FACE", "0.2")
    assert settings.from_environment()["VISAGE_LIVE_MIN_FACE"] == 0.2
    app = create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir)})
    page = app.test_client().get("/live").get_data(as_text=True)
    live = json.loads(re.search(r'id="live-settings" type="application/json">(.*?)</script>', page).group(1))
    assert live["sendMaxSide"] == 480 and live["minFace"] == 0.2
    from app.pipeline.analyze import MAX_REGIONS
    assert live["maxRegions"] == MAX_REGIONS      # more tracks than that: live.js scans the whole frame


def test_non_numeric_environment_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("VISAGE_LIVE_MIN_FACE", "large")
    with pytest.raises(ValueError, match="VISAGE_LIVE_MIN_FACE must be a number"):
        settings.from_environment()


@pytest.mark.parametrize("key, value, message", [
    ("VISAGE_QUEUE_TIMEOUT", "inf", "from 0.001 to 86400"),         # overflowed the wait: every analysis a 500
    ("VISAGE_JOB_STALE_SECONDS", "0", "above 0"),                   # every job looked lost at once
    ("VISAGE_MAX_BYTES", "-1", "above 0"),                          # every photo "too large"
    ("VISAGE_VIDEO_WORKERS", "", "must be an integer"),
    ("VISAGE_LOGIN_RATE_LIMIT", "10 per minut", "rates like"),     # the limiter switched itself off
    ("VISAGE_HTTPS", "2", "from 0 to 1"),
])
def test_an_environment_setting_out_of_range_stops_the_start_naming_it(monkeypatch, key, value, message):
    monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=f"{key} must .*{message}|{key} {message}"):
        settings.from_environment()


def test_an_empty_word_setting_means_its_default(monkeypatch):
    monkeypatch.setenv("VISAGE_DEFAULT_DETECTOR", "")       # videos and batches answered bad_detector ''
    monkeypatch.setenv("VISAGE_LOGIN_RATE_LIMIT", " ")
    environment = settings.from_environment()
    assert environment["VISAGE_DEFAULT_DETECTOR"] == "blazeface"
    assert environment["VISAGE_LOGIN_RATE_LIMIT"] == settings.DEFAULTS["VISAGE_LOGIN_RATE_LIMIT"]


def test_unknown_default_detector_stops_the_start_up(models_dir):
    with pytest.raises(RuntimeError, match=r"VISAGE_DEFAULT_DETECTOR: Unknown detector 'hog'.*haar"):
        create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir), "VISAGE_DEFAULT_DETECTOR": "hog"})


@pytest.mark.parametrize("detector", ["haar", "blazeface", "none"])
def test_each_known_default_detector_starts(models_dir, detector):
    app = create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir), "VISAGE_DEFAULT_DETECTOR": detector})
    assert app.config["VISAGE_DEFAULT_DETECTOR"] == detector
