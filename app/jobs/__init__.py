"""Background jobs (video files, batches of photos): run by an embedded thread pool or by RQ workers.

    store.py     job records: JSON files (embedded) or Redis hashes (RQ), cancel flags
    video.py     run_video_job(job_id, path, options): analyse, render, record, delete the upload
    runners.py   EmbeddedRunner (thread pool in the web process) and RqRunner (an RQ queue per name), any job function
    supervise.py run_job (heartbeat around a job function) and Reaper (re-queue or fail jobs whose process died)
    service.py   Jobs (start, get, cancel any job) and VideoJobs (submit an uploaded video)
    worker.py    python -m app.jobs.worker: an RQ worker with the models loaded before the first job
    batch_intake.py, batch.py, batch_service.py   batches: the uploads → manifest, run_batch_chunk (one
                 chunk of photos, a supervised job of its own; the last chunk merges the result), BatchJobs
                 (docs/batch.md)
No Flask here: the worker processes import this package without the web app.
"""
from app.jobs.service import Jobs, VideoJobs
from app.jobs.video import run_video_job

__all__ = ["Jobs", "VideoJobs", "run_video_job"]
