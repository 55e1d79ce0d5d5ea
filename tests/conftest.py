"""Shared fixtures: tiny stand-in models, the Flask app, and test images.

THE MODELS HERE HAVE RANDOM WEIGHTS. They only exercise the plumbing (shapes,
cards, batching, JSON); their predictions mean nothing. The tests that use the
shipped models in models/ say so (tests/test_real_models.py, the browser tests).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

# Keep the test run light on CPU (the machine is shared with training jobs): set before TF is imported.
for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The test apps' SQLite database and secret key go to a scratch instance folder, not the repository's.
os.environ.setdefault("VISAGE_INSTANCE_DIR", tempfile.mkdtemp(prefix="visage-test-instance-"))

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
    # CSRF is off for the tests that post forms without a token; tests/test_security.py checks it on.
    return create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir), "WTF_CSRF_ENABLED": False})


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


# --- Database fixtures (accounts, history, dashboard, tokens) ----------------------------------
# Every database test runs on SQLite and on a real PostgreSQL server: each run creates its own
# database there (visage_test_<random>) and drops it at the end. Without a server the PostgreSQL
# half skips with a reason, except in CI (CI=true), where .ci/run provides one.

POSTGRES_CANDIDATES = ("postgresql+psycopg://root@127.0.0.1:5432/test",
                       "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_admin_url() -> tuple[str | None, str]:
    import sqlalchemy as sa
    candidates = [os.environ["VISAGE_TEST_POSTGRES_URL"]] if os.environ.get("VISAGE_TEST_POSTGRES_URL") \
        else POSTGRES_CANDIDATES
    reasons = []
    for url in candidates:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return url, ""
        except Exception as e:     # noqa: BLE001 - any failure means "not reachable"
            reasons.append(f"{url}: {str(e).splitlines()[0]}")
        finally:
            engine.dispose()
    return None, "; ".join(reasons)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path_factory.mktemp("sqlite") / "visage.sqlite3")
        return
    import secrets
    import sqlalchemy as sa
    admin_url, why = _postgres_admin_url()
    if admin_url is None:
        message = f"no PostgreSQL server reachable ({why}); set VISAGE_TEST_POSTGRES_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"visage_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def db_app(models_dir, database_url, tmp_path_factory):
    """The app on each database (migrated at start-up like `make run`); CSRF and login limits relaxed."""
    from app import create_app
    app = create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir), "WTF_CSRF_ENABLED": False,
                      "VISAGE_DATABASE_URL": database_url, "VISAGE_LOGIN_RATE_LIMIT": "10000 per minute",
                      "VISAGE_INSTANCE_DIR": str(tmp_path_factory.mktemp("instance"))})
    yield app
    with app.app_context():
        from app.db import db
        db.engine.dispose()      # let the PostgreSQL database be dropped


@pytest.fixture()
def db_client(db_app):
    return db_app.test_client()


@pytest.fixture()
def new_account(db_app):
    """new_account() → (logged-in test client, email, password), a fresh user each call."""
    import uuid

    def make(password: str = "correct horse battery"):
        client = db_app.test_client()
        email = f"user-{uuid.uuid4().hex[:10]}@example.com"
        r = client.post("/register", data={"email": email, "password": password})
        assert r.status_code == 302, r.get_data(as_text=True)[:2000]
        return client, email, password
    return make
