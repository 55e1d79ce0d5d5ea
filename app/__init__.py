"""Visage: estimate age, gender and emotion of the faces in a photo.

`create_app` is the Flask application factory; `gunicorn wsgi:app` and the
tests call it. The models are loaded here, at start-up, so a missing model is
a clear start-up error instead of a broken first request.
"""
from __future__ import annotations

import importlib.util

from flask import Flask

from app import settings, uploads
from app.admission import AdmissionGate
from app.pipeline.predict import load_predictor


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__,
                template_folder=str(settings.REPO_ROOT / "templates"),
                static_folder=str(settings.REPO_ROOT / "static"))
    app.config.from_mapping(settings.from_environment())
    # Multipart limits (Werkzeug): form parts, and bytes in non-file fields; over them → 413.
    app.config.update(MAX_FORM_PARTS=settings.MAX_FORM_PARTS, MAX_FORM_MEMORY_SIZE=settings.MAX_FORM_MEMORY_SIZE)
    if config:
        app.config.update(config)
    app.config["MAX_CONTENT_LENGTH"] = settings.request_size_limit(app.config["VISAGE_MAX_BYTES"])
    app.request_class = uploads.InMemoryRequest   # no uploaded byte is spooled to a temp file
    app.json.sort_keys = False        # keep answers in the documented field order

    app.extensions["visage.gate"] = AdmissionGate(app.config["VISAGE_ANALYSIS_SLOTS"],
                                                  app.config["VISAGE_QUEUE_TIMEOUT"])
    # Raises ModelUnavailable (naming the file and how to produce it) instead of serving random weights.
    app.extensions["visage.predictor"] = load_predictor(app.config["VISAGE_MODELS_DIR"])

    from app import api, http_errors, pages, request_log
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    if importlib.util.find_spec("app.webcam"):    # built by the webcam developer
        from app import webcam
        app.register_blueprint(webcam.bp)
    http_errors.register(app)
    request_log.register(app)
    return app
