"""Build the fake-camera input for browser tests: a 640x480 face clip as raw Y4M.

Chromium's --use-file-for-fake-video-capture plays a .y4m (or .mjpeg) file in a
loop as if it were a webcam. The clip is generated at test time from
skimage.data.astronaut() so that no video or image is committed.

    python tests/browser/make_clip.py out.y4m [--seconds 3 --fps 15]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480


def face_frame(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """astronaut() scaled to fit `height` and centred on a grey canvas: RGB uint8 (height, width, 3)."""
    from skimage import data
    face = data.astronaut()
    side = min(width, height)
    face = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 128, np.uint8)
    x0, y0 = (width - side) // 2, (height - side) // 2
    frame[y0:y0 + side, x0:x0 + side] = face
    return frame


def jittered(frame: np.ndarray, n_frames: int, amplitude: float = 2.0):
    """Frames with a sub-box-sized sway, like a person holding still in front of a webcam."""
    h, w = frame.shape[:2]
    for i in range(n_frames):
        phase = 2 * np.pi * i / max(1, n_frames)
        shift = np.float32([[1, 0, amplitude * np.sin(phase)], [0, 1, amplitude * np.cos(phase)]])
        yield cv2.warpAffine(frame, shift, (w, h), borderMode=cv2.BORDER_REPLICATE)


def write_y4m(path: Path, frames, fps: int) -> Path:
    """Write RGB frames as YUV4MPEG2, 4:2:0 (C420jpeg: what Chromium's fake capture reads)."""
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in (first, *frames):
            # I420 = the full Y plane, then the quarter-size U and V planes: exactly a Y4M frame body.
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def make_clip(path: Path, seconds: float = 3.0, fps: int = 15) -> Path:
    return write_y4m(Path(path), jittered(face_frame(), int(seconds * fps)), fps)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fps", type=int, default=15)
    args = parser.parse_args()
    print(make_clip(args.out, args.seconds, args.fps))
