"""Overload: bounded waiting (503 + Retry-After), analysis time limit, liveness vs readiness, request log lines."""
from __future__ import annotations

import base64
import logging
import threading
import time

import pytest

from app.admission import AdmissionGate, Busy
from test_api import assert_error, upload


@pytest.fixture()
def busy_app(models_dir):
    """One analysis slot, a short queue timeout: easy to saturate from a test."""
    from app import create_app
    return create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "VISAGE_MODELS_DIR": str(models_dir),
                       "VISAGE_ANALYSIS_SLOTS": 1, "VISAGE_QUEUE_TIMEOUT": 0.3})


class HeldSlots:
    """Occupy every analysis slot of a gate with analyses that block until released."""

    def __init__(self, gate: AdmissionGate):
        self.gate, self.release, self.threads = gate, threading.Event(), []

    def __enter__(self):
        started = threading.Barrier(self.gate.slots + 1)

        def blocking_analysis():
            started.wait()
            self.release.wait(10)
        self.threads = [threading.Thread(target=self.gate.run, args=(blocking_analysis,))
                        for _ in range(self.gate.slots)]
        for t in self.threads:
            t.start()
        started.wait(5)
        return self

    def __exit__(self, *_exc):
        self.release.set()
        for t in self.threads:
            t.join(5)


def test_gate_times_out_waiting_with_busy():
    gate = AdmissionGate(slots=1, queue_timeout=0.2)
    with HeldSlots(gate):
        start = time.monotonic()
        with pytest.raises(Busy) as e:
            gate.run(lambda: None)
        assert 0.15 < time.monotonic() - start < 5
        assert gate.waiting == 0           # the request that gave up left the queue
    assert e.value.retry_after >= 1 and e.value.code == "overloaded"
    assert gate.run(lambda: gate.running) == 1    # free again once the holder leaves
    assert gate.running == 0 and gate.waiting == 0


def test_gate_runs_analyses_on_its_own_threads_and_passes_errors_through():
    gate = AdmissionGate(slots=2, queue_timeout=5)
    names = {gate.run(lambda: threading.current_thread().name) for _ in range(6)}
    assert len(names) <= 2 and all(n.startswith("analysis") for n in names)
    with pytest.raises(ZeroDivisionError):
        gate.run(lambda: 1 / 0)
    assert gate.running == 0


def test_gate_turns_away_at_once_when_the_queue_is_already_too_long():
    gate = AdmissionGate(slots=1, queue_timeout=5)
    with HeldSlots(gate):
        gate.mean_seconds = 10.0        # one analysis ahead already takes longer than the queue timeout
        assert gate.saturated()
        start = time.monotonic()
        with pytest.raises(Busy) as e:
            gate.run(lambda: None)
        assert time.monotonic() - start < 1     # no waiting at all
        assert e.value.retry_after == 10


def test_api_answers_503_json_with_retry_after_while_health_stays_up(busy_app, astronaut_jpeg):
    client = busy_app.test_client()
    with HeldSlots(busy_app.extensions["visage.gate"]):
        r = upload(client, astronaut_jpeg)
        assert_error(r, 503, "overloaded")
        assert int(r.headers["Retry-After"]) >= 1
        assert client.get("/api/v1/health").status_code == 200
    assert upload(client, astronaut_jpeg).status_code == 200


def test_html_page_gets_a_friendly_503(busy_app, astronaut_jpeg):
    import io
    client = busy_app.test_client()
    with HeldSlots(busy_app.extensions["visage.gate"]):
        r = client.post("/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")})
    assert r.status_code == 503 and r.mimetype == "text/html"
    assert "Busy right now" in r.get_data(as_text=True)
    assert int(r.headers["Retry-After"]) >= 1


def test_ready_is_503_when_saturated_and_200_otherwise(busy_app):
    client = busy_app.test_client()
    gate = busy_app.extensions["visage.gate"]
    r = client.get("/api/v1/ready")
    assert r.status_code == 200 and r.get_json()["ready"] is True
    with HeldSlots(gate):
        gate.mean_seconds = 5.0          # what one more request would wait exceeds VISAGE_QUEUE_TIMEOUT
        r = client.get("/api/v1/ready")
        assert r.status_code == 503 and r.get_json() == {
            "ready": False, "analyses_running": 1, "analyses_waiting": 0, "analysis_slots": 1,
            "dependencies": {"database": "ok"}}
        assert int(r.headers["Retry-After"]) == 5
        assert client.get("/api/v1/health").status_code == 200     # liveness is not readiness


def test_analysis_past_its_time_limit_is_503(models_dir, astronaut_jpeg):
    from app import create_app
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "VISAGE_MODELS_DIR": str(models_dir), "VISAGE_ANALYSIS_TIMEOUT": 0})
    r = upload(app.test_client(), astronaut_jpeg)
    assert_error(r, 503, "analysis_timeout")
    assert "Retry-After" in r.headers
    assert app.extensions["visage.gate"].running == 0       # the slot was given back


# --- request log -------------------------------------------------------------------------------------------
@pytest.fixture()
def caplog(caplog):
    """The request logger writes through its own handler only (one line, not propagated to the root logger's),
    so pytest's capture handler is attached to it directly."""
    logger = logging.getLogger("visage.requests")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def request_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "visage.requests"]


def test_one_log_line_per_request_with_status_time_and_faces(client, caplog, astronaut_jpeg):
    caplog.set_level(logging.INFO, logger="visage.requests")
    upload(client, astronaut_jpeg)
    client.get("/api/v1/health")
    upload(client, b"not an image")
    lines = request_lines(caplog)
    assert len(lines) == 3
    method, path, status, ms, unit, faces = lines[0].split()
    assert (method, path, status, unit, faces) == ("POST", "/api/v1/analyze", "200", "ms", "faces=1")
    assert float(ms) > 0
    assert lines[1].startswith("GET /api/v1/health 200 ") and lines[1].endswith("faces=-")
    assert lines[2].startswith("POST /api/v1/analyze 415 ")


def test_log_never_holds_image_bytes_base64_or_query(client, caplog, astronaut_jpeg):
    caplog.set_level(logging.DEBUG)
    b64 = base64.b64encode(astronaut_jpeg).decode()
    client.post("/api/v1/analyze?detector=haar&min_face=0.1", json={"image": b64, "detector": "haar"})
    client.post("/api/v1/analyze", json={"image": b64[:-7] + "!!!!!!!"})     # bad base64: its error is logged too
    text = caplog.text
    assert request_lines(caplog) and "min_face" not in text
    assert b64[:40] not in text and b64[-40:-7] not in text
    assert astronaut_jpeg[:40].decode("latin1") not in text


def test_ready_says_when_the_database_has_not_been_migrated(models_dir, tmp_path):
    """VISAGE_DB_AUTO_UPGRADE=0 and no `flask db upgrade` run: the database answers but every save fails;
    /ready said "ok"."""
    from app import create_app
    app = create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir), "VISAGE_DB_AUTO_UPGRADE": 0,
                      "VISAGE_INSTANCE_DIR": str(tmp_path / "instance"),
                      "VISAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}"})
    database = app.test_client().get("/api/v1/ready").get_json()["dependencies"]["database"]
    assert database.startswith("not migrated") and "db upgrade" in database
