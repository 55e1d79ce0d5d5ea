"""Rewrite the README's <!-- MODELS --> block from the model cards, so the headline numbers there stay true.

    python -m training.readme_models

The block is one short table (test accuracy and latency per model); every other number of the cards is
in docs/models.md (python -m training.models_doc) and on the app's /models page.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from app.card_summary import dig, how_trained, lineage, on_off, pct  # noqa: F401  (shared with the Models page)

ROOT = Path(__file__).resolve().parents[1]


def latency(metrics: dict) -> str:
    """'5.2 ms', or 'accurate 22.1 ms, live 4.9 ms' where the card also measured the live profile."""
    accurate = dig(metrics, "latency_ms_single_face", "median")
    live = dig(metrics, "live_profile", "latency_ms_single_face", "median")
    if accurate is None:
        return "–"
    if live is None:
        return f"{accurate:.1f} ms"
    return f"{accurate:.1f} ms (live profile {live:.1f} ms)"


def int8_note(card: dict, keys: dict) -> str:
    """'; served as an int8 copy: ...' (training/quantize_runtime.py), or '' where the card has none."""
    entry = dig(card, "runtime", "onnx_int8") or {}
    test, ratio = entry.get("test", {}).get("int8"), dig(entry, "latency_ms_single_face_accurate_one_thread", "int8_vs_float32")
    if not test:
        return ""
    shown = [fmt(test[k]) for k, fmt in keys.items() if k in test]
    return f"; **int8 copy** (served on CPUs with VNNI, {ratio:.2f}× the time): {', '.join(shown)}"


def emotion_row(card: dict) -> str:
    m = card["metrics"]
    test = m["private_test"]
    n = sum(c["support"] for c in test.get("per_class", {}).values())
    scores = f"**accuracy {pct(test['accuracy'])}**, macro-F1 {test['macro_f1']:.3f}"
    app = m.get("private_test_app_path")
    if app:   # the same faces as photos, through the default detector and crop
        scores += (f"; as photos through the app's detector: faces found {pct(app['detection_recall'])}, "
                   f"accuracy {pct(app['accuracy'])}")
    scores += int8_note(card, {"accuracy_crops": lambda v: f"accuracy {pct(v)}",
                               "accuracy_photos": lambda v: f"as photos {pct(v)}"})
    return (f"| **Emotion** (7 expressions) | FER2013 PrivateTest ({n:,} faces) | {scores} | {latency(m)} |")


def age_gender_row(card: dict) -> str:
    m = card["metrics"]
    test = m["test"]
    n = sum(b["n"] for b in test["age"].get("mae_by_band", {}).values())
    found = test.get("detection")
    scores = [f"**age MAE {test['age']['mae']:.2f} years**", f"**gender accuracy {pct(test['gender']['accuracy'])}**"]
    if found:
        scores.append(f"faces found by the detector {pct(found['recall'])}")
    served = int8_note(card, {"age_mae": lambda v: f"age MAE {v:.2f} years", "gender_accuracy": lambda v: f"gender {pct(v)}"})
    return (f"| **Age and gender** | UTKFace test ({n:,} faces) | {'; '.join(scores)}{served} | {latency(m)} |")


def models_block(models_dir: Path = ROOT / "models") -> str:
    """The README's <!-- MODELS --> block as the cards in `models_dir` write it."""
    cards = {p.stem: json.loads(p.read_text()) for p in Path(models_dir).glob("*.json")}
    rows = []
    if "emotion" in cards:
        rows.append(emotion_row(cards["emotion"]))
    if "age_gender" in cards:
        rows.append(age_gender_row(cards["age_gender"]))
    lines = ["| model | measured on | test result | time per face (median, Keras, as the card measured) |", "|---|---|---|---|", *rows]
    return "<!-- MODELS -->\n" + "\n".join(lines) + "\n<!-- /MODELS -->"


def main():
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = models_block()
    cards = sorted(p.stem for p in (ROOT / "models").glob("*.json"))
    new = re.sub(r"<!-- MODELS -->.*?<!-- /MODELS -->", lambda _: block, text, flags=re.S)
    if new == text and block not in text:
        raise SystemExit("README.md has no <!-- MODELS --> ... <!-- /MODELS --> block")
    readme.write_text(new)
    print(f"README models block updated from {cards}")


if __name__ == "__main__":
    main()
