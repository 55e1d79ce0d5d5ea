"""The whole pipeline in one call: decode → detect → preprocess → predict → plain dict.

Pages, API and CLI all go through `run_pipeline` / `analyze_bytes`, so they
cannot disagree about what an image contains.
"""
from __future__ import annotations

import json
import math
import threading
import time

import numpy as np

from app.pipeline.decode import decode_image
from app.pipeline.detect import DEFAULT_DETECTOR, DETECTORS, HaarFaceDetector, whole_image_box
from app.pipeline.errors import AnalysisTimeout, BadRequest
from app.pipeline.predict import PROFILES, Predictor

# One detector per thread: sharing a CascadeClassifier (or a LiteRT interpreter) across gunicorn
# threads is not documented as safe.
_local = threading.local()


def face_detector(detector: str):
    """This thread's instance of a named detector, made on first use (BlazeFace loads LiteRT only then)."""
    found = getattr(_local, detector, None)
    if found is None:
        if detector == "blazeface":
            from app.pipeline.detect_blazeface import BlazeFaceDetector
            found = BlazeFaceDetector()
        else:
            found = HaarFaceDetector()
        setattr(_local, detector, found)
    return found


def find_faces(image: np.ndarray, detector: str, min_face: float = 0.0, regions=None) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h), largest first."""
    return locate_faces(image, detector, min_face, regions)[0]


def locate_faces(image: np.ndarray, detector: str, min_face: float = 0.0, regions=None) -> tuple[list, list[float]]:
    """(boxes as find_faces gives them, each face's roll in degrees, for preprocess.crop_face).

    BlazeFace gives each face's eyes, hence its roll; the Haar cascade gives none, and its faces are
    read as they are (roll 0): the frontal cascade finds few faces turned by more than about 15 degrees
    (docs/speed.md, turned faces). detector='none': the image as it is.
    """
    if detector == "none":
        boxes = whole_image_box(image)
        return boxes, [0.0] * len(boxes)
    found = face_detector(detector)
    faces = (found.detect_in_regions_with_rolls(image, regions, min_face) if regions
             else found.detect_with_rolls(image, min_face))
    return [box for box, _ in faces], [roll for _, roll in faces]


MAX_REGIONS = 16
MAX_REGION_PIXELS = 1e6      # far beyond any image allowed in; keeps the detectors' pixel arithmetic finite


def region_number(value) -> float:
    """One coordinate of a region: a JSON number (not a bool, not a string of digits) within the bound."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_REGION_PIXELS:
        raise ValueError
    return number


def check_regions(value) -> list[tuple[float, float, float, float]] | None:
    """Where to look for faces (a hint, e.g. live mode's tracked boxes): a JSON list (or its text) of
    [x, y, w, h] boxes in image pixels; absent or [] = the whole image."""
    if value is None or value == "":
        return None
    try:
        boxes = json.loads(value) if isinstance(value, str) else value
        if not isinstance(boxes, list) or len(boxes) > MAX_REGIONS:
            raise ValueError
        parsed = [tuple(region_number(v) for v in box) for box in boxes]
        if any(not isinstance(box, (list, tuple)) or len(box) != 4 for box in boxes) \
                or any(box[2] <= 0 or box[3] <= 0 for box in parsed):
            raise ValueError
    except (TypeError, ValueError, OverflowError):      # OverflowError: an integer of hundreds of digits
        raise BadRequest(f"regions must be a JSON list of at most {MAX_REGIONS} [x, y, w, h] boxes with w, h > 0 "
                         f"(pixels, each within ±{MAX_REGION_PIXELS:g}), got {str(value)[:100]!r}.",
                         code="bad_regions") from None
    return parsed or None


def check_detector(detector: str | None, default: str = DEFAULT_DETECTOR) -> str:
    detector = (detector or default).strip().lower()
    if detector not in DETECTORS:
        raise BadRequest(f"Unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}.", code="bad_detector")
    return detector


def check_profile(profile, default: str = "accurate") -> str:
    if profile is None or profile == "":
        return default
    if not isinstance(profile, str) or profile.strip().lower() not in PROFILES:
        raise BadRequest(f"Unknown profile {profile!r}; choose one of {', '.join(PROFILES)}.", code="bad_profile")
    return profile.strip().lower()


MAX_MIN_FACE = 0.9


def check_min_face(value) -> float:
    """The smallest face to look for, as a share of the image's shorter side. 0: the default scan, which
    finds faces from about 40 px on (BlazeFace in 640x480 scenes: 78% of 40-64 px faces, 38% of 24-39 px,
    bench/tile_schedules.py); a small share (the upload form's "small faces too": 0.015) makes the detector
    look harder, down to that size, at a cost in time."""
    if value is None or value == "":
        return 0.0
    try:
        share = float(value)
    except (TypeError, ValueError, OverflowError):     # OverflowError: a JSON integer of 400 digits
        share = float("nan")
    if not 0.0 <= share <= MAX_MIN_FACE:   # also false for NaN
        raise BadRequest(f"min_face must be a number from 0 to {MAX_MIN_FACE} (a share of the image's shorter "
                         f"side), got {value!r}.", code="bad_min_face")
    return share


def run_pipeline(data: bytes, predictor: Predictor, *, detector: str = DEFAULT_DETECTOR, min_face=0.0,
                 profile: str = "accurate", regions=None, max_bytes: int, max_pixels: int,
                 deadline: float | None = None) -> tuple[dict, np.ndarray]:
    """(answer dict, decoded RGB image). Raises InputError subclasses for bad input.

    deadline (time.monotonic()): checked after each step; past it, AnalysisTimeout. A step already
    running is not interrupted (each is bounded by the pixel limit).
    """
    detector = check_detector(detector)
    min_face = check_min_face(min_face)
    profile = check_profile(profile)
    regions = check_regions(regions)
    timing = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timing[step] = round((now - clock) * 1000, 1)
        clock = now
        if deadline is not None and time.monotonic() > deadline:
            raise AnalysisTimeout(f"the analysis ran past its time limit (after {step})")

    image = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    lap("decode")
    boxes, rolls = locate_faces(image, detector, min_face, regions)
    lap("detect")
    batches = predictor.prepare(image, boxes, rolls)
    lap("preprocess")
    outputs = predictor.predict(batches, profile)
    lap("predict")
    timing["total"] = round(sum(timing.values()), 1)

    faces = [{"box": {"x": x, "y": y, "w": w, "h": h}, **in_answer_order(out)}
             for (x, y, w, h), out in zip(boxes, outputs)]
    height, width = image.shape[:2]
    answer = {"faces": faces, "image": {"width": width, "height": height},
              "detector": detector, "profile": profile,
              "scan": "regions" if regions and detector != "none" else "full", "models": dict(predictor.versions), "timing_ms": timing}
    return answer, image


FACE_FIELDS = ("age", "age_range", "age_group", "gender", "emotion")


def in_answer_order(outputs: dict) -> dict:
    """Documented fields first, in the documented order; any extra model outputs after them."""
    return {**{k: outputs[k] for k in FACE_FIELDS if k in outputs}, **outputs}


def analyze_bytes(data: bytes, predictor: Predictor, **options) -> dict:
    return run_pipeline(data, predictor, **options)[0]
