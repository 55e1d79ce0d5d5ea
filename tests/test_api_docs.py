"""/api/docs: Swagger UI served from the app's own static files, started by an external script."""
from __future__ import annotations

import re

VENDORED = ("vendor/swagger-ui/swagger-ui-bundle.js", "vendor/swagger-ui/swagger-ui.css")


def test_api_docs_page_loads_vendored_swagger_ui_and_points_at_the_openapi_document(client):
    r = client.get("/api/docs")
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    for path in VENDORED + ("js/api_docs.js",):
        assert f'/static/{path}"' in html
    assert 'data-spec-url="/api/v1/openapi.json"' in html
    # Everything the page loads comes from this app: no CDN, no inline script (a CSP without inline scripts is planned).
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)


def test_vendored_files_and_their_licence_are_served(client):
    for path, kind in zip(VENDORED + ("js/api_docs.js",), ("javascript", "css", "javascript")):
        r = client.get(f"/static/{path}")
        assert r.status_code == 200, path
        assert kind in r.mimetype
        assert r.get_data()
        r.close()
    bundle = client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").get_data(as_text=True)
    assert "SwaggerUIBundle" in bundle
    licence = client.get("/static/vendor/swagger-ui/LICENSE").get_data(as_text=True)
    assert "Apache License" in licence


def test_header_links_to_the_api_docs(client):
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'<nav>.*<a href="/api/docs">API</a>.*</nav>', html, re.S)


def test_the_spec_the_page_reads_is_served(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert "post" in doc["paths"]["/api/v1/analyze"]


def test_docs_and_models_pages_stay_public_when_login_is_required(models_dir, tmp_path):
    from app import create_app
    app = create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(models_dir), "VISAGE_REQUIRE_LOGIN": 1,
                      "VISAGE_INSTANCE_DIR": str(tmp_path / "instance")})
    client = app.test_client()
    assert client.get("/").status_code == 302                   # the app itself needs an account
    for path in ("/api/docs", "/models", "/api/v1/openapi.json", "/static/vendor/swagger-ui/swagger-ui.css"):
        assert client.get(path).status_code == 200, path
    assert "script-src 'self'" in client.get("/api/docs").headers["Content-Security-Policy"]
