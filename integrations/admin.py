"""The operator's view of webhooks: endpoints (the secret is never shown) and the delivery log."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from integrations.models import WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "tenant", "enabled", "created_at"]
    list_filter = ["enabled"]
    readonly_fields = ["tenant", "url", "created_at", "updated_at"]
    fields = ["tenant", "url", "description", "event_types", "enabled", "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made through the API or the portal, where the secret is generated and shown once


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "event_type", "tenant", "status", "attempts", "last_status_code", "created_at"]
    list_filter = ["status", "event_type"]
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]
