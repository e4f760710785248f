"""Portal pages: Calls (a placeholder until its pages are built)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from portal.access import portal_view


@portal_view()
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/placeholder.html", {"title": "Calls"})


urlpatterns = [
    path("", index, name="calls"),
]
