"""Where jobs run: a thread pool in the web process, or RQ workers on Redis. Any job function, both ways.

submit(job_id, func, args, attempt, queue) runs app.jobs.supervise.run_job(store_spec, job_id, func, args):
`func` is the job function's dotted path (e.g. "app.jobs.video.run_video_job"), `args` its JSON-able
arguments; run_job adds the heartbeat that lets a job whose process died be queued again or failed.
`queue` names the RQ queue (None: the video queue; batch chunks go to VISAGE_BATCH_QUEUE); the embedded
pool has one queue for every kind of job.
"""
from __future__ import annotations

import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor

from app.jobs.store import KEEP_SECONDS, redis_client, store_from
from app.jobs.supervise import BEAT_SECONDS, run_job, this_process


class EmbeddedRunner:
    """A thread pool in the web process: `make run` needs nothing else."""

    def __init__(self, store_spec: dict, workers: int = 1, beat_seconds: float = BEAT_SECONDS):
        self.store_spec, self.beat_seconds = store_spec, beat_seconds
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="visage-job")
        self.futures = {}     # job id -> Future, while the job waits or runs (a batch adds one per chunk)
        self._lock = threading.Lock()

    def owner(self) -> dict:
        """Recorded with a queued job: it waits in this process, so it is lost if this process ends."""
        return this_process()

    def submit(self, job_id: str, func: str, args: list, attempt: int = 1, queue: str | None = None) -> None:
        # One pool for videos and batch chunks: they take turns in the order they came.
        future = self.pool.submit(run_job, self.store_spec, job_id, func, list(args), self.beat_seconds)
        with self._lock:
            self.futures[job_id] = future
        future.add_done_callback(lambda f: self._forget(job_id, f))

    def _forget(self, job_id: str, future) -> None:
        """An ended job's Future goes: a long-running server does not keep one per chunk it ever ran."""
        with self._lock:
            if self.futures.get(job_id) is future:
                del self.futures[job_id]

    def cancel_queued(self, job_id: str, attempt: int = 1) -> bool:
        future = self.futures.get(job_id)
        return bool(future and future.cancel())

    def wait(self, job_id: str, timeout: float | None = None):
        """For tests and the CLI: block until the job ends; its status (what run_job returns)."""
        with self._lock:
            future = self.futures.get(job_id)
        if future is not None:
            try:
                return future.result(timeout)
            except CancelledError:       # cancelled while it waited: its record says so
                pass
        record = store_from(self.store_spec).get(job_id)     # it has ended
        return record and record.get("status")


class RqRunner:
    """RQ on Redis: jobs wait in a queue until a worker (python -m app.jobs.worker, or rq worker) takes them."""

    def __init__(self, store_spec: dict, url: str, queue_name: str, job_timeout: int,
                 beat_seconds: float = BEAT_SECONDS):
        self.store_spec, self.beat_seconds = store_spec, beat_seconds
        self.connection = redis_client(url)
        self.default_queue, self.queues = queue_name, {}
        self.job_timeout = job_timeout

    def owner(self) -> dict:
        """A queued job waits in Redis, owned by no process."""
        return {"pid": None, "host": None, "pid_started": None}

    def queue(self, name: str | None = None):
        from rq import Queue
        name = name or self.default_queue
        if name not in self.queues:
            self.queues[name] = Queue(name, connection=self.connection)
        return self.queues[name]

    @staticmethod
    def rq_id(job_id: str, attempt: int = 1) -> str:
        """RQ's id for one attempt (a lost attempt's RQ job stays in RQ's registries under its own id)."""
        return job_id if attempt <= 1 else f"{job_id}-{attempt}"

    def submit(self, job_id: str, func: str, args: list, attempt: int = 1, queue: str | None = None) -> None:
        self.queue(queue).enqueue_call(run_job, args=(self.store_spec, job_id, func, list(args), self.beat_seconds),
                                       job_id=self.rq_id(job_id, attempt), timeout=self.job_timeout,
                                       result_ttl=KEEP_SECONDS, failure_ttl=KEEP_SECONDS)

    def cancel_queued(self, job_id: str, attempt: int = 1) -> bool:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job
        try:
            job = Job.fetch(self.rq_id(job_id, attempt), connection=self.connection)
        except NoSuchJobError:
            return False
        if job.get_status() != "queued":
            return False
        job.cancel()
        return True
