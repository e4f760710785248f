"""The types of a campaign's result fields and the check of one value (standard library only: the media
worker checks the agent's ``save_results`` arguments with it, the orchestrator checks them again with it
before storing; see campaigns/results.py for the fields themselves)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

RESULT_TYPES: tuple[str, ...] = ("text", "number", "boolean", "datetime", "choice")
RESULT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
TEXT_VALUE_MAX_LENGTH = 1000
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


def result_value_clean(field: Mapping[str, Any], value: object) -> Any:
    """``value`` as the field's type; ValueError (a message for the model or the log) if it is not one."""
    kind = field.get("type", "text")
    if kind == "text":
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("must be text")
        text = str(value).strip()
        if not text:
            raise ValueError("is empty")
        return text[:TEXT_VALUE_MAX_LENGTH]
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError("must be a number")
        if isinstance(value, str):
            try:
                value = float(value.strip().replace(",", ""))
            except ValueError:
                raise ValueError("must be a number") from None
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError("must be a number")
        return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError("must be true or false")
    if kind == "datetime":
        if not isinstance(value, str):
            raise ValueError("must be an ISO-8601 date and time with an offset")
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO-8601 date and time") from None
        if when.tzinfo is None:
            raise ValueError("needs a UTC offset (e.g. 2026-05-01T15:00:00-04:00)")
        return when.isoformat()
    if kind == "choice":
        choices = [str(c) for c in field.get("choices") or []]
        if isinstance(value, str):
            for choice in choices:
                if choice.lower() == value.strip().lower():
                    return choice
        raise ValueError(f"must be one of {', '.join(choices)}")
    raise ValueError(f"unknown field type {kind!r}")
