"""Settings: defaults here, overridden by VISAGE_* environment variables, then by create_app(config)."""
from __future__ import annotations

import math
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULTS = {
    "VISAGE_MODELS_DIR": str(REPO_ROOT / "models"),
    "VISAGE_MAX_BYTES": 10 * 1024 * 1024,      # size of one uploaded image file
    "VISAGE_MAX_PIXELS": 40_000_000,           # width * height; larger images are rejected before decoding
    "VISAGE_DEFAULT_DETECTOR": "blazeface",
    # Overload (app/admission.py, docs/api.md): analyses run at once per process; seconds a request may
    # wait for one to start before a 503; seconds one analysis may take (checked between its steps).
    "VISAGE_ANALYSIS_SLOTS": 2,
    "VISAGE_QUEUE_TIMEOUT": 20.0,
    "VISAGE_ANALYSIS_TIMEOUT": 30.0,
    # Live mode (/live): longer side of the frames the browser sends, and the smallest face it asks
    # the server to look for (share of the frame height). Measured choices: app/webcam.py, docs/speed.md.
    "VISAGE_LIVE_MAX_SIDE": 400,
    "VISAGE_LIVE_MIN_FACE": 0.12,
    "VISAGE_LIVE_IN_FLIGHT": 2,                # live frames out at once per browser (1: wait for each answer)
    # Accounts and saved history (app/db.py, app/auth.py, app/security.py; docs/privacy.md, docs/deploy.md).
    "VISAGE_INSTANCE_DIR": "",        # empty: <repo>/instance (database, secret key; never committed)
    "VISAGE_DATABASE_URL": "",        # empty: SQLite file visage.sqlite3 in the instance folder
    "VISAGE_DB_AUTO_UPGRADE": 1,       # apply pending migrations at start-up (under a lock)
    "VISAGE_SECRET_KEY": "",          # empty: generated once into the instance folder
    "VISAGE_REQUIRE_LOGIN": 0,         # 1: upload, capture, live and the API need an account
    "VISAGE_HTTPS": 0,                 # 1: served over HTTPS (Secure cookies, HSTS)
    "VISAGE_REDIS_URL": "",            # set: video jobs go to RQ workers, rate limits are shared there
    "VISAGE_RATELIMIT_STORAGE_URL": "",  # empty: VISAGE_REDIS_URL, else in-process memory
    "VISAGE_LOGIN_RATE_LIMIT": "10 per minute;50 per hour",   # per client address, login + register
    # Video jobs (docs/video.md): limits checked before any work starts, and where jobs run.
    "VISAGE_MAX_VIDEO_BYTES": 200_000_000,
    "VISAGE_MAX_VIDEO_SECONDS": 600,
    "VISAGE_MAX_VIDEO_PIXELS": 7680 * 4320,    # 8K; frames are downscaled for detection
    "VISAGE_REDIS_PREFIX": "visage:",
    "VISAGE_VIDEO_QUEUE": "visage-video",
    "VISAGE_VIDEO_DIR": "",                    # uploads and results; empty → <tmp>/visage-video (share it between machines)
    "VISAGE_VIDEO_WORKERS": 1,                 # embedded worker threads per web process
    "VISAGE_VIDEO_JOB_TIMEOUT": 3600,
    # Jobs whose process died (app/jobs/supervise.py, docs/deploy.md#faults): no heartbeat this long (s) → lost;
    # a lost job runs again on another worker until it has had this many attempts, then it is failed.
    "VISAGE_JOB_STALE_SECONDS": 30,
    "VISAGE_JOB_ATTEMPTS": 2,
    "VISAGE_LOG_FORMAT": "text",               # text, or json: one JSON object per log line
    # Batches of photos (docs/batch.md): limits checked before any work starts; chunks of photos go to
    # the embedded worker or to RQ workers on VISAGE_BATCH_QUEUE; uploads live under VISAGE_VIDEO_DIR.
    "VISAGE_MAX_BATCH_FILES": 2000,            # photos in one batch (after a ZIP is unpacked)
    "VISAGE_MAX_BATCH_BYTES": 500_000_000,     # bytes in one batch request (a ZIP: also its unpacked size)
    "VISAGE_BATCH_CHUNK": 20,                  # photos per chunk (the unit a worker takes, retries and reports)
    "VISAGE_BATCH_QUEUE": "visage-batch",
    "VISAGE_BATCH_STALE_SECONDS": 300,         # last resort: an unsupervised chunk silent this long → error rows
}

# Request limits besides the image's own (docs/api.md lists them all).
MAX_FORM_PARTS = 32                 # multipart parts (fields + files) in one request
MAX_FORM_MEMORY_SIZE = 256 * 1024   # bytes in one non-file form field (Werkzeug also counts its 64 KB read buffer)
MAX_OPTION_CHARS = 1024             # characters in one analysis option's value (query, form or JSON)


# Numbers an environment setting may take (inclusive); any other numeric setting must be above 0. A
# value outside stops the start with a message naming the setting, instead of failing every request
# (a limit of 0 bytes, a timeout of inf that overflows a wait, a heartbeat that is always stale).
RANGES = {
    "VISAGE_DB_AUTO_UPGRADE": (0, 1), "VISAGE_REQUIRE_LOGIN": (0, 1), "VISAGE_HTTPS": (0, 1),
    "VISAGE_LIVE_MIN_FACE": (0.0, 0.9),
    "VISAGE_QUEUE_TIMEOUT": (0.001, 86_400.0), "VISAGE_ANALYSIS_TIMEOUT": (0.001, 86_400.0),
}


def _parse(key: str, default, raw: str):
    """Environment values are strings; give them the type of their default, within their range. An
    empty value of a setting whose default is a non-empty word means that default."""
    if isinstance(default, str):
        value = raw.strip() or default
        if key == "VISAGE_DEFAULT_DETECTOR":
            value = value.lower()
        if key == "VISAGE_LOGIN_RATE_LIMIT":
            check_rate_limit(key, value)
        return value
    kind, name = (int, "an integer") if isinstance(default, int) else (float, "a number")
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{key} must be {name}, got {raw!r}") from None
    low, high = RANGES.get(key, (None, None))
    if not math.isfinite(value) or (low is None and value <= 0) or (low is not None and not low <= value <= high):
        allowed = "above 0" if low is None else f"from {low:g} to {high:g}"
        raise ValueError(f"{key} must be {allowed}, got {raw!r}")
    return value


def check_rate_limit(key: str, value: str) -> None:
    """A rate the limiter cannot read would switch the limit off without a word (it logs per request)."""
    from limits import parse_many
    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"{key} must be rates like '10 per minute;50 per hour', got {value!r}") from None


def from_environment(environ=os.environ) -> dict:
    return {key: _parse(key, default, environ[key]) if key in environ else default
            for key, default in DEFAULTS.items()}


def request_size_limit(max_bytes: int) -> int:
    """Whole-request cap for Flask: an image sent as base64 JSON is 4/3 its size, plus form overhead."""
    return max_bytes * 4 // 3 + 64 * 1024
