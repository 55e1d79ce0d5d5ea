"""Regression tests for the hardening issue: odd, huge and hostile requests get clear 4xx answers, never a 500;
uploads never touch the disk; every over-limit case is a JSON error on /api/ paths."""
from __future__ import annotations

import base64
import io
import tempfile

import numpy as np
import pytest
from PIL import Image

from app import settings
from conftest import encode
from test_api import assert_error, upload


# --- 1. deeply nested JSON -------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deeply_nested_json_is_a_400(client, depth):
    body = '{"image": ' + "[" * depth + "]" * depth + "}"
    assert_error(client.post("/api/v1/analyze", data=body, content_type="application/json"), 400, "json_too_deep")


def test_non_utf8_json_is_a_400(client):
    assert_error(client.post("/api/v1/analyze", data=b'{"image": "\xff\xfe"}', content_type="application/json"),
                 400, "bad_json")


# --- 2. very thin images -----------------------------------------------------------------------------------
@pytest.mark.parametrize("width, height", [(10_000, 1), (1, 10_000), (1, 1), (5_000, 2)])
def test_thin_images_are_analysed_not_crashed(client, width, height):
    png = encode(np.full((height, width, 3), 128, np.uint8), "PNG")
    r = upload(client, png, name="thin.png")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["faces"] == [] and r.get_json()["image"] == {"width": width, "height": height}


# --- 3. uploads stay in memory --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_png() -> bytes:
    """Noise PNG, about 1.9 MB: well over Werkzeug's 500 KB spool-to-disk threshold, under our 10 MB limit."""
    png = encode(np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8), "PNG")
    assert 1_000_000 < len(png) < settings.DEFAULTS["VISAGE_MAX_BYTES"]
    return png


def test_uploaded_file_stream_is_in_memory(app, big_png):
    body, boundary = multipart_body({"image": ("big.png", big_png)})
    with app.test_request_context("/api/v1/analyze", method="POST", data=body,
                                  content_type=f"multipart/form-data; boundary={boundary}"):
        from flask import request
        stream = request.files["image"].stream
        assert isinstance(stream, io.BytesIO)
        assert stream.getvalue() == big_png


def test_upload_creates_no_temporary_file(client, big_png, monkeypatch, tmp_path):
    """Every way the standard library makes a temp file is made to fail; a 1.9 MB upload still succeeds."""
    def no_disk(*_args, **_kwargs):
        raise AssertionError("an uploaded file was about to be written to a temporary file")
    for name in ("TemporaryFile", "SpooledTemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    import werkzeug.formparser
    for name in ("TemporaryFile", "SpooledTemporaryFile"):
        if hasattr(werkzeug.formparser, name):
            monkeypatch.setattr(werkzeug.formparser, name, no_disk)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    r = upload(client, big_png, name="big.png")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert list(tmp_path.iterdir()) == []


def multipart_body(files: dict, fields: dict | None = None) -> tuple[bytes, str]:
    boundary = "visage-test-boundary"
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


# --- 4. corrupt images of a known format are 422, not 415 ------------------------------------------------------
def with_bad_ihdr_crc(png: bytes) -> bytes:
    crc_at = 8 + 4 + 4 + 13            # signature, IHDR length, "IHDR", 13 header bytes
    return png[:crc_at] + bytes(b ^ 0xFF for b in png[crc_at:crc_at + 4]) + png[crc_at + 4:]


def test_png_with_bad_header_crc_is_422(client, astronaut):
    png = encode(astronaut, "PNG")
    assert_error(upload(client, with_bad_ihdr_crc(png), name="bad.png"), 422, "undecodable")


@pytest.mark.parametrize("data", [b"GIF89a" + b"\0" * 3, b"\xff\xd8\xff" + b"\0" * 20, b"RIFF\0\0\0\0WEBPjunk"])
def test_known_signature_with_garbage_is_422(client, data):
    assert_error(upload(client, data), 422, "undecodable")


def test_text_is_still_415(client):
    assert_error(upload(client, b"GIF is a format; this text is not one"), 415, "unsupported_type")


# --- limits on everything else a request can grow ----------------------------------------------------------
def test_too_many_form_parts_is_413(client, astronaut_jpeg):
    fields = {f"field{i}": "x" for i in range(settings.MAX_FORM_PARTS + 1)}
    body, boundary = multipart_body({"image": ("a.jpg", astronaut_jpeg)}, fields)
    r = client.post("/api/v1/analyze", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert_error(r, 413)


def test_huge_form_field_is_413(client, astronaut_jpeg):
    body, boundary = multipart_body({"image": ("a.jpg", astronaut_jpeg)},
                                    {"detector": "x" * (settings.MAX_FORM_MEMORY_SIZE + 1)})
    r = client.post("/api/v1/analyze", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert_error(r, 413)


@pytest.mark.parametrize("where", ["json", "query", "form"])
def test_long_option_is_a_400_without_echoing_it(client, astronaut_jpeg, where):
    long = "haar" * 1000
    if where == "json":
        r = client.post("/api/v1/analyze", json={"image": base64.b64encode(astronaut_jpeg).decode(), "detector": long})
    elif where == "query":
        r = client.post(f"/api/v1/analyze?detector={long}", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")})
    else:
        r = upload(client, astronaut_jpeg, detector=long)
    assert_error(r, 400, "option_too_long")
    assert long not in r.get_data(as_text=True)


def test_json_body_over_the_request_limit_is_413(client):
    limit = settings.request_size_limit(settings.DEFAULTS["VISAGE_MAX_BYTES"])
    body = '{"image": "' + "A" * limit + '"}'
    assert_error(client.post("/api/v1/analyze", data=body, content_type="application/json"), 413)


def frames(fmt: str) -> bytes:
    """Three frames: red, green, blue."""
    images = [Image.new("RGB", (64, 48), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    images[0].save(buffer, format=fmt, save_all=True, append_images=images[1:])
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_animated_gif_and_multipage_tiff_use_the_first_frame(fmt):
    from app.pipeline.decode import decode_image
    image = decode_image(frames(fmt), max_bytes=10**7, max_pixels=10**7)
    assert image.shape == (48, 64, 3)
    assert tuple(image[0, 0]) == (255, 0, 0)


def test_many_frames_cost_no_more_than_one(client):
    """1000 frames are not decoded: the answer comes back like any other small image's."""
    images = [Image.new("L", (32, 32), i % 256) for i in range(1000)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:])
    r = upload(client, buffer.getvalue(), name="many.gif")
    assert r.status_code == 200 and r.get_json()["image"] == {"width": 32, "height": 32}

