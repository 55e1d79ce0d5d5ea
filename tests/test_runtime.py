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


def assert_same_answers(onnx_model: LoadedModel, keras_model: LoadedModel, batch: np.ndarray, float16: bool = False):
    from training.export_runtime import copy_tolerance
    for profile in ("live", "accurate"):
        got, want = onnx_model(batch, profile), keras_model(batch, profile)
        for name, spec in onnx_model.card.outputs.items():
            # years for age, else probability (weights stored as float16 are rounded again after tf2onnx
            # folds BatchNorm into the convolutions: training/export_runtime.py)
            tolerance = copy_tolerance(float16, in_years=spec.get("unit") == "years")
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


def test_export_leaves_fresh_copies_as_they_are(exported_tiny, tmp_path, capsys):
    """Exporting again changes nothing (a new tf2onnx copy would drop the card's checked int8 copy), unless the
    .keras file changed or --force asks for it."""
    import keras

    from training.export_runtime import main
    folder = tmp_path / "models"
    shutil.copytree(exported_tiny, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main([str(folder)]) == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert capsys.readouterr().out.count("left as it is") == len(MODEL_NAMES)
    keras.models.load_model(folder / "emotion.keras", compile=False).save(folder / "emotion.keras")
    assert main([str(folder)]) == 0
    assert "emotion.json: its ONNX copy" not in capsys.readouterr().out
    card = json.loads((folder / "emotion.json").read_text())
    assert card["runtime"]["onnx"]["source_sha256"] == file_sha256(folder / "emotion.keras")
    assert (folder / "age_gender.json").read_bytes() == before["age_gender.json"]
    assert main([str(folder), "--force", "--models", "age_gender"]) == 0
    assert "left as it is" not in capsys.readouterr().out


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
        float16 = card_json["runtime"]["onnx"].get("weights_stored_as", "float32").startswith("float16")
        assert_same_answers(onnx_model, keras_twin(onnx_model, MODELS), batch, float16)


# int8 copies (training/quantize_runtime.py): served first where fresh, the float copy otherwise.
REQUANTIZE = ("re-run: python -m training.quantize_runtime models/ --utk-dir ../shared/data/utkface "
              "--fer-dir ../shared/data/fer2013")


def shipped_int8_entry(name: str) -> dict:
    entry = json.loads((MODELS / f"{name}.json").read_text()).get("runtime", {}).get("onnx_int8")
    if not entry:
        pytest.skip(f"no int8 copy of {name} shipped")
    return entry


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shipped_int8_copies_are_fresh(name):
    """The int8 copy was made from today's .keras file and float copy, and its card holds both copies' numbers."""
    entry = shipped_int8_entry(name)
    card = json.loads((MODELS / f"{name}.json").read_text())
    assert (MODELS / entry["file"]).is_file(), f"models/{entry['file']} is missing: {REQUANTIZE}"
    assert entry["source_sha256"] == file_sha256(MODELS / card["file"]), f"{entry['file']} is stale: {REQUANTIZE}"
    assert entry["float_copy_sha256"] == file_sha256(MODELS / entry["source"]), f"{entry['file']} is stale: {REQUANTIZE}"
    assert set(entry["val"]) == set(entry["test"]) == {"float32", "int8"}


def test_shipped_int8_copies_answer_close_to_the_float_copies(astronaut):
    """On real face crops the int8 copy answers within a year of age and 0.05 of each probability, on CPUs
    where the app serves it. On x86 without VNNI, ONNX Runtime's int8 arithmetic can saturate (the emotion
    copy read the astronaut's happiness 0.86 against 0.99 on such a CPU), and there the app serves the float
    copies instead (checked in test_int8_copies_are_served_unless_turned_off)."""
    import onnxruntime as ort

    from app.pipeline.predict import cpu_reads_int8_as_checked
    if not cpu_reads_int8_as_checked():
        pytest.skip("this x86 CPU has no VNNI: the app serves the float copies here, so int8 is not compared")
    for name in MODEL_NAMES:
        card_json = json.loads((MODELS / f"{name}.json").read_text())
        entry = card_json.get("runtime", {}).get("onnx_int8")
        if not entry:
            continue
        card = ModelCard.from_dict(card_json)
        float_copy, int8_copy = (LoadedModel(card, None, ort.InferenceSession(str(MODELS / f), providers=["CPUExecutionProvider"]))
                                 for f in (entry["source"], entry["file"]))
        batch = prepare_faces(astronaut, ASTRONAUT_BOXES, card.size, card.margin)
        for profile in ("live", "accurate"):
            got, want = int8_copy(batch, profile), float_copy(batch, profile)
            for output, spec in card.outputs.items():
                tolerance = 1.0 if spec["kind"] == "regression" else 0.05
                np.testing.assert_allclose(got[output], want[output], rtol=0, atol=tolerance, err_msg=f"{name} {output}")


@pytest.fixture()
def shipped_copy(tmp_path) -> Path:
    if not any(json.loads((MODELS / f"{n}.json").read_text()).get("runtime", {}).get("onnx_int8") for n in MODEL_NAMES):
        pytest.skip("no int8 copy shipped")
    folder = tmp_path / "models"
    shutil.copytree(MODELS, folder)
    return folder


def runtimes(folder: Path) -> dict:
    return {m.card.name: m.runtime for m in load_predictor(folder).models}


def test_int8_copies_are_served_unless_turned_off(shipped_copy, monkeypatch):
    from app.pipeline.predict import cpu_reads_int8_as_checked
    int8 = {n for n in MODEL_NAMES if json.loads((shipped_copy / f"{n}.json").read_text())["runtime"].get("onnx_int8")}
    monkeypatch.setenv("VISAGE_INT8_MODELS", "auto")       # the default: int8 only where this CPU reads it as checked
    auto = shipped_copy.parent / "auto"                     # another folder: load_predictor keeps one per folder
    shutil.copytree(shipped_copy, auto)
    assert ({n for n, r in runtimes(auto).items() if r == "onnxruntime int8"}
            == (int8 if cpu_reads_int8_as_checked() else set()))
    monkeypatch.setenv("VISAGE_INT8_MODELS", "1")
    assert {n for n, r in runtimes(shipped_copy).items() if r == "onnxruntime int8"} == int8
    monkeypatch.setenv("VISAGE_INT8_MODELS", "0")
    other = shipped_copy.parent / "float"          # another folder: load_predictor keeps one per folder
    shutil.copytree(shipped_copy, other)
    assert set(runtimes(other).values()) == {"onnxruntime"}


def test_int8_needs_vnni_on_x86():
    from app.pipeline.predict import cpu_reads_int8_as_checked
    flags = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {}\n"
    assert cpu_reads_int8_as_checked("x86_64", flags.format("avx512_vnni"))
    assert cpu_reads_int8_as_checked("x86_64", flags.format("avx_vnni"))
    assert not cpu_reads_int8_as_checked("x86_64", flags.format("avx512bw"))
    assert cpu_reads_int8_as_checked("aarch64", "")


def test_a_missing_or_stale_int8_copy_falls_back_to_the_float_copy(shipped_copy, caplog, monkeypatch):
    monkeypatch.setenv("VISAGE_INT8_MODELS", "1")
    for name in MODEL_NAMES:
        card_path = shipped_copy / f"{name}.json"
        card = json.loads(card_path.read_text())
        entry = card["runtime"].get("onnx_int8")
        if not entry:
            continue
        if name == "emotion":
            (shipped_copy / entry["file"]).unlink()
        else:
            entry["source_sha256"] = "0" * 64
            card_path.write_text(json.dumps(card))
    assert set(runtimes(shipped_copy).values()) == {"onnxruntime"}
    assert "missing" in caplog.text or "stale" in caplog.text


def test_quantize_runtime_leaves_fresh_int8_copies_as_they_are(tmp_path, capsys):
    """The shipped cards' int8 copies were made from their float copies: quantizing again reads no data and
    changes no file (the data folders named here do not exist)."""
    from training.quantize_runtime import main
    folder = tmp_path / "models"
    shutil.copytree(MODELS, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main([str(folder), "--utk-dir", str(tmp_path / "none"), "--fer-dir", str(tmp_path / "none")]) == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert capsys.readouterr().out.count("left as it is") == len(MODEL_NAMES)
    # a .keras file changed since: its copies are stale, and the command asks for a fresh float copy first
    (folder / "emotion.keras").write_bytes(before["emotion.keras"] + b"\0")
    with pytest.raises(SystemExit, match="no fresh float ONNX copy"):
        main([str(folder), "--utk-dir", str(tmp_path / "none"), "--fer-dir", str(tmp_path / "none"),
              "--models", "emotion"])


def test_quantize_runtime_writes_a_checked_copy_or_none(tmp_path, capsys):
    """The real command on the shipped emotion model, on a few images: a copy that loads and follows the float
    copy, with its numbers in the card; or, where it misses its bars, no copy at all."""
    from app.pipeline.predict import cpu_reads_int8_as_checked
    from conftest import SHARED_DATA
    from training.quantize_runtime import MIN_LABEL_AGREEMENT, main
    if not (SHARED_DATA / "fer2013").is_dir():
        pytest.skip(f"FER2013 not found in {SHARED_DATA}")
    folder = tmp_path / "models"
    shutil.copytree(MODELS, folder)
    card_path = folder / "emotion.json"
    card = json.loads(card_path.read_text())
    card["runtime"]["onnx_int8"] = {"file": "emotion.int8.onnx", "source_sha256": "an earlier copy"}
    card_path.write_text(json.dumps(card))
    (folder / "emotion.int8.onnx").write_bytes(b"an earlier copy")
    assert main([str(folder), "--utk-dir", str(SHARED_DATA / "utkface"), "--fer-dir", str(SHARED_DATA / "fer2013"),
                 "--models", "emotion", "--limit", "60", "--calibration", "60"]) == 0
    entry = json.loads(card_path.read_text())["runtime"].get("onnx_int8")
    if entry is None:
        assert "misses its bars on val" in capsys.readouterr().out
        assert not (folder / "emotion.int8.onnx").exists()
        assert runtimes(folder)["emotion"] == "onnxruntime"
        return
    assert entry["file"] == "emotion.int8.onnx" and entry["source_sha256"] == card["runtime"]["onnx"]["source_sha256"]
    assert entry["val"]["int8"]["images"] == entry["val"]["float32"]["images"] > 0
    assert entry["agreement_with_float_copy"]["val"]["emotion_label_agreement"] >= MIN_LABEL_AGREEMENT
    assert runtimes(folder)["emotion"] == ("onnxruntime int8" if cpu_reads_int8_as_checked() else "onnxruntime")
