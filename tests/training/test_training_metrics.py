import numpy as np
import pytest

from training.metrics import (age_report, binary_report, classification_report, confusion_matrix,
                              expected_calibration_error, interval_coverage, residual_interval, steadiness_report)


def test_confusion_matrix_counts_true_rows_predicted_columns():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_classification_report_matches_hand_computed_values():
    r = classification_report([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["per_class"]["a"]["precision"] == pytest.approx(1 / 2)
    assert r["per_class"]["b"]["recall"] == pytest.approx(1.0)
    assert r["per_class"]["c"]["f1"] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    f1s = [r["per_class"][k]["f1"] for k in "abc"]
    assert r["macro_f1"] == pytest.approx(np.mean(f1s))
    assert r["per_class"]["c"]["support"] == 3


def test_class_never_predicted_has_zero_precision_not_nan():
    r = classification_report([0, 1], [0, 0], ["a", "b"])
    assert r["per_class"]["b"]["precision"] == 0.0 and r["per_class"]["b"]["f1"] == 0.0


def test_binary_report():
    r = binary_report([1, 1, 0, 0], [0.9, 0.2, 0.6, 0.1])
    assert r["accuracy"] == 0.5 and r["precision"] == 0.5 and r["recall"] == 0.5 and r["f1"] == 0.5


def test_age_report_mae_cs5_and_bands():
    r = age_report([5, 15, 30, 50, 70], [7, 25, 30, 44, 70])
    assert r["mae"] == pytest.approx((2 + 10 + 0 + 6 + 0) / 5)
    assert r["cs5"] == pytest.approx(3 / 5)
    assert r["mae_by_band"]["13-19"] == {"mae": 10.0, "n": 1}
    assert r["mae_by_band"]["60+"]["mae"] == 0.0


def test_residual_interval_covers_requested_share():
    rng = np.random.default_rng(0)
    true = rng.uniform(1, 90, 5000)
    pred = true + rng.normal(2, 5, 5000)
    iv = residual_interval(true, pred, 0.8)
    assert interval_coverage(true, pred, iv["below"], iv["above"]) == pytest.approx(0.8, abs=0.01)


def test_calibration_error_is_zero_for_perfectly_calibrated_bins():
    p = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(y, p)["ece"] == pytest.approx(0.0)


def test_steadiness_report_spread_label_changes_and_who_changes():
    # four faces, three views each (view 0 as cut): a steady man, a woman whose age wobbles by a year,
    # an unsure face (P(female) near 0.5) whose label changes, and a sure one whose label changes
    ages = [[30, 30, 30], [40, 41, 39], [10, 10, 10], [70, 70, 70]]
    p_female = [[0.1, 0.1, 0.1], [0.9, 0.8, 0.9], [0.55, 0.45, 0.5], [0.9, 0.4, 0.9]]
    r = steadiness_report(ages, p_female, age_true=[30, 42, 10, 65], gender_true=[0, 1, 1, 1])
    assert (r["faces"], r["views"]) == (4, 3)
    assert r["val_age_mae"] == pytest.approx((0 + 2 + 0 + 5) / 4, abs=1e-3)
    assert r["val_gender_accuracy"] == 1.0
    assert r["age_spread_median"] == pytest.approx(np.median([0, np.std([40, 41, 39]), 0, 0]), abs=1e-3)
    assert r["gender_label_changes"] == 0.5
    assert r["borderline_faces"] == 0.25
    assert r["label_changes_of_borderline_faces"] == 1.0 and r["label_changes_of_the_others"] == pytest.approx(1 / 3, abs=1e-4)
    assert r["age_spread_median_by_band"] == {"0-12": 0.0, "20-39": 0.0, "40-59": pytest.approx(0.816, abs=1e-3),
                                              "60+": 0.0}
