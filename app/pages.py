"""HTML pages: the upload form (GET /) and the result page (POST /analyze)."""
from __future__ import annotations

import base64
import io

import numpy as np
from flask import Blueprint, current_app, render_template, request
from PIL import Image
from werkzeug.exceptions import RequestEntityTooLarge

from app.pipeline.blur import blur_faces
from app.pipeline.detect import DETECTORS
from app.pipeline.errors import InputError
from app.history import PAGE_SOURCES, save_form_for
from app.uploads import analyze_request

bp = Blueprint("pages", __name__)

DISPLAY_MAX_SIDE = 1280     # the inline copy of the photo; boxes are placed in %, so any size works


@bp.app_context_processor
def upload_form_options():
    """What templates/_upload_form.html needs, on every page that includes it (webcam pages too)."""
    return {"detectors": DETECTORS, "default_detector": current_app.config["VISAGE_DEFAULT_DETECTOR"]}


def form_page(error: str | None = None, status: int = 200):
    return render_template("index.html", error=error), status


@bp.get("/")
def index():
    return form_page()


@bp.post("/analyze")
def analyze():
    try:
        answer, image = analyze_request(allow_json=False)
    except InputError as e:
        return form_page(e.message, e.status)
    source = request.form.get("source") if request.form.get("source") in PAGE_SOURCES else "photo"
    boxes = [tuple(face["box"][k] for k in "xywh") for face in answer["faces"]]
    # The blurred copy for "Download with faces blurred" is inline too: nothing uploaded is stored.
    blurred_url = inline_jpeg(blur_faces(image, boxes)) if boxes else None
    return render_template("result.html", result=answer, image_url=inline_jpeg(image), blurred_url=blurred_url,
                           default_detector=answer["detector"], small_faces=bool(request.form.get("min_face")),
                           save_form=save_form_for(answer, image, source))


@bp.errorhandler(RequestEntityTooLarge)
def upload_too_large(_e):
    # Werkzeug says 413 for a body over the limit and for a form of too many parts alike.
    limit = current_app.config["VISAGE_MAX_BYTES"] / 1e6
    return form_page(f"The upload is too large: a photo may be up to {limit:.1f} MB, in a form of at most "
                     f"{current_app.config['MAX_FORM_PARTS']} fields and files.", 413)


def inline_jpeg(image: np.ndarray) -> str:
    """The decoded (already upright) photo as a data: URL, so nothing uploaded touches the disk."""
    picture = Image.fromarray(image)
    picture.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
