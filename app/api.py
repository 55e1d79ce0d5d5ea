"""JSON API under /api/v1: analyze, health, and the OpenAPI document describing both."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from app.openapi import openapi_document
from app.pipeline.errors import InputError
from app.uploads import analyze_request

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def error_response(status: int, code: str, message: str):
    return jsonify({"error": {"code": code, "message": message}}), status


@bp.errorhandler(InputError)
def bad_input(e: InputError):
    return error_response(e.status, e.code, e.message)


@bp.post("/analyze")
def analyze():
    answer, _image = analyze_request(allow_json=True)
    return jsonify(answer)


@bp.get("/health")
def health():
    predictor = current_app.extensions["visage.predictor"]
    return jsonify({"status": "ok", "models_loaded": True, "models": predictor.versions})


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
