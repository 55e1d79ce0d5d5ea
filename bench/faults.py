"""Faults against a live deployment: what survives a killed worker, a Redis or PostgreSQL restart, a deploy.

Starts a deployment of its own, as docs/deploy.md describes it (so it may stop its parts): redis-server and
a PostgreSQL cluster on free ports, gunicorn with gunicorn.conf.py (2 workers, VISAGE_REDIS_URL and
VISAGE_DATABASE_URL set), two RQ workers (python -m app.jobs.worker), the models in models/ (or --models).
Everything is driven over real HTTP. Then, in turn:

  worker_killed    a video job's worker gets SIGKILL mid-job: seconds until the other worker runs it, and until done
  worker_frozen    the same with SIGSTOP (alive but silent, as a frozen or unreachable machine): the heartbeat tells
  redis_down       Redis stopped: photo, page, login, video upload (503 + Retry-After?), /ready; restarted: a new job
  postgres_down    PostgreSQL stopped: photo, save, history, /ready; restarted: save and history without a restart
  deploy_sigterm   SIGTERM to gunicorn with 8 photo analyses in flight: how many were answered

    python bench/faults.py                     # prints what survived, writes reports/faults.json
    python bench/faults.py --stale 30          # VISAGE_JOB_STALE_SECONDS for the deployment (default: 30)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from tests.services import (PostgresServer, RedisServer, free_port, python_env, start_gunicorn,  # noqa: E402
                            start_worker, stop_process, wait_for)
from tests.video_clips import one_face_clip  # noqa: E402

PASSWORD = "correct horse battery staple"


class Deployment:
    def __init__(self, folder: Path, models: str, stale: int):
        self.folder = folder
        self.redis = RedisServer().start()
        self.postgres = PostgresServer().start()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = python_env(VISAGE_MODELS_DIR=models, VISAGE_REDIS_URL=self.redis.url,
                              VISAGE_DATABASE_URL=self.postgres.url, VISAGE_VIDEO_DIR=folder / "video",
                              VISAGE_INSTANCE_DIR=folder / "instance", VISAGE_SECRET_KEY="bench-faults",
                              VISAGE_JOB_STALE_SECONDS=stale, VISAGE_LOGIN_RATE_LIMIT="1000 per minute",
                              TF_NUM_INTRAOP_THREADS=1, TF_NUM_INTEROP_THREADS=1, VISAGE_OPENCV_THREADS=1)
        self.workers = {}
        self.gunicorn = None

    def start_web(self):
        self.gunicorn = start_gunicorn(self.env, self.port, self.folder / "gunicorn.log", workers=2)

    def start_worker(self, name: str):
        self.workers[name] = start_worker(self.env, self.folder / f"worker-{name}.log", name)

    def close(self):
        for proc in [self.gunicorn, *self.workers.values()]:
            if proc is not None:
                stop_process(proc, signal.SIGKILL)
        self.redis.stop()
        self.postgres.destroy()


def hidden_fields(html: str) -> dict:
    return dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*type="hidden"[^>]*value="([^"]*)"', html)) | \
        dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', html))


def account(base: str) -> tuple[requests.Session, str]:
    """A registered, logged-in browser session and an API token, over HTTP with the forms' CSRF tokens."""
    s = requests.Session()
    email = f"bench-{os.getpid()}-{int(time.time())}@example.com"
    form = hidden_fields(s.get(f"{base}/register").text)
    r = s.post(f"{base}/register", data={**form, "email": email, "password": PASSWORD}, allow_redirects=False)
    assert r.status_code == 302, r.text[:500]
    form = hidden_fields(s.get(f"{base}/account").text)
    r = s.post(f"{base}/account/tokens", data={**form, "tok-name": "bench"})
    token = re.search(r"<code>(vsg_[\w-]+)</code>", r.text).group(1)
    return s, token


def post_video(base: str, clip: Path) -> requests.Response:
    with open(clip, "rb") as f:
        return requests.post(f"{base}/api/v1/videos", files={"video": ("clip.mp4", f)},
                             data={"fps": "10", "annotate": "false"}, timeout=120)


def job(base: str, job_id: str) -> dict:
    return requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=30).json()


def photo(base: str, jpeg: bytes, **kw) -> requests.Response:
    return requests.post(f"{base}/api/v1/analyze", files={"image": ("a.jpg", jpeg)}, timeout=120, **kw)


def record(d: Deployment, job_id: str) -> dict:
    """The job's record straight from Redis: reading it through the API would check it for the workers."""
    import redis
    raw = redis.Redis.from_url(d.redis.url).hgetall(f"visage:job:{job_id}")
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def worker_lost(d: Deployment, clip: Path, sig: int) -> dict:
    """Start a job, hit its worker with `sig` (SIGKILL: dead; SIGSTOP: alive but silent, as a frozen or
    unreachable machine looks), then watch the record without reading it through the API, so that only the
    other workers' sweeps act: seconds until the job is queued again, and until it is done."""
    while len([w for w in d.workers.values() if w.poll() is None]) < 2:
        d.start_worker(f"w{len(d.workers)}")
    job_id = post_video(d.base, clip).json()["id"]
    wait_for(lambda: record(d, job_id).get("status") == "running" and record(d, job_id).get("pid"), 300,
             "a worker starts the job", interval=0.2)
    pid = record(d, job_id)["pid"]
    victim = next(name for name, proc in d.workers.items() if proc.pid == pid)
    os.kill(pid, sig)
    hit = time.monotonic()
    seen = {"requeued_after_s": None}

    def ended():
        r = record(d, job_id)
        if seen["requeued_after_s"] is None and (r.get("attempts") or 1) >= 2:
            seen["requeued_after_s"] = round(time.monotonic() - hit, 1)
        return r if r.get("status") in ("done", "failed", "cancelled") else None
    try:
        final = wait_for(ended, 600, "the job ends", interval=0.5)
    finally:
        stop_process(d.workers[victim], signal.SIGKILL)
    time.sleep(1)
    uploads = list((d.folder / "video" / "uploads").iterdir())
    return {"status": final["status"], "error": final["error"], "lost": final.get("lost"),
            "requeued_after_s": seen["requeued_after_s"], "ended_after_s": round(time.monotonic() - hit, 1),
            "uploads_left": len(uploads), "survived": final["status"] == "done" and not uploads}


def redis_down(d: Deployment, clip: Path, jpeg: bytes) -> dict:
    d.redis.stop()
    out = {"photo": photo(d.base, jpeg).status_code, "page": requests.get(f"{d.base}/", timeout=30).status_code}
    s = requests.Session()                  # register, log out, log in: the rate-limited forms
    email = f"redis-down-{os.getpid()}-{int(time.time())}@example.com"
    form = hidden_fields(s.get(f"{d.base}/register").text)
    out["register"] = s.post(f"{d.base}/register", data={**form, "email": email, "password": PASSWORD},
                             allow_redirects=False).status_code
    s = requests.Session()
    form = hidden_fields(s.get(f"{d.base}/login").text)
    out["login"] = s.post(f"{d.base}/login", data={**form, "email": email, "password": PASSWORD},
                          allow_redirects=False).status_code
    r = post_video(d.base, clip)
    out.update(video_upload=r.status_code, video_retry_after=r.headers.get("Retry-After"),
               video_error=r.json().get("error", {}).get("code") if r.headers.get("content-type", "").startswith(
                   "application/json") else None,
               ready=requests.get(f"{d.base}/api/v1/ready", timeout=30).json().get("dependencies"))
    d.redis.start()
    started = time.monotonic()
    r = post_video(d.base, clip)
    job_id = r.json()["id"]
    record = wait_for(lambda: (lambda j: j if j["status"] in ("done", "failed") else None)(job(d.base, job_id)),
                      600, "the job after Redis came back", interval=0.5)
    out.update(after_restart_upload=r.status_code, after_restart_job=record["status"],
               after_restart_job_s=round(time.monotonic() - started, 1))
    out["survived"] = (out["photo"] == 200 and out["page"] == 200 and out["register"] == 302 and out["login"] == 302
                       and out["video_upload"] == 503 and out["video_retry_after"] is not None
                       and out["after_restart_job"] == "done")
    return out


def postgres_down(d: Deployment, jpeg: bytes) -> dict:
    session, token = account(d.base)
    auth = {"Authorization": f"Bearer {token}"}
    d.postgres.stop()
    out = {"photo_anonymous": photo(d.base, jpeg).status_code, "photo_with_token": photo(d.base, jpeg, headers=auth).status_code}
    r = photo(d.base, jpeg, headers=auth, params={"save": "true"})
    out.update(save=r.status_code, save_retry_after=r.headers.get("Retry-After"),
               history=session.get(f"{d.base}/history", timeout=30).status_code,
               dashboard=session.get(f"{d.base}/dashboard", timeout=30).status_code,
               ready=requests.get(f"{d.base}/api/v1/ready", timeout=30).json().get("dependencies"))
    d.postgres.start()
    out.update(after_restart_save=photo(d.base, jpeg, headers=auth, params={"save": "true"}).status_code,
               after_restart_history=session.get(f"{d.base}/history", timeout=30).status_code)
    out["survived"] = (out["photo_anonymous"] == 200 and out["photo_with_token"] == 200 and out["save"] == 503
                       and out["history"] == 503 and out["after_restart_save"] == 200
                       and out["after_restart_history"] == 200)
    return out


def deploy_sigterm(d: Deployment, jpeg: bytes, in_flight: int = 8) -> dict:
    answers = [None] * in_flight
    first = threading.Event()

    def send(i):
        try:
            answers[i] = photo(d.base, jpeg).status_code
        except requests.RequestException as e:
            answers[i] = type(e).__name__
        first.set()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(in_flight)]
    for t in threads:
        t.start()
    first.wait(120)
    os.killpg(d.gunicorn.pid, signal.SIGTERM)
    for t in threads:
        t.join(180)
    code = d.gunicorn.wait(120)
    answered = sum(a == 200 for a in answers)
    return {"in_flight": in_flight, "answered_200": answered, "answers": answers, "gunicorn_exit": code,
            "survived": answered == in_flight}


def big_photo() -> bytes:
    import io

    import numpy as np
    from PIL import Image
    from skimage import data as skdata
    buffer = io.BytesIO()
    Image.fromarray(np.tile(skdata.astronaut(), (3, 3, 1))).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=str(ROOT / "models"))
    p.add_argument("--stale", type=int, default=30, help="VISAGE_JOB_STALE_SECONDS (default 30, as shipped)")
    p.add_argument("--out", default=str(ROOT / "reports" / "faults.json"))
    args = p.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="visage-faults-"))
    clip = one_face_clip(folder / "clip.mp4", seconds=30.0, fps=10, size=(320, 240))
    jpeg = big_photo()
    d = Deployment(folder, args.models, args.stale)
    results = {}
    try:
        d.start_web()
        d.start_worker("a")
        d.start_worker("b")
        for name, run in (("worker_killed", lambda: worker_lost(d, clip, signal.SIGKILL)),
                          ("worker_frozen", lambda: worker_lost(d, clip, signal.SIGSTOP)),
                          ("redis_down", lambda: redis_down(d, clip, jpeg)),
                          ("postgres_down", lambda: postgres_down(d, jpeg)),
                          ("deploy_sigterm", lambda: deploy_sigterm(d, jpeg))):
            started = time.monotonic()
            try:
                results[name] = run()
            except Exception as e:   # noqa: BLE001 - report it and go on with the next fault
                results[name] = {"survived": False, "exception": f"{type(e).__name__}: {e}"}
            results[name]["took_s"] = round(time.monotonic() - started, 1)
            print(f"{name:15s} {'survived' if results[name]['survived'] else 'NOT SURVIVED'}  "
                  + json.dumps({k: v for k, v in results[name].items() if k != "survived"}), flush=True)
    finally:
        d.close()
        shutil.rmtree(folder, ignore_errors=True)
    report = {"machine": platform.platform(), "cpus": os.cpu_count(), "stale_seconds": args.stale,
              "models": args.models, "results": results,
              "survived": sum(r["survived"] for r in results.values()), "faults": len(results)}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{report['survived']}/{report['faults']} faults survived; {args.out}")
    return 0 if report["survived"] == report["faults"] else 1


if __name__ == "__main__":
    sys.exit(main())
