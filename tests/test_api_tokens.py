"""Personal access tokens on SQLite and PostgreSQL: created on /account, stored hashed, used as
`Authorization: Bearer` to save API answers, refused after revocation; documented in OpenAPI."""
from __future__ import annotations

import io
import re

import sqlalchemy as sa

from app import db as store


def create_token(client, name="script") -> str:
    r = client.post("/account/tokens", data={"tok-name": name})
    assert r.status_code == 201
    return re.search(r'data-testid="new-token">.*?<code>(vsg_[\w-]+)</code>', r.get_data(as_text=True), re.S).group(1)


def analyze(client, jpeg, token=None, **query):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/v1/analyze", query_string=query, headers=headers,
                       data={"image": (io.BytesIO(jpeg), "a.jpg")}, content_type="multipart/form-data")


def test_token_is_shown_once_and_stored_hashed(db_app, new_account):
    client, email, _ = new_account()
    token = create_token(client)
    page = client.get("/account").get_data(as_text=True)
    assert token not in page and token[:10] in page             # only the hint is shown again
    with db_app.app_context():
        user = store.find_user(email)
        rows = store.user_tokens(user)
        assert len(rows) == 1 and rows[0].token_hash == store.hash_token(token) and rows[0].token_hash != token
        dumped = " ".join(str(v) for row in store.db.session.execute(sa.text("SELECT * FROM api_tokens")) for v in row)
        assert token not in dumped


def test_token_saves_api_answers_to_history(db_app, new_account, astronaut_jpeg):
    client, email, _ = new_account()
    token = create_token(client)
    r = analyze(db_app.test_client(), astronaut_jpeg, token, save="true")
    assert r.status_code == 200
    answer = r.get_json()
    saved = answer["saved"]
    history = client.get("/history/export.json").get_json()["items"]
    assert [item["id"] for item in history] == [saved["id"]]
    assert history[0]["source"] == "api" and history[0]["faces"] == answer["faces"]
    assert client.get(saved["url"]).status_code == 200
    # JSON bodies can ask too; without save nothing is kept.
    import base64
    r = db_app.test_client().post("/api/v1/analyze", headers={"Authorization": f"Bearer {token}"},
                                  json={"image": base64.b64encode(astronaut_jpeg).decode(), "save": True})
    assert r.status_code == 200 and "saved" in r.get_json()
    r = analyze(db_app.test_client(), astronaut_jpeg, token)
    assert r.status_code == 200 and "saved" not in r.get_json()
    assert len(client.get("/history/export.json").get_json()["items"]) == 2
    with db_app.app_context():
        assert store.user_tokens(store.find_user(email))[0].last_used_at is not None


def test_save_needs_a_valid_token(db_client, astronaut_jpeg):
    r = analyze(db_client, astronaut_jpeg, save="true")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_required"
    r = analyze(db_client, astronaut_jpeg, "vsg_not-a-real-token", save="true")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_token"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = analyze(db_client, astronaut_jpeg, "vsg_not-a-real-token")
    assert r.status_code == 401                     # a wrong token is an error even without save
    assert analyze(db_client, astronaut_jpeg).status_code == 200      # anonymous analysis still works


def test_revoked_token_is_refused(db_app, new_account, astronaut_jpeg):
    client, email, _ = new_account()
    token = create_token(client)
    assert analyze(db_app.test_client(), astronaut_jpeg, token, save="true").status_code == 200
    with db_app.app_context():
        token_id = store.user_tokens(store.find_user(email))[0].id
    other, _, _ = new_account()
    assert other.post(f"/account/tokens/{token_id}/revoke").status_code == 404      # not theirs
    assert analyze(db_app.test_client(), astronaut_jpeg, token, save="true").status_code == 200
    assert client.post(f"/account/tokens/{token_id}/revoke").status_code == 302
    r = analyze(db_app.test_client(), astronaut_jpeg, token, save="true")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_token"
    assert len(client.get("/history/export.json").get_json()["items"]) == 2      # the two before revoking


def test_openapi_documents_the_bearer_scheme(db_client):
    doc = db_client.get("/api/v1/openapi.json").get_json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"]}
    analyze_op = doc["paths"]["/api/v1/analyze"]["post"]
    assert {"bearerAuth": []} in analyze_op["security"] and "401" in analyze_op["responses"]
    assert any(p["name"] == "save" for p in analyze_op["parameters"])


def test_passwords_and_tokens_stay_out_of_the_logs(db_app, new_account, astronaut_jpeg, caplog):
    import logging
    caplog.set_level(logging.DEBUG)
    client, email, password = new_account("a password to not log")
    token = create_token(client)
    db_app.test_client().post("/login", data={"email": email, "password": "wrong password to not log"})
    analyze(db_app.test_client(), astronaut_jpeg, token, save="true")
    analyze(db_app.test_client(), astronaut_jpeg, token + "x")
    logged = caplog.text
    for secret in ("a password to not log", "wrong password to not log", token, token[10:]):
        assert secret not in logged
