"""The OpenAPI 3 description of /api/v1 (served at /api/v1/openapi.json; a test keeps it in sync with the routes)."""
from __future__ import annotations

from app.pipeline.analyze import MAX_MIN_FACE
from app.pipeline.detect import DETECTOR_DESCRIPTIONS, DETECTORS
from app.pipeline.predict import AGE_GROUPS, EMOTION_LABELS

EMOTIONS = list(EMOTION_LABELS)


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


retry_after = {"description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}


def _busy(description: str) -> dict:
    return {**_error(description), "headers": {"Retry-After": retry_after}}


def openapi_document() -> dict:
    detector_schema = {"type": "string", "enum": list(DETECTORS), "default": DETECTORS[0],
                       "description": "; ".join(f"{k}: {v}" for k, v in DETECTOR_DESCRIPTIONS.items())}
    min_face_schema = {"type": "number", "minimum": 0, "maximum": MAX_MIN_FACE, "default": 0,
                       "description": "look only for faces at least this share of the image's shorter side "
                                      "(faster; live mode sends 0.12); 0 = every face the detector can find"}
    profile_schema = {"type": "string", "enum": ["accurate", "live"], "default": "accurate",
                      "description": "accurate: each model averages the test-time views its card names "
                                     "(mirror, shifted faces); live: the face and its mirror, no shifted copies, several times faster, "
                                     "noisier per frame (live mode sends it and smooths over frames)"}
    regions_schema = {"type": "string",
                      "description": "a hint: JSON list of at most 16 [x, y, w, h] boxes (image pixels) where faces "
                                     "were a moment ago; the detector then looks only around them (live mode sends "
                                     "its tracked faces in the query string, and omits it every few frames for a full scan)"}
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
                            "analyses_waiting": counter, "analysis_slots": counter,
                            "dependencies": {"type": "object", "description":
                                             '"ok" or "unavailable (reason)" for the database and, when '
                                             'configured, Redis; either down leaves analyses working',
                                             "additionalProperties": {"type": "string"}}}}
    doc = {
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
                        "min_face": min_face_schema, "profile": profile_schema}}},
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
                    "400": _error("Bad request (code): missing_image, empty_file, bad_base64, bad_json, json_too_deep, "
                                  "bad_detector, bad_min_face, bad_profile, bad_regions, conflicting_option (query and body disagree), "
                                  "option_too_long. docs/api.md lists when each is sent"),
                    "413": _error("Too large (code): file_too_large, too_many_pixels, request_entity_too_large "
                                  "(body, multipart parts or a form field over its limit)"),
                    "415": _error("Not an image / unsupported image type (unsupported_type) or content type "
                                  "(unsupported_content_type)"),
                    "422": _error("Image could not be decoded (truncated or corrupt)"),
                    "503": _busy("Busy: the analysis could not start within VISAGE_QUEUE_TIMEOUT seconds "
                                 "(code overloaded) or ran past VISAGE_ANALYSIS_TIMEOUT (code analysis_timeout); "
                                 "or save=true while the database is unavailable (code database_unavailable) or its "
                                 "tables are not migrated (code database_not_migrated)"),
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
    add_video_jobs(doc)
    add_batch_jobs(doc, detector_schema, min_face_schema, profile_schema)
    return doc


# ---------------------------------------------------------------- video jobs (app/video.py, docs/video.md)

def add_video_jobs(doc: dict) -> None:
    """Paths and schemas of the video job API, kept in one block so other API changes merge cleanly."""
    emotion = {"type": "object", "properties": {
        "label": {"type": "string", "enum": EMOTIONS},
        "probabilities": {"type": "object", "properties": {e: {"type": "number"} for e in EMOTIONS}}}}
    box = {"type": "object", "description": "face box in the video's (displayed) pixels",
           "properties": {k: {"type": "integer"} for k in ("x", "y", "w", "h")}}
    track = {
        "type": "object",
        "required": ["id", "first_seen", "last_seen", "age", "gender", "timeline"],
        "properties": {
            "id": {"type": "integer"},
            "first_seen": {"type": "number", "description": "seconds into the video"},
            "last_seen": {"type": "number", "description": "seconds into the video"},
            "samples": {"type": "integer", "description": "sampled frames the face was found in"},
            "age": {"type": "number", "description": "median of the per-frame estimates"},
            "age_range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                          "description": "median of the per-frame calibrated intervals"},
            "age_spread": {"type": "array", "items": {"type": "number"},
                           "description": "10th and 90th percentile of the per-frame estimates"},
            "gender": {"type": "object", "description": "label with the mean probability over the track",
                       "properties": {"label": {"type": "string", "enum": ["female", "male"]},
                                      "probability": {"type": "number"}}},
            "dominant_emotion": emotion,
            "segments": {"type": "array", "description": "runs of one dominant (smoothed) emotion",
                         "items": {"type": "object", "properties": {
                             "start": {"type": "number"}, "end": {"type": "number"},
                             "label": {"type": "string", "enum": EMOTIONS}, "probability": {"type": "number"}}}},
            "timeline": {"type": "array", "items": {"type": "object", "properties": {
                "t": {"type": "number", "description": "seconds into the video"}, "box": box,
                "emotion": {**emotion, "description": "smoothed over the track (centred window)"},
                "emotion_raw": {**emotion, "description": "this frame alone"}}}},
            "thumbnail": {"type": "string", "description": "data: URL of a small JPEG of the face"},
        },
    }
    job = {
        "type": "object",
        "required": ["id", "status", "progress", "error", "result"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "running", "done", "failed", "cancelled"]},
            "progress": {"type": "number", "minimum": 0, "maximum": 1,
                         "description": "sampled frames done / total (then the annotated video)"},
            "error": {"type": "object", "nullable": True, "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}}},
            "result": {"type": "object", "nullable": True, "properties": {
                "tracks": {"type": "array", "items": {"$ref": "#/components/schemas/VideoTrack"}},
                "video": {"type": "object", "description": "width, height, rotation, duration, fps, frames, codec"},
                "sampling": {"type": "object", "description": "fps, samples, smooth_seconds"},
                "decoding": {"type": "object", "description": "frames_decoded, frames_failed, frames_expected, "
                                                             "ended_early, complete (false for a broken stream)"},
                "downloads": {"type": "object", "properties": {
                    "csv": {"type": "string"}, "json": {"type": "string"},
                    "annotated_video": {"type": "string", "nullable": True}}},
            }},
        },
    }
    job_response = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/VideoJob"}}}}
    job_id = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    not_found = _error("No such job (unknown, or older than a day)")
    not_done = _error("The job is not done yet")

    def download(summary: str, media: str) -> dict:
        return {"get": {"summary": summary, "parameters": job_id, "responses": {
            "200": {"description": summary, "content": {media: {}}}, "404": not_found, "409": not_done}}}

    doc["paths"].update({
        "/api/v1/videos": {"post": {
            "summary": "Upload a video (MP4, WebM, MOV, AVI, MKV) for a background analysis job",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["video"], "properties": {
                    "video": {"type": "string", "format": "binary"},
                    "fps": {"type": "number", "minimum": 0.1, "maximum": 30, "default": 5,
                            "description": "frames analysed per second of video"},
                    "detector": {"type": "string", "enum": list(DETECTORS), "default": DETECTORS[0]},
                    "min_face": {"type": "number", "minimum": 0, "maximum": 0.9, "default": 0},
                    "annotate": {"type": "boolean", "default": True,
                                 "description": "also render an MP4 with boxes and smoothed labels"},
                    "blur": {"type": "boolean", "default": False,
                             "description": "blur every face in the annotated MP4"}}}}}},
            "responses": {
                "202": {"description": "Queued; poll the URL in Location", **job_response,
                        "headers": {"Location": {"schema": {"type": "string"},
                                                 "description": "/api/v1/jobs/{job_id}"}}},
                "400": _error("Missing/empty file, bad fps/detector/min_face/annotate/blur"),
                "413": _error("Too large: bytes (VISAGE_MAX_VIDEO_BYTES), duration (VISAGE_MAX_VIDEO_SECONDS) "
                              "or frame size (VISAGE_MAX_VIDEO_PIXELS)"),
                "415": _error("Not a video, no video stream (audio only), or not multipart/form-data"),
                "422": _error("A video whose header cannot be read (truncated or corrupt)"),
                "503": _busy("The job queue (Redis) is unavailable (code queue_unavailable); nothing was queued"),
                "507": _busy("No space left for uploads on the server (code insufficient_storage); nothing was queued"),
            },
        }},
        "/api/v1/jobs/{job_id}": {
            "get": {"summary": "Status, progress and, when done, the result of a video job", "parameters": job_id,
                    "responses": {"200": {"description": "The job", **job_response}, "404": not_found,
                                  "503": _busy("The job queue (Redis) is unavailable (code queue_unavailable)")}},
            "delete": {"summary": "Cancel a job (a queued job at once, a running one at its next frame)",
                       "parameters": job_id,
                       "responses": {"200": {"description": "The job after the request", **job_response},
                                     "404": not_found}},
        },
        "/api/v1/jobs/{job_id}/timeline.csv": download("One row per face per sampled time", "text/csv"),
        "/api/v1/jobs/{job_id}/result.json": download("The finished job as a JSON file", "application/json"),
        "/api/v1/jobs/{job_id}/annotated.mp4": download("The annotated (optionally blurred) video", "video/mp4"),
    })
    doc["components"]["schemas"].update({"VideoJob": job, "VideoTrack": track})


# ---------------------------------------------------------------- batches (app/batch.py, docs/batch.md)

def add_batch_jobs(doc: dict, detector: dict, min_face: dict, profile: dict) -> None:
    """POST /api/v1/batches and its downloads; GET/DELETE /api/v1/jobs/{job_id} answer batches too."""
    error = {"type": "object", "nullable": True, "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
    counts = {"type": "object", "properties": {"labels": {"type": "array", "items": {"type": "string"}},
                                                "counts": {"type": "array", "items": {"type": "integer"}}}}
    photo = {"type": "object", "required": ["index", "file"], "properties": {
        "index": {"type": "integer", "description": "position in the upload (a ZIP's members in its order)"},
        "file": {"type": "string", "description": "the name as uploaded (with a ZIP's folders); shown, never used as a path"},
        "faces": {"type": "array", "items": {"$ref": "#/components/schemas/Face"}, "description": "absent on an error"},
        "image": {"type": "object", "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}}},
        "error": {**error, "description": "why this photo has no result: empty_file, duplicate, too_large, unsafe_name, "
                                          "nested_zip, bad_zip_member, unsupported_type, undecodable, worker_lost, chunk_failed, …"},
        "thumbnail": {"type": "string", "description": "with thumbnails=true: data: URL of a small JPEG"}}}
    summary = {"type": "object", "properties": {
        **{k: {"type": "integer"} for k in ("photos", "analysed", "failed", "with_faces", "no_face", "faces", "workers")},
        "errors": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "error code → photos"},
        "mean_age": {"type": "number", "nullable": True}, "emotions": counts, "ages": counts, "genders": counts,
        "seconds": {"type": "number"}, "photos_per_second": {"type": "number", "nullable": True},
        "models": {"type": "object", "additionalProperties": {"type": "string"}}}}
    batch = {
        "type": "object", "required": ["id", "kind", "status", "progress", "error", "result", "done", "total"],
        "properties": {
            "id": {"type": "string"}, "kind": {"type": "string", "enum": ["batch"]},
            "status": {"type": "string", "enum": ["queued", "running", "done", "failed", "cancelled"]},
            "progress": {"type": "number", "minimum": 0, "maximum": 1, "description": "photos done / total"},
            "done": {"type": "integer"}, "total": {"type": "integer"},
            "rate": {"type": "number", "nullable": True, "description": "photos per second so far (running)"},
            "eta_s": {"type": "number", "nullable": True, "description": "seconds left at that rate (running)"},
            "error": error,
            "result": {"type": "object", "nullable": True, "properties": {
                "summary": summary, "files": {"type": "array", "items": {"$ref": "#/components/schemas/BatchPhoto"}},
                "downloads": {"type": "object", "properties": {"csv": {"type": "string"}, "json": {"type": "string"}}}}},
            "options": {"type": "object"}}}
    batch_response = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchJob"}}}}
    job_id = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    flag = {"type": "string", "enum": ["true", "false"], "default": "false"}

    def download(summary_text: str, media: str) -> dict:
        return {"get": {"summary": summary_text, "parameters": job_id, "responses": {
            "200": {"description": summary_text, "content": {media: {}}},
            "404": _error("No such batch (unknown, or older than a day)"), "409": _error("The batch is not done yet")}}}

    doc["paths"].update({
        "/api/v1/batches": {"post": {
            "summary": "Upload many photos (or one ZIP of photos) as one background job, shared out over the workers",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["photos"], "properties": {
                    "photos": {"type": "array", "items": {"type": "string", "format": "binary"},
                               "description": "the photos (repeat the field), or ZIPs of photos (folders inside are fine)"},
                    "detector": detector, "min_face": min_face, "profile": profile,
                    "thumbnails": {**flag, "description": "add a small JPEG of each photo to its record"},
                    "blur": {**flag, "description": "blur every face in those thumbnails"}}}}}},
            "responses": {
                "202": {"description": "Queued; poll the URL in Location", **batch_response,
                        "headers": {"Location": {"schema": {"type": "string"}, "description": "/api/v1/jobs/{job_id}"}}},
                "400": _error("No photos, an unreadable ZIP, or a bad detector/min_face/profile/thumbnails/blur"),
                "413": _error("Over VISAGE_MAX_BATCH_FILES files or VISAGE_MAX_BATCH_BYTES bytes (a ZIP: also unpacked)"),
                "415": _error("Not multipart/form-data"),
            },
        }},
        "/api/v1/batches/{job_id}/results.csv": download("One row per face; one row with an error code per photo "
                                                         "that failed or had no face", "text/csv"),
        "/api/v1/batches/{job_id}/results.json": download("The finished batch as a JSON file", "application/json"),
    })
    for method in ("get", "delete"):      # the job URLs serve both kinds; a batch says kind: "batch"
        response = doc["paths"]["/api/v1/jobs/{job_id}"][method]["responses"]["200"]
        response["content"] = {"application/json": {"schema": {"anyOf": [
                    {"$ref": "#/components/schemas/VideoJob"}, {"$ref": "#/components/schemas/BatchJob"}]}}}
    doc["components"]["schemas"].update({"BatchJob": batch, "BatchPhoto": photo})


def with_token_auth(doc: dict) -> dict:
    """Personal access tokens (app/auth.py /account) on POST /api/v1/analyze: optional, needed for save=true.

    Applied on top of openapi_document() so the accounts feature stays one block here."""
    doc["components"]["securitySchemes"] = {"bearerAuth": {
        "type": "http", "scheme": "bearer",
        "description": "A personal access token created on /account (shown once, stored hashed). "
                       "Revoked tokens are refused with 401."}}
    analyze = doc["paths"]["/api/v1/analyze"]["post"]
    analyze["security"] = [{}, {"bearerAuth": []}]      # anonymous use stays possible unless VISAGE_REQUIRE_LOGIN=1
    save = {"type": "boolean", "default": False,
            "description": "keep the answer's numbers (never the image) in the token owner's history"}
    analyze["parameters"].append({"name": "save", "in": "query", "required": False, "schema": save})
    for body in analyze["requestBody"]["content"].values():
        body["schema"]["properties"]["save"] = save
    analyze["responses"]["401"] = _error("Unknown or revoked token, save=true without a token, "
                                         "or no token when the server requires login")
    doc["components"]["schemas"]["Analysis"]["properties"]["saved"] = {
        "type": "object", "description": "only with save=true: the saved history item",
        "properties": {"id": {"type": "integer"}, "url": {"type": "string"}}}
    return doc
