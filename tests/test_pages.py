"""The HTML flow through Flask's test client: home → upload → result page."""
from __future__ import annotations

import io
import re


def post_photo(client, data: bytes, name="photo.jpg", **form):
    return client.post("/analyze", data={"image": (io.BytesIO(data), name), **form},
                       content_type="multipart/form-data")


def test_home_page(client):
    r = client.get("/")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert re.search(r'<form[^>]*method="post"[^>]*action="/analyze"[^>]*enctype="multipart/form-data"', html)
    assert re.search(r'<input type="file" name="image"', html)
    assert 'name="detector" value="haar"' in html and 'name="detector" value="none"' in html
    assert re.search(r'<a href="/capture">[^<]*Capture', html)
    assert re.search(r'<a href="/live">Live</a>', html)
    assert "visage.css" in html


def test_result_page(client, two_faces_jpeg):
    r = post_photo(client, two_faces_jpeg)
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert html.count('data-testid="face"') == 2
    assert html.count('data-testid="face-box"') == 2
    assert 'src="data:image/jpeg;base64,' in html            # shown inline, never stored
    assert "estimates from appearance, not facts" in html
    assert "angry" in html and "%" in html


def test_no_face_message(client, coffee_jpeg):
    r = post_photo(client, coffee_jpeg)
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert 'data-testid="no-face"' in html and 'data-testid="face"' not in html
    assert 'name="image"' in html                            # the form is offered again


def test_bad_file_message(client):
    r = post_photo(client, b"this is not an image", name="x.txt")
    html = r.get_data(as_text=True)
    assert r.status_code == 415
    assert 'data-testid="error"' in html and "not an image" in html and 'name="image"' in html


def test_truncated_file_message(client, astronaut_jpeg):
    r = post_photo(client, astronaut_jpeg[:2000])
    assert r.status_code == 422 and 'data-testid="error"' in r.get_data(as_text=True)


def test_empty_upload_message(client):
    r = post_photo(client, b"", name="")
    assert r.status_code == 400 and 'data-testid="error"' in r.get_data(as_text=True)


def test_too_large_message(client):
    r = post_photo(client, b"\0" * (15 * 1024 * 1024))
    html = r.get_data(as_text=True)
    assert r.status_code == 413 and "too large" in html and 'name="image"' in html


def test_page_404_is_html(client):
    r = client.get("/no-such-page")
    assert r.status_code == 404 and r.mimetype == "text/html"


def test_webcam_pages_registered(client):
    assert client.get("/capture").status_code == 200
    assert client.get("/live").status_code == 200


def test_result_page_keeps_chosen_detector(client, coffee_jpeg):
    html = post_photo(client, coffee_jpeg, detector="none").get_data(as_text=True)
    assert 'data-testid="face"' in html
    assert re.search(r'value="none"\s+checked', html)


def test_capture_page_upload_form_offers_detectors(client):
    assert 'name="detector" value="haar"' in client.get("/capture").get_data(as_text=True)


def test_small_faces_option_finds_a_class_photos_small_face(client, astronaut):
    """The upload form's "small faces too" box sends min_face=0.015: a 37-px face in a 2400x1800 photo,
    out of reach of the cascade's 480-px copy, is found."""
    import cv2
    import numpy as np
    from conftest import encode
    assert 'name="min_face" value="0.015"' in client.get("/").get_data(as_text=True)
    canvas = np.full((1800, 2400, 3), 128, np.uint8)
    canvas[800:1000, 1100:1300] = cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA)
    photo = encode(canvas, "PNG")
    assert 'data-testid="no-face"' in post_photo(client, photo, "class.png").get_data(as_text=True)
    html = post_photo(client, photo, "class.png", min_face="0.015").get_data(as_text=True)
    assert html.count('data-testid="face"') == 1
    assert re.search(r'name="min_face" value="0.015" checked', html)     # the form under the result keeps it
