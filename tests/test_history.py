"""Saved history on SQLite and PostgreSQL: save from the result page, list/open/delete/export,
blurred thumbnails, live sessions, the dashboard, and that nobody reaches another user's items."""
from __future__ import annotations

import csv
import io
import json
import re

import cv2
import numpy as np

from app import db as store
from app.pipeline.predict import EMOTION_LABELS


def post_photo(client, data: bytes, **form):
    return client.post("/analyze", data={"image": (io.BytesIO(data), "photo.jpg"), **form},
                       content_type="multipart/form-data")


def save_form_payload(html: str) -> str:
    return re.search(r'name="payload" type="hidden" value="([^"]+)"', html).group(1)


def analyze_and_save(client, jpeg: bytes, thumbnail: bool = False, **form) -> int:
    html = post_photo(client, jpeg, **form).get_data(as_text=True)
    r = client.post("/history/save", data={"payload": save_form_payload(html), **({"thumbnail": "y"} if thumbnail else {})})
    assert r.status_code == 302, r.get_data(as_text=True)[:1000]
    return int(re.search(r"/history/(\d+)$", r.headers["Location"]).group(1))


def test_anonymous_result_has_no_save_button(db_client, astronaut_jpeg):
    html = post_photo(db_client, astronaut_jpeg).get_data(as_text=True)
    assert 'data-testid="save-form"' not in html and ">Save</button>" not in html


def test_save_keeps_the_numbers_shown_and_never_the_image(db_app, new_account, two_faces_jpeg):
    client, email, _ = new_account()
    html = post_photo(client, two_faces_jpeg).get_data(as_text=True)
    assert ">Save</button>" in html and "Keep a small thumbnail with every face blurred" in html
    shown_ages = re.findall(r"<dd>about ([\d.]+)", html)
    r = client.post("/history/save", data={"payload": save_form_payload(html)})
    item_id = int(r.headers["Location"].rsplit("/", 1)[1])
    with db_app.app_context():
        item = store.user_analysis(store.find_user(email), item_id)
        assert item.source == "photo" and item.thumbnail is None
        assert [str(f["age"]) for f in item.faces] == shown_ages and len(item.faces) == 2
        assert set(item.faces[0]["emotion"]["probabilities"]) == set(EMOTION_LABELS)
        assert (item.width, item.height) == (1024, 512)
    page = client.get(f"/history/{item_id}").get_data(as_text=True)
    assert page.count('data-testid="saved-face"') == 2
    listing = client.get("/history").get_data(as_text=True)
    assert listing.count('data-testid="history-item"') == 1


def test_capture_source_is_remembered(db_app, new_account, astronaut_jpeg):
    client, email, _ = new_account()
    item_id = analyze_and_save(client, astronaut_jpeg, source="capture")
    with db_app.app_context():
        assert store.user_analysis(store.find_user(email), item_id).source == "capture"


def test_thumbnail_only_when_ticked_and_faces_blurred(db_app, new_account, astronaut_jpeg, astronaut):
    client, email, _ = new_account()
    item_id = analyze_and_save(client, astronaut_jpeg, thumbnail=True)
    r = client.get(f"/history/{item_id}/thumbnail.jpg")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    thumb = cv2.imdecode(np.frombuffer(r.data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert max(thumb.shape) == 160
    with db_app.app_context():
        face = store.user_analysis(store.find_user(email), item_id).faces[0]
    scale = 160 / 512
    box = face["box"]
    x0, y0 = int(box["x"] * scale), int(box["y"] * scale)
    x1, y1 = int((box["x"] + box["w"]) * scale), int((box["y"] + box["h"]) * scale)
    original = cv2.resize(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY), thumb.shape[::-1], interpolation=cv2.INTER_AREA)

    def detail(img):       # high-frequency content: what a face's features are made of
        region = img[y0:y1, x0:x1].astype(np.float32)
        return float(np.abs(cv2.Laplacian(region, cv2.CV_32F)).mean())
    assert detail(thumb) < 0.25 * detail(original), (detail(thumb), detail(original))
    # Outside the face the picture is kept (it is a thumbnail, not a blank).
    assert np.abs(thumb[:, -20:].astype(int) - original[:, -20:].astype(int)).mean() < 12


def test_forged_or_replayed_save_is_refused(db_app, new_account, astronaut_jpeg):
    alice, _, _ = new_account()
    bob, _, _ = new_account()
    payload = save_form_payload(post_photo(alice, astronaut_jpeg).get_data(as_text=True))
    assert alice.post("/history/save", data={"payload": payload[:-4] + "AAAA"}).status_code == 400
    assert bob.post("/history/save", data={"payload": payload}).status_code == 400       # Alice's page
    assert alice.post("/history/save", data={"payload": payload}).status_code == 302


def test_the_same_result_saved_twice_is_one_item(db_app, new_account, astronaut_jpeg):
    """A double-click on Save, or Back and Save again, made a second item (and doubled the dashboard)."""
    client, _, _ = new_account()
    payload = save_form_payload(post_photo(client, astronaut_jpeg).get_data(as_text=True))
    places = {client.post("/history/save", data={"payload": payload}).headers["Location"] for _ in range(3)}
    other = save_form_payload(post_photo(client, astronaut_jpeg).get_data(as_text=True))   # analysed again: new
    places.add(client.post("/history/save", data={"payload": other}).headers["Location"])
    assert len(places) == 2 and len(json.loads(client.get("/history/export.json").data)["items"]) == 2


def test_nobody_reaches_another_users_items(db_app, new_account, astronaut_jpeg):
    alice, _, _ = new_account()
    bob, _, _ = new_account()
    item_id = analyze_and_save(alice, astronaut_jpeg, thumbnail=True)
    for path in (f"/history/{item_id}", f"/history/{item_id}/thumbnail.jpg"):
        assert bob.get(path).status_code == 404
        assert alice.get(path).status_code == 200
    assert bob.post(f"/history/{item_id}/delete").status_code == 404
    for missing in (999999, 2**31, 10**20):                  # past the id column's range too: 404, not a 500
        assert bob.get(f"/history/{missing}").status_code == 404
        assert bob.post(f"/history/{missing}/delete").status_code == 404
        assert bob.post(f"/account/tokens/{missing}/revoke").status_code == 404
    assert json.loads(bob.get("/history/export.json").data)["items"] == []
    assert len(list(csv.DictReader(io.StringIO(bob.get("/history/export.csv").get_data(as_text=True))))) == 0
    assert f"/history/{item_id}" not in bob.get("/history").get_data(as_text=True)
    assert alice.get(f"/history/{item_id}").status_code == 200      # still there


def test_delete_and_export(db_app, new_account, astronaut_jpeg, two_faces_jpeg):
    client, _, _ = new_account()
    first = analyze_and_save(client, astronaut_jpeg)
    second = analyze_and_save(client, two_faces_jpeg)
    exported = json.loads(client.get("/history/export.json").data)["items"]
    assert [item["id"] for item in exported] == [second, first]
    assert [len(item["faces"]) for item in exported] == [2, 1]
    r = client.get("/history/export.csv")
    assert r.mimetype == "text/csv" and "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert len(rows) == 3 and {row["item"] for row in rows} == {str(first), str(second)}
    assert rows[0]["age"] == str(exported[0]["faces"][0]["age"])
    assert float(rows[0]["p_happy"]) == exported[0]["faces"][0]["emotion"]["probabilities"]["happy"]

    assert client.post(f"/history/{first}/delete").status_code == 302
    assert client.get(f"/history/{first}").status_code == 404
    assert [item["id"] for item in json.loads(client.get("/history/export.json").data)["items"]] == [second]


def live_point(t: float, track: int, emotion: str = "happy") -> dict:
    probabilities = {e: (0.7 if e == emotion else 0.05) for e in EMOTION_LABELS}
    return {"t": t, "track": track, "age": 30.5, "gender": "female", "gender_probability": 0.9,
            "emotion": emotion, "probabilities": probabilities}


def test_live_session_saves_a_timeline(db_app, new_account):
    client, email, _ = new_account()
    timeline = [live_point(t, 1, "happy" if t < 3 else "neutral") for t in range(6)] + [live_point(1, 2, "sad")]
    r = client.post("/history/live", json={"duration_s": 6.2, "models": {"emotion": "v1"}, "timeline": timeline})
    assert r.status_code == 201, r.get_json()
    item_id = r.get_json()["id"]
    with db_app.app_context():
        item = store.user_analysis(store.find_user(email), item_id)
        assert item.source == "live" and len(item.timeline) == 7 and item.duration_s == 6.2
        assert [f["emotion"]["label"] for f in item.faces] == ["happy", "sad"]     # per-track means
        assert item.detector == "blazeface"      # the page named none: the server's default
    page = client.get(f"/history/{item_id}").get_data(as_text=True)
    assert page.count('data-testid="timeline"') == 2
    rows = list(csv.DictReader(io.StringIO(client.get("/history/export.csv").get_data(as_text=True))))
    assert len(rows) == 7 and rows[-1]["face"] == "2" and rows[-1]["emotion"] == "sad"


def test_live_session_sent_again_with_its_key_is_saved_once(db_app, new_account):
    """The page's "Save again" after an answer lost on the way sends the same recording (its key) again."""
    client, _, _ = new_account()
    body = {"duration_s": 2.0, "timeline": [live_point(t, 1) for t in range(3)], "key": "rec-1"}
    ids = [client.post("/history/live", json=body).get_json()["id"] for _ in range(2)]
    ids.append(client.post("/history/live", json={**body, "key": "rec-2"}).get_json()["id"])
    assert ids[0] == ids[1] != ids[2]
    deep = client.post("/history/live", data="[" * 100_000, content_type="application/json")
    assert deep.status_code == 400 and deep.get_json()["error"]["code"] == "bad_timeline"


def test_live_session_keeps_the_detector_the_page_used(db_app, new_account):
    client, email, _ = new_account()
    for named, kept in (("haar", "haar"), ("hog", "blazeface")):
        r = client.post("/history/live", json={"detector": named, "timeline": [live_point(0, 1)]})
        assert r.status_code == 201, r.get_json()
        with db_app.app_context():
            assert store.user_analysis(store.find_user(email), r.get_json()["id"]).detector == kept


def test_live_session_rejects_bad_points(db_client, new_account):
    client, _, _ = new_account()
    bad = [{"timeline": []}, {"timeline": "x"}, {"timeline": [{"t": 1}]},
           {"timeline": [{**live_point(0, 1), "emotion": "smug"}]},
           {"timeline": [{**live_point(0, 1), "age": 500}]},
           {"timeline": [{**live_point(0, 1), "track": True}]},
           {"timeline": [{**live_point(0, 1), "t": 10 ** 400}]},          # beyond any float: no 500
           {"timeline": [live_point(0, 1)], "duration_s": 10 ** 400}]
    for body in bad:
        r = client.post("/history/live", json=body)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "bad_timeline", body
    assert db_client.post("/history/live", json={"timeline": [live_point(0, 1)]}).status_code == 302   # not logged in


def test_dashboard_counts_saved_faces_with_a_date_filter(db_app, new_account, two_faces_jpeg):
    client, email, _ = new_account()
    html = client.get("/dashboard").get_data(as_text=True)
    assert "Nothing saved in this range" in html
    analyze_and_save(client, two_faces_jpeg)
    client.post("/history/live", json={"timeline": [live_point(t, 1, "surprise") for t in range(3)]})
    r = client.get("/dashboard")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    data = json.loads(re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert data["faces"] == 3 and data["saved"] == 2
    with db_app.app_context():
        faces = [f for item in store.user_analyses(store.find_user(email)) for f in item.faces]
    expected = {e: sum(f["emotion"]["label"] == e for f in faces) for e in EMOTION_LABELS}
    assert dict(zip(data["emotions"]["labels"], data["emotions"]["counts"])) == expected
    assert sum(data["genders"]["counts"]) == 3 and sum(data["ages"]["counts"]) == 3
    assert len(data["live"]) == 1 and data["live"][0]["faces"][0]["points"][0]["emotion"] == "surprise"
    for testid in ("table-emotions", "table-over-time", "table-ages", "table-genders", "table-live"):
        assert f'data-testid="{testid}"' in html, testid
    assert "vendor/chartjs/chart.umd.min.js" in html and "js/dashboard.js" in html

    html = client.get("/dashboard?from=2001-01-01&to=2001-12-31").get_data(as_text=True)
    assert "Nothing saved in this range" in html
    r = client.get("/dashboard?from=yesterday")
    assert r.status_code == 400 and "must be a date" in r.get_data(as_text=True)
    r = client.get("/dashboard?to=9999-12-31")             # the last day a date picker offers: no upper bound
    assert r.status_code == 200 and "Nothing saved in this range" not in r.get_data(as_text=True)


def test_history_and_dashboard_need_login(db_client):
    for path in ("/history", "/dashboard", "/history/export.csv", "/account"):
        r = db_client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login"), path


def test_chartjs_is_vendored_with_its_licence(db_client):
    r = db_client.get("/static/vendor/chartjs/chart.umd.min.js")
    assert r.status_code == 200 and b"Chart.js v4" in r.data[:200]
    r.close()
    r = db_client.get("/static/vendor/chartjs/LICENSE.md")
    assert r.status_code == 200 and b"MIT" in r.data or b"Permission is hereby granted" in r.data
    r.close()


def test_live_page_offers_record_only_when_logged_in(db_client, new_account):
    html = db_client.get("/live").get_data(as_text=True)
    assert 'id="live-record"' not in html and '"saveUrl"' not in html
    client, _, _ = new_account()
    html = client.get("/live").get_data(as_text=True)
    settings = json.loads(re.search(r'<script id="live-settings" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert settings["saveUrl"] == "/history/live" and settings["csrfToken"]
    assert 'id="live-record"' in html
