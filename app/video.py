"""Video files: the Video page (/video) and the job API (/api/v1/videos, /api/v1/jobs/<id>).

Uploads are checked (size, container, frame size, duration) before a job is queued, so an
over-limit file gets its 413/415/422 at once; the analysis itself runs as a background job
(app/jobs/), embedded or on RQ workers.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

from flask import Blueprint, current_app, jsonify, render_template, request, send_file, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from app.api import error_response
from app.jobs import VideoJobs
from app.pipeline.analyze import check_detector, check_min_face
from app.pipeline.errors import BadRequest, InputError, TooLarge
from app.pipeline.video import MAX_FPS, VIDEO_EXTENSIONS, check_fps, probe, write_csv
from app.uploads import boolean_option, check_option_value

bp = Blueprint("video", __name__)

FIELD = "video"
FORM_OVERHEAD = 1024 * 1024


def init_app(app) -> None:
    app.extensions["visage.video_jobs"] = VideoJobs(app.config)
    app.register_blueprint(bp)


def jobs() -> VideoJobs:
    return current_app.extensions["visage.video_jobs"]


@bp.errorhandler(InputError)
def bad_input(e: InputError):
    return error_response(e.status, e.code, e.message)


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_e):
    limit = current_app.config["VISAGE_MAX_VIDEO_BYTES"] / 1e6
    return error_response(413, "too_large", f"The video is too large; the limit is {limit:.0f} MB.")


@bp.get("/video")
def page():
    cfg = current_app.config
    return render_template("video.html", max_mb=cfg["VISAGE_MAX_VIDEO_BYTES"] / 1e6,
                           max_minutes=cfg["VISAGE_MAX_VIDEO_SECONDS"] / 60, max_fps=int(MAX_FPS))


def _flag(name: str, default: bool) -> bool:
    """A boolean form field; an empty one (an unticked form) gives the default."""
    return boolean_option(name, request.values.get(name) or None, default)


@bp.post("/api/v1/videos")
def create():
    cfg = current_app.config
    request.max_content_length = cfg["VISAGE_MAX_VIDEO_BYTES"] + FORM_OVERHEAD
    if request.mimetype != "multipart/form-data":
        return error_response(415, "unsupported_content_type",
                              f"Send the video as multipart/form-data, field {FIELD!r} "
                              f"(got {request.mimetype or 'no content type'}).")
    upload = request.files.get(FIELD)
    if upload is None and not request.files and not request.form and (request.content_length or 0) > 200:
        # Werkzeug drops a form it cannot decode without a word; say so rather than "no file".
        raise BadRequest("The form could not be read; a file name that is not UTF-8 is one cause: rename the "
                         "file and send it again.", code="bad_form")
    if upload is None:
        raise BadRequest(f"No file in the form field {FIELD!r}.", code="missing_video")
    for name in ("detector", "min_face"):        # the same checks as the analyze endpoint's options
        check_option_value(name, request.values.get(name), from_json=False)
    options = {"fps": check_fps(request.values.get("fps", 5)),
               "detector": check_detector(request.values.get("detector"), cfg["VISAGE_DEFAULT_DETECTOR"]),
               "min_face": check_min_face(request.values.get("min_face")),
               "annotate": _flag("annotate", True), "blur": _flag("blur", False)}
    suffix = Path(upload.filename or "").suffix.lower()
    path = jobs().upload_path(suffix if suffix in VIDEO_EXTENSIONS else "")
    try:
        upload.save(path)
        size = path.stat().st_size
        if size > cfg["VISAGE_MAX_VIDEO_BYTES"]:
            raise TooLarge(f"The video is too large; the limit is {cfg['VISAGE_MAX_VIDEO_BYTES'] / 1e6:.0f} MB.")
        info = probe(path, max_seconds=cfg["VISAGE_MAX_VIDEO_SECONDS"], max_pixels=cfg["VISAGE_MAX_VIDEO_PIXELS"])
        job_id = jobs().submit(path, options, filename=upload.filename or "")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    response = jsonify({**public(jobs().get(job_id)), "video": info.as_dict()})
    response.status_code = 202
    response.headers["Location"] = url_for("video.job", job_id=job_id)
    return response


def public(record: dict) -> dict:
    """The job as the API documents it; result gets its download URLs, internal fields stay out."""
    answer = {k: record.get(k) for k in ("id", "status", "progress", "error", "result")}
    result = answer["result"]
    if result is not None:
        result = {k: v for k, v in result.items() if k != "files"}
        job_id = record["id"]
        annotated = "annotated" in record["result"].get("files", {})
        result["downloads"] = {
            "csv": url_for("video.download_csv", job_id=job_id),
            "json": url_for("video.download_json", job_id=job_id),
            "annotated_video": url_for("video.download_video", job_id=job_id) if annotated else None}
        answer["result"] = result
    answer["options"] = record.get("options", {})
    return answer


def _record(job_id: str) -> dict:
    record = jobs().get(job_id)
    if record is None or record.get("kind") in ("batch", "chunk"):     # a batch's files have their own URLs
        raise NotFoundJob(job_id)
    return record


class NotFoundJob(InputError):
    status, code = 404, "job_not_found"

    def __init__(self, job_id: str):
        super().__init__(f"No job {job_id!r} (unknown, or older than a day).")


class NoFile(InputError):
    status, code = 404, "no_annotated_video"


class JobNotDone(InputError):
    status, code = 409, "job_not_done"


def _done(job_id: str) -> dict:
    record = _record(job_id)
    if record["status"] != "done":
        raise JobNotDone(f"Job {job_id} is {record['status']}; its files exist once it is done.")
    return record


def _batch(job_id: str):
    """Batches share the job ids and the store: their records say kind "batch" (app/batch.py answers).
    A batch's chunks are jobs of their own (kind "chunk"), not for the API."""
    try:
        record = jobs().store.get(job_id)
    except KeyError:
        return None
    if record and record.get("kind") == "chunk":
        raise NotFoundJob(job_id)
    if record and record.get("kind") == "batch":
        from app import batch
        return batch
    return None


@bp.get("/api/v1/jobs/<job_id>")
def job(job_id: str):
    if (batch := _batch(job_id)) is not None:
        return batch.job(job_id)
    return jsonify(public(_record(job_id)))


@bp.delete("/api/v1/jobs/<job_id>")
def cancel(job_id: str):
    if (batch := _batch(job_id)) is not None:
        return batch.cancel(job_id)
    record = jobs().cancel(job_id)
    if record is None:
        raise NotFoundJob(job_id)
    return jsonify(public(record))


@bp.get("/api/v1/jobs/<job_id>/timeline.csv")
def download_csv(job_id: str):
    text = io.StringIO()
    write_csv(_done(job_id)["result"], text)
    return send_file(io.BytesIO(text.getvalue().encode()), mimetype="text/csv", as_attachment=True,
                     download_name=f"timeline-{job_id[:8]}.csv")


@bp.get("/api/v1/jobs/<job_id>/result.json")
def download_json(job_id: str):
    body = json.dumps(public(_done(job_id)), indent=1).encode()
    return send_file(io.BytesIO(body), mimetype="application/json", as_attachment=True,
                     download_name=f"timeline-{job_id[:8]}.json")


@bp.get("/api/v1/jobs/<job_id>/annotated.mp4")
def download_video(job_id: str):
    record = _done(job_id)
    name = record["result"].get("files", {}).get("annotated")
    path = jobs().result_file(job_id, name) if name else None
    if path is None or not path.is_file():
        raise NoFile(f"Job {job_id} has no annotated video (it was run with annotate=false, or it was removed).")
    blurred = "-blurred" if record["result"].get("blurred") else ""
    return send_file(path, mimetype="video/mp4", as_attachment=True,
                     download_name=f"annotated-{job_id[:8]}{blurred}.mp4")
