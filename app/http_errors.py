"""App-wide HTTP error handling: JSON under /api/, a friendly page elsewhere, never a bare 500 page.

404 and 405 happen before any blueprint is chosen, so they are handled here at app level.
"""
from __future__ import annotations

from flask import Flask, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from app import outages
from app.admission import Busy
from app.api import error_response

API_PREFIX = "/api/"


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        code = (e.name or "error").lower().replace(" ", "_")
        if request.path.startswith(API_PREFIX):
            response = error_response(e.code or 500, code, e.description or e.name)
            if e.code == 405 and e.valid_methods:
                response[0].headers["Allow"] = ", ".join(e.valid_methods)
            return response
        return render_template("error.html", status=e.code, title=e.name, message=e.description), e.code

    @app.errorhandler(Busy)
    def busy(e: Busy):
        if request.path.startswith(API_PREFIX):
            response, status = error_response(503, e.code, e.message)
        else:
            response = app.make_response(render_template(
                "error.html", status=503, title="Busy right now",
                message=f"{e.message} Please try again in about {e.retry_after} s."))
            status = 503
        response.status_code = status
        response.headers["Retry-After"] = str(e.retry_after)
        return response

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        outage = outages.answer(e)         # PostgreSQL or Redis down, disk full: 503/507, not a 500
        if outage is not None:
            return outage
        app.logger.exception("unexpected error on %s %s", request.method, request.path)
        outages.rollback()                 # a failed commit would make the error page fail too
        return http_error(InternalServerError("Something went wrong on our side; the error was logged."))
