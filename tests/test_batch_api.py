"""POST /api/v1/batches → 202 + Location; GET /api/v1/jobs/<id> (progress, result); DELETE cancels;
CSV/JSON downloads; limits and bad input; saving a batch's numbers to the history. Real HTTP through
Flask's test client, the embedded worker, tiny random-weight models."""
from __future__ import annotations

import csv
import io
import time

import pytest

from tests.batch_photos import no_face_photo, one_face_photos, zip_of


@pytest.fixture(scope="module")
def batch_app(models_dir, tmp_path_factory):
    from app import create_app
    return create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir), "WTF_CSRF_ENABLED": False,
                       "VISAGE_VIDEO_DIR": str(tmp_path_factory.mktemp("jobs")), "VISAGE_BATCH_CHUNK": 2,
                       "VISAGE_MAX_BATCH_FILES": 12, "VISAGE_MAX_BATCH_BYTES": 3_000_000})


@pytest.fixture()
def api(batch_app):
    return batch_app.test_client()


def post(client, files, **fields):
    data = {"photos": [(io.BytesIO(content), name) for name, content in files], **fields}
    return client.post("/api/v1/batches", data=data, content_type="multipart/form-data")


def wait(client, location, timeout=120):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = client.get(location).get_json()
        seen.append(job)
        if job["status"] in ("done", "failed", "cancelled"):
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"still {job['status']}")


def test_batch_from_files_202_progress_result_and_csv(api):
    files = one_face_photos(4) + [("coffee.jpg", no_face_photo()), ("readme.txt", b"hello")]
    r = post(api, files, detector="haar", profile="live")
    assert r.status_code == 202, r.get_json()
    job = r.get_json()
    assert r.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["kind"] == "batch" and job["status"] in ("queued", "running") and job["total"] == 6
    assert job["options"]["detector"] == "haar" and job["options"]["profile"] == "live"
    job, seen = wait(api, r.headers["Location"])
    assert job["status"] == "done" and job["progress"] == 1.0 and job["done"] == 6
    assert all(0 <= s["progress"] <= 1 and s["done"] <= s["total"] for s in seen)
    result = job["result"]
    assert [f["file"] for f in result["files"]] == [name for name, _ in files]
    assert result["summary"]["faces"] == 4 and result["summary"]["errors"] == {"unsupported_type": 1}
    csv_response = api.get(result["downloads"]["csv"])
    assert csv_response.status_code == 200 and csv_response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(csv_response.get_data(as_text=True))))
    assert len(rows) == 6                                  # 4 faces + a no-face row + an error row
    assert [r["error_code"] for r in rows] == ["", "", "", "", "no_face", "unsupported_type"]
    assert rows[0]["file"] == "face-0000.jpg" and float(rows[0]["age"]) > 0 and rows[0]["w"]
    assert all(rows[0][f"p_{e}"] for e in ("happy", "sad", "neutral"))
    downloaded = api.get(result["downloads"]["json"]).get_json()
    assert downloaded["result"]["summary"] == result["summary"]
    chunk = f"/api/v1/jobs/{job['id']}c0"          # a chunk is a job of the batch's, not of the API
    assert api.get(chunk).status_code == 404 and api.delete(chunk).status_code == 404


def test_file_names_that_a_spreadsheet_would_run_stay_text_in_the_csv(api):
    """A photo named "=1+2.jpg" or "+cmd.jpg" must not become a formula when results.csv is
    opened in a spreadsheet (CSV injection): such cells start with an apostrophe; the JSON keeps the name."""
    photos = one_face_photos(3)
    names = ["=1+2.jpg", "+cmd.jpg", "@SUM(1).jpg"]
    job, _ = wait(api, post(api, [(name, data) for name, (_, data) in zip(names, photos)]
                            + [("-2+3.txt", b"not a photo")], detector="haar").headers["Location"])
    assert [f["file"] for f in job["result"]["files"]] == names + ["-2+3.txt"]
    rows = list(csv.DictReader(io.StringIO(api.get(job["result"]["downloads"]["csv"]).get_data(as_text=True))))
    assert [r["file"] for r in rows] == ["'" + name for name in names + ["-2+3.txt"]]


def test_a_form_with_a_file_name_that_is_not_utf8_is_a_clear_400_for_batches_and_videos(api):
    """Werkzeug drops a form it cannot decode without a word: a batch answered "no photos", a video "no
    file", though the files were there."""
    photo = one_face_photos(1)[0][1]
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="photos"; filename="caf\xe9.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + photo + b"\r\n--XyZ--\r\n")
    for url, field in (("/api/v1/batches", b"photos"), ("/api/v1/videos", b"video")):
        r = api.post(url, data=body.replace(b'"photos"', b'"' + field + b'"'),
                     content_type="multipart/form-data; boundary=XyZ")
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "bad_form", url
        assert "UTF-8" in r.get_json()["error"]["message"]


def test_batch_from_one_zip_with_nested_folders(api):
    photos = one_face_photos(3)
    archive = zip_of([("event/day1/" + name, data) for name, data in photos] + [("../evil.jpg", photos[0][1] + b"x")])
    r = post(api, [("photos.zip", archive)])
    assert r.status_code == 202, r.get_json()
    job, _ = wait(api, r.headers["Location"])
    files = job["result"]["files"]
    assert [f["file"] for f in files] == [f"event/day1/{n}" for n, _ in photos] + ["../evil.jpg"]
    assert files[-1]["error"]["code"] == "unsafe_name" and job["result"]["summary"]["faces"] == 3


def test_delete_cancels_a_batch(api):
    r = post(api, one_face_photos(12))
    location = r.headers["Location"]
    cancelled = api.delete(location)
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    time.sleep(0.5)
    assert api.get(location).get_json()["status"] == "cancelled"
    assert api.get(f"/api/v1/batches/{r.get_json()['id']}/results.csv").status_code == 409


def test_limits_and_bad_requests_are_clear_4xx(api):
    too_many = post(api, [(f"{i}.jpg", bytes([i]) * 10) for i in range(13)])
    assert too_many.status_code == 413 and too_many.get_json()["error"]["code"] == "too_many_files"
    too_big = post(api, [("big.bin", b"\1" * 4_200_000)])
    assert too_big.status_code == 413 and "MB" in too_big.get_json()["error"]["message"]
    bomb = post(api, [("bomb.zip", zip_of([(f"{i}.jpg", b"\0" * 2_000_000) for i in range(2)]))])
    assert bomb.status_code == 413 and bomb.get_json()["error"]["code"] == "zip_too_large"
    none = api.post("/api/v1/batches", data={"detector": "haar"}, content_type="multipart/form-data")
    assert none.status_code == 400 and none.get_json()["error"]["code"] == "no_photos"
    wrong_field = api.post("/api/v1/batches", data={"image": (io.BytesIO(b"x"), "a.jpg")},
                           content_type="multipart/form-data")
    assert wrong_field.status_code == 400 and "'image'" in wrong_field.get_json()["error"]["message"]
    detector = post(api, one_face_photos(1), detector="nope")
    assert detector.status_code == 400 and detector.get_json()["error"]["code"] == "bad_detector"
    as_json = api.post("/api/v1/batches", json={"photos": []})
    assert as_json.status_code == 415
    assert api.get("/api/v1/jobs/" + "0" * 32).status_code == 404


def test_refused_batches_leave_nothing_on_disk(api, batch_app):
    root = batch_app.extensions["visage.batch_jobs"].root
    before = set(root.iterdir())
    post(api, one_face_photos(1), min_face="2")
    post(api, [(f"{i}.jpg", bytes([i]) * 10) for i in range(13)])
    assert set(root.iterdir()) == before


def test_batch_page_is_linked(api):
    page = api.get("/batch")
    assert page.status_code == 200 and b'data-testid="batch-form"' in page.data
    assert b'href="/batch"' in api.get("/video").data


def test_save_a_batch_summary_to_the_history(db_client, new_account, db_app):
    client, _, _ = new_account()
    r = post(client, one_face_photos(2) + [("coffee.jpg", no_face_photo())], thumbnails="true")
    job, _ = wait(client, r.headers["Location"])
    saved = client.post(f"/batch/{job['id']}/save")
    assert saved.status_code == 302
    item = client.get(saved.headers["Location"])
    assert item.status_code == 200 and item.data.count(b'data-testid="saved-face"') == 2
    exported = client.get("/history/export.json").get_json()["items"][0]
    assert exported["source"] == "batch" and len(exported["faces"]) == 2 and not exported["has_thumbnail"]
    assert all(set(face) >= {"age", "gender", "emotion", "box"} and "file" not in face for face in exported["faces"])
    again = client.post(f"/batch/{job['id']}/save")          # saved twice: still one item
    assert again.headers["Location"] == saved.headers["Location"]
    assert len(client.get("/history/export.json").get_json()["items"]) == 1
    assert db_client.post(f"/batch/{job['id']}/save").status_code in (302, 401)   # anonymous: to the login page
