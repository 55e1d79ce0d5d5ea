"""UTKFace ("Aligned & Cropped Faces"): labels from file names, the fixed split, serving-style crops.

File names are `[age]_[gender]_[race]_[date&time].jpg.chip.jpg` (gender 0 male,
1 female; race 0-4). A few real files lack the race field.

The chips are tight, aligned crops, but at serving time a face is cut from a
photo around a Haar box. So each chip is padded (edges replicated), the
serving detector runs on it, and the crop is cut with the serving margin by
app.pipeline.preprocess — the same code path as a live face.
"""
from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.pipeline.detect import HaarFaceDetector, HaarSettings
from app.pipeline.preprocess import crop_face, prepare_face

RACES = ["White", "Black", "Asian", "Indian", "Others"]
GENDERS = ["male", "female"]
_NAME = re.compile(r"^(\d+)_([01])_(?:([0-4])_)?\d+")


@dataclass(frozen=True)
class UtkItem:
    filename: str
    age: int
    gender: int            # 0 male, 1 female
    race: int | None       # None where the file name has no race field


def parse_filename(name: str) -> UtkItem | None:
    """Labels from a UTKFace file name, or None if it does not follow the pattern."""
    m = _NAME.match(name)
    if not m:
        return None
    age, gender, race = int(m.group(1)), int(m.group(2)), m.group(3)
    if not 0 < age <= 120:
        return None
    return UtkItem(name, age, gender, int(race) if race is not None else None)


def hash_split(filename: str, val: float = 0.1, test: float = 0.1) -> str:
    """Deterministic split from the file name alone (for folders without splits.csv)."""
    u = int(hashlib.md5(filename.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if u < test else "val" if u < test + val else "train"


def list_items(data_dir: Path) -> dict[str, list[UtkItem]]:
    """{"train", "val", "test"} items: from splits.csv when present, else a hash split of UTKFace/*.jpg."""
    data_dir = Path(data_dir)
    image_dir = data_dir / "UTKFace"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir} not found (expected <data-dir>/UTKFace/*.jpg.chip.jpg)")
    out = {"train": [], "val": [], "test": []}
    splits_csv = data_dir / "splits.csv"
    if splits_csv.exists():
        with open(splits_csv, newline="") as f:
            for row in csv.DictReader(f):
                race = row["race"].strip()
                out[row["split"]].append(UtkItem(row["filename"], int(row["age"]), int(row["gender"]),
                                                 int(race) if race else None))
        return out
    for p in sorted(image_dir.glob("*.jpg")):
        item = parse_filename(p.name)
        if item:
            out[hash_split(p.name)].append(item)
    return out


@dataclass
class CropStats:
    detected: int = 0
    fallback: int = 0


def serving_crop(chip_rgb: np.ndarray, detector: HaarFaceDetector, size: int, margin: float,
                 fallback_box, stats: CropStats, pad: float = 0.3) -> np.ndarray:
    """Model input for one chip, cut the way the app cuts a face out of a photo.

    The detection nearest the chip centre is used; where the cascade finds none
    (profile, blur) `fallback_box` — the median detected box, relative to the chip — stands in.
    """
    h, w = chip_rgb.shape[:2]
    p = int(round(pad * max(h, w)))
    padded = cv2.copyMakeBorder(chip_rgb, p, p, p, p, cv2.BORDER_REPLICATE)
    cx, cy = p + w / 2, p + h / 2
    boxes = [b for b in detector.detect(padded) if b[2] >= 0.3 * w
             and abs(b[0] + b[2] / 2 - cx) < 0.25 * w and abs(b[1] + b[3] / 2 - cy) < 0.25 * h]
    if boxes:
        stats.detected += 1
        box = boxes[0]
    else:
        stats.fallback += 1
        fx, fy, fw, fh = fallback_box
        box = (p + fx * w, p + fy * h, fw * w, fh * h)
    return prepare_face(crop_face(padded, box, margin), size)


def chip_crop(chip_rgb: np.ndarray, size: int) -> np.ndarray:
    """The tight chip itself as the model input (the alternative to serving-style crops)."""
    return prepare_face(chip_rgb, size)


def calibrate_fallback_box(data_dir: Path, items: list[UtkItem], detector: HaarFaceDetector,
                           n: int = 500, pad: float = 0.3) -> tuple[float, float, float, float]:
    """Median Haar box relative to the chip (x, y, w, h as fractions), from `n` chips."""
    rel = []
    for item in items[:: max(1, len(items) // n)]:
        chip = read_rgb(data_dir, item)
        h, w = chip.shape[:2]
        p = int(round(pad * max(h, w)))
        padded = cv2.copyMakeBorder(chip, p, p, p, p, cv2.BORDER_REPLICATE)
        for x, y, bw, bh in detector.detect(padded):
            if bw >= 0.3 * w and abs(x + bw / 2 - p - w / 2) < 0.25 * w and abs(y + bh / 2 - p - h / 2) < 0.25 * h:
                rel.append(((x - p) / w, (y - p) / h, bw / w, bh / h))
                break
    return tuple(float(v) for v in np.median(np.array(rel), axis=0))


def read_rgb(data_dir: Path, item: UtkItem) -> np.ndarray:
    bgr = cv2.imread(str(Path(data_dir) / "UTKFace" / item.filename), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"unreadable image {item.filename}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_utk(data_dir: Path, size: int, margin: float, crops: str = "haar", cache_dir: Path | None = None,
             limit: int = 0) -> dict:
    """Arrays per split: x (N, size, size, 1), age, gender, race (-1 = unknown), plus crop statistics."""
    data_dir = Path(data_dir)
    key = f"utkface_{crops}_{size}_m{margin:g}.npz"
    cache = Path(cache_dir) / key if cache_dir and not limit else None
    if cache and cache.exists():
        z = np.load(cache)
        return {s: {a: z[f"{s}_{a}"] for a in ("x", "age", "gender", "race")} for s in ("train", "val", "test")} | {
            "crop_stats": {"detected": int(z["detected"]), "fallback": int(z["fallback"])},
            "fallback_box": z["fallback_box"].tolist()}
    items = list_items(data_dir)
    if limit:
        items = {s: v[:: max(1, len(v) // limit)] for s, v in items.items()}
    # The serving settings, but the cascade sees the padded chip at half size: the face is
    # large, so this finds the same boxes ~4x faster.
    detector = HaarFaceDetector(HaarSettings(max_side=160))
    fallback = calibrate_fallback_box(data_dir, items["train"], detector) if crops == "haar" else (0, 0, 1, 1)
    stats = CropStats()
    out = {}
    for split, split_items in items.items():
        x = np.zeros((len(split_items), size, size, 1), np.float32)
        for i, item in enumerate(split_items):
            chip = read_rgb(data_dir, item)
            x[i] = (serving_crop(chip, detector, size, margin, fallback, stats) if crops == "haar"
                    else chip_crop(chip, size))
        out[split] = {"x": x, "age": np.array([it.age for it in split_items], np.float32),
                      "gender": np.array([it.gender for it in split_items], np.float32),
                      "race": np.array([-1 if it.race is None else it.race for it in split_items], np.int64)}
    out["crop_stats"] = {"detected": stats.detected, "fallback": stats.fallback}
    out["fallback_box"] = list(fallback)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, detected=stats.detected, fallback=stats.fallback, fallback_box=np.array(fallback),
                 **{f"{s}_{a}": out[s][a] for s in ("train", "val", "test") for a in ("x", "age", "gender", "race")})
    return out
