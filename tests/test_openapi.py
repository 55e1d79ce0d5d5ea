"""The published OpenAPI document must describe exactly the /api/ routes the app serves."""
from __future__ import annotations

import re

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def served_api_operations(app) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") and rule.endpoint != "api_docs.page":   # /api/docs: the HTML viewer
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)   # /x/<int:id> → /x/{id}
            operations |= {(path, m.lower()) for m in rule.methods - IGNORED_METHODS}
    return operations


def test_document_matches_url_map(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert documented == served_api_operations(app)


def test_every_operation_documents_its_responses(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    for item in doc["paths"].values():
        for operation in item.values():
            assert {"200", "202"} & set(operation["responses"])      # 202: a video job was queued
    assert {"200", "400", "413", "415", "422"} <= set(doc["paths"]["/api/v1/analyze"]["post"]["responses"])


def test_refs_resolve(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    refs = re.findall(r'"\$ref": "#/components/schemas/(\w+)"', __import__("json").dumps(doc))
    assert refs and set(refs) <= set(doc["components"]["schemas"])


def test_face_schema_matches_answer(client, astronaut_jpeg):
    import io
    doc = client.get("/api/v1/openapi.json").get_json()
    face_schema = doc["components"]["schemas"]["Face"]
    answer = client.post("/api/v1/analyze", data={"image": (io.BytesIO(astronaut_jpeg), "a.jpg")}).get_json()
    assert set(answer["faces"][0]) == set(face_schema["properties"]) == set(face_schema["required"])
    assert set(doc["components"]["schemas"]["Analysis"]["required"]) <= set(answer)


def test_options_are_documented_from_the_code_that_checks_them(client):
    """The detector list and min_face's range in the document are the constants the request checks use."""
    from app.pipeline.analyze import MAX_MIN_FACE, check_detector, check_min_face
    from app.pipeline.detect import DETECTORS
    doc = client.get("/api/v1/openapi.json").get_json()
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/analyze"]["post"]["parameters"]}
    assert params["detector"]["enum"] == list(DETECTORS) and all(check_detector(d) == d for d in DETECTORS)
    assert params["min_face"]["maximum"] == MAX_MIN_FACE and check_min_face(MAX_MIN_FACE) == MAX_MIN_FACE
