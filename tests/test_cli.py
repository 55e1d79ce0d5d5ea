"""python -m app.cli: one file → JSON; a folder → JSON Lines or CSV; bad files → error records."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def folder(tmp_path, astronaut_jpeg, two_faces_jpeg, coffee_jpeg) -> Path:
    (tmp_path / "one.jpg").write_bytes(astronaut_jpeg)
    (tmp_path / "two.jpg").write_bytes(two_faces_jpeg)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "coffee.jpg").write_bytes(coffee_jpeg)
    (tmp_path / "broken.jpg").write_bytes(astronaut_jpeg[:1500])
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def run(models_dir, *args) -> int:
    return cli.main([*map(str, args), "--models-dir", str(models_dir)])


def test_single_file_prints_json(models_dir, folder, capsys):
    assert run(models_dir, folder / "one.jpg") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["file"].endswith("one.jpg") and len(record["faces"]) == 1


def test_single_bad_file_is_an_error_record(models_dir, folder, capsys):
    assert run(models_dir, folder / "notes.txt") == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "unsupported_type"


def test_missing_file_is_an_error_record(models_dir, tmp_path, capsys):
    assert run(models_dir, tmp_path / "nope.jpg") == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "unreadable"


def test_folder_to_jsonl(models_dir, folder, capsys):
    assert run(models_dir, folder) == 1                 # two bad files in the folder
    captured = capsys.readouterr()
    records = {Path(r["file"]).name: r for r in map(json.loads, captured.out.splitlines())}
    assert set(records) == {"one.jpg", "two.jpg", "coffee.jpg", "broken.jpg", "notes.txt"}
    assert len(records["two.jpg"]["faces"]) == 2 and records["coffee.jpg"]["faces"] == []
    assert records["broken.jpg"]["error"]["code"] == "undecodable"
    assert records["notes.txt"]["error"]["code"] == "unsupported_type"
    assert "analyzing" in captured.err                  # tqdm progress bar goes to stderr


def test_folder_to_csv_file(models_dir, folder, tmp_path):
    out = tmp_path / "out.csv"
    assert run(models_dir, folder, "--format", "csv", "--output", out, "--detector", "haar") == 1   # 2 bad files
    rows = list(csv.DictReader(out.open()))
    by_file = {}
    for row in rows:
        by_file.setdefault(Path(row["file"]).name, []).append(row)
    assert len(by_file["two.jpg"]) == 2 and by_file["two.jpg"][1]["face"] == "2"
    assert len(by_file["one.jpg"]) == 1 and by_file["coffee.jpg"][0]["face"] == "0"
    assert by_file["notes.txt"][0]["error_code"] == "unsupported_type"
    face = by_file["one.jpg"][0]
    assert face["gender"] in ("female", "male") and float(face["age_high"]) > float(face["age_low"])


def test_missing_models_exit_2(tmp_path, folder, capsys):
    assert cli.main([str(folder / "one.jpg"), "--models-dir", str(tmp_path / "empty")]) == 2
    assert "emotion.json" in capsys.readouterr().err


def test_runs_as_module(models_dir, folder):
    env = {**os.environ, "VISAGE_MODELS_DIR": str(models_dir)}
    done = subprocess.run([sys.executable, "-m", "app.cli", str(folder / "two.jpg"), "--detector", "none"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["faces"]) == 1


def test_detector_defaults_to_blazeface_or_the_setting(models_dir, folder, capsys, monkeypatch):
    assert run(models_dir, folder / "one.jpg") == 0
    assert json.loads(capsys.readouterr().out)["detector"] == "blazeface"
    monkeypatch.setenv("VISAGE_DEFAULT_DETECTOR", "haar")
    assert run(models_dir, folder / "one.jpg") == 0
    assert json.loads(capsys.readouterr().out)["detector"] == "haar"
    assert run(models_dir, folder / "one.jpg", "--detector", "blazeface") == 0
    assert json.loads(capsys.readouterr().out)["detector"] == "blazeface"
    monkeypatch.setenv("VISAGE_DEFAULT_DETECTOR", "hog")
    assert run(models_dir, folder / "one.jpg") == 1
    assert "VISAGE_DEFAULT_DETECTOR must be one of blazeface, haar, none" in capsys.readouterr().err


def test_one_file_as_csv_an_empty_folder_a_video_in_a_folder_and_a_file_over_the_limit(
        models_dir, folder, tmp_path, capsys, monkeypatch):
    assert run(models_dir, folder / "one.jpg", "--format", "csv") == 0         # asked for CSV: CSV, not JSON
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(rows) == 1 and rows[0]["file"].endswith("one.jpg") and rows[0]["gender"]
    (tmp_path / "empty").mkdir()
    assert run(models_dir, tmp_path / "empty") == 1
    assert "no files" in capsys.readouterr().err
    (folder / "talk.mp4").write_bytes(b"\0" * 100)
    monkeypatch.setenv("VISAGE_MAX_BYTES", str(len((folder / "one.jpg").read_bytes()) - 1))
    assert run(models_dir, folder) == 1
    records = {Path(r["file"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert records["talk.mp4"]["error"]["code"] == "video_file" and "on its own" in records["talk.mp4"]["error"]["message"]
    too_large = records["one.jpg"]["error"]
    assert too_large["code"] == "file_too_large" and "bytes; the limit is" in too_large["message"]   # 1 byte over
