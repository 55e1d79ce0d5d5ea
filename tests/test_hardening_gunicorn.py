"""gunicorn's own refusals (before Flask sees the request) come back in the JSON error format.

Starts the real server with gunicorn.conf.py (what `make run` uses), one worker, the tiny test models.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(models_dir):
    port = free_port()
    env = dict(os.environ, VISAGE_MODELS_DIR=str(models_dir))
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                             f"127.0.0.1:{port}", "--workers", "1", "wsgi:app"],
                            cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/v1/health")
            if conn.getresponse().status == 200:
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("gunicorn did not start")
            time.sleep(0.5)
    yield port
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def raw_request(port: int, head: str) -> tuple[int, str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode("latin1"))
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    header, _, body = answer.decode("latin1").partition("\r\n\r\n")
    status = int(header.split()[1])
    content_type = next(line.split(":", 1)[1].strip() for line in header.split("\r\n")
                        if line.lower().startswith("content-type:"))
    return status, content_type, body


def test_long_url_is_414_json(server):
    status, content_type, body = raw_request(server, f"GET /api/v1/health?{'x' * 9000} HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 414 and content_type == "application/json"
    assert json.loads(body)["error"]["code"] == "uri_too_long"


@pytest.mark.parametrize("headers", [f"X-Big: {'y' * 9000}\r\n",
                                     "".join(f"X-H{i}: 1\r\n" for i in range(120))])
def test_huge_or_too_many_headers_are_431_json(server, headers):
    status, content_type, body = raw_request(server, f"GET /api/v1/health HTTP/1.1\r\nHost: a\r\n{headers}\r\n")
    assert status == 431 and content_type == "application/json"
    assert json.loads(body)["error"]["code"] == "request_header_fields_too_large"


def test_ordinary_request_still_served(server):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    conn.request("GET", "/api/v1/ready")
    assert conn.getresponse().status == 200
