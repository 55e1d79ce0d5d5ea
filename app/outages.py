"""What the app answers while a service it depends on is down: PostgreSQL, Redis, or the disk of
VISAGE_VIDEO_DIR. A clear 503 (507 for a full disk) with Retry-After, JSON under /api/, a page elsewhere
that offers to send the same form again; never a 500. Also the dependency checks behind /api/v1/ready.

Analyses never need the database or Redis: they keep working, for logged-in users too (who appear
logged out until the database is back; app/auth.py).
"""
from __future__ import annotations

import errno
import functools

import sqlalchemy as sa
from flask import Flask, current_app, render_template, request

RETRY_AFTER = 30                              # seconds; what a restart of PostgreSQL or Redis usually takes
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
SECRET_FIELDS = ("password", "current_password", "new_password", "confirm")   # never echoed into a page


UPGRADE_COMMAND = "flask --app wsgi db upgrade"     # what an operator runs to bring the schema up to date
MISSING_SCHEMA_STATES = ("42P01", "42703")  # PostgreSQL: undefined table, undefined column
MISSING_SCHEMA_WORDS = ("no such table", "no such column")   # SQLite says it in words


def schema_missing(e: BaseException) -> bool:
    """The database answers but lacks this version's tables or columns: VISAGE_DB_AUTO_UPGRADE=0 and no
    `flask db upgrade` run. An operator's step, not an outage that passes by itself."""
    if not isinstance(e, sa.exc.DBAPIError):
        return False
    state = getattr(e.orig, "sqlstate", None) or getattr(e.orig, "pgcode", None)
    return state in MISSING_SCHEMA_STATES or any(w in str(e.orig).lower() for w in MISSING_SCHEMA_WORDS)


def database_down(e: BaseException) -> bool:
    """The database could not be reached or dropped the connection (not a bad query)."""
    return isinstance(e, (sa.exc.OperationalError, sa.exc.InterfaceError)) or \
        (isinstance(e, sa.exc.DBAPIError) and e.connection_invalidated)


def database_unusable(e: BaseException) -> bool:
    """Down, or not migrated: either way no account can be read now, while analyses need none."""
    return database_down(e) or schema_missing(e)


def redis_down(e: BaseException) -> bool:
    try:
        import redis
    except ImportError:
        return False
    return isinstance(e, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))


def disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in NO_SPACE


def answer(e: BaseException):
    """The response for an outage, or None when `e` is not one."""
    if schema_missing(e):
        rollback()
        return _respond(503, "database_not_migrated", "Database not set up",
                        "The database's tables are behind this version of Visage, so nothing can be saved or "
                        f"shown from your history until an administrator runs '{UPGRADE_COMMAND}'; "
                        "analyses still work.", retry=False)
    if database_down(e):
        rollback()
        return _respond(503, "database_unavailable", "Database unavailable",
                        "The database is unavailable right now, so nothing can be saved or shown from your "
                        "history; analyses still work.")
    if redis_down(e):
        return _respond(503, "queue_unavailable", "Job queue unavailable",
                        "The job queue (Redis) is unavailable right now, so video and batch jobs cannot be "
                        "started or read; photo analyses still work.")
    if disk_full(e):
        return _respond(507, "insufficient_storage", "No space left",
                        "The server has no space left for uploads right now; nothing was queued.")
    return None


def rollback() -> None:
    """End the failed transaction, so that the error page can still read the logged-in user."""
    from app.db import db
    try:
        db.session.rollback()
    except Exception:   # noqa: BLE001 - the connection is gone; the session is discarded at teardown anyway
        pass


def _respond(status: int, code: str, title: str, message: str, retry: bool = True):
    """retry=False: waiting will not help (no Retry-After, no "try again")."""
    current_app.logger.warning("%s on %s %s", code, request.method, request.path)
    api = request.path.startswith("/api/") or request.is_json
    if retry:
        message += f" Try again in about {RETRY_AFTER} s." if api else f" Please try again in about {RETRY_AFTER} s."
    if api:
        from app.api import error_response
        response, _ = error_response(status, code, message)
    else:
        # The form the user sent comes back as a "Try again" button (passwords excepted), so nothing typed is lost.
        fields = [(k, v) for k, v in request.form.items(multi=True) if k not in SECRET_FIELDS] \
            if retry and request.method == "POST" and request.mimetype != "multipart/form-data" else []
        response = current_app.make_response(render_template(
            "error.html", status=status, title=title, message=message,
            retry_fields=fields, retry_action=request.full_path.rstrip("?") if fields else None))
    response.status_code = status
    if retry:
        response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


# --- readiness -----------------------------------------------------------------------------------

def check_database() -> str:
    """"ok", or why not: unreachable, or its tables behind the code's (VISAGE_DB_AUTO_UPGRADE=0 and no
    upgrade run: every save would fail while the database itself answers)."""
    from app.db import db
    try:
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            try:
                current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except sa.exc.DBAPIError:
                current = None
    except Exception as e:   # noqa: BLE001 - any failure means "down"; say which
        return f"unavailable ({type(e).__name__})"
    head = schema_head()
    if current != head:
        return f"not migrated (its schema is {current or 'empty'}, the code needs {head}: run {UPGRADE_COMMAND})"
    return "ok"


@functools.lru_cache(maxsize=1)
def schema_head() -> str:
    """The newest migration in migrations/ (what the code's tables need)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from app.db import MIGRATIONS_DIR
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def check_redis(app: Flask) -> str | None:
    """None when no Redis is configured (embedded jobs, memory rate limits)."""
    jobs = app.extensions.get("visage.video_jobs")
    store = getattr(jobs, "store", None)
    if store is None or not hasattr(store, "redis"):
        return None
    try:
        store.redis.ping()
        return "ok"
    except Exception as e:   # noqa: BLE001
        return f"unavailable ({type(e).__name__})"


def dependencies(app: Flask) -> dict:
    """{"database": "ok" | "unavailable (…)", "redis": …} for /api/v1/ready (redis only when configured)."""
    status = {"database": check_database()}
    redis_status = check_redis(app)
    if redis_status is not None:
        status["redis"] = redis_status
    return status
