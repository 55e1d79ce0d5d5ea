"""An RQ worker for video jobs and batch chunks, with the models loaded before the first job (docs/video.md).

    VISAGE_REDIS_URL=redis://host:6379/0 python -m app.jobs.worker            # runs until stopped
    VISAGE_REDIS_URL=... python -m app.jobs.worker --burst                    # until the queue is empty

Start as many as you like, on any machine that has the repository, the models and the shared
VISAGE_VIDEO_DIR; they share the queue. It is rq's SimpleWorker (jobs run in this process): the
default forking worker would load TensorFlow and the models again for every job. Plain rq works too:
    rq worker --url "$VISAGE_REDIS_URL" --worker-class rq.worker.SimpleWorker visage-video visage-batch
but only this command also sweeps for jobs (videos, batch chunks) whose worker died (app/jobs/supervise.py), stops
within seconds when asked (plain rq with redis-py 8.2 can take a minute), and keeps
waiting for Redis when it goes away instead of exiting.

Stopping: SIGTERM (or Ctrl+C) lets the running job finish, then the worker exits (a deploy);
a second SIGTERM stops at once, and that job is then queued again by the other workers' sweep.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from app import settings


def worker_class():
    from rq import SimpleWorker

    class Worker(SimpleWorker):
        def unsubscribe(self):
            """rq's, without waiting on its listener thread: redis-py 8.2's PubSubWorkerThread.stop() joins
            the thread, which can sit in rq's 60-s poll when the unsubscribe races it, so a worker asked to
            stop took a minute to exit (3 stops in 10 on a busy machine). The thread is a daemon."""
            if not self.pubsub_thread:
                return
            self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
            self.pubsub.unsubscribe()
            try:
                self.pubsub_thread.stop(timeout=1.0)
            except TypeError:                       # redis-py before 8.2: stop() takes no timeout, never waits
                self.pubsub_thread.stop()
            self.pubsub.close()

    return Worker


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.jobs.worker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    p.add_argument("--name", help="worker name shown by `rq info` (default: random)")
    args = p.parse_args(argv)
    cfg = settings.from_environment()
    if not cfg["VISAGE_REDIS_URL"]:
        print("error: set VISAGE_REDIS_URL (e.g. redis://127.0.0.1:6379/0) to the Redis the web app uses",
              file=sys.stderr)
        return 2
    import redis
    from rq import Queue

    from app.pipeline.errors import ModelUnavailable
    from app.pipeline.video import video_predictor
    try:
        video_predictor(cfg["VISAGE_MODELS_DIR"])          # fail now, not on the first job
    except ModelUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from app.jobs.service import SWEEP_SECONDS, Jobs
    jobs = Jobs(cfg)                                        # the store, the runner and the reaper the web app uses
    jobs.reaper.start(SWEEP_SECONDS)
    connection = redis.Redis.from_url(cfg["VISAGE_REDIS_URL"])
    log = logging.getLogger(__name__)
    worker_type = worker_class()
    for round_ in range(1, sys.maxsize):
        name = args.name if round_ == 1 or not args.name else f"{args.name}-{round_}"
        # Video jobs first (one user waits on each), then batch chunks (docs/batch.md): a long batch
        # does not hold a video back by more than one chunk.
        queues = [Queue(cfg[key], connection=connection) for key in ("VISAGE_VIDEO_QUEUE", "VISAGE_BATCH_QUEUE")]
        worker = None
        try:
            # Inside the try: making a worker talks to Redis too (it names its connection), and Redis may
            # still be down when the loop comes round again.
            worker = worker_type(queues, connection=connection, name=name)
            worker.max_connection_wait_time = 5.0           # back within seconds of Redis coming back
            worker.work(burst=args.burst)
        except redis.RedisError as e:
            log.warning("worker: Redis unavailable (%s); waiting for it", e)
        if args.burst or (worker is not None and worker._shutdown_requested_date is not None):
            return 0
        # rq's loop ended on an error (Redis gone mid-way): wait and go on, no restart needed
        time.sleep(2.0)
    return 0

if __name__ == "__main__":
    sys.exit(main())
