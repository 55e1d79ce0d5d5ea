"""Evaluation metrics as plain NumPy (no scikit-learn needed), each returning JSON-ready values."""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return m


def classification_report(y_true, y_pred, labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    cm = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return {
        "accuracy": float(tp.sum() / max(1, cm.sum())),
        "macro_f1": float(f1.mean()),
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(cm[i].sum())} for i, name in enumerate(labels)},
        "confusion_matrix": {"labels": labels, "rows_true_cols_pred": cm.tolist()},
    }


def binary_report(y_true, p_positive, threshold: float = 0.5) -> dict:
    """Accuracy, precision, recall, F1 for the positive class (label 1)."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(p_positive) >= threshold).astype(int)
    tp = int(((y_pred == 1) & (y_true == 1)).sum())
    fp = int(((y_pred == 1) & (y_true == 0)).sum())
    fn = int(((y_pred == 0) & (y_true == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0, "precision": precision,
            "recall": recall, "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "n": int(len(y_true))}


def expected_calibration_error(y_true, p_positive, n_bins: int = 10) -> dict:
    """ECE of P(positive) and the reliability table (mean predicted vs. observed rate per bin)."""
    y_true, p = np.asarray(y_true, float), np.asarray(p_positive, float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    table, ece = [], 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            conf, rate = float(p[sel].mean()), float(y_true[sel].mean())
            ece += sel.mean() * abs(conf - rate)
            table.append({"bin": [b / n_bins, (b + 1) / n_bins], "n": int(sel.sum()), "mean_predicted": conf,
                          "observed": rate})
    return {"ece": float(ece), "reliability": table}


AGE_BANDS = [("0-12", 0, 12), ("13-19", 13, 19), ("20-39", 20, 39), ("40-59", 40, 59), ("60+", 60, 200)]
CHILD_MAX_AGE = AGE_BANDS[0][2]   # the children band: gender is read far less well in it


def age_report(age_true, age_pred) -> dict:
    """MAE, CS@5 (share within 5 years) and MAE per age band."""
    t, p = np.asarray(age_true, float), np.asarray(age_pred, float)
    err = np.abs(p - t)
    bands = {}
    for name, lo, hi in AGE_BANDS:
        sel = (t >= lo) & (t <= hi)
        bands[name] = {"mae": float(err[sel].mean()) if sel.any() else None, "n": int(sel.sum())}
    return {"mae": float(err.mean()), "cs5": float((err <= 5).mean()), "n": int(len(t)), "mae_by_band": bands}


def residual_interval(age_true, age_pred, coverage: float = 0.8) -> dict:
    """Offsets so that [pred - below, pred + above] holds `coverage` of true ages (central interval)."""
    r = np.asarray(age_true, float) - np.asarray(age_pred, float)
    lo, hi = np.quantile(r, [(1 - coverage) / 2, 1 - (1 - coverage) / 2])
    return {"coverage": coverage, "below": float(max(0.0, -lo)), "above": float(max(0.0, hi))}


def interval_coverage(age_true, age_pred, below: float, above: float) -> float:
    t, p = np.asarray(age_true, float), np.asarray(age_pred, float)
    return float(((t >= p - below) & (t <= p + above)).mean())


BORDERLINE_FEMALE = 0.15   # P(female) within this of 0.5 on the unmoved face: a face the model is unsure of


def steadiness_report(ages, p_female, age_true, gender_true) -> dict:
    """How much one face's answer moves between views of it that differ only by a pixel or two.

    ages, p_female: (faces, views) answers, view 0 the face as cut, the others moved copies of it.
    Per face the spread (std) of the age over its views and whether its gender label is not the same
    in all of them; and that share among the faces the model is unsure of and among the others (most
    label changes are faces near 0.5 anyway), and the median spread by the cards' age bands."""
    ages, p_female = np.asarray(ages, float), np.asarray(p_female, float)
    age_true, gender_true = np.asarray(age_true, float), np.asarray(gender_true, float)
    females = p_female > 0.5
    changes = females.any(axis=1) != females.all(axis=1)
    borderline = np.abs(p_female[:, 0] - 0.5) < BORDERLINE_FEMALE
    spread = ages.std(axis=1)

    def share(sel):
        return round(float(changes[sel].mean()), 4) if sel.any() else None
    return {"faces": int(len(ages)), "views": int(ages.shape[1]),
            "val_age_mae": round(float(np.abs(ages[:, 0] - age_true).mean()), 3),
            "val_gender_accuracy": round(float((females[:, 0] == (gender_true > 0.5)).mean()), 4),
            "age_spread_median": round(float(np.median(spread)), 3),
            "age_spread_p90": round(float(np.percentile(spread, 90)), 3),
            "gender_label_changes": round(float(changes.mean()), 4),
            "borderline_faces": round(float(borderline.mean()), 4),
            "label_changes_of_borderline_faces": share(borderline),
            "label_changes_of_the_others": share(~borderline),
            "age_spread_median_by_band": {name: round(float(np.median(spread[(age_true >= lo) & (age_true <= hi)])), 3)
                                          for name, lo, hi in AGE_BANDS if ((age_true >= lo) & (age_true <= hi)).any()}}
