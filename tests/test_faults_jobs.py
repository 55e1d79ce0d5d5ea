"""Jobs whose process dies end anyway (app/jobs/supervise.py): real redis-server, real RQ worker processes
killed with SIGKILL or frozen with SIGSTOP, a web process with the embedded runner killed mid-job."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from app import settings
from app.jobs import VideoJobs
from tests.services import ROOT, RedisServer, Unavailable, python_env, start_worker, stop_process, wait_for
from tests.video_clips import one_face_clip

STALE = 4          # seconds without a heartbeat before a job counts as lost (30 in production)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return one_face_clip(tmp_path_factory.mktemp("clips") / "long.mp4", seconds=20.0, fps=10, size=(320, 240))


@pytest.fixture(scope="module")
def redis_server():
    try:
        server = RedisServer().start()
    except Unavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(str(e))
        pytest.skip(str(e))
    yield server
    server.stop()


def config(models_dir, video_dir, **extra) -> dict:
    return {**settings.DEFAULTS, "VISAGE_MODELS_DIR": str(models_dir), "VISAGE_VIDEO_DIR": str(video_dir),
            "VISAGE_JOB_STALE_SECONDS": STALE, **extra}


def upload(jobs, clip):
    path = jobs.upload_path(".mp4")
    shutil.copyfile(clip, path)
    return path


def running(jobs, job_id):
    record = jobs.get(job_id)
    return record if record["status"] == "running" and record.get("pid") else None


def ended(jobs, job_id):
    record = jobs.get(job_id)
    return record if record["status"] in ("done", "failed", "cancelled") else None


@pytest.fixture()
def rq_setup(models_dir, tmp_path, redis_server):
    """Jobs on the test's own Redis and a way to start `python -m app.jobs.worker` processes on them."""
    cfg = config(models_dir, tmp_path, VISAGE_REDIS_URL=redis_server.url, VISAGE_VIDEO_QUEUE=tmp_path.name,
                 VISAGE_REDIS_PREFIX=f"{tmp_path.name}:")
    workers = []

    def worker(name, **extra):
        env = python_env(**{**{k: v for k, v in cfg.items() if k.startswith("VISAGE_")}, **extra})
        proc = start_worker(env, tmp_path / f"{name}.log", f"{tmp_path.name}-{name}")
        workers.append(proc)
        return proc
    yield VideoJobs(cfg), worker
    for proc in workers:
        stop_process(proc, signal.SIGKILL)


def test_rq_job_whose_worker_is_killed_runs_again_on_another_worker(rq_setup, long_clip):
    jobs, worker = rq_setup
    first, second = worker("a"), worker("b")
    path = upload(jobs, long_clip)
    job_id = jobs.submit(path, {"fps": 10, "annotate": False})
    record = wait_for(lambda: running(jobs, job_id), 180, "a worker starts the job")
    victim, other = (first, second) if record["pid"] == first.pid else (second, first)
    assert record["pid"] == victim.pid and record["attempts"] == 1
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    killed_at = time.monotonic()
    record = wait_for(lambda: running(jobs, job_id) if jobs.get(job_id).get("pid") == other.pid else None,
                      120, "the other worker takes the job")
    assert record["attempts"] == 2 and "process ended" in record["lost"]
    record = wait_for(lambda: ended(jobs, job_id), 180, "the second attempt ends")
    assert record["status"] == "done", record["error"]
    assert len(record["result"]["tracks"]) == 1
    wait_for(lambda: not path.exists(), 10, "the upload is deleted when the job finally ends")
    assert time.monotonic() - killed_at < 360


def test_rq_job_whose_worker_froze_is_failed_with_a_reason_when_attempts_run_out(rq_setup, long_clip):
    jobs, worker = rq_setup
    jobs.reaper.attempts = 1
    frozen = worker("frozen", VISAGE_JOB_ATTEMPTS=1)
    path = upload(jobs, long_clip)
    job_id = jobs.submit(path, {"fps": 10, "annotate": False})
    wait_for(lambda: running(jobs, job_id), 180, "the worker starts the job")
    os.kill(frozen.pid, signal.SIGSTOP)              # alive but silent: only the heartbeat tells
    try:
        record = wait_for(lambda: ended(jobs, job_id), STALE + 30, "the reader fails the silent job", interval=0.5)
    finally:
        os.kill(frozen.pid, signal.SIGKILL)
    assert record["status"] == "failed" and record["error"]["code"] == "worker_lost"
    assert "heartbeat" in record["error"]["message"]
    assert not path.exists()


def test_rq_worker_given_sigterm_finishes_its_job_then_exits(rq_setup, long_clip):
    jobs, worker = rq_setup
    proc = worker("deploy")
    path = upload(jobs, long_clip)
    job_id = jobs.submit(path, {"fps": 10, "annotate": False})
    wait_for(lambda: running(jobs, job_id), 180, "the worker starts the job")
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(300) == 0
    record = jobs.get(job_id)
    assert record["status"] == "done" and record["attempts"] == 1, record
    assert not path.exists()


EMBEDDED_WEB_PROCESS = textwrap.dedent("""
    import json, shutil, sys, time
    from app.jobs import VideoJobs
    jobs = VideoJobs(json.loads(sys.argv[1]))
    path = jobs.upload_path(".mp4")
    shutil.copyfile(sys.argv[2], path)
    job_id = jobs.submit(path, {"fps": 10, "annotate": False})
    print(job_id, path, flush=True)
    time.sleep(600)
""")


def test_embedded_job_of_a_web_process_that_died_runs_again_when_the_app_starts(models_dir, tmp_path, long_clip):
    import json
    cfg = config(models_dir, tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", EMBEDDED_WEB_PROCESS, json.dumps(cfg), str(long_clip)],
                            cwd=ROOT, env=python_env(), stdout=subprocess.PIPE, text=True)
    try:
        job_id, path = proc.stdout.readline().split()
        from app.jobs.store import FileStore
        store = FileStore(tmp_path)
        wait_for(lambda: (store.get(job_id) or {}).get("status") == "running", 180, "the embedded worker starts")
    finally:
        proc.kill()
        proc.wait(10)
    assert store.get(job_id)["status"] == "running"        # left so by the dead process
    jobs = VideoJobs(cfg)                                   # a new web process: it sweeps at start
    record = jobs.store.get(job_id)
    assert record["attempts"] == 2 and record["status"] in ("queued", "running")
    assert jobs.runner.wait(job_id, 300) == "done"
    assert jobs.get(job_id)["status"] == "done" and not os.path.exists(path)


def test_embedded_job_fails_with_a_reason_when_its_upload_is_gone(models_dir, tmp_path, long_clip):
    jobs = VideoJobs(config(models_dir, tmp_path))
    job_id = "e" * 32
    jobs.store.create(job_id, {"id": job_id, "status": "running", "progress": 0.4, "upload": str(tmp_path / "gone.mp4"),
                               "func": "app.jobs.video.run_video_job", "args": [], "attempts": 1,
                               "pid": 2 ** 22 + 12345, "host": os.uname().nodename, "updated_at": time.time()})
    record = jobs.get(job_id)
    assert record["status"] == "failed" and record["error"]["code"] == "worker_lost"
    assert "process ended" in record["error"]["message"]


def test_a_read_during_another_reapers_work_waits_for_its_outcome(tmp_path):
    """The web process's sweep thread may be failing a lost job at the moment a request reads it: the
    read waits for that reaper's outcome instead of answering the "running" it is replacing."""
    import threading
    from app.jobs.store import FileStore
    from app.jobs.supervise import Reaper
    store = FileStore(tmp_path)
    job_id = "d" * 32
    store.create(job_id, {"id": job_id, "status": "running", "upload": "", "attempts": 1,
                          "pid": 2 ** 22 + 12345, "host": os.uname().nodename, "updated_at": time.time()})
    holding = threading.Event()

    def other_reaper():
        with store.lock(job_id) as mine:
            assert mine
            holding.set()
            time.sleep(0.5)
            store.update(job_id, status="failed", error={"code": "worker_lost", "message": "its process ended"})

    other = threading.Thread(target=other_reaper)
    other.start()
    holding.wait(5)
    record = Reaper(store, runner=None, stale_seconds=60, attempts=1).check(store.get(job_id))
    other.join()
    assert record["status"] == "failed" and record["error"]["code"] == "worker_lost"


def test_embedded_job_queued_by_an_earlier_process_with_the_same_id_runs_again(models_dir, tmp_path, long_clip):
    """A restarted container gives its new processes the ids of the old ones: a queued job whose record
    names this very process id, but an earlier start, waited in a process that is gone."""
    from app.jobs.supervise import this_process
    jobs = VideoJobs(config(models_dir, tmp_path))
    earlier = {**this_process(), "pid_started": this_process()["pid_started"] - 1}
    job_id = "f" * 32
    jobs.store.create(job_id, {"id": job_id, "status": "queued", "progress": 0.0, "upload": str(tmp_path / "gone.mp4"),
                               "func": "app.jobs.video.run_video_job", "args": [], "attempts": 1, **earlier,
                               "updated_at": time.time()})
    record = jobs.get(job_id)
    assert record["status"] == "failed" and "process ended" in record["error"]["message"]     # its upload is gone
    jobs.store.create(job_id, {"id": job_id, "status": "queued", "upload": str(tmp_path / "gone.mp4"),
                               "func": "app.jobs.video.run_video_job", "args": [], "attempts": 1, **this_process()})
    assert jobs.store.get(job_id)["status"] == "queued" and jobs.reaper.lost(jobs.store.get(job_id)) is None


# ---------------------------------------------------------------- any job function

def job_without_outcome(marker: str) -> str:
    """A job function that forgets to record an outcome (a bug the machinery must not turn into "running" forever)."""
    open(marker, "w").close()
    return "ok"


def job_that_records(store_spec: dict, job_id: str) -> str:
    from app.jobs.store import store_from
    store_from(store_spec).update(job_id, status="done", result={"answer": 42})
    return "done"


def test_any_job_function_runs_under_the_same_supervision(models_dir, tmp_path):
    from app.jobs import Jobs
    jobs = Jobs(config(models_dir, tmp_path))
    upload = tmp_path / "chunk.bin"
    upload.write_bytes(b"x")
    marker = tmp_path / "ran"
    forgetful = jobs.start({"upload": str(upload)}, "tests.test_faults_jobs.job_without_outcome", [str(marker)])
    assert jobs.runner.wait(forgetful, 60) == "ok" and marker.exists()
    record = jobs.get(forgetful)
    assert record["status"] == "failed" and record["error"]["code"] == "internal" and record["attempts"] == 1
    assert not upload.exists()
    careful = jobs.start({}, "tests.test_faults_jobs.job_that_records", [jobs.store.spec(), "c" * 32], job_id="c" * 32)
    assert jobs.runner.wait(careful, 60) == "done"
    assert jobs.get(careful)["result"] == {"answer": 42}


# ---------------------------------------------------------------- an attempt that outlived its turn

def video_job(tmp_path, models_dir, clip, **options):
    """A FileStore record of attempt 1 of a video job, its upload, and run_video_job's options."""
    from app.jobs.store import FileStore
    store = FileStore(tmp_path)
    job_id = "a" * 32
    path = tmp_path / "upload.mp4"
    shutil.copyfile(clip, path)
    store.create(job_id, {"id": job_id, "status": "running", "attempts": 1, "upload": str(path)})
    return store, job_id, path, {"store": store.spec(), "models_dir": str(models_dir), "video_dir": str(tmp_path),
                                 "max_seconds": 600, "max_pixels": 10 ** 8, "fps": 2, **options}


def test_a_frozen_video_attempt_that_wakes_after_its_retry_writes_nothing(models_dir, tmp_path, long_clip, monkeypatch):
    """A worker frozen past the stale time wakes up after the reaper queued attempt 2. If attempt 2 has
    finished (and deleted the upload), the old attempt fails to read the file: before, it wrote "failed"
    over the finished result; now it stops and writes nothing. If attempt 2 is still running, the old
    one's finished analysis is not written either, and the upload and MP4 stay attempt 2's."""
    from app.jobs import video as video_job_module
    from app.pipeline import video as video_pipeline
    from app.pipeline.errors import UnsupportedType
    real_analyze = video_pipeline.analyze_video
    store, job_id, path, options = video_job(tmp_path / "one", models_dir, long_clip)

    def woken_after_the_retry_finished(video, predictor, **kw):
        store.update(job_id, attempts=2, status="done", result={"tracks": "attempt 2's"})
        path.unlink()
        raise UnsupportedType("This file is not a video we can read (No such file or directory).", code="not_a_video")

    monkeypatch.setattr(video_pipeline, "analyze_video", woken_after_the_retry_finished)
    assert video_job_module.run_video_job(job_id, str(path), options) == "superseded"
    record = store.get(job_id)
    assert record["status"] == "done" and record["result"] == {"tracks": "attempt 2's"} and not record.get("error")

    store, job_id, path, options = video_job(tmp_path / "two", models_dir, long_clip, annotate=True)
    theirs = tmp_path / "two" / "results" / job_id / "annotated.mp4"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"attempt 2's video")

    def while_the_retry_runs(video, predictor, **kw):
        store.update(job_id, attempts=2, status="running")
        return real_analyze(video, predictor, **{**kw, "should_cancel": None})

    monkeypatch.setattr(video_pipeline, "analyze_video", while_the_retry_runs)
    assert video_job_module.run_video_job(job_id, str(path), options) == "superseded"
    record = store.get(job_id)
    assert record["status"] == "running" and record["attempts"] == 2 and record.get("result") is None
    assert path.exists() and theirs.read_bytes() == b"attempt 2's video"
    assert sorted(p.name for p in theirs.parent.iterdir()) == ["annotated.mp4"]     # no part file left


def test_a_video_job_stopped_by_its_worker_keeps_its_upload_and_is_queued_again(rq_setup, long_clip, monkeypatch):
    """RQ raises SystemExit inside a job on a worker's second SIGTERM. Before, the job's beat was ended
    (the sweep never saw it again) and the video job deleted its upload, so the retry the worker's docs
    promise had nothing to read."""
    from app.jobs.supervise import run_job
    from app.pipeline import video as video_pipeline

    def stopped(*args, **kwargs):
        raise SystemExit(1)

    jobs, _ = rq_setup
    path = upload(jobs, long_clip)
    job_id = jobs.submit(path, {"fps": 2})           # queued in RQ; no worker takes it here
    record = jobs.store.get(job_id)
    monkeypatch.setattr(video_pipeline, "analyze_video", stopped)
    with pytest.raises(SystemExit):
        run_job(jobs.store.spec(), job_id, record["func"], record["args"], beat_seconds=0.5)
    assert path.exists() and job_id in jobs.store.active_ids()
    time.sleep(STALE + 1)                            # its last beat goes stale
    assert jobs.reaper.sweep() == 1
    record = jobs.store.get(job_id)
    assert record["status"] == "queued" and record["attempts"] == 2 and path.exists()
