"""Batch jobs (app/jobs/batch*.py): the intake's checks, the chunk job on the embedded pool, and real
RQ worker processes on a real Redis sharing one batch, killed mid-chunk and replaced."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from app import settings
from app.jobs import VideoJobs
from app.jobs.batch import chunk_id, csv_rows
from app.jobs.batch_intake import Intake
from app.jobs.batch_service import BatchJobs
from app.jobs.supervise import HOST
from app.pipeline.errors import BadRequest, TooLarge
from tests.batch_photos import no_face_photo, one_face_photos, zip_of
from tests.services import REDIS_URL, redis_for_tests, wait_for_status

ROOT = Path(__file__).resolve().parent.parent
STALE = 5          # seconds without a heartbeat before a chunk counts as lost (30 in production)


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


def damaged(archive: bytes, member: str) -> bytes:
    """The ZIP with bytes inside the member's compressed data flipped (a disk or download error)."""
    start = archive.index(member.encode()) + len(member) + 40
    data = bytearray(archive)
    for i in range(start, start + 30):
        data[i] ^= 0xA5
    return bytes(data)


def test_a_damaged_zip_member_is_an_error_row_and_the_rest_is_analysed(tmp_path):
    """Deflate and LZMA raise their own errors (zlib.error, LZMAError) on damaged data; each becomes that
    member's bad_zip_member row, never a failed request that loses the whole batch."""
    photo = one_face_photos(1)[0][1]
    payload = bytes(range(256)) * 300
    for compression in (zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA):
        intake = Intake(tmp_path / str(compression), max_files=10, max_bytes=1_000_000, max_file_bytes=200_000)
        archive = damaged(zip_of([("scan.bmp", payload), ("ok.jpg", photo)], compression=compression), "scan.bmp")
        add_files(intake, [("photos.zip", archive)])
        assert errors(intake) == {"scan.bmp": "bad_zip_member"}, compression
        assert [e["name"] for e in intake.entries if not e["error"]] == ["ok.jpg"]
        assert "ZipInfo" not in intake.entries[0]["error"]["message"]


def test_what_claims_to_be_a_zip_and_is_not_one_is_400_and_an_unnamed_photo_keeps_its_row(intake):
    photo = one_face_photos(1)[0][1]
    bad_name = zip_of([("é.jpg", photo)]).replace("é".encode(), b"\xff\xfe")    # flagged UTF-8, is not
    for name, data in [("photos.zip", b"just some text"), ("photos.zip", bad_name)]:
        with pytest.raises(BadRequest) as e:
            add_files(intake, [(name, data)])
        assert e.value.code == "bad_zip" and "photos.zip" in e.value.message
    add_files(intake, [("nothing.zip", zip_of([]))])                 # an empty ZIP adds nothing...
    with pytest.raises(BadRequest) as e:
        intake.finish()
    assert e.value.code == "no_photos"                              # ... and alone it is no photos
    # A file part without a file name but with bytes (an API client's) is a photo; an empty one (a form's
    # file field left empty) is nothing.
    add_files(intake, [("", photo), ("", b"")])
    assert [(e["name"], e["error"]) for e in intake.entries] == [("(no name)", None)]


# ---------------------------------------------------------------- embedded

@pytest.fixture()
def embedded(models_dir, tmp_path):
    return BatchJobs(config(models_dir, tmp_path), VideoJobs(config(models_dir, tmp_path)))


def test_embedded_batch_runs_to_done_with_error_rows(embedded):
    files = one_face_photos(3) + [("coffee.jpg", no_face_photo()), ("notes.txt", b"plain text"), ("empty.png", b"")]
    job_id = submit(embedded, files, thumbnails=True, blur=True)
    record = wait_for_status(embedded, job_id)
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


def test_a_batch_older_than_a_day_is_forgotten_whole_and_then_not_found(embedded):
    """Its folder and its record go together (before, a batch-only site kept the records and answered a
    500 for a batch whose folder was gone)."""
    job_id = submit(embedded, one_face_photos(2))
    assert wait_for_status(embedded, job_id)["status"] == "done"
    assert embedded.store.get(chunk_id(job_id, 0))["status"] == "done"      # ended before the batch was
    two_days_ago = time.time() - 2 * 24 * 3600
    for path in [embedded.folder(job_id), *embedded.store.root.glob(f"{job_id}*")]:
        os.utime(path, (two_days_ago, two_days_ago))
    embedded.discard(embedded.new_batch()[0])             # a new batch prunes what is older than a day
    assert embedded.get(job_id) is None and not embedded.folder(job_id).exists()
    assert not list(embedded.store.root.glob(f"{job_id}*"))          # its chunks' records too


def test_cancel_a_running_batch(embedded):
    job_id = submit(embedded, one_face_photos(16))
    wait_for_status(embedded, job_id, ("running",))
    assert embedded.cancel(job_id)["status"] == "cancelled"
    time.sleep(1.0)            # the running chunk stops at its next photo and must not revive the batch
    record = embedded.get(job_id)
    assert record["status"] == "cancelled" and record["result"] is None
    assert not (embedded.folder(job_id) / "uploads").exists()


def test_a_chunk_that_fails_ends_its_batch_at_once_with_chunk_failed_rows(embedded, monkeypatch):
    """A chunk whose function raises (here: its result file cannot be written, as on a full disk) is not
    retried: its photos become chunk_failed rows and the batch ends done, without the silent-chunk wait."""
    import errno

    import app.jobs.batch as batch
    real_write_json = batch.write_json
    failed = []

    def write_json(path, obj):
        if path.name == "1.json" and not failed:       # chunk 1's result, once
            failed.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_json(path, obj)
    monkeypatch.setattr(batch, "write_json", write_json)
    job_id = submit(embedded, one_face_photos(6))
    record = wait_for_status(embedded, job_id, timeout=60)
    assert failed and record["status"] == "done"
    codes = [(r.get("error") or {}).get("code") for r in embedded.records(job_id)]
    assert codes == [None, None, "chunk_failed", "chunk_failed", None, None], codes
    assert record["result"]["summary"]["errors"] == {"chunk_failed": 2}
    chunk = embedded.store.get(f"{job_id}c1")
    assert chunk["status"] == "failed" and chunk["error"]["code"] == "internal"


def two_chunk_batch_run_by_hand(batches, models_dir, since: float) -> tuple[str, dict]:
    """A running batch of 4 photos in 2 chunks, whose chunk functions the test calls itself: (id, options)."""
    job_id, intake = batches.new_batch()
    add_files(intake, one_face_photos(4))
    intake.finish()
    batches.store.create(job_id, {"id": job_id, "kind": "batch", "status": "running", "progress": 0.0, "error": None,
                                  "result": None, "total": 4, "chunk_size": 2, "chunks": 2, "options": {},
                                  "created_at": since, "started_at": since, "updated_at": since})
    options = {"store": batches.store.spec(), "models_dir": str(models_dir), "video_dir": str(batches.root.parent),
               "chunks": 2, "detector": "haar", "max_bytes": 10**7, "max_pixels": 10**8, "analysis_timeout": 30}
    return job_id, options


def test_a_silent_chunk_ends_the_batch_with_error_rows(embedded, models_dir):
    """The backstop: a chunk with no job record to supervise it (expired, or queued before chunks had
    records) and no progress for VISAGE_BATCH_STALE_SECONDS: its photos become worker_lost rows and
    the batch ends, instead of running forever."""
    now = time.time()
    job_id, options = two_chunk_batch_run_by_hand(embedded, models_dir, since=now - 900)
    from app.jobs.batch import run_batch_chunk
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


def test_a_batch_read_as_done_has_no_chunk_still_running(embedded, models_dir):
    """Chunk 0 has written its photos but its worker has not yet ended its record when chunk 1, the last,
    ends the batch: both chunk records say done before the batch's does (a reader, e.g. the pruning of
    old batches, saw chunk 0 "running" beside a done batch)."""
    now = time.time()
    job_id, options = two_chunk_batch_run_by_hand(embedded, models_dir, since=now)
    for n in (0, 1):
        embedded.store.create(chunk_id(job_id, n), {"id": chunk_id(job_id, n), "kind": "chunk", "status": "running",
                                                    "created_at": now, "updated_at": now})
    from app.jobs.batch import chunk_attempt
    assert chunk_attempt(embedded.store, job_id, 0, 0, 2, options) == "done"        # its record not yet ended
    assert embedded.store.get(chunk_id(job_id, 0))["status"] == "running"
    assert chunk_attempt(embedded.store, job_id, 1, 2, 4, options) == "done"        # the last: ends the batch
    assert embedded.store.get(job_id)["status"] == "done"
    assert [embedded.store.get(chunk_id(job_id, n))["status"] for n in (0, 1)] == ["done", "done"]


# ---------------------------------------------------------------- RQ on a real Redis

@pytest.fixture()
def rq_batches(models_dir, tmp_path):
    connection = redis_for_tests()
    tag = f"visage-test-{uuid.uuid4().hex[:8]}"
    cfg = config(models_dir, tmp_path, VISAGE_REDIS_URL=REDIS_URL, VISAGE_REDIS_PREFIX=f"{tag}:",
                 VISAGE_VIDEO_QUEUE=f"{tag}-video", VISAGE_BATCH_QUEUE=f"{tag}-batch", VISAGE_JOB_STALE_SECONDS=STALE)
    batches = BatchJobs(cfg, VideoJobs(cfg))
    batches.tag, batches.connection, batches.ids, batches.workers = tag, connection, [], []
    yield batches
    for w in batches.workers:
        if w.poll() is None:
            w.kill()
            w.wait(timeout=60)
    keys = list(connection.scan_iter(match=f"*{tag}*"))
    for job_id in batches.ids:          # rq's own keys of the chunks: rq:job:<batch>c<n>[-<attempt>]
        keys += list(connection.scan_iter(match=f"rq:*{job_id}*"))
    if keys:
        connection.delete(*keys)
    for registry in ("rq:queues", "rq:workers"):
        members = [m for m in connection.smembers(registry) if tag.encode() in m]
        if members:
            connection.srem(registry, *members)


def start_workers(batches, *names: str) -> list[subprocess.Popen]:
    """The documented worker command, as processes of their own (single-threaded TensorFlow) with the
    test's settings; returns once all of them listen on the batch queue."""
    from rq import Queue, Worker
    keys = ("VISAGE_REDIS_URL", "VISAGE_REDIS_PREFIX", "VISAGE_VIDEO_QUEUE", "VISAGE_BATCH_QUEUE", "VISAGE_VIDEO_DIR",
            "VISAGE_MODELS_DIR", "VISAGE_JOB_STALE_SECONDS", "VISAGE_JOB_ATTEMPTS")
    env = {**os.environ, **{k: str(batches.config[k]) for k in keys},
           "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONFAULTHANDLER": "1"}     # SIGABRT prints every thread's stack (stopped_within)
    workers = [subprocess.Popen([sys.executable, "-m", "app.jobs.worker", "--name", f"{batches.tag}-{name}"],
                                env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for name in names]
    batches.workers += workers
    queue = Queue(f"{batches.tag}-batch", connection=batches.connection)
    deadline = time.monotonic() + 240
    while len(Worker.all(queue=queue)) < len(batches.workers):     # the models are loaded, they listen
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), \
            [w.stdout.read() if w.poll() is not None else "" for w in workers]
        time.sleep(0.2)
    return workers


def stopped_within(worker: subprocess.Popen, seconds: float) -> None:
    """A worker sent SIGTERM finishes its job and exits; if it does not, fail with what it printed."""
    try:
        worker.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        worker.send_signal(signal.SIGABRT)      # with PYTHONFAULTHANDLER: where each of its threads is
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
        raise AssertionError(f"{worker.args} still running {seconds} s after SIGTERM; it printed:\n"
                             f"{worker.communicate(timeout=30)[0][-4000:]}") from None


def test_two_rq_workers_share_one_batch(rq_batches):
    workers = start_workers(rq_batches, "one", "two")
    files = one_face_photos(10) + [("coffee.jpg", no_face_photo())]
    job_id = submit(rq_batches, files)
    rq_batches.ids.append(job_id)
    assert rq_batches.get(job_id)["chunks"] == 6
    record = wait_for_status(rq_batches, job_id, timeout=240)
    for w in workers:
        w.terminate()
    for w in workers:
        stopped_within(w, 60)
    assert record["status"] == "done", record["error"]
    summary = record["result"]["summary"]
    assert summary["photos"] == 11 and summary["faces"] == 10 and summary["no_face"] == 1
    assert summary["workers"] == 2                        # both processes took chunks of the one batch
    assert not (rq_batches.folder(job_id) / "uploads").exists()
    assert {rq_batches.store.get(chunk_id(job_id, n))["status"] for n in range(6)} == {"done"}


def test_rq_cancel_a_queued_batch(rq_batches):
    job_id = submit(rq_batches, one_face_photos(4))        # no worker: its chunks wait in the queue
    rq_batches.ids.append(job_id)
    assert rq_batches.get(job_id)["status"] == "queued"
    assert rq_batches.cancel(job_id)["status"] == "cancelled"
    assert not (rq_batches.folder(job_id) / "uploads").exists()
    from rq import Queue
    assert Queue(f"{rq_batches.tag}-batch", connection=rq_batches.connection).count == 0
    assert [rq_batches.store.get(chunk_id(job_id, n))["status"] for n in range(2)] == ["cancelled"] * 2


def kill_the_worker_of_chunk_0(batches, job_id) -> subprocess.Popen:
    """SIGKILL the worker process running chunk 0, in the middle of it: no clean-up of any kind."""
    folder = batches.folder(job_id)
    deadline = time.monotonic() + 240
    while not (folder / "progress" / "0").exists():       # written as the chunk starts, after its record's pid
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = batches.store.get(chunk_id(job_id, 0))["pid"]
    victim = next(w for w in batches.workers if w.pid == pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert not (folder / "chunks" / "0.json").exists()     # it died mid-chunk
    return victim


def test_a_chunk_whose_rq_worker_is_killed_is_retried_by_another_worker(rq_batches):
    """SIGKILL the worker in the middle of a chunk: the chunk is queued again (attempt 2) and the other
    worker redoes it, so every photo is analysed; within seconds, not VISAGE_BATCH_STALE_SECONDS."""
    rq_batches.config.update(VISAGE_BATCH_CHUNK=10)
    start_workers(rq_batches, "one", "two")
    job_id = submit(rq_batches, one_face_photos(20))
    rq_batches.ids.append(job_id)
    victim = kill_the_worker_of_chunk_0(rq_batches, job_id)
    killed_at = time.monotonic()
    record = wait_for_status(rq_batches, job_id, timeout=240)
    assert time.monotonic() - killed_at < 60          # the backstop would take 300 s
    assert record["status"] == "done" and record["result"]["summary"]["errors"] == {}
    assert [len(r["faces"]) for r in rq_batches.records(job_id)] == [1] * 20       # one row per photo, no duplicates
    assert record["result"]["summary"]["workers"] == 1                           # the survivor did both chunks
    chunk = rq_batches.store.get(chunk_id(job_id, 0))        # ended before the batch was
    assert chunk["status"] == "done" and chunk["attempts"] == 2 and "process ended" in chunk["lost"]
    assert chunk["pid"] != victim.pid
    assert not (rq_batches.folder(job_id) / "uploads").exists()


def test_a_frozen_rq_worker_loses_its_chunk_and_leaves_nothing_when_it_wakes(rq_batches):
    """SIGSTOP the worker in the middle of a chunk (a frozen machine, a swap storm): its heartbeat goes
    stale, the other worker redoes the chunk and the batch ends. Woken afterwards, the frozen worker
    writes nothing into the ended batch and leaves the chunk's record as the retry wrote it."""
    from rq.job import Job
    rq_batches.config.update(VISAGE_BATCH_CHUNK=10)
    start_workers(rq_batches, "one", "two")
    job_id = submit(rq_batches, one_face_photos(20))
    rq_batches.ids.append(job_id)
    folder = rq_batches.folder(job_id)
    deadline = time.monotonic() + 240
    while not (folder / "progress" / "0").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = rq_batches.store.get(chunk_id(job_id, 0))["pid"]
    frozen = next(w for w in rq_batches.workers if w.pid == pid)
    frozen.send_signal(signal.SIGSTOP)
    try:
        record = wait_for_status(rq_batches, job_id, timeout=240)
    finally:
        frozen.send_signal(signal.SIGCONT)
    assert record["status"] == "done" and record["result"]["summary"]["errors"] == {}
    chunk = rq_batches.store.get(chunk_id(job_id, 0))
    assert chunk["attempts"] == 2 and "no heartbeat" in chunk["lost"] and chunk["pid"] != frozen.pid
    first_attempt = Job.fetch(chunk_id(job_id, 0), connection=rq_batches.connection)
    deadline = time.monotonic() + 120
    while first_attempt.get_status(refresh=True) not in ("finished", "failed"):    # the woken worker's attempt ends
        assert time.monotonic() < deadline, first_attempt.get_status()
        time.sleep(0.1)
    assert first_attempt.get_status() == "finished" and first_attempt.return_value() == "skipped"   # no error
    assert sorted(p.name for p in folder.iterdir()) == ["finished", "manifest.json", "result.json"]
    assert rq_batches.store.get(chunk_id(job_id, 0))["status"] == "done"
    assert [len(r["faces"]) for r in rq_batches.records(job_id)] == [1] * 20


def test_a_chunk_that_lost_its_last_attempt_becomes_worker_lost_rows(rq_batches):
    """VISAGE_JOB_ATTEMPTS=1: the killed chunk is not retried; its photos become worker_lost rows and the
    batch ends done with the other chunk's results, never stuck running."""
    rq_batches.config.update(VISAGE_BATCH_CHUNK=10, VISAGE_JOB_ATTEMPTS=1)
    rq_batches.jobs.reaper.attempts = 1
    start_workers(rq_batches, "one", "two")
    job_id = submit(rq_batches, one_face_photos(20))
    rq_batches.ids.append(job_id)
    kill_the_worker_of_chunk_0(rq_batches, job_id)
    killed_at = time.monotonic()
    record = wait_for_status(rq_batches, job_id, timeout=240)
    assert time.monotonic() - killed_at < 60
    assert record["status"] == "done" and record["result"]["summary"]["errors"] == {"worker_lost": 10}
    records = rq_batches.records(job_id)
    assert {r["error"]["code"] for r in records[:10]} == {"worker_lost"}
    assert [len(r["faces"]) for r in records[10:]] == [1] * 10
    chunk = rq_batches.store.get(chunk_id(job_id, 0))
    assert chunk["status"] == "failed" and chunk["error"]["code"] == "worker_lost" and chunk["attempts"] == 1
    assert not (rq_batches.folder(job_id) / "uploads").exists()


EMBEDDED_WEB_PROCESS = textwrap.dedent("""
    import json, sys, time
    from app.jobs import VideoJobs
    from app.jobs.batch_service import BatchJobs
    from tests.test_batch_jobs import submit
    from tests.batch_photos import one_face_photos
    cfg = json.loads(sys.argv[1])
    print(submit(BatchJobs(cfg, VideoJobs(cfg)), one_face_photos(6)), flush=True)
    time.sleep(600)
""")


def test_embedded_chunks_of_a_web_process_that_died_run_again_when_the_app_starts(models_dir, tmp_path):
    cfg = config(models_dir, tmp_path, VISAGE_JOB_STALE_SECONDS=STALE)
    proc = subprocess.Popen([sys.executable, "-c", EMBEDDED_WEB_PROCESS, json.dumps(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        job_id = proc.stdout.readline().strip()
        progress = tmp_path / "batches" / job_id / "progress" / "0"
        deadline = time.monotonic() + 240
        while not progress.exists():             # the web process's pool has started chunk 0
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    batches = BatchJobs(cfg, VideoJobs(cfg))     # a new web process: its reaper sweeps at start
    assert {batches.store.get(chunk_id(job_id, n))["attempts"] for n in range(3)} == {2}
    record = wait_for_status(batches, job_id, timeout=240)
    assert record["status"] == "done" and record["result"]["summary"]["errors"] == {}
    assert [len(r["faces"]) for r in batches.records(job_id)] == [1] * 6


def running_batch(batches, models_dir, photos: int, chunks: int) -> tuple[str, dict]:
    """A batch of `photos` one-face photos in `chunks` chunks of 2, recorded as running with no chunk
    queued, and the options to run its chunks by hand (run_batch_chunk)."""
    job_id, intake = batches.new_batch()
    add_files(intake, one_face_photos(photos))
    intake.finish()
    now = time.time()
    batches.store.create(job_id, {"id": job_id, "kind": "batch", "status": "running", "progress": 0.0, "error": None,
                                  "result": None, "total": photos, "chunk_size": 2, "chunks": chunks, "options": {},
                                  "created_at": now, "started_at": now, "updated_at": now})
    return job_id, {"store": batches.store.spec(), "models_dir": str(models_dir), "video_dir": str(batches.root.parent),
                    "chunks": chunks, "detector": "haar", "max_bytes": 10**7, "max_pixels": 10**8,
                    "analysis_timeout": 30}


def test_a_batch_whose_last_writer_missed_the_end_is_ended_by_the_next_read(embedded, models_dir):
    """Every chunk file written, but no chunk saw them all (a chunk finished while the web process was
    writing a lost chunk's rows): the next GET ends the batch, once."""
    job_id, options = running_batch(embedded, models_dir, photos=4, chunks=2)
    from app.jobs.batch import run_batch_chunk
    options["chunks"] = 3
    for n in (0, 1):          # chunks=3 in their options: neither thinks it is the last one
        assert run_batch_chunk(job_id, n, 2 * n, 2 * n + 2, options) == "done"
    assert embedded.store.get(job_id)["status"] == "running"
    record = embedded.get(job_id)
    assert record["status"] == "done" and record["result"]["summary"]["faces"] == 4
    assert [len(r["faces"]) for r in embedded.records(job_id)] == [1, 1, 1, 1]


def test_a_batch_whose_ending_write_failed_is_ended_by_the_next_read(embedded, models_dir, monkeypatch):
    """The last chunk claimed the end and wrote result.json, but the record's "done" could not be written
    (a full disk, Redis away past the final write's wait): before, the batch said "running" for ever;
    now the next read records the end from result.json."""
    from app.jobs import batch as batch_module
    job_id, options = running_batch(embedded, models_dir, photos=2, chunks=1)
    real_update = type(embedded.store).update

    def disk_full_for_done(store, job, **fields):
        if fields.get("status") == "done":
            raise OSError(28, "No space left on device")
        real_update(store, job, **fields)

    monkeypatch.setattr(type(embedded.store), "update", disk_full_for_done)
    monkeypatch.setattr(batch_module, "FINAL_WRITE_WAIT", 0.0)
    batch_module.run_batch_chunk(job_id, 0, 0, 2, options)       # the ending write gave up
    assert embedded.store.get(job_id)["status"] == "running"
    monkeypatch.setattr(type(embedded.store), "update", real_update)      # the disk has room again
    record = embedded.get(job_id)
    assert record["status"] == "done" and record["result"]["summary"]["faces"] == 2
    assert [len(r["faces"]) for r in embedded.records(job_id)] == [1, 1]


def test_a_lost_chunk_of_a_batch_that_has_ended_is_not_queued_again(embedded):
    """A chunk's worker dies after its batch has already ended (a retry finished it, or it was cancelled):
    the reaper cancels that chunk instead of running it again for nothing."""
    job_id = submit(embedded, one_face_photos(2))
    assert wait_for_status(embedded, job_id)["status"] == "done"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    chunk = chunk_id(job_id, 0)
    embedded.store.update(chunk, status="running", pid=dead.pid, host=HOST, finished_at=None)
    embedded.jobs.reaper.reap(chunk)
    record = embedded.store.get(chunk)
    assert record["status"] == "cancelled" and record["attempts"] == 1 and "process ended" in record["lost"]
    assert embedded.get(job_id)["status"] == "done"
    assert [len(r["faces"]) for r in embedded.records(job_id)] == [1, 1]
