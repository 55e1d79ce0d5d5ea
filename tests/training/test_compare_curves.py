"""training.compare_curves: two runs' validation curves as window means, read from log.csv or a checkpoint."""
from __future__ import annotations

import json

import pytest


def rows(maes):
    return [{"epoch": i, "val_age_mae": m, "val_gender_accuracy": 0.9} for i, m in enumerate(maes)]


def test_window_means_cover_epochs_from_one_and_mark_an_unfinished_window():
    from training.compare_curves import window_means
    means = window_means(rows([6, 4, 5, 3, 9]), "val_age_mae", 2)
    assert [m["epochs"] for m in means] == [[1, 2], [3, 4], [5, 5]]
    assert [m["mean"] for m in means] == [5, 4, 9]
    assert [m["complete"] for m in means] == [True, True, False]


def test_a_log_and_a_checkpoint_compare_side_by_side(tmp_path, capsys):
    """The committed checkpoint carries the run's log rows: a run in progress on another machine is read
    from it as from a finished run's log.csv."""
    import keras

    from training.common import save_run_checkpoint, write_log
    from training.compare_curves import main
    write_log(tmp_path, rows([8, 6, 5, 5]))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    save_run_checkpoint(tmp_path / "run.npz", model, {"task": "age_gender"}, rows([9, 7, 6])[:3])
    out = tmp_path / "curves.json"
    assert main([str(tmp_path / "log.csv"), str(tmp_path / "run.npz"), "--window", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["epochs_done"] == {str(tmp_path / "log.csv"): 4, str(tmp_path / "run.npz"): 3}
    assert [m["mean"] for m in result["means"]["val_age_mae"][str(tmp_path / "log.csv")]] == [7, 5]
    assert [m["mean"] for m in result["means"]["val_age_mae"][str(tmp_path / "run.npz")]] == [8, 6]
    printed = capsys.readouterr().out
    assert "val_gender_accuracy" in printed and "6.000 (1 ep)" in printed


def test_a_missing_file_is_named(tmp_path, capsys):
    from training.compare_curves import main
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere.csv")])
    assert "nowhere.csv" in capsys.readouterr().err
