"""Batches of photos: the Batch page (/batch) and POST /api/v1/batches (docs/batch.md).

The upload is streamed straight into the job's own folder (never held in memory): photos, or ZIPs of
photos that are unpacked there under names we choose. Limits on the whole batch are a 413 before the
job exists; a bad file is an error row. The batch then runs as chunks (app/jobs/batch.py) on the
embedded worker or on RQ workers; GET/DELETE /api/v1/jobs/<id> (app/video.py) hand batch jobs here.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

from flask import (Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, send_file,
                   url_for)
from flask_login import current_user, login_required
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from app import settings
from app.api import error_response
from app.auth import PlainForm
from app.jobs.batch import write_csv
from app.jobs.batch_service import BatchJobs
from app.pipeline.analyze import check_detector, check_min_face, check_profile
from app.pipeline.errors import BadRequest, InputError
from app.uploads import boolean_option, check_option_value

bp = Blueprint("batch", __name__)

FIELD = "photos"
FORM_OVERHEAD = 1024 * 1024          # multipart headers and option fields, on top of the batch's bytes
MAX_SAVED_FACES = 20_000             # faces one saved batch summary may hold in the history


def init_app(app) -> None:
    app.extensions["visage.batch_jobs"] = BatchJobs(app.config, app.extensions["visage.video_jobs"])
    app.register_blueprint(bp)


def batches() -> BatchJobs:
    return current_app.extensions["visage.batch_jobs"]


@bp.errorhandler(InputError)
def bad_input(e: InputError):
    return error_response(e.status, e.code, e.message)


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_e):
    cfg = current_app.config
    return error_response(413, "too_large", f"The batch is too large; the limits are {cfg['VISAGE_MAX_BATCH_FILES']} "
                                            f"files and {cfg['VISAGE_MAX_BATCH_BYTES'] / 1e6:.0f} MB per batch.")


@bp.get("/batch")
def page():
    cfg = current_app.config
    return render_template("batch.html", max_files=cfg["VISAGE_MAX_BATCH_FILES"],
                           max_mb=cfg["VISAGE_MAX_BATCH_BYTES"] / 1e6, max_photo_mb=cfg["VISAGE_MAX_BYTES"] / 1e6,
                           save_form=PlainForm() if current_user.is_authenticated else None)


# ---------------------------------------------------------------- submitting

@bp.post("/api/v1/batches")
def create():
    cfg = current_app.config
    if request.mimetype != "multipart/form-data":
        return error_response(415, "unsupported_content_type",
                              f"Send the photos as multipart/form-data, field {FIELD!r} (many files, or one ZIP) "
                              f"(got {request.mimetype or 'no content type'}).")
    limit = cfg["VISAGE_MAX_BATCH_BYTES"] + FORM_OVERHEAD
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()         # before a byte is read
    job_id, intake = batches().new_batch()
    try:
        def into_job_folder(total_content_length, content_type, filename, content_length=None):
            return open(intake.new_path(), "wb")

        parser = FormDataParser(stream_factory=into_job_folder, max_content_length=limit,
                                max_form_memory_size=settings.MAX_FORM_MEMORY_SIZE,
                                max_form_parts=2 * cfg["VISAGE_MAX_BATCH_FILES"] + settings.MAX_FORM_PARTS,
                                silent=False)      # silent, one bad part would empty the whole form
        try:
            _, form, files = parser.parse_from_environ(request.environ)
        except ValueError as e:        # UnicodeDecodeError: a file name that is not UTF-8
            raise BadRequest(f"The form could not be read ({e}); a file name that is not UTF-8 is one cause: "
                             "rename that file, or send the photos in a ZIP.", code="bad_form") from None
        for _, upload in files.items(multi=True):
            upload.stream.close()
        options = batch_options(form)
        others = sorted({name for name in files if name != FIELD})
        if others and FIELD not in files:
            raise BadRequest(f"No files in the form field {FIELD!r} (got {', '.join(map(repr, others))}).",
                             code="missing_photos")
        for name, upload in files.items(multi=True):
            path = Path(upload.stream.name)          # one of intake.new_path()'s, opened above
            if name == FIELD:
                intake.add_upload(upload.filename or "", path)
            else:
                path.unlink(missing_ok=True)
        batches().submit(job_id, intake, options, filename=f"{len(intake.entries)} files")
    except BaseException:
        batches().discard(job_id)
        raise
    response = jsonify(public(batches().get(job_id)))
    response.status_code = 202
    response.headers["Location"] = url_for("video.job", job_id=job_id)
    return response


def batch_options(form) -> dict:
    """Options from the form or the query string, held to the same rules as a photo's."""
    def value(name):
        return form.get(name) if form.get(name) is not None else request.args.get(name)
    for name in ("detector", "min_face", "profile"):
        check_option_value(name, value(name), from_json=False)
    cfg = current_app.config
    return {"detector": check_detector(value("detector"), cfg["VISAGE_DEFAULT_DETECTOR"]),
            "min_face": check_min_face(value("min_face")), "profile": check_profile(value("profile")),
            "thumbnails": boolean_option("thumbnails", value("thumbnails"), False),
            "blur": boolean_option("blur", value("blur"), False)}


# ---------------------------------------------------------------- reading

def public(record: dict) -> dict:
    """The batch as the API documents it; once done, every photo's record and the download URLs."""
    answer = {k: record.get(k) for k in ("id", "kind", "status", "progress", "error")}
    answer.update({k: record.get(k) for k in ("done", "total", "rate", "eta_s")})
    answer["result"] = None
    if record["status"] == "done" and record.get("result"):
        job_id = record["id"]
        answer["result"] = {"summary": record["result"]["summary"], "files": batches().records(job_id),
                            "downloads": {"csv": url_for("batch.download_csv", job_id=job_id),
                                          "json": url_for("batch.download_json", job_id=job_id)}}
    answer["options"] = record.get("options", {})
    return answer


def job(job_id: str):
    """GET /api/v1/jobs/<id> for a batch (app/video.py routes it here)."""
    return jsonify(public(batches().get(job_id)))


def cancel(job_id: str):
    return jsonify(public(batches().cancel(job_id)))


class NotFoundBatch(InputError):
    status, code = 404, "job_not_found"


class BatchNotDone(InputError):
    status, code = 409, "job_not_done"


def done_batch(job_id: str) -> dict:
    record = batches().get(job_id)
    if record is None or record.get("kind") != "batch":
        raise NotFoundBatch(f"No batch {job_id!r} (unknown, or older than a day).")
    if record["status"] != "done":
        raise BatchNotDone(f"Batch {job_id} is {record['status']}; its results exist once it is done.")
    return record


@bp.get("/api/v1/batches/<job_id>/results.csv")
def download_csv(job_id: str):
    done_batch(job_id)
    text = io.StringIO()
    write_csv(batches().records(job_id), text)
    return send_file(io.BytesIO(text.getvalue().encode()), mimetype="text/csv", as_attachment=True,
                     download_name=f"batch-{job_id[:8]}.csv")


@bp.get("/api/v1/batches/<job_id>/results.json")
def download_json(job_id: str):
    body = json.dumps(public(done_batch(job_id)), indent=1).encode()
    return send_file(io.BytesIO(body), mimetype="application/json", as_attachment=True,
                     download_name=f"batch-{job_id[:8]}.json")


# ---------------------------------------------------------------- saving to the history

@bp.post("/batch/<job_id>/save")
@login_required
def save(job_id: str):
    """The batch's numbers (every face's box and estimates, no file names, no image) as one history item."""
    from app import db
    if not PlainForm().validate_on_submit():
        abort(400, "The Save form was incomplete.")
    try:
        record = done_batch(job_id)
    except InputError as e:
        abort(e.status, e.message)
    faces = [{k: v for k, v in face.items() if k != "thumbnail"}
             for r in batches().records(job_id) for face in r.get("faces") or []]
    if len(faces) > MAX_SAVED_FACES:
        abort(413, f"This batch has {len(faces)} faces; a saved batch holds at most {MAX_SAVED_FACES}. "
                   f"Download the CSV instead.")
    summary = record["result"]["summary"]
    item = db.save_analysis(current_user, {"faces": faces, "detector": record["options"].get("detector"),
                                           "models": summary.get("models", {})}, "batch",
                              save_key=f"batch:{job_id}")
    flash(f"Saved the batch's {len(faces)} faces to your history.")
    return redirect(url_for("history.show", item_id=item.id))
