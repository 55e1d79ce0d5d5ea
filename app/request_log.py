"""One log line per request: method, path, status, time in ms and (for analyses) the face count.

Never the query string, body, image bytes, base64 or anything else a client sent: the path is
enough to tell requests apart, and the rest may be personal data.
"""
from __future__ import annotations

import logging
import time

from flask import Flask, g, request

log = logging.getLogger("visage.requests")


def register(app: Flask) -> None:
    if not log.handlers:           # gunicorn leaves the root logger without handlers; print ours to stderr
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)

    @app.before_request
    def start_clock():
        g.request_started = time.perf_counter()

    @app.after_request
    def log_request(response):
        started = g.get("request_started")
        took_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        faces = g.get("face_count")
        log.info("%s %s %d %.1f ms faces=%s", request.method, request.path, response.status_code, took_ms,
                 "-" if faces is None else faces)
        return response
