"""Interactive API docs (GET /api/docs): Swagger UI, vendored under static/, reading /api/v1/openapi.json."""
from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("api_docs", __name__)


@bp.get("/api/docs")
def page():
    return render_template("api_docs.html")
