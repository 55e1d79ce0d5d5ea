"""Visage: estimate age, gender and emotion of the faces in a photo.

`create_app` is the Flask application factory; `gunicorn wsgi:app` and the
tests call it. The models are loaded here, at start-up, so a missing model is
a clear start-up error instead of a broken first request.
"""
from __future__ import annotations

import importlib.util

from flask import Flask

from app import settings
from app.pipeline.predict import load_predictor


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__,
                template_folder=str(settings.REPO_ROOT / "templates"),
                static_folder=str(settings.REPO_ROOT / "static"))
    app.config.from_mapping(settings.from_environment())
    if config:
        app.config.update(config)
    app.config["MAX_CONTENT_LENGTH"] = settings.request_size_limit(app.config["VISAGE_MAX_BYTES"])
    app.json.sort_keys = False        # keep answers in the documented field order

    # Raises ModelUnavailable (naming the file and how to produce it) instead of serving random weights.
    app.extensions["visage.predictor"] = load_predictor(app.config["VISAGE_MODELS_DIR"])

    from app import api, api_docs, http_errors, model_cards, pages
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api_docs.bp)
    app.register_blueprint(model_cards.bp)
    if importlib.util.find_spec("app.webcam"):    # built by the webcam developer
        from app import webcam
        app.register_blueprint(webcam.bp)
    http_errors.register(app)
    return app
