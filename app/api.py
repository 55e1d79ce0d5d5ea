"""JSON API under /api/v1: analyze, health (liveness), ready (readiness), and the OpenAPI document."""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request, url_for

from app.openapi import openapi_document, with_token_auth
from app.pipeline.errors import InputError
from app.uploads import analyze_request, boolean_option, json_body

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def error_response(status: int, code: str, message: str):
    return jsonify({"error": {"code": code, "message": message}}), status


@bp.errorhandler(InputError)
def bad_input(e: InputError):
    response = error_response(e.status, e.code, e.message)
    if e.status == 401:
        response[0].headers["WWW-Authenticate"] = 'Bearer realm="visage"'
    return response


def bearer_user():
    """The user of the request's `Authorization: Bearer <token>` (None without one); 401 for a bad token."""
    if "visage_bearer_user" not in g:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user = None
        if scheme.lower() == "bearer" and token.strip():
            from app import db
            user = db.user_for_token(token.strip())
            if user is None:
                raise Unauthorized("The access token is unknown or revoked.")
        g.visage_bearer_user = user
    return g.visage_bearer_user


class Unauthorized(InputError):
    status = 401
    code = "invalid_token"


def wants_save() -> bool:
    """save: a JSON boolean in a JSON body, "true"/"false" in a form or query (as the OpenAPI document says)."""
    body = json_body() if request.is_json else None
    raw = body.get("save") if isinstance(body, dict) and "save" in body else request.values.get("save")
    return boolean_option("save", raw, default=False)


@bp.post("/analyze")
def analyze():
    save = wants_save()
    try:
        user = bearer_user()    # a bad token is refused before any work
    except Exception as e:
        from app import outages
        if save or current_app.config["VISAGE_REQUIRE_LOGIN"] or not outages.database_unusable(e):
            raise               # → 503 when the database is down (app/outages.py)
        user = None             # the token cannot be checked now; the analysis needs no account
    if save and user is None:
        raise Unauthorized("save=true needs a personal access token (Authorization: Bearer <token>).",
                           code="token_required")
    answer, _image = analyze_request(allow_json=True)
    if save:
        from app import db
        item = db.save_analysis(user, answer, "api")
        return jsonify({**answer, "saved": {"id": item.id, "url": url_for("history.show", item_id=item.id)}})
    return jsonify(answer)


@bp.get("/health")
def health():
    """Liveness: the process answers (models load before the app serves anything). Never waits on analyses."""
    predictor = current_app.extensions["visage.predictor"]
    return jsonify({"status": "ok", "models_loaded": True, "models": predictor.versions})


@bp.get("/ready")
def ready():
    """Readiness: models loaded and analyses are not queued beyond VISAGE_QUEUE_TIMEOUT (else 503).

    `dependencies` says whether the database and Redis answer; one of them down does not make the server
    unready, since analyses need neither (saving, history and video jobs answer 503 meanwhile)."""
    from app import outages
    gate = current_app.extensions["visage.gate"]
    body = {"ready": not gate.saturated(), "analyses_running": gate.running, "analyses_waiting": gate.waiting,
            "analysis_slots": gate.slots, "dependencies": outages.dependencies(current_app._get_current_object())}
    if body["ready"]:
        return jsonify(body)
    response = jsonify(body)
    response.status_code = 503
    response.headers["Retry-After"] = str(gate.retry_after())
    return response


@bp.get("/openapi.json")
def openapi():
    return jsonify(with_token_auth(openapi_document()))
