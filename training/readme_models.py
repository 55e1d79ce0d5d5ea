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
        *live_line(card["metrics"], lambda t: f"PrivateTest accuracy {pct(t['private_test']['accuracy'])}"),
        "",
        "| class | precision | recall | F1 | n |", "|---|---|---|---|---|",
    ]
    lines += [f"| {k} | {v['precision']:.2f} | {v['recall']:.2f} | {v['f1']:.2f} | {v['support']} |"
              for k, v in m["per_class"].items()]
    return lines + ["", "Confusion matrix: `reports/emotion_confusion.png`.", ""]


def live_line(metrics: dict, score) -> list[str]:
    """The live profile (one view per model), for cards that measured it."""
    live = metrics.get("live_profile")
    if not live:
        return []
    return [f"- Live profile (one view, no mirror or shifts): {score(live)}; single-face latency "
            f"{live['latency_ms_single_face']['median']:.1f} ms (median)."]


def age_gender_headline(m: dict, iv: dict) -> list[str]:
    test, age, gender = m["test"], m["test"]["age"], m["test"]["gender"]
    scores = (f"**age MAE {age['mae']:.2f} years**, CS@5 {pct(age['cs5'])}; **gender accuracy "
              f"{pct(gender['accuracy'])}** (F1 {gender['f1']:.3f}, calibration error {test['gender_calibration']['ece']:.3f})")
    found = test.get("detection")
    if not found:     # a card from before the app-path protocol
        return [f"- UTKFace test: {scores}."]
    chips = m.get("test_on_tight_chips", {})
    lines = [f"- UTKFace test through the app's own path (each chip sent as a photo: the app's face detector, "
             f"its crop): the detector finds **{pct(found['recall'])} of the faces** ({found['detected']:,} of "
             f"{found['images']:,}; a missed face gets no answer, as in the app); on those faces {scores}. "
             f"Counting a missed face as a wrong answer: gender right for {pct(test['per_image']['gender_correct'])} "
             f"of the images, age within 5 years for {pct(test['per_image']['age_within_5_years'])}."]
    if chips.get("images_the_app_detects"):
        same, every = chips["images_the_app_detects"], chips["all_images"]
        lines.append(f"- The same faces as ready crops (the tight chips, no detector): age MAE {same['age_mae']:.2f}, "
                     f"gender {pct(same['gender_accuracy'])}; all {every['age']['n']:,} chips: "
                     f"{every['age_mae']:.2f} / {pct(every['gender_accuracy'])}.")
    return lines


def budgets_line(setup: dict) -> str:
    budgets = setup.get("budgets")
    if not budgets:
        return ""
    timing = " (fastest tenth of the calls)" if budgets.get("latency_statistic") == "p10" else ""
    return (f" Chosen on val within budgets fixed beforehand ({budgets['max_latency_ms']:g} ms per face{timing}, "
            f"{budgets['max_size_mb']:g} MB); the test split was scored once, for this setup.")


def age_gender_section(card: dict) -> list[str]:
    m = card["metrics"]
    age = m["test"]["age"]
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
        f"Platt scaling of P(female) fitted on val: {on_off(setup.get('gender_platt_a_c', [1, 0]) != [1, 0])}."
        + budgets_line(setup),
        "",
        *age_gender_headline(m, iv),
        f"- `age_range` is the 80% interval calibrated on val (−{iv['below']:.1f} / +{iv['above']:.1f} years); "
        f"on test it holds {pct(m['test']['age_interval_coverage'])} of true ages.",
        f"- Single-face latency {m['latency_ms_single_face']['median']:.1f} ms (median).",
        *live_line(m, lambda t: f"age MAE {t['test']['age']['mae']:.2f} years, gender accuracy "
                                f"{pct(t['test']['gender']['accuracy'])}"),
        "",
        "| age band | " + " | ".join(age["mae_by_band"]) + " |",
        "|---|" + "---|" * len(age["mae_by_band"]),
        "| MAE (years) | " + " | ".join(f"{v['mae']:.1f}" for v in age["mae_by_band"].values()) + " |",
        "| n | " + " | ".join(str(v["n"]) for v in age["mae_by_band"].values()) + " |",
        "",
        "Fairness on the test split (gender accuracy, age MAE) per group"
        + (", with the share of each group's faces the detector finds:" if "detection" in m["test"] else ":"),
        "",
    ]
    if "detection" in m["test"]:
        lines += ["| group | n | found by the detector | gender accuracy | age MAE |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['n']} | {pct(v['detection_recall'])} | {pct(v['gender_accuracy'])} | {v['age_mae']:.2f} |"
                  for k, v in m["fairness_test"].items()]
    else:
        lines += ["| group | n | gender accuracy | age MAE |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['n']} | {pct(v['gender_accuracy'])} | {v['age_mae']:.2f} |"
                  for k, v in m["fairness_test"].items()]
    return lines + ["", "Plots: `reports/age_gender_test.png`.", ""]


def models_block(models_dir: Path = ROOT / "models") -> str:
    """The README's <!-- MODELS --> block as the cards in `models_dir` write it."""
    cards = {p.stem: json.loads(p.read_text()) for p in Path(models_dir).glob("*.json")}
    lines = []
    if "emotion" in cards:
        lines += emotion_section(cards["emotion"])
    if "age_gender" in cards:
        lines += age_gender_section(cards["age_gender"])
    return "<!-- MODELS -->\n" + "\n".join(lines) + "<!-- /MODELS -->"


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
