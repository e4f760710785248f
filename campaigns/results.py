"""Post-call results: the fields a campaign wants each call to find out (``Campaign.result_fields``) and the
checks of the values the agent (its ``save_results`` tool) or the summary pass give for them.

A field is ``{"name": "budget", "type": "number", "choices": [], "required": false, "description": "..."}``:
``name`` like ``^[a-z][a-z0-9_]{0,39}$`` (it becomes a JSON-schema property and an export column);
``type`` one of :data:`RESULT_TYPES`; ``choices`` (for ``choice`` only) the allowed texts; ``description``
tells the agent what to find out. Descriptions reach the model's prompt: they are tenant text, kept short
and stripped of control characters (they are data for the model, not instructions to the platform).

Values are checked by type (``wire.results.result_value_clean``, shared with the media worker, which checks
the agent's tool arguments with it before sending them): text (at most 1,000 characters), number (an int or
a float, or a text that is one), boolean (true/false, or yes/no), datetime (ISO 8601 with an offset, kept
as text), choice (one of the choices, matched without regard to case, stored as written in the choices).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from orchestrator.errors import InvalidInput
from wire.results import RESULT_NAME, RESULT_TYPES, result_value_clean

__all__ = ["RESULT_TYPES", "result_value_clean", "results_clean", "validate_result_fields"]

MAX_RESULT_FIELDS = 20
MAX_CHOICES = 30
CHOICE_MAX_LENGTH = 100
DESCRIPTION_MAX_LENGTH = 300


def _plain_text(value: object, *, where: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput("result_fields", f"{where}: must be text")
    text = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C" or ch == " ").strip()
    if len(text) > max_length:
        raise InvalidInput("result_fields", f"{where}: longer than {max_length} characters")
    return text


def validate_result_fields(value: object) -> list[dict[str, Any]]:
    """The campaign's result fields, normalised (every key present); InvalidInput("result_fields", "[i].key:
    ...") names the bad entry."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput("result_fields", "must be a list of fields")
    if len(value) > MAX_RESULT_FIELDS:
        raise InvalidInput("result_fields", f"at most {MAX_RESULT_FIELDS} fields")
    fields: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidInput("result_fields", f"[{index}]: must be an object with name and type")
        unknown = sorted(set(item) - {"name", "type", "choices", "required", "description"})
        if unknown:
            raise InvalidInput("result_fields", f"[{index}].{unknown[0]}: unknown key")
        name = item.get("name")
        if not isinstance(name, str) or not RESULT_NAME.match(name):
            raise InvalidInput(
                "result_fields",
                f"[{index}].name: {name!r} is not a field name: lower case letters, digits and _, starting "
                "with a letter (at most 40)",
            )
        if name in seen:
            raise InvalidInput("result_fields", f"[{index}].name: {name!r} is listed twice")
        seen.add(name)
        kind = item.get("type", "text")
        if kind not in RESULT_TYPES:
            raise InvalidInput("result_fields", f"[{index}].type: must be one of {', '.join(RESULT_TYPES)}")
        choices_in = item.get("choices") or []
        if not isinstance(choices_in, list):
            raise InvalidInput("result_fields", f"[{index}].choices: must be a list of texts")
        choices = [
            _plain_text(c, where=f"[{index}].choices", max_length=CHOICE_MAX_LENGTH) for c in choices_in
        ]
        choices = [c for c in dict.fromkeys(choices) if c]
        if kind == "choice" and not choices:
            raise InvalidInput("result_fields", f"[{index}].choices: a choice field needs its choices")
        if kind != "choice" and choices:
            raise InvalidInput("result_fields", f"[{index}].choices: only a choice field has choices")
        if len(choices) > MAX_CHOICES:
            raise InvalidInput("result_fields", f"[{index}].choices: at most {MAX_CHOICES}")
        required = item.get("required", False)
        if not isinstance(required, bool):
            raise InvalidInput("result_fields", f"[{index}].required: must be true or false")
        description = _plain_text(
            item.get("description", ""), where=f"[{index}].description", max_length=DESCRIPTION_MAX_LENGTH
        )
        fields.append(
            {"name": name, "type": kind, "choices": choices, "required": required, "description": description}
        )
    return fields


def results_clean(
    fields: list[dict[str, Any]], values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The valid values among ``values`` (by field name) and an error per invalid or unknown one. A None
    value is "not known" and is skipped."""
    by_name = {f["name"]: f for f in fields}
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, value in values.items():
        field = by_name.get(str(name))
        if field is None:
            errors[str(name)[:40]] = "is not a result field of this campaign"
            continue
        if value is None:
            continue
        try:
            clean[field["name"]] = result_value_clean(field, value)
        except ValueError as exc:
            errors[field["name"]] = str(exc)
    return clean, errors
