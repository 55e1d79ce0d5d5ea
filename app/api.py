"""JSON API under /api/v1: analyze, health (liveness), ready (readiness), and the OpenAPI document."""
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
    """Liveness: the process answers (models load before the app serves anything). Never waits on analyses."""
    predictor = current_app.extensions["visage.predictor"]
    return jsonify({"status": "ok", "models_loaded": True, "models": predictor.versions})


@bp.get("/ready")
def ready():
    """Readiness: models loaded and analyses are not queued beyond VISAGE_QUEUE_TIMEOUT (else 503)."""
    gate = current_app.extensions["visage.gate"]
    body = {"ready": not gate.saturated(), "analyses_running": gate.running, "analyses_waiting": gate.waiting,
            "analysis_slots": gate.slots}
    if body["ready"]:
        return jsonify(body)
    response = jsonify(body)
    response.status_code = 503
    response.headers["Retry-After"] = str(gate.retry_after())
    return response


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
