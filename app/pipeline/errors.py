"""Typed errors for bad input: each carries a stable code and the HTTP status it maps to.

Pages, API and CLI all catch `InputError` and show `code` / `message`; nothing
else in the pipeline should need to know about HTTP.
"""
from __future__ import annotations


class InputError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class BadRequest(InputError):
    """Malformed request: empty upload, wrong field, bad base64, unknown detector (400)."""


class TooLarge(InputError):
    """Too many bytes or too many pixels (413)."""
    status, code = 413, "too_large"


class UnsupportedType(InputError):
    """Not an image, or an image format we do not accept (415)."""
    status, code = 415, "unsupported_type"


class Undecodable(InputError):
    """A recognised image format whose data is truncated or corrupt (422)."""
    status, code = 422, "undecodable"


class AnalysisTimeout(RuntimeError):
    """The analysis ran past its deadline (checked between steps; the server answers 503)."""


class ModelUnavailable(RuntimeError):
    """A model file or card is missing or unreadable: the app must not start without it."""
