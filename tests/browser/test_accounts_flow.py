"""Accounts in real headless Chromium: register → log in → upload → save → dashboard → log out.

Runs against the browser tests' server (tests/browser/conftest.py), which serves the real models
with CSRF protection and the CSP on, exactly as `make run` does."""
from __future__ import annotations

import json
import re
import uuid

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright").expect


@pytest.fixture(scope="module")
def astronaut_file(tmp_path_factory):
    from skimage import data as skdata
    from PIL import Image
    path = tmp_path_factory.mktemp("upload") / "astronaut.jpg"
    Image.fromarray(skdata.astronaut()).save(path, quality=90)
    return path


def test_register_upload_save_dashboard_logout(page, astronaut_file, screenshot):
    console_errors, script_errors = [], []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: script_errors.append(str(exc)))
    email, password = f"browser-{uuid.uuid4().hex[:8]}@example.com", "a long browser password"

    page.goto("/")
    page.get_by_role("link", name="Register").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    page.get_by_role("button", name="Log out").click()

    header_login = page.get_by_test_id("header-login")     # every page's header has the login form
    header_login.get_by_label("Email").fill(email)
    header_login.get_by_label("Password").fill(password)
    header_login.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    page.goto("/")
    page.locator("input[type=file][name=image]").set_input_files(str(astronaut_file))
    page.get_by_role("button", name="Analyze").click()
    expect(page.get_by_test_id("face").first).to_be_visible()
    shown_emotion = page.get_by_test_id("face").first.locator("dt:text-is('Emotion') + dd").inner_text().strip()
    page.get_by_label("Keep a small thumbnail with every face blurred").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("saved-face")).to_have_count(1)
    expect(page.get_by_role("img", name="Thumbnail, every face blurred")).to_be_visible()
    screenshot(page, "saved")

    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("dashboard-summary")).to_contain_text("1 face in 1 saved analysis")
    # The chart was drawn by Chart.js from the data block, and holds the saved face's emotion.
    page.wait_for_function("() => window.visageCharts && window.visageCharts['chart-emotions']")
    chart = json.loads(page.evaluate("""() => JSON.stringify({
        labels: window.visageCharts['chart-emotions'].data.labels,
        counts: window.visageCharts['chart-emotions'].data.datasets[0].data})"""))
    assert dict(zip(chart["labels"], chart["counts"]))[shown_emotion] == 1 and sum(chart["counts"]) == 1
    painted = page.evaluate("""() => {
        const c = document.getElementById('chart-emotions');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i]) n++;
        return n; }""")
    assert painted > 500, "the emotion chart canvas is blank"
    row = page.get_by_test_id("table-emotions").locator(f"tr:has(th:text-is('{shown_emotion}')) td")
    expect(row).to_have_text("1")
    screenshot(page, "dashboard")

    page.get_by_role("button", name="Log out").click()
    page.goto("/history")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fhistory$|/login\?next=/history$"))   # sent to log in
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
    assert not script_errors, script_errors


def test_live_record_stop_saves_a_timeline(page, screenshot):
    page.goto("/register")
    page.get_by_label("Email").fill(f"live-{uuid.uuid4().hex[:8]}@example.com")
    page.get_by_label("Password").fill("a long browser password")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    page.goto("/live")
    expect(page.get_by_test_id("live-face").first).to_be_visible()
    record = page.get_by_role("button", name="Record")
    record.click()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.locator("#live-record-status")).to_contain_text(re.compile(r"Recording: [3-9] s"), timeout=60_000)
    page.get_by_role("button", name="Stop").click()
    page.get_by_test_id("live-saved-link").click()
    timeline = page.get_by_test_id("timeline").first
    expect(timeline).to_be_visible()
    rows = timeline.locator("tbody tr")
    assert rows.count() >= 2            # about one point per second over 3+ seconds
    times = [float(t) for t in rows.locator("td:first-child").all_inner_texts()]
    assert times == sorted(times) and all(b - a >= 0.9 for a, b in zip(times, times[1:])), times
    screenshot(page, "live-session")

    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("table-live")).to_be_visible()
    page.wait_for_function("() => window.visageCharts && window.visageCharts['chart-live-0']")


def test_a_live_recording_that_reaches_the_history_limit_stops_and_saves_itself(page, monkeypatch):
    """The history takes at most MAX_LIVE_POINTS points per session; a recording used to grow past it and
    be refused whole at Stop. Here the limit is 3 points: the page stops at 3 and saves them."""
    import app.webcam
    monkeypatch.setattr(app.webcam, "MAX_LIVE_POINTS", 3)
    page.goto("/register")
    page.get_by_label("Email").fill(f"full-{uuid.uuid4().hex[:8]}@example.com")
    page.get_by_label("Password").fill("a long browser password")
    page.get_by_role("button", name="Register").click()
    page.goto("/live")
    expect(page.get_by_test_id("live-face").first).to_be_visible()
    page.get_by_role("button", name="Record").click()
    page.get_by_test_id("live-saved-link").click(timeout=60_000)         # no Stop pressed
    rows = page.get_by_test_id("timeline").first.locator("tbody tr")
    expect(rows).to_have_count(3)
