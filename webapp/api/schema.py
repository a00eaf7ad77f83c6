"""OpenAPI schema additions: every error answer the API gives is documented.

drf-spectacular documents the success answers it can see; this hook adds, to every
operation, the error answers the views and DRF give (all JSON with a ``detail``): 400 for
invalid input, 401/403 for missing or insufficient rights, 404 for unknown or invisible
objects, 409 for adding files to a submitted batch, 429 for throttling and 503 when the
database or the search model is unavailable.
"""

from __future__ import annotations

ERRORS = {
    "400": "invalid input (the detail says which)",
    "401": "not logged in",
    "403": "not allowed",
    "404": "no such object (or not yours)",
    "429": "too many requests; retry later",
    "503": "the database or the search model is unavailable",
}
CONFLICT = {"409": "the batch was submitted; start a new batch"}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
    "description": "What went wrong; field errors come as {field: [messages]}",
}


def document_errors(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook (settings.SPECTACULAR_SETTINGS)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            errors = dict(ERRORS)
            if path.endswith("/files/") and method == "post":
                errors.update(CONFLICT)
            for code, text in errors.items():
                responses.setdefault(code, {"description": text, "content": reference})
    return result
