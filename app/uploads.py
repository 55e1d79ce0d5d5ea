"""Get the image bytes and options out of a request (multipart upload or base64 JSON)."""
from __future__ import annotations

import base64
import binascii

from flask import current_app, request

from app.pipeline.analyze import run_pipeline
from app.pipeline.errors import BadRequest, UnsupportedType

FIELD = "image"


OPTIONS = ("detector", "min_face", "profile", "regions")   # analysis options: form/JSON fields or query parameters


def image_from_request(allow_json: bool) -> tuple[bytes, dict]:
    """(image bytes, {option: value} for the OPTIONS given). Multipart field `image`, or JSON {"image": base64}."""
    if request.mimetype == "multipart/form-data" or request.mimetype == "application/x-www-form-urlencoded":
        upload = request.files.get(FIELD)
        if upload is None:
            other = [name for name in request.files]
            hint = f" (got file field {', '.join(map(repr, other))})" if other else ""
            raise BadRequest(f"No file in the form field {FIELD!r}{hint}.", code="missing_image")
        return upload.read(), {k: request.values[k] for k in OPTIONS if k in request.values}
    if allow_json and request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get(FIELD), str):
            raise BadRequest(f'Expected a JSON object {{"{FIELD}": "<base64>"}}.', code="missing_image")
        options = {k: body[k] if k in body else request.args.get(k) for k in OPTIONS}
        return decode_base64(body[FIELD]), {k: v for k, v in options.items() if v is not None}
    accepted = "multipart/form-data" + (" or application/json" if allow_json else "")
    raise UnsupportedType(f"Send the image as {accepted} (got {request.mimetype or 'no content type'}).",
                          code="unsupported_content_type")


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
    if detector is not None and not isinstance(detector, str):
        raise BadRequest("detector must be a string.", code="bad_detector")
    return run_pipeline(data, current_app.extensions["visage.predictor"],
                        detector=detector or cfg["VISAGE_DEFAULT_DETECTOR"], **options,
                        max_bytes=cfg["VISAGE_MAX_BYTES"], max_pixels=cfg["VISAGE_MAX_PIXELS"])
