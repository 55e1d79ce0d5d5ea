"""gunicorn settings for `make run` (and bench/load_photos.py): `gunicorn -c gunicorn.conf.py wsgi:app`.

Every value can be overridden on the command line (`gunicorn -c gunicorn.conf.py --bind … wsgi:app`).
Limits on what gunicorn itself accepts before Flask sees a request are set explicitly here;
docs/api.md lists them with the answers a client gets when it goes over them.
"""
from __future__ import annotations

import json

from gunicorn import util

bind = "127.0.0.1:8000"
# 2 cores: one worker per core. Analyses run VISAGE_ANALYSIS_SLOTS (2) at a time per worker; the other
# threads read uploads, answer /health and /ready, and wait in the app's admission queue, where the wait is
# bounded (VISAGE_QUEUE_TIMEOUT → 503). Requests beyond `threads` wait in gunicorn's own queue, unbounded
# but short, since a saturated app turns queued requests away at once.
workers = 2
threads = 32
timeout = 60                     # a worker silent this long is killed and replaced (last resort)
# SIGTERM (a deploy): stop accepting, let in-flight requests finish for up to this long, then exit. Longer than
# the longest analysis may take: VISAGE_QUEUE_TIMEOUT (20 s) waiting + VISAGE_ANALYSIS_TIMEOUT (30 s) running.
graceful_timeout = 60
limit_request_line = 8190        # bytes in "METHOD /path?query HTTP/1.1"; longer → 414
limit_request_fields = 100       # header count; more → 431
limit_request_field_size = 8190  # bytes in one header line; longer → 431


def _json_error(sock, status_int, reason, mesg):
    """gunicorn's own refusals (414, 431, malformed HTTP) in the app's JSON error format, not HTML.

    gunicorn answers these before reading the path, so it cannot tell /api/ from a page:
    every client gets JSON here, and it is the documented format for API clients.
    """
    code = reason.lower().replace(" ", "_")
    body = json.dumps({"error": {"code": code, "message": f"{reason}: {mesg}"}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin1") + body)


util.write_error = _json_error   # gunicorn's workers call util.write_error for these refusals
