"""ONNX copies of the models (training/export_runtime.py): served when fresh, equal to Keras, never stale."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.pipeline.preprocess import prepare_faces
from app.pipeline.predict import MODEL_NAMES, LoadedModel, ModelCard, file_sha256, load_predictor
from conftest import write_tiny_models

MODELS = Path(__file__).resolve().parent.parent / "models"
REEXPORT = "re-run: python -m training.export_runtime models/"
# Real face crops: the astronaut's face, and the same face a few pixels off (as a detector may put it).
ASTRONAUT_BOXES = [(178, 66, 94, 94), (175, 69, 97, 97), (181, 63, 91, 91)]   # Haar finds (178, 66, 94, 94)


def keras_twin(model: LoadedModel, models_dir: Path) -> LoadedModel:
    import keras
    return LoadedModel(model.card, keras.models.load_model(models_dir / model.card.file, compile=False))


def assert_same_answers(onnx_model: LoadedModel, keras_model: LoadedModel, batch: np.ndarray):
    for profile in ("live", "accurate"):
        got, want = onnx_model(batch, profile), keras_model(batch, profile)
        for name, spec in onnx_model.card.outputs.items():
            tolerance = 0.05 if spec["kind"] == "regression" else 1e-4   # years for age, else probability
            np.testing.assert_allclose(got[name], want[name], rtol=0, atol=tolerance, err_msg=f"{name} ({profile})")


@pytest.fixture(scope="module")
def exported_tiny(tmp_path_factory) -> Path:
    from training.export_runtime import main
    folder = write_tiny_models(tmp_path_factory.mktemp("exported"))
    assert main([str(folder)]) == 0
    return folder


def test_export_records_the_copy_in_each_card(exported_tiny):
    for name in MODEL_NAMES:
        card = json.loads((exported_tiny / f"{name}.json").read_text())
        entry = card["runtime"]["onnx"]
        assert (exported_tiny / entry["file"]).is_file() and entry["source"] == card["file"]
        assert entry["source_sha256"] == file_sha256(exported_tiny / card["file"])


def test_fresh_copies_are_served_and_answer_as_keras(exported_tiny, astronaut):
    predictor = load_predictor(exported_tiny)
    assert [m.runtime for m in predictor.models] == ["onnxruntime"] * len(MODEL_NAMES)
    for model, batch in zip(predictor.models, predictor.prepare(astronaut, ASTRONAUT_BOXES)):
        assert_same_answers(model, keras_twin(model, exported_tiny), batch)


def test_a_stale_copy_is_not_served(exported_tiny, tmp_path, caplog):
    """A .keras file replaced after the export (here: the same network saved again) → Keras serves it."""
    import keras
    folder = tmp_path / "models"
    shutil.copytree(exported_tiny, folder)
    keras.models.load_model(folder / "emotion.keras", compile=False).save(folder / "emotion.keras")
    predictor = load_predictor(folder)
    runtimes = {m.card.name: m.runtime for m in predictor.models}
    assert runtimes == {"emotion": "keras", "age_gender": "onnxruntime"}
    assert "stale" in caplog.text and "training.export_runtime" in caplog.text


def test_missing_copy_falls_back_to_keras(exported_tiny, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(exported_tiny, folder)
    (folder / "age_gender.onnx").unlink()
    assert {m.card.name: m.runtime for m in load_predictor(folder).models}["age_gender"] == "keras"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shipped_copies_are_fresh(name):
    """Fails when a models/*.keras changed after its ONNX copy was made (the app would quietly serve Keras)."""
    card = json.loads((MODELS / f"{name}.json").read_text())
    copy = MODELS / f"{name}.onnx"
    if not copy.exists():
        pytest.skip(f"no ONNX copy of {name} shipped ({REEXPORT} for faster model calls)")
    entry = card.get("runtime", {}).get("onnx")
    assert entry and entry["file"] == copy.name, f"models/{name}.json does not name {copy.name}: {REEXPORT}"
    assert entry["source_sha256"] == file_sha256(MODELS / card["file"]), f"{copy} is stale: {REEXPORT}"


def test_shipped_copies_answer_as_keras_on_real_face_crops(astronaut):
    import onnxruntime as ort
    for name in MODEL_NAMES:
        card_json = json.loads((MODELS / f"{name}.json").read_text())
        if "runtime" not in card_json:
            continue
        card = ModelCard.from_dict(card_json)
        session = ort.InferenceSession(str(MODELS / card_json["runtime"]["onnx"]["file"]),
                                       providers=["CPUExecutionProvider"])
        onnx_model = LoadedModel(card, None, session)
        batch = prepare_faces(astronaut, ASTRONAUT_BOXES, card.size, card.margin)
        assert_same_answers(onnx_model, keras_twin(onnx_model, MODELS), batch)
