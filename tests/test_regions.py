"""Detection hints: `regions` (live mode's tracked boxes) make the detector look only around them."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from app.pipeline.analyze import analyze_bytes
from app.pipeline.detect import HaarFaceDetector
from tests.browser.make_clip import face_frame

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def iou(a, b) -> float:
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


def as_tuple(box: dict) -> tuple:
    return box["x"], box["y"], box["w"], box["h"]


@pytest.fixture(scope="module")
def webcam_frame() -> np.ndarray:
    return face_frame()        # the browser tests' 640x480 camera picture


def test_regions_find_the_tracked_face_moved_or_resized(webcam_frame):
    detector = HaarFaceDetector()
    (truth,) = detector.detect(webcam_frame, 0.12)
    x, y, w, h = truth
    # where a tracker one frame behind may have it: shifted, a little larger or smaller
    for hint in [truth, (x + 12, y - 9, w, h), (x - 5, y + 4, int(w * 1.2), int(h * 1.2)), (x, y, int(w * 0.8), int(h * 0.8))]:
        found = detector.detect_in_regions(webcam_frame, [hint], 0.12)
        assert len(found) == 1 and iou(found[0], truth) > 0.7, (hint, found, truth)


def blazeface_or_skip():
    pytest.importorskip("ai_edge_litert", reason="detector='blazeface' needs ai_edge_litert (pip install -r requirements.txt)")
    from app.pipeline.detect_blazeface import BlazeFaceDetector
    return BlazeFaceDetector()


# (frame side live mode sends, largest box change in its pixels: 0.5% of the frame, a pixel or two)
@pytest.mark.parametrize("send_side, steady_px", [(400, 2), (640, 3)])
def test_blazeface_regions_follow_the_face_and_hold_still_for_a_still_one(webcam_frame, send_side, steady_px):
    """BlazeFace's region scan (a crop around each hint, live mode's default): it finds the face where a
    tracker one frame behind may put the hint, and a still face keeps its box within a pixel or two while
    the hint wanders by a couple of pixels (crop size and edges on a grid)."""
    import cv2
    detector = blazeface_or_skip()
    frame = cv2.resize(webcam_frame, (send_side, send_side * 3 // 4), interpolation=cv2.INTER_AREA)
    (truth,) = detector.detect(frame, 0.12)
    x, y, w, h = truth
    for hint in [truth, (x + w // 6, y - h // 8, w, h), (x, y, int(w * 0.8), int(h * 0.8)), (x - 4, y, int(w * 1.2), h)]:
        found = detector.detect_in_regions(frame, [hint], 0.12)
        assert len(found) == 1 and iou(found[0], truth) > 0.7, (hint, found, truth)
    boxes = np.array([detector.detect_in_regions(frame, [(x + dx, y + dy, w, h)], 0.12)[0]
                      for dx in (-2, -1, 0, 1, 2) for dy in (-2, 0, 2)])
    assert (boxes.max(0) - boxes.min(0)).max() <= steady_px, boxes
    assert detector.detect_in_regions(frame, [(0, 0, w // 2, h // 2)], 0.12) == []


def test_regions_elsewhere_find_nothing_and_duplicates_are_merged(webcam_frame):
    detector = HaarFaceDetector()
    (truth,) = detector.detect(webcam_frame, 0.12)
    assert detector.detect_in_regions(webcam_frame, [(0, 0, 60, 60), (560, 380, 70, 70)], 0.12) == []
    assert len(detector.detect_in_regions(webcam_frame, [truth, truth], 0.12)) == 1


def test_pipeline_scans_regions_only_when_given(predictor, astronaut_jpeg):
    full = analyze_bytes(astronaut_jpeg, predictor, **LIMITS)
    assert full["scan"] == "full" and len(full["faces"]) == 1
    box = as_tuple(full["faces"][0]["box"])
    hinted = analyze_bytes(astronaut_jpeg, predictor, regions=json.dumps([box]), profile="live", **LIMITS)
    assert hinted["scan"] == "regions" and iou(as_tuple(hinted["faces"][0]["box"]), box) > 0.7
    assert analyze_bytes(astronaut_jpeg, predictor, regions="[]", **LIMITS)["scan"] == "full"
    assert analyze_bytes(astronaut_jpeg, predictor, regions=[[0, 0, 40, 40]], **LIMITS)["faces"] == []
    assert analyze_bytes(astronaut_jpeg, predictor, regions=[[0, 0, 40, 40]], detector="none", **LIMITS)["scan"] == "full"


def test_api_takes_regions_as_form_field_or_json_list(client, astronaut_jpeg):
    r = client.post("/api/v1/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg"),
                                             "regions": "[[178, 66, 94, 94]]"})
    assert r.status_code == 200 and r.get_json()["scan"] == "regions" and len(r.get_json()["faces"]) == 1
    r = client.post("/api/v1/analyze", json={"image": base64.b64encode(astronaut_jpeg).decode(),
                                             "regions": [[178, 66, 94, 94]]})
    assert r.status_code == 200 and r.get_json()["scan"] == "regions"


@pytest.mark.parametrize("value", ["nope", "[[1, 2, 3]]", "[[0, 0, -1, 5]]", "[[0, 0, 5, NaN]]", '{"x": 1}',
                                   json.dumps([[0, 0, 9, 9]] * 17), '[["a", 0, 9, 9]]', '[[0, 0, 1e308, 1e308]]',
                                   f"[[0, 0, {'9' * 400}, 10]]", '["1234"]', "[[0, 0, true, true]]"])
def test_bad_regions_are_a_clear_400(client, astronaut_jpeg, value):
    r = client.post("/api/v1/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg"), "regions": value})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "bad_regions"


def test_two_pass_schedule_finds_the_faces_one_full_scan_finds(astronaut, webcam_frame):
    """detect()'s coarse proposals plus region scans: the same faces, the same boxes within a few pixels,
    as one full scan; nothing where a full scan finds nothing."""
    import cv2
    from skimage import data

    from app.pipeline.detect import HaarSettings
    two_pass, one_scan = HaarFaceDetector(), HaarFaceDetector(HaarSettings(candidate_cascade=None))
    assert two_pass.candidates is not None and one_scan.candidates is None
    tiles = np.concatenate([np.concatenate([astronaut, astronaut[:, ::-1]], 1)] * 2, 0)   # four faces
    scene = cv2.resize(data.coffee(), (640, 480))
    for image, faces in ((astronaut, 1), (webcam_frame, 1), (tiles, 4), (scene, 0)):
        reference, found = one_scan.detect(image), two_pass.detect(image)
        assert len(reference) == len(found) == faces
        for box in found:
            assert max(iou(box, r) for r in reference) > 0.8, (box, reference)


def test_a_small_min_face_looks_at_a_larger_copy_of_a_large_photo(astronaut):
    """A class photo's faces can be too small for the cascade's 480-px copy; asking for them with min_face
    makes the copy larger (up to max_side_for_small_faces), so they are found."""
    import cv2

    canvas = np.full((1800, 2400, 3), 128, np.uint8)
    small = cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA)   # her face: about 37 px
    canvas[800:1000, 1100:1300] = small
    detector = HaarFaceDetector()
    assert detector.downscaled_gray(canvas)[0].shape == (360, 480)
    assert detector.detect(canvas) == []                       # 7 px on the 480-px copy: below 24 px
    gray, scale = detector.downscaled_gray(canvas, 0.015)
    assert max(gray.shape) == detector.settings.max_side_for_small_faces and scale == 0.8
    (box,) = detector.detect(canvas, 0.015)
    assert iou(box, (1100 + 178 * 200 / 512, 800 + 67 * 200 / 512, 37, 37)) > 0.5, box
    # a min_face the 480-px copy already serves leaves it as it is
    assert detector.downscaled_gray(canvas, 0.12)[0].shape == (360, 480)
    assert max(detector.downscaled_gray(canvas, 1e-300)[0].shape) == 1920      # no overflow: the cap
    assert detector.downscaled_gray(astronaut, 0.001)[0].shape == (512, 512)   # never above the photo's size
