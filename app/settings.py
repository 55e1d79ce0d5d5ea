"""Settings: defaults here, overridden by VISAGE_* environment variables, then by create_app(config)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULTS = {
    "VISAGE_MODELS_DIR": str(REPO_ROOT / "models"),
    "VISAGE_MAX_BYTES": 10 * 1024 * 1024,      # size of one uploaded image file
    "VISAGE_MAX_PIXELS": 40_000_000,           # width * height; larger images are rejected before decoding
    "VISAGE_DEFAULT_DETECTOR": "haar",
    # Overload (app/admission.py, docs/api.md): analyses run at once per process; seconds a request may
    # wait for one to start before a 503; seconds one analysis may take (checked between its steps).
    "VISAGE_ANALYSIS_SLOTS": 2,
    "VISAGE_QUEUE_TIMEOUT": 20.0,
    "VISAGE_ANALYSIS_TIMEOUT": 30.0,
    # Live mode (/live): longer side of the frames the browser sends, and the smallest face it asks
    # the server to look for (share of the frame height). Measured choices: app/webcam.py, README.
    "VISAGE_LIVE_MAX_SIDE": 400,
    "VISAGE_LIVE_MIN_FACE": 0.12,
}

# Request limits besides the image's own (docs/api.md lists them all).
MAX_FORM_PARTS = 32                 # multipart parts (fields + files) in one request
MAX_FORM_MEMORY_SIZE = 256 * 1024   # bytes in one non-file form field (Werkzeug also counts its 64 KB read buffer)
MAX_OPTION_CHARS = 1024             # characters in one analysis option's value (query, form or JSON)


def _parse(default, raw: str):
    """Environment values are strings; give them the type of their default."""
    for kind, name in ((int, "an integer"), (float, "a number")):
        if isinstance(default, kind):
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"environment setting must be {name}, got {raw!r}") from None
    return raw


def from_environment(environ=os.environ) -> dict:
    return {key: _parse(default, environ[key]) if key in environ else default
            for key, default in DEFAULTS.items()}


def request_size_limit(max_bytes: int) -> int:
    """Whole-request cap for Flask: an image sent as base64 JSON is 4/3 its size, plus form overhead."""
    return max_bytes * 4 // 3 + 64 * 1024
