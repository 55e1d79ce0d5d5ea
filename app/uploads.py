"""Get the image bytes and options out of a request (multipart upload or base64 JSON)."""
from __future__ import annotations

import base64
import binascii
import io
import time

from flask import Request, current_app, g, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest as WerkzeugBadRequest

from app.pipeline.analyze import run_pipeline
from app.pipeline.detect import DETECTORS
from app.admission import Busy
from app.settings import MAX_OPTION_CHARS
from app.pipeline.errors import AnalysisTimeout, BadRequest, UnsupportedType

FIELD = "image"


class InMemoryRequest(Request):
    """Uploaded files stay in memory: Werkzeug would spool any file over 500 KB to a temp file.

    The whole body is already capped by MAX_CONTENT_LENGTH, so memory per request is bounded.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


OPTIONS = ("detector", "min_face", "profile", "regions")   # analysis options: form/JSON fields or query parameters


def image_from_request(allow_json: bool) -> tuple[bytes, dict]:
    """(image bytes, {option: value} for the OPTIONS given). Multipart field `image`, or JSON {"image": base64}."""
    if request.mimetype == "multipart/form-data" or request.mimetype == "application/x-www-form-urlencoded":
        upload = request.files.get(FIELD)
        if upload is None:
            other = [name for name in request.files]
            hint = f" (got file field {', '.join(map(repr, other))})" if other else ""
            raise BadRequest(f"No file in the form field {FIELD!r}{hint}.", code="missing_image")
        return upload.read(), merged_options(request.form)
    if allow_json and request.is_json:
        body = json_body()
        if not isinstance(body, dict) or not isinstance(body.get(FIELD), str):
            raise BadRequest(f'Expected a JSON object {{"{FIELD}": "<base64>"}}.', code="missing_image")
        return decode_base64(body[FIELD]), merged_options(body)
    accepted = "multipart/form-data" + (" or application/json" if allow_json else "")
    raise UnsupportedType(f"Send the image as {accepted} (got {request.mimetype or 'no content type'}).",
                          code="unsupported_content_type")


def merged_options(body) -> dict:
    """Options from the body (form or JSON fields) and the query string; one given twice must agree.

    Values are held to the OpenAPI document (app/openapi.py) exactly: a detector is one of DETECTORS as
    written, a JSON min_face is a JSON number, and no option is an empty string.
    """
    options = {}
    for name in OPTIONS:
        in_body = body.get(name)
        in_query = request.args.get(name)
        check_option_value(name, in_body, from_json=not isinstance(body, MultiDict))
        check_option_value(name, in_query, from_json=False)
        if in_body is not None and in_query is not None and not same_option(name, in_body, in_query):
            raise BadRequest(f"The {name} option is given twice, with different values (query string and body).",
                             code="conflicting_option")
        if in_body is not None or in_query is not None:
            options[name] = in_body if in_body is not None else in_query
    return options


def same_option(name: str, in_body, in_query: str) -> bool:
    """Whether the body's and the query's value of an option mean the same (min_face 0.1 and 0.10; regions
    as a JSON list and as its text). Either one invalid: compared as written (its own check says why)."""
    if str(in_body) == in_query:
        return True
    from app.pipeline.analyze import check_min_face, check_regions
    check = {"min_face": check_min_face, "regions": check_regions}.get(name)
    try:
        return check is not None and check(in_body) == check(in_query)
    except BadRequest:
        return False


def check_option_value(name: str, value, from_json: bool) -> None:
    if value is None:
        return
    if isinstance(value, str) and len(value) > MAX_OPTION_CHARS:
        raise BadRequest(f"The {name} option is {len(value)} characters long; the limit is {MAX_OPTION_CHARS}.",
                         code="option_too_long")
    if value == "":
        raise BadRequest(f"The {name} option is empty; leave it out to get the default.", code=f"bad_{name}")
    if name == "detector" and value not in DETECTORS:
        shown = repr(value) if isinstance(value, str) else f"a JSON {type(value).__name__}"
        raise BadRequest(f"Unknown detector {shown}; choose one of {', '.join(DETECTORS)}.", code="bad_detector")
    if name == "min_face" and from_json and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise BadRequest("min_face must be a JSON number.", code="bad_min_face")


def boolean_option(name: str, value, default: bool) -> bool:
    """An option the OpenAPI document types as boolean: a JSON true/false, or exactly "true"/"false" in a
    form or query (the fuzz test holds every endpoint to that); absent (None) gives the default."""
    if value is None:
        return default
    if value is True or value == "true":
        return True
    if value is False or value == "false":
        return False
    raise BadRequest(f"{name} must be true or false, got {value!r}.", code=f"bad_{name}")


def json_body():
    """The parsed JSON body; malformed or absurdly nested JSON is a 400, never a 500."""
    try:
        return request.get_json()
    except RecursionError:       # the parser recurses once per [ or {; our body is one flat object
        raise BadRequest("The JSON body is nested too deeply.", code="json_too_deep") from None
    except WerkzeugBadRequest:
        raise BadRequest("The body is not valid JSON.", code="bad_json") from None


def decode_base64(text: str) -> bytes:
    if text.startswith("data:"):                      # data:image/png;base64,....
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise BadRequest("Only base64 data: URLs are accepted.", code="bad_base64")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRequest(f"The image is not valid base64 ({e}).", code="bad_base64") from e


def analyze_request(allow_json: bool):
    """Run the pipeline on the request's image with the app's limits → (answer, decoded image)."""
    data, options = image_from_request(allow_json)
    cfg = current_app.config
    detector = options.pop("detector", None)
    gate = current_app.extensions["visage.gate"]
    predictor, time_limit = current_app.extensions["visage.predictor"], cfg["VISAGE_ANALYSIS_TIMEOUT"]

    def analysis():              # runs on one of the gate's analysis threads, outside the Flask context
        return run_pipeline(data, predictor, detector=detector or cfg["VISAGE_DEFAULT_DETECTOR"], **options,
                            max_bytes=cfg["VISAGE_MAX_BYTES"], max_pixels=cfg["VISAGE_MAX_PIXELS"],
                            deadline=time.monotonic() + time_limit)
    try:
        answer, image = gate.run(analysis)   # Busy (503) when it cannot start within VISAGE_QUEUE_TIMEOUT
    except AnalysisTimeout:
        raise Busy(f"The analysis took longer than {time_limit:g} s and was stopped; the server may be "
                   f"overloaded.", gate.retry_after(), code="analysis_timeout") from None
    g.face_count = len(answer["faces"])     # for the request log line
    return answer, image
