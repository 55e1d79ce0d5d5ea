"""What the web app (and the tests) use: start a job, read it, cancel it. Jobs (any job function) and
VideoJobs (an uploaded video analysed by app.jobs.video.run_video_job)."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from app.jobs.runners import EmbeddedRunner, RqRunner
from app.jobs.store import FINISHED, FileStore, RedisStore, new_job_id, prune_folders
from app.jobs.supervise import Reaper, beat_period
from app.jobs.video import result_dir

SWEEP_SECONDS = 10.0            # how often a process with the embedded runner (or an RQ worker) looks for lost jobs


class Jobs:
    """Job records and a runner (embedded thread pool, or RQ when VISAGE_REDIS_URL is set), for any job function.

    start(record, func, args, queue=...) creates the record and queues func(*args) under a heartbeat; a job
    whose process dies is queued again (VISAGE_JOB_ATTEMPTS in all) or failed with a reason
    (app/jobs/supervise.py), and its record's "upload" file is deleted when it finally ends.
    """

    def __init__(self, config: dict):
        self.config = config
        self.video_dir = Path(config["VISAGE_VIDEO_DIR"] or Path(tempfile.gettempdir()) / "visage-video")
        (self.video_dir / "uploads").mkdir(parents=True, exist_ok=True)
        url = config["VISAGE_REDIS_URL"]
        beat = beat_period(config["VISAGE_JOB_STALE_SECONDS"])
        if url:
            self.store = RedisStore(url, config["VISAGE_REDIS_PREFIX"])
            self.runner = RqRunner(self.store.spec(), url, config["VISAGE_VIDEO_QUEUE"],
                                   job_timeout=config["VISAGE_VIDEO_JOB_TIMEOUT"], beat_seconds=beat)
        else:
            self.store = FileStore(self.video_dir)
            self.runner = EmbeddedRunner(self.store.spec(), config["VISAGE_VIDEO_WORKERS"], beat_seconds=beat)
        self.where = "rq" if url else "embedded"
        self.reaper = Reaper(self.store, self.runner, config["VISAGE_JOB_STALE_SECONDS"], config["VISAGE_JOB_ATTEMPTS"])
        if self.where == "embedded":
            # Jobs left by a web process that died are queued again here (or failed), now and every few seconds.
            self.reaper.sweep()
            self.reaper.start(SWEEP_SECONDS)

    def prune(self) -> None:
        """Forget what is older than a day (records, result files), as a job is submitted: on the JSON
        store its records too, with Redis (which expires records itself) the result files only."""
        if isinstance(self.store, FileStore):
            self.store.prune(self.video_dir / "results")
        else:
            prune_folders(self.video_dir / "results")

    def upload_path(self, suffix: str = "") -> Path:
        """A fresh temporary file for one upload; the job deletes it when it ends."""
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=self.video_dir / "uploads")
        os.close(fd)
        return Path(name)

    def start(self, record: dict, func: str, args: list, job_id: str | None = None, queue: str | None = None) -> str:
        """Create the job's record (status queued) and queue func(*args); returns the job id.

        record: the job's own fields ("upload": a file to delete when the job finally ends, if any;
        "on_lost", "still_wanted": see Reaper.reap); func: the job function's dotted path; args: JSON-able;
        queue: the RQ queue (None: the video queue), kept in the record for a retry. The job function
        writes status running, progress, and done/failed/cancelled itself, and deletes the upload (as
        run_video_job does).
        If the queue is unavailable the upload is deleted and the error raised (redis.ConnectionError: 503).
        """
        job_id = job_id or new_job_id()
        now = time.time()
        self.store.create(job_id, {"id": job_id, "status": "queued", "progress": 0.0, "error": None, "result": None,
                                   **record, "func": func, "args": list(args), "queue": queue, "attempts": 1,
                                   **self.runner.owner(), "created_at": now, "updated_at": now})
        try:
            self.runner.submit(job_id, func, args, queue=queue)
        except Exception as e:
            if record.get("upload"):
                Path(record["upload"]).unlink(missing_ok=True)
            try:
                self.store.update(job_id, status="failed", error={"code": "queue_unavailable",
                                                                  "message": f"The job queue is unavailable ({e})."})
            except Exception:   # noqa: BLE001 - the store is down too; the caller reports the first error
                pass
            raise
        return job_id

    def get(self, job_id: str) -> dict | None:
        """The job's record; a job whose process died is queued again or failed first (never "running" forever)."""
        return self.reaper.check(self.store.get(job_id))

    def cancel(self, job_id: str) -> dict | None:
        record = self.store.get(job_id)
        if record is None or record["status"] in FINISHED:
            return record
        self.store.request_cancel(job_id)
        if record["status"] == "queued" and self.runner.cancel_queued(job_id, int(record.get("attempts") or 1)):
            if record.get("upload"):
                Path(record["upload"]).unlink(missing_ok=True)     # the job will never run to delete it
            self.store.update(job_id, status="cancelled", finished_at=time.time())
        return self.store.get(job_id)


class VideoJobs(Jobs):
    """What the web app (and the CLI's tests) use: submit an uploaded video, read a job, cancel it."""

    def submit(self, path: Path, options: dict, filename: str = "") -> str:
        job_id = new_job_id()
        cfg = self.config
        self.prune()
        options = {**options, "store": self.store.spec(), "models_dir": str(cfg["VISAGE_MODELS_DIR"]),
                   "video_dir": str(self.video_dir), "max_seconds": cfg["VISAGE_MAX_VIDEO_SECONDS"],
                   "max_pixels": cfg["VISAGE_MAX_VIDEO_PIXELS"]}
        record = {"filename": filename, "upload": str(path),
                  "options": {k: options[k] for k in ("fps", "detector", "annotate", "blur") if k in options}}
        return self.start(record, "app.jobs.video.run_video_job", [job_id, str(path), options], job_id=job_id)

    def result_file(self, job_id: str, name: str) -> Path:
        return result_dir({"video_dir": self.video_dir}, job_id) / name
