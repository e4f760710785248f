"""Writes for webhook endpoints: create (the secret is generated here and returned once), update, rotate the
secret, delete. The URL is checked against the operator's URL policy (tenants/urlpolicy.py) here, and again
at every delivery (integrations.services.deliveries)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from integrations.events import EVENT_TYPES
from integrations.models import URL_MAX_LENGTH, WebhookEndpoint
from integrations.signing import secret_generate
from orchestrator import crypto
from orchestrator.errors import InvalidInput
from tenants.models import Tenant
from tenants.urlpolicy import UrlPolicy

__all__ = [
    "EndpointWithSecret",
    "webhook_endpoint_create",
    "webhook_endpoint_delete",
    "webhook_endpoint_rotate_secret",
    "webhook_endpoint_secret",
    "webhook_endpoint_update",
]

MAX_ENDPOINTS_PER_TENANT = 20


@dataclass(frozen=True)
class EndpointWithSecret:
    """An endpoint and its secret in clear: only ever returned right after it was made."""

    endpoint: WebhookEndpoint
    secret: str


def _clean_url(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("url", "is required")
    url = url.strip()
    if len(url) > URL_MAX_LENGTH:
        raise InvalidInput("url", f"is longer than {URL_MAX_LENGTH} characters")
    UrlPolicy.from_settings().check_url(url, field="url")
    return url


def _clean_event_types(event_types: object) -> list[str]:
    if event_types is None:
        return []
    if not isinstance(event_types, list | tuple) or not all(isinstance(e, str) for e in event_types):
        raise InvalidInput("event_types", "must be a list of event type names")
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise InvalidInput("event_types", f"unknown: {', '.join(unknown)} (known: {', '.join(EVENT_TYPES)})")
    return list(dict.fromkeys(event_types))


def webhook_endpoint_create(
    *,
    tenant: Tenant,
    url: str,
    description: str = "",
    event_types: Iterable[str] | None = None,
    enabled: bool = True,
) -> EndpointWithSecret:
    clean_url = _clean_url(url)
    types = _clean_event_types(list(event_types) if event_types is not None else None)
    if WebhookEndpoint.objects.filter(tenant=tenant).count() >= MAX_ENDPOINTS_PER_TENANT:
        raise InvalidInput("url", f"a tenant has at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints")
    secret = secret_generate()
    endpoint = WebhookEndpoint.objects.create(
        tenant=tenant,
        url=clean_url,
        description=str(description or "")[:200],
        event_types=types,
        enabled=bool(enabled),
        secret_encrypted=crypto.encrypt(secret),
    )
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, **changes: Any) -> WebhookEndpoint:
    fields = []
    if "url" in changes:
        endpoint.url = _clean_url(changes["url"])
        fields.append("url")
    if "description" in changes:
        endpoint.description = str(changes["description"] or "")[:200]
        fields.append("description")
    if "event_types" in changes:
        endpoint.event_types = _clean_event_types(changes["event_types"])
        fields.append("event_types")
    if "enabled" in changes:
        endpoint.enabled = bool(changes["enabled"])
        fields.append("enabled")
    if fields:
        endpoint.save(update_fields=[*fields, "updated_at"])
    return endpoint


def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> EndpointWithSecret:
    """A new secret, effective at once (deliveries not yet sent are signed with it)."""
    secret = secret_generate()
    endpoint.secret_encrypted = crypto.encrypt(secret)
    endpoint.save(update_fields=["secret_encrypted", "updated_at"])
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


def webhook_endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return crypto.decrypt(endpoint.secret_encrypted)


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()
