"""Redis and PostgreSQL stop and come back; the disk of VISAGE_VIDEO_DIR fills up (app/outages.py).

Each test starts its own redis-server / PostgreSQL cluster on a free port (tests/services.py), so it can
stop them; nothing is mocked. Requests go through Flask's test client to the real app.
"""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import time
import uuid

import pytest

from app import settings
from tests.services import PostgresServer, RedisServer, Unavailable, python_env, start_worker, stop_process, wait_for
from tests.video_clips import one_face_clip


def need(server_class):
    try:
        return server_class()
    except Unavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(str(e))
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory):
    return one_face_clip(tmp_path_factory.mktemp("clips") / "one.mp4", seconds=2.0, fps=10).read_bytes()


def make_app(models_dir, tmp_path, **config):
    from app import create_app
    return create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "VISAGE_MODELS_DIR": str(models_dir),
                       "VISAGE_INSTANCE_DIR": str(tmp_path / "instance"), "VISAGE_VIDEO_DIR": str(tmp_path / "video"),
                       "VISAGE_LOGIN_RATE_LIMIT": "1000 per minute", **config})


def post_photo(client, jpeg, path="/api/v1/analyze", headers=None):
    return client.post(path, data={"image": (io.BytesIO(jpeg), "a.jpg")}, content_type="multipart/form-data",
                       headers=headers or {})


def post_video(client, clip_bytes):
    return client.post("/api/v1/videos", data={"video": (io.BytesIO(clip_bytes), "clip.mp4"), "fps": "5",
                                               "annotate": "false"}, content_type="multipart/form-data")


def uploads(app) -> list:
    return list((app.extensions["visage.video_jobs"].video_dir / "uploads").iterdir())


def assert_503_json(r, code):
    assert r.status_code == 503 and r.is_json, r.get_data(as_text=True)[:500]
    assert r.get_json()["error"]["code"] == code and int(r.headers["Retry-After"]) > 0


# ---------------------------------------------------------------- Redis

def test_redis_stops_and_comes_back(models_dir, tmp_path, astronaut_jpeg, clip_bytes):
    redis_server = need(RedisServer).start()
    app = make_app(models_dir, tmp_path, VISAGE_REDIS_URL=redis_server.url)
    cfg = {k: v for k, v in app.config.items() if k.startswith("VISAGE_") and k in settings.DEFAULTS}
    worker = start_worker(python_env(**cfg), tmp_path / "worker.log", f"w-{uuid.uuid4().hex[:6]}")
    client = app.test_client()
    try:
        assert client.get("/api/v1/ready").get_json()["dependencies"]["redis"] == "ok"
        redis_server.stop()
        # Down: photos, pages, login and registration work (rate limits count in memory meanwhile) ...
        assert post_photo(client, astronaut_jpeg).status_code == 200
        assert client.get("/").status_code == 200 and client.get("/video").status_code == 200
        r = client.post("/register", data={"email": "redis-down@example.com", "password": "correct horse battery"})
        assert r.status_code == 302
        assert client.post("/login", data={"email": "redis-down@example.com",
                                           "password": "correct horse battery"}).status_code == 302
        ready = client.get("/api/v1/ready")
        assert ready.status_code == 200 and ready.get_json()["dependencies"]["redis"].startswith("unavailable")
        # ... a video upload gets a JSON 503 with Retry-After, and leaves no file behind; so does reading a job.
        assert_503_json(post_video(client, clip_bytes), "queue_unavailable")
        assert uploads(app) == []
        assert_503_json(client.get(f"/api/v1/jobs/{'a' * 32}"), "queue_unavailable")
        # Back (empty, as a Redis without persistence restarts): a new job runs on the worker that waited.
        redis_server.start()
        r = post_video(client, clip_bytes)
        assert r.status_code == 202, r.get_data(as_text=True)
        job_id = r.get_json()["id"]
        record = wait_for(lambda: (lambda j: j if j["status"] in ("done", "failed") else None)(
            client.get(f"/api/v1/jobs/{job_id}").get_json()), 180, "the job ends after Redis came back", interval=0.5)
        assert record["status"] == "done", record["error"]
        assert worker.poll() is None                      # no restart was needed
    finally:
        stop_process(worker, signal.SIGKILL)
        redis_server.stop()


def test_job_running_through_a_redis_restart_still_ends_done(models_dir, tmp_path, clip_bytes):
    """A Redis with persistence restarts while a worker runs a job: the job goes on and records its result."""
    redis_server = need(lambda: RedisServer(persistent=True)).start()
    app = make_app(models_dir, tmp_path, VISAGE_REDIS_URL=redis_server.url)
    cfg = {k: v for k, v in app.config.items() if k.startswith("VISAGE_") and k in settings.DEFAULTS}
    worker = start_worker(python_env(**cfg), tmp_path / "worker.log", f"w-{uuid.uuid4().hex[:6]}")
    client = app.test_client()
    long_bytes = one_face_clip(tmp_path / "long.mp4", seconds=20.0, fps=10, size=(320, 240)).read_bytes()
    try:
        job_id = post_video(client, long_bytes).get_json()["id"]
        wait_for(lambda: client.get(f"/api/v1/jobs/{job_id}").get_json()["status"] == "running", 180,
                 "the worker starts the job", interval=0.2)
        redis_server.stop()
        time.sleep(3)
        redis_server.start()
        record = wait_for(lambda: (lambda j: j if j["status"] in ("done", "failed") else None)(
            client.get(f"/api/v1/jobs/{job_id}").get_json()), 180, "the job ends", interval=0.5)
        assert record["status"] == "done", record["error"]
        assert worker.poll() is None
    finally:
        stop_process(worker, signal.SIGKILL)
        redis_server.stop()


# ---------------------------------------------------------------- PostgreSQL

@pytest.fixture(scope="module")
def postgres():
    server = need(PostgresServer).start()
    yield server
    server.destroy()


def register(client):
    email = f"pg-{uuid.uuid4().hex[:8]}@example.com"
    assert client.post("/register", data={"email": email, "password": "correct horse battery"}).status_code == 302
    return email


def test_postgresql_stops_and_comes_back(models_dir, tmp_path, postgres, astronaut_jpeg):
    app = make_app(models_dir, tmp_path, VISAGE_DATABASE_URL=postgres.url)
    client = app.test_client()
    email = register(client)
    r = client.post("/account/tokens", data={"tok-name": "script"})
    token = re.search(r"<code>(vsg_[\w-]+)</code>", r.get_data(as_text=True)).group(1)
    html = post_photo(client, astronaut_jpeg, path="/analyze").get_data(as_text=True)
    payload = re.search(r'name="payload" type="hidden" value="([^"]+)"', html).group(1)

    postgres.stop()
    try:
        # Analyses keep working: anonymous, logged in (served as anonymous), and with a token (not saving).
        assert post_photo(app.test_client(), astronaut_jpeg).status_code == 200
        r = post_photo(client, astronaut_jpeg, path="/analyze")
        assert r.status_code == 200 and 'data-testid="save-form"' not in r.get_data(as_text=True)
        assert post_photo(client, astronaut_jpeg, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        # Saving answers 503 (JSON for the API) ...
        r = client.post("/api/v1/analyze", query_string={"save": "true"}, headers={"Authorization": f"Bearer {token}"},
                        data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")}, content_type="multipart/form-data")
        assert_503_json(r, "database_unavailable")
        # ... and a page that offers to send the same form again: the Save payload, the email typed (not the password).
        r = client.post("/history/save", data={"payload": payload, "thumbnail": "y"})
        page = r.get_data(as_text=True)
        assert r.status_code == 503 and "Retry-After" in r.headers and "Database unavailable" in page
        assert f'name="payload" value="{payload}"' in page and 'action="/history/save"' in page
        r = app.test_client().post("/login", data={"email": email, "password": "correct horse battery"})
        page = r.get_data(as_text=True)
        assert r.status_code == 503 and f'value="{email}"' in page and "correct horse battery" not in page
        for path in ("/history", "/dashboard", "/account"):
            r = client.get(path)
            assert r.status_code == 503 and "Database unavailable" in r.get_data(as_text=True), path
        ready = client.get("/api/v1/ready")
        assert ready.status_code == 200 and ready.get_json()["dependencies"]["database"].startswith("unavailable")
    finally:
        postgres.start()
    # Back: the same app (its pool pre-pings and reconnects) saves and shows history; no restart.
    r = client.post("/history/save", data={"payload": payload})
    assert r.status_code == 302, r.get_data(as_text=True)[:500]
    assert client.get("/history").status_code == 200 and client.get("/dashboard").status_code == 200
    assert client.get("/api/v1/ready").get_json()["dependencies"]["database"] == "ok"
    with app.app_context():
        from app.db import db
        db.engine.dispose()


def empty_database(server) -> str:
    """A new database on the module's PostgreSQL server (its "postgres" database is migrated by other tests)."""
    import sqlalchemy as sa
    name = f"empty_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.engine.make_url(server.url).set(database=name).render_as_string(hide_password=False)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_database_not_migrated_says_so_instead_of_a_500_or_try_again(models_dir, tmp_path, astronaut_jpeg,
                                                                       request, engine):
    """VISAGE_DB_AUTO_UPGRADE=0 and no `flask db upgrade` run: PostgreSQL answered register and login with
    a 500, SQLite with "database unavailable, try again in about 30 s", which waiting never mends."""
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}" if engine == "sqlite" else empty_database(request.getfixturevalue("postgres"))
    app = make_app(models_dir, tmp_path, VISAGE_DATABASE_URL=url, VISAGE_DB_AUTO_UPGRADE=0)
    client = app.test_client()
    for path in ("/register", "/login"):
        r = client.post(path, data={"email": "a@example.com", "password": "correct horse battery"})
        page = r.get_data(as_text=True)
        assert r.status_code == 503 and "Database not set up" in page and "db upgrade" in page, (path, page[-800:])
        assert "try again" not in page.lower()
    assert post_photo(client, astronaut_jpeg).status_code == 200          # analyses still work
    bearer = {"Authorization": "Bearer not-a-token"}     # cannot be checked: as while the database is down,
    assert post_photo(client, astronaut_jpeg, headers=bearer).status_code == 200      # an analysis needs none
    r = client.post("/api/v1/analyze", query_string={"save": "true"}, headers=bearer,
                    data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")}, content_type="multipart/form-data")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "database_not_migrated"
    assert "db upgrade" in r.get_json()["error"]["message"]
    assert client.get("/api/v1/ready").get_json()["dependencies"]["database"].startswith("not migrated")
    with app.app_context():
        from app.db import db
        db.engine.dispose()


def test_postgresql_down_with_login_required_answers_503_not_the_login_page(models_dir, tmp_path, postgres):
    app = make_app(models_dir, tmp_path, VISAGE_DATABASE_URL=postgres.url, VISAGE_REQUIRE_LOGIN=1)
    client = app.test_client()
    register(client)
    postgres.stop()
    try:
        r = client.get("/")                 # logged in, but the login cannot be checked now
        assert r.status_code == 503 and "Database unavailable" in r.get_data(as_text=True)
        assert app.test_client().get("/").status_code == 302          # no session: the login page, as always
    finally:
        postgres.start()
    assert client.get("/").status_code == 200
    with app.app_context():
        from app.db import db
        db.engine.dispose()


# ---------------------------------------------------------------- disk full

@pytest.fixture()
def tiny_disk(tmp_path):
    """A 512 KB tmpfs (needs root and mount; skipped with the reason where containers forbid it)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up here: {done.stderr.strip() or done.returncode}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


def test_full_disk_in_video_dir_is_507_json_and_no_job(models_dir, tmp_path, tiny_disk, clip_bytes):
    app = make_app(models_dir, tmp_path, VISAGE_VIDEO_DIR=str(tiny_disk))
    filler = tiny_disk / "filler"
    with open(filler, "wb", buffering=0) as f:     # leave less room than the upload needs
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - len(clip_bytes) // 2))
    r = post_video(app.test_client(), clip_bytes)
    assert r.status_code == 507 and r.is_json, r.get_data(as_text=True)[:500]
    assert r.get_json()["error"]["code"] == "insufficient_storage" and "Retry-After" in r.headers
    assert uploads(app) == [] and list((tiny_disk / "jobs").iterdir()) == []     # no half-written job
    filler.unlink()                                # space again: the same app takes the upload
    r = post_video(app.test_client(), clip_bytes)
    assert r.status_code == 202, r.get_data(as_text=True)[:500]
    assert app.extensions["visage.video_jobs"].runner.wait(r.get_json()["id"], 120) == "done"
