"""Project-wide REST API plumbing: the capped paginator and the exception handler.

Services reject bad input with :class:`orchestrator.errors.InvalidInput` (DESIGN.md §5 rule 6); the handler
answers it as DRF's field-level validation error, ``400 {"<field>": ["<message>"]}``. A Django
``ObjectDoesNotExist`` escaping a selector (e.g. another tenant's lead) is a 404, never a 500 (rule 7).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ObjectDoesNotExist
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from orchestrator.errors import InvalidInput


class CappedPageNumberPagination(PageNumberPagination):
    """``?page=N&page_size=M``: 50 a page by default, never more than 200 (a larger ask gets 200)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, InvalidInput):
        # "__all__" (a model-wide check, e.g. a unique name) is DRF's non_field_errors.
        field = api_settings.NON_FIELD_ERRORS_KEY if exc.field == NON_FIELD_ERRORS else exc.field
        exc = ValidationError({field: [exc.message]})
    elif isinstance(exc, ObjectDoesNotExist):
        exc = NotFound()
    return drf_exception_handler(exc, context)
