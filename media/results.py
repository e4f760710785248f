"""The agent's ``save_results`` tool on a campaign call: its JSON schema, built per call from the brief's
``result_fields`` (like ``record_intake`` from a flow's intake fields, media/tools.py), and what running it
does: every value is checked by its field's type (``wire.results.result_value_clean``, the very check the
orchestrator applies again), the valid ones are kept for the call and sent (all kept so far) to the
orchestrator as ``media.save_results``; the invalid ones come back to the model as errors it can correct.

The brief key is read here with a small parser of its own (``brief.extra["result_fields"]``), validated like
``wire.brief.parse_brief`` validates the rest: malformed entries are skipped and logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from wire import tasks as media_tasks
from wire.brief import Brief
from wire.results import RESULT_NAME, RESULT_TYPES, result_value_clean

logger = logging.getLogger(__name__)

MAX_FIELDS = 20
DESCRIPTION_MAX_CHARS = 300
DESCRIPTION = (
    "Save what you found out on this call, in the campaign's result fields. Call it as soon as you know "
    "some of them, and again when you learn more; values already saved are kept unless you give new ones."
)


@dataclass(frozen=True)
class ResultField:
    name: str
    type: str
    choices: tuple[str, ...] = ()
    required: bool = False
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "choices": list(self.choices)}


def result_fields(brief: Brief) -> tuple[ResultField, ...]:
    """The result fields of the brief (``extra["result_fields"]``); malformed entries are skipped."""
    raw = brief.extra.get("result_fields") if isinstance(brief.extra, dict) else None
    if not isinstance(raw, list):
        return ()
    fields: list[ResultField] = []
    seen: set[str] = set()
    for entry in raw[:MAX_FIELDS]:
        name = entry.get("name") if isinstance(entry, dict) else None
        kind = entry.get("type", "text") if isinstance(entry, dict) else None
        choices = entry.get("choices") or [] if isinstance(entry, dict) else []
        if (
            not isinstance(entry, dict)
            or not isinstance(name, str)
            or not RESULT_NAME.match(name)
            or name in seen
            or kind not in RESULT_TYPES
            or not isinstance(choices, list)
            or (kind == "choice" and not choices)
        ):
            logger.warning("call %s: skipping result field %.100r", brief.call_id, entry)
            continue
        seen.add(name)
        description = entry.get("description")
        fields.append(
            ResultField(
                name=name,
                type=str(kind),
                choices=tuple(str(c) for c in choices),
                required=entry.get("required") is True,
                description=description[:DESCRIPTION_MAX_CHARS] if isinstance(description, str) else "",
            )
        )
    return tuple(fields)


def _property(field: ResultField) -> dict[str, Any]:
    text = field.description or field.name.replace("_", " ")
    if field.required:
        text += " (required)"
    if field.type == "number":
        return {"type": "number", "description": text}
    if field.type == "boolean":
        return {"type": "boolean", "description": text}
    if field.type == "datetime":
        return {"type": "string", "description": text + ". ISO 8601 with a UTC offset."}
    if field.type == "choice":
        return {"type": "string", "enum": list(field.choices), "description": text}
    return {"type": "string", "description": text}


def results_schema(brief: Brief) -> dict[str, Any]:
    """The JSON schema of ``save_results`` for this call: one property per result field, by type."""
    return {
        "type": "object",
        "properties": {field.name: _property(field) for field in result_fields(brief)},
        "required": [],  # saved as they come: the required ones are asked for until known
    }


@dataclass(frozen=True)
class SaveOutcome:
    output: dict[str, Any]
    send: dict[str, Any] | None  # the task's keyword arguments when something new was saved


def save_results(args: dict[str, Any], *, brief: Brief, saved: dict[str, Any]) -> SaveOutcome:
    """Check ``args`` against the call's fields; ``saved`` (the values kept so far on this call) is updated
    with the valid ones. Pure: the caller sends :attr:`SaveOutcome.send` as ``media.save_results``."""
    fields = {field.name: field for field in result_fields(brief)}
    if not fields:
        return SaveOutcome({"ok": False, "error": "this call has no result fields"}, None)
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in args.items():
        field = fields.get(str(key))
        if field is None:
            errors[str(key)[:40]] = "is not a result field of this call"
            continue
        if value is None or value == "":
            continue
        try:
            values[field.name] = result_value_clean(field.as_dict(), value)
        except ValueError as exc:
            errors[field.name] = str(exc)
    if not values:
        output: dict[str, Any] = {"ok": False, "error": "nothing valid to save: give at least one field"}
        if errors:
            output["errors"] = errors
        return SaveOutcome(output, None)
    saved.update(values)
    missing = [name for name, field in fields.items() if field.required and name not in saved]
    output = {"ok": True, "saved": sorted(values), "still_needed": missing}
    if errors:
        output["errors"] = errors
    send = {"call_id": brief.call_id, "tenant_id": brief.tenant_id, "fields": dict(saved)}
    return SaveOutcome(output, send)


TASK = media_tasks.SAVE_RESULTS
