"""Batch jobs (app/jobs/batch*.py): the intake's checks, the chunk job on the embedded pool, and two
real RQ worker processes sharing one batch on a real Redis."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from app import settings
from app.jobs import VideoJobs
from app.jobs.batch import csv_rows
from app.jobs.batch_intake import Intake
from app.jobs.batch_service import BatchJobs
from app.pipeline.errors import BadRequest, TooLarge
from tests.batch_photos import no_face_photo, one_face_photos, zip_of

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("VISAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


def config(models_dir, tmp_path, **extra) -> dict:
    return {**settings.DEFAULTS, "VISAGE_MODELS_DIR": str(models_dir), "VISAGE_VIDEO_DIR": str(tmp_path),
            "VISAGE_BATCH_CHUNK": 2, **extra}


def add_files(intake: Intake, files) -> None:
    for name, data in files:
        path = intake.new_path()
        path.write_bytes(data)
        intake.add_upload(name, path)


def submit(batches: BatchJobs, files, **options) -> str:
    job_id, intake = batches.new_batch()
    add_files(intake, files)
    return batches.submit(job_id, intake, {"detector": "haar", **options})


def wait_until(batches, job_id, statuses=("done", "failed", "cancelled"), timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = batches.get(job_id)
        if record["status"] in statuses:
            return record
        time.sleep(0.1)
    raise AssertionError(f"batch {job_id} still {batches.get(job_id)['status']} after {timeout} s")


# ---------------------------------------------------------------- the intake

@pytest.fixture()
def intake(tmp_path):
    return Intake(tmp_path / "job", max_files=10, max_bytes=1_000_000, max_file_bytes=200_000)


def errors(intake: Intake) -> dict:
    return {e["name"]: e["error"]["code"] for e in intake.entries if e["error"]}


def test_zip_names_never_become_paths(intake, tmp_path):
    photo = one_face_photos(1)[0][1]
    add_files(intake, [("photos.zip", zip_of([
        ("../../escaped.jpg", photo), ("/etc/absolute.jpg", photo + b"1"), ("C:/windows.jpg", photo + b"2"),
        ("trip/day 1/ok.jpg", photo + b"3"), ("inner.zip", zip_of([("a.jpg", photo)])),
        ("disguised.jpg", zip_of([("b.jpg", photo)])), ("__MACOSX/._ok.jpg", b"junk"), (".DS_Store", b"junk")]))])
    assert errors(intake) == {"../../escaped.jpg": "unsafe_name", "/etc/absolute.jpg": "unsafe_name",
                              "C:/windows.jpg": "unsafe_name", "inner.zip": "nested_zip", "disguised.jpg": "nested_zip"}
    good = [e for e in intake.entries if not e["error"]]
    assert [e["name"] for e in good] == ["trip/day 1/ok.jpg"] and good[0]["path"].startswith("uploads/")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [intake.folder / good[0]["path"]]       # nothing else, and nothing outside the job folder
    assert not (tmp_path / "escaped.jpg").exists()


def test_empty_duplicate_and_oversized_files_are_error_rows(intake):
    photo = one_face_photos(1)[0][1]
    add_files(intake, [("a.jpg", photo), ("copy-of-a.jpg", photo), ("empty.jpg", b""),
                       ("huge.jpg", b"\xff" * 200_001), ("notes.txt", b"not a photo")])
    assert errors(intake) == {"copy-of-a.jpg": "duplicate", "empty.jpg": "empty_file", "huge.jpg": "too_large"}
    assert "a.jpg" in next(e for e in intake.entries if e["name"] == "copy-of-a.jpg")["error"]["message"]
    assert [e["index"] for e in intake.entries] == [0, 1, 2, 3, 4]


def test_zip_bomb_and_too_many_files_are_refused_before_work(intake):
    bomb = zip_of([(f"{i}.jpg", b"\0" * 190_000) for i in range(6)])      # 1.1 MB unpacked from a few KB
    assert len(bomb) < 20_000
    with pytest.raises(TooLarge) as e:
        add_files(intake, [("bomb.zip", bomb)])
    assert e.value.code == "zip_too_large" and e.value.status == 413
    with pytest.raises(TooLarge) as e:
        add_files(intake, [("many.zip", zip_of([(f"{i}.jpg", bytes([i]) * 10) for i in range(11)]))])
    assert e.value.code == "too_many_files"


def test_a_zip_member_larger_than_its_header_says_is_cut_off(intake, tmp_path):
    data = zip_of([("liar.jpg", b"\x01" * 300_000)])
    archive = tmp_path / "liar.zip"
    archive.write_bytes(data)
    with zipfile.ZipFile(archive) as z:
        info = z.infolist()[0]
    # Patch the declared size (central directory and local header) down to 1,000 bytes.
    patched = bytearray(data)
    for offset in (data.rfind(b"PK\x01\x02") + 24, 22):
        patched[offset:offset + 4] = (1000).to_bytes(4, "little")
    add_files(intake, [("liar.zip", bytes(patched))])
    assert errors(intake) == {"liar.jpg": "bad_zip_member"} and info.file_size == 300_000


def test_an_unreadable_zip_and_an_empty_batch_are_400(intake):
    with pytest.raises(BadRequest) as e:
        add_files(intake, [("broken.zip", b"PK\x03\x04" + b"\0" * 100)])
    assert e.value.code == "bad_zip"
    with pytest.raises(BadRequest) as e:
        intake.finish()
    assert e.value.code == "no_photos"


# ---------------------------------------------------------------- embedded

@pytest.fixture()
def embedded(models_dir, tmp_path):
    return BatchJobs(config(models_dir, tmp_path), VideoJobs(config(models_dir, tmp_path)))


def test_embedded_batch_runs_to_done_with_error_rows(embedded):
    files = one_face_photos(3) + [("coffee.jpg", no_face_photo()), ("notes.txt", b"plain text"), ("empty.png", b"")]
    job_id = submit(embedded, files, thumbnails=True, blur=True)
    record = wait_until(embedded, job_id)
    assert record["status"] == "done" and record["done"] == record["total"] == 6 and record["chunks"] == 3
    records = embedded.records(job_id)
    assert [r["file"] for r in records] == [name for name, _ in files]
    assert [len(r.get("faces") or []) for r in records] == [1, 1, 1, 0, 0, 0]
    assert records[4]["error"]["code"] == "unsupported_type" and records[5]["error"]["code"] == "empty_file"
    assert records[0]["thumbnail"].startswith("data:image/jpeg;base64,")
    summary = record["result"]["summary"]
    assert (summary["photos"], summary["faces"], summary["no_face"], summary["failed"]) == (6, 3, 1, 2)
    assert summary["errors"] == {"unsupported_type": 1, "empty_file": 1}
    assert sum(summary["emotions"]["counts"]) == sum(summary["genders"]["counts"]) == sum(summary["ages"]["counts"]) == 3
    rows = list(csv_rows(records))
    assert [r.get("error_code") for r in rows] == [None, None, None, "no_face", "unsupported_type", "empty_file"]
    folder = embedded.folder(job_id)
    assert not (folder / "uploads").exists() and (folder / "result.json").exists()   # uploads go, results stay


def test_cancel_a_running_batch(embedded):
    job_id = submit(embedded, one_face_photos(16))
    wait_until(embedded, job_id, ("running",))
    assert embedded.cancel(job_id)["status"] == "cancelled"
    time.sleep(1.0)            # the running chunk stops at its next photo and must not revive the batch
    record = embedded.get(job_id)
    assert record["status"] == "cancelled" and record["result"] is None
    assert not (embedded.folder(job_id) / "uploads").exists()


def test_a_silent_chunk_ends_the_batch_with_error_rows(embedded, models_dir):
    """A chunk whose worker died (no progress for VISAGE_BATCH_STALE_SECONDS): its photos become
    worker_lost rows and the batch ends, instead of running forever."""
    job_id, intake = embedded.new_batch()
    add_files(intake, one_face_photos(4))
    intake.finish()
    now = time.time()
    embedded.store.create(job_id, {"id": job_id, "kind": "batch", "status": "running", "progress": 0.0, "error": None,
                                   "result": None, "total": 4, "chunk_size": 2, "chunks": 2, "options": {},
                                   "created_at": now - 900, "started_at": now - 900, "updated_at": now - 900})
    from app.jobs.batch import run_batch_chunk
    options = {"store": embedded.store.spec(), "models_dir": str(models_dir), "video_dir": str(embedded.root.parent),
               "chunks": 2, "detector": "haar", "max_bytes": 10**7, "max_pixels": 10**8, "analysis_timeout": 30}
    assert run_batch_chunk(job_id, 0, 0, 2, options) == "done"      # chunk 0 ran; chunk 1's worker "died":
    progress = embedded.folder(job_id) / "progress" / "1"
    progress.write_text("1")
    os.utime(progress, (now - 900, now - 900))
    os.utime(embedded.folder(job_id) / "progress" / "0", (now - 900, now - 900))
    record = embedded.get(job_id)
    assert record["status"] == "done"
    codes = [(r.get("error") or {}).get("code") for r in embedded.records(job_id)]
    assert codes == [None, None, "worker_lost", "worker_lost"]
    assert run_batch_chunk(job_id, 1, 2, 4, options) == "skipped"     # a retry that comes too late changes nothing


# ---------------------------------------------------------------- RQ on a real Redis

@pytest.fixture()
def rq_batches(models_dir, tmp_path):
    redis = pytest.importorskip("redis")
    connection = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        connection.ping()
    except redis.RedisError as e:
        pytest.skip(f"RQ tests need Redis at {REDIS_URL} (.ci/run starts one): {e}")
    tag = f"visage-test-{uuid.uuid4().hex[:8]}"
    cfg = config(models_dir, tmp_path, VISAGE_REDIS_URL=REDIS_URL, VISAGE_REDIS_PREFIX=f"{tag}:",
                 VISAGE_VIDEO_QUEUE=f"{tag}-video", VISAGE_BATCH_QUEUE=f"{tag}-batch")
    batches = BatchJobs(cfg, VideoJobs(cfg))
    batches.tag, batches.connection = tag, connection
    yield batches
    keys = list(connection.scan_iter(match=f"*{tag}*"))
    for job_id in getattr(batches, "ids", []):
        keys += list(connection.scan_iter(match=f"rq:*{job_id}*"))
    if keys:
        connection.delete(*keys)
    for registry in ("rq:queues", "rq:workers"):
        members = [m for m in connection.smembers(registry) if tag.encode() in m]
        if members:
            connection.srem(registry, *members)


def start_worker(batches, name: str) -> subprocess.Popen:
    """The documented worker command, as its own process (single-threaded TensorFlow)."""
    env = {**os.environ, "VISAGE_REDIS_URL": REDIS_URL, "VISAGE_VIDEO_QUEUE": f"{batches.tag}-video",
           "VISAGE_BATCH_QUEUE": f"{batches.tag}-batch", "VISAGE_MODELS_DIR": batches.config["VISAGE_MODELS_DIR"],
           "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "app.jobs.worker", "--name", f"{batches.tag}-{name}"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_rq_workers_share_one_batch(rq_batches):
    from rq import Worker
    from rq import Queue
    workers = [start_worker(rq_batches, name) for name in ("one", "two")]
    try:
        queue = Queue(f"{rq_batches.tag}-batch", connection=rq_batches.connection)
        deadline = time.monotonic() + 240
        while len(Worker.all(queue=queue)) < 2:            # both have loaded the models and listen
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), \
                [w.stdout.read() if w.poll() is not None else "" for w in workers]
            time.sleep(0.2)
        files = one_face_photos(10) + [("coffee.jpg", no_face_photo())]
        job_id = submit(rq_batches, files)
        rq_batches.ids = [f"{job_id}-{n}" for n in range(6)]
        assert rq_batches.get(job_id)["chunks"] == 6
        record = wait_until(rq_batches, job_id, timeout=240)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=60)
    assert record["status"] == "done", record["error"]
    summary = record["result"]["summary"]
    assert summary["photos"] == 11 and summary["faces"] == 10 and summary["no_face"] == 1
    assert summary["workers"] == 2                        # both processes took chunks of the one batch
    assert not (rq_batches.folder(job_id) / "uploads").exists()


def test_rq_cancel_a_queued_batch(rq_batches):
    job_id = submit(rq_batches, one_face_photos(4))        # no worker: its chunks wait in the queue
    rq_batches.ids = [f"{job_id}-{n}" for n in range(2)]
    assert rq_batches.get(job_id)["status"] == "queued"
    assert rq_batches.cancel(job_id)["status"] == "cancelled"
    assert not (rq_batches.folder(job_id) / "uploads").exists()
    from rq import Queue
    assert Queue(f"{rq_batches.tag}-batch", connection=rq_batches.connection).count == 0


def test_a_killed_rq_worker_does_not_leave_the_batch_running(rq_batches):
    """SIGKILL the worker in the middle of a chunk: another worker does the rest, and the dead chunk's
    photos become worker_lost rows once it has been silent VISAGE_BATCH_STALE_SECONDS (unless a retry
    redoes them first); the batch ends either way."""
    import signal
    from rq import Queue, Worker
    rq_batches.config.update(VISAGE_BATCH_CHUNK=10, VISAGE_BATCH_STALE_SECONDS=3)
    queue = Queue(f"{rq_batches.tag}-batch", connection=rq_batches.connection)
    first = start_worker(rq_batches, "doomed")
    second = None
    try:
        deadline = time.monotonic() + 240
        while len(Worker.all(queue=queue)) < 1:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        job_id = submit(rq_batches, one_face_photos(20))
        rq_batches.ids = [f"{job_id}-{n}" for n in range(2)]
        progress = rq_batches.folder(job_id) / "progress" / "0"
        while not progress.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)           # mid-chunk: no clean-up of any kind
        first.wait(timeout=30)
        second = start_worker(rq_batches, "survivor")
        record = wait_until(rq_batches, job_id, timeout=240)
    finally:
        for w in (first, second):
            if w is not None and w.poll() is None:
                w.terminate()
                w.wait(timeout=60)
    assert record["status"] == "done"
    records = rq_batches.records(job_id)
    assert all(not r.get("error") and len(r["faces"]) == 1 for r in records[10:])      # the survivor's chunk
    assert {(r.get("error") or {}).get("code") for r in records[:10]} <= {"worker_lost", None}
    assert not (rq_batches.folder(job_id) / "uploads").exists()


def test_a_batch_whose_last_writer_missed_the_end_is_ended_by_the_next_read(embedded, models_dir):
    """Every chunk file written, but no chunk saw them all (a chunk finished while the web process was
    writing a lost chunk's rows): the next GET ends the batch, once."""
    job_id, intake = embedded.new_batch()
    add_files(intake, one_face_photos(4))
    intake.finish()
    now = time.time()
    embedded.store.create(job_id, {"id": job_id, "kind": "batch", "status": "running", "progress": 0.0, "error": None,
                                   "result": None, "total": 4, "chunk_size": 2, "chunks": 2, "options": {},
                                   "created_at": now, "started_at": now, "updated_at": now})
    from app.jobs.batch import run_batch_chunk
    options = {"store": embedded.store.spec(), "models_dir": str(models_dir), "video_dir": str(embedded.root.parent),
               "chunks": 3, "detector": "haar", "max_bytes": 10**7, "max_pixels": 10**8, "analysis_timeout": 30}
    for n in (0, 1):          # chunks=3 in their options: neither thinks it is the last one
        assert run_batch_chunk(job_id, n, 2 * n, 2 * n + 2, options) == "done"
    assert embedded.store.get(job_id)["status"] == "running"
    record = embedded.get(job_id)
    assert record["status"] == "done" and record["result"]["summary"]["faces"] == 4
    assert [len(r["faces"]) for r in embedded.records(job_id)] == [1, 1, 1, 1]
