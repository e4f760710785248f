"""Project-wide REST API plumbing: the capped paginator, id fields and the exception handler.

Services reject bad input with :class:`orchestrator.errors.InvalidInput` (DESIGN.md §5 rule 6); the handler
answers it as DRF's field-level validation error, ``400 {"<field>": ["<message>"]}``. A Django
``ObjectDoesNotExist`` escaping a selector (e.g. another tenant's lead) is a 404, never a 500 (rule 7).
A body Django refuses to read is answered in JSON too: too large is a 413, too many fields (or any other
request Django finds suspicious) a 400 (outside a view: orchestrator/http_errors.py).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import (
    NON_FIELD_ERRORS,
    ObjectDoesNotExist,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db.models import Model
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, ParseError, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from orchestrator.errors import InvalidInput

#: The largest id a row can have (a 64-bit signed primary key): a larger one cannot exist, and the
#: databases refuse to even compare with it (SQLite raises OverflowError), so it is refused before any query.
MAX_OBJECT_ID = 2**63 - 1
#: The largest count or limit a body may give (PositiveIntegerField's range on every database).
MAX_POSITIVE_INT = 2**31 - 1


class ObjectIdField(serializers.IntegerField):
    """An object id in a query or a body (1 … :data:`MAX_OBJECT_ID`): anything else is a 400 naming it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_OBJECT_ID)
        super().__init__(**kwargs)


# The JSON types a body may give each kind of input field. DRF would coerce "5" to 5 and 5 to "5"; the API
# takes what its schema says instead, so a client's type mistake is a 400 naming the field, not a guess.
_JSON_TYPES: tuple[tuple[type[serializers.Field[Any, Any, Any, Any]], tuple[type, ...], str], ...] = (
    (serializers.BooleanField, (bool,), "true or false"),
    (serializers.IntegerField, (int,), "a whole number"),
    (serializers.PrimaryKeyRelatedField, (int,), "an id (a whole number)"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.CharField, (str,), "text"),
    (serializers.ChoiceField, (str,), "text"),
    (serializers.DateTimeField, (str,), "a date and time in ISO 8601 text"),
)

_JSON_NAMES = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "text",
    list: "an array",
    dict: "an object",
}


def check_json_types(serializer: serializers.BaseSerializer[Any], data: Any) -> None:
    """Refuse (400, naming each field) a JSON body whose values are not of their field's JSON type (see
    _JSON_TYPES; ``null`` is left to the field's ``allow_null``). Form data (a QueryDict, all text) and a
    body that is not an object (the serializer says "expected a dictionary") are left to DRF."""
    if not isinstance(data, dict) or not isinstance(serializer, serializers.Serializer):
        return
    errors: dict[str, list[str]] = {}
    for name, field in serializer.fields.items():
        if field.read_only or name not in data or data[name] is None:
            continue
        value = data[name]
        for field_class, json_types, kind in _JSON_TYPES:
            if isinstance(field, field_class):
                if isinstance(value, bool) and bool not in json_types or not isinstance(value, json_types):
                    errors[name] = [f"must be {kind}, not {_JSON_NAMES.get(type(value), 'that')}"]
                break
    if errors:
        raise ValidationError(errors)


_M = TypeVar("_M", bound=Model)


class OutputModelSerializer(serializers.ModelSerializer[_M]):
    """The base of the API's output serializers: a read-only field keeps ``allow_blank`` from its model
    field. DRF drops it from read-only fields, so the schema of a blank-able choice (``Lead.last_outcome``
    before any call, ``CallAttempt.disposition``) left out ``""``, and the answers holding ``""`` broke
    their own schema."""

    def include_extra_kwargs(
        self, kwargs: MutableMapping[str, Any], extra_kwargs: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        allow_blank = kwargs.get("allow_blank", False)
        kwargs = super().include_extra_kwargs(kwargs, extra_kwargs)
        if allow_blank and kwargs.get("read_only"):
            kwargs["allow_blank"] = True
        return kwargs


class CappedPageNumberPagination(PageNumberPagination):
    """``?page=N&page_size=M``: 50 a page by default, never more than 200 (a larger ask gets 200). A
    ``page`` (other than ``last``) or ``page_size`` that is not a whole number of at least 1 is a 400 naming
    it; a page past the last is DRF's 404 ("Invalid page.")."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def _positive(self, request: Request, name: str) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        try:
            number = int(raw)
        except ValueError:
            number = 0
        if number < 1:
            raise ValidationError({name: ["must be a whole number of at least 1"]})
        return number

    def get_page_size(self, request: Request) -> int:
        size = self._positive(request, self.page_size_query_param)
        return self.page_size if size is None else min(size, self.max_page_size)

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        if request.query_params.get(self.page_query_param) in self.last_page_strings:
            return paginator.num_pages
        return self._positive(request, self.page_query_param) or 1

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
        return parameters


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        )
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        exc = ParseError(f"Too many form fields or files: {exc}")
    elif isinstance(exc, SuspiciousOperation):
        exc = ParseError("Bad request.")
    elif isinstance(exc, InvalidInput):
        # "__all__" (a model-wide check, e.g. a unique name) is DRF's non_field_errors.
        field = api_settings.NON_FIELD_ERRORS_KEY if exc.field == NON_FIELD_ERRORS else exc.field
        exc = ValidationError({field: [exc.message]})
    elif isinstance(exc, ObjectDoesNotExist):
        exc = NotFound()
    return drf_exception_handler(exc, context)
