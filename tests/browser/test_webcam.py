"""The webcam flows in real headless Chromium with a fake camera filming a face."""
from __future__ import annotations

import time

import cv2
import pytest

from .make_clip import face_frame

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright").expect

# Observations the live tracker averages (app/webcam.py LIVE_SMOOTHING_WINDOW).
from app.webcam import LIVE_SMOOTHING_WINDOW  # noqa: E402


def test_capture_from_home_page_shows_result_with_a_face(page, screenshot):
    page.goto("/")
    page.get_by_role("link", name="Capture").first.click()
    capture = page.get_by_role("button", name="Capture")
    expect(capture).to_be_enabled()
    # A function, not an expression string: Playwright eval()s expression strings, which the CSP forbids.
    page.wait_for_function("() => document.getElementById('capture-video').currentTime > 0.3")
    screenshot(page, "preview")

    capture.click()
    page.wait_for_url("**/analyze")
    faces = page.get_by_test_id("face")
    expect(faces.first).to_be_visible()
    assert faces.count() >= 1
    screenshot(page, "result")


def test_live_draws_boxes_and_keeps_labels_stable(page, screenshot):
    page.goto("/capture")
    page.get_by_role("link", name="Live").click()
    live_face = page.get_by_test_id("live-face").first
    expect(live_face).to_be_visible()
    # Wait for a full smoothing window, then watch a still face for a few seconds.
    expect(live_face).to_have_attribute("data-frames", str(LIVE_SMOOTHING_WINDOW), timeout=20_000)   # slow when loaded

    # Then one window more: the first window mixes the full scans of the first frames with region
    # scans, whose boxes (and so ages) differ by a few pixels (years); once settled, nothing may move.
    time.sleep(4)
    samples = []
    for _ in range(6):
        samples.append((live_face.get_attribute("data-track-id"), live_face.inner_text()))
        time.sleep(0.5)
    assert len(set(samples)) == 1, f"labels or identity changed on a still face: {samples}"
    label = samples[0][1]
    assert label.count(",") == 2 and any(ch.isdigit() for ch in label), label  # "gender, age, emotion"

    overlay = page.get_by_test_id("live-overlay")
    assert int(overlay.get_attribute("data-boxes")) >= 1
    painted = page.evaluate("""() => {
        const c = document.getElementById('live-overlay');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i]) n++;
        return n; }""")
    assert painted > 100, "no box drawn on the overlay canvas"
    assert float(page.get_by_test_id("live-fps").get_attribute("data-value")) > 0
    expect(page.get_by_test_id("live-latency")).to_contain_text("ms")
    # live.js sends the tracked boxes as detection hints, with a full scan every few frames
    server = page.get_by_test_id("live-server")
    scans = {k: int(server.get_attribute(f"data-{k}-scans") or 0) for k in ("full", "region")}
    assert scans["full"] >= 1 and scans["region"] > scans["full"], scans
    screenshot(page, "live")


def test_upload_form_shows_result(page, screenshot, tmp_path):
    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(face_frame(), cv2.COLOR_RGB2BGR))
    page.goto("/")
    form = page.locator("form[action$='/analyze']").first
    form.locator("input[type=file][name=image]").set_input_files(photo)
    form.locator("[type=submit]").click()
    page.wait_for_url("**/analyze")
    expect(page.get_by_test_id("face").first).to_be_visible()
    screenshot(page, "result")


@pytest.mark.parametrize("path", ["/capture", "/live"])
def test_refused_camera_offers_upload_instead(refused_page, screenshot, path):
    refused_page.goto(path)
    fallback = refused_page.get_by_test_id("camera-fallback")
    expect(fallback).to_be_visible()
    expect(fallback).to_contain_text("refused")
    expect(fallback.locator("input[type=file][name=image]")).to_be_visible()
    expect(refused_page.locator("video")).to_be_hidden()
    screenshot(refused_page, "fallback")


def test_missing_camera_says_so(page, screenshot):
    # No webcam at all: Chromium rejects getUserMedia with NotFoundError.
    page.add_init_script("""navigator.mediaDevices.getUserMedia = () =>
        Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));""")
    page.goto("/capture")
    expect(page.get_by_test_id("camera-fallback")).to_contain_text("No camera was found")
    screenshot(page, "fallback")


def test_tracker_keeps_identities_and_damps_flicker(page):
    """static/js/tracker.js on synthetic detections, run in the browser that runs live mode."""
    page.goto("/live")
    result = page.evaluate("""async () => {
        const { FaceTracker } = await import('/static/js/tracker.js');
        const face = (x, gender, p, age, emotion) => ({
            box: { x, y: 10, w: 50, h: 50 }, age, gender: { label: gender, probability: p },
            emotion: { label: emotion, probabilities: { happy: emotion === 'happy' ? 0.52 : 0.48,
                                                        sad: emotion === 'sad' ? 0.52 : 0.48 } } });
        const tracker = new FaceTracker({ window: 8, matchIou: 0.3 });
        const frames = [];
        for (let i = 0; i < 12; i++) {
            // Face A wobbles between two answers; face B (listed first on odd frames) is steady.
            const a = face(0 + (i % 2), i % 2 ? 'male' : 'female', 0.52, 30 + (i % 2), i % 2 ? 'sad' : 'happy');
            const b = face(200, 'female', 0.9, 60, 'happy');
            const shown = tracker.update(i % 2 ? [b, a] : [a, b]);
            frames.push(shown.map((t) => [t.id, t.smoothed.gender.label, t.smoothed.age, t.smoothed.emotion.label]));
        }
        const afterGap = [];
        for (let i = 0; i < 6; i++) afterGap.push(tracker.update([]).length);
        const reborn = tracker.update([face(0, 'male', 0.9, 40, 'sad')]);
        return { frames, afterGap, rebornCount: reborn.length, nextId: tracker.nextId };
    }""")
    frames = result["frames"]
    assert frames[0] == [], "a face is shown only once it was detected twice"
    assert all(frame == frames[1] for frame in frames[1:]), frames
    assert [t[0] for t in frames[1]] == [1, 2]
    assert result["afterGap"][:3] == [2, 2, 2] and result["afterGap"][-1] == 0   # kept briefly, then dropped
    assert result["rebornCount"] == 0 and result["nextId"] == 4                  # a new face is a new track


def test_tracker_resets_an_early_age_guess_once_the_window_is_full(page):
    """The age shown from the first two frames is kept while the window fills (no flicker), then replaced by
    the full window's median, instead of being held by the 5-year hysteresis."""
    page.goto("/live")
    ages = page.evaluate("""async () => {
        const { FaceTracker } = await import('/static/js/tracker.js');
        const face = (age) => ({ box: { x: 0, y: 10, w: 50, h: 50 }, age, gender: { label: 'female', probability: 0.9 },
                                 emotion: { label: 'happy', probabilities: { happy: 0.9, sad: 0.1 } } });
        const tracker = new FaceTracker({ window: 8 });
        const ages = [];
        for (let i = 0; i < 12; i++) ages.push(tracker.update([face(i < 2 ? 40 : 36)]).map((t) => t.smoothed.age));
        return ages;
    }""")
    assert ages[0] == [] and all(shown == [40] for shown in ages[1:7]), ages
    assert all(shown == [36] for shown in ages[7:]), ages


def test_tracker_holds_a_persons_age_through_slow_drifts_of_single_frames(page):
    """Single-frame ages of a still face drift with its sway (a box 1-2 px off reads years older or
    younger): over a 30-frame window the mean follows the sway and the shown age flips; averaged over
    the person window it holds, within a step of the sway's mean."""
    page.goto("/live")
    shown = page.evaluate("""async () => {
        const { FaceTracker } = await import('/static/js/tracker.js');
        const face = (age) => ({ box: { x: 0, y: 10, w: 50, h: 50 }, age, gender: { label: 'female', probability: 0.9 },
                                 emotion: { label: 'happy', probabilities: { happy: 0.9, sad: 0.1 } } });
        const run = (window, personWindow) => {
            const tracker = new FaceTracker({ window, personWindow });
            const ages = [];
            for (let i = 0; i < 300; i++) {   // a 90-frame sway (3 s at 30 fps) around 31.5 years, plus noise
                const age = 31.5 + 7 * Math.sin(2 * Math.PI * i / 90) + ((i * 7) % 5) - 2;
                ages.push(tracker.update([face(age)]).map((t) => t.smoothed.age)[0]);
            }
            return ages.slice(30);   // once the emotion window is full
        };
        return { person: run(30, 150), windowOnly: run(30, 30) };
    }""")
    assert len(set(shown["windowOnly"])) > 1, "a 30-frame mean should follow the sway (else this test shows nothing)"
    assert len(set(shown["person"])) == 1, sorted(set(shown["person"]))
    assert abs(shown["person"][0] - 31.5) < 5, shown["person"][0]   # AGE_STEP in static/js/tracker.js
