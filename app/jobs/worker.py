"""An RQ worker for video jobs and batch chunks, with the models loaded before the first job (docs/video.md).

    VISAGE_REDIS_URL=redis://host:6379/0 python -m app.jobs.worker            # runs until stopped
    VISAGE_REDIS_URL=... python -m app.jobs.worker --burst                    # until the queue is empty

Start as many as you like, on any machine that has the repository, the models and the shared
VISAGE_VIDEO_DIR; they share the queue. It is rq's SimpleWorker (jobs run in this process): the
default forking worker would load TensorFlow and the models again for every job. Plain rq works too:
    rq worker --url "$VISAGE_REDIS_URL" --worker-class rq.worker.SimpleWorker visage-video visage-batch
"""
from __future__ import annotations

import argparse
import sys

from app import settings


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
    from rq import Queue, SimpleWorker

    from app.pipeline.errors import ModelUnavailable
    from app.pipeline.video import video_predictor
    try:
        video_predictor(cfg["VISAGE_MODELS_DIR"])          # fail now, not on the first job
    except ModelUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    connection = redis.Redis.from_url(cfg["VISAGE_REDIS_URL"])
    # Video jobs first (one user waits on each), then batch chunks (docs/batch.md): a long batch does not hold
    # a video back by more than one chunk.
    queues = [Queue(cfg[name], connection=connection) for name in ("VISAGE_VIDEO_QUEUE", "VISAGE_BATCH_QUEUE")]
    worker = SimpleWorker(queues, connection=connection, name=args.name)
    worker.work(burst=args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
