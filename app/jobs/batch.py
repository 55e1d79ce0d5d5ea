"""The batch job: one function, `run_batch_chunk`, analyses one chunk of a batch's photos.

A batch is split into chunks of VISAGE_BATCH_CHUNK photos; each chunk is a job of its own (record kind
"chunk", id chunk_id(batch, n)) for the embedded thread pool or any RQ worker, supervised like a video
job (app/jobs/supervise.py): a chunk whose worker dies is queued again, and once its attempts are used
up, chunk_lost turns its photos into worker_lost rows. A chunk is idempotent: run twice, it redoes its
photos and replaces its result file. Files in the batch's folder (shared storage):

    manifest.json          the photos, written by the web process before any chunk runs (batch_intake.py)
    uploads/000123         the photos themselves (deleted when the batch ends)
    progress/<chunk>       photos this chunk has done (a number; its mtime says when it last moved)
    chunks/<chunk>.json    the chunk's per-photo records, once it is done (or its worker_lost rows)
    finished               created (O_EXCL) by whoever ends the batch: the last chunk, a cancel, the
                           reaper giving up on a chunk, or a read of the batch (BatchJobs: an end that was
                           missed, a chunk silent with no record left); so a batch ends exactly once
    result.json            every photo's record, in upload order (kept as long as the job record)
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from app.face_stats import distributions
from app.jobs.batch_intake import batch_dir, spreadsheet_text, write_json
from app.jobs.store import FINAL_WRITE_WAIT, FINISHED, store_from, survive_outage, write_atomically
from app.pipeline.errors import AnalysisTimeout, InputError
from app.pipeline.predict import EMOTION_LABELS

log = logging.getLogger(__name__)

PROGRESS_EVERY = 1.0        # seconds between progress writes of one chunk
THUMBNAIL_SIDE = 128


def chunk_ranges(total: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def chunk_id(job_id: str, n: int) -> str:
    """The chunk's own job id: letters and digits only, as the file store wants."""
    return f"{job_id}c{n}"


# ---------------------------------------------------------------- one chunk

def run_batch_chunk(job_id: str, chunk: int, start: int, stop: int, options: dict) -> str:
    """Analyse photos [start, stop) of the batch; the last chunk to finish writes the batch's result.

    options: store (spec), models_dir, video_dir, chunks, detector, min_face, profile, max_bytes,
    max_pixels, analysis_timeout, thumbnails, blur. Records how this attempt ended in the chunk's own
    record and returns it (RQ keeps it as the result).
    """
    store = store_from(options["store"])
    outcome = chunk_attempt(store, job_id, chunk, start, stop, options)
    end_chunk(store, chunk_id(job_id, chunk), "done" if outcome == "done" else "cancelled")
    return outcome


def chunk_attempt(store, job_id: str, chunk: int, start: int, stop: int, options: dict) -> str:
    folder = batch_dir(options["video_dir"], job_id)
    record = store.get(job_id)
    if not batch_open(record, folder):
        return "skipped"             # cancelled, or ended without this chunk (a retry that came too late)
    if store.cancel_requested(job_id):
        return end_cancelled(store, job_id, folder)
    if record.get("status") == "queued":
        store.update(job_id, status="running", started_at=time.time())
    progress = folder / "progress" / str(chunk)
    progress.parent.mkdir(exist_ok=True)
    write_count(progress, 0)         # a retry starts from 0 again
    entries = json.loads((folder / "manifest.json").read_text())["files"][start:stop]
    try:
        from app.pipeline.predict import load_predictor
        predictor = load_predictor(options["models_dir"])
        load_error = None
    except Exception as e:         # every photo gets an error row; the batch still ends
        log.exception("batch %s chunk %d: models", job_id, chunk)
        predictor, load_error = None, f"The models could not be loaded on this worker ({type(e).__name__})."
    records, last_write = [], time.monotonic()
    for done, entry in enumerate(entries, 1):
        if store.cancel_requested(job_id):
            return end_cancelled(store, job_id, folder)
        if batch_ended(folder):      # this attempt was frozen while a retry ended the batch: write nothing
            return "skipped"
        records.append(analyze_entry(folder, entry, predictor, options, load_error))
        if time.monotonic() - last_write >= PROGRESS_EVERY:
            last_write = time.monotonic()
            if not write_progress(folder, progress, done):
                return "skipped"
    if batch_ended(folder):
        return "skipped"
    (folder / "chunks").mkdir(exist_ok=True)
    models = dict(predictor.versions) if predictor is not None else {}
    write_json(folder / "chunks" / f"{chunk}.json", {"chunk": chunk, "worker": worker_name(), "models": models,
                                                     "records": records})
    write_count(progress, len(entries))
    if batch_ended(folder):          # it ended while this was written: leave no files in the ended batch
        cleanup(folder, keep_result=True)
    finish_if_complete(store, job_id, folder, options["chunks"])
    return "done"


def end_chunk(store, chunk_job_id: str, status: str) -> None:
    """The chunk's record says the attempt ended (a direct call, or a chunk queued before chunks had
    records, has none: nothing to write then). A record another attempt has already ended stays as it
    is: a worker that was frozen while a retry did its chunk must not turn "done" into "cancelled"."""
    record = store.get(chunk_job_id)
    if record is not None and record.get("status") not in FINISHED:
        store.update(chunk_job_id, status=status, finished_at=time.time())


def chunk_lost(store, record: dict, how: str = "worker_lost") -> None:
    """The on_lost of a chunk that will not run again: its worker died with no attempt left (the reaper:
    worker_lost rows), or its function raised (run_job's "failed", e.g. RQ's job timeout or a full disk:
    chunk_failed rows). Its photos become those error rows, and the batch ends if that was its last open
    chunk."""
    code = "chunk_failed" if how == "failed" else "worker_lost"
    job_id, chunk, start, stop, options = record["args"]
    folder = batch_dir(options["video_dir"], job_id)
    if batch_ended(folder) or (folder / "chunks" / f"{chunk}.json").exists():
        return
    manifest = json.loads((folder / "manifest.json").read_text())["files"]
    write_lost(folder, chunk, manifest[start:stop], code)
    finish_if_complete(store, job_id, folder, options["chunks"])


def chunk_still_wanted(store, record: dict) -> bool:
    """The still_wanted of a chunk whose worker died (the reaper): another attempt is worth it only while
    its batch is open. A batch that ended without it (cancelled, or its rows written by a retry) needs none."""
    job_id, _chunk, _start, _stop, options = record["args"]
    return batch_open(store.get(job_id), batch_dir(options["video_dir"], job_id))


def write_lost(folder: Path, chunk: int, entries: list[dict], code: str = "worker_lost") -> None:
    """A chunk's file of error rows, and its progress at "done" (the bar moves on)."""
    for name in ("chunks", "progress"):
        (folder / name).mkdir(exist_ok=True)
    write_json(folder / "chunks" / f"{chunk}.json", {"chunk": chunk, "worker": None,
                                                     "records": lost_records(entries, code)})
    write_count(folder / "progress" / str(chunk), len(entries))


def finish_if_complete(store, job_id: str, folder: Path, chunks: int) -> None:
    """Every chunk's file is written after its work, so whoever writes the last one sees them all."""
    if all((folder / "chunks" / f"{n}.json").exists() for n in range(chunks)):
        finish(store, job_id, folder)


def analyze_entry(folder: Path, entry: dict, predictor, options: dict, load_error: str | None) -> dict:
    """One photo's record: {index, file, faces, image} or {index, file, error}. Never raises."""
    from app.pipeline.analyze import run_pipeline
    record = {"index": entry["index"], "file": entry["name"]}
    if entry.get("error"):
        return {**record, "error": entry["error"]}
    if load_error:
        return {**record, "error": {"code": "models_unavailable", "message": load_error}}
    try:
        data = (folder / entry["path"]).read_bytes()
        answer, image = run_pipeline(data, predictor, detector=options["detector"],
                                     min_face=options.get("min_face", 0.0), profile=options.get("profile", "accurate"),
                                     max_bytes=options["max_bytes"], max_pixels=options["max_pixels"],
                                     deadline=time.monotonic() + options["analysis_timeout"])
    except InputError as e:
        return {**record, "error": {"code": e.code, "message": e.message}}
    except AnalysisTimeout:
        return {**record, "error": {"code": "analysis_timeout",
                                    "message": f"The analysis took longer than {options['analysis_timeout']:g} s."}}
    except OSError as e:
        return {**record, "error": {"code": "unreadable", "message": f"The upload could not be read ({e.strerror or e})."}}
    except Exception as e:        # one bad photo must not lose the other photos of the chunk
        log.exception("batch photo %s", entry["name"])
        return {**record, "error": {"code": "internal", "message": f"The analysis failed on our side ({type(e).__name__})."}}
    record.update(faces=answer["faces"], image=answer["image"], error=None)
    if options.get("thumbnails"):
        record["thumbnail"] = thumbnail(image, answer["faces"], blur=bool(options.get("blur")))
    return record


def thumbnail(image, faces: list[dict], blur: bool) -> str:
    """A small JPEG of the photo (data: URL), every face blurred when the user asked."""
    import cv2

    from app.pipeline.blur import blur_faces
    from app.pipeline.video import jpeg_data_url
    if blur:
        image = blur_faces(image, [tuple(face["box"][k] for k in "xywh") for face in faces])
    height, width = image.shape[:2]
    scale = min(1.0, THUMBNAIL_SIDE / max(height, width))
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    return jpeg_data_url(small)


def write_count(path: Path, count: int) -> None:
    write_atomically(path, str(count))


def write_progress(folder: Path, path: Path, count: int) -> bool:
    """A running chunk's count of photos done; False when the batch has ended meanwhile (its progress
    folder is gone: a retry ended it while this attempt was frozen), so the attempt stops there."""
    try:
        write_count(path, count)
        return True
    except FileNotFoundError:
        if batch_ended(folder):
            return False
        raise


# ---------------------------------------------------------------- ending a batch

def batch_ended(folder: Path) -> bool:
    """Whether the batch's end has been claimed (done or cancelled): its files are then being removed."""
    return (folder / "finished").exists()


def batch_open(batch: dict | None, folder: Path) -> bool:
    """Whether a batch (its record, its folder) still wants its chunks' work: not ended, its end not claimed."""
    return batch is not None and batch.get("status") not in FINISHED and not batch_ended(folder)


def claim_end(folder: Path) -> bool:
    """True for exactly one caller per batch (O_EXCL also holds on NFS v3+)."""
    try:
        os.close(os.open(folder / "finished", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def end_cancelled(store, job_id: str, folder: Path) -> str:
    if claim_end(folder):
        cleanup(folder, keep_result=False)
        survive_outage(lambda: store.update(job_id, status="cancelled", finished_at=time.time()),
                       wait=FINAL_WRITE_WAIT)
    elif (store.get(job_id) or {}).get("status") == "running" and not (folder / "result.json").exists():
        # A JSON-file record rewritten by a progress write just after the cancel: say cancelled again.
        store.update(job_id, status="cancelled")
    return "cancelled"


def cleanup(folder: Path, keep_result: bool) -> None:
    """Uploads go when the batch ends; the result file stays as long as the job record."""
    for name in ("uploads", "progress", "chunks"):
        shutil.rmtree(folder / name, ignore_errors=True)
    if not keep_result:
        (folder / "result.json").unlink(missing_ok=True)


def finish(store, job_id: str, folder: Path) -> bool:
    """Merge the chunks into result.json and mark the batch done. Photos of a chunk with no file
    (it cannot be read) get worker_lost rows."""
    if not claim_end(folder):
        return False
    record = store.get(job_id) or {}
    manifest = json.loads((folder / "manifest.json").read_text())["files"]
    by_index, workers, models, worked = {}, set(), {}, []
    for n, (start, stop) in enumerate(chunk_ranges(len(manifest), record.get("chunk_size") or len(manifest))):
        try:
            chunk = json.loads((folder / "chunks" / f"{n}.json").read_text())
            by_index.update((r["index"], r) for r in chunk["records"])
            if chunk["worker"]:                  # None: worker_lost rows, no worker's work
                workers.add(chunk["worker"])
                worked.append(n)
            models = models or chunk.get("models") or {}
        except (OSError, ValueError):
            by_index.update((r["index"], r) for r in lost_records(manifest[start:stop]))
    records = [by_index[entry["index"]] for entry in manifest]
    started = record.get("started_at") or record.get("created_at") or time.time()
    summary = {**summarize(records, seconds=time.time() - started, workers=len(workers)), "models": models}
    write_json(folder / "result.json", {"files": records, "summary": summary})
    cleanup(folder, keep_result=True)
    survive_outage(lambda: end_chunks_then_batch(store, job_id, worked, summary), wait=FINAL_WRITE_WAIT)
    return True


def end_chunks_then_batch(store, job_id: str, worked: list[int], summary: dict) -> None:
    """The records of the chunks whose work is in the result end before the batch's record does, so a
    batch read as done has none of them still "running" (a chunk's own end_chunk comes after its
    function returns, and another chunk may be the one that ends the batch)."""
    for n in worked:
        end_chunk(store, chunk_id(job_id, n), "done")
    record_done(store, job_id, summary)


def record_done(store, job_id: str, summary: dict) -> None:
    store.update(job_id, status="done", progress=1.0, finished_at=time.time(),
                 result={"summary": summary, "files": "result.json"})


def end_recorded_late(store, job_id: str, folder: Path, wait: float = FINAL_WRITE_WAIT) -> bool:
    """A batch whose end was claimed but whose record still says running (the ending write failed: Redis
    down for longer than the final write waits, a full disk): a read records the end it finds, "done"
    with the summary result.json keeps, or, with no result.json once the end is older than `wait` (no
    finisher still writing it), "cancelled". True when it wrote one."""
    try:
        result = json.loads((folder / "result.json").read_text())
        summary = result.get("summary") or summarize(result["files"])      # older result files: no summary
    except (OSError, ValueError, KeyError, AttributeError):
        summary = None
    if summary is not None:
        record_done(store, job_id, summary)
        return True
    try:
        claimed = (folder / "finished").stat().st_mtime
    except OSError:
        return False
    if time.time() - claimed > wait:
        store.update(job_id, status="cancelled", finished_at=time.time())
        return True
    return False


LOST_MESSAGES = {
    "worker_lost": "The worker analysing this photo stopped responding; it was not analysed.",
    "chunk_failed": "The part of the batch holding this photo failed on our side; it was not analysed.",
}


def lost_records(entries: list[dict], code: str = "worker_lost") -> list[dict]:
    """Error rows for manifest entries whose chunk ended before writing them (a file the intake
    already refused keeps its own error)."""
    return [{"index": e["index"], "file": e["name"], "error": e.get("error") or {
        "code": code, "message": LOST_MESSAGES[code]}} for e in entries]


def summarize(records: list[dict], seconds: float = 0.0, workers: int = 0) -> dict:
    """The batch's numbers: photos, faces, errors by code, and the dashboard's distributions."""
    faces = [face for r in records for face in r.get("faces") or []]
    errors: dict[str, int] = {}
    for r in records:
        if r.get("error"):
            errors[r["error"]["code"]] = errors.get(r["error"]["code"], 0) + 1
    analysed = sum(1 for r in records if not r.get("error"))
    return {"photos": len(records), "analysed": analysed, "failed": len(records) - analysed,
            "with_faces": sum(1 for r in records if r.get("faces")),
            "no_face": sum(1 for r in records if not r.get("error") and not r.get("faces")),
            "faces": len(faces), "errors": errors,
            "mean_age": round(sum(f["age"] for f in faces) / len(faces), 1) if faces else None,
            **distributions(faces),
            "seconds": round(seconds, 1), "photos_per_second": round(len(records) / seconds, 2) if seconds > 0 else None,
            "workers": workers}


# ---------------------------------------------------------------- CSV

CSV_COLUMNS = (["index", "file", "face", "x", "y", "w", "h", "age", "age_low", "age_high", "age_group", "gender",
                "gender_probability", "emotion"] + [f"p_{e}" for e in EMOTION_LABELS] + ["error_code", "error_message"])
NO_FACE = {"error_code": "no_face", "error_message": "No face found in this photo."}


def csv_rows(records: list[dict]):
    """One row per face; a photo that failed or had no face gets one row with an error code."""
    for r in records:
        base = {"index": r["index"], "file": spreadsheet_text(r["file"])}
        if r.get("error"):
            yield {**base, "face": 0, "error_code": r["error"]["code"],
                   "error_message": spreadsheet_text(r["error"]["message"])}
        elif not r.get("faces"):
            yield {**base, "face": 0, **NO_FACE}
        for i, face in enumerate(r.get("faces") or [], 1):
            row = {**base, "face": i, **face["box"], "age": face["age"], "gender": face["gender"]["label"],
                   "gender_probability": face["gender"]["probability"], "emotion": face["emotion"]["label"],
                   "age_group": face.get("age_group")}
            if "age_range" in face:
                row.update(age_low=face["age_range"][0], age_high=face["age_range"][1])
            row.update({f"p_{e}": p for e, p in face["emotion"]["probabilities"].items()})
            yield row


def write_csv(records: list[dict], out) -> None:
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(csv_rows(records))
