"""Saved history: Save on the result page, /history (list, open, delete, export CSV/JSON), live sessions.

The uploaded image is never kept. The result page carries its own numbers (and, optionally, a
small thumbnail whose faces were blurred on the server before the page was rendered) in its
Save form, signed with the app's secret key, so what is saved is exactly what was shown and
cannot be forged. Every query goes through the logged-in user: another user's id is a 404.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import math
import secrets

import cv2
import numpy as np
from flask import (Blueprint, Response, abort, current_app, flash, jsonify, redirect, render_template, request,
                   url_for)
from flask_login import current_user, login_required
from itsdangerous import BadSignature, URLSafeTimedSerializer
from wtforms import BooleanField, HiddenField
from wtforms.validators import DataRequired

from app import db
from app.auth import Form, PlainForm
from app.pipeline.detect import DETECTORS
from app.pipeline.predict import EMOTION_LABELS

bp = Blueprint("history", __name__, url_prefix="/history")

THUMBNAIL_SIDE = 160
SAVE_MAX_AGE_S = 24 * 3600          # a result page's Save button works for a day
PAGE_SOURCES = ("photo", "capture")
MAX_LIVE_POINTS = 20_000            # ~5.5 hours of one face at one point per second
MAX_LIVE_TRACKS = 32


class SaveForm(Form):
    payload = HiddenField(validators=[DataRequired()])
    thumbnail = BooleanField("Keep a small thumbnail with every face blurred")


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="visage.history.save")


def blurred_thumbnail(image: np.ndarray, faces: list[dict]) -> bytes:
    """A JPEG at most THUMBNAIL_SIDE px whose face boxes (plus a margin) are pixelated and blurred."""
    height, width = image.shape[:2]
    scale = min(1.0, THUMBNAIL_SIDE / max(height, width))
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    for face in faces:
        box = face["box"]
        margin = 0.25 * max(box["w"], box["h"])
        x0 = max(0, math.floor((box["x"] - margin) * scale))
        y0 = max(0, math.floor((box["y"] - margin) * scale))
        x1 = min(sw, math.ceil((box["x"] + box["w"] + margin) * scale))
        y1 = min(sh, math.ceil((box["y"] + box["h"] + margin) * scale))
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        region = small[y0:y1, x0:x1]
        blocks = cv2.resize(region, (4, 4), interpolation=cv2.INTER_AREA)     # 4x4 blocks: no features left
        region[:] = cv2.GaussianBlur(cv2.resize(blocks, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR),
                                     (0, 0), sigmaX=max(1.0, (x1 - x0) / 8))
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return jpeg.tobytes()


def save_form_for(answer: dict, image: np.ndarray, source: str) -> SaveForm | None:
    """The result page's Save form for a logged-in user (None for anonymous visitors)."""
    if not current_user.is_authenticated:
        return None
    numbers = {k: answer[k] for k in ("detector", "image", "faces", "models") if k in answer}
    payload = {"user": current_user.id, "source": source, "answer": numbers, "key": secrets.token_urlsafe(16),
               "thumbnail": base64.b64encode(blurred_thumbnail(image, answer["faces"])).decode("ascii")}
    form = SaveForm(formdata=None)
    form.payload.data = _signer().dumps(payload)
    return form


@bp.post("/save")
@login_required
def save():
    form = SaveForm()
    if not form.validate_on_submit():
        abort(400, "The Save form was incomplete.")
    try:
        payload = _signer().loads(form.payload.data, max_age=SAVE_MAX_AGE_S)
    except BadSignature:
        abort(400, "This result can no longer be saved (older than a day, or altered). Analyze the photo again.")
    if payload.get("user") != current_user.id or payload.get("source") not in PAGE_SOURCES:
        abort(400, "This result belongs to another session. Analyze the photo again.")
    thumbnail = base64.b64decode(payload["thumbnail"]) if form.thumbnail.data else None
    item = db.save_analysis(current_user, payload["answer"], payload["source"], thumbnail=thumbnail,
                            save_key=payload.get("key"))
    flash("Saved to your history.")
    return redirect(url_for("history.show", item_id=item.id))


@bp.get("")
@login_required
def index():
    return render_template("history/index.html", items=db.user_analyses(current_user), plain_form=PlainForm())


def owned_or_404(item_id: int) -> db.Analysis:
    item = db.user_analysis(current_user, item_id)
    if item is None:
        abort(404)
    return item


@bp.get(f"/<{db.ID_IN_URL}:item_id>")
@login_required
def show(item_id: int):
    item = owned_or_404(item_id)
    return render_template("history/show.html", item=item, plain_form=PlainForm(),
                           tracks=timeline_by_track(item.timeline or []))


@bp.get(f"/<{db.ID_IN_URL}:item_id>/thumbnail.jpg")
@login_required
def thumbnail(item_id: int):
    item = owned_or_404(item_id)
    if item.thumbnail is None:
        abort(404)
    return Response(item.thumbnail, mimetype="image/jpeg", headers={"Cache-Control": "private, no-store"})


@bp.post(f"/<{db.ID_IN_URL}:item_id>/delete")
@login_required
def delete(item_id: int):
    item = owned_or_404(item_id)
    if not PlainForm().validate_on_submit():
        abort(400)
    db.delete_analysis(item)
    flash("Deleted.")
    return redirect(url_for("history.index"))


# --- export -------------------------------------------------------------------------------------

CSV_COLUMNS = (["item", "created_at", "source", "face", "t_s", "x", "y", "w", "h", "age", "age_low", "age_high",
                "age_group", "gender", "gender_probability", "emotion"] + [f"p_{e}" for e in EMOTION_LABELS])


def csv_rows(item: db.Analysis):
    """One row per face; a live session, one row per timeline point (face = track number)."""
    base = {"item": item.id, "created_at": item.created_at.isoformat(timespec="seconds") + "Z", "source": item.source}
    if item.timeline is not None:
        for point in item.timeline:
            yield {**base, "face": point["track"], "t_s": point["t"], "age": point["age"],
                   "gender": point["gender"], "gender_probability": point.get("gender_probability"),
                   "emotion": point["emotion"], **{f"p_{e}": p for e, p in point["probabilities"].items()}}
        return
    if not item.faces:
        yield {**base, "face": 0}
    for i, face in enumerate(item.faces, 1):
        yield {**base, "face": i, **face["box"], "age": face["age"], "age_low": face["age_range"][0],
               "age_high": face["age_range"][1], "age_group": face.get("age_group"),
               "gender": face["gender"]["label"], "gender_probability": face["gender"]["probability"],
               "emotion": face["emotion"]["label"],
               **{f"p_{e}": p for e, p in face["emotion"]["probabilities"].items()}}


@bp.get("/export.csv")
@login_required
def export_csv():
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for item in db.user_analyses(current_user):
        writer.writerows(csv_rows(item))
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=visage-history.csv"})


@bp.get("/export.json")
@login_required
def export_json():
    body = json.dumps({"items": [item.as_dict() for item in db.user_analyses(current_user)]}, indent=1)
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": "attachment; filename=visage-history.json"})


# --- live sessions ------------------------------------------------------------------------------

def timeline_by_track(timeline: list[dict]) -> dict[int, list[dict]]:
    tracks: dict[int, list[dict]] = {}
    for point in timeline:
        tracks.setdefault(point["track"], []).append(point)
    return tracks


def _number(value, low: float, high: float) -> float:
    # The range first: a JSON integer of hundreds of digits compares fine but overflows isfinite().
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
            or not math.isfinite(value):
        raise ValueError(f"expected a number in [{low}, {high}], got {value!r}")
    return float(value)


def live_detector(body: dict) -> str:
    """The detector a saved live session used: the one the page names, else the server's default."""
    named = body.get("detector")
    return named if named in DETECTORS else current_app.config["VISAGE_DEFAULT_DETECTOR"]


def clean_live_point(point) -> dict:
    """One timeline point from live.js, checked field by field (the browser is not trusted)."""
    if not isinstance(point, dict):
        raise ValueError("each point must be an object")
    probabilities = point.get("probabilities")
    if not isinstance(probabilities, dict) or set(probabilities) != set(EMOTION_LABELS):
        raise ValueError(f"probabilities must name exactly {', '.join(EMOTION_LABELS)}")
    if point.get("gender") not in ("female", "male") or point.get("emotion") not in EMOTION_LABELS:
        raise ValueError("gender must be female/male and emotion one of the labels")
    track = point.get("track")
    if isinstance(track, bool) or not isinstance(track, int) or not 0 <= track < 1_000_000:
        raise ValueError("track must be a small integer")
    return {"t": round(_number(point.get("t"), 0, 86_400), 1), "track": track,
            "age": round(_number(point.get("age"), 0, 120), 1), "gender": point["gender"],
            "gender_probability": round(_number(point.get("gender_probability", 0.5), 0, 1), 4),
            "emotion": point["emotion"],
            "probabilities": {e: round(_number(probabilities[e], 0, 1), 4) for e in EMOTION_LABELS}}


def live_summary_faces(timeline: list[dict]) -> list[dict]:
    """One face per track (mean age, majority gender, mean emotion probabilities): the dashboard's view."""
    faces = []
    for track, points in sorted(timeline_by_track(timeline).items()):
        mean_p = {e: round(sum(p["probabilities"][e] for p in points) / len(points), 4) for e in EMOTION_LABELS}
        female = sum(p["gender"] == "female" for p in points)
        gender = "female" if female * 2 >= len(points) else "male"
        age = round(sum(p["age"] for p in points) / len(points), 1)
        faces.append({"track": track, "points": len(points), "age": age, "age_range": [age, age],
                      "gender": {"label": gender, "probability": round(max(female, len(points) - female) / len(points), 4)},
                      "emotion": {"label": max(mean_p, key=mean_p.get), "probabilities": mean_p},
                      "box": {"x": 0, "y": 0, "w": 0, "h": 0}})
    return faces


@bp.post("/live")
@login_required
def save_live():
    """Record/Stop on /live posts {"duration_s", "models", "timeline": [...]} (JSON, CSRF token in a header)."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:       # "[[[[…": the parser recurses once per level
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("timeline"), list):
        return jsonify({"error": {"code": "bad_timeline", "message": 'Expected {"timeline": [...]}.'}}), 400
    timeline = body["timeline"]
    try:
        if not timeline or len(timeline) > MAX_LIVE_POINTS:
            raise ValueError(f"a session has 1 to {MAX_LIVE_POINTS} points")
        points = [clean_live_point(p) for p in timeline]
        if len({p["track"] for p in points}) > MAX_LIVE_TRACKS:
            raise ValueError(f"at most {MAX_LIVE_TRACKS} faces per session")
        duration = _number(body.get("duration_s", max(p["t"] for p in points)), 0, 86_400)
    except ValueError as e:
        return jsonify({"error": {"code": "bad_timeline", "message": str(e)}}), 400
    models = body.get("models") if isinstance(body.get("models"), dict) else {}
    models = {str(k)[:64]: str(v)[:64] for k, v in list(models.items())[:8]}
    key = body.get("key")                # the page's id of this recording: "Save again" saves it once
    key = f"live:{key}" if isinstance(key, str) and 0 < len(key) <= 58 and "\x00" not in key else None
    item = db.save_analysis(current_user, {"faces": live_summary_faces(points), "models": models,
                                           "detector": live_detector(body)}, "live", timeline=points, duration_s=duration,
                            save_key=key)
    return jsonify({"id": item.id, "url": url_for("history.show", item_id=item.id)}), 201
