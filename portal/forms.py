"""Portal forms validated by the REST API's own input serializers, then written by the same services.

A portal form is plain HTML whose field names are the API's. :func:`bind` turns the POST into what the API
would receive (checkboxes to booleans, repeated names to lists, JSON text to JSON, blank optional numbers
left out), validates it with the API's serializer and gives back the values to show again and the errors per
field. A service's :class:`~orchestrator.errors.InvalidInput` is added with :meth:`Bound.add_error`. So there
is one copy of every rule, and the portal shows the API's messages beside the field they name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.http import QueryDict
from rest_framework import serializers

from orchestrator.errors import InvalidInput

FORM_ERRORS = "__all__"
_LIST_FIELDS = (serializers.ListField, serializers.MultipleChoiceField, serializers.ManyRelatedField)


@dataclass
class Bound:
    """A submitted (or empty) form: ``values`` to show again, ``errors`` per field, and ``data`` (the
    serializer's validated data) when valid."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    data: Any = None
    submitted: bool = False

    @property
    def ok(self) -> bool:
        return self.submitted and not self.errors

    def add_error(self, name: str, message: str) -> None:
        self.errors.setdefault(_field_name(name), []).append(message)

    def add_invalid(self, exc: InvalidInput) -> None:
        self.add_error(exc.field, exc.message)


def _field_name(name: str) -> str:
    return FORM_ERRORS if name in (NON_FIELD_ERRORS, "non_field_errors", "") else name


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's error detail (nested dicts and lists) as ``{"steps.1.wait_s": ["..."]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            name = _field_name(str(key))
            path = f"{prefix}.{name}" if prefix and name != FORM_ERRORS else (prefix or name)
            for k, v in flatten_errors(value, path).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list) and detail and all(isinstance(item, str) for item in detail):
        out[prefix or FORM_ERRORS] = [str(item) for item in detail]
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            if item:
                for k, v in flatten_errors(item, f"{prefix}.{index}" if prefix else str(index)).items():
                    out.setdefault(k, []).extend(v)
    elif detail:
        out[prefix or FORM_ERRORS] = [str(detail)]
    return out


def initial(values: Mapping[str, Any]) -> Bound:
    """An unsubmitted form showing ``values`` (e.g. an object's current fields)."""
    return Bound(values=dict(values))


def post_to_data(
    post: QueryDict, serializer: serializers.Serializer[Any], *, json_fields: Iterable[str] = ()
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The POST as the API body the serializer expects, and errors for JSON fields that do not parse."""
    data: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    json_names = set(json_fields)
    for name, fld in serializer.fields.items():
        if fld.read_only:
            continue
        if isinstance(fld, serializers.BooleanField):
            if name in post or f"{name}__present" in post:
                data[name] = post.get(name) in ("on", "true", "1", "yes")
            continue
        if name in json_names:
            text = post.get(name, "").strip()
            if text:
                try:
                    data[name] = json.loads(text)
                except ValueError as exc:
                    errors[name] = [f"Not valid JSON: {exc}"]
            continue
        if isinstance(
            fld, serializers.ListField | serializers.MultipleChoiceField | serializers.ManyRelatedField
        ):
            if name in post or f"{name}__present" in post:
                data[name] = [v for v in post.getlist(name) if v.strip()]
            continue
        if name not in post:
            continue
        value = post.get(name, "")
        if value.strip() == "" and not isinstance(fld, serializers.CharField):
            if fld.allow_null:
                data[name] = None
            continue  # a blank optional number, date or choice: not given
        if isinstance(fld, serializers.IntegerField | serializers.PrimaryKeyRelatedField):
            try:
                data[name] = int(value)
            except ValueError:
                errors[name] = ["A whole number is required."]
            continue
        if isinstance(fld, serializers.FloatField):
            try:
                data[name] = float(value)
            except ValueError:
                errors[name] = ["A number is required."]
            continue
        data[name] = value
    return data, errors


def bind(
    serializer_class: type[serializers.Serializer[Any]],
    post: QueryDict,
    *,
    context: dict[str, Any] | None = None,
    partial: bool = False,
    json_fields: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> Bound:
    """Validate a submitted portal form with the API's input serializer (see the module docstring).
    ``extra`` adds values that are not form fields (e.g. a campaign id from the URL)."""
    serializer = serializer_class(context=context or {})
    data, errors = post_to_data(post, serializer, json_fields=json_fields)
    data.update(extra or {})
    values: dict[str, Any] = {k: (post.getlist(k) if len(post.getlist(k)) > 1 else post.get(k)) for k in post}
    values.pop("csrfmiddlewaretoken", None)
    bound = Bound(values=values, errors=errors, submitted=True)
    if errors:
        return bound
    serializer = serializer_class(data=data, partial=partial, context=context or {})
    if serializer.is_valid():
        bound.data = serializer.validated_data
    else:
        bound.errors = flatten_errors(serializer.errors)
    return bound


def bind_query(
    serializer_class: type[serializers.Serializer[Any]], query: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """A list page's filters from its query string, checked by the API's filter serializer: the valid
    filters, and the errors of the others, which are left out (the list shows what the valid ones select)."""
    data = {name: value for name, value in query.items() if str(value).strip()}
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return dict(serializer.validated_data), {}
    errors = flatten_errors(serializer.errors)
    kept = {name: value for name, value in data.items() if name not in errors}
    retry = serializer_class(data=kept)
    if retry.is_valid():
        return dict(retry.validated_data), errors
    good: dict[str, Any] = {}  # an error across fields: each remaining filter on its own
    for name, value in kept.items():
        one = serializer_class(data={name: value}, partial=True)
        if one.is_valid():
            good.update(one.validated_data)
    return good, errors
