"""docs/models.md is generated from the committed model cards (python -m training.models_doc)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.models_doc import DOC, main, render

ROOT = Path(__file__).resolve().parents[1]


def test_committed_docs_models_md_is_what_the_cards_generate():
    assert DOC.read_text() == render(ROOT / "models"), \
        "docs/models.md is out of date with models/*.json: run python -m training.models_doc"


def test_doc_carries_the_cards_numbers_and_the_uses():
    text = DOC.read_text()
    emotion = json.loads((ROOT / "models" / "emotion.json").read_text())
    age_gender = json.loads((ROOT / "models" / "age_gender.json").read_text())
    assert f"| accuracy on FER2013 PrivateTest | **{100 * emotion['metrics']['private_test']['accuracy']:.1f}%** |" in text
    assert f"**{age_gender['metrics']['test']['age']['mae']:.2f} years**" in text
    for band, v in age_gender["metrics"]["test"]["age"]["mae_by_band"].items():
        assert f"| {band} | {v['mae']:.2f} | {v['n']:,} |" in text
    for group in age_gender["metrics"]["fairness_test"]:
        assert f"| {group} |" in text
    assert "hiring" in text and "Not suitable:" in text and "| UTKFace |" in text


def test_check_mode_notices_a_changed_card(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("emotion", "age_gender"):
        shutil.copy(ROOT / "models" / f"{name}.json", models / f"{name}.json")
    out = tmp_path / "models.md"
    main(["--models-dir", str(models), "--out", str(out)])
    main(["--models-dir", str(models), "--out", str(out), "--check"])
    card = json.loads((models / "emotion.json").read_text())
    card["metrics"]["private_test"]["accuracy"] = 0.7012
    (models / "emotion.json").write_text(json.dumps(card))
    with pytest.raises(SystemExit, match="out of date"):
        main(["--models-dir", str(models), "--out", str(out), "--check"])
    main(["--models-dir", str(models), "--out", str(out)])
    assert "**70.1%**" in out.read_text()
