"""The video job: analyse an uploaded video, render it if asked, record the outcome, delete the upload.

One attempt of a job may outlive its turn: a worker frozen (or cut off from Redis) past the stale time
is taken for lost, and the job runs again as attempt n + 1. When the first one wakes, the job belongs
to the newer attempt: the old one stops at its next check and writes nothing (no outcome over the
newer one's, no deleted upload the newer one still reads, no half-written MP4 over its finished one).
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from app.jobs.store import FINAL_WRITE_WAIT, FINISHED, store_from, survive_outage
from app.pipeline.errors import InputError, JobCancelled

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.5            # seconds between progress writes
OWNER_CHECK_EVERY = 1.0         # seconds between checks that no newer attempt has taken the job over
ANALYSIS_SHARE = 0.8            # of the progress bar, when an annotated video is rendered after the analysis


def result_dir(options: dict, job_id: str) -> Path:
    return Path(options["video_dir"]) / "results" / job_id


class Superseded(Exception):
    """A newer attempt has taken this job over, or ended it: this attempt stops and writes nothing."""


def superseded(store, job_id: str, attempt: int) -> bool:
    """Whether the job is no longer this attempt's: its record names a later attempt, or it has ended
    (expired records count too). Where the store cannot say (Redis restarting), it is still ours."""
    def check():
        record = store.get(job_id)
        return record is None or int(record.get("attempts") or 1) != attempt or record.get("status") in FINISHED
    return bool(survive_outage(check, default=False))


def run_video_job(job_id: str, path: str, options: dict) -> str:
    """Analyse the uploaded video at `path`, record the outcome, then delete the upload.

    options: store (spec), models_dir, video_dir, fps, detector, min_face, max_seconds, max_pixels,
    annotate, blur. Returns the final status (RQ keeps it as the job's return value). An attempt that
    records no outcome leaves the upload to the attempt that goes on: one superseded ("superseded"),
    or one stopped from outside (its worker killed: SystemExit), which the reaper queues again.
    """
    store = store_from(options["store"])
    record = store.get(job_id)
    attempt = int((record or {}).get("attempts") or 1)
    try:
        status = attempt_video_job(store, job_id, path, options, attempt)
    except Superseded:
        log.warning("video job %s: attempt %d was taken over by a newer attempt; it stops here", job_id, attempt)
        return "superseded"
    Path(path).unlink(missing_ok=True)
    return status


def attempt_video_job(store, job_id: str, path: str, options: dict, attempt: int) -> str:
    """run_video_job's work and outcome (done, failed or cancelled); raises Superseded instead of writing
    where a newer attempt owns the job."""
    from app.pipeline.video import analyze_video, render_annotated, video_predictor
    last_write = last_owner_check = 0.0

    def should_cancel() -> bool:
        nonlocal last_owner_check
        if time.monotonic() - last_owner_check >= OWNER_CHECK_EVERY:     # a record read: not every frame
            last_owner_check = time.monotonic()
            if superseded(store, job_id, attempt):
                raise Superseded()
        return survive_outage(lambda: store.cancel_requested(job_id), default=False)

    def outcome(**fields) -> None:
        """The attempt's last write, unless a newer attempt owns the job by now."""
        if superseded(store, job_id, attempt):
            raise Superseded()
        survive_outage(lambda: store.update(job_id, finished_at=time.time(), **fields), wait=FINAL_WRITE_WAIT)

    def report(share_start: float, share: float):
        def progress(done: int, total: int) -> None:
            nonlocal last_write
            now = time.monotonic()
            if now - last_write >= PROGRESS_EVERY or done >= total:
                last_write = now
                value = round(share_start + share * done / max(total, 1), 4)
                survive_outage(lambda: store.update(job_id, progress=value))
        return progress

    try:
        record = store.get(job_id)
        if record is None or record.get("status") == "cancelled" or should_cancel():
            raise JobCancelled()
        store.update(job_id, status="running", started_at=time.time(), progress=0.0)
        predictor = video_predictor(options["models_dir"])
        annotate = bool(options.get("annotate"))
        analysis_share = ANALYSIS_SHARE if annotate else 1.0
        result = analyze_video(path, predictor, fps=options.get("fps", 5.0),
                               detector=options.get("detector", "blazeface"), min_face=options.get("min_face", 0.0),
                               max_seconds=options["max_seconds"], max_pixels=options["max_pixels"],
                               progress=report(0.0, analysis_share), should_cancel=should_cancel)
        result["files"] = {}
        if annotate:
            out = result_dir(options, job_id)
            out.mkdir(parents=True, exist_ok=True)
            # Rendered under this attempt's own name, then put in place: never over another attempt's MP4.
            part = out / f"annotated.attempt{attempt}.mp4"
            try:
                render_annotated(path, result, part, blur=bool(options.get("blur")),
                                 progress=report(analysis_share, 1.0 - analysis_share), should_cancel=should_cancel)
                if superseded(store, job_id, attempt):
                    raise Superseded()
                os.replace(part, out / "annotated.mp4")
            finally:
                part.unlink(missing_ok=True)      # a render that stopped half-way leaves no file behind
            result["files"]["annotated"] = "annotated.mp4"
            result["blurred"] = bool(options.get("blur"))
        outcome(status="done", progress=1.0, result=result)
        return "done"
    except JobCancelled:
        record = store.get(job_id)
        if record is not None and record.get("status") != "cancelled" and superseded(store, job_id, attempt):
            raise Superseded() from None
        shutil.rmtree(result_dir(options, job_id), ignore_errors=True)
        store.update(job_id, status="cancelled", finished_at=time.time())
        return "cancelled"
    except InputError as e:
        outcome(status="failed", error={"code": e.code, "message": e.message})
        return "failed"
    except Superseded:
        raise
    except Exception as e:   # never a job stuck in "running": any crash is a failed job with a reason
        log.exception("video job %s failed", job_id)
        outcome(status="failed", error={"code": "internal",
                                        "message": f"The analysis failed on our side ({type(e).__name__})."})
        return "failed"
