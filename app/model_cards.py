"""The Models page (GET /models): the model cards of VISAGE_MODELS_DIR, read on every request and laid out
for a person by app/card_summary.py, so a retrained model with a new card changes the page without code."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from app.card_summary import summarize_folder

bp = Blueprint("model_cards", __name__)


@bp.get("/models")
def page():
    return render_template("models.html", models=summarize_folder(current_app.config["VISAGE_MODELS_DIR"]))
