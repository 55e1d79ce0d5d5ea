"""Models folders the app can load for a setup that has not shipped, so that it can be measured through the
app's own path (bench/steadiness.py --models-dir) beside the shipped models, measured the same way.

Both kinds are Keras-only (no ONNX or int8 copy named in their cards): a candidate is a Keras file until
it ships, so the shipped models it is compared with are read as Keras files too (`keras_only_copy`).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

MODEL_NAMES = ("age_gender", "emotion")


def keras_only_card(models_dir: Path, name: str) -> dict:
    """A model's card without its runtime copies: the app serves its .keras file."""
    card = json.loads((Path(models_dir) / f"{name}.json").read_text())
    card.pop("runtime", None)
    return card


def keras_only_copy(models_dir: Path, out_dir: Path, names=MODEL_NAMES) -> Path:
    """Each named model's .keras file and its card without runtime copies."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        card = keras_only_card(models_dir, name)
        shutil.copyfile(Path(models_dir) / card["file"], out_dir / card["file"])
        (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return out_dir


def write_age_gender_candidate(out_dir: Path, keras_file: Path, models_dir: Path, size: int, margin: float,
                               flip: bool, shift_px: int, label: str) -> Path:
    """A models folder serving the candidate `keras_file` for age and gender, with its input size, margin and
    views, beside the shipped emotion model. The rest of the card (the age interval the app draws as a range)
    is the shipped model's: not measured for a candidate, and not part of any accuracy number."""
    out_dir = keras_only_copy(models_dir, out_dir, names=("emotion",))
    card = keras_only_card(models_dir, "age_gender")
    card |= {"file": "age_gender.keras", "version": f"candidate {label}",
             "test_time_augmentation": {"horizontal_flip": bool(flip), "shift_px": int(shift_px)}}
    card["input"] = card["input"] | {"size": int(size), "margin": float(margin)}
    card["candidate"] = {"of": label, "not_shipped": True,
                         "card_fields_from_the_shipped_model": "everything but file, version, input size, margin, views"}
    shutil.copyfile(keras_file, out_dir / "age_gender.keras")
    (out_dir / "age_gender.json").write_text(json.dumps(card, indent=2) + "\n")
    return out_dir
