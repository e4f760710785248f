"""``portal`` in every template: the signed-in member's context (portal/access.py), or None."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def portal(request: HttpRequest) -> dict[str, Any]:
    return {"portal": getattr(request, "portal", None)}
