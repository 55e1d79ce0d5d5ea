"""Counts over many faces (emotion, age band, gender): the dashboard's charts and a batch's summary.

Flask-free, so the batch workers (app/jobs/batch.py) compute a batch's summary with the same bins
the dashboard draws.
"""
from __future__ import annotations

from collections import Counter

from app.pipeline.predict import EMOTION_LABELS

AGE_BINS = [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60), (60, 70), (70, 200)]


def age_bin_label(low: int, high: int) -> str:
    return f"{low}+" if high >= 200 else f"{low}–{high - 1}"


def age_bin(age: float) -> str | None:
    for low, high in AGE_BINS:
        if low <= age < high:
            return age_bin_label(low, high)
    return None


def distributions(faces: list[dict]) -> dict:
    """{emotions, ages, genders}: each {labels, counts}, in the dashboard's order."""
    emotions = Counter(face["emotion"]["label"] for face in faces)
    ages = Counter(age_bin(face["age"]) for face in faces)
    genders = Counter(face["gender"]["label"] for face in faces)
    age_labels = [age_bin_label(*b) for b in AGE_BINS]
    return {"emotions": {"labels": list(EMOTION_LABELS), "counts": [emotions[e] for e in EMOTION_LABELS]},
            "ages": {"labels": age_labels, "counts": [ages[label] for label in age_labels]},
            "genders": {"labels": ["female", "male"], "counts": [genders["female"], genders["male"]]}}
