"""Schemathesis against the app's own OpenAPI document, in-process through the WSGI app (tiny test models).

Every documented operation gets generated valid and invalid requests (bounded: FUZZ_EXAMPLES per operation
and mode); every answer must be a non-5xx, invalid requests must be refused with a 4xx, and the status, content type, headers and body the document describes.
"""
from __future__ import annotations

import os

import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from app.openapi import openapi_document

FUZZ_EXAMPLES = int(os.environ.get("VISAGE_FUZZ_EXAMPLES", "40"))

# The document the app serves at /api/v1/openapi.json (test_openapi.py checks it against the routes);
# requests go to the session's app fixture in-process.
schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                max_examples=FUZZ_EXAMPLES, deterministic=True)


@schema.parametrize()
def test_api_conforms_to_its_openapi_document(case, app):
    # Excluded: "schema-valid data is accepted". A schema cannot say "these bytes are a decodable image", so
    # generated image fields are schema-valid yet rightly refused (415/422); every other check runs.
    case.call_and_validate(app=app, excluded_checks=[positive_data_acceptance])
