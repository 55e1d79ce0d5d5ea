"""Where job records live (status, progress, error, result), shared by web processes and workers.

  - VISAGE_REDIS_URL set: a Redis hash per job (RedisStore), so the web processes and any number
    of `python -m app.jobs.worker` / `rq worker` processes on any machine see the same jobs;
  - otherwise: one JSON file per job under VISAGE_VIDEO_DIR (FileStore), so both gunicorn worker
    processes of `make run` answer for a job that the other one runs.
A cancel request is a separate flag (a hash field / a file), so the job's own progress writes
cannot overwrite it. So is the heartbeat of a running job (app/jobs/supervise.py): a `<id>.beat` file's
time, or a hash field plus a Redis set of the jobs that are running, which the reaper scans.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
KEEP_SECONDS = 24 * 3600        # job records (and their results) are kept this long


def _store_unavailable() -> tuple:
    """What a store raises while it cannot be reached: Redis connection errors, or OSError (a full disk)."""
    try:
        import redis
    except ImportError:
        return (OSError,)
    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


STORE_UNAVAILABLE = _store_unavailable()


def survive_outage(call, default=None, wait: float = 0.0):
    """A store call that may meet Redis restarting (or a full disk): retried for up to `wait` seconds.
    Progress writes and cancel checks give up at once and the job goes on; its outcome waits for the store."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return call()
        except STORE_UNAVAILABLE as e:
            if time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            if wait:
                raise
            log.warning("job store unavailable (%s); the job goes on", e)
            return default


FINAL_WRITE_WAIT = 60.0         # seconds the job's outcome waits for the store (a Redis restart) before giving up


def prune_folders(folder: Path, older_than: float = KEEP_SECONDS) -> None:
    """Remove the sub-folders of `folder` (jobs' result files: annotated MP4s) untouched for longer than
    their records live. With Redis the records expire there, and their files only go here."""
    cutoff = time.time() - older_than
    try:
        children = list(Path(folder).iterdir())
    except OSError:
        return
    for child in children:
        try:
            if child.is_dir() and child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            pass


def write_atomically(path: Path, text: str) -> None:
    """Write, then rename: a reader (another process or machine) never sees half a file, and a full
    disk leaves no half-written file behind. The temporary name starts with a dot, so globs of the
    folder's records (*.json, [0-9]*) never see it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


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
        write_atomically(self._path(job_id), json.dumps(record))

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
                    for suffix in (".cancel", ".lock", ".beat"):
                        path.with_suffix(suffix).unlink(missing_ok=True)
            except OSError:
                pass
        prune_folders(results, older_than)

    def cancel_requested(self, job_id: str) -> bool:
        return self._path(job_id, ".cancel").exists()

    # heartbeats of running jobs: the .beat file exists while a process runs the job; its time is the last beat
    def beat(self, job_id: str) -> None:
        self._path(job_id, ".beat").touch()

    def end_beat(self, job_id: str) -> None:
        self._path(job_id, ".beat").unlink(missing_ok=True)

    def last_beat(self, job_id: str, record: dict) -> float | None:
        try:
            return self._path(job_id, ".beat").stat().st_mtime
        except (OSError, KeyError):
            return None

    def active_ids(self) -> list[str]:
        """Jobs that may need the reaper: queued or running (a finished job's record is left alone)."""
        ids = []
        for path in self.root.glob("*.json"):
            record = self.get(path.stem)
            if record and record.get("status") in ("queued", "running"):
                ids.append(path.stem)
        return ids

    @contextlib.contextmanager
    def lock(self, job_id: str):
        """One reaper at a time per job, across processes; yields False when another holds it."""
        with open(self._path(job_id, ".lock"), "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    def spec(self) -> dict:
        return {"kind": "files", "root": str(self.root.parent)}


class RedisStore:
    """Job records as Redis hashes (one JSON value per field), shared by web processes and RQ workers."""

    def __init__(self, url: str, prefix: str = "visage:"):
        self.url, self.prefix = url, prefix
        self.redis = redis_client(url)

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

    def beat(self, job_id: str) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(self._key(job_id), "heartbeat_at", json.dumps(time.time()))
        pipe.sadd(f"{self.prefix}active", job_id)
        pipe.execute()

    def end_beat(self, job_id: str) -> None:
        self.redis.srem(f"{self.prefix}active", job_id)

    def last_beat(self, job_id: str, record: dict) -> float | None:
        return record.get("heartbeat_at")

    def active_ids(self) -> list[str]:
        """Jobs some process has started (queued jobs wait safely in Redis: RQ keeps them)."""
        return [m.decode() for m in self.redis.smembers(f"{self.prefix}active")]

    @contextlib.contextmanager
    def lock(self, job_id: str, seconds: int = 30):
        """One reaper at a time per job, across machines; yields False when another holds it."""
        key, token = f"{self.prefix}lock:{job_id}", uuid.uuid4().hex
        got = bool(self.redis.set(key, token, nx=True, ex=seconds))
        try:
            yield got
        finally:
            if got and self.redis.get(key) == token.encode():
                self.redis.delete(key)

    def spec(self) -> dict:
        return {"kind": "redis", "url": self.url, "prefix": self.prefix}


def redis_client(url: str):
    """A client that gives up on an unreachable Redis in seconds (a 503 then), and reconnects by itself."""
    import redis
    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30)


def store_from(spec: dict):
    return RedisStore(spec["url"], spec["prefix"]) if spec["kind"] == "redis" else FileStore(spec["root"])
