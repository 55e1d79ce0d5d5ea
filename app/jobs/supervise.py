"""Jobs end even when the process running them dies: heartbeats while a job runs, and a reaper.

run_job(store_spec, job_id, func, args) is what the runners execute, for any job function `func`
(a dotted path, "app.jobs.video.run_video_job"): it marks the job running in this process, beats every
few seconds (beat_period) while the function runs, and stops beating when it returns. The function itself writes the
job's outcome (done/failed/cancelled, with progress and result) and deletes its upload, as run_video_job does;
one that returns or raises without an outcome gets a failed job ("internal").

Reaper.check(record) (on every read of a job) and Reaper.sweep() (every few seconds in RQ workers and in
web processes with the embedded runner) find jobs whose process is gone: a process id on this machine
that no longer exists, or no heartbeat for VISAGE_JOB_STALE_SECONDS. Such a job is queued again
(attempt + 1, on the job's own queue, any worker) while attempts are left and its upload is still there;
otherwise it is failed with the reason, its upload deleted and its "on_lost" function called (a batch
chunk's photos become error rows, app/jobs/batch.py). A job whose "still_wanted" function says its work
is pointless now (a chunk of a batch that has already ended) is cancelled instead of queued again.
run_job calls on_lost(store, record, "failed") too when the function raised without recording an
outcome. A per-job lock makes one reaper act, once.
"""
from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

from app.jobs.store import FINISHED, store_from

log = logging.getLogger(__name__)

BEAT_SECONDS = 5.0              # a running job's heartbeat period, at most


def beat_period(stale_seconds: float) -> float:
    """Several beats fit in the stale time, so one late beat never makes a live job look lost."""
    return max(0.2, min(BEAT_SECONDS, stale_seconds / 6))


HOST = socket.gethostname()


def import_function(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def run_job(store_spec: dict, job_id: str, func: str, args: list, beat_seconds: float = BEAT_SECONDS):
    """Run one attempt of a job under a heartbeat; returns what the job function returns."""
    store = store_from(store_spec)
    record = store.get(job_id)
    if record is None or record.get("status") in FINISHED:
        return record and record.get("status")      # cancelled while queued, or ended by another attempt
    attempt = int(record.get("attempts") or 1)
    store.update(job_id, status="running", **this_process())
    store.beat(job_id)
    stop = threading.Event()

    def beat_until_stopped():
        while not stop.wait(beat_seconds):
            try:
                store.beat(job_id)
            except Exception as e:   # noqa: BLE001 - Redis away for a moment: the next beat may pass
                log.warning("job %s: heartbeat not recorded (%s)", job_id, e)

    beating = threading.Thread(target=beat_until_stopped, name=f"beat-{job_id[:8]}", daemon=True)
    beating.start()
    returned = False
    try:
        outcome = import_function(func)(*args)
        returned = True
        return outcome
    except Exception:
        returned = True          # an exception, not a stop of the process (SystemExit): the attempt is over
        raise
    finally:
        stop.set()
        beating.join()
        try:
            # A stopped process (SystemExit: a worker's second SIGTERM) leaves its beat to go stale, so the
            # reaper's sweep finds the job and queues it again. An attempt the reaper has already replaced
            # (it was frozen) leaves the job, beat and record to the newer attempt.
            if returned and int((store.get(job_id) or {}).get("attempts") or 1) == attempt:
                store.end_beat(job_id)
                fail_if_unfinished(store, job_id)
        except Exception as e:   # noqa: BLE001
            log.warning("job %s: could not close its record (%s)", job_id, e)


def fail_if_unfinished(store, job_id: str) -> None:
    """A job function that returned or raised without recording an outcome: failed, never "running" forever."""
    record = store.get(job_id)
    if record is None or record.get("status") in FINISHED:
        return
    log.error("job %s: its function ended without recording an outcome", job_id)
    if record.get("upload"):
        Path(record["upload"]).unlink(missing_ok=True)
    if record.get("on_lost"):       # e.g. a batch chunk's photos become error rows: its batch can end now
        try:
            import_function(record["on_lost"])(store, record, "failed")
        except Exception:   # noqa: BLE001 - the job is still failed below; its owner's backstop remains
            log.exception("job %s: its on_lost function failed", job_id)
    store.update(job_id, status="failed", finished_at=time.time(), error={
        "code": "internal", "message": "The job ended without a result on our side; submit it again."})


def process_started(pid: int) -> int | None:
    """When the process started (clock ticks since boot, /proc/<pid>/stat), or None where it cannot be
    read. With its id it names one process: a restarted container gives its new processes the old ids."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def this_process() -> dict:
    """What a record says of the process that holds a job (process_gone reads it back)."""
    pid = os.getpid()
    return {"pid": pid, "host": HOST, "pid_started": process_started(pid)}


def process_gone(record: dict) -> bool:
    """True when the record names a process on this machine that no longer exists (or another process
    now has its id)."""
    pid = record.get("pid")
    if not pid or record.get("host") != HOST:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:                    # a killed process its parent has not reaped yet is a zombie: gone too
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True
    except (OSError, IndexError):
        return False
    started = record.get("pid_started")
    return started is not None and process_started(pid) not in (None, started)


class Reaper:
    """Finds jobs whose process died and queues them again or fails them (see the module's docstring)."""

    def __init__(self, store, runner, stale_seconds: float, attempts: int):
        self.store, self.runner = store, runner
        self.stale_seconds, self.attempts = stale_seconds, max(1, attempts)
        self._thread = None

    def lost(self, record: dict) -> str | None:
        """Why this job's process is gone, or None while it may be alive."""
        status = record.get("status")
        if status not in ("queued", "running") or record.get("kind") == "batch":
            return None           # a batch has no process of its own: its chunks end it (app/jobs/batch.py)
        if process_gone(record):          # a queued job names a process only on the embedded runner
            return "its process ended"
        if status == "running":
            last = self.store.last_beat(record["id"], record) or record.get("updated_at") or 0
            if time.time() - last > self.stale_seconds:
                return f"no heartbeat for {self.stale_seconds:.0f} s"
        return None

    def check(self, record: dict | None, wait_seconds: float = 5.0) -> dict | None:
        """The record, after reaping it if its process is gone. While another reaper (the sweep thread,
        another process) holds the job's lock, waits up to wait_seconds for it to finish, so a reader
        never gets the "running" of a job that is being failed or queued again at that moment."""
        if record is None or self.lost(record) is None:
            return record
        deadline = time.monotonic() + wait_seconds
        while True:
            self.reap(record["id"])
            fresh = self.store.get(record["id"])
            if fresh is None or self.lost(fresh) is None or time.monotonic() > deadline:
                return fresh
            time.sleep(0.05)

    def reap(self, job_id: str) -> None:
        with self.store.lock(job_id) as mine:
            if not mine:
                return
            record = self.store.get(job_id)
            reason = record and self.lost(record)
            if not reason:
                return
            attempt = int(record.get("attempts") or 1)
            upload = record.get("upload")
            if not self.still_wanted(record):
                log.warning("job %s: attempt %d lost (%s); its work is no longer wanted: cancelled",
                            job_id, attempt, reason)
                if upload:
                    Path(upload).unlink(missing_ok=True)
                self.store.update(job_id, status="cancelled", finished_at=time.time(), pid=None, lost=reason)
                self.store.end_beat(job_id)
                return
            can_retry = (record.get("func") and attempt < self.attempts
                         and (not upload or Path(upload).exists()))
            if can_retry:
                log.warning("job %s: attempt %d lost (%s); queued again", job_id, attempt, reason)
                self.store.update(job_id, status="queued", attempts=attempt + 1, progress=0.0,
                                  heartbeat_at=None, lost=reason, **self.runner.owner())
                self.store.end_beat(job_id)
                self.runner.submit(job_id, record["func"], record.get("args") or [], attempt=attempt + 1,
                                   queue=record.get("queue"))
                return
            log.warning("job %s: attempt %d lost (%s); failed", job_id, attempt, reason)
            if upload:
                Path(upload).unlink(missing_ok=True)
            if record.get("on_lost"):        # before the record says failed, so nothing else takes it as ended
                try:
                    import_function(record["on_lost"])(self.store, record)
                except Exception:   # noqa: BLE001 - the job is still failed; its owner's backstop remains
                    log.exception("job %s: its on_lost function failed", job_id)
            tries = "once" if attempt == 1 else f"{attempt} times"
            self.store.update(job_id, status="failed", finished_at=time.time(), pid=None, error={
                "code": "worker_lost",
                "message": f"The worker running this job stopped ({reason}), {tries}; submit it again."})
            self.store.end_beat(job_id)

    def still_wanted(self, record: dict) -> bool:
        """The record's "still_wanted" function (store, record) → bool, if it names one: False for work
        that another job has made pointless (a chunk of a batch that has already ended). Where it cannot
        tell, the job is wanted: a needless retry ends at once, a lost one cannot be undone."""
        if not record.get("still_wanted"):
            return True
        try:
            return bool(import_function(record["still_wanted"])(self.store, record))
        except Exception:   # noqa: BLE001
            log.exception("job %s: its still_wanted function failed", record.get("id"))
            return True

    def sweep(self) -> int:
        """Check every started job once; returns how many were reaped."""
        reaped = 0
        for job_id in self.store.active_ids():
            record = self.store.get(job_id)
            if record is not None and self.lost(record):
                self.reap(job_id)
                reaped += 1
            elif record is None or record.get("status") in FINISHED:
                self.store.end_beat(job_id)          # forget a finished or expired job
        return reaped

    def start(self, every: float) -> None:
        """Sweep every `every` seconds in a daemon thread (errors logged, e.g. while Redis is down)."""
        if self._thread is not None:
            return

        def loop():
            while True:
                try:
                    self.sweep()
                except Exception as e:   # noqa: BLE001 - keep sweeping after an outage
                    log.warning("job reaper: sweep failed (%s)", e)
                time.sleep(every)

        self._thread = threading.Thread(target=loop, name="visage-job-reaper", daemon=True)
        self._thread.start()
