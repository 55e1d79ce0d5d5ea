"""Video job API and page (app/video.py): real HTTP through Flask's client, the embedded worker, real clips."""
from __future__ import annotations

import csv
import io
import re

import av
import pytest

from tests.video_clips import one_face_clip

SUBMIT = "/api/v1/videos"


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory):
    return one_face_clip(tmp_path_factory.mktemp("clips") / "one.mp4", seconds=2.0, fps=10).read_bytes()


def make_app(models_dir, video_dir, **config):
    from app import create_app
    return create_app({"TESTING": True, "WTF_CSRF_ENABLED": False,  # CSRF is tested in test_security.py
                       "VISAGE_MODELS_DIR": str(models_dir), "VISAGE_VIDEO_DIR": str(video_dir),
                       **config})


@pytest.fixture(scope="module")
def video_app(models_dir, tmp_path_factory):
    return make_app(models_dir, tmp_path_factory.mktemp("videos"))


@pytest.fixture()
def client(video_app):
    return video_app.test_client()


def uploads_left(app) -> list:
    return list((app.extensions["visage.video_jobs"].video_dir / "uploads").iterdir())


def submit(client, data: bytes, name="clip.mp4", **fields):
    return client.post(SUBMIT, data={"video": (io.BytesIO(data), name), **fields},
                       content_type="multipart/form-data")


def test_upload_poll_and_download(client, video_app, clip_bytes):
    response = submit(client, clip_bytes, fps="5", blur="true")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["status"] in ("queued", "running") and job["result"] is None and job["video"]["width"] == 640
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert video_app.extensions["visage.video_jobs"].runner.wait(job["id"], 120) == "done"

    job = client.get(response.headers["Location"]).get_json()
    assert set(job) >= {"id", "status", "progress", "error", "result"}
    assert job["status"] == "done" and job["progress"] == 1.0 and job["error"] is None
    [track] = job["result"]["tracks"]
    assert set(track) >= {"id", "first_seen", "last_seen", "age", "age_range", "gender", "timeline"}
    assert set(track["timeline"][0]) >= {"t", "emotion"}
    assert set(track["timeline"][0]["emotion"]) == {"label", "probabilities"}
    assert not uploads_left(video_app)

    downloads = job["result"]["downloads"]
    rows = list(csv.DictReader(io.StringIO(client.get(downloads["csv"]).get_data(as_text=True))))
    assert len(rows) == len(track["timeline"]) == 10
    assert client.get(downloads["json"]).get_json()["result"]["tracks"][0]["id"] == track["id"]
    video = client.get(downloads["annotated_video"])
    assert video.status_code == 200 and video.mimetype == "video/mp4"
    assert "blurred" in video.headers["Content-Disposition"]
    with av.open(io.BytesIO(video.get_data())) as container:
        assert sum(1 for _ in container.decode(video=0)) == 20

    again = client.delete(response.headers["Location"])      # cancelling a finished job changes nothing
    assert again.status_code == 200 and again.get_json()["status"] == "done"


def test_unknown_job_is_a_json_404(client):
    for method in (client.get, client.delete):
        response = method("/api/v1/jobs/" + "0" * 32)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "job_not_found"
    assert client.get("/api/v1/jobs/" + "0" * 32 + "/timeline.csv").status_code == 404


@pytest.mark.parametrize("data, fields, status, code", [
    (b"", {}, 400, "empty_file"),
    (b"plain text, not a video " * 40, {}, 415, "not_a_video"),
    (None, {"fps": "0"}, 400, "bad_fps"),
    (None, {"detector": "yolo"}, 400, "bad_detector"),
    (None, {"blur": "maybe"}, 400, "bad_blur"),
])
def test_bad_uploads_are_refused_at_once(client, video_app, clip_bytes, data, fields, status, code):
    response = submit(client, clip_bytes if data is None else data, **fields)
    assert response.status_code == status and response.get_json()["error"]["code"] == code
    assert not uploads_left(video_app)


def test_missing_field_and_wrong_content_type(client):
    response = client.post(SUBMIT, data={"image": (io.BytesIO(b"x"), "a.mp4")}, content_type="multipart/form-data")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "missing_video"
    response = client.post(SUBMIT, json={"video": "x"})
    assert response.status_code == 415


@pytest.mark.parametrize("config, status, code", [
    ({"VISAGE_MAX_VIDEO_BYTES": 10_000}, 413, "too_large"),
    ({"VISAGE_MAX_VIDEO_SECONDS": 1}, 413, "video_too_long"),
    ({"VISAGE_MAX_VIDEO_PIXELS": 320 * 240}, 413, "frame_too_large"),
])
def test_limits_answer_before_any_work(models_dir, tmp_path, clip_bytes, config, status, code):
    app = make_app(models_dir, tmp_path, **config)
    response = submit(app.test_client(), clip_bytes)
    assert response.status_code == status and response.get_json()["error"]["code"] == code
    assert re.search(r"limit", response.get_json()["error"]["message"])
    assert not uploads_left(app)
    assert not list((tmp_path / "jobs").iterdir())        # no job was created


def test_video_page_and_home_link(client):
    page = client.get("/video").get_data(as_text=True)
    assert 'src="/static/js/video.js"' in page and 'name="video"' in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)          # no inline scripts
    home = client.get("/").get_data(as_text=True)
    assert re.search(r'<a href="/video">Video</a>', home)
    assert client.get("/static/js/video.js").status_code == 200


def test_photo_result_offers_a_blurred_download(client, astronaut_jpeg, coffee_jpeg):
    import base64

    import numpy as np
    from PIL import Image

    from app.pipeline.analyze import find_faces
    page = client.post("/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")},
                       content_type="multipart/form-data").get_data(as_text=True)
    match = re.search(r'href="data:image/jpeg;base64,([^"]+)" download="faces-blurred.jpg"[^>]*>Download with faces blurred',
                      page)
    assert match
    blurred = np.asarray(Image.open(io.BytesIO(base64.b64decode(match.group(1)))))
    assert blurred.shape == (512, 512, 3) and not find_faces(blurred, "haar")
    page = client.post("/analyze", data={"image": (io.BytesIO(coffee_jpeg), "c.jpg")},
                       content_type="multipart/form-data").get_data(as_text=True)
    assert "faces blurred" not in page


def test_videos_may_be_larger_than_the_photo_limit(client, video_app):
    big = b"\x00not a video" * (2 * video_app.config["VISAGE_MAX_BYTES"] // 12)   # twice the photo limit
    response = submit(client, big)
    assert response.status_code == 415 and response.get_json()["error"]["code"] == "not_a_video"
