"""What the web app (and the tests) use: submit an upload as a job, read a job, cancel it."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from app.jobs.runners import EmbeddedRunner, RqRunner
from app.jobs.store import FINISHED, FileStore, RedisStore, new_job_id
from app.jobs.video import result_dir


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
