"""Shared fixtures: tiny stand-in models, the Flask app, and test images.

THE MODELS HERE HAVE RANDOM WEIGHTS. They only exercise the plumbing (shapes,
cards, batching, JSON); their predictions mean nothing. The tests that use the
shipped models in models/ say so (tests/test_real_models.py, the browser tests).
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

# Keep the test run light on CPU (the machine is shared with training jobs): set before TF is imported.
for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

# CI=true: a skip for want of Keras, Chromium or Playwright is a failure (tests/ci_dependencies.py)
from ci_dependencies import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401

# the datasets: ../shared/data beside the checkout, or VISAGE_DATA_DIR (e.g. for a git worktree elsewhere)
SHARED_DATA = Path(os.environ.get("VISAGE_DATA_DIR") or Path(__file__).resolve().parent.parent.parent / "shared" / "data")

EMOTION_CARD = {
    "name": "emotion", "file": "emotion.keras", "version": "test-random",
    "input": {"size": 48, "margin": 0.1},
    "outputs": {"emotion": {"kind": "softmax",
                            "labels": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]}},
    "metrics": {}, "note": "random weights, tests only",
}
AGE_GENDER_CARD = {
    "name": "age_gender", "file": "age_gender.keras", "version": "test-random",
    "input": {"size": 64, "margin": 0.15},
    "outputs": {"age": {"kind": "regression", "unit": "years",
                        "interval": {"coverage": 0.8, "below": 5.0, "above": 7.0}},
                "gender": {"kind": "sigmoid", "positive_label": "female", "negative_label": "male"}},
    "metrics": {}, "note": "random weights, tests only",
}


def write_tiny_models(folder: Path) -> Path:
    """Random-weight, conv-free models with the real input/output contract, plus their cards."""
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    folder.mkdir(parents=True, exist_ok=True)

    face = keras.Input((48, 48, 1))
    x = layers.Flatten()(layers.AveragePooling2D(8)(face))
    keras.Model(face, layers.Dense(7, activation="softmax", name="emotion")(x)).save(folder / "emotion.keras")

    face = keras.Input((64, 64, 1))
    x = layers.Dense(8, activation="relu")(layers.Flatten()(layers.AveragePooling2D(8)(face)))
    age = layers.Rescaling(20.0, offset=33.0, name="age")(layers.Dense(1)(x))
    gender = layers.Dense(1, activation="sigmoid", name="gender")(x)
    keras.Model(face, {"age": age, "gender": gender}).save(folder / "age_gender.keras")

    (folder / "emotion.json").write_text(json.dumps(EMOTION_CARD))
    (folder / "age_gender.json").write_text(json.dumps(AGE_GENDER_CARD))
    return folder


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def predictor(models_dir):
    from app.pipeline.predict import load_predictor
    return load_predictor(models_dir)


@pytest.fixture(scope="session")
def app(models_dir):
    from app import create_app
    return create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir)})


@pytest.fixture()
def client(app):
    return app.test_client()


def encode(array: np.ndarray, fmt: str = "JPEG", **save_args) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return skdata.astronaut()            # 512x512 RGB portrait, one frontal face


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut) -> bytes:
    return encode(astronaut)


@pytest.fixture(scope="session")
def two_faces_jpeg(astronaut) -> bytes:
    return encode(np.concatenate([astronaut, astronaut], axis=1))


@pytest.fixture(scope="session")
def coffee_jpeg() -> bytes:
    return encode(skdata.coffee())       # a cup of coffee: no face
