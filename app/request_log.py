"""One log line per request: method, path, status, time in ms and (for analyses) the face count.

Never the query string, body, image bytes, base64 or anything else a client sent: the path is
enough to tell requests apart, and the rest may be personal data.

The line is written by this logger's own handler only (propagate off): the database migration at start-up
configures the root logger from alembic.ini, and propagating to it printed every request twice.
VISAGE_LOG_FORMAT=json writes each line as one JSON object (time, level, logger, message, and the
request's fields), for log collectors; the app's own warnings (app.logger) follow the same format.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

from flask import Flask, g, request

log = logging.getLogger("visage.requests")
FIELDS = ("method", "path", "status", "ms", "faces")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        line.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonFormatter()
    if kind != "text":
        raise RuntimeError(f"VISAGE_LOG_FORMAT must be text or json, got {kind!r}")
    return logging.Formatter("%(asctime)s %(name)s %(message)s")


def register(app: Flask) -> None:
    chosen = formatter(app.config["VISAGE_LOG_FORMAT"])
    if not log.handlers:           # gunicorn leaves the root logger without handlers; print ours to stderr
        log.addHandler(logging.StreamHandler())
        log.setLevel(logging.INFO)
    log.propagate = False
    for handler in log.handlers:
        handler.setFormatter(chosen)
    if app.config["VISAGE_LOG_FORMAT"] == "json":
        for handler in app.logger.handlers:
            handler.setFormatter(chosen)

    @app.before_request
    def start_clock():
        g.request_started = time.perf_counter()

    @app.after_request
    def log_request(response):
        started = g.get("request_started")
        took_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        faces = g.get("face_count")
        log.info("%s %s %d %.1f ms faces=%s", request.method, request.path, response.status_code, took_ms,
                 "-" if faces is None else faces,
                 extra={"method": request.method, "path": request.path, "status": response.status_code,
                        "ms": round(took_ms, 1), "faces": faces})
        return response
