"""Property-based tests (Hypothesis) of the decoder and of request parsing: any input gives either a result
or a typed, documented error, never an exception that would be a 500.

Bounded for CI: VISAGE_FUZZ_EXAMPLES examples per test (default 60).
"""
from __future__ import annotations

import base64
import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.pipeline.decode import decode_image
from app.pipeline.detect import DETECTORS
from app.pipeline.errors import InputError
from app.uploads import decode_base64

FUZZ = settings(max_examples=int(os.environ.get("VISAGE_FUZZ_EXAMPLES", "60")), deadline=None, derandomize=True,
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MAX_PIXELS = 1_000_000
# Pillow warns about the corrupt files these tests feed it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
DOCUMENTED_STATUSES = {400, 413, 415, 422}


def small_image(fmt: str, mode: str) -> bytes:
    gradient = np.add.outer(np.arange(12), np.arange(16)).astype(np.uint8) * 8
    image = Image.fromarray(gradient).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


SEEDS = [small_image(fmt, mode) for fmt, mode in [
    ("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGBA"), ("PNG", "I;16"), ("PNG", "P"), ("GIF", "P"),
    ("BMP", "RGB"), ("TIFF", "RGB"), ("WEBP", "RGB")]]


def assert_decodes_or_refuses(data: bytes) -> None:
    try:
        image = decode_image(data, max_bytes=1_000_000, max_pixels=MAX_PIXELS)
    except InputError as e:
        assert e.status in DOCUMENTED_STATUSES and e.code and e.message
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert 0 < image.shape[0] * image.shape[1] <= MAX_PIXELS


@FUZZ
@given(st.binary(max_size=4096))
def test_decoder_any_bytes(data):
    assert_decodes_or_refuses(data)


@FUZZ
@given(seed=st.sampled_from(SEEDS),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
       keep=st.floats(0.05, 1.0))
def test_decoder_mutated_images(seed, edits, keep):
    """Real images of every accepted format with a few bytes changed, then maybe truncated."""
    data = bytearray(seed)
    for at, value in edits:
        data[at % len(data)] = value
    assert_decodes_or_refuses(bytes(data[:max(1, int(len(data) * keep))]))


@FUZZ
@given(st.binary(max_size=512), st.booleans())
def test_base64_round_trip(data, as_data_url):
    text = base64.b64encode(data).decode()
    text = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))      # MIME line breaks are fine
    if as_data_url:
        text = "data:image/png;base64," + text
    assert decode_base64(text) == data


@FUZZ
@given(st.text(max_size=300))
def test_base64_any_text(text):
    try:
        assert isinstance(decode_base64(text), bytes)
    except InputError as e:
        assert e.status == 400 and e.code == "bad_base64"


# --- request parsing through the app ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_png() -> bytes:
    return small_image("PNG", "RGB")


def assert_answer_or_json_error(response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    body = response.get_json()
    if response.status_code == 200:
        assert isinstance(body["faces"], list)
    else:
        assert response.status_code in DOCUMENTED_STATUSES
        assert set(body["error"]) == {"code", "message"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=16)
option_text = st.sampled_from([*DETECTORS, "HAAR", "", " ", "0", "0.5", "0.9", "1", "-0", "nan", "inf", "1e-9"]) \
    | st.text(max_size=10)


@FUZZ
@given(body=st.dictionaries(st.sampled_from(["image", "detector", "min_face", "extra"]), json_values, max_size=4)
       | json_values,
       with_image=st.booleans(), query=st.dictionaries(st.sampled_from(["detector", "min_face"]), option_text))
def test_any_json_body(app, tiny_png, body, with_image, query):
    if with_image and isinstance(body, dict):
        body["image"] = base64.b64encode(tiny_png).decode()
    response = app.test_client().post("/api/v1/analyze", json=body, query_string=query)
    assert_answer_or_json_error(response)


@FUZZ
@given(form=st.dictionaries(st.sampled_from(["detector", "min_face", "other"]), option_text, max_size=3),
       query=st.dictionaries(st.sampled_from(["detector", "min_face"]), option_text, max_size=2),
       field=st.sampled_from(["image", "image", "file"]), data=st.sampled_from(["tiny", "empty", "junk"]))
def test_any_multipart_form(app, tiny_png, form, query, field, data):
    content = {"tiny": tiny_png, "empty": b"", "junk": b"\x89PNG\r\n\x1a\n junk"}[data]
    response = app.test_client().post("/api/v1/analyze", query_string=query, content_type="multipart/form-data",
                                      data={field: (io.BytesIO(content), "x.png"), **form})
    assert_answer_or_json_error(response)


@FUZZ
@given(body=st.binary(max_size=2048),
       content_type=st.sampled_from(["application/json", "multipart/form-data", "multipart/form-data; boundary=x",
                                     "application/x-www-form-urlencoded", "text/plain", "image/png", ""]))
def test_any_raw_body(app, body, content_type):
    response = app.test_client().post("/api/v1/analyze", data=body, content_type=content_type or None)
    assert response.status_code < 500
    assert response.mimetype == "application/json" and set(response.get_json()["error"]) == {"code", "message"}
