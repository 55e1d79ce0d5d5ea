"""Where jobs run: a thread pool in the web process, or RQ workers on Redis. One job function for both."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from app.jobs.store import KEEP_SECONDS
from app.jobs.video import run_video_job


class EmbeddedRunner:
    """A thread pool in the web process: `make run` needs nothing else."""

    def __init__(self, workers: int = 1):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="visage-video")
        self.futures = {}

    def submit(self, job_id: str, path: str, options: dict) -> None:
        self.futures[job_id] = self.pool.submit(run_video_job, job_id, path, options)

    def submit_call(self, job_id: str, func, args: tuple) -> None:
        """Any job function (a batch chunk): the same pool, so video jobs and chunks take turns."""
        self.futures[job_id] = self.pool.submit(func, *args)

    def cancel_queued(self, job_id: str) -> bool:
        future = self.futures.get(job_id)
        return bool(future and future.cancel())

    def wait(self, job_id: str, timeout: float | None = None):
        """For tests and the CLI: block until the job ends."""
        return self.futures[job_id].result(timeout)


class RqRunner:
    """RQ on Redis: jobs wait in the queue until a worker (python -m app.jobs.worker, or rq worker) takes them."""

    def __init__(self, url: str, queue_name: str, job_timeout: int):
        import redis
        from rq import Queue
        self.queue = Queue(queue_name, connection=redis.Redis.from_url(url))
        self.job_timeout = job_timeout

    def submit(self, job_id: str, path: str, options: dict) -> None:
        self.queue.enqueue_call(run_video_job, args=(job_id, path, options), job_id=job_id,
                                timeout=self.job_timeout, result_ttl=KEEP_SECONDS, failure_ttl=KEEP_SECONDS)

    def submit_call(self, job_id: str, func, args: tuple, queue=None) -> None:
        """Any job function (a batch chunk), on `queue` (default: this runner's), with the video jobs' settings."""
        (queue or self.queue).enqueue_call(func, args=args, job_id=job_id, timeout=self.job_timeout,
                                           result_ttl=KEEP_SECONDS, failure_ttl=KEEP_SECONDS)

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
