"""Serving profiles: `accurate` averages the card's test-time views, `live` runs one view per model.

Tiny random-weight models (conftest.py); the card of one is given flip + shifts here so the two
profiles must give different numbers, and each must equal its definition computed by hand.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json

import numpy as np
import pytest

from app import cli
from app.pipeline.analyze import analyze_bytes
from app.pipeline.predict import LoadedModel, Predictor
from app.pipeline import preprocess

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


@pytest.fixture(scope="module")
def predictor_with_views(predictor) -> Predictor:
    """The tiny models, the age/gender one with the shipped card's views (mirror, ±3 px)."""
    models = [LoadedModel(dataclasses.replace(m.card, flip_average=True, shift_px=3), m.model)
              if m.card.name == "age_gender" else m for m in predictor.models]
    return Predictor(models).checked()


def test_live_is_face_and_mirror_and_accurate_is_the_mean_of_the_cards_views(predictor_with_views, astronaut):
    model = next(m for m in predictor_with_views.models if m.card.name == "age_gender")
    batch = predictor_with_views.prepare(astronaut, [(190, 60, 110, 110), (10, 10, 60, 60)])[1]
    assert len(model.views(batch, "accurate")) == 10 and len(model.views(batch, "live")) == 2

    def plain(x):
        return {k: np.asarray(v) for k, v in model.model(x, training=False).items()}
    live, accurate = model(batch, "live"), model(batch, "accurate")
    by_view = [plain(v) for v in preprocess.test_time_views(batch, True, 3)]
    for name in ("age", "gender"):
        live_views = [plain(v) for v in preprocess.test_time_views(batch, True, 0)]     # face, mirror
        np.testing.assert_allclose(live[name], np.mean([v[name] for v in live_views], axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(accurate[name], np.mean([v[name] for v in by_view], axis=0), rtol=1e-5, atol=1e-5)
    assert not np.allclose(live["age"], accurate["age"])   # the views really differ on a real face


def test_pipeline_reports_the_profile_and_defaults_to_accurate(predictor_with_views, astronaut_jpeg):
    # detector="haar": on BlazeFace's crop of this photo the tiny stand-in model's two readings happen
    # to round to the same 0.1 year; the profile is what is under test here.
    accurate = analyze_bytes(astronaut_jpeg, predictor_with_views, detector="haar", **LIMITS)
    live = analyze_bytes(astronaut_jpeg, predictor_with_views, detector="haar", profile="live", **LIMITS)
    assert analyze_bytes(astronaut_jpeg, predictor_with_views, **LIMITS)["profile"] == "accurate"
    assert accurate["profile"] == "accurate" and live["profile"] == "live"
    assert [f["box"] for f in accurate["faces"]] == [f["box"] for f in live["faces"]]
    assert accurate["faces"][0]["age"] != live["faces"][0]["age"]
    # emotion's card has no views: both profiles give it the same answer
    assert accurate["faces"][0]["emotion"] == live["faces"][0]["emotion"]


@pytest.mark.parametrize("how", ["form", "query", "json"])
def test_api_takes_the_profile_as_form_field_query_or_json(client, astronaut_jpeg, how):
    image = base64.b64encode(astronaut_jpeg).decode()
    if how == "form":
        r = client.post("/api/v1/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg"), "profile": "live"})
    elif how == "query":
        r = client.post("/api/v1/analyze?profile=live", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")})
    else:
        r = client.post("/api/v1/analyze", json={"image": image, "profile": "live"})
    assert r.status_code == 200 and r.get_json()["profile"] == "live"
    assert client.post("/api/v1/analyze", json={"image": image}).get_json()["profile"] == "accurate"


@pytest.mark.parametrize("value", ["fast", 3])
def test_unknown_profile_is_a_clear_400(client, astronaut_jpeg, value):
    r = client.post("/api/v1/analyze", json={"image": base64.b64encode(astronaut_jpeg).decode(), "profile": value})
    assert r.status_code == 400
    error = r.get_json()["error"]
    assert error["code"] == "bad_profile" and "accurate" in error["message"]


def test_upload_page_rejects_an_unknown_profile_without_a_500(client, astronaut_jpeg):
    r = client.post("/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg"), "profile": "fast"})
    assert r.status_code == 400


def test_openapi_documents_the_profile(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    operation = doc["paths"]["/api/v1/analyze"]["post"]
    assert any(p["name"] == "profile" and p["schema"]["enum"] == ["accurate", "live"] for p in operation["parameters"])
    for body in operation["requestBody"]["content"].values():
        assert body["schema"]["properties"]["profile"]["default"] == "accurate"


def test_cli_profile_option(models_dir, tmp_path, astronaut_jpeg, capsys):
    (tmp_path / "one.jpg").write_bytes(astronaut_jpeg)
    assert cli.main([str(tmp_path / "one.jpg"), "--profile", "live", "--models-dir", str(models_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["profile"] == "live"
    assert cli.main([str(tmp_path / "one.jpg"), "--models-dir", str(models_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["profile"] == "accurate"
