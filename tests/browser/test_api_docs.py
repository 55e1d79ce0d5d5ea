"""/api/docs in real headless Chromium: Swagger UI renders the app's OpenAPI and "Try it out" calls the API."""
from __future__ import annotations

import json

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright").expect


@pytest.fixture
def astronaut_file(tmp_path, astronaut_jpeg):
    path = tmp_path / "astronaut.jpg"
    path.write_bytes(astronaut_jpeg)
    return path


def test_api_docs_render_analyze_and_try_it_out_returns_200(refused_page, screenshot, astronaut_file):
    page = refused_page                       # no camera needed here
    outside = []                               # the page must work offline: nothing fetched from elsewhere
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:")) else None)
    page.goto("/")
    page.get_by_role("link", name="API", exact=True).click()
    page.wait_for_url("**/api/docs")

    operation = page.locator(".opblock-post", has_text="/api/v1/analyze")
    expect(operation).to_be_visible()
    expect(page.locator(".opblock-get", has_text="/api/v1/health")).to_be_visible()
    screenshot(page, "rendered")

    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator('input[type="file"]').set_input_files(astronaut_file)
    operation.get_by_role("button", name="Execute").click()

    status = operation.locator(".live-responses-table tr.response .response-col_status")
    expect(status).to_have_text("200", timeout=60_000)
    body = json.loads(operation.locator(".live-responses-table tr.response .highlight-code pre").first.inner_text())
    assert len(body["faces"]) == 1 and body["image"] == {"width": 512, "height": 512}
    screenshot(page, "response")
    assert outside == []
