"""python -m app.cli photos/ --server URL against a real server (werkzeug, threaded, embedded worker)."""
from __future__ import annotations

import csv
import json
import threading

import pytest

from app import cli
from tests.batch_photos import no_face_photo, one_face_photos


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    from werkzeug.serving import make_server

    from app import create_app
    app = create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir), "VISAGE_BATCH_CHUNK": 3,
                      "VISAGE_VIDEO_DIR": str(tmp_path_factory.mktemp("jobs")), "VISAGE_MAX_BATCH_FILES": 20})
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=10)


@pytest.fixture()
def folder(tmp_path):
    photos = tmp_path / "photos"
    (photos / "day 2").mkdir(parents=True)
    for name, data in one_face_photos(4):
        (photos / name).write_bytes(data)
    (photos / "day 2" / "coffee.jpg").write_bytes(no_face_photo())
    (photos / ".hidden.jpg").write_bytes(b"skipped")
    return photos


def test_folder_as_a_batch_on_the_server_writes_the_csv(server, folder, tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert cli.main([str(folder), "--server", server, "-o", str(out), "--detector", "haar"]) == 1   # one photo: no face
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == ["day 2/coffee.jpg"] + [f"face-{i:04d}.jpg" for i in range(4)]
    assert rows[0]["error_code"] == "no_face" and all(r["error_code"] == "" and float(r["age"]) > 0 for r in rows[1:])
    err = capsys.readouterr().err
    assert "5 photos, 4 faces, 1 without a face" in err and "batch " in err        # summary and progress bar


def test_jsonl_output_and_all_faces_found(server, folder, tmp_path, capsys):
    (folder / "day 2" / "coffee.jpg").unlink()
    assert cli.main([str(folder), "--server", server, "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 4 and all(len(r["faces"]) == 1 for r in records)


def test_a_refused_batch_and_an_unreachable_server_exit_2(server, tmp_path, capsys):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(21):
        (many / f"{i}.jpg").write_bytes(bytes([i]) * 10)
    assert cli.main([str(many), "--server", server]) == 2
    assert "too_many_files" in capsys.readouterr().err
    assert cli.main([str(many), "--server", "http://127.0.0.1:9"]) == 2
    assert "cannot reach" in capsys.readouterr().err
    assert cli.main([str(many), "--server", "http://[::1"]) == 2              # a typo, not a traceback
    assert "not a server address" in capsys.readouterr().err


def test_a_file_name_that_is_not_utf8_on_disk_is_sent_with_a_replacement(tmp_path):
    """Python holds such a name's bytes as surrogates; encoding the form used to raise UnicodeEncodeError."""
    from app.batch_client import multipart
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"x")
    _, length, body = multipart([("caf\udce9.jpg", photo)], {})
    data = b"".join(body())
    assert len(data) == length and b'filename="caf?.jpg"' in data
