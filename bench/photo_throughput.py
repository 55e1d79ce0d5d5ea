"""Photo throughput per server layout: N clients upload the astronaut photo for T seconds, per layout.

    python bench/photo_throughput.py --layouts 2x2x1,1x2x1,2x1x1 --clients 50 --seconds 30

A layout is WORKERSxANALYSIS_SLOTSxMODEL_THREADS: gunicorn workers (gunicorn.conf.py otherwise), analyses
at a time per worker (VISAGE_ANALYSIS_SLOTS), and threads per model call and per Haar scan
(TF_NUM_INTRAOP_THREADS for TensorFlow and ONNX Runtime, VISAGE_OPENCV_THREADS for OpenCV).
Each client (a thread, plain http.client: no dependency beyond the app's) sends the next upload as soon
as the answer is back. Prints and writes requests/s, latency p50/p95, and answers by status.
bench/load_photos.py (Locust) is the fuller load test; this one only compares layouts, in one run.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_live import free_port, stop_server, wait_ready  # noqa: E402


def photo_form() -> tuple[bytes, str]:
    import cv2
    from skimage import data
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + jpeg.tobytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def start(port: int, workers: int, slots: int, threads: int) -> subprocess.Popen:
    env = dict(os.environ, VISAGE_ANALYSIS_SLOTS=str(slots), TF_NUM_INTRAOP_THREADS=str(threads),
               TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS=str(threads), VISAGE_OPENCV_THREADS=str(threads),
               TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", str(workers),
           "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)


def load(port: int, clients: int, seconds: float, body: bytes, content_type: str) -> dict:
    latencies, statuses, lock = [], Counter(), threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client():
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("POST", "/api/v1/analyze", body=body, headers={"Content-Type": content_type})
                response = conn.getresponse()
                response.read()
                status = response.status
                conn.close()
            except OSError as e:
                status = type(e).__name__
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(time.perf_counter() - t0)
            if status == 503:
                time.sleep(1)

    t0 = time.perf_counter()
    pool = [threading.Thread(target=client) for _ in range(clients)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    ordered = sorted(latencies)
    pick = (lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)) if ordered else (lambda q: None)
    return {"ok_per_s": round(len(latencies) / wall, 2), "p50_ms": pick(0.5), "p95_ms": pick(0.95),
            "statuses": {str(k): v for k, v in statuses.items()}, "wall_s": round(wall, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layouts", default="2x2x1,1x2x1,2x1x1,1x1x2,3x1x1")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "photo_throughput.json")
    args = p.parse_args(argv)
    body, content_type = photo_form()
    rows = []
    for layout in args.layouts.split(","):
        workers, slots, threads = (int(v) for v in layout.split("x"))
        port = free_port()
        server = start(port, workers, slots, threads)
        try:
            wait_ready(port, server)
            load(port, 4, 3, body, content_type)               # warm-up: every worker's first calls
            row = {"layout": layout, "workers": workers, "analysis_slots": slots, "model_and_opencv_threads": threads,
                   **load(port, args.clients, args.seconds, body, content_type)}
        finally:
            stop_server(server)
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {"command": "python bench/photo_throughput.py " + " ".join(argv or sys.argv[1:]),
              "clients": args.clients, "seconds": args.seconds, "cpu_count": os.cpu_count(),
              "cpus_allowed": len(os.sched_getaffinity(0)), "load_average_at_end": os.getloadavg(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
