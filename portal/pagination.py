"""Pages of a list: every portal list that can grow is paginated (PORTAL_PAGE_SIZE rows a page)."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest

PORTAL_PAGE_SIZE = 50


def paginate(request: HttpRequest, queryset: QuerySet[Any], *, per_page: int = PORTAL_PAGE_SIZE) -> Page[Any]:
    """The page named by ``?page=`` (the last page when past the end, the first when not a number)."""
    paginator = Paginator(queryset, per_page)
    return paginator.get_page(request.GET.get("page"))


def page_query(request: HttpRequest, page_number: int) -> str:
    """The current query string with ``page`` replaced (filters kept across pages)."""
    query = request.GET.copy()
    query["page"] = str(page_number)
    return query.urlencode()
