"""Browser tests: real headless Chromium (Playwright) against a real HTTP server.

Chromium films a fake camera: --use-fake-device-for-media-stream plays the Y4M
clip that make_clip.py builds from skimage's astronaut. Camera permission is
granted or withheld per browser context (Playwright's `permissions`), so one
browser serves both the "camera allowed" and the "camera refused" tests.
Screenshots go to artifacts/browser/ (git-ignored).
"""
from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import pytest

from .make_clip import make_clip

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--use-fake-device-for-media-stream"]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("browser tests need Chromium on PATH (apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def playwright():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="browser tests need the playwright Python package (pip install playwright)")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def fake_camera_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("camera") / "astronaut.y4m", seconds=3, fps=15)


@pytest.fixture(scope="session")
def browser(playwright, chromium_path, fake_camera_clip):
    browser = playwright.chromium.launch(
        executable_path=chromium_path,
        args=CHROMIUM_ARGS + [f"--use-file-for-fake-video-capture={fake_camera_clip}"])
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def real_app():
    """The app with the shipped, trained models of models/: the browser flows as a user gets them."""
    from app import create_app
    return create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(ROOT / "models")})


@pytest.fixture(scope="session")
def server_url(real_app) -> str:
    """The real app on a real threaded HTTP server, 127.0.0.1."""
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, real_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="browser-test-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def _page(browser, server_url, permissions):
    context = browser.new_context(base_url=server_url, permissions=permissions,
                                  viewport={"width": 1100, "height": 900})
    context.set_default_timeout(30_000)   # the server shares 2 cores with model training
    return context, context.new_page()


@pytest.fixture
def page(browser, server_url):
    """A page whose camera permission is granted."""
    context, page = _page(browser, server_url, ["camera"])
    yield page
    context.close()


@pytest.fixture
def refused_page(browser, server_url):
    """A page whose camera permission request is denied (getUserMedia → NotAllowedError)."""
    context, page = _page(browser, server_url, [])
    yield page
    context.close()


@pytest.fixture
def screenshot(request):
    """screenshot(page, "step") → artifacts/browser/<test>-<step>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page, step: str) -> Path:
        test = re.sub(r"[^\w.-]+", "_", request.node.name).strip("_")   # test[/capture] → test_capture
        path = ARTIFACTS / f"{test}-{step}.png"
        page.screenshot(path=path, full_page=True)
        return path
    return take
