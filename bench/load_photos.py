"""Load test: N clients upload a one-face photo to POST /api/v1/analyze for T seconds (Locust, headless).

Each simulated client uploads skimage's astronaut (512x512 JPEG, one frontal face) as multipart,
waits for the answer, and sends the next one at once (no think time), or after a 503 waits as long as its
Retry-After header says (--ignore-retry-after: at once). Against a server this script
starts (the same gunicorn.conf.py as `make run`, on a free port) or one already running (--host).
Prints and writes to reports/ (JSON): requests/s, latency p50/p95/p99, errors by status, how many
answers were the overload 503 (with Retry-After), /api/v1/health latency sampled during the run,
and the server's memory (RSS of the gunicorn master and workers) over time.

    pip install -r bench/requirements-bench.txt           # locust (bench only)
    python bench/load_photos.py --users 50 --seconds 60   # starts its own server
    python bench/load_photos.py --users 200 --seconds 60 --host http://127.0.0.1:8000 --server-pid PID

Not a test: numbers depend on the machine and on what else runs on it (the report records the load average).
"""
from __future__ import annotations

# Locust runs on gevent, which must patch the standard library before anything else imports it.
from gevent import monkey  # noqa: I001

monkey.patch_all()

import argparse  # noqa: E402
import collections  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import psutil  # noqa: E402
from locust import FastHttpUser, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
API_PATH = "/api/v1/analyze"
HEALTH_PATH = "/api/v1/health"


def astronaut_jpeg() -> bytes:
    from PIL import Image
    from skimage import data
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


PHOTO = astronaut_jpeg()
STATUS_COUNTS: collections.Counter = collections.Counter()
RETRY_AFTER: collections.Counter = collections.Counter()


HONOR_RETRY_AFTER = True


class PhotoUser(FastHttpUser):
    network_timeout = 120.0
    connection_timeout = 30.0
    backoff = 0.0

    def wait_time(self) -> float:
        """No think time; after a 503, wait as long as its Retry-After says (a well-behaved client)."""
        wait, self.backoff = self.backoff, 0.0
        return wait

    @task
    def analyze(self):
        with self.client.post(API_PATH, files={"image": ("astronaut.jpg", PHOTO, "image/jpeg")},
                              name=API_PATH, catch_response=True) as response:
            STATUS_COUNTS[response.status_code] += 1
            if response.status_code == 200:
                faces = response.json().get("faces", [])
                if len(faces) != 1:
                    response.failure(f"expected 1 face, got {len(faces)}")
            elif response.status_code == 503:
                retry_after = response.headers.get("Retry-After")
                RETRY_AFTER[retry_after] += 1
                if HONOR_RETRY_AFTER and retry_after and retry_after.isdigit():
                    self.backoff = float(retry_after)
                response.failure("503 overload")
            else:
                response.failure(f"HTTP {response.status_code}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, extra_env: dict, extra_args: list[str], log) -> subprocess.Popen:
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
               **extra_env)
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
           "--log-level", "warning", *extra_args, "wsgi:app"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=log)


def wait_ready(host: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(host + HEALTH_PATH, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server at {host} did not answer {HEALTH_PATH} within {seconds:.0f} s")


def server_rss_mb(pid: int) -> float | None:
    """RSS of the gunicorn master and all its workers, MB."""
    try:
        master = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [master, *master.children(recursive=True)]) / 1e6
    except psutil.Error:
        return None


def sample(host: str, pid: int | None, every: float, out: list) -> None:
    """Every `every` s: server memory, and the latency of one health check (liveness must stay fast)."""
    t0 = time.monotonic()
    while True:
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(host + HEALTH_PATH, timeout=30) as r:
                health = r.status
        except OSError as e:
            health = getattr(e, "code", None) or type(e).__name__
        out.append({"t_s": round(time.monotonic() - t0, 1),
                    "health_ms": round((time.perf_counter() - start) * 1000, 1), "health_status": health,
                    "rss_mb": round(server_rss_mb(pid), 1) if pid else None})
        gevent.sleep(every)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--spawn-rate", type=float, default=0, help="users started per second (0 = all at once)")
    parser.add_argument("--host", help="a running server (default: start one on a free port)")
    parser.add_argument("--server-pid", type=int, help="with --host: gunicorn master pid, to sample its memory")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment for the server this script starts, e.g. VISAGE_QUEUE_TIMEOUT=2")
    parser.add_argument("--gunicorn-args", default="", help='extra gunicorn options, e.g. "--threads 2"')
    parser.add_argument("--server-log", help="append the server's stderr (one line per request) to this file")
    parser.add_argument("--ignore-retry-after", action="store_true",
                        help="send the next request at once after a 503 (default: wait Retry-After seconds)")
    parser.add_argument("--out", type=Path, help="report path (default reports/load_<users>u.json)")
    args = parser.parse_args(argv)
    global HONOR_RETRY_AFTER
    HONOR_RETRY_AFTER = not args.ignore_retry_after

    server = None
    if args.host:
        host, pid = args.host.rstrip("/"), args.server_pid
    else:
        port = free_port()
        server = start_server(port, dict(kv.split("=", 1) for kv in args.env), args.gunicorn_args.split(),
                              open(args.server_log, "ab") if args.server_log else subprocess.DEVNULL)
        host, pid = f"http://127.0.0.1:{port}", server.pid
    try:
        wait_ready(host)
        samples: list = []
        sampler = gevent.spawn(sample, host, pid, 1.0, samples)
        env = Environment(user_classes=[PhotoUser], host=host, events=events)
        runner = env.create_local_runner()
        runner.start(args.users, spawn_rate=args.spawn_rate or args.users)
        gevent.spawn_later(args.seconds, runner.quit)
        started = time.monotonic()
        runner.greenlet.join()
        elapsed = time.monotonic() - started
        sampler.kill()
    finally:
        if server:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:    # workers still busy with queued requests
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(30)

    stats = env.stats.entries[(API_PATH, "POST")]
    ok = STATUS_COUNTS.get(200, 0)
    rss = [s["rss_mb"] for s in samples if s["rss_mb"]]
    health_ms = [s["health_ms"] for s in samples]
    report = {
        "users": args.users, "seconds": round(elapsed, 1), "host": host,
        "server_env": args.env, "gunicorn_args": args.gunicorn_args, "honor_retry_after": HONOR_RETRY_AFTER,
        "requests": stats.num_requests, "ok": ok,
        "requests_per_s": round(stats.num_requests / elapsed, 2), "ok_per_s": round(ok / elapsed, 2),
        "latency_ms": {f"p{int(q * 100)}": stats.get_response_time_percentile(q) for q in (0.5, 0.95, 0.99)},
        "latency_ms_max": round(stats.max_response_time or 0, 1),
        "status_counts": {str(k): v for k, v in sorted(STATUS_COUNTS.items())},
        # status 0: no HTTP answer at all (connection refused/reset, client timeout)
        "errors_other_than_503": sum(v for k, v in STATUS_COUNTS.items() if k not in (200, 503)),
        "errors": {str(e.error): e.occurrences for e in env.stats.errors.values()},
        "retry_after_values": {str(k): v for k, v in RETRY_AFTER.items()},
        "health_ms": {"p50": percentile(health_ms, 0.5), "max": max(health_ms, default=None),
                      "non_200": sum(1 for s in samples if s["health_status"] != 200)},
        "server_rss_mb": {"first": rss[0] if rss else None, "last": rss[-1] if rss else None,
                          "max": max(rss, default=None)},
        "samples": samples,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version()},
    }
    out = args.out or ROOT / "reports" / f"load_{args.users}u.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    summary = {k: report[k] for k in ("users", "seconds", "requests_per_s", "ok_per_s", "latency_ms",
                                      "status_counts", "errors_other_than_503", "health_ms", "server_rss_mb")}
    print(json.dumps(summary, indent=1))
    print(f"report: {out}")
    return report


if __name__ == "__main__":
    main()
