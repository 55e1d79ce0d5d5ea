"""The video job: analyse an uploaded video, render it if asked, record the outcome, delete the upload."""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from app.jobs.store import STORE_UNAVAILABLE, store_from
from app.pipeline.errors import InputError, JobCancelled

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.5            # seconds between progress writes
ANALYSIS_SHARE = 0.8            # of the progress bar, when an annotated video is rendered after the analysis


def survive_outage(call, default=None, wait: float = 0.0):
    """A store call that may meet Redis restarting (or a full disk): retried for up to `wait` seconds.
    Progress writes and cancel checks give up at once and the job goes on; its outcome waits for the store."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return call()
        except STORE_UNAVAILABLE as e:
            if time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            if wait:
                raise
            log.warning("job store unavailable (%s); the job goes on", e)
            return default


FINAL_WRITE_WAIT = 60.0         # seconds the job's outcome waits for the store (a Redis restart) before giving up


def result_dir(options: dict, job_id: str) -> Path:
    return Path(options["video_dir"]) / "results" / job_id


def run_video_job(job_id: str, path: str, options: dict) -> str:
    """Analyse the uploaded video at `path`, record the outcome, and always delete the upload.

    options: store (spec), models_dir, video_dir, fps, detector, min_face, max_seconds, max_pixels,
    annotate, blur. Returns the final status (RQ keeps it as the job's return value).
    """
    from app.pipeline.video import analyze_video, render_annotated, video_predictor
    store = store_from(options["store"])
    last_write = 0.0

    def should_cancel() -> bool:
        return survive_outage(lambda: store.cancel_requested(job_id), default=False)

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
            render_annotated(path, result, out / "annotated.mp4", blur=bool(options.get("blur")),
                             progress=report(analysis_share, 1.0 - analysis_share), should_cancel=should_cancel)
            result["files"]["annotated"] = "annotated.mp4"
            result["blurred"] = bool(options.get("blur"))
        survive_outage(lambda: store.update(job_id, status="done", progress=1.0, result=result,
                                            finished_at=time.time()), wait=FINAL_WRITE_WAIT)
        return "done"
    except JobCancelled:
        shutil.rmtree(result_dir(options, job_id), ignore_errors=True)
        store.update(job_id, status="cancelled", finished_at=time.time())
        return "cancelled"
    except InputError as e:
        store.update(job_id, status="failed", error={"code": e.code, "message": e.message}, finished_at=time.time())
        return "failed"
    except Exception as e:   # never a job stuck in "running": any crash is a failed job with a reason
        log.exception("video job %s failed", job_id)
        store.update(job_id, status="failed", finished_at=time.time(),
                     error={"code": "internal", "message": f"The analysis failed on our side ({type(e).__name__})."})
        return "failed"
    finally:
        Path(path).unlink(missing_ok=True)
