"""The OpenAPI document's error answers, added to every route in one place (a drf-spectacular
postprocessing hook, ``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``), so that a client, a code generator
and a fuzzer know them without each view declaring them:

* **400** ``ValidationError``: a key per bad field (body property or query parameter) with its messages,
  ``non_field_errors`` for a rule over several fields, or ``detail`` for a body that is not valid JSON
  (orchestrator/api.py, orchestrator/parsers.py). On every write and on every route with query parameters.
* **401** / **403** ``Error``: no or a bad API key; a role or membership that may not do this. On every
  authenticated route.
* **404** ``Error``: on every route with an id in its path (another tenant's id is a 404 too, DESIGN.md §5
  rule 7) and on paginated lists (a page past the end).
* **429** ``Error``: over the tenant's request rate (with ``Retry-After``). On every authenticated route.
* **413** ``Error``: a body larger than the server reads (``DATA_UPLOAD_MAX_MEMORY_SIZE``);
  **415** ``Error``: a body in a media type the route does not take. On every route with a body.

A response a view declares itself is left as it is.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = "Error"
VALIDATION_ERROR_SCHEMA = "ValidationError"

_COMPONENTS: dict[str, dict[str, Any]] = {
    ERROR_SCHEMA: {
        "type": "object",
        "description": "An error that is not about one field.",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    },
    VALIDATION_ERROR_SCHEMA: {
        "type": "object",
        "description": (
            "Bad input, nothing changed. Each key names the field (body property or query parameter) with "
            'its messages, e.g. {"caller_id": ["..."]}; "non_field_errors" holds a rule over several fields, '
            '"detail" a body that could not be read at all. A nested field (a list item, an object key) '
            "holds an object of its own errors."
        ),
        "properties": {"detail": {"type": "string"}},
        "additionalProperties": {
            "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}, {"type": "string"}]
        },
    },
}

_DESCRIPTIONS = {
    "400": ("Bad input (names the field); nothing was changed.", VALIDATION_ERROR_SCHEMA),
    "401": ("No API key, or a malformed, unknown or revoked one.", ERROR_SCHEMA),
    "403": ("Authenticated, but this role or membership may not do this.", ERROR_SCHEMA),
    "404": ("No such object in this tenant (or no such page).", ERROR_SCHEMA),
    "413": ("The request body is too large.", ERROR_SCHEMA),
    "415": ("The request body's media type is not one this route takes.", ERROR_SCHEMA),
    "429": ("Too many requests from this tenant: try again after Retry-After seconds.", ERROR_SCHEMA),
}

_RETRY_AFTER = {"description": "Seconds until a request may succeed.", "schema": {"type": "integer"}}

_WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})


def _error_codes(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    parameters = operation.get("parameters", [])
    codes: list[str] = []
    if method in _WRITE_METHODS or any(parameter.get("in") == "query" for parameter in parameters):
        codes.append("400")
    requirements = operation.get("security", [])
    if requirements and {} not in requirements:  # {}: anonymous access allowed
        codes += ["401", "403", "429"]  # 429: the tenant's rate (orchestrator/throttling.py)
    if "{" in path or any(parameter.get("name") == "page" for parameter in parameters):
        codes.append("404")
    if "requestBody" in operation:
        codes += ["413", "415"]
    return codes


def add_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool, **kwargs: Any
) -> dict[str, Any]:
    """The postprocessing hook: error responses on every ``/api/`` operation, and their schemas."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _COMPONENTS.items():
        schemas.setdefault(name, schema)
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            if method not in _WRITE_METHODS and method != "get":
                continue
            responses = operation.setdefault("responses", {})
            for code in _error_codes(path, method, operation):
                description, schema_name = _DESCRIPTIONS[code]
                response: dict[str, Any] = {
                    "description": description,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
                    },
                }
                if code == "429":
                    response["headers"] = {"Retry-After": _RETRY_AFTER}
                responses.setdefault(code, response)
    return result


def attempt_state_choices() -> list[tuple[str, str]]:
    """The attempt states as the attempt's ``state`` field lists them (value, value): named
    ``AttemptStateEnum`` in ``ENUM_NAME_OVERRIDES``, apart from the other ``state`` enums (recordings)."""
    from campaigns.lifecycle import AttemptState  # settings load this module before the apps

    return [(state.value, state.value) for state in AttemptState]
