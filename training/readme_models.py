"""Rewrite the README's <!-- MODELS --> block from the model cards, so the numbers there stay true.

    python -m training.readme_models
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from app.card_summary import how_trained, lineage, on_off, pct  # noqa: F401  (shared with the Models page)

ROOT = Path(__file__).resolve().parents[1]


def emotion_section(card: dict) -> list[str]:
    m = card["metrics"]["private_test"]
    lines = [
        f"**Emotion** (`models/emotion.keras`, {card['architecture']['parameters']:,} parameters, "
        f"{card['input']['size']}x{card['input']['size']} grayscale): trained on FER2013 Training "
        f"({card['data']['train_images']:,} images, {card['data']['labels']} labels); "
        f"{how_trained(card, 'PublicTest')} (both models trained side by side).",
        "",
        f"- FER2013 **PrivateTest accuracy {pct(m['accuracy'])}**, macro-F1 {m['macro_f1']:.3f} "
        f"(flip test-time augmentation: {on_off(card['test_time_augmentation']['horizontal_flip'])}; class-prior "
        f"correction fitted on PublicTest: {on_off(any(card.get('serving_setup', {}).get('class_logit_shift', {}).values()))}); "
        f"single-face latency {card['metrics']['latency_ms_single_face']['median']:.1f} ms (median).",
        "",
        "| class | precision | recall | F1 | n |", "|---|---|---|---|---|",
    ]
    lines += [f"| {k} | {v['precision']:.2f} | {v['recall']:.2f} | {v['f1']:.2f} | {v['support']} |"
              for k, v in m["per_class"].items()]
    return lines + ["", "Confusion matrix: `reports/emotion_confusion.png`.", ""]


def age_gender_section(card: dict) -> list[str]:
    m = card["metrics"]
    age, gender = m["test"]["age"], m["test"]["gender"]
    setup = card.get("serving_setup", {})
    tta = card.get("test_time_augmentation", {})
    iv = card["outputs"]["age"]["interval"]
    lines = [
        f"**Age and gender** (`models/age_gender.keras`, one network with two heads, "
        f"{card['architecture']['parameters']:,} parameters, {card['input']['size']}x{card['input']['size']} grayscale): "
        f"trained on UTKFace train ({card['data']['train_images']:,} images) cut the way the app cuts faces "
        f"(Haar box + {card['input']['margin']:.0%} margin); {how_trained(card, 'val')}.",
        f"Flip test-time augmentation: {on_off(tta.get('horizontal_flip'))}; "
        f"shifted views (±{tta.get('shift_px', 0)} px): {on_off(tta.get('shift_px'))}; "
        f"linear age correction fitted on val: {on_off(setup.get('age_correction_alpha_beta', [1, 0]) != [1, 0])}; "
        f"Platt scaling of P(female) fitted on val: {on_off(setup.get('gender_platt_a_c', [1, 0]) != [1, 0])}.",
        "",
        f"- UTKFace test: **age MAE {age['mae']:.2f} years**, CS@5 {pct(age['cs5'])}; "
        f"**gender accuracy {pct(gender['accuracy'])}** (F1 {gender['f1']:.3f}, calibration error "
        f"{m['test']['gender_calibration']['ece']:.3f}).",
        f"- `age_range` is the 80% interval calibrated on val (−{iv['below']:.1f} / +{iv['above']:.1f} years); "
        f"on test it holds {pct(m['test']['age_interval_coverage'])} of true ages.",
        f"- Single-face latency {m['latency_ms_single_face']['median']:.1f} ms (median).",
        "",
        "| age band | " + " | ".join(age["mae_by_band"]) + " |",
        "|---|" + "---|" * len(age["mae_by_band"]),
        "| MAE (years) | " + " | ".join(f"{v['mae']:.1f}" for v in age["mae_by_band"].values()) + " |",
        "| n | " + " | ".join(str(v["n"]) for v in age["mae_by_band"].values()) + " |",
        "",
        "Fairness on the test split (gender accuracy, age MAE) per group:",
        "",
        "| group | n | gender accuracy | age MAE |", "|---|---|---|---|",
    ]
    lines += [f"| {k} | {v['n']} | {pct(v['gender_accuracy'])} | {v['age_mae']:.2f} |"
              for k, v in m["fairness_test"].items()]
    return lines + ["", "Plots: `reports/age_gender_test.png`.", ""]


def main():
    cards = {p.stem: json.loads(p.read_text()) for p in (ROOT / "models").glob("*.json")}
    lines = []
    if "emotion" in cards:
        lines += emotion_section(cards["emotion"])
    if "age_gender" in cards:
        lines += age_gender_section(cards["age_gender"])
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = "<!-- MODELS -->\n" + "\n".join(lines) + "<!-- /MODELS -->"
    new = re.sub(r"<!-- MODELS -->.*?<!-- /MODELS -->", lambda _: block, text, flags=re.S)
    if new == text and block not in text:
        raise SystemExit("README.md has no <!-- MODELS --> ... <!-- /MODELS --> block")
    readme.write_text(new)
    print(f"README models block updated from {sorted(cards)}")


if __name__ == "__main__":
    main()
