"""Security set-up: secret key, session cookie, CSRF, rate limits, response headers, login requirement.

- Secret key: VISAGE_SECRET_KEY, else generated once into the instance folder (never committed).
- CSRF (Flask-WTF) on every form; the JSON API under /api/ is exempt because it authenticates
  with Bearer tokens only, never with the session cookie.
- Login and registration are rate-limited per client address (Flask-Limiter; memory, or Redis by URL).
- Content-Security-Policy allows scripts from this origin only (no inline scripts; JSON data
  blocks such as live.html's settings are data, not scripts). Inline style attributes stay
  allowed: the result page positions face boxes with them.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask, current_app, g, redirect, render_template, request, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user
from flask_wtf.csrf import CSRFError, CSRFProtect

csrf = CSRFProtect()

CSP = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:", "media-src 'self' blob:", "connect-src 'self'",
    "object-src 'none'", "base-uri 'self'", "form-action 'self'", "frame-ancestors 'none'"])

# Pages anyone may open when VISAGE_REQUIRE_LOGIN=1 (the rest need an account).
# Open without an account even with VISAGE_REQUIRE_LOGIN: login itself, the docs, and the probes a load
# balancer sends (health and readiness say nothing about anyone's data).
PUBLIC_ENDPOINTS = {"auth.login", "auth.register", "static", "api.health", "api.ready", "api.openapi",
                    "api_docs.page", "model_cards.page"}


def instance_secret_key(instance_path: str) -> str:
    """Read the instance's key, creating it on first run; link() makes concurrent first starts agree."""
    folder = Path(instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "secret_key"
    if not path.exists():
        tmp = folder / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)            # fails if another process won the race: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def rate_limit_storage(config) -> str:
    return config["VISAGE_RATELIMIT_STORAGE_URL"] or config["VISAGE_REDIS_URL"] or "memory://"


def init_app(app: Flask) -> None:
    cfg = app.config
    if not cfg.get("SECRET_KEY"):
        cfg["SECRET_KEY"] = cfg["VISAGE_SECRET_KEY"] or instance_secret_key(app.instance_path)
    cfg.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
               REMEMBER_COOKIE_HTTPONLY=True, REMEMBER_COOKIE_SAMESITE="Lax")
    if cfg["VISAGE_HTTPS"]:
        cfg.update(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True, PREFERRED_URL_SCHEME="https")
    cfg.setdefault("WTF_CSRF_TIME_LIMIT", None)       # valid for the session, not one hour (long live sessions)

    csrf.init_app(app)
    storage = rate_limit_storage(cfg)
    # Redis down: count in this process's memory until it is back (in_memory_fallback), never a 500.
    limiter = Limiter(get_remote_address, app=app, storage_uri=storage,
                      key_prefix=cfg.get("RATELIMIT_KEY_PREFIX", "visage"), headers_enabled=True,
                      in_memory_fallback_enabled=not storage.startswith("memory:"), swallow_errors=True,
                      storage_options={"socket_connect_timeout": 2, "socket_timeout": 2}
                      if storage.startswith(("redis:", "rediss:")) else {})
    app.extensions["visage.limiter"] = limiter

    @app.errorhandler(429)
    def too_many(e):
        message = ("Too many attempts from your address. Wait a minute and try again."
                   f" (Limit: {e.description}.)")
        if request.path.startswith("/api/"):
            from app.api import error_response
            return error_response(429, "too_many_requests", message)
        return render_template("error.html", status=429, title="Too many attempts", message=message), 429

    @app.errorhandler(CSRFError)
    def csrf_failed(e):
        message = ("The form had expired or did not come from this site (missing or wrong CSRF token). "
                   "Reload the page and try again.")
        return render_template("error.html", status=400, title="Form expired", message=message), 400

    @app.before_request
    def require_login():
        if not cfg["VISAGE_REQUIRE_LOGIN"] or request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
            return None
        if current_user.is_authenticated:
            return None
        if "visage_database_down" in g:          # a login that cannot be checked now: 503, not the login page
            raise g.visage_database_down
        if request.path.startswith("/api/"):
            from app.api import bearer_user       # the API's own check (tokens)
            if bearer_user() is not None:
                return None
            from app.api import error_response
            return error_response(401, "login_required", "Send a personal access token: Authorization: Bearer <token>.")
        return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))

    @app.after_request
    def security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(self), microphone=(), geolocation=()")
        if cfg["VISAGE_HTTPS"] or request.is_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.endpoint != "static" and current_user.is_authenticated:   # personal pages: not cached
            headers.setdefault("Cache-Control", "no-store")
        return response


def limit_login_routes(app: Flask, endpoints: tuple[str, ...]) -> None:
    """Wrap the POST handlers of these views in one shared budget per address (VISAGE_LOGIN_RATE_LIMIT)."""
    limiter = app.extensions["visage.limiter"]
    rate = lambda: current_app.config["VISAGE_LOGIN_RATE_LIMIT"]  # noqa: E731
    for endpoint in endpoints:
        app.view_functions[endpoint] = limiter.shared_limit(rate, scope="login", methods=["POST"])(app.view_functions[endpoint])
