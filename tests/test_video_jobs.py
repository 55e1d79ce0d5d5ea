"""Video jobs (app/jobs/): the same job function on the embedded thread pool and on RQ with a real Redis."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from app import settings
from app.jobs import VideoJobs
from tests.services import REDIS_URL, redis_for_tests, wait_for_status
from tests.video_clips import one_face_clip

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return one_face_clip(tmp_path_factory.mktemp("clips") / "one.mp4", seconds=2.0, fps=10)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return one_face_clip(tmp_path_factory.mktemp("clips") / "long.mp4", seconds=12.0, fps=10, size=(320, 240))


def config(models_dir, tmp_path, **extra) -> dict:
    return {**settings.DEFAULTS, "VISAGE_MODELS_DIR": str(models_dir), "VISAGE_VIDEO_DIR": str(tmp_path), **extra}


def upload(jobs: VideoJobs, clip) -> "os.PathLike":
    path = jobs.upload_path(".mp4")
    shutil.copyfile(clip, path)
    return path


# ---------------------------------------------------------------- embedded

@pytest.fixture()
def embedded(models_dir, tmp_path):
    return VideoJobs(config(models_dir, tmp_path))


def test_embedded_job_runs_to_done_and_deletes_the_upload(embedded, clip):
    assert embedded.where == "embedded"
    path = upload(embedded, clip)
    job_id = embedded.submit(path, {"fps": 5, "annotate": True, "blur": True})
    assert embedded.get(job_id)["status"] in ("queued", "running")
    assert embedded.runner.wait(job_id, 120) == "done"
    record = embedded.get(job_id)
    assert record["status"] == "done" and record["progress"] == 1.0 and record["error"] is None
    assert len(record["result"]["tracks"]) == 1 and record["result"]["blurred"] is True
    assert embedded.result_file(job_id, record["result"]["files"]["annotated"]).stat().st_size > 1000
    assert not path.exists()


def test_failed_job_reports_why_and_deletes_the_upload(embedded):
    path = embedded.upload_path(".mp4")
    path.write_bytes(b"not a video at all " * 100)
    job_id = embedded.submit(path, {"fps": 5})
    assert embedded.runner.wait(job_id, 60) == "failed"
    record = embedded.get(job_id)
    assert record["status"] == "failed" and record["error"]["code"] == "not_a_video" and record["result"] is None
    assert not path.exists()
    # The runner forgets an ended job (a server runs a batch's every chunk as a job) and still answers for it.
    deadline = time.monotonic() + 10
    while job_id in embedded.runner.futures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job_id not in embedded.runner.futures
    assert embedded.runner.wait(job_id, 1) == "failed"


def test_cancel_a_queued_job(embedded, clip, long_clip):
    first = embedded.submit(upload(embedded, long_clip), {"fps": 5})
    path = upload(embedded, clip)
    second = embedded.submit(path, {"fps": 5})        # one worker thread: waits behind the first
    assert embedded.cancel(second)["status"] == "cancelled"
    assert not path.exists()
    embedded.cancel(first)
    assert embedded.runner.wait(first, 120) == "cancelled"


def test_cancel_a_running_job(embedded, long_clip):
    path = upload(embedded, long_clip)
    job_id = embedded.submit(path, {"fps": 10})
    wait_for_status(embedded, job_id, ("running",))
    embedded.cancel(job_id)
    assert embedded.runner.wait(job_id, 120) == "cancelled"
    record = embedded.get(job_id)
    assert record["status"] == "cancelled" and record["result"] is None and record["progress"] < 1
    assert not path.exists()


def test_a_running_job_that_went_silent_is_reported_failed(embedded, clip):
    path = upload(embedded, clip)
    job_id = new_id = "f" * 32
    embedded.store.create(new_id, {"id": job_id, "status": "running", "progress": 0.3, "error": None,
                                   "result": None, "upload": str(path), "updated_at": time.time() - 3600})
    record = embedded.get(job_id)
    assert record["status"] == "failed" and record["error"]["code"] == "worker_lost"


def test_unknown_job(embedded):
    assert embedded.get("0" * 32) is None and embedded.get("../../etc") is None


# ---------------------------------------------------------------- RQ on a real Redis

@pytest.fixture()
def rq_jobs(models_dir, tmp_path):
    connection = redis_for_tests()
    tag = f"visage-test-{uuid.uuid4().hex[:8]}"
    jobs = VideoJobs(config(models_dir, tmp_path, VISAGE_REDIS_URL=REDIS_URL, VISAGE_REDIS_PREFIX=f"{tag}:",
                            VISAGE_VIDEO_QUEUE=tag))
    jobs.tag, jobs.connection, jobs.ids = tag, connection, []
    yield jobs
    keys = [k for k in connection.scan_iter(match=f"*{tag}*")]
    for job_id in jobs.ids:
        keys += list(connection.scan_iter(match=f"rq:*{job_id}*"))
    if keys:
        connection.delete(*keys)
    for registry in ("rq:queues", "rq:workers"):          # rq's own sets name our queue and workers
        members = [m for m in connection.smembers(registry) if tag.encode() in m]
        if members:
            connection.srem(registry, *members)


def run_worker(jobs) -> None:
    """A real RQ worker in this process (SimpleWorker runs the job here; signals need the main thread)."""
    from rq import Queue, SimpleWorker
    queue = Queue(jobs.tag, connection=jobs.connection)
    SimpleWorker([queue], connection=jobs.connection, name=f"{jobs.tag}-worker").work(burst=True)


def test_rq_worker_runs_the_job(rq_jobs, clip):
    assert rq_jobs.where == "rq"
    path = upload(rq_jobs, clip)
    job_id = rq_jobs.submit(path, {"fps": 5, "annotate": True})
    rq_jobs.ids.append(job_id)
    assert rq_jobs.get(job_id)["status"] == "queued"       # nothing runs it until a worker comes
    # The documented worker command, as its own process (it loads the models, then takes the job).
    env = {**os.environ, "VISAGE_REDIS_URL": REDIS_URL, "VISAGE_VIDEO_QUEUE": rq_jobs.tag,
           "VISAGE_MODELS_DIR": rq_jobs.config["VISAGE_MODELS_DIR"]}
    done = subprocess.run([sys.executable, "-m", "app.jobs.worker", "--burst",
                           "--name", f"{rq_jobs.tag}-process"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = rq_jobs.get(job_id)
    assert record["status"] == "done", record["error"]
    assert len(record["result"]["tracks"]) == 1 and record["result"]["files"]["annotated"] == "annotated.mp4"
    assert not path.exists()


def test_rq_failed_and_cancelled_jobs_delete_their_uploads(rq_jobs, clip):
    bad = rq_jobs.upload_path(".mp4")
    bad.write_bytes(b"")
    failed = rq_jobs.submit(bad, {"fps": 5})
    path = upload(rq_jobs, clip)
    cancelled = rq_jobs.submit(path, {"fps": 5})
    rq_jobs.ids += [failed, cancelled]
    assert rq_jobs.cancel(cancelled)["status"] == "cancelled"
    assert not path.exists()
    run_worker(rq_jobs)
    record = rq_jobs.get(failed)
    assert record["status"] == "failed" and record["error"]["code"] == "empty_file"
    assert not bad.exists()
    assert rq_jobs.get(cancelled)["status"] == "cancelled"


def test_old_embedded_jobs_and_their_files_are_pruned(embedded, clip):
    old = "a" * 32
    embedded.store.create(old, {"id": old, "status": "done", "progress": 1.0, "error": None, "result": None})
    results = embedded.result_file(old, "annotated.mp4")
    results.parent.mkdir(parents=True)
    results.write_bytes(b"x")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(embedded.store._path(old), (day_ago, day_ago))
    embedded.submit(upload(embedded, clip), {"fps": 5})
    assert embedded.get(old) is None and not results.exists()


def test_rq_result_files_older_than_their_records_are_pruned(rq_jobs, clip):
    """Redis expires a job's record after a day; its annotated MP4 on disk used to stay for ever."""
    old = rq_jobs.result_file("b" * 32, "annotated.mp4")
    fresh = rq_jobs.result_file("c" * 32, "annotated.mp4")
    for path in (old, fresh):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old.parent, (two_days_ago, two_days_ago))
    rq_jobs.ids.append(rq_jobs.submit(upload(rq_jobs, clip), {"fps": 5}))
    assert not old.parent.exists() and fresh.exists()
