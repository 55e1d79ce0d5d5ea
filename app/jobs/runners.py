"""Where jobs run: a thread pool in the web process, or RQ workers on Redis. Any job function, both ways.

submit(job_id, func, args, attempt) runs app.jobs.supervise.run_job(store_spec, job_id, func, args):
`func` is the job function's dotted path (e.g. "app.jobs.video.run_video_job"), `args` its JSON-able
arguments; run_job adds the heartbeat that lets a job whose process died be queued again or failed.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from app.jobs.store import KEEP_SECONDS, redis_client
from app.jobs.supervise import BEAT_SECONDS, HOST, run_job


class EmbeddedRunner:
    """A thread pool in the web process: `make run` needs nothing else."""

    def __init__(self, store_spec: dict, workers: int = 1, beat_seconds: float = BEAT_SECONDS):
        self.store_spec, self.beat_seconds = store_spec, beat_seconds
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="visage-job")
        self.futures = {}

    def owner(self) -> dict:
        """Recorded with a queued job: it waits in this process, so it is lost if this process ends."""
        return {"pid": os.getpid(), "host": HOST}

    def submit(self, job_id: str, func: str, args: list, attempt: int = 1) -> None:
        self.futures[job_id] = self.pool.submit(run_job, self.store_spec, job_id, func, list(args),
                                                 self.beat_seconds)

    def submit_call(self, job_id: str, func, args: tuple) -> None:
        """A batch chunk: the same pool, so video jobs and chunks take turns (chunks end their batch
        themselves, app/jobs/batch.py, so they run without run_job's record)."""
        self.futures[job_id] = self.pool.submit(func, *args)

    def cancel_queued(self, job_id: str, attempt: int = 1) -> bool:
        future = self.futures.get(job_id)
        return bool(future and future.cancel())

    def wait(self, job_id: str, timeout: float | None = None):
        """For tests and the CLI: block until the job ends."""
        return self.futures[job_id].result(timeout)


class RqRunner:
    """RQ on Redis: jobs wait in the queue until a worker (python -m app.jobs.worker, or rq worker) takes them."""

    def __init__(self, store_spec: dict, url: str, queue_name: str, job_timeout: int,
                 beat_seconds: float = BEAT_SECONDS):
        from rq import Queue
        self.store_spec, self.beat_seconds = store_spec, beat_seconds
        self.queue = Queue(queue_name, connection=redis_client(url))
        self.job_timeout = job_timeout

    def owner(self) -> dict:
        """A queued job waits in Redis, owned by no process."""
        return {"pid": None, "host": None}

    @staticmethod
    def rq_id(job_id: str, attempt: int = 1) -> str:
        """RQ's id for one attempt (a lost attempt's RQ job stays in RQ's registries under its own id)."""
        return job_id if attempt <= 1 else f"{job_id}-{attempt}"

    def submit(self, job_id: str, func: str, args: list, attempt: int = 1) -> None:
        self.queue.enqueue_call(run_job, args=(self.store_spec, job_id, func, list(args), self.beat_seconds),
                                job_id=self.rq_id(job_id, attempt), timeout=self.job_timeout,
                                result_ttl=KEEP_SECONDS, failure_ttl=KEEP_SECONDS)

    def submit_call(self, job_id: str, func, args: tuple, queue=None) -> None:
        """A batch chunk, on `queue` (default: this runner's), with the video jobs' timeouts."""
        (queue or self.queue).enqueue_call(func, args=args, job_id=job_id, timeout=self.job_timeout,
                                           result_ttl=KEEP_SECONDS, failure_ttl=KEEP_SECONDS)

    def cancel_queued(self, job_id: str, attempt: int = 1) -> bool:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job
        try:
            job = Job.fetch(self.rq_id(job_id, attempt), connection=self.queue.connection)
        except NoSuchJobError:
            return False
        if job.get_status() != "queued":
            return False
        job.cancel()
        return True
