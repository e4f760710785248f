"""Reads of integrations, always scoped by tenant."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from integrations.models import WebhookDelivery, WebhookEndpoint
from tenants.models import Tenant


def webhook_endpoints_exist(*, tenant_field: str = "tenant_id") -> Exists:
    """An expression for a query of rows with a tenant: whether that tenant has an enabled webhook
    endpoint. A hot path (the end of every call) annotates its row with it, so a tenant without webhooks
    costs no statement at all."""
    return Exists(WebhookEndpoint.objects.filter(tenant_id=OuterRef(tenant_field), enabled=True))


def webhook_endpoint_list(*, tenant: Tenant) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(tenant=tenant).order_by("pk")


def webhook_delivery_list(
    *, tenant: Tenant, endpoint_id: int | None = None, status: str | None = None
) -> QuerySet[WebhookDelivery]:
    deliveries = WebhookDelivery.objects.filter(tenant=tenant).select_related("endpoint")
    if endpoint_id is not None:
        deliveries = deliveries.filter(endpoint_id=endpoint_id)
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries.order_by("-created_at", "-pk")
