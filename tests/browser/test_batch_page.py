"""The Batch page in real headless Chromium with the shipped models: drop 200 photos, watch the progress
bar, read the summary and the charts, download the CSV."""
from __future__ import annotations

import base64
import csv
import time

import pytest

from tests.batch_photos import no_face_photo, one_face_photos

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright").expect

PHOTOS = 200


def drop_files(page, files) -> None:
    """What a drag from the file manager delivers: a drop event whose DataTransfer holds the files."""
    payload = [[name, base64.b64encode(data).decode("ascii")] for name, data in files]
    transfer = page.evaluate_handle("""(files) => {
        const dt = new DataTransfer();
        for (const [name, b64] of files) {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            dt.items.add(new File([bytes], name, { type: name.endsWith(".txt") ? "text/plain" : "image/jpeg" }));
        }
        return dt;
    }""", payload)
    page.get_by_test_id("batch-drop").dispatch_event("drop", {"dataTransfer": transfer})


def test_drop_200_photos_watch_progress_read_summary_download_csv(page, screenshot):
    files = one_face_photos(PHOTOS - 2) + [("coffee.jpg", no_face_photo()), ("notes.txt", b"not a photo")]
    page.goto("/")
    page.get_by_role("link", name="Batch").first.click()
    page.wait_for_url("**/batch")
    drop_files(page, files)
    expect(page.get_by_test_id("batch-chosen")).to_contain_text(f"{PHOTOS} file(s) chosen")
    page.get_by_label("Profile").select_option("live")
    page.get_by_test_id("batch-thumbnails").check()
    page.get_by_test_id("batch-blur").check()
    page.get_by_test_id("batch-submit").click()

    expect(page.get_by_test_id("batch-progress")).to_be_visible()
    seen = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not page.get_by_test_id("batch-result").is_visible():
        seen.append((page.evaluate("document.getElementById('batch-progress').value"),
                     page.get_by_test_id("batch-status").inner_text()))
        if seen[-1][1] in ("failed", "cancelled"):
            break
        time.sleep(0.5)
    screenshot(page, "done")
    expect(page.get_by_test_id("batch-result")).to_be_visible()
    running = [(v, s) for v, s in seen if s.startswith("running")]
    assert running and [v for v, _ in running] == sorted(v for v, _ in running), seen   # the bar only moves forward
    assert any("photos/s" in s and "left" in s for _, s in running), running           # rate and time left
    assert any(f"/ {PHOTOS} photos" in s for _, s in running)
    expect(page.get_by_test_id("batch-status")).to_have_text(f"done · {PHOTOS} photos")

    summary = page.get_by_test_id("batch-summary").inner_text()
    faces = int(summary.split(" face(s)")[0])
    assert faces >= PHOTOS - 12 and f"in {PHOTOS} photo(s)" in summary and "1 could not be analysed" in summary
    for chart in ("emotions", "ages", "genders"):
        assert page.evaluate(f"document.getElementById('batch-chart-{chart}').dataset.drawn") == "true"
    emotion_counts = page.get_by_test_id("batch-table-emotions").locator("td").all_inner_texts()
    assert sum(map(int, emotion_counts)) == faces
    assert page.get_by_test_id("batch-photo").count() >= PHOTOS
    assert page.locator(".batch-files img").count() >= PHOTOS - 13               # blurred thumbnails
    expect(page.locator(".batch-files .error")).to_contain_text("unsupported_type")

    with page.expect_download() as download:
        page.get_by_test_id("batch-csv").click()
    rows = list(csv.DictReader(open(download.value.path(), encoding="utf-8")))
    assert len([r for r in rows if not r["error_code"]]) == faces
    assert {r["file"] for r in rows} == {name for name, _ in files}               # every photo has its row(s)
    assert next(r for r in rows if r["file"] == "notes.txt")["error_code"] == "unsupported_type"


def test_submitting_nothing_says_so(page):
    page.goto("/batch")
    page.get_by_test_id("batch-submit").click()
    expect(page.get_by_test_id("batch-error")).to_contain_text("Choose or drop some photos")


def test_cancel_stops_a_running_batch_and_hides_the_button(page):
    page.goto("/batch")
    drop_files(page, one_face_photos(120))
    page.get_by_test_id("batch-submit").click()
    expect(page.get_by_test_id("batch-status")).to_contain_text("running", timeout=60_000)
    page.get_by_test_id("batch-cancel").click()
    expect(page.get_by_test_id("batch-status")).to_have_text("cancelled", timeout=30_000)
    expect(page.get_by_test_id("batch-cancel")).to_be_hidden()
    expect(page.get_by_test_id("batch-result")).to_be_hidden()
