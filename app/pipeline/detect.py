"""Find faces with OpenCV's Haar cascade (haarcascade_frontalface_default.xml), detector="haar".
(The default, detector="blazeface": app/pipeline/detect_blazeface.py.)

Detection runs on a downscaled grayscale copy (its cost grows with the pixel
count) and boxes are mapped back to original-image pixels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

# OpenCV's own threads per process (a Haar scan uses them); unset = OpenCV's default (all cores).
# bench/photo_throughput.py sets it per server layout.
if os.environ.get("VISAGE_OPENCV_THREADS"):
    cv2.setNumThreads(int(os.environ["VISAGE_OPENCV_THREADS"]))

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECTORS = ("blazeface", "haar", "none")     # the first is the default (VISAGE_DEFAULT_DETECTOR)
DEFAULT_DETECTOR = DETECTORS[0]
DETECTOR_DESCRIPTIONS = {
    "blazeface": "find faces with BlazeFace (MediaPipe's neural detector, the default; each face turned upright "
                 "by its eyes before it is read; boxes mapped to the Haar framing)",
    "haar": "find faces with OpenCV's Haar cascade (the original detector; faces read as found)",
    "none": "the whole image is one face crop",
}


@dataclass(frozen=True)
class HaarSettings:
    # Chosen by measurement (bench/measure_detector.py → reports/detector.json, ARCHITECTURE.md).
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 24          # pixels, on the downscaled image
    max_side: int = 480         # longer side of the image the cascade sees
    # ... unless the caller asks for smaller faces (min_face below min_size / 480 of the shorter side):
    # then the copy grows until such a face is min_size px on it, up to the image's own size and at
    # most this long (the cascade's time grows with the copy's pixels: 4x the side, about 16x the time).
    max_side_for_small_faces: int = 1920
    # Two passes (detect()): a coarse, permissive scan (scale step 1.2, one neighbour) proposes places,
    # and the cascade then looks only around each with the settings above (detect_in_regions). Recall
    # within -4..+1 points of one full scan (five frame sets) in 0.62-0.70x its time; the alt2 cascade
    # as proposer was faster but lost 3 points on small faces (bench/measure_two_pass.py →
    # reports/detector_two_pass.json). candidate_cascade None: one full scan.
    candidate_cascade: str | None = CASCADE_FILE
    candidate_scale_factor: float = 1.2
    candidate_min_neighbors: int = 1

    def fingerprint(self) -> str:
        """Short id of these settings: caches of detected crops (training.data_utk) are keyed by it."""
        import hashlib
        return hashlib.sha1(repr(sorted(vars(self).items())).encode()).hexdigest()[:8]


class HaarFaceDetector:
    def __init__(self, settings: HaarSettings = HaarSettings()):
        path = cv2.data.haarcascades + CASCADE_FILE
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade {path}; reinstall opencv-python-headless<5")
        self.settings = settings
        self.candidates = None
        if settings.candidate_cascade == CASCADE_FILE:
            self.candidates = self.cascade
        elif settings.candidate_cascade:
            self.candidates = cv2.CascadeClassifier(cv2.data.haarcascades + settings.candidate_cascade)
            if self.candidates.empty():
                raise RuntimeError(f"could not load the Haar cascade {settings.candidate_cascade}")

    def downscaled_gray(self, image: np.ndarray, min_face: float = 0.0) -> tuple[np.ndarray, float]:
        """The grayscale copy the cascade sees (longer side at most max_side, or larger where min_face
        asks for faces too small to find on that copy) and its scale."""
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        s = self.settings
        longest, shortest = max(gray.shape[:2]), max(1, min(gray.shape[:2]))
        side = s.max_side
        if min_face > 0:
            needed = s.min_size / min_face * longest / shortest   # longer side where such a face is min_size px
            side = max(side, int(np.ceil(min(needed, s.max_side_for_small_faces))))   # a tiny min_face: the cap
        scale = min(1.0, side / longest)
        if scale < 1.0:
            height, width = gray.shape[:2]    # at least 1 px: a 10000x1 image must not shrink to 0
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return gray, scale

    def detect(self, image: np.ndarray, min_face: float = 0.0) -> list[tuple[int, int, int, int]]:
        """Boxes (x, y, w, h) in `image` pixels, largest first. `image`: RGB or gray uint8.

        min_face > 0 skips faces smaller than that share of the image's shorter side. The
        cascade's cost is mostly its finest scales, so live mode (webcam faces are large)
        uses it to detect several times faster (bench/measure_detector.py --live). A min_face
        too small for the 480-px copy (a class photo's faces) makes the copy larger instead.
        """
        s = self.settings
        gray, scale = self.downscaled_gray(image, min_face)
        min_size = max(s.min_size, int(min_face * min(gray.shape[:2])))
        if self.candidates is not None:
            found = self.candidates.detectMultiScale(
                gray, scaleFactor=s.candidate_scale_factor, minNeighbors=s.candidate_min_neighbors,
                minSize=(min_size, min_size))
            if not len(found):
                return []
            return self.scan_regions(gray, scale, [b / scale for b in found], min_face)
        found = self.cascade.detectMultiScale(
            gray, scaleFactor=s.scale_factor, minNeighbors=s.min_neighbors,
            minSize=(min_size, min_size))
        boxes = [tuple(int(round(v / scale)) for v in b) for b in (found if len(found) else [])]
        return sorted(boxes, key=lambda b: -b[2] * b[3])

    def detect_in_regions(self, image: np.ndarray, regions, min_face: float = 0.0) -> list[tuple[int, int, int, int]]:
        """Faces near the given boxes only (x, y, w, h in `image` pixels, e.g. where live mode's
        tracker saw faces a frame ago): the cascade scans each box grown by REGION_PAD of its size on
        every side, for faces from REGION_MIN_SCALE to REGION_MAX_SCALE times its size, instead of the
        whole frame at all scales. Same settings, same downscaled copy as detect(); boxes largest first.
        """
        gray, scale = self.downscaled_gray(image, min_face)
        return self.scan_regions(gray, scale, regions, min_face)

    # The cascade finds no eyes: its faces are read as they are (roll 0), as analyze.locate_faces documents.
    def detect_with_rolls(self, image: np.ndarray, min_face: float = 0.0) -> list[tuple[tuple, float]]:
        return [(box, 0.0) for box in self.detect(image, min_face)]

    def detect_in_regions_with_rolls(self, image: np.ndarray, regions, min_face: float = 0.0) -> list[tuple[tuple, float]]:
        return [(box, 0.0) for box in self.detect_in_regions(image, regions, min_face)]

    def scan_regions(self, gray: np.ndarray, scale: float, regions, min_face: float) -> list[tuple[int, int, int, int]]:
        """detect_in_regions on the cascade's downscaled copy (`scale`: its size / the image's)."""
        s = self.settings
        height, width = gray.shape[:2]
        floor = max(s.min_size, int(min_face * min(height, width)))
        boxes = []
        for rx, ry, rw, rh in regions:
            rx, ry, rw, rh = (v * scale for v in (rx, ry, rw, rh))
            side = max(rw, rh)
            # Crop edges on a fixed grid: the cascade's answer depends a little on where the crop starts,
            # and a crop that followed the hint pixel by pixel fed that back into the next hint (live ages
            # then settled on two values a few years apart, alternating for seconds).
            x0, y0 = (max(0, snap(v - REGION_PAD * side, floor=True)) for v in (rx, ry))
            x1 = min(width, snap(rx + rw + REGION_PAD * side, floor=False))
            y1 = min(height, snap(ry + rh + REGION_PAD * side, floor=False))
            low = max(floor, int(REGION_MIN_SCALE * side))
            high = int(REGION_MAX_SCALE * side)
            if x1 - x0 < low or y1 - y0 < low or high < low:
                continue
            found = self.cascade.detectMultiScale(
                gray[y0:y1, x0:x1], scaleFactor=s.scale_factor, minNeighbors=s.min_neighbors,
                minSize=(low, low), maxSize=(high, high))
            boxes += [tuple(int(round(v / scale)) for v in (fx + x0, fy + y0, fw, fh))
                      for fx, fy, fw, fh in (found if len(found) else [])]
        return without_overlaps(sorted(boxes, key=lambda b: -b[2] * b[3]))


# A tracked face moves and changes size a little between two live frames (one round trip apart).
REGION_PAD = 0.5
REGION_MIN_SCALE = 0.6
REGION_MAX_SCALE = 1.6


REGION_GRID = 16   # pixels of the downscaled image


def snap(value: float, floor: bool) -> int:
    cells = value / REGION_GRID
    return int(REGION_GRID * (np.floor(cells) if floor else np.ceil(cells)))


def overlap(a, b) -> float:
    """Intersection over the smaller box: 1 when one box lies inside the other."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / max(1, min(a[2] * a[3], b[2] * b[3]))


def without_overlaps(boxes: list) -> list:
    """Boxes (largest first) minus those mostly inside a larger one: two regions can find one face."""
    kept = []
    for box in boxes:
        if all(overlap(box, k) < 0.5 for k in kept):
            kept.append(box)
    return kept


def whole_image_box(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """detector='none': the whole image is one face crop (for pre-cropped faces)."""
    h, w = image.shape[:2]
    return [(0, 0, w, h)]
