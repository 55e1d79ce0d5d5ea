"""A deploy stops gunicorn with SIGTERM: every analysis in flight still gets its answer. And the server's
log has one line per request (JSON lines with VISAGE_LOG_FORMAT=json). Real gunicorn with gunicorn.conf.py."""
from __future__ import annotations

import io
import json
import os
import signal
import threading
import time

import numpy as np
from PIL import Image

from tests.services import free_port, multipart, python_env, request, start_gunicorn, stop_process

IN_FLIGHT = 8


def big_jpeg(astronaut) -> bytes:
    """A 2048-px photo: long enough to analyse that the requests are still in flight at the SIGTERM."""
    buffer = io.BytesIO()
    Image.fromarray(np.tile(astronaut, (4, 4, 1))).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_sigterm_lets_every_analysis_in_flight_finish_and_logs_one_json_line_each(models_dir, tmp_path, astronaut):
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    env = python_env(VISAGE_MODELS_DIR=models_dir, VISAGE_INSTANCE_DIR=tmp_path / "instance",
                     VISAGE_ANALYSIS_SLOTS=1, VISAGE_QUEUE_TIMEOUT=120, VISAGE_ANALYSIS_TIMEOUT=120,
                     VISAGE_LOG_FORMAT="json")
    proc = start_gunicorn(env, port, log_path, workers=1)
    body, content_type = multipart({}, {"image": ("big.jpg", big_jpeg(astronaut))})
    answers, finished_at = [None] * IN_FLIGHT, [0.0] * IN_FLIGHT
    first_done = threading.Event()

    def send(i):
        try:
            status, _, data = request(port, "POST", "/api/v1/analyze", body, {"Content-Type": content_type}, timeout=120)
            answers[i] = (status, json.loads(data))
        except OSError as e:
            answers[i] = (None, repr(e))
        finished_at[i] = time.monotonic()
        first_done.set()

    try:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(IN_FLIGHT)]
        for t in threads:
            t.start()
        assert first_done.wait(120)
        os.killpg(proc.pid, signal.SIGTERM)           # the deploy: the other requests are in flight
        term_at = time.monotonic()
        for t in threads:
            t.join(150)
        assert proc.wait(90) == 0
    finally:
        stop_process(proc, signal.SIGKILL)
    assert [a[0] for a in answers] == [200] * IN_FLIGHT, answers
    assert all("faces" in a[1] for a in answers)
    assert sum(t > term_at for t in finished_at) >= IN_FLIGHT // 2     # most were answered after the SIGTERM

    lines = [line for line in log_path.read_text().splitlines() if "/api/v1/analyze" in line]
    assert len(lines) == IN_FLIGHT, lines                            # one line per request, not two
    records = [json.loads(line) for line in lines]
    assert {(r["logger"], r["method"], r["path"], r["status"]) for r in records} == {
        ("visage.requests", "POST", "/api/v1/analyze", 200)}
    assert all(r["ms"] > 0 and r["faces"] is not None for r in records)
