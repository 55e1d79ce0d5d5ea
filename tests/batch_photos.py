"""Photos for the batch tests and the batch bench, built from skimage's images (no dataset copies).

`one_face_photos(n)`: n different JPEGs of one face each (the astronaut's portrait at sizes from 200
to 400 px on a gray frame, at a few positions), different bytes, so none is a duplicate of another.
"""
from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image
from skimage import data as skdata

from tests.video_clips import scene


def jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def one_face_photo(i: int) -> bytes:
    width = 200 + (i * 7) % 201
    frame = scene(480, 480, [(20 + (i * 13) % 200, 20 + (i * 11) % 150, min(width, 300))])
    # The number itself, as two gray squares in a corner: no two photos are the same bytes.
    frame[-16:-8, -16:-8] = i % 256
    frame[-8:, -8:] = (i // 256) % 256
    return jpeg(frame, quality=80 + i % 15)


def one_face_photos(n: int) -> list[tuple[str, bytes]]:
    return [(f"face-{i:04d}.jpg", one_face_photo(i)) for i in range(n)]


def no_face_photo() -> bytes:
    return jpeg(skdata.coffee())


def zip_of(files: list[tuple[str, bytes]], **kwargs) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", kwargs.get("compression", zipfile.ZIP_DEFLATED)) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()
