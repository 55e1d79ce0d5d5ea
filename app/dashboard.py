"""/dashboard: charts over the logged-in user's saved analyses, with a date-range filter.

The numbers are computed here and handed to static/js/dashboard.js as a JSON data block (no
inline script); every chart is also an HTML table, for screen readers and without JavaScript.
Chart.js is vendored under static/vendor/chartjs/ (from the npm registry, MIT licence).
"""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta

from flask import Blueprint, render_template, request
from flask_login import current_user, login_required

from app import db
from app.face_stats import AGE_BINS, age_bin_label
from app.history import timeline_by_track
from app.pipeline.predict import EMOTION_LABELS

bp = Blueprint("dashboard", __name__)

LIVE_SESSIONS_SHOWN = 5


def parse_day(raw: str | None, name: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name} must be a date like 2026-01-31, got {raw!r}.") from None


def summarize(items: list[db.Analysis]) -> dict:
    """Counts per emotion, per day and emotion, per age bin and per gender, over every saved face."""
    faces = [(item.created_at.date(), face) for item in items for face in item.faces]
    emotions = Counter(face["emotion"]["label"] for _, face in faces)
    per_day: dict[date, Counter] = {}
    for day, face in faces:
        per_day.setdefault(day, Counter())[face["emotion"]["label"]] += 1
    days = sorted(per_day)
    ages = Counter()
    for _, face in faces:
        for low, high in AGE_BINS:
            if low <= face["age"] < high:
                ages[age_bin_label(low, high)] += 1
                break
    genders = Counter(face["gender"]["label"] for _, face in faces)
    live = [item for item in items if item.timeline][:LIVE_SESSIONS_SHOWN]
    return {
        "faces": len(faces), "saved": len(items),
        "emotions": {"labels": list(EMOTION_LABELS), "counts": [emotions[e] for e in EMOTION_LABELS]},
        "over_time": {"labels": [d.isoformat() for d in days],
                      "series": {e: [per_day[d][e] for d in days] for e in EMOTION_LABELS}},
        "ages": {"labels": [age_bin_label(*b) for b in AGE_BINS], "counts": [ages[age_bin_label(*b)] for b in AGE_BINS]},
        "genders": {"labels": ["female", "male"], "counts": [genders["female"], genders["male"]]},
        "live": [{"id": item.id, "title": f"Live session {item.created_at:%Y-%m-%d %H:%M} UTC",
                  "faces": [{"label": f"Face {n}", "points": [{"t": p["t"], "emotion": p["emotion"]} for p in points]}
                            for n, points in enumerate(timeline_by_track(item.timeline).values(), 1)]}
                 for item in live],
    }


@bp.get("/dashboard")
@login_required
def index():
    error = None
    try:
        start = parse_day(request.args.get("from"), "From")
        end = parse_day(request.args.get("to"), "To")
        if start and end and end < start:
            raise ValueError("The range ends before it starts.")
    except ValueError as e:
        error, start, end = str(e), None, None
    items = db.user_analyses(current_user,
                             start=datetime.combine(start, time.min) if start else None,
                             # the day after the last one; 9999-12-31 has none (and no bound is needed)
                             end=datetime.combine(end + timedelta(days=1), time.min) if end and end < date.max
                             else None)
    return render_template("dashboard/index.html", data=summarize(items), error=error,
                           start=start.isoformat() if start else "", end=end.isoformat() if end else ""), \
        400 if error else 200
