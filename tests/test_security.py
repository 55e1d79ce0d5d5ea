"""CSRF, rate limits (memory and Redis), cookies, headers, secret key, VISAGE_REQUIRE_LOGIN."""
from __future__ import annotations

import io
import re
import secrets
import socket
import stat

import pytest


def make_app(models_dir, tmp_path, **config):
    from app import create_app
    return create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir),
                       "VISAGE_INSTANCE_DIR": str(tmp_path / "instance"), **config})


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


@pytest.fixture(scope="module")
def csrf_app(models_dir, tmp_path_factory):
    """CSRF protection on, as served (memory rate limits relaxed so the tests can log in repeatedly)."""
    return make_app(models_dir, tmp_path_factory.mktemp("csrf"), VISAGE_LOGIN_RATE_LIMIT="1000 per minute")


def test_upload_form_needs_its_csrf_token(csrf_app, astronaut_jpeg):
    client = csrf_app.test_client()
    html = client.get("/").get_data(as_text=True)
    token = csrf_token(html)
    r = client.post("/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")}, content_type="multipart/form-data")
    assert r.status_code == 400 and "CSRF token" in r.get_data(as_text=True)
    r = client.post("/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg"), "csrf_token": "forged"},
                    content_type="multipart/form-data")
    assert r.status_code == 400
    r = client.post("/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg"), "csrf_token": token},
                    content_type="multipart/form-data")
    assert r.status_code == 200 and "Result" in r.get_data(as_text=True)


def test_capture_and_live_pages_carry_the_token(csrf_app):
    client = csrf_app.test_client()
    for path in ("/capture", "/live"):
        assert csrf_token(client.get(path).get_data(as_text=True)), path


def test_account_forms_need_csrf_tokens(csrf_app):
    client = csrf_app.test_client()
    r = client.post("/register", data={"email": "csrf@example.com", "password": "long enough pw"})
    assert r.status_code == 400
    token = csrf_token(client.get("/register").get_data(as_text=True))
    r = client.post("/register", data={"email": "csrf@example.com", "password": "long enough pw", "csrf_token": token})
    assert r.status_code == 302
    assert client.post("/logout").status_code == 400                      # no token: still logged in
    assert client.get("/account").status_code == 200
    token = csrf_token(client.get("/account").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/account").status_code == 302


def test_api_needs_no_csrf_token(csrf_app, astronaut_jpeg):
    r = csrf_app.test_client().post("/api/v1/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")},
                                    content_type="multipart/form-data")
    assert r.status_code == 200 and "faces" in r.get_json()


def hammer_login(client, attempts: int) -> list[int]:
    return [client.post("/login", data={"email": "x@example.com", "password": "wrong password"}).status_code
            for _ in range(attempts)]


def test_login_and_register_are_rate_limited(models_dir, tmp_path):
    app = make_app(models_dir, tmp_path, WTF_CSRF_ENABLED=False, VISAGE_LOGIN_RATE_LIMIT="3 per minute")
    client = app.test_client()
    assert hammer_login(client, 3) == [400, 400, 400]
    r = client.post("/login", data={"email": "x@example.com", "password": "wrong password"})
    assert r.status_code == 429
    assert "Too many attempts" in r.get_data(as_text=True) and "Retry-After" in r.headers
    # Registration shares the budget; reading the pages does not spend it.
    assert client.post("/register", data={"email": "y@example.com", "password": "long enough pw"}).status_code == 429
    assert client.get("/login").status_code == 200


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2):
            return True
    except OSError:
        return False


def test_rate_limit_counts_in_redis_shared_by_app_servers(models_dir, tmp_path):
    if not redis_reachable():
        if __import__("os").environ.get("CI") == "true":
            pytest.fail("no Redis at 127.0.0.1:6379")
        pytest.skip("no Redis server at 127.0.0.1:6379")
    prefix = f"visage-test-{secrets.token_hex(4)}"
    shared = dict(WTF_CSRF_ENABLED=False, VISAGE_LOGIN_RATE_LIMIT="4 per minute",
                  VISAGE_RATELIMIT_STORAGE_URL="redis://127.0.0.1:6379/0", RATELIMIT_KEY_PREFIX=prefix)
    server_a = make_app(models_dir, tmp_path / "a", **shared)
    server_b = make_app(models_dir, tmp_path / "b", **shared)
    assert hammer_login(server_a.test_client(), 2) == [400, 400]
    assert hammer_login(server_b.test_client(), 3) == [400, 400, 429]     # b sees a's two attempts
    import redis
    connection = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = connection.keys(f"*{prefix}*")
    assert keys, "the limiter kept no counters in Redis"
    connection.delete(*keys)


def test_cookies_and_security_headers(csrf_app):
    client = csrf_app.test_client()
    r = client.get("/")
    csp = r.headers["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]+)", csp).group(1)
    assert script_src.strip() == "'self'"
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
    cookie = r.headers["Set-Cookie"]                   # the CSRF token's session
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_https_setting_marks_cookies_secure(models_dir, tmp_path):
    app = make_app(models_dir, tmp_path, VISAGE_HTTPS=1)
    r = app.test_client().get("/")
    assert "Secure" in r.headers["Set-Cookie"] and "Strict-Transport-Security" in r.headers


def test_pages_have_no_inline_scripts(csrf_app):
    client = csrf_app.test_client()
    for path in ("/", "/capture", "/live", "/login", "/register"):
        html = client.get(path).get_data(as_text=True)
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
        assert not re.search(r"\son[a-z]+=", html), path     # no inline event handlers either


def test_secret_key_is_generated_once_per_instance(models_dir, tmp_path):
    first = make_app(models_dir, tmp_path)
    second = make_app(models_dir, tmp_path)
    key_file = tmp_path / "instance" / "secret_key"
    assert first.secret_key == second.secret_key == key_file.read_text().strip()
    assert len(first.secret_key) >= 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    other = make_app(models_dir, tmp_path / "elsewhere")
    assert other.secret_key != first.secret_key
    chosen = make_app(models_dir, tmp_path, VISAGE_SECRET_KEY="from-the-environment")
    assert chosen.secret_key == "from-the-environment"


def test_require_login_closes_pages_and_api(models_dir, tmp_path, astronaut_jpeg):
    app = make_app(models_dir, tmp_path, WTF_CSRF_ENABLED=False, VISAGE_REQUIRE_LOGIN=1)
    client = app.test_client()
    for path in ("/", "/capture", "/live"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login"), path
    assert client.get("/login").status_code == 200 and client.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/ready").status_code == 200      # a load balancer's probe has no account
    r = client.post("/api/v1/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")},
                    content_type="multipart/form-data")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "login_required"
    assert client.post("/register", data={"email": "req@example.com", "password": "long enough pw"}).status_code == 302
    assert client.get("/").status_code == 200
    r = client.post("/api/v1/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")},
                    content_type="multipart/form-data")
    assert r.status_code == 200                    # the live page's requests, with the session


def test_header_login_form_carries_its_token_and_logs_in(csrf_app):
    """Every page's header has a login form; with that page's CSRF token it starts a session."""
    from app import db
    with csrf_app.app_context():
        db.create_user("header@example.com", "long enough pw")
    client = csrf_app.test_client()
    html = client.get("/video").get_data(as_text=True)
    form = re.search(r'<form [^>]*action="/login"[^>]*data-testid="header-login">(.*?)</form>', html, re.S).group(1)
    r = client.post("/login", data={"email": "header@example.com", "password": "long enough pw",
                                    "csrf_token": csrf_token(form)})
    assert r.status_code == 302
    assert "Log out</button>" in client.get("/").get_data(as_text=True)
