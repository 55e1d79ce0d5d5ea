"""FER2013 in the common image-folder layout: train/<class>/*.jpg, test/<class>/{PublicTest,PrivateTest}_*.jpg.

Every image goes through app.pipeline.preprocess.prepare_face, the function the
app uses at serving time. Arrays are cached as .npz so later runs start fast.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.pipeline.predict import EMOTION_LABELS
from app.pipeline.preprocess import prepare_face

EMOTIONS = list(EMOTION_LABELS)      # the app's labels, in FER2013's class order (0 angry ... 6 neutral)
INPUT_SIZE = 48
# FER+ vote columns for our 7 classes, in EMOTIONS order (contempt, unknown, NF dropped).
FERPLUS_COLUMNS = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]


@dataclass
class FerSplit:
    x: np.ndarray          # (N, 48, 48, 1) float32 in [0, 1]
    y: np.ndarray          # (N,) int, index into EMOTIONS (original FER2013 label)
    paths: list[str]       # relative to the data dir, e.g. "train/angry/Training_1.jpg"


def list_images(data_dir: Path, subset: str, prefix: str = "") -> list[tuple[str, int]]:
    """(relative path, label index) for `subset` ("train" or "test"), files starting with `prefix`."""
    items = []
    for label, name in enumerate(EMOTIONS):
        folder = data_dir / subset / name
        if not folder.is_dir():
            raise FileNotFoundError(f"missing class folder {folder} (expected {subset}/<class>/ for each of {EMOTIONS})")
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.name.startswith(prefix):
                items.append((f"{subset}/{name}/{p.name}", label))
    return items


def load_split(data_dir: Path, items: list[tuple[str, int]]) -> FerSplit:
    x = np.zeros((len(items), INPUT_SIZE, INPUT_SIZE, 1), np.float32)
    for i, (rel, _) in enumerate(items):
        img = cv2.imread(str(data_dir / rel), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"unreadable image {data_dir / rel}")
        x[i] = prepare_face(img, INPUT_SIZE)
    return FerSplit(x, np.array([l for _, l in items], np.int64), [r for r, _ in items])


def pixel_hash(data_dir: Path, rel: str) -> str:
    return hashlib.sha1(cv2.imread(str(data_dir / rel), cv2.IMREAD_GRAYSCALE).tobytes()).hexdigest()


def drop_test_copies(data_dir: Path, train: list, test: list) -> tuple[list, int]:
    """Remove training images that are pixel-identical to a test image (FER2013 has such copies)."""
    test_hashes = {pixel_hash(data_dir, r) for r, _ in test}
    kept = [(r, l) for r, l in train if pixel_hash(data_dir, r) not in test_hashes]
    return kept, len(train) - len(kept)


def load_ferplus_votes(data_dir: Path) -> dict[str, np.ndarray]:
    """path → 10 FER+ votes as counts over EMOTIONS order, plus the not-a-face count last."""
    votes = {}
    csv_path = data_dir / "ferplus_votes.csv"
    if not csv_path.exists():
        raise FileNotFoundError(f"{csv_path} not found: FER+ labels need ferplus_votes.csv in the data dir")
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            votes[row["path"]] = np.array([float(row[c]) for c in FERPLUS_COLUMNS] + [float(row["NF"])], np.float32)
    return votes


def soft_targets(split: FerSplit, votes: dict[str, np.ndarray], mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Training targets (N, 7) and a keep-mask.

    mode "fer": one-hot original labels. "ferplus": FER+ vote distribution.
    "blend": the mean of both (the FER+ votes soften, the original label keeps
    what the benchmark scores). Images that FER+ voters mostly called not-a-face are dropped.
    """
    onehot = np.eye(len(EMOTIONS), dtype=np.float32)[split.y]
    if mode == "fer":
        return onehot, np.ones(len(split.y), bool)
    dist = np.zeros_like(onehot)
    keep = np.ones(len(split.y), bool)
    for i, rel in enumerate(split.paths):
        v = votes.get(rel)
        if v is None or v[:7].sum() == 0 or v[7] > v[:7].sum():
            keep[i] = v is None          # no FER+ row: keep with its original label
            dist[i] = onehot[i]
            continue
        dist[i] = v[:7] / v[:7].sum()
    targets = dist if mode == "ferplus" else 0.5 * (onehot + dist)
    return targets, keep


SPLITS = ("train", "public", "private")


def load_fer(data_dir: Path, cache_dir: Path | None = None, limit: int = 0,
             splits: tuple[str, ...] = SPLITS) -> dict[str, FerSplit | int]:
    """{"train", "public", "private"} splits, training copies of test images removed.

    Only the `splits` asked for are returned (and read from the cache): an evaluator asks for
    PrivateTest only once its setup is fixed. limit > 0 keeps only every k-th image so that each
    split has about `limit` (smoke tests).
    """
    data_dir = Path(data_dir)
    cache = Path(cache_dir) / "fer2013_48.npz" if cache_dir else None
    if cache and cache.exists():
        with np.load(cache, allow_pickle=False) as z:     # an npz reads each array only when asked for it
            out = {k: FerSplit(z[f"{k}_x"], z[f"{k}_y"], list(z[f"{k}_paths"])) for k in splits}
            return out | {"dropped_duplicates": int(z["dropped"])}
    train = list_images(data_dir, "train")
    public = list_images(data_dir, "test", "PublicTest")
    private = list_images(data_dir, "test", "PrivateTest")
    if limit:
        train, public, private = (items[::max(1, len(items) // limit)] for items in (train, public, private))
    # training copies of test images go whichever splits are asked for (pixels are compared, not labels)
    train, dropped = drop_test_copies(data_dir, train, public + private)
    items = {"train": train, "public": public, "private": private}
    out = {k: load_split(data_dir, items[k]) for k in (SPLITS if cache else splits)}
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, dropped=dropped, **{f"{k}_{a}": np.asarray(getattr(out[k], a))
                                            for k in SPLITS for a in ("x", "y", "paths")})
    return {k: out[k] for k in splits} | {"dropped_duplicates": dropped}


APP_PATH_UPSCALE = 4      # a 48-px FER2013 image seen as a 192-px face in a photo


def as_photo(gray: np.ndarray, upscale: int = APP_PATH_UPSCALE) -> np.ndarray:
    """A FER2013 image (gray uint8) at the size of a face in a photo."""
    return cv2.resize(gray, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)


def serving_margin(x: np.ndarray, n: int = 1000, upscale: int = APP_PATH_UPSCALE, detector: str | None = None) -> float:
    """The crop margin that makes a face the app detects framed like a FER2013 image.

    FER2013 images are the dataset's own face crops (not cut by our detector). Each (upscaled to a
    photo-like size) goes through the one way training finds faces (training.common.face_in_frame:
    set in a frame of its edge pixels, its largest box) with `detector`, by default the app's default
    (BlazeFace, its boxes mapped to the frame the Haar cascade draws). The emotion model shipped before
    2026-12-03 had its margin measured with the Haar cascade.
    The median box width w, as a share of the image, gives margin = (1/w - 1) / 2.
    """
    from training.common import face_in_frame
    widths = []
    for img in x[:: max(1, len(x) // n)]:
        gray = as_photo((img[..., 0] * 255).astype(np.uint8), upscale)
        side = gray.shape[0]
        framed, box, _ = face_in_frame(gray, detector=detector)
        if box is None:
            continue
        bx, _, bw, _ = box
        p = (framed.shape[1] - side) / 2
        if bw > 0.4 * side and abs(bx + bw / 2 - p - side / 2) < 0.2 * side:   # the face, not a stray box
            widths.append(bw / side)
    if not widths:      # too few images to measure (smoke runs): the detector's own framing
        return 0.0
    return round(float((1 / np.median(widths) - 1) / 2), 3)


def app_path_inputs(data_dir: Path, split: FerSplit, margin: float, detector: str | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(x (N, 48, 48, 1), detected (N,)): each image of `split` read the way the app reads a face in a
    photo: its file upscaled (as_photo), set in a frame of its edge pixels, the app's detector (default:
    the app's default) finds its largest face, which is cut with `margin`, turned upright and
    preprocessed by app.pipeline.preprocess. An image whose face is not found has detected False."""
    from app.pipeline.preprocess import prepare_faces
    from training.common import face_in_frame
    x = np.zeros((len(split.paths), INPUT_SIZE, INPUT_SIZE, 1), np.float32)
    detected = np.zeros(len(split.paths), bool)
    for i, rel in enumerate(split.paths):
        img = cv2.imread(str(Path(data_dir) / rel), cv2.IMREAD_GRAYSCALE)
        frame, box, roll = face_in_frame(as_photo(img), detector=detector)
        if box is not None:
            x[i], detected[i] = prepare_faces(frame, [box], INPUT_SIZE, margin, [roll])[0], True
    return x, detected
