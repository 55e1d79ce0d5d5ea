"""python -m app.cli on a video (timeline CSV/JSON, annotated/blurred MP4) and --blur on photos."""
from __future__ import annotations

import csv
import json

import av
import numpy as np
from PIL import Image

from app import cli
from app.pipeline.analyze import find_faces
from tests.video_clips import one_face_clip


def run(models_dir, *args) -> int:
    return cli.main([*map(str, args), "--models-dir", str(models_dir)])


def test_video_to_csv_with_annotated_blurred_mp4(models_dir, tmp_path, capsys):
    clip = one_face_clip(tmp_path / "talk.mp4", seconds=2.0, fps=10)
    out, annotated = tmp_path / "timeline.csv", tmp_path / "out.mp4"
    assert run(models_dir, clip, "--fps", "5", "-o", out, "--annotated", annotated, "--blur") == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 10 and {r["track"] for r in rows} == {"1"}
    assert [float(r["t"]) for r in rows] == [round(0.2 * i, 3) for i in range(10)]
    with av.open(str(annotated)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 20 and not find_faces(frames[10], "haar")
    assert "analyzing" in capsys.readouterr().err              # the progress bar


def test_video_to_json_on_stdout(models_dir, tmp_path, capsys):
    clip = one_face_clip(tmp_path / "talk.mp4", seconds=1.0, fps=10)
    assert run(models_dir, clip, "--fps", "10") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["file"] == str(clip) and answer["sampling"]["samples"] == 10 and len(answer["tracks"]) == 1


def test_bad_video_is_a_clear_error(models_dir, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    assert run(models_dir, bad) == 1
    assert "not a video" in capsys.readouterr().err


def test_photo_blur_writes_a_blurred_copy(models_dir, tmp_path, astronaut_jpeg, capsys):
    photo = tmp_path / "portrait.jpg"
    photo.write_bytes(astronaut_jpeg)
    assert run(models_dir, photo, "--blur", "--blur-dir", tmp_path / "shared") == 0
    record = json.loads(capsys.readouterr().out)
    blurred = np.asarray(Image.open(record["blurred"]))
    assert record["blurred"].endswith("shared/portrait-blurred.jpg") and record["faces"]
    assert not find_faces(blurred, "haar")


def test_outputs_that_cannot_be_written_stop_before_the_analysis(models_dir, tmp_path, astronaut_jpeg, capsys):
    """-o or --annotated into a folder that does not exist: exit 2 at once, naming that path (the analysis
    used to run first, then its result was lost to a traceback or to a message naming the input)."""
    clip = one_face_clip(tmp_path / "talk.mp4", seconds=1.0, fps=10)
    for option, target in (("-o", tmp_path / "nowhere" / "t.csv"), ("--annotated", tmp_path / "nowhere" / "a.mp4")):
        assert run(models_dir, clip, option, target) == 2
        captured = capsys.readouterr()
        assert str(target) in captured.err and "analyzing" not in captured.err
    photo = tmp_path / "portrait.jpg"
    photo.write_bytes(astronaut_jpeg)
    (tmp_path / "a-file").write_text("")
    assert run(models_dir, photo, "-o", tmp_path / "nowhere" / "out.json") == 2
    assert run(models_dir, photo, "--blur", "--blur-dir", tmp_path / "a-file" / "blurred") == 2
    assert "blurred" in capsys.readouterr().err
    # A blurred copy that fails on its own leaves the analysis in the record, said beside it.
    record = cli.analyze_file(photo, cli.load_predictor(models_dir), "blazeface",
                              {"VISAGE_MAX_BYTES": 10**7, "VISAGE_MAX_PIXELS": 10**8}, blur_dir=tmp_path / "a-file")
    assert record["faces"] and "blurred" not in record and "could not be written" in record["blur_error"]
