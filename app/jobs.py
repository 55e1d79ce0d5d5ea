"""Background video jobs: one job function, run by an embedded thread pool or by RQ workers on Redis.

    run_video_job(job_id, path, options)   # the job: analyse, render, record, delete the upload

Where job state lives (status, progress, error, result):
  - VISAGE_REDIS_URL set: a Redis hash per job (RedisStore), so the web processes and any number
    of `python -m app.worker` / `rq worker` processes on any machine see the same jobs;
  - otherwise: one JSON file per job under VISAGE_VIDEO_DIR (FileStore), so both gunicorn worker
    processes of `make run` answer for a job that the other one runs.
A cancel request is a separate flag (a hash field / a file), so the job's own progress writes
cannot overwrite it. No Flask here: the worker processes import this module without the web app.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.pipeline.errors import InputError, JobCancelled

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
KEEP_SECONDS = 24 * 3600        # job records (and their results) are kept this long
PROGRESS_EVERY = 0.5            # seconds between progress writes
ANALYSIS_SHARE = 0.8            # of the progress bar, when an annotated video is rendered after the analysis


def new_job_id() -> str:
    return uuid.uuid4().hex


# ---------------------------------------------------------------- stores

class FileStore:
    """Job records as JSON files (atomic replace), for the embedded worker."""

    def __init__(self, root):
        self.root = Path(root) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, job_id: str, suffix: str = ".json") -> Path:
        if not job_id.isalnum():                    # ids are hex; never let one name another path
            raise KeyError(job_id)
        return self.root / f"{job_id}{suffix}"

    def create(self, job_id: str, record: dict) -> None:
        self._write(job_id, record)

    def get(self, job_id: str) -> dict | None:
        try:
            return json.loads(self._path(job_id).read_text())
        except (OSError, ValueError, KeyError):
            return None

    def update(self, job_id: str, **fields) -> None:
        record = self.get(job_id) or {}
        record.update(fields, updated_at=time.time())
        self._write(job_id, record)

    def _write(self, job_id: str, record: dict) -> None:
        path = self._path(job_id)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def request_cancel(self, job_id: str) -> None:
        self._path(job_id, ".cancel").touch()

    def prune(self, results: Path, older_than: float = KEEP_SECONDS) -> None:
        """Forget jobs (and their result files) older than a day, as Redis expires them."""
        cutoff = time.time() - older_than
        for path in self.root.glob("*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(results / path.stem, ignore_errors=True)
                    path.unlink(missing_ok=True)
                    path.with_suffix(".cancel").unlink(missing_ok=True)
            except OSError:
                pass

    def cancel_requested(self, job_id: str) -> bool:
        return self._path(job_id, ".cancel").exists()

    def spec(self) -> dict:
        return {"kind": "files", "root": str(self.root.parent)}


class RedisStore:
    """Job records as Redis hashes (one JSON value per field), shared by web processes and RQ workers."""

    def __init__(self, url: str, prefix: str = "visage:"):
        import redis
        self.url, self.prefix = url, prefix
        self.redis = redis.Redis.from_url(url)

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def create(self, job_id: str, record: dict) -> None:
        key = self._key(job_id)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={k: json.dumps(v) for k, v in record.items()})
        pipe.expire(key, KEEP_SECONDS)
        pipe.execute()

    def get(self, job_id: str) -> dict | None:
        raw = self.redis.hgetall(self._key(job_id))
        return {k.decode(): json.loads(v) for k, v in raw.items()} or None

    def update(self, job_id: str, **fields) -> None:
        fields["updated_at"] = time.time()
        self.redis.hset(self._key(job_id), mapping={k: json.dumps(v) for k, v in fields.items()})

    def request_cancel(self, job_id: str) -> None:
        self.redis.hset(self._key(job_id), "cancel_requested", "true")

    def cancel_requested(self, job_id: str) -> bool:
        return self.redis.hget(self._key(job_id), "cancel_requested") == b"true"

    def spec(self) -> dict:
        return {"kind": "redis", "url": self.url, "prefix": self.prefix}


def store_from(spec: dict):
    return RedisStore(spec["url"], spec["prefix"]) if spec["kind"] == "redis" else FileStore(spec["root"])


# ---------------------------------------------------------------- the job

def result_dir(options: dict, job_id: str) -> Path:
    return Path(options["video_dir"]) / "results" / job_id


def run_video_job(job_id: str, path: str, options: dict) -> str:
    """Analyse the uploaded video at `path`, record the outcome, and always delete the upload.

    options: store (spec), models_dir, video_dir, fps, detector, min_face, max_seconds, max_pixels,
    annotate, blur. Returns the final status (RQ keeps it as the job's return value).
    """
    from app.pipeline.video import analyze_video, render_annotated, video_predictor
    store = store_from(options["store"])
    last_write = 0.0

    def should_cancel() -> bool:
        return store.cancel_requested(job_id)

    def report(share_start: float, share: float):
        def progress(done: int, total: int) -> None:
            nonlocal last_write
            now = time.monotonic()
            if now - last_write >= PROGRESS_EVERY or done >= total:
                last_write = now
                store.update(job_id, progress=round(share_start + share * done / max(total, 1), 4))
        return progress

    try:
        record = store.get(job_id)
        if record is None or record.get("status") == "cancelled" or should_cancel():
            raise JobCancelled()
        store.update(job_id, status="running", started_at=time.time(), progress=0.0)
        predictor = video_predictor(options["models_dir"])
        annotate = bool(options.get("annotate"))
        analysis_share = ANALYSIS_SHARE if annotate else 1.0
        result = analyze_video(path, predictor, fps=options.get("fps", 5.0),
                               detector=options.get("detector", "haar"), min_face=options.get("min_face", 0.0),
                               max_seconds=options["max_seconds"], max_pixels=options["max_pixels"],
                               progress=report(0.0, analysis_share), should_cancel=should_cancel)
        result["files"] = {}
        if annotate:
            out = result_dir(options, job_id)
            out.mkdir(parents=True, exist_ok=True)
            render_annotated(path, result, out / "annotated.mp4", blur=bool(options.get("blur")),
                             progress=report(analysis_share, 1.0 - analysis_share), should_cancel=should_cancel)
            result["files"]["annotated"] = "annotated.mp4"
            result["blurred"] = bool(options.get("blur"))
        store.update(job_id, status="done", progress=1.0, result=result, finished_at=time.time())
        return "done"
    except JobCancelled:
        shutil.rmtree(result_dir(options, job_id), ignore_errors=True)
        store.update(job_id, status="cancelled", finished_at=time.time())
        return "cancelled"
    except InputError as e:
        store.update(job_id, status="failed", error={"code": e.code, "message": e.message}, finished_at=time.time())
        return "failed"
    except Exception as e:   # never a job stuck in "running": any crash is a failed job with a reason
        log.exception("video job %s failed", job_id)
        store.update(job_id, status="failed", finished_at=time.time(),
                     error={"code": "internal", "message": f"The analysis failed on our side ({type(e).__name__})."})
        return "failed"
    finally:
        Path(path).unlink(missing_ok=True)


# ---------------------------------------------------------------- where jobs run

class EmbeddedRunner:
    """A thread pool in the web process: `make run` needs nothing else."""

    def __init__(self, workers: int = 1):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="visage-video")
        self.futures = {}

    def submit(self, job_id: str, path: str, options: dict) -> None:
        self.futures[job_id] = self.pool.submit(run_video_job, job_id, path, options)

    def cancel_queued(self, job_id: str) -> bool:
        future = self.futures.get(job_id)
        return bool(future and future.cancel())

    def wait(self, job_id: str, timeout: float | None = None):
        """For tests and the CLI: block until the job ends."""
        return self.futures[job_id].result(timeout)


class RqRunner:
    """RQ on Redis: jobs wait in the queue until a worker (python -m app.worker, or rq worker) takes them."""

    def __init__(self, url: str, queue_name: str, job_timeout: int):
        import redis
        from rq import Queue
        self.queue = Queue(queue_name, connection=redis.Redis.from_url(url))
        self.job_timeout = job_timeout

    def submit(self, job_id: str, path: str, options: dict) -> None:
        self.queue.enqueue_call(run_video_job, args=(job_id, path, options), job_id=job_id,
                                timeout=self.job_timeout, result_ttl=KEEP_SECONDS, failure_ttl=KEEP_SECONDS)

    def cancel_queued(self, job_id: str) -> bool:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job
        try:
            job = Job.fetch(job_id, connection=self.queue.connection)
        except NoSuchJobError:
            return False
        if job.get_status() != "queued":
            return False
        job.cancel()
        return True


class VideoJobs:
    """What the web app (and the CLI's tests) use: submit an upload, read a job, cancel it."""

    def __init__(self, config: dict):
        self.config = config
        self.video_dir = Path(config["VISAGE_VIDEO_DIR"] or Path(tempfile.gettempdir()) / "visage-video")
        (self.video_dir / "uploads").mkdir(parents=True, exist_ok=True)
        url = config["VISAGE_REDIS_URL"]
        if url:
            self.store = RedisStore(url, config["VISAGE_REDIS_PREFIX"])
            self.runner = RqRunner(url, config["VISAGE_VIDEO_QUEUE"], job_timeout=config["VISAGE_VIDEO_JOB_TIMEOUT"])
        else:
            self.store = FileStore(self.video_dir)
            self.runner = EmbeddedRunner(config["VISAGE_VIDEO_WORKERS"])
        self.where = "rq" if url else "embedded"

    def upload_path(self, suffix: str = "") -> Path:
        """A fresh temporary file for one upload; the job deletes it when it ends."""
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=self.video_dir / "uploads")
        os.close(fd)
        return Path(name)

    def submit(self, path: Path, options: dict, filename: str = "") -> str:
        job_id = new_job_id()
        cfg = self.config
        if isinstance(self.store, FileStore):
            self.store.prune(self.video_dir / "results")
        options = {**options, "store": self.store.spec(), "models_dir": str(cfg["VISAGE_MODELS_DIR"]),
                   "video_dir": str(self.video_dir), "max_seconds": cfg["VISAGE_MAX_VIDEO_SECONDS"],
                   "max_pixels": cfg["VISAGE_MAX_VIDEO_PIXELS"]}
        now = time.time()
        self.store.create(job_id, {"id": job_id, "status": "queued", "progress": 0.0, "error": None,
                                   "result": None, "filename": filename, "upload": str(path),
                                   "options": {k: options[k] for k in ("fps", "detector", "annotate", "blur")
                                               if k in options},
                                   "created_at": now, "updated_at": now})
        try:
            self.runner.submit(job_id, str(path), options)
        except Exception as e:
            path.unlink(missing_ok=True)
            self.store.update(job_id, status="failed", error={"code": "queue_unavailable",
                                                              "message": f"The job queue is unavailable ({e})."})
            raise
        return job_id

    def get(self, job_id: str) -> dict | None:
        record = self.store.get(job_id)
        if record and record["status"] == "running" \
                and time.time() - record.get("updated_at", 0) > self.config["VISAGE_VIDEO_STALE_SECONDS"]:
            # The worker stopped reporting (killed, machine lost): say so instead of showing "running" forever.
            error = {"code": "worker_lost", "message": "The worker running this job stopped responding."}
            self.store.update(job_id, status="failed", error=error)
            record.update(status="failed", error=error)
        return record

    def cancel(self, job_id: str) -> dict | None:
        record = self.store.get(job_id)
        if record is None or record["status"] in FINISHED:
            return record
        self.store.request_cancel(job_id)
        if record["status"] == "queued" and self.runner.cancel_queued(job_id):
            Path(record["upload"]).unlink(missing_ok=True)     # the job will never run to delete it
            self.store.update(job_id, status="cancelled", finished_at=time.time())
        return self.store.get(job_id)

    def result_file(self, job_id: str, name: str) -> Path:
        return result_dir({"video_dir": self.video_dir}, job_id) / name
