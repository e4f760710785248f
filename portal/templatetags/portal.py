"""Template helpers of the portal: form fields with their errors, pagination links, durations."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django import template
from django.http import HttpRequest

from portal.forms import Bound
from portal.pagination import page_query

register = template.Library()


@register.inclusion_tag("portal/_field.html")
def field(
    form: Bound | None,
    name: str,
    label: str,
    type: str = "text",  # noqa: A002 - the HTML attribute's name
    help: str = "",  # noqa: A002
    choices: Any = None,
    required: bool = False,
    value: Any = None,
    placeholder: str = "",
    rows: int = 4,
) -> dict[str, Any]:
    """One labelled input (``type``: text, number, email, password, tel, time, date, datetime-local,
    textarea, select, checkbox) showing the submitted value and the errors for ``name`` beside it."""
    values = form.values if form is not None else {}
    current = values.get(name, value) if form is not None and form.submitted else values.get(name, value)
    if current is None:
        current = ""
    errors = form.errors.get(name, []) if form is not None else []
    return {
        "name": name,
        "label": label,
        "type": type,
        "help": help,
        "choices": [
            (str(c[0]), c[1]) if isinstance(c, list | tuple) else (str(c), str(c)) for c in choices or []
        ],
        "required": required,
        "value": current,
        "value_str": str(current).lower() if isinstance(current, bool) else str(current),
        "checked": current in (True, "on", "true", "1"),
        "errors": errors,
        "placeholder": placeholder,
        "rows": rows,
        "id": f"f-{name.replace('.', '-')}",
    }


def _choice(choice: Any) -> tuple[str, str]:
    if isinstance(choice, list | tuple):
        return str(choice[0]), str(choice[1])
    return str(choice), str(choice)


@register.inclusion_tag("portal/_form_errors.html")
def form_errors(form: Bound | None) -> dict[str, Any]:
    """The errors that belong to no one field."""
    return {"errors": form.errors.get("__all__", []) if form is not None else []}


@register.inclusion_tag("portal/_pagination.html", takes_context=True)
def pagination(context: dict[str, Any], page: Any) -> dict[str, Any]:
    request: HttpRequest = context["request"]
    return {
        "page": page,
        "prev_query": page_query(request, page.previous_page_number()) if page.has_previous() else "",
        "next_query": page_query(request, page.next_page_number()) if page.has_next() else "",
    }


@register.filter
def seconds(value: float | int | str | None) -> str:
    """``95.2`` → ``1:35``; empty for None."""
    if value is None or value == "":
        return ""
    total = int(round(float(value)))
    return str(timedelta(seconds=total)).removeprefix("0:") if total < 3600 else str(timedelta(seconds=total))


@register.filter
def percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.0f}%"


@register.filter
def get(mapping: Any, key: Any) -> Any:
    """``{{ mapping|get:key }}``: a dict's value by a variable key."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def startswith(value: str, prefix: str) -> bool:
    """``{% if request.path|startswith:"/calls/" %}`` (the nav's current section)."""
    return str(value).startswith(prefix)


@register.filter
def to_json(value: Any) -> str:
    """``data-chart-spec="{{ chart|to_json }}"``: JSON for an attribute (autoescaping quotes it). Not a
    ``<script>``: htmx drops script elements from the partials it swaps in."""
    return json.dumps(value, separators=(",", ":"), default=str)
