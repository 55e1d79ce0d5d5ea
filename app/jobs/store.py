"""Where job records live (status, progress, error, result), shared by web processes and workers.

  - VISAGE_REDIS_URL set: a Redis hash per job (RedisStore), so the web processes and any number
    of `python -m app.jobs.worker` / `rq worker` processes on any machine see the same jobs;
  - otherwise: one JSON file per job under VISAGE_VIDEO_DIR (FileStore), so both gunicorn worker
    processes of `make run` answer for a job that the other one runs.
A cancel request is a separate flag (a hash field / a file), so the job's own progress writes
cannot overwrite it.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
KEEP_SECONDS = 24 * 3600        # job records (and their results) are kept this long



def new_job_id() -> str:
    return uuid.uuid4().hex


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
