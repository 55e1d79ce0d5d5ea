"""Turn a face region into a model input. Imported by training/ *and* the app.

A face must look the same to a model at training and at serving time, so this
is the only place where crops are cut, turned upright, grayscaled, equalized,
resized and scaled. Steps: crop (box + margin, turned by the face's roll so
that its eyes are level, borders replicated) → grayscale → histogram
equalization → resize → float32 in [0, 1], shape (size, size, 1).
"""
from __future__ import annotations

import cv2
import numpy as np


def expand_box(box, margin: float) -> tuple[int, int, int, int]:
    """(x, y, w, h) grown by `margin` * size on every side, as (x0, y0, x1, y1)."""
    x, y, w, h = box
    dx, dy = round(w * margin), round(h * margin)
    return int(x - dx), int(y - dy), int(x + w + dx), int(y + h + dy)


def crop_face(image: np.ndarray, box, margin: float, roll: float = 0.0) -> np.ndarray:
    """Cut the box plus margin out of `image`; parts outside it repeat the edge pixels.

    Replicating (rather than dropping) out-of-image parts keeps the face centred
    and the aspect ratio square for faces at the border of a photo.

    roll: the face's tilt in degrees (eye_roll: positive when the eye on the image's right is
    lower); the crop is then cut from the image turned by it about the box's centre, so that the
    eyes come out level, as in the upright faces the models were trained on. 0: a plain cut.
    """
    if roll:
        return upright_crop(image, box, margin, roll)
    h_img, w_img = image.shape[:2]
    x0, y0, x1, y1 = expand_box(box, margin)
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x1 - w_img), max(0, y1 - h_img)
    crop = image[max(0, y0):min(h_img, y1), max(0, x0):min(w_img, x1)]
    if pad_l or pad_t or pad_r or pad_b:
        crop = cv2.copyMakeBorder(crop, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    return crop


def upright_crop(image: np.ndarray, box, margin: float, roll: float) -> np.ndarray:
    """crop_face's cut from `image` turned by `roll` degrees about the box's centre (one warp of the
    crop's own pixels, bilinear, borders replicated)."""
    x0, y0, x1, y1 = expand_box(box, margin)
    width, height = x1 - x0, y1 - y0
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    # cv2's positive angle turns the picture anticlockwise on screen: it levels a face whose
    # right-hand eye (on the image) sits lower, i.e. a positive roll.
    matrix = cv2.getRotationMatrix2D(centre, roll, 1.0)
    matrix[:, 2] += (width / 2 - centre[0], height / 2 - centre[1])   # the box's centre → the crop's
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def eye_roll(eye_left, eye_right) -> float:
    """A face's roll in degrees from its eyes (x, y) as seen on the image, left then right:
    positive when the right-hand one is lower (the head tilted clockwise on screen)."""
    dx, dy = eye_right[0] - eye_left[0], eye_right[1] - eye_left[1]
    return float(np.degrees(np.arctan2(dy, dx))) if dx or dy else 0.0


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) or gray (H, W) / (H, W, 1) uint8 → gray (H, W) uint8."""
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image.reshape(image.shape[0], image.shape[1])


def prepare_face(face: np.ndarray, size: int) -> np.ndarray:
    """A face crop (RGB or gray uint8) → float32 (size, size, 1) in [0, 1]."""
    gray = cv2.equalizeHist(to_gray(face))
    # INTER_AREA averages when shrinking (no aliasing); INTER_LINEAR when enlarging.
    interp = cv2.INTER_AREA if gray.shape[0] > size else cv2.INTER_LINEAR
    gray = cv2.resize(gray, (size, size), interpolation=interp)
    return (gray.astype(np.float32) / 255.0)[..., None]


def prepare_faces(image: np.ndarray, boxes, size: int, margin: float, rolls=None) -> np.ndarray:
    """All faces of one image as a batch (N, size, size, 1), ready for one model call.
    rolls: each face's roll in degrees (None: all upright), as the detector found it."""
    batch = np.zeros((len(boxes), size, size, 1), np.float32)
    rolls = [0.0] * len(boxes) if rolls is None else rolls
    for i, (box, roll) in enumerate(zip(boxes, rolls)):
        batch[i] = prepare_face(crop_face(image, box, margin, roll), size)
    return batch


def test_time_offsets(flip: bool, shift_px: int) -> list[tuple[int, int, bool]]:
    """The (dx, dy, mirrored) views a model averages: the face itself, moved by `shift_px` left,
    right, up and down when shift_px > 0, and each of those mirrored when `flip`."""
    shifts = [(0, 0)] + ([(shift_px, 0), (-shift_px, 0), (0, shift_px), (0, -shift_px)] if shift_px else [])
    return [(dx, dy, mirrored) for mirrored in ((False, True) if flip else (False,)) for dx, dy in shifts]


def shifted_view(batch: np.ndarray, dx: int, dy: int, mirrored: bool) -> np.ndarray:
    """A batch (N, size, size, 1) moved by (dx, dy) pixels, borders replicated, mirrored if asked.

    Shifting the prepared face by a few pixels is what a box found a few pixels off does to it;
    averaging over such views makes a reading depend less on exactly where the detector put the box.
    """
    if dx or dy:
        p = max(abs(dx), abs(dy))
        padded = np.pad(batch, ((0, 0), (p, p), (p, p), (0, 0)), mode="edge")
        h, w = batch.shape[1:3]
        batch = padded[:, p - dy:p - dy + h, p - dx:p - dx + w]
    return batch[:, :, ::-1] if mirrored else batch


def test_time_views(batch: np.ndarray, flip: bool, shift_px: int) -> list[np.ndarray]:
    """All views of `batch` named by test_time_offsets, in that order."""
    return [shifted_view(batch, dx, dy, mirrored) for dx, dy, mirrored in test_time_offsets(flip, shift_px)]
