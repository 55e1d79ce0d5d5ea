"""Take the README's screenshots from the running app: the result page and live mode.

    .venv/bin/python docs/make_screenshots.py            # writes docs/screenshot-result.png, docs/screenshot-live.png

Real app with the shipped models on 127.0.0.1, Debian's headless Chromium (Playwright), the fake
camera playing the astronaut clip of tests/browser/make_clip.py. PNGs are reduced to 256 colours
so that each stays well under 300 KB.
"""
from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import cv2
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import CHROMIUM_ARGS  # noqa: E402
from tests.browser.make_clip import make_clip  # noqa: E402

VIEWPORT = {"width": 960, "height": 720}
# expect() keeps its own 5 s default, whatever the context's timeout: filling the live window takes longer
# than that on a loaded 2-core machine.
EXPECT_TIMEOUT_MS = 120_000


def shrink(path: Path) -> None:
    Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main() -> None:
    from playwright.sync_api import expect, sync_playwright
    from werkzeug.serving import make_server

    from app import create_app
    from app.webcam import LIVE_SMOOTHING_WINDOW

    app = create_app({"VISAGE_MODELS_DIR": str(ROOT / "models")})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        clip = make_clip(Path(tmp) / "astronaut.y4m", seconds=3, fps=15)
        photo = Path(tmp) / "astronaut.jpg"
        from skimage import data
        cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=CHROMIUM_ARGS + [f"--use-file-for-fake-video-capture={clip}"])
        context = browser.new_context(base_url=url, permissions=["camera"], viewport=VIEWPORT)
        context.set_default_timeout(120_000)
        page = context.new_page()

        page.goto("/")
        form = page.locator("form[action$='/analyze']").first
        form.locator("input[type=file][name=image]").set_input_files(photo)
        form.locator("[type=submit]").click()
        page.wait_for_url("**/analyze")
        expect(page.get_by_test_id("face").first).to_be_visible(timeout=EXPECT_TIMEOUT_MS)
        out = ROOT / "docs" / "screenshot-result.png"
        page.screenshot(path=out)
        shrink(out)

        page.goto("/live")
        live_face = page.get_by_test_id("live-face").first
        expect(live_face).to_have_attribute("data-frames", str(LIVE_SMOOTHING_WINDOW), timeout=EXPECT_TIMEOUT_MS)
        out = ROOT / "docs" / "screenshot-live.png"
        page.screenshot(path=out)
        shrink(out)
        browser.close()
    server.shutdown()
    print("wrote docs/screenshot-result.png, docs/screenshot-live.png")


if __name__ == "__main__":
    main()
