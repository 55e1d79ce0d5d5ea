"""Models: read their cards, load them once per process, predict all faces of an image.

Everything model-specific (input size, crop margin, output names, labels,
calibrated age interval) comes from the model card next to each `.keras` file,
so a retrained model with a new card needs no code change here.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.pipeline.errors import ModelUnavailable
from app.pipeline.preprocess import prepare_faces, test_time_views

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # keep TensorFlow's start-up chatter out of the logs
log = logging.getLogger(__name__)

MODEL_NAMES = ("emotion", "age_gender")
HOW_TO_PRODUCE = {
    "emotion": "python -m training.train_emotion --data-dir ../shared/data/fer2013, "
               "then python -m training.evaluate_emotion --data-dir ../shared/data/fer2013",
    "age_gender": "python -m training.train_age_gender --data-dir ../shared/data/utkface, "
                  "then python -m training.evaluate_age_gender --data-dir ../shared/data/utkface",
}
# Every face in an answer has these fields, so the models together must provide these outputs.
REQUIRED_OUTPUTS = {"emotion": "softmax", "age": "regression", "gender": "sigmoid"}
EMOTION_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
AGE_GROUPS = ("0-2", "4-6", "8-12", "15-20", "25-32", "38-43", "48-53", "60-100")
# Serving profiles, a parameter of the one pipeline. accurate: each model averages the test-time
# views its card names (mirror, shifted faces), as in its evaluation; live: fewer views
# (profile_augmentation), several times cheaper, and the browser's tracker averages over frames instead.
PROFILES = ("accurate", "live")


def profile_augmentation(flip: bool, shift_px: int, profile: str) -> tuple[bool, int]:
    """(mirror, shift in pixels) that `profile` averages, for a model whose card names (flip, shift_px).

    accurate: all of the card's views. live: the face and, where the card averages it, its mirror, but
    no shifted copies. One view alone spread a still webcam face's age over s.d. 6.0 years per frame,
    with its mirror 4.4, with all 10 views 3.6 (bench/measure_live_views.py), and the mirror costs one
    more face in the same batched call. The evaluators score the live profile through this too.
    """
    return (flip, shift_px) if profile == "accurate" else (flip, 0)


@dataclass(frozen=True)
class ModelCard:
    name: str
    file: str
    version: str
    size: int
    margin: float
    outputs: dict
    flip_average: bool = False   # average with the mirrored face, when evaluation showed it helps
    shift_px: int = 0            # and with the face moved this many pixels each way (same reason)

    @classmethod
    def from_dict(cls, card: dict) -> "ModelCard":
        """The fields the app uses, from a card's JSON (also used by training/ to time the model). A
        field of the wrong shape is a TypeError here, not an AttributeError on the first request."""
        outputs, views = dict(card["outputs"]), card.get("test_time_augmentation") or {}
        if not all(isinstance(spec, dict) for spec in outputs.values()):
            raise TypeError("each of its outputs must be an object like {\"kind\": ...}")
        if not isinstance(views, dict):
            raise TypeError("test_time_augmentation must be an object")
        return cls(name=str(card["name"]), file=str(card["file"]), version=str(card["version"]),
                   size=int(card["input"]["size"]), margin=float(card["input"]["margin"]), outputs=outputs,
                   flip_average=bool(views.get("horizontal_flip", False)), shift_px=int(views.get("shift_px", 0)))

    @classmethod
    def read(cls, card_path: Path) -> "ModelCard":
        return cls.read_with_json(card_path)[0]

    @classmethod
    def read_with_json(cls, card_path: Path) -> tuple["ModelCard", dict]:
        """The card's fields and its whole JSON (for what only some callers need, such as the runtime block)."""
        try:
            raw = json.loads(card_path.read_text())
            return cls.from_dict(raw), raw
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelUnavailable(f"Model card {card_path} is unreadable ({type(e).__name__}: {e}).") from e


class LoadedModel:
    """One model plus its card; called once per image on the batch of all its faces.

    Runs the card's ONNX copy with ONNX Runtime when one is given (`onnx_session`), else the Keras
    model through one traced tf.function (docs/speed.md: ONNX Runtime is several times faster on
    1-4 faces; training/export_runtime.py writes the copy).
    """

    def __init__(self, card: ModelCard, model, onnx_session=None, int8: bool = False):
        self.card, self.model, self.onnx_session = card, model, onnx_session
        self.runtime = ("onnxruntime int8" if int8 else "onnxruntime") if onnx_session is not None else "keras"
        if onnx_session is not None:
            self._input_name = onnx_session.get_inputs()[0].name
            self._output_names = [o.name for o in onnx_session.get_outputs()]
            self._call = lambda x: dict(zip(self._output_names, onnx_session.run(None, {self._input_name: x})))
            return
        import tensorflow as tf
        # A tf.function with a fixed signature: traced once for any batch size, ~8x faster than
        # eager model(x) and ~25x faster than model.predict on 1-4 faces (ARCHITECTURE.md).
        spec = tf.TensorSpec((None, card.size, card.size, 1), tf.float32)
        self._call = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def views(self, batch: np.ndarray, profile: str = "accurate") -> list[np.ndarray]:
        """The views of `batch` this profile averages (profile_augmentation)."""
        return test_time_views(batch, *profile_augmentation(self.card.flip_average, self.card.shift_px, profile))

    def __call__(self, batch: np.ndarray, profile: str = "accurate") -> dict[str, np.ndarray]:
        """(N, size, size, 1) float32 → {output name: (N, k) array}; still one model call per image."""
        n = len(batch)
        views = self.views(batch, profile)
        raw = self._call(np.ascontiguousarray(np.concatenate(views) if len(views) > 1 else batch, np.float32))
        names = list(self.card.outputs)
        if isinstance(raw, dict):
            out = {k: np.asarray(v) for k, v in raw.items()}
        elif isinstance(raw, (list, tuple)):
            out = {k: np.asarray(v) for k, v in zip(names, raw)}
        else:
            out = {names[0]: np.asarray(raw)}
        if len(views) > 1:   # the mean over views, face by face
            out = {k: v.reshape(len(views), n, *v.shape[1:]).mean(axis=0) for k, v in out.items()}
        return out


class Predictor:
    def __init__(self, models: list[LoadedModel]):
        self.models = models
        self.versions = {m.card.name: m.card.version for m in models}

    def checked(self) -> "Predictor":
        """Fail at start-up, not on the first request: outputs complete, and one warm-up call per model."""
        provided = {name: spec.get("kind") for m in self.models for name, spec in m.card.outputs.items()}
        for name, kind in REQUIRED_OUTPUTS.items():
            if provided.get(name) != kind:
                raise ModelUnavailable(f"No model card provides a {kind} output named {name!r} "
                                       f"(cards provide {provided}).")
        emotion_labels = [m.card.outputs["emotion"].get("labels") for m in self.models if "emotion" in m.card.outputs]
        if sorted(emotion_labels[0] or []) != sorted(EMOTION_LABELS):
            raise ModelUnavailable(f"The emotion output must have the labels {list(EMOTION_LABELS)}, "
                                   f"its card lists {emotion_labels[0]}.")
        for m in self.models:
            try:
                raw = m(np.zeros((1, m.card.size, m.card.size, 1), np.float32))   # also traces the tf.function
                missing = set(m.card.outputs) - set(raw)
            except Exception as e:
                raise ModelUnavailable(f"Model {m.card.file} does not accept (N, {m.card.size}, {m.card.size}, 1) "
                                       f"inputs as its card says ({type(e).__name__}: {e}).") from e
            if missing:
                raise ModelUnavailable(f"Model {m.card.file} does not produce the outputs {sorted(missing)} "
                                       f"its card lists.")
        return self

    def prepare(self, image: np.ndarray, boxes, rolls=None) -> list[np.ndarray]:
        """One batch per model, each cut with that model's own margin and size, each face turned
        upright by its roll (degrees, from the detector; None: as it is)."""
        return [prepare_faces(image, boxes, m.card.size, m.card.margin, rolls) for m in self.models]

    def predict(self, batches: list[np.ndarray], profile: str = "accurate") -> list[dict]:
        """Per-face dicts of readable outputs (emotion, age, age_range, age_group, gender)."""
        n = len(batches[0]) if batches else 0
        faces = [{} for _ in range(n)]
        if n == 0:
            return faces
        for model, batch in zip(self.models, batches):
            raw = model(batch, profile)
            for name, spec in model.card.outputs.items():
                for face, values in zip(faces, raw[name]):
                    face.update(interpret(name, spec, np.asarray(values, np.float64).ravel()))
        return faces


def interpret(name: str, spec: dict, values: np.ndarray) -> dict:
    """One face's raw output values → answer fields, according to the card's output spec."""
    kind = spec["kind"]
    if kind == "softmax":
        labels = spec["labels"]
        return {name: {"label": labels[int(np.argmax(values))],
                       "probabilities": {label: round(float(p), 4) for label, p in zip(labels, values)}}}
    if kind == "sigmoid":
        p = float(values[0])
        label, prob = (spec["positive_label"], p) if p >= 0.5 else (spec["negative_label"], 1.0 - p)
        return {name: {"label": label, "probability": round(prob, 4)}}
    if kind == "regression":
        value = max(0.0, float(values[0]))
        fields = {name: round(value, 1)}
        interval = spec.get("interval")
        if interval:
            fields[f"{name}_range"] = [round(max(0.0, value - float(interval["below"])), 1),
                                       round(value + float(interval["above"]), 1)]
        if spec.get("unit") == "years":
            fields[f"{name}_group"] = nearest_age_group(value)
        return fields
    raise ValueError(f"unknown output kind {kind!r} for output {name!r}")


def nearest_age_group(age: float) -> str:
    """The group whose range is closest to `age` (0 inside it); ties go to the nearer midpoint."""
    def distance(group: str):
        low, high = (float(v) for v in group.split("-"))
        return max(low - age, 0.0, age - high), abs((low + high) / 2 - age)
    return min(AGE_GROUPS, key=distance)


@functools.lru_cache(maxsize=None)
def _load_cached(models_dir: str) -> Predictor:
    return Predictor([_load_one(Path(models_dir), name) for name in MODEL_NAMES]).checked()


def load_predictor(models_dir) -> Predictor:
    """The models of `models_dir`, loaded once per process (later calls reuse them)."""
    return _load_cached(str(Path(models_dir).resolve()))


def _load_one(models_dir: Path, name: str) -> LoadedModel:
    card_path = models_dir / f"{name}.json"
    how = f"Produce it with: {HOW_TO_PRODUCE[name]} (or set VISAGE_MODELS_DIR to a folder that has it)."
    if not card_path.is_file():
        raise ModelUnavailable(f"Model card {card_path} is missing. {how}")
    card, card_json = ModelCard.read_with_json(card_path)
    model_path = models_dir / card.file
    if not model_path.is_file():
        raise ModelUnavailable(f"Model file {model_path} (named by {card_path}) is missing. {how}")
    session, kind = onnx_session(models_dir, card_json, model_path)
    if session is not None:
        return LoadedModel(card, None, session, int8=kind == "onnx_int8")
    import keras
    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as e:  # Keras raises many types for a bad archive
        raise ModelUnavailable(f"Model file {model_path} could not be loaded ({type(e).__name__}: {e}). {how}") from e
    return LoadedModel(card, model)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def session_options():
    import onnxruntime as ort
    options = ort.SessionOptions()
    # One knob for both runtimes (`make run` sets 1). Unset: also 1, not ONNX Runtime's one per core,
    # whose idle threads spin and took CPU from the Haar scan on 2 shared cores (docs/speed.md).
    options.intra_op_num_threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 1)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (its first "flags" line); none where there is no such
    file (macOS) or line (ARM lists "Features")."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return set()
    return set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []))


def cpu_reads_int8_as_checked(machine: str | None = None, cpuinfo: str | None = None) -> bool:
    """Whether this CPU runs the int8 copies' arithmetic as the machine they were checked on did. On x86
    without VNNI instructions ONNX Runtime multiplies uint8 by int8 through 16-bit sums that can saturate
    (its quantization docs), so a face could be read differently: there the float copy is served.
    Other CPUs (ARM) have no such path. An x86 CPU whose flags can't be read (macOS on Intel) gets the float copy."""
    import platform
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True
    return bool(cpu_flags(cpuinfo) & {"avx512_vnni", "avx_vnni"})


def onnx_copies(card: dict) -> list[tuple[str, dict]]:
    """The card's ONNX copies in the order the app tries them: the int8 copy first (training/quantize_runtime.py:
    about 3x faster per call, kept only where it reads validation as the float copy does; the card holds both
    copies' numbers), then the float copy. VISAGE_INT8_MODELS: auto (default: int8 where the CPU reads it as
    checked, cpu_reads_int8_as_checked), 1 (always), 0 (never)."""
    runtime = card.get("runtime")
    runtime = runtime if isinstance(runtime, dict) else {}
    choice = os.environ.get("VISAGE_INT8_MODELS", "auto").strip().lower()
    int8 = choice == "1" or (choice not in ("0", "1") and _cpu_reads_int8())
    kinds = ["onnx_int8", "onnx"] if int8 else ["onnx"]
    return [(kind, runtime[kind]) for kind in kinds if isinstance(runtime.get(kind), dict)]


@functools.lru_cache(maxsize=1)
def _cpu_reads_int8() -> bool:
    found = cpu_reads_int8_as_checked()
    if not found:
        log.info("this CPU has no VNNI instructions: serving the float ONNX copies (VISAGE_INT8_MODELS=1 forces int8)")
    return found


def onnx_session(models_dir: Path, card: dict, keras_path: Path):
    """(ONNX Runtime session, which copy) for the first usable copy of onnx_copies, or (None, None): serve the
    .keras file. A copy is skipped when its file or onnxruntime is missing, it does not load, or it was made
    from another .keras file (stale)."""
    keras_sha256 = None      # hashed once, on first need (the .keras file is up to 10 MB)
    for kind, entry in onnx_copies(card):
        path = models_dir / str(entry.get("file", ""))
        if not path.is_file():
            log.warning("%s names %s, which is missing", card.get("name"), path)
            continue
        keras_sha256 = keras_sha256 or file_sha256(keras_path)
        if entry.get("source_sha256") != keras_sha256:
            log.warning("%s was made from another %s (stale): not served; re-export with "
                        "python -m training.export_runtime %s", path, keras_path.name, models_dir)
            continue
        try:
            import onnxruntime as ort
        except ImportError:
            log.warning("onnxruntime is not installed: serving %s with Keras", keras_path.name)
            return None, None
        try:
            return ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"]), kind
        except Exception as e:  # a corrupt copy: the next one, or the .keras file, is still there
            log.warning("%s could not be loaded (%s: %s)", path, type(e).__name__, e)
    if card.get("runtime"):
        log.warning("no usable ONNX copy of %s: serving %s with Keras", card.get("name"), keras_path.name)
    return None, None
