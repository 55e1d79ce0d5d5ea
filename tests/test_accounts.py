"""Accounts on a real database (SQLite and PostgreSQL): register, log in/out, password, deletion, CLI."""
from __future__ import annotations

import io
import re

from app import db as store


def post_photo(client, data: bytes, **form):
    return client.post("/analyze", data={"image": (io.BytesIO(data), "photo.jpg"), **form},
                       content_type="multipart/form-data")


def test_header_links_for_visitors_and_users(db_client, new_account):
    html = db_client.get("/").get_data(as_text=True)
    for name in ("Register", "History", "Dashboard"):
        assert re.search(rf"<a [^>]*>{name}</a>", html), name
    # Every page's header has a login form (Email, Password, CSRF token) posting to /login ...
    header_form = re.search(r'<form [^>]*action="/login"[^>]*data-testid="header-login">(.*?)</form>', html, re.S)
    assert header_form
    assert "Email <input" in header_form.group(1) and "Password <input" in header_form.group(1)
    assert "Log out" not in html
    # ... except the login and register pages, which have their own form (one Email field per page).
    for own in ("/login", "/register"):
        page = db_client.get(own).get_data(as_text=True)
        assert 'data-testid="header-login"' not in page and page.count('name="email"') == 1, own

    client, email, _ = new_account()
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'<form class="inline" method="post" action="/logout">', html)
    assert "Log out</button>" in html and email in html
    assert not re.search(r"<a [^>]*>Log in</a>", html)


def test_forms_are_labelled_email_and_password(db_client):
    for path in ("/login", "/register"):
        html = db_client.get(path).get_data(as_text=True)
        assert re.search(r'<label class="field">Email\s*<input[^>]*name="email"', html), path
        assert re.search(r'<label class="field">Password\s*<input[^>]*name="password"[^>]*type="password"', html) \
            or re.search(r'<label class="field">Password\s*<input[^>]*type="password"[^>]*name="password"', html), path


def test_register_stores_a_modern_hash_not_the_password(db_app, new_account):
    _client, email, password = new_account()
    with db_app.app_context():
        user = store.find_user(email.upper())        # emails are matched case-insensitively
        assert user is not None and user.email == email
        assert password not in user.password_hash
        assert user.password_hash.split(":")[0] in ("scrypt", "pbkdf2")


def test_register_rejects_duplicates_bad_email_and_short_password(db_client, new_account):
    _client, email, _ = new_account()
    r = db_client.post("/register", data={"email": email, "password": "another password"})
    assert r.status_code == 400 and "already exists" in r.get_data(as_text=True)
    r = db_client.post("/register", data={"email": "not-an-email", "password": "long enough pw"})
    assert r.status_code == 400 and "Enter an email address" in r.get_data(as_text=True)
    r = db_client.post("/register", data={"email": "short@example.com", "password": "short"})
    assert r.status_code == 400 and "Use 8 to 256 characters" in r.get_data(as_text=True)


def test_register_and_login_refuse_what_the_database_cannot_hold(db_client, new_account):
    """PostgreSQL answered a NUL character, or an email longer than its column once lower-cased ("İ" is
    two characters then), with a 500; SQLite stored them."""
    for email in ("a\x00b@example.com", "İ" * 240 + "@example.com"):
        assert db_client.post("/register", data={"email": email, "password": "long enough pw"}).status_code == 400
    assert db_client.post("/login", data={"email": "a\x00b@example.com", "password": "long enough pw"}).status_code == 400
    client, _, _ = new_account()
    assert client.post("/account/tokens", data={"tok-name": "a\x00b"}).status_code == 400
    assert client.get("/account").status_code == 200


def test_the_same_email_registered_twice_at_once_is_refused_not_a_500(db_client, new_account, monkeypatch):
    """A double-click on Register: both submits passed the "already exists" check during the password
    hash, and the second insert failed on the unique email (a 500)."""
    _client, email, _ = new_account()
    monkeypatch.setattr(store, "find_user", lambda email: None)        # the check passed before the first insert
    r = db_client.post("/register", data={"email": email, "password": "another password"})
    assert r.status_code == 400 and "already exists" in r.get_data(as_text=True)


def test_a_json_body_sent_to_a_page_form_is_a_clean_error(new_account):
    """Flask-WTF read a JSON body as form data: a list or a number raised in every form of the page,
    the error page's own header form too (a bare 500)."""
    client, _, _ = new_account()
    for path, body, status in (("/history/save", [1, 2], 400), ("/nowhere", 123, 404)):
        r = client.post(path, json=body)
        assert r.status_code == status and "Log out" in r.get_data(as_text=True), path
    assert client.post("/logout", json="x").status_code == 302      # (CSRF is off in these tests)


def test_login_rotates_the_session_and_logout_is_post_only(db_app, new_account):
    _client, email, password = new_account()
    client = db_app.test_client()
    r = client.post("/login", data={"email": email, "password": "wrong password"})
    assert r.status_code == 400 and "Wrong email or password" in r.get_data(as_text=True)
    r = client.post("/login", data={"email": "nobody@example.com", "password": "whatever pw"})
    assert r.status_code == 400 and "Wrong email or password" in r.get_data(as_text=True)

    with client.session_transaction() as session:
        session["planted"] = "by an attacker before login"
    r = client.post("/login?next=/history", data={"email": email, "password": password})
    assert r.status_code == 302 and r.headers["Location"] == "/history"
    with client.session_transaction() as session:
        assert "planted" not in session and "_user_id" in session
    assert client.get("/history").status_code == 200

    assert client.get("/logout").status_code == 405
    r = client.post("/logout")
    assert r.status_code == 302
    r = client.get("/history")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")


def test_login_never_redirects_off_site(db_app, new_account):
    _client, email, password = new_account()
    client = db_app.test_client()
    for target in ("//evil.example/x", "/\\evil.example/x", "https://evil.example/"):
        client = db_app.test_client()
        r = client.post("/login", query_string={"next": target}, data={"email": email, "password": password})
        assert r.status_code == 302 and r.headers["Location"] == "/", target


def test_change_password_ends_other_sessions(db_app, new_account):
    client, email, password = new_account()
    other = db_app.test_client()
    assert other.post("/login", data={"email": email, "password": password}).status_code == 302

    r = client.post("/account/password", data={"pw-current_password": "wrong one!", "pw-new_password": "new password 1",
                                               "pw-confirm": "new password 1"})
    assert r.status_code == 400 and "Wrong password" in r.get_data(as_text=True)
    r = client.post("/account/password", data={"pw-current_password": password, "pw-new_password": "new password 1",
                                               "pw-confirm": "new password 1"})
    assert r.status_code == 302
    assert client.get("/account").status_code == 200                 # this session carries on
    assert other.get("/account").status_code == 302                  # the other one is logged out
    fresh = db_app.test_client()
    assert fresh.post("/login", data={"email": email, "password": password}).status_code == 400
    assert fresh.post("/login", data={"email": email, "password": "new password 1"}).status_code == 302


def test_delete_account_removes_every_row_it_owns(db_app, new_account, astronaut_jpeg):
    client, email, password = new_account()
    html = post_photo(client, astronaut_jpeg).get_data(as_text=True)
    payload = re.search(r'name="payload" type="hidden" value="([^"]+)"', html).group(1)
    assert client.post("/history/save", data={"payload": payload, "thumbnail": "y"}).status_code == 302
    assert client.post("/account/tokens", data={"tok-name": "laptop"}).status_code == 201
    with db_app.app_context():
        user_id = store.find_user(email).id
        assert store.owned_row_counts(user_id) == {"users": 1, "analyses": 1, "api_tokens": 1}

    assert client.post("/account/delete", data={"del-password": "wrong password"}).status_code == 400
    r = client.post("/account/delete", data={"del-password": password})
    assert r.status_code == 302
    with db_app.app_context():
        assert store.owned_row_counts(user_id) == {"users": 0, "analyses": 0, "api_tokens": 0}
        # Also at the SQL level, not just through the ORM's cascade.
        import sqlalchemy as sa
        for table in ("analyses", "api_tokens"):
            assert store.db.session.execute(sa.text(f"SELECT count(*) FROM {table} WHERE user_id = :u"),
                                            {"u": user_id}).scalar() == 0
    assert client.get("/history").status_code == 302
    assert db_app.test_client().post("/login", data={"email": email, "password": password}).status_code == 400


def test_database_foreign_keys_cascade(db_app, new_account):
    """Deleting the user row with plain SQL (no ORM) still removes its analyses: ON DELETE CASCADE is live."""
    import sqlalchemy as sa
    _client, email, _ = new_account()
    with db_app.app_context():
        user = store.find_user(email)
        store.save_analysis(user, {"faces": [], "models": {}}, "api")
        user_id = user.id
        store.db.session.execute(sa.text("DELETE FROM users WHERE id = :u"), {"u": user_id})
        store.db.session.commit()
        assert store.owned_row_counts(user_id)["analyses"] == 0


def test_cli_creates_users_and_resets_passwords(db_app):
    runner = db_app.test_cli_runner()
    r = runner.invoke(args=["users", "create", "cli-user@example.com"], input="first password\nfirst password\n")
    assert r.exit_code == 0 and "Created cli-user@example.com" in r.output
    assert "first password" not in r.output
    r = runner.invoke(args=["users", "create", "cli-user@example.com"], input="x\nx\n")
    assert r.exit_code != 0 and "already has an account" in r.output
    r = runner.invoke(args=["users", "reset-password", "cli-user@example.com"], input="second password\nsecond password\n")
    assert r.exit_code == 0 and "Password reset" in r.output
    r = runner.invoke(args=["users", "reset-password", "nobody@example.com"], input="second password\nsecond password\n")
    assert r.exit_code != 0 and "No account" in r.output
    client = db_app.test_client()
    assert client.post("/login", data={"email": "cli-user@example.com", "password": "first password"}).status_code == 400
    assert client.post("/login", data={"email": "cli-user@example.com", "password": "second password"}).status_code == 302
    with db_app.app_context():
        store.delete_user(store.find_user("cli-user@example.com"))      # the session-wide database is shared


def test_migrations_build_exactly_the_models_schema(db_app):
    """The database the migrations built (at start-up) matches app/db.py: no change left unmigrated."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    with db_app.app_context(), store.db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), store.db.metadata) == []

