"""UTKFace ("Aligned & Cropped Faces"): labels from file names, the fixed split, serving-style crops.

File names are `[age]_[gender]_[race]_[date&time].jpg.chip.jpg` (gender 0 male,
1 female; race 0-4). A few real files lack the race field.

The chips are tight, aligned crops, but at serving time a face is cut from a
photo around a Haar box. So each chip goes through the app's own path, as if
it were uploaded: decode, detect (largest box), crop with the serving margin
(app_path_crop). Training and evaluation then see what a user's photo gives.
"""
from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.pipeline.decode import decode_image
from app.pipeline.detect import HaarSettings, whole_image_box
from app.pipeline.preprocess import prepare_face, prepare_faces
from training.common import face_in_frame

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


def chip_as_photo(data: bytes, detector: str | None = None, background_rng=None) -> tuple[np.ndarray, tuple | None, float]:
    """A chip file decoded by the app's decoder, set in a frame of its own edge pixels (or, with
    background_rng, on a random background: training.common.on_background), and the face the app finds
    in it (training.common.face_in_frame: its detector and settings, largest box, its roll)."""
    return face_in_frame(decode_image(data, max_bytes=len(data) + 1, max_pixels=1 << 40), detector=detector,
                         background_rng=background_rng)


def app_path_crop(data: bytes, size: int, margin: float, detector: str | None = None,
                  background_rng=None) -> tuple[np.ndarray, bool]:
    """(model input, detected) for one chip file, cut the way the app cuts a face out of an uploaded
    photo (chip_as_photo): the app's detector and settings, its largest box, its crop.

    Where the app finds no face, the whole image stands in (as detector="none" would) and
    `detected` is False: training skips such images, evaluation counts them as missed.
    """
    image, box, roll = chip_as_photo(data, detector, background_rng)
    detected = box is not None
    box = box if detected else whole_image_box(image)[0]
    return prepare_faces(image, [box], size, margin, [roll])[0], detected


def chip_crop(chip_rgb: np.ndarray, size: int) -> np.ndarray:
    """The tight chip itself as the model input (the alternative to serving-style crops)."""
    return prepare_face(chip_rgb, size)


def read_rgb(data_dir: Path, item: UtkItem) -> np.ndarray:
    bgr = cv2.imread(str(Path(data_dir) / "UTKFace" / item.filename), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"unreadable image {item.filename}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


SPLITS = ("train", "val", "test")


# crops= for load_utk: the app's default path (BlazeFace, faces turned upright), the Haar path the shipped
# age/gender model was trained and carded with, or the chips themselves.
CROPS = ("app", "haar", "chip")


def crops_cache_kind(crops: str) -> str:
    """The cache's name for a kind of crops: app-path crops name the detector and its settings (a changed
    detector or alignment gets a cache of its own)."""
    if crops == "haar":
        return f"app-{HaarSettings().fingerprint()}"
    if crops == "app":
        from app.pipeline.detect import DEFAULT_DETECTOR
        from app.pipeline.detect_blazeface import fingerprint
        return f"app-{DEFAULT_DETECTOR}-{fingerprint()}-upright"
    return crops


def load_utk(data_dir: Path, size: int, margin: float, crops: str = "app", cache_dir: Path | None = None,
             limit: int = 0, splits: tuple[str, ...] = SPLITS, backgrounds: bool = False) -> dict:
    """Arrays per split: x (N, size, size, 1), age, gender, race (-1 = unknown), detected (bool), plus
    crop statistics. crops="app": the app's own default detect-and-crop path (app_path_crop: BlazeFace,
    each face turned upright by its eyes); "haar": the same with the Haar cascade; "chip": the chips.

    Only the `splits` asked for are returned (and read from the cache): an evaluator asks for the test
    split only once its setup is fixed. A new cache is always written whole (all three splits).

    backgrounds: the train split's chips on random backgrounds (load_train_on_backgrounds) instead of
    edge frames; val and test stay framed by their edges, as every card measures."""
    if backgrounds and crops in ("app", "haar") and "train" in splits:
        rest = tuple(s for s in splits if s != "train")
        out = load_utk(data_dir, size, margin, crops, cache_dir, limit, rest) if rest else {}
        out = {s: out[s] for s in rest} | {"train": load_train_on_backgrounds(data_dir, size, margin, crops,
                                                                               cache_dir, limit)}
        return out | {"crop_stats": crop_stats(out)}
    data_dir = Path(data_dir)
    kind = crops_cache_kind(crops)
    key = f"utkface_{kind}_{size}_m{margin:g}.npz"
    cache = Path(cache_dir) / key if cache_dir and not limit else None
    fields = ("x", "age", "gender", "race", "detected")
    if cache and cache.exists():
        with np.load(cache) as z:      # an npz reads each array only when asked for it
            out = {s: {a: z[f"{s}_{a}"] for a in fields} for s in splits}
        return out | {"crop_stats": crop_stats(out)}
    items = list_items(data_dir)
    items = {s: v for s, v in items.items() if cache or s in splits}
    if limit:
        items = {s: v[:: max(1, len(v) // limit)] for s, v in items.items()}
    out = {}
    for split, split_items in items.items():
        x, detected = cut_all(data_dir, split_items, size, margin, crops, quick=bool(limit))
        out[split] = {"x": x, **labels_of(split_items), "detected": detected}
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **{f"{s}_{a}": out[s][a] for s in SPLITS for a in fields})
    out = {s: out[s] for s in splits}
    return out | {"crop_stats": crop_stats(out)}


# Cutting a split is one detection per image (about 50 ms on one core, 35-40 min for a new machine's caches
# on one process), so large splits are cut by one process per core. Fewer images: one process (a worker
# pays a second or two to start).
PARALLEL_FROM = 2000


def cut_one(data_dir: Path, item: UtkItem, index: int, size: int, margin: float, crops: str,
            backgrounds: bool) -> tuple[np.ndarray, bool]:
    """(model input, detected) for the index-th image of a split: app_path_crop (on its own seeded
    background when `backgrounds`), or the chip itself for crops="chip"."""
    if crops == "chip":
        return chip_crop(read_rgb(data_dir, item), size), True
    rng = np.random.default_rng([BACKGROUND_SEED, index]) if backgrounds else None
    return app_path_crop((data_dir / "UTKFace" / item.filename).read_bytes(), size, margin,
                         "haar" if crops == "haar" else None, background_rng=rng)


# Quick runs (--limit) cut the same few images again and again in one process (a training command, then
# each evaluation of it; the tests run dozens): their crops are kept here, keyed by the image file as it is
# on disk and by everything that shapes its crop. Full splits are never kept (the caches on disk hold them).
QUICK_CROPS: dict[tuple, tuple[np.ndarray, bool]] = {}
QUICK_CROPS_MAX = 4000


def quick_crop_key(data_dir: Path, item: UtkItem, index: int, settings: tuple, backgrounds: bool) -> tuple:
    path = (data_dir / "UTKFace" / item.filename).resolve()
    stat = path.stat()
    return (str(path), stat.st_mtime_ns, stat.st_size, *settings, index if backgrounds else None)


def cut_all(data_dir: Path, items: list, size: int, margin: float, crops: str, backgrounds: bool = False,
            workers: int | None = None, quick: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(x (N, size, size, 1), detected (N,)) for a split, in item order, the same whatever `workers` is
    (each image's background is seeded by its index). workers: processes (default: one per core
    from PARALLEL_FROM images up, else 1). quick: a --limit run's few images, kept in QUICK_CROPS."""
    import os
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial
    from multiprocessing import get_context
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if len(items) >= PARALLEL_FROM else 1
    one = partial(cut_one, Path(data_dir), size=size, margin=margin, crops=crops, backgrounds=backgrounds)
    if quick and workers == 1:
        results, settings = [], (size, margin, crops_cache_kind(crops))
        for i, item in enumerate(items):
            key = quick_crop_key(Path(data_dir), item, i, settings, backgrounds)
            if key not in QUICK_CROPS:
                if len(QUICK_CROPS) >= QUICK_CROPS_MAX:
                    QUICK_CROPS.pop(next(iter(QUICK_CROPS)))         # the oldest first
                QUICK_CROPS[key] = one(item, i)
            results.append(QUICK_CROPS[key])
    elif workers > 1:
        # spawn: a forked child of a process that has started TensorFlow's threads can hang
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(one, items, range(len(items)), chunksize=64))
    else:
        results = [one(item, i) for i, item in enumerate(items)]
    x = np.zeros((len(items), size, size, 1), np.float32)
    detected = np.ones(len(items), bool)
    for i, (face, found) in enumerate(results):
        x[i], detected[i] = face, found
    return x, detected


def labels_of(items) -> dict:
    """The label arrays of `items`: age (years), gender (1 = female), race (-1 = unknown)."""
    return {"age": np.array([it.age for it in items], np.float32),
            "gender": np.array([it.gender for it in items], np.float32),
            "race": np.array([-1 if it.race is None else it.race for it in items], np.int64)}


BACKGROUND_SEED = 2026     # each training image keeps its one background across runs (and caches)


def load_train_on_backgrounds(data_dir: Path, size: int, margin: float, crops: str, cache_dir: Path | None,
                              limit: int = 0) -> dict:
    """The train split cut the app's way from each chip set on a random background of its own
    (training.common.on_background, seeded by the image's place in the split), cached on its own."""
    data_dir = Path(data_dir)
    key = f"utkface_{crops_cache_kind(crops)}_{size}_m{margin:g}_train_backgrounds.npz"
    cache = Path(cache_dir) / key if cache_dir and not limit else None
    fields = ("x", "age", "gender", "race", "detected")
    if cache and cache.exists():
        with np.load(cache) as z:
            return {a: z[a] for a in fields}
    items = list_items(data_dir)["train"]
    if limit:
        items = items[:: max(1, len(items) // limit)]
    x, detected = cut_all(data_dir, items, size, margin, crops, backgrounds=True, quick=bool(limit))
    out = {"x": x, **labels_of(items), "detected": detected}
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **out)
    return out


def crop_stats(splits: dict) -> dict:
    """Per split: images, and how many of them the app's detector found a face in."""
    return {s: {"images": int(len(splits[s]["age"])), "detected": int(splits[s]["detected"].sum())}
            for s in SPLITS if s in splits}


def detected_only(split: dict) -> dict:
    """The images the app finds a face in (what training learns from)."""
    keep = split["detected"]
    return {k: v[keep] for k, v in split.items()}
