"""Build real video files for the tests with PyAV, from skimage's astronaut portrait."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data as skdata

# The astronaut's head and shoulders; the Haar cascade finds the face in it at any size used here.
_PORTRAIT = skdata.astronaut()[10:290, 120:360]


def portrait(width: int) -> np.ndarray:
    h = int(_PORTRAIT.shape[0] * width / _PORTRAIT.shape[1])
    return cv2.resize(_PORTRAIT, (width, h), interpolation=cv2.INTER_AREA)


def scene(width: int, height: int, placements) -> np.ndarray:
    """A gray frame with portraits pasted at (x, y, width), later ones on top."""
    frame = np.full((height, width, 3), 90, np.uint8)
    for x, y, w in placements:
        face = portrait(w)
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(width, x + face.shape[1]), min(height, y + face.shape[0])
        if x1 > x0 and y1 > y0:
            frame[y0:y1, x0:x1] = face[y0 - y:y1 - y, x0 - x:x1 - x]
    return frame


def write_clip(path: Path, frames, fps: int = 10, codec: str = "libx264", fmt: str | None = None,
               rotation: int = 0, audio: bool = False) -> Path:
    """Encode RGB frames (all one size) to `path`; rotation is stored as display-matrix metadata."""
    frames = list(frames)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def one_face_clip(path: Path, seconds: float = 2.0, fps: int = 10, size=(640, 480), **kw) -> Path:
    """One face drifting right and growing a little, as a handheld camera would show it."""
    width, height = size
    n = int(seconds * fps)
    frames = (scene(width, height, [(int(width * 0.25 + i * width * 0.2 / n), int(height * 0.1),
                                     int(width * 0.35 + i * 2))]) for i in range(n))
    return write_clip(path, frames, fps, **kw)


def crossing_clip(path: Path, seconds: float = 3.0, fps: int = 10) -> tuple[Path, float]:
    """Two faces crossing: A left→right (behind), B right→left (in front), at slightly different heights.
    Returns the path and the time they cross."""
    n = int(seconds * fps)
    width, height, w = 800, 400, 160
    frames = []
    for i in range(n):
        k = i / (n - 1)
        ax, bx = int(20 + k * (width - w - 40)), int(width - w - 20 - k * (width - w - 40))
        frames.append(scene(width, height, [(ax, 20, w), (bx, 80, w)]))
    return write_clip(path, frames, fps), seconds / 2
