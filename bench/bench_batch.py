"""Benchmark batches: photos per second with the embedded worker, 1 RQ worker and 2 RQ workers, and
each worker's memory (resident set) at the start of the batch, its peak and at the end.

N one-face photos (tests/batch_photos.py: skimage's astronaut at different sizes and places, 480x480
JPEGs) go through the real batch path (BatchJobs: intake, chunks, the shipped models in models/, the
default detector VISAGE_DEFAULT_DETECTOR). Every worker is single-threaded (TensorFlow, ONNX Runtime,
OpenCV: one thread each, as `make run`), so 2 workers can use at most the 2 cores. The clock runs from
the submit (the photos already in the job's folder) to the batch's end. RQ needs Redis (a queue name
of its own per run). On a loaded machine read the ratios, measured in the same run, not the absolutes.

    python bench/bench_batch.py                    # 1,000 photos → reports/batch_benchmark.json
    python bench/bench_batch.py --photos 200 --modes embedded rq1

Besides the wall clock, each run records the CPU time its workers got: CPU ms per photo (the work,
which must not grow with more workers) and cores used (CPU seconds / wall seconds: at most 1 per
worker; below that, other processes had the cores). The machine's load changes by the minute, so the modes run in turn, --rounds times (default 2);
each round's rq2/rq1 ratio compares two runs a few minutes apart, and the report gives every run
and the median per mode.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

SINGLE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1",
                 "VISAGE_OPENCV_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
os.environ.update(SINGLE_THREAD)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import settings  # noqa: E402
from app.jobs import VideoJobs  # noqa: E402
from app.jobs.batch_service import BatchJobs  # noqa: E402
from tests.batch_photos import one_face_photos  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MemoryWatch:
    """Samples the resident set of some processes every 0.2 s: start, peak, end per process."""

    def __init__(self, pids):
        self.samples = {pid: [rss_mb(pid)] for pid in pids}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(0.2):
            for pid, values in self.samples.items():
                try:
                    values.append(rss_mb(pid))
                except OSError:
                    pass

    def finish(self) -> list[dict]:
        self.stop.set()
        self.thread.join()
        for pid, values in self.samples.items():
            values.append(rss_mb(pid))
        return [{"start_mb": round(v[0], 1), "peak_mb": round(max(v), 1), "end_mb": round(v[-1], 1),
                 "samples": len(v)} for v in self.samples.values()]


def run_batch(batches: BatchJobs, photos, pids) -> dict:
    job_id, intake = batches.new_batch()
    for name, data in photos:
        path = intake.new_path()
        path.write_bytes(data)
        intake.add_upload(name, path)
    watch = MemoryWatch(pids)
    cpu_start = [cpu_seconds(pid) for pid in pids]
    start = time.perf_counter()
    batches.submit(job_id, intake, {"detector": batches.config["VISAGE_DEFAULT_DETECTOR"], "profile": "accurate"})
    while (record := batches.get(job_id))["status"] not in ("done", "failed", "cancelled"):
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_start)]
    memory = watch.finish()
    summary = record["result"]["summary"]
    return {"status": record["status"], "photos": summary["photos"], "faces": summary["faces"],
            "failed": summary["failed"], "seconds": round(seconds, 1),
            "photos_per_second": round(summary["photos"] / seconds, 2), "workers_seen": summary["workers"],
            # CPU the workers got: per photo (the work itself) and in cores (what the machine's load left them)
            "cpu_ms_per_photo": round(1000 * sum(cpu) / summary["photos"], 1),
            "cores_used": round(sum(cpu) / seconds, 2),
            "worker_memory": memory}


def start_workers(n: int, cfg: dict, tag: str, own_sessions: bool = True):
    env = {**os.environ, **SINGLE_THREAD, "VISAGE_REDIS_URL": cfg["VISAGE_REDIS_URL"],
           "VISAGE_VIDEO_QUEUE": cfg["VISAGE_VIDEO_QUEUE"], "VISAGE_BATCH_QUEUE": cfg["VISAGE_BATCH_QUEUE"],
           "VISAGE_MODELS_DIR": cfg["VISAGE_MODELS_DIR"]}
    # Each worker in a session of its own, as separate services (systemd units) are: with the kernel's
    # autogroup scheduling, processes of one session share one CPU share however many they are.
    procs = [subprocess.Popen([sys.executable, "-m", "app.jobs.worker", "--name", f"{tag}-{i}"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=own_sessions) for i in range(n)]
    import redis
    from rq import Queue, Worker
    queue = Queue(cfg["VISAGE_BATCH_QUEUE"], connection=redis.Redis.from_url(cfg["VISAGE_REDIS_URL"]))
    deadline = time.monotonic() + 300
    while len(Worker.all(queue=queue)) < n:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError("the RQ workers did not start")
        time.sleep(0.2)
    return procs


def run_mode(mode: str, base: dict, photos, redis_url: str, own_sessions: bool = True) -> dict:
    if mode == "embedded":
        cfg = {**base, "VISAGE_REDIS_URL": ""}
        import numpy as np

        from app.pipeline.analyze import find_faces
        from app.pipeline.predict import load_predictor
        load_predictor(cfg["VISAGE_MODELS_DIR"])          # loaded before the clock, as a worker does
        find_faces(np.zeros((64, 64, 3), np.uint8), cfg["VISAGE_DEFAULT_DETECTOR"])
        return run_batch(BatchJobs(cfg, VideoJobs(cfg)), photos, [os.getpid()])
    tag = f"bench-batch-{uuid.uuid4().hex[:8]}"
    cfg = {**base, "VISAGE_REDIS_URL": redis_url, "VISAGE_REDIS_PREFIX": f"{tag}:",
           "VISAGE_VIDEO_QUEUE": f"{tag}-video", "VISAGE_BATCH_QUEUE": f"{tag}-batch"}
    procs = start_workers(int(mode[-1]), cfg, tag, own_sessions)
    try:
        return run_batch(BatchJobs(cfg, VideoJobs(cfg)), photos, [p.pid for p in procs])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def report(args, runs: list, complete: bool) -> None:
    """Write the JSON report (after every run; complete=False while rounds remain)."""
    rate = {(r["round"], r["mode"]): r["photos_per_second"] for r in runs}
    cores = {(r["round"], r["mode"]): r["cores_used"] for r in runs}
    ratios = {}
    for round_ in range(1, args.rounds + 1):
        if (round_, "rq1") in rate and (round_, "rq2") in rate:
            ratios[f"round{round_}_rq2_over_rq1"] = round(rate[round_, "rq2"] / rate[round_, "rq1"], 2)
            ratios[f"round{round_}_rq2_over_rq1_cores_used"] = round(cores[round_, "rq2"] / cores[round_, "rq1"], 2)
        if (round_, "rq1") in rate and (round_, "embedded") in rate:
            ratios[f"round{round_}_rq1_over_embedded"] = round(rate[round_, "rq1"] / rate[round_, "embedded"], 2)
    medians = {mode: statistics.median(r["photos_per_second"] for r in runs if r["mode"] == mode)
               for mode in args.modes if any(r["mode"] == mode for r in runs)}
    if "rq1" in medians and "rq2" in medians:
        ratios["median_rq2_over_rq1"] = round(medians["rq2"] / medians["rq1"], 2)
    if complete:
        print("median photos/s:", medians, "ratios:", ratios)
    load = os.getloadavg()
    doc = {"photos": args.photos, "detector": settings.from_environment()["VISAGE_DEFAULT_DETECTOR"],
           "profile": "accurate", "chunk": settings.from_environment()["VISAGE_BATCH_CHUNK"],
           "runs": runs, "median_photos_per_second": medians, "ratios": ratios, "complete": complete,
           "conditions": {"cpus": os.cpu_count(), "load_average_1_5_15": [round(x, 2) for x in load],
                          "python": platform.python_version(), "threads_per_worker": 1,
                          "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=1000)
    p.add_argument("--modes", nargs="+", default=["embedded", "rq1", "rq2"], choices=["embedded", "rq1", "rq2"])
    p.add_argument("--rounds", type=int, default=2, help="run the modes in turn this many times")
    p.add_argument("--one-session", action="store_true",
                   help="start the RQ workers in this process's session (one CPU share for all of them: docs/speed.md)")
    p.add_argument("--redis", default=os.environ.get("VISAGE_REDIS_URL") or "redis://127.0.0.1:6379/12")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "batch_benchmark.json")
    args = p.parse_args()
    import tempfile
    photos = one_face_photos(args.photos)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        base = {**settings.from_environment(), "VISAGE_VIDEO_DIR": tmp}
        base["VISAGE_MAX_BATCH_FILES"] = max(base["VISAGE_MAX_BATCH_FILES"], args.photos)
        for round_ in range(1, args.rounds + 1):
            for mode in args.modes:
                r = {"round": round_, "mode": mode, "load_average_1min": round(os.getloadavg()[0], 2),
                     "own_sessions": not args.one_session,
                     **run_mode(mode, base, photos, args.redis, not args.one_session)}
                runs.append(r)
                print(f"round {round_} {mode:9s} {r['photos']} photos ({r['faces']} faces, {r['failed']} failed) in "
                      f"{r['seconds']:7.1f} s = {r['photos_per_second']:5.2f} photos/s, load {r['load_average_1min']}, "
                      f"{r['cpu_ms_per_photo']} CPU ms/photo, {r['cores_used']} cores used; "
                      f"memory per worker (start/peak/end MB): "
                      + ", ".join(f"{m['start_mb']:.0f}/{m['peak_mb']:.0f}/{m['end_mb']:.0f}" for m in r["worker_memory"]),
                      flush=True)
                report(args, runs, complete=False)
    report(args, runs, complete=True)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
