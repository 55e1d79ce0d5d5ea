"""Build the fake-camera input for browser tests: a 640x480 face clip as raw Y4M.

Chromium's --use-file-for-fake-video-capture plays a .y4m (or .mjpeg) file in a
loop as if it were a webcam. The clip is generated at test time from
skimage.data.astronaut() (or a UTKFace chip from the datasets folder) so that no
video or image is committed.

    python tests/browser/make_clip.py out.y4m [--seconds 3 --fps 15]
    python tests/browser/make_clip.py out.y4m --face-photo 240            # astronaut's face, 240 px
    python tests/browser/make_clip.py out.y4m --face-photo 240 --chip PATH   # a UTKFace chip, 240 px
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


# The astronaut's face in skimage's 512x512 portrait (the Haar box the README shows), and the share of
# a square photo of it that the face fills, about as in a UTKFace chip.
ASTRONAUT_FACE = (178, 67, 94, 94)
PHOTO_FACE_SHARE = 0.6


def astronaut_face_photo() -> np.ndarray:
    """A square, chip-like photo of the astronaut's face (RGB uint8), cut around her face."""
    from skimage import data
    x, y, w, h = ASTRONAUT_FACE
    side = int(round(w / PHOTO_FACE_SHARE))
    cx, cy = x + w // 2, y + h // 2
    return data.astronaut()[max(0, cy - side // 2):cy - side // 2 + side, max(0, cx - side // 2):cx - side // 2 + side]


def face_photo_frame(photo: np.ndarray, side: int = 240, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A square face photo scaled to side x side px, centred on a grey width x height frame: the
    issue-23 case of a close, frontal face held up to a webcam."""
    photo = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA if photo.shape[0] > side else cv2.INTER_CUBIC)
    frame = np.full((height, width, 3), 128, np.uint8)
    x0, y0 = (width - side) // 2, (height - side) // 2
    frame[y0:y0 + side, x0:x0 + side] = photo
    return frame


def chip_photo(path: Path) -> np.ndarray:
    """A UTKFace chip (read at test time from the datasets folder; never committed) as RGB."""
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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


def make_clip(path: Path, seconds: float = 3.0, fps: int = 15, frame: np.ndarray | None = None,
              amplitude: float = 2.0) -> Path:
    """A clip of `frame` (default: face_frame()) swaying by `amplitude` px (0: a perfectly still face)."""
    frame = face_frame() if frame is None else frame
    return write_y4m(Path(path), jittered(frame, int(seconds * fps), amplitude), fps)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--amplitude", type=float, default=2.0, help="sway in pixels (0: still)")
    parser.add_argument("--face-photo", type=int, metavar="PX", help="a face photo of this side instead of the portrait")
    parser.add_argument("--chip", type=Path, help="with --face-photo: this UTKFace chip instead of the astronaut's face")
    args = parser.parse_args()
    photo = args.face_photo and (chip_photo(args.chip) if args.chip else astronaut_face_photo())
    frame = face_photo_frame(photo, args.face_photo) if args.face_photo else None
    print(make_clip(args.out, args.seconds, args.fps, frame, args.amplitude))
