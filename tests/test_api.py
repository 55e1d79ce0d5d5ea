"""POST /api/v1/analyze and friends: answer shape, and JSON errors with the right status."""
from __future__ import annotations

import base64
import io

import pytest

from conftest import encode


def upload(client, data: bytes, name="photo.jpg", field="image", **form):
    return client.post("/api/v1/analyze", data={field: (io.BytesIO(data), name), **form},
                       content_type="multipart/form-data")


def assert_error(response, status: int, code: str | None = None):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"code", "message"} and error["message"]
    if code:
        assert error["code"] == code


def test_multipart(client, astronaut_jpeg):
    r = upload(client, astronaut_jpeg)
    assert r.status_code == 200
    body = r.get_json()
    assert {"faces", "image", "models", "timing_ms"} <= set(body)
    assert body["image"] == {"width": 512, "height": 512}
    assert len(body["faces"]) == 1          # one person in the portrait
    assert body["models"] == {"emotion": "test-random", "age_gender": "test-random"}


def test_base64_json(client, two_faces_jpeg):
    r = client.post("/api/v1/analyze", json={"image": base64.b64encode(two_faces_jpeg).decode()})
    assert r.status_code == 200 and len(r.get_json()["faces"]) == 2


def test_data_url(client, astronaut):
    png = encode(astronaut, "PNG")
    r = client.post("/api/v1/analyze", json={"image": "data:image/png;base64," + base64.b64encode(png).decode()})
    assert r.status_code == 200 and len(r.get_json()["faces"]) == 1


@pytest.mark.parametrize("how", ["query", "form"])
def test_detector_option(client, coffee_jpeg, how):
    if how == "query":
        r = client.post("/api/v1/analyze?detector=none", data={"image": (io.BytesIO(coffee_jpeg), "c.jpg")})
    else:
        r = upload(client, coffee_jpeg, detector="none")
    assert r.status_code == 200
    assert r.get_json()["faces"][0]["box"] == {"x": 0, "y": 0, "w": 600, "h": 400}


def test_min_face_skips_faces_smaller_than_that_share_of_the_image(client, astronaut_jpeg):
    """astronaut(): one face about a fifth of the 512 px image wide."""
    face = upload(client, astronaut_jpeg).get_json()["faces"][0]["box"]
    share = face["h"] / 512
    assert upload(client, astronaut_jpeg, min_face=str(round(share * 0.8, 3))).get_json()["faces"]
    assert upload(client, astronaut_jpeg, min_face=str(round(share * 1.5, 3))).get_json()["faces"] == []
    r = client.post("/api/v1/analyze", json={"image": base64.b64encode(astronaut_jpeg).decode(), "min_face": 0.1})
    assert r.status_code == 200 and r.get_json()["faces"]


@pytest.mark.parametrize("value", ["big", "-0.1", "0.95", "nan"])
def test_bad_min_face(client, astronaut_jpeg, value):
    assert_error(upload(client, astronaut_jpeg, min_face=value), 400, "bad_min_face")


def test_an_option_in_both_query_and_body_must_agree_in_meaning_not_in_spelling(client, astronaut_jpeg):
    body = {"image": base64.b64encode(astronaut_jpeg).decode(), "min_face": 0.1, "regions": [[150, 40, 150, 150]]}
    same = client.post("/api/v1/analyze?min_face=0.10&regions=[[150,40,150,150]]", json=body)
    assert same.status_code == 200 and same.get_json()["scan"] == "regions"
    for query in ("min_face=0.2", "regions=[[0,0,10,10]]"):
        r = client.post(f"/api/v1/analyze?{query}", json=body)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "conflicting_option", query


def test_non_string_detector_in_json_is_a_clear_error(client, astronaut_jpeg):
    r = client.post("/api/v1/analyze", json={"image": base64.b64encode(astronaut_jpeg).decode(), "detector": 3})
    assert_error(r, 400, "bad_detector")


def test_no_face_is_a_valid_answer(client, coffee_jpeg):
    r = upload(client, coffee_jpeg)
    assert r.status_code == 200 and r.get_json()["faces"] == []


def test_bad_detector(client, astronaut_jpeg):
    assert_error(upload(client, astronaut_jpeg, detector="magic"), 400, "bad_detector")


def test_missing_field(client):
    assert_error(client.post("/api/v1/analyze", data={}, content_type="multipart/form-data"), 400, "missing_image")


def test_wrong_field(client, astronaut_jpeg):
    r = upload(client, astronaut_jpeg, field="photo")
    assert_error(r, 400, "missing_image")
    assert "photo" in r.get_json()["error"]["message"]


def test_empty_upload(client):
    assert_error(upload(client, b""), 400, "empty_file")


def test_bad_base64(client):
    assert_error(client.post("/api/v1/analyze", json={"image": "***not base64***"}), 400, "bad_base64")


def test_json_without_image(client):
    assert_error(client.post("/api/v1/analyze", json={"picture": "abc"}), 400, "missing_image")


def test_malformed_json(client):
    assert_error(client.post("/api/v1/analyze", data="{not json", content_type="application/json"), 400)


def test_not_an_image(client):
    assert_error(upload(client, b"just some text, definitely not pixels", name="notes.txt"), 415, "unsupported_type")


def test_wrong_content_type(client, astronaut_jpeg):
    assert_error(client.post("/api/v1/analyze", data=astronaut_jpeg, content_type="image/jpeg"), 415)


def test_truncated(client, astronaut_jpeg):
    assert_error(upload(client, astronaut_jpeg[:2000]), 422, "undecodable")


def test_file_too_large(app, astronaut_jpeg):
    from app import create_app
    small = create_app({"TESTING": True, "VISAGE_MODELS_DIR": app.config["VISAGE_MODELS_DIR"],
                        "VISAGE_MAX_BYTES": len(astronaut_jpeg) - 1})
    assert_error(upload(small.test_client(), astronaut_jpeg), 413, "file_too_large")


def test_request_too_large(client):
    """Bodies beyond the whole-request cap are refused by Flask before parsing; still JSON."""
    assert_error(upload(client, b"\0" * (15 * 1024 * 1024)), 413)


def test_too_many_pixels(client):
    from test_decode import png_header_claiming
    assert_error(upload(client, png_header_claiming(20_000, 20_000), name="bomb.png"), 413, "too_many_pixels")


def test_unknown_api_path_is_json_404(client):
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_json_405(client):
    assert_error(client.get("/api/v1/analyze"), 405, "method_not_allowed")
    assert_error(client.delete("/api/v1/health"), 405)


def test_health(client):
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok", "models_loaded": True,
                            "models": {"emotion": "test-random", "age_gender": "test-random"}}
