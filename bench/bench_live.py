"""Benchmark live mode: the server path (fps and latency of POST /api/v1/analyze) and the /live page.

Starts the real server (gunicorn wsgi:app on 127.0.0.1, a free port) and sends
what live.js sends: a 640x480 webcam frame (skimage's astronaut, padded to
4:3), downscaled to the send width, JPEG-encoded, one request in flight at a
time. Prints fps and latency percentiles per send width and writes them, with
the server's own timing_ms breakdown, to a JSON report.

With --browser-seconds, also runs the /live page in headless Chromium with a fake camera for each
detector (--browser-detectors) and clip (--clips: the portrait, the same still, a 240-px face photo
of the astronaut or of a held-out UTKFace val chip) and records every answer: frames analysed per
second, the share of answers with the face found, and how much a still face's box and single-frame
age move (the drawn box through the tracker's One-Euro filter, and offline through the filter it
replaced, an even mix of each detection with the last box).

    python bench/bench_live.py                        # 640 (full frame) and 320
    python bench/bench_live.py --send-widths 400 --browser-seconds 15 --clips portrait,still,chip240

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
BROWSER_TARGET_FPS = 30   # and the /live page in headless Chromium (issue 23)


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


# What live.js sends (static/js/live.js, app/webcam.py): "live" = profile=live, detector=blazeface
# (the live page's default) plus the last answer's boxes as regions, a full scan every
# LIVE_FULL_SCAN_EVERY frames; "live-haar" = the same with detector=haar (the live page's other
# choice, and what it sent before); "accurate-full" = every frame scanned whole with Haar and the
# accurate profile's views (what it sent before region hints), kept as a same-run reference.
MODES = ("live", "live-haar", "accurate-full")


def live_request(jpeg: bytes, min_face: float, mode: str, frame: int, last_boxes: list) -> tuple[bytes, str, str]:
    """(body, content type, path): live.js sends the region hint in the query string."""
    from urllib.parse import quote

    from app.webcam import LIVE_FULL_SCAN_EVERY
    if mode == "accurate-full":
        return (*multipart(jpeg, min_face, detector="haar"), API_PATH)
    fields = {"profile": "live", "detector": "haar" if mode == "live-haar" else "blazeface"}
    if last_boxes and frame % LIVE_FULL_SCAN_EVERY:
        return (*multipart(jpeg, min_face, **fields), f"{API_PATH}?regions={quote(json.dumps(last_boxes))}")
    return (*multipart(jpeg, min_face, **fields), API_PATH)


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


# A held-out face (UTKFace val) that the Haar cascade misses in a 640x480 frame at 240 px (issue 23);
# read from the datasets folder at run time, never committed.
HELD_OUT_CHIP = "15_1_2_20161219193333691.jpg.chip.jpg"
CLIPS = ("portrait", "still", "face240", "chip240")


def clip_frame(name: str) -> tuple[np.ndarray, float]:
    """(frame, sway amplitude in px) of a named fake-camera clip."""
    from tests.browser.make_clip import astronaut_face_photo, chip_photo, face_photo_frame
    if name == "portrait":
        return face_frame(), 2.0
    if name == "still":
        return face_frame(), 0.0
    if name == "face240":
        return face_photo_frame(astronaut_face_photo(), 240), 2.0
    if name == "chip240":
        data = Path(os.environ.get("VISAGE_DATA_DIR", ROOT.parent / "shared" / "data"))
        return face_photo_frame(chip_photo(data / "utkface" / "UTKFace" / HELD_OUT_CHIP), 240), 2.0
    raise SystemExit(f"unknown clip {name!r}; one of {', '.join(CLIPS)}")


# Runs in the page: one record per answer (live.js rebuilds the face list on each), for `seconds`.
RECORD_ANSWERS = """async (seconds) => {
    const list = document.getElementById('live-faces'), server = document.getElementById('live-server');
    const records = [];
    const observer = new MutationObserver(() => records.push({
        t: performance.now(), answers: Number(server.dataset.answers || 0),
        withFace: Number(server.dataset.answersWithFace || 0),
        faces: [...list.children].map((li) => ({ ...li.dataset })) }));
    observer.observe(list, { childList: true });
    const first = { answers: Number(server.dataset.answers || 0), withFace: Number(server.dataset.answersWithFace || 0),
                    full: Number(server.dataset.fullScans || 0), regions: Number(server.dataset.regionScans || 0) };
    const t0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    observer.disconnect();
    const last = { answers: Number(server.dataset.answers || 0), withFace: Number(server.dataset.answersWithFace || 0),
                   full: Number(server.dataset.fullScans || 0), regions: Number(server.dataset.regionScans || 0) };
    return { first, last, seconds: (performance.now() - t0) / 1000, records };
}"""


def box_steadiness(boxes: np.ndarray) -> dict:
    """Per-coordinate s.d. and the largest frame-to-frame move (px) of a series of (x, y, w, h) boxes."""
    if len(boxes) < 2:
        return {}
    return {"sd_px": [round(float(v), 2) for v in boxes.std(0)],
            "max_step_px": round(float(np.abs(np.diff(boxes, axis=0)).max()), 2),
            "p95_step_px": round(float(np.percentile(np.abs(np.diff(boxes, axis=0)).max(1), 95)), 2)}


def even_mix(raw: np.ndarray) -> np.ndarray:
    """The tracker's previous box filter: each detection averaged half and half with the last box."""
    out = [raw[0]]
    for box in raw[1:]:
        out.append(out[-1] + 0.5 * (box - out[-1]))
    return np.array(out)


def summarize_answers(run: dict) -> dict:
    """Found share, fps and steadiness of the first tracked face over one recorded run."""
    answers = run["last"]["answers"] - run["first"]["answers"]
    with_face = run["last"]["withFace"] - run["first"]["withFace"]
    track = [r["faces"][0] for r in run["records"] if r["faces"]]
    ids = {f["trackId"] for f in track}
    main = [f for f in track if f["trackId"] == (track[-1]["trackId"] if track else None)]
    detected = [f for f in main if f.get("detected") == "true"]
    as_boxes = lambda faces: np.array([[float(v) for v in f["rawBox"].split(",")] for f in faces])  # noqa: E731
    raw = as_boxes(detected)
    region_raw = as_boxes([f for f in detected if f.get("scan") == "regions"])
    drawn = np.array([[float(v) for v in f["box"].split(",")] for f in detected])
    frame_ages = np.array([float(f["frameAge"]) for f in detected])
    region_ages = np.array([float(f["frameAge"]) for f in detected if f.get("scan") == "regions"])
    return {
        "answers": answers, "answers_per_s": round(answers / run["seconds"], 2),
        "found_share": round(with_face / answers, 4) if answers else None,
        "shown_share": round(sum(1 for r in run["records"] if r["faces"]) / max(1, len(run["records"])), 4),
        "full_scans": run["last"]["full"] - run["first"]["full"],
        "region_scans": run["last"]["regions"] - run["first"]["regions"],
        "track_ids_seen": len(ids),
        "raw_box": box_steadiness(raw), "raw_box_region_scans": box_steadiness(region_raw),
        "drawn_box": box_steadiness(drawn),
        "drawn_box_previous_filter": box_steadiness(even_mix(raw)) if len(raw) else {},
        "frame_age_sd": round(float(frame_ages.std()), 2) if len(frame_ages) else None,
        "frame_age_sd_region_scans": round(float(region_ages.std()), 2) if len(region_ages) else None,
        "shown_ages": sorted({f["age"] for f in main}),
        "shown_labels": sorted({(f["gender"], f["age"], f["emotion"]) for f in main[len(main) // 2:]}),
    }


def run_browser(port: int, seconds: float, clips: list[str], detectors: list[str], warmup_s: float = 5.0) -> list[dict]:
    """Live mode as a user runs it: headless Chromium, a fake camera playing each clip, the /live page
    with each detector chosen; every answer of `seconds` after a warm-up recorded (RECORD_ANSWERS)."""
    import shutil
    import tempfile

    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS
    from tests.browser.make_clip import make_clip
    results = []
    with sync_playwright() as pw:
        for clip_name in clips:
            frame, amplitude = clip_frame(clip_name)
            clip = make_clip(Path(tempfile.mkdtemp()) / f"{clip_name}.y4m", seconds=4.0, fps=30, frame=frame,
                             amplitude=amplitude)
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"),
                                         args=CHROMIUM_ARGS + [f"--use-file-for-fake-video-capture={clip}"])
            for detector in detectors:
                context = browser.new_context(permissions=["camera"])
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{port}/live")
                page.check(f"#live-detector input[value={detector}]")
                page.wait_for_selector("[data-testid=live-fps][data-value]", timeout=60_000)
                page.wait_for_timeout(warmup_s * 1000)      # first frames; the tracker's windows fill
                run = page.evaluate(RECORD_ANSWERS, seconds)
                fps_shown = float(page.get_attribute("[data-testid=live-fps]", "data-value"))
                context.close()
                summary = summarize_answers(run)
                results.append({"clip": clip_name, "sway_px": amplitude, "detector": detector,
                                "fps_shown_at_end": fps_shown, **summary})
            browser.close()
    return results


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
                        help="also run the /live page in headless Chromium for this long per clip and detector")
    parser.add_argument("--clips", default="portrait", help=f"fake-camera clips for the browser runs: {', '.join(CLIPS)}")
    parser.add_argument("--browser-detectors", default="blazeface,haar", help="detectors chosen on the /live page")
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
        browser = (run_browser(port, args.browser_seconds, args.clips.split(","), args.browser_detectors.split(","))
                   if args.browser_seconds else None)
    finally:
        stop_server(server)

    report = {"target_fps": TARGET_FPS, "server": f"gunicorn --workers {args.workers} wsgi:app (127.0.0.1)",
              "models_dir": args.models_dir or os.environ.get("VISAGE_MODELS_DIR", "models/ (app default)"),
              "frame": "astronaut() padded to 640x480, downscaled to send_width", "startup_s": startup_s,
              "load_before": before, "load_after": load_conditions(), "results": results,
              "browser_live_page": browser and {"runs": browser, "live_max_side": args.live_max_side,
                                                "min_face": args.min_face, "seconds": args.browser_seconds,
                                                "browser_target_fps": BROWSER_TARGET_FPS}}
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
    for b in browser or []:
        print(f"browser /live {b['clip']:8s} {b['detector']:9s}: {b['answers_per_s']:.1f} answers/s, face found in "
              f"{b['found_share']:.1%} of {b['answers']} answers; box sd raw {b['raw_box'].get('sd_px')} "
              f"drawn {b['drawn_box'].get('sd_px')} (previous filter {b['drawn_box_previous_filter'].get('sd_px')}), "
              f"largest step drawn {b['drawn_box'].get('max_step_px')} px; frame age sd {b['frame_age_sd']}; "
              f"shown ages {b['shown_ages']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
