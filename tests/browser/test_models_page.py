"""From a result page to the Models page in real headless Chromium, with the shipped models and cards."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright").expect

CARDS = Path(__file__).resolve().parents[2] / "models"


def test_result_page_links_to_the_models_page_with_the_shipped_numbers(refused_page, screenshot, tmp_path,
                                                                        astronaut_jpeg):
    page = refused_page
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(astronaut_jpeg)
    page.goto("/")
    page.locator('input[type="file"][name="image"]').set_input_files(photo)
    page.get_by_role("button", name="Analyze").click()
    page.wait_for_url("**/analyze")
    page.get_by_test_id("models-link").click()
    page.wait_for_url("**/models")

    cards = page.get_by_test_id("model-card")
    expect(cards).to_have_count(2)
    accuracy = json.loads((CARDS / "emotion.json").read_text())["metrics"]["private_test"]["accuracy"]
    mae = json.loads((CARDS / "age_gender.json").read_text())["metrics"]["test"]["age"]["mae"]
    expect(page.locator('[data-model="emotion"] [data-testid="headline"]')).to_contain_text(f"{100 * accuracy:.1f}%")
    expect(page.locator('[data-model="age_gender"] [data-testid="headline"]')).to_contain_text(f"{mae:.2f} years")
    expect(page.get_by_test_id("unsuitable").first).to_contain_text("hiring")
    screenshot(page, "models")
