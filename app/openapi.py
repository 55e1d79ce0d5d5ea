"""The OpenAPI 3 description of /api/v1 (served at /api/v1/openapi.json; a test keeps it in sync with the routes)."""
from __future__ import annotations

from app.pipeline.analyze import MAX_MIN_FACE
from app.pipeline.detect import DETECTORS
from app.pipeline.predict import AGE_GROUPS, EMOTION_LABELS

EMOTIONS = list(EMOTION_LABELS)


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


retry_after = {"description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}


def _busy(description: str) -> dict:
    return {**_error(description), "headers": {"Retry-After": retry_after}}


def openapi_document() -> dict:
    detector_schema = {"type": "string", "enum": list(DETECTORS), "default": DETECTORS[0],
                       "description": "haar: find faces; none: the whole image is one face crop"}
    min_face_schema = {"type": "number", "minimum": 0, "maximum": MAX_MIN_FACE, "default": 0,
                       "description": "look only for faces at least this share of the image's shorter side "
                                      "(faster; live mode sends 0.12); 0 = down to 24 px"}
    profile_schema = {"type": "string", "enum": ["accurate", "live"], "default": "accurate",
                      "description": "accurate: each model averages the test-time views its card names "
                                     "(mirror, shifted faces); live: one view per model, several times faster, "
                                     "noisier per frame (live mode sends it and smooths over frames)"}
    regions_schema = {"type": "string", "example": "[[150, 40, 60, 60]]",
                      "description": "a hint: JSON list of at most 16 [x, y, w, h] boxes (image pixels) where faces "
                                     "were a moment ago; the detector then looks only around them (live mode sends "
                                     "its tracked faces, and omits it every few frames for a full scan)"}
    face = {
        "type": "object",
        "required": ["box", "age", "age_range", "age_group", "gender", "emotion"],
        "properties": {
            "box": {"type": "object", "description": "face box in original image pixels",
                    "properties": {k: {"type": "integer"} for k in ("x", "y", "w", "h")}},
            "age": {"type": "number", "description": "estimated age in years, 1 decimal"},
            "age_range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                          "description": "calibrated interval [low, high] from the model card"},
            "age_group": {"type": "string", "enum": list(AGE_GROUPS)},
            "gender": {"type": "object", "properties": {
                "label": {"type": "string", "enum": ["female", "male"]},
                "probability": {"type": "number", "description": "probability of that label"}}},
            "emotion": {"type": "object", "properties": {
                "label": {"type": "string", "enum": EMOTIONS},
                "probabilities": {"type": "object", "properties": {e: {"type": "number"} for e in EMOTIONS}}}},
        },
    }
    analysis = {
        "type": "object",
        "required": ["faces", "image", "models", "timing_ms"],
        "properties": {
            "faces": {"type": "array", "items": {"$ref": "#/components/schemas/Face"}},
            "image": {"type": "object", "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}}},
            "detector": {"type": "string"},
            "profile": {"type": "string", "enum": ["accurate", "live"]},
            "scan": {"type": "string", "enum": ["full", "regions"],
                     "description": "whether the detector scanned the whole image or only the given regions"},
            "models": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "model name → version"},
            "timing_ms": {"type": "object", "additionalProperties": {"type": "number"},
                          "description": "decode, detect, preprocess, predict, total"},
        },
    }
    error = {"type": "object", "properties": {"error": {"type": "object", "required": ["code", "message"],
             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}
    counter = {"type": "integer", "minimum": 0}
    ready = {"type": "object", "required": ["ready", "analyses_running", "analyses_waiting", "analysis_slots"],
             "properties": {"ready": {"type": "boolean"}, "analyses_running": counter,
                            "analyses_waiting": counter, "analysis_slots": counter}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Visage API", "version": "1",
                 "description": "Estimates of age, gender and emotion from the appearance of faces in a photo. "
                                "Estimates, not facts about a person; no identification."},
        "paths": {
            "/api/v1/analyze": {"post": {
                "summary": "Analyze the faces in one image",
                "parameters": [{"name": "detector", "in": "query", "required": False, "schema": detector_schema},
                               {"name": "min_face", "in": "query", "required": False, "schema": min_face_schema},
                               {"name": "profile", "in": "query", "required": False, "schema": profile_schema},
                               {"name": "regions", "in": "query", "required": False, "schema": regions_schema}],
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
                        "image": {"type": "string", "format": "binary"}, "detector": detector_schema,
                        "min_face": min_face_schema, "profile": profile_schema,
                        "regions": regions_schema}}},
                    "application/json": {"schema": {"type": "object", "required": ["image"], "properties": {
                        "image": {"type": "string", "minLength": 1, "description": "base64 image bytes, or a data: URL"},
                        "detector": detector_schema, "min_face": min_face_schema,
                        "profile": profile_schema,
                        "regions": {"oneOf": [regions_schema, {"type": "array", "items": {
                            "type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}}]}}}},
                }},
                "responses": {
                    "200": {"description": "Analysis (faces is [] when no face is found)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Analysis"}}}},
                    "400": _error("Bad request: missing/empty image, bad base64, unknown detector or profile, min_face out of range, bad regions"),
                    "413": _error("Too large: too many bytes or too many pixels"),
                    "415": _error("Not an image / unsupported image type or content type"),
                    "422": _error("Image could not be decoded (truncated or corrupt)"),
                    "503": _busy("Busy: the analysis could not start within VISAGE_QUEUE_TIMEOUT seconds "
                                 "(code overloaded) or ran past VISAGE_ANALYSIS_TIMEOUT (code analysis_timeout)"),
                },
            }},
            "/api/v1/health": {"get": {
                "summary": "Liveness: the process answers; models loaded and their versions",
                "responses": {"200": {"description": "Alive", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["status", "models_loaded", "models"],
                    "properties": {"status": {"type": "string", "enum": ["ok"]},
                                   "models_loaded": {"type": "boolean"},
                                   "models": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}},
            }},
            "/api/v1/ready": {"get": {
                "summary": "Readiness: models loaded and analyses not queued beyond VISAGE_QUEUE_TIMEOUT",
                "responses": {"200": {"description": "Ready", "content": {"application/json": {"schema": ready}}},
                              "503": {"description": "Saturated: new analyses would wait too long",
                                      "headers": {"Retry-After": retry_after},
                                      "content": {"application/json": {"schema": ready}}}},
            }},
            "/api/v1/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {}}}},
            }},
        },
        "components": {"schemas": {"Face": face, "Analysis": analysis, "Error": error}},
    }
