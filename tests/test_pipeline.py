"""The analysis pipeline end to end (tiny random-weight models: checks plumbing, not accuracy)."""
from __future__ import annotations

import numpy as np
import pytest

from app.pipeline.analyze import analyze_bytes
from app.pipeline.errors import BadRequest
from app.pipeline.predict import AGE_GROUPS, EMOTION_LABELS, interpret, nearest_age_group
from conftest import SHARED_DATA, encode

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def analyze(data: bytes, predictor, detector="haar") -> dict:
    return analyze_bytes(data, predictor, detector=detector, **LIMITS)


def assert_well_formed(face: dict, width: int, height: int):
    assert list(face) == ["box", "age", "age_range", "age_group", "gender", "emotion"]
    box = face["box"]
    assert all(isinstance(box[k], int) for k in "xywh") and box["w"] > 0 and box["h"] > 0
    assert 0 <= box["x"] and box["x"] + box["w"] <= width and 0 <= box["y"] and box["y"] + box["h"] <= height
    assert face["age"] >= 0 and face["age"] == round(face["age"], 1)
    assert face["age_range"] == [max(0.0, round(face["age"] - 5.0, 1)), round(face["age"] + 7.0, 1)]
    assert face["age_group"] in AGE_GROUPS
    assert face["gender"]["label"] in ("female", "male") and 0.5 <= face["gender"]["probability"] <= 1
    probabilities = face["emotion"]["probabilities"]
    assert list(probabilities) == list(EMOTION_LABELS)
    assert abs(sum(probabilities.values()) - 1) < 1e-3
    assert face["emotion"]["label"] == max(probabilities, key=probabilities.get)


def test_portrait_has_a_face(predictor, astronaut_jpeg):
    result = analyze(astronaut_jpeg, predictor)
    assert result["image"] == {"width": 512, "height": 512}
    assert len(result["faces"]) == 1
    for face in result["faces"]:
        assert_well_formed(face, 512, 512)
    assert result["models"] == {"emotion": "test-random", "age_gender": "test-random"}
    assert set(result["timing_ms"]) == {"decode", "detect", "preprocess", "predict", "total"}


def test_two_portraits_side_by_side(predictor, two_faces_jpeg):
    result = analyze(two_faces_jpeg, predictor)
    assert len(result["faces"]) == 2
    left, right = sorted(result["faces"], key=lambda f: f["box"]["x"])
    assert left["box"]["x"] < 512 <= right["box"]["x"]
    for face in result["faces"]:
        assert_well_formed(face, 1024, 512)


@pytest.mark.parametrize("name", ["coffee", "flat"])
def test_no_face(predictor, coffee_jpeg, name):
    data = coffee_jpeg if name == "coffee" else encode(np.full((200, 300, 3), 128, np.uint8))
    result = analyze(data, predictor)
    assert result["faces"] == []
    assert result["image"]["width"] in (600, 300)


def test_detector_none_uses_whole_image(predictor, coffee_jpeg):
    result = analyze(coffee_jpeg, predictor, detector="none")
    assert [f["box"] for f in result["faces"]] == [{"x": 0, "y": 0, "w": 600, "h": 400}]
    assert_well_formed(result["faces"][0], 600, 400)


def test_unknown_detector(predictor, astronaut_jpeg):
    with pytest.raises(BadRequest, match="detector"):
        analyze(astronaut_jpeg, predictor, detector="dlib")


def test_one_model_call_per_image_with_each_models_crop(predictor, two_faces_jpeg, monkeypatch):
    seen = []
    for model in predictor.models:
        original = model._call
        monkeypatch.setattr(model, "_call", lambda batch, f=original, n=model.card.name: seen.append((n, batch.shape)) or f(batch))
    analyze(two_faces_jpeg, predictor)
    assert seen == [("emotion", (2, 48, 48, 1)), ("age_gender", (2, 64, 64, 1))]


def test_nearest_age_group():
    assert nearest_age_group(0) == "0-2"
    assert nearest_age_group(3.2) == "4-6"
    assert nearest_age_group(13.4) == "8-12"
    assert nearest_age_group(22) == "15-20"
    assert nearest_age_group(35.6) == "38-43"
    assert nearest_age_group(95) == "60-100"


def test_interpret_clamps_age_range_at_zero():
    spec = {"kind": "regression", "unit": "years", "interval": {"below": 5.0, "above": 7.0}}
    assert interpret("age", spec, np.array([2.04])) == {"age": 2.0, "age_range": [0.0, 9.0], "age_group": "0-2"}


def test_interpret_sigmoid_reports_probability_of_the_label():
    spec = {"kind": "sigmoid", "positive_label": "female", "negative_label": "male"}
    assert interpret("gender", spec, np.array([0.2])) == {"gender": {"label": "male", "probability": 0.8}}


UTKFACE = SHARED_DATA / "utkface" / "UTKFace"


@pytest.mark.skipif(not UTKFACE.is_dir(), reason=f"dataset not available at {UTKFACE}")
def test_real_face_crops(predictor):
    """UTKFace face crops (read in place, never copied). The face fills the whole 200x200 crop, which
    is hard for the Haar cascade (it finds about half of them as they are), so only a loose bound is checked
    for how many it finds; but each chip holds one face, so it never finds two."""
    files = sorted(UTKFACE.glob("*.jpg"))
    files = files[:: max(1, len(files) // 12)][:12]
    counts = [len(analyze(f.read_bytes(), predictor)["faces"]) for f in files]
    assert max(counts) == 1 and sum(counts) >= len(files) // 3
    for f in files[:3]:
        faces = analyze(f.read_bytes(), predictor, detector="none")["faces"]
        assert len(faces) == 1
        assert_well_formed(faces[0], 200, 200)


def test_flip_average_from_card_averages_face_and_mirror_in_one_call(models_dir):
    import dataclasses

    import keras

    from app.pipeline.predict import LoadedModel, ModelCard
    card = ModelCard.read(models_dir / "emotion.json")
    model = keras.models.load_model(models_dir / "emotion.keras", compile=False)
    plain = LoadedModel(card, model)
    flipping = LoadedModel(dataclasses.replace(card, flip_average=True), model)
    batch = np.random.default_rng(0).random((3, 48, 48, 1), np.float32)
    expected = 0.5 * (plain(batch)["emotion"] + plain(batch[:, :, ::-1])["emotion"])
    assert not card.flip_average
    np.testing.assert_allclose(flipping(batch)["emotion"], expected, rtol=1e-5, atol=1e-6)
    assert flipping(batch)["emotion"].shape == (3, 7)


def test_shifted_views_from_card_average_the_moved_faces_in_one_call(models_dir):
    import dataclasses

    import keras

    from app.pipeline.predict import LoadedModel, ModelCard
    from app.pipeline.preprocess import test_time_views
    card = ModelCard.read(models_dir / "emotion.json")
    model = keras.models.load_model(models_dir / "emotion.keras", compile=False)
    plain = LoadedModel(dataclasses.replace(card, flip_average=False, shift_px=0), model)
    shifting = LoadedModel(dataclasses.replace(card, flip_average=True, shift_px=2), model)
    batch = np.random.default_rng(0).random((3, 48, 48, 1), np.float32)
    views = test_time_views(batch, flip=True, shift_px=2)
    assert len(views) == 10 and all(v.shape == batch.shape for v in views)
    expected = np.mean([plain(v)["emotion"] for v in views], axis=0)
    np.testing.assert_allclose(shifting(batch)["emotion"], expected, rtol=1e-5, atol=1e-6)


def test_shifted_view_moves_the_face_and_replicates_the_border():
    from app.pipeline.preprocess import shifted_view
    batch = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    right = shifted_view(batch, 1, 0, mirrored=False)[0, :, :, 0]
    np.testing.assert_array_equal(right[:, 1:], batch[0, :, :3, 0])      # moved one pixel right
    np.testing.assert_array_equal(right[:, 0], batch[0, :, 0, 0])        # left column repeated
    up = shifted_view(batch, 0, -1, mirrored=True)[0, :, :, 0]
    np.testing.assert_array_equal(up[:3], batch[0, 1:, ::-1, 0])         # moved up, then mirrored
    np.testing.assert_array_equal(shifted_view(batch, 0, 0, False), batch)
