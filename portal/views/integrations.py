"""Portal pages: the tenant's outgoing webhooks (settings area, Capability.SETTINGS), through the
integrations API's input serializer, services and selectors:

* **Outgoing webhooks**: the endpoints, and a form to add one; the signing secret is shown once, on the
  answer to the POST that made it (never stored in clear, never in a flash message).
* **An endpoint**: edit it (URL, event types, enabled), rotate its secret (shown once), send a test event,
  delete it, and its delivery log (status, tries, last HTTP code, answer excerpt, next try) with
  "redeliver" on each delivery.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from integrations.api.serializers import WebhookEndpointInputSerializer
from integrations.events import EVENT_TYPES
from integrations.models import WebhookEndpoint
from integrations.selectors import webhook_delivery_list, webhook_endpoint_list
from integrations.services.deliveries import webhook_redeliver, webhook_test_send
from integrations.services.endpoints import (
    EndpointWithSecret,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from orchestrator.errors import InvalidInput
from portal.access import PortalRequest, portal_audit, portal_view
from portal.forms import Bound, bind, initial
from portal.pagination import paginate
from tenants.roles import Capability


def _portal(request: HttpRequest) -> PortalRequest:
    return request  # type: ignore[return-value]  # portal_view has set request.portal


def _label(endpoint: WebhookEndpoint) -> str:
    return f"webhook endpoint {endpoint.pk} ({endpoint.url[:100]})"


def _shown_once(response: HttpResponse, made: EndpointWithSecret | None) -> HttpResponse:
    if made is not None:
        add_never_cache_headers(response)  # the secret must not be kept by any cache
    return response


@portal_view(Capability.SETTINGS)
def endpoints(request: HttpRequest) -> HttpResponse:
    portal = _portal(request).portal
    form = initial({"enabled": True})
    made: EndpointWithSecret | None = None
    if request.method == "POST":
        form = bind(WebhookEndpointInputSerializer, request.POST)
        if form.ok:
            try:
                made = webhook_endpoint_create(tenant=portal.tenant, **form.data)
            except InvalidInput as exc:
                form.add_invalid(exc)
            else:
                portal_audit(request, "webhook_endpoint.create", _label(made.endpoint))
                form = initial({"enabled": True})
    context = {
        "title": "Outgoing webhooks",
        "form": form,
        "made": made,
        "endpoints": webhook_endpoint_list(tenant=portal.tenant),
        "event_types": EVENT_TYPES,
    }
    response = render(
        request, "portal/integrations/endpoints.html", context, status=400 if form.errors else 200
    )
    return _shown_once(response, made)


@portal_view(Capability.SETTINGS)
def endpoint_detail(request: HttpRequest, pk: int) -> HttpResponse:
    portal = _portal(request).portal
    endpoint = get_object_or_404(webhook_endpoint_list(tenant=portal.tenant), pk=pk)
    form: Bound = initial(
        {
            "url": endpoint.url,
            "description": endpoint.description,
            "event_types": endpoint.event_types,
            "enabled": endpoint.enabled,
        }
    )
    if request.method == "POST":
        form = bind(WebhookEndpointInputSerializer, request.POST)
        if form.ok:
            try:
                webhook_endpoint_update(endpoint=endpoint, **form.data)
            except InvalidInput as exc:
                form.add_invalid(exc)
            else:
                portal_audit(request, "webhook_endpoint.update", _label(endpoint))
                messages.success(request, "Webhook endpoint saved.")
                return redirect("portal:webhook-endpoint", pk=endpoint.pk)
    return _detail(request, endpoint, form=form, made=None)


def _detail(
    request: HttpRequest, endpoint: WebhookEndpoint, *, form: Bound, made: EndpointWithSecret | None
) -> HttpResponse:
    portal = _portal(request).portal
    page = paginate(
        request, webhook_delivery_list(tenant=portal.tenant, endpoint_id=endpoint.pk).defer("payload")
    )
    context: dict[str, Any] = {
        "title": "Webhook endpoint",
        "endpoint": endpoint,
        "form": form,
        "made": made,
        "page": page,
        "event_types": EVENT_TYPES,
    }
    response = render(
        request, "portal/integrations/endpoint.html", context, status=400 if form.errors else 200
    )
    return _shown_once(response, made)


@require_POST
@portal_view(Capability.SETTINGS)
def endpoint_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    portal = _portal(request).portal
    endpoint = get_object_or_404(webhook_endpoint_list(tenant=portal.tenant), pk=pk)
    made = webhook_endpoint_rotate_secret(endpoint=endpoint)
    portal_audit(request, "webhook_endpoint.rotate_secret", _label(endpoint))
    form = initial(
        {"url": endpoint.url, "description": endpoint.description, "event_types": endpoint.event_types,
         "enabled": endpoint.enabled}
    )  # fmt: skip
    return _detail(request, endpoint, form=form, made=made)


@require_POST
@portal_view(Capability.SETTINGS)
def endpoint_test(request: HttpRequest, pk: int) -> HttpResponse:
    portal = _portal(request).portal
    endpoint = get_object_or_404(webhook_endpoint_list(tenant=portal.tenant), pk=pk)
    webhook_test_send(endpoint=endpoint)
    portal_audit(request, "webhook_endpoint.test", _label(endpoint))
    messages.success(request, "Test event queued: its delivery is at the top of the log below.")
    return redirect("portal:webhook-endpoint", pk=endpoint.pk)


@require_POST
@portal_view(Capability.SETTINGS)
def endpoint_delete(request: HttpRequest, pk: int) -> HttpResponse:
    portal = _portal(request).portal
    endpoint = get_object_or_404(webhook_endpoint_list(tenant=portal.tenant), pk=pk)
    label = _label(endpoint)
    webhook_endpoint_delete(endpoint=endpoint)
    portal_audit(request, "webhook_endpoint.delete", label)
    messages.success(request, "Webhook endpoint deleted.")
    return redirect("portal:webhook-endpoints")


@require_POST
@portal_view(Capability.SETTINGS)
def delivery_redeliver(request: HttpRequest, delivery_id: UUID) -> HttpResponse:
    portal = _portal(request).portal
    delivery = get_object_or_404(webhook_delivery_list(tenant=portal.tenant), pk=delivery_id)
    webhook_redeliver(delivery=delivery)
    portal_audit(request, "webhook_delivery.redeliver", str(delivery.pk))
    messages.success(request, "Delivery queued again (same Webhook-Id).")
    return redirect("portal:webhook-endpoint", pk=delivery.endpoint_id)


urlpatterns = [
    path("", endpoints, name="webhook-endpoints"),
    path("<int:pk>/", endpoint_detail, name="webhook-endpoint"),
    path("<int:pk>/rotate-secret", endpoint_rotate, name="webhook-endpoint-rotate"),
    path("<int:pk>/test", endpoint_test, name="webhook-endpoint-test"),
    path("<int:pk>/delete", endpoint_delete, name="webhook-endpoint-delete"),
    path("deliveries/<uuid:delivery_id>/redeliver", delivery_redeliver, name="webhook-delivery-redeliver"),
]
