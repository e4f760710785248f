from django.contrib import admin
from django.http import HttpRequest

from flows.models import InboundCall


@admin.register(InboundCall)
class InboundCallAdmin(admin.ModelAdmin):
    """Inbound calls are recorded by the Stasis app's sink; the admin only shows them."""

    list_display = ("started_at", "did", "caller_number", "caller_name", "handling", "status", "ended_at")
    list_filter = ("status", "handling")
    search_fields = ("did", "caller_number", "caller_name", "channel_id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: InboundCall | None = None) -> bool:
        return False
