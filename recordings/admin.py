"""Recordings in the admin: read only (they are made by the Stasis app and the fetch task, and deleted by the
retention sweep)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from recordings.models import Recording


@admin.register(Recording)
class RecordingAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "state", "duration", "size", "created_at", "delete_after", "deleted_at"]
    list_filter = ["state", "tenant"]
    search_fields = ["name", "sha256"]
    raw_id_fields = ["attempt"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Recording | None = None) -> bool:
        return False
