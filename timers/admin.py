"""The durable timers, read-only: they are set, re-armed, fired and cancelled by their owners' services only
(a hand edit of a due time or a token would break the exactly-once firing)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from timers.models import Timer


@admin.register(Timer)
class TimerAdmin(admin.ModelAdmin):
    list_display = ("key", "kind", "state", "due_at", "fired_at", "failures", "updated_at")
    list_filter = ("state", "kind")
    search_fields = ("key",)
    date_hierarchy = "due_at"
    readonly_fields = (
        "kind",
        "key",
        "due_at",
        "token",
        "state",
        "payload",
        "fired_at",
        "failures",
        "last_error",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
