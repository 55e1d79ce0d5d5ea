"""Blur faces for sharing: photos (result page, CLI --blur) and annotated videos use the same blur."""
from __future__ import annotations

import cv2
import numpy as np

GROW = 0.3        # blur a little beyond the box: Haar boxes stop at the eyebrows and the chin
BLOCKS = 6        # the face is reduced to about this many pixels across before it is blown up again


def blur_faces(image: np.ndarray, boxes) -> np.ndarray:
    """A copy of `image` with each (x, y, w, h) box, grown by GROW, made unrecognisable.

    Shrinking to BLOCKS pixels and scaling back up (then smoothing) removes the detail a face is
    recognised by, whatever the face's size; a plain Gaussian of fixed size would leave big faces readable.
    """
    out = image.copy()
    height, width = image.shape[:2]
    for x, y, w, h in boxes:
        gx, gy = int(w * GROW / 2), int(h * GROW / 2)
        x0, y0 = max(0, int(x) - gx), max(0, int(y) - gy)
        x1, y1 = min(width, int(x + w) + gx), min(height, int(y + h) + gy)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        region = out[y0:y1, x0:x1]
        small_w = max(2, BLOCKS)
        small_h = max(2, round(BLOCKS * (y1 - y0) / (x1 - x0)))
        small = cv2.resize(region, (small_w, small_h), interpolation=cv2.INTER_AREA)
        big = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        sigma = max(1.0, (x1 - x0) / BLOCKS / 2)
        out[y0:y1, x0:x1] = cv2.GaussianBlur(big, (0, 0), sigma)
    return out
