"""Find faces with OpenCV's Haar cascade (haarcascade_frontalface_default.xml).

Detection runs on a downscaled grayscale copy (its cost grows with the pixel
count) and boxes are mapped back to original-image pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECTORS = ("haar", "none")


@dataclass(frozen=True)
class HaarSettings:
    # Chosen by measurement (bench/measure_detector.py → reports/detector.json, ARCHITECTURE.md).
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 24          # pixels, on the downscaled image
    max_side: int = 480         # longer side of the image the cascade sees


class HaarFaceDetector:
    def __init__(self, settings: HaarSettings = HaarSettings()):
        path = cv2.data.haarcascades + CASCADE_FILE
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade {path}; reinstall opencv-python-headless<5")
        self.settings = settings

    def detect(self, image: np.ndarray, min_face: float = 0.0) -> list[tuple[int, int, int, int]]:
        """Boxes (x, y, w, h) in `image` pixels, largest first. `image`: RGB or gray uint8.

        min_face > 0 skips faces smaller than that share of the image's shorter side. The
        cascade's cost is mostly its finest scales, so live mode (webcam faces are large)
        uses it to detect several times faster (bench/measure_detector.py --live).
        """
        s = self.settings
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, s.max_side / max(gray.shape[:2]))
        if scale < 1.0:
            height, width = gray.shape[:2]
            if min(height, width) * scale >= 1:
                gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            else:   # a very thin image (10000x1) would shrink to 0 px, which OpenCV refuses
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        min_size = max(s.min_size, int(min_face * min(gray.shape[:2])))
        found = self.cascade.detectMultiScale(
            gray, scaleFactor=s.scale_factor, minNeighbors=s.min_neighbors,
            minSize=(min_size, min_size))
        boxes = [tuple(int(round(v / scale)) for v in b) for b in (found if len(found) else [])]
        return sorted(boxes, key=lambda b: -b[2] * b[3])


def whole_image_box(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """detector='none': the whole image is one face crop (for pre-cropped faces)."""
    h, w = image.shape[:2]
    return [(0, 0, w, h)]
