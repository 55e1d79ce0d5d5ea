"""Benchmark the live-mode server path: fps and latency of POST /api/v1/analyze.

Starts the real server (gunicorn wsgi:app on 127.0.0.1, a free port) and sends
what live.js sends: a 640x480 webcam frame (skimage's astronaut, padded to
4:3), downscaled to the send width, JPEG-encoded, one request in flight at a
time. Prints fps and latency percentiles per send width and writes them, with
the server's own timing_ms breakdown, to a JSON report.

    python bench/bench_live.py                        # 640 (full frame) and 320
    python bench/bench_live.py --send-widths 640,480,400 --browser-seconds 10 --live-max-side 400

Not a test: numbers depend on the machine and on what else it is running
(the report records the load average).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from app import settings  # noqa: E402
from tests.browser.make_clip import face_frame  # noqa: E402  (the same face the browser tests film)

API_PATH = "/api/v1/analyze"
TARGET_FPS = 50           # issue #13: the live path over plain HTTP
BROWSER_TARGET_FPS = 25   # and the /live page in headless Chromium


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, workers: int, models_dir: str | None, live_max_side: int | None,
                 min_face: float) -> subprocess.Popen:
    env = dict(os.environ, VISAGE_LIVE_MIN_FACE=str(min_face))
    if models_dir:
        env["VISAGE_MODELS_DIR"] = models_dir
    if live_max_side:
        env["VISAGE_LIVE_MAX_SIDE"] = str(live_max_side)
    cmd = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
           "--log-level", "warning", "wsgi:app"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)


def wait_ready(port: int, server: subprocess.Popen, timeout: float = 180.0) -> float:
    """Seconds until GET / answers 200 (models load at startup)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if server.poll() is not None:
            raise SystemExit(f"server exited with code {server.returncode} before answering")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return time.perf_counter() - t0
        except OSError:
            time.sleep(0.25)
    raise SystemExit(f"server not ready after {timeout:.0f} s")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)   # its own session: gunicorn master and workers only
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def frame_jpeg(send_width: int, quality: int) -> bytes:
    """The frame live.js would send: 640x480 → send_width wide, JPEG."""
    frame = face_frame()
    h, w = frame.shape[:2]
    if send_width < w:
        frame = cv2.resize(frame, (send_width, round(h * send_width / w)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def multipart(jpeg: bytes, min_face: float, **fields) -> tuple[bytes, str]:
    """The form live.js posts: the frame, the min_face option and any other fields (profile, regions)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"frame.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + jpeg + "".join(
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}"
            for name, value in {"min_face": min_face, **fields}.items()).encode() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# What live.js sends (static/js/live.js, app/webcam.py): "live" = profile=live plus the last answer's
# boxes as regions, a full scan every LIVE_FULL_SCAN_EVERY frames; "accurate-full" = what it sent
# before (every frame scanned whole, the accurate profile's views), kept as the same-run reference.
MODES = ("live", "accurate-full")


def live_request(jpeg: bytes, min_face: float, mode: str, frame: int, last_boxes: list) -> tuple[bytes, str, str]:
    """(body, content type, path): live.js sends the region hint in the query string."""
    from urllib.parse import quote

    from app.webcam import LIVE_FULL_SCAN_EVERY
    if mode == "accurate-full":
        return (*multipart(jpeg, min_face), API_PATH)
    if last_boxes and frame % LIVE_FULL_SCAN_EVERY:
        return (*multipart(jpeg, min_face, profile="live"), f"{API_PATH}?regions={quote(json.dumps(last_boxes))}")
    return (*multipart(jpeg, min_face, profile="live"), API_PATH)


def post(port: int, body: bytes, content_type: str, path: str = API_PATH) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    if response.status != 200:
        raise SystemExit(f"{API_PATH} answered {response.status}: {payload[:300]!r}")
    return json.loads(payload)


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run_width(port: int, send_width: int, quality: int, requests: int, warmup: int, min_face: float,
              mode: str = "live") -> dict:
    jpeg = frame_jpeg(send_width, quality)
    last_boxes = []
    for i in range(warmup):
        result = post(port, *live_request(jpeg, min_face, mode, i, last_boxes))
        last_boxes = [[f["box"][k] for k in "xywh"] for f in result["faces"]]
    latencies, timings, faces, models = [], [], [], {}
    t0 = time.perf_counter()
    for i in range(requests):   # sequential: exactly one request in flight, like live.js
        body, content_type, path = live_request(jpeg, min_face, mode, i, last_boxes)
        start = time.perf_counter()
        result = post(port, body, content_type, path)
        latencies.append((time.perf_counter() - start) * 1000)
        last_boxes = [[f["box"][k] for k in "xywh"] for f in result["faces"]]
        timings.append(result.get("timing_ms", {}))
        faces.append(len(result["faces"]))
        models = result.get("models", models)
    wall = time.perf_counter() - t0
    stages = sorted({k for t in timings for k, v in t.items() if isinstance(v, (int, float))})
    return {
        "mode": mode,
        "send_width": send_width,
        "send_height": round(480 * send_width / 640),
        "min_face": min_face,
        "jpeg_bytes": len(jpeg),
        "requests": requests,
        "fps": requests / wall,
        "latency_ms": {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
                       "p95": percentile(latencies, 95),
                       "p99": percentile(latencies, 99), "mean": statistics.fmean(latencies),
                       "max": max(latencies)},
        "server_timing_ms_median": {k: statistics.median(t[k] for t in timings if k in t) for k in stages},
        "faces_found": {"min": min(faces), "max": max(faces)},
        "models": models,
        "meets_target": requests / wall >= TARGET_FPS,
    }


def load_conditions() -> dict:
    return {"cpu_count": os.cpu_count(), "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(), "platform": platform.platform()}


def run_browser(port: int, seconds: float) -> dict:
    """Live mode as a user runs it: headless Chromium, fake camera (astronaut clip), /live page.

    Reads the fps and round-trip figures the page itself shows, every second.
    """
    import shutil
    import tempfile

    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS
    from tests.browser.make_clip import make_clip
    clip = make_clip(Path(tempfile.mkdtemp()) / "face.y4m", seconds=4.0, fps=30)
    samples = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"),
                                     args=CHROMIUM_ARGS + [f"--use-file-for-fake-video-capture={clip}"])
        context = browser.new_context(permissions=["camera"])
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/live")
        page.wait_for_selector("[data-testid=live-fps][data-value]", timeout=60_000)
        page.wait_for_timeout(3000)                     # warm-up: first frames, tracker settles
        for _ in range(int(seconds)):
            page.wait_for_timeout(1000)
            samples.append({"fps": float(page.get_attribute("[data-testid=live-fps]", "data-value")),
                            "round_trip_ms": float(page.get_attribute("[data-testid=live-latency]", "data-value"))})
        browser.close()
    fps = [s["fps"] for s in samples]
    rtt = [s["round_trip_ms"] for s in samples]
    return {"seconds": seconds, "camera": "640x480 fake camera (astronaut clip)", "fps_median": statistics.median(fps),
            "fps_min": min(fps), "round_trip_ms_median": statistics.median(rtt), "samples": samples,
            "meets_target": min(fps) >= BROWSER_TARGET_FPS}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--send-widths", default="640,320",
                        help="comma-separated frame widths to send (640 = the full 640x480 frame)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per width")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--jpeg-quality", type=int, default=80, help="live.js sends quality 0.8")
    parser.add_argument("--workers", type=int, default=1,
                        help="gunicorn workers (one request is in flight, so one is enough)")
    parser.add_argument("--models-dir", help="VISAGE_MODELS_DIR for the server (default: the app's)")
    parser.add_argument("--browser-seconds", type=float, default=0,
                        help="also run the /live page in headless Chromium for this long and read its fps")
    parser.add_argument("--min-face", type=float, default=settings.DEFAULTS["VISAGE_LIVE_MIN_FACE"],
                        help="min_face sent with each frame (and the live page's setting)")
    parser.add_argument("--live-max-side", type=int, default=settings.DEFAULTS["VISAGE_LIVE_MAX_SIDE"],
                        help="frame size the /live page sends in the browser run")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="live: what live.js sends now (profile=live, region hints); accurate-full: "
                             "what it sent before (reference)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "live_benchmark.json")
    args = parser.parse_args(argv)

    port = free_port()
    before = load_conditions()
    server = start_server(port, args.workers, args.models_dir, args.live_max_side, args.min_face)
    try:
        startup_s = wait_ready(port, server)
        results = [run_width(port, int(w), args.jpeg_quality, args.requests, args.warmup, args.min_face, mode)
                   for w in args.send_widths.split(",") for mode in args.modes.split(",")]
        browser = run_browser(port, args.browser_seconds) if args.browser_seconds else None
    finally:
        stop_server(server)

    report = {"target_fps": TARGET_FPS, "server": f"gunicorn --workers {args.workers} wsgi:app (127.0.0.1)",
              "models_dir": args.models_dir or os.environ.get("VISAGE_MODELS_DIR", "models/ (app default)"),
              "frame": "astronaut() padded to 640x480, downscaled to send_width", "startup_s": startup_s,
              "load_before": before, "load_after": load_conditions(), "results": results,
              "browser_live_page": browser and {**browser, "live_max_side": args.live_max_side,
                                                "min_face": args.min_face}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"load average before: {before['loadavg_1_5_15']} on {before['cpu_count']} CPUs")
    for r in results:
        lat = r["latency_ms"]
        print(f"{r['mode']:14s} {r['send_width']}x{r['send_height']}: {r['fps']:.1f} fps  "
              f"latency p50 {lat['p50']:.1f} / p95 {lat['p95']:.1f} / p99 {lat['p99']:.1f} ms  "
              f"faces {r['faces_found']}  {'OK' if r['meets_target'] else 'below'} {TARGET_FPS} fps")
        print("   server timing_ms (median): " +
              ", ".join(f"{k} {v:.1f}" for k, v in r["server_timing_ms_median"].items()))
    if browser:
        print(f"browser /live page: {browser['fps_median']:.1f} fps median (min {browser['fps_min']:.1f}), "
              f"round trip {browser['round_trip_ms_median']:.0f} ms median")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
