"""The Video page in real headless Chromium: upload a clip, watch the progress bar, read the timelines."""
from __future__ import annotations

import time

import pytest

from tests.video_clips import one_face_clip

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright").expect


def test_upload_a_video_and_see_its_timeline(page, screenshot, tmp_path):
    clip = one_face_clip(tmp_path / "interview.mp4", seconds=6.0, fps=10)
    page.goto("/")
    page.get_by_role("link", name="Video").first.click()
    page.wait_for_url("**/video")
    page.get_by_test_id("video-file").set_input_files(str(clip))
    page.get_by_test_id("blur").check()
    page.get_by_test_id("video-submit").click()

    bar = page.get_by_test_id("video-progress")
    expect(bar).to_be_visible()
    seen = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not page.get_by_test_id("video-timeline").count():
        value = page.evaluate("document.getElementById('video-progress').value")
        status = page.get_by_test_id("video-status").inner_text()
        seen.append((value, status))
        if status in ("failed", "cancelled"):
            break
        time.sleep(0.2)
    screenshot(page, "done")
    expect(page.get_by_test_id("video-timeline").first).to_be_visible()
    progress = [v for v, s in seen if s.startswith("running")]
    assert progress == sorted(progress), seen                      # the bar only moves forward
    assert page.evaluate("document.getElementById('video-progress').value") == 1
    expect(page.get_by_test_id("video-status")).to_have_text("done")

    assert page.get_by_test_id("video-track").count() == 1
    assert page.locator("[data-testid=video-timeline] polyline").count() == 7      # one line per emotion
    downloads = page.get_by_test_id("video-downloads")
    expect(downloads.get_by_role("link", name="CSV")).to_be_visible()
    expect(downloads.get_by_role("link", name="Annotated video (faces blurred)")).to_be_visible()
    with page.expect_download() as download:
        downloads.get_by_role("link", name="CSV").click()
    lines = open(download.value.path()).read().splitlines()
    assert lines[0].startswith("track,t,") and len(lines) == 1 + 30               # 6 s at 5 samples per second


def test_a_file_that_is_not_a_video_shows_a_clear_message(page, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("meeting notes, not a video\n" * 40)
    page.goto("/video")
    page.get_by_test_id("video-file").set_input_files(str(notes))
    page.get_by_test_id("video-submit").click()
    error = page.get_by_test_id("video-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("not a video")
