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


def check_default_detector(name: str) -> None:
    """A misspelt VISAGE_DEFAULT_DETECTOR, or one whose package is missing, stops the start-up with a
    clear message, instead of failing every request that does not name a detector."""
    import numpy as np

    from app.pipeline.analyze import check_detector, find_faces
    from app.pipeline.errors import BadRequest
    try:
        detector = check_detector(name)
    except BadRequest as e:
        raise RuntimeError(f"VISAGE_DEFAULT_DETECTOR: {e.message}") from None
    find_faces(np.zeros((64, 64, 3), np.uint8), detector)   # loads the detector (ModelUnavailable if it cannot)


def create_app(config: dict | None = None) -> Flask:
    # Multipart limits (Werkzeug): form parts, and bytes in non-file fields; over them → 413.
    merged = {**settings.from_environment(), "MAX_FORM_PARTS": settings.MAX_FORM_PARTS,
              "MAX_FORM_MEMORY_SIZE": settings.MAX_FORM_MEMORY_SIZE, **(config or {})}
    app = Flask(__name__,
                template_folder=str(settings.REPO_ROOT / "templates"),
                static_folder=str(settings.REPO_ROOT / "static"),
                instance_path=merged["VISAGE_INSTANCE_DIR"] or str(settings.REPO_ROOT / "instance"))
    app.config.from_mapping(merged)
    app.config["MAX_CONTENT_LENGTH"] = settings.request_size_limit(app.config["VISAGE_MAX_BYTES"])
    app.request_class = uploads.InMemoryRequest   # no uploaded byte is spooled to a temp file
    app.json.sort_keys = False        # keep answers in the documented field order

    app.extensions["visage.gate"] = AdmissionGate(app.config["VISAGE_ANALYSIS_SLOTS"],
                                                  app.config["VISAGE_QUEUE_TIMEOUT"])
    # Raises ModelUnavailable (naming the file and how to produce it) instead of serving random weights.
    app.extensions["visage.predictor"] = load_predictor(app.config["VISAGE_MODELS_DIR"])
    check_default_detector(app.config["VISAGE_DEFAULT_DETECTOR"])

    from app import (api, api_docs, auth, dashboard, db, history, http_errors, model_cards, pages, request_log,
                     security)
    security.init_app(app)            # secret key, cookies, CSRF, rate limits, headers (before the blueprints)
    db.init_app(app)                  # SQLite in the instance folder or VISAGE_DATABASE_URL; migrates at start-up
    auth.login_manager.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    security.csrf.exempt(api.bp)      # the API authenticates with Bearer tokens, never the session cookie
    app.register_blueprint(api_docs.bp)
    app.register_blueprint(model_cards.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(dashboard.bp)
    security.limit_login_routes(app, ("auth.login", "auth.register"))
    app.cli.add_command(auth.users_cli)
    if importlib.util.find_spec("app.webcam"):    # built by the webcam developer
        from app import webcam
        app.register_blueprint(webcam.bp)
    from app import video            # video files as background jobs (docs/video.md)
    video.init_app(app)
    from app import batch            # batches of photos as chunked background jobs (docs/batch.md)
    batch.init_app(app)
    for view in (video.create, video.cancel, batch.create):   # /api/v1 endpoints: JSON API like api.bp, no session auth
        security.csrf.exempt(view)
    http_errors.register(app)
    request_log.register(app)
    return app
