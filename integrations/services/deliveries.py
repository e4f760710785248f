"""The webhook outbox: recording events (in the caller's transaction), delivering them, retries.

Delivery guarantees
-------------------
* An event's :class:`~integrations.models.WebhookDelivery` rows are written in the transaction that makes
  the event true (:func:`webhook_event_record`), so an event is reported exactly when it happened.
* A delivery is sent at least once: the task enqueued after the commit is an optimisation; the beat sweep
  (:func:`webhook_deliveries_due`) enqueues every pending delivery that is due, whatever message was lost.
  Before sending, a try **leases** the row (``next_attempt_at`` moves past the request's timeout) in a
  short transaction of its own, so a sweep running meanwhile does not send it a second time; a worker that
  dies mid-request leaves the lease to expire and the sweep to retry.
* The receiver de-duplicates by ``Webhook-Id`` (the delivery id, the same on every try).
* Each try checks the URL policy again (tenants/urlpolicy.PolicyTransport connects only to the address it
  checked: no DNS rebinding), has a timeout, and reads at most ``WEBHOOK_RESPONSE_MAX_BYTES`` of the answer.
* A 2xx answer delivers; anything else (another status, a timeout, a refused address) is a failed try,
  retried after ``WEBHOOK_BACKOFF_S[try - 1]`` seconds (the last entry repeats) until
  ``WEBHOOK_MAX_ATTEMPTS`` tries were made: then ``failed`` (until someone asks to redeliver).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
from celery import current_app
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from integrations.events import TEST
from integrations.models import EXCERPT_MAX_LENGTH, WebhookDelivery, WebhookEndpoint
from integrations.services.endpoints import webhook_endpoint_secret
from integrations.signing import EVENT_HEADER, ID_HEADER, SIGNATURE_HEADER, signature_header
from orchestrator import crypto
from tenants.urlpolicy import PolicyTransport, UrlPolicy

logger = logging.getLogger(__name__)

__all__ = [
    "DELIVER_TASK",
    "DeliveryResult",
    "backoff_s",
    "webhook_deliver",
    "webhook_deliveries_due",
    "webhook_deliveries_prune",
    "webhook_event_record",
    "webhook_redeliver",
    "webhook_test_send",
]

#: The Celery task that makes one try (integrations/tasks.py); named here so services need not import tasks.
DELIVER_TASK = "integrations.deliver_webhook"
#: A failed try whose next one is due within this many seconds is also enqueued with a countdown (the sweep
#: is the guarantee; longer delays are left to it, never to a long-lived delayed message).
_COUNTDOWN_MAX_S = 300.0
_LEASE_GRACE_S = 30.0
USER_AGENT = "voice-campaign-orchestrator-webhooks/1"


def backoff_s(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed try (1-based); the schedule's last entry repeats."""
    schedule = [float(s) for s in settings.WEBHOOK_BACKOFF_S] or [60.0]
    return schedule[min(max(attempts, 1), len(schedule)) - 1]


def _enqueue(delivery_id: UUID, *, countdown: float = 0.0) -> None:
    current_app.send_task(DELIVER_TASK, args=[str(delivery_id)], countdown=countdown or None)


def _enqueue_on_commit(delivery_ids: list[UUID]) -> None:
    def enqueue() -> None:
        for delivery_id in delivery_ids:
            _enqueue(delivery_id)

    if delivery_ids:
        transaction.on_commit(enqueue)


def _json_safe(data: Any) -> Any:
    """``data`` as plain JSON values (datetimes ISO 8601, UUIDs and decimals as text)."""
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _payload(*, event_id: UUID, event_type: str, tenant_id: int, at: datetime, data: Any) -> dict[str, Any]:
    return {
        "id": str(event_id),
        "type": event_type,
        "created_at": at.isoformat(),
        "tenant_id": tenant_id,
        "data": _json_safe(data),
    }


def webhook_event_record(
    *, tenant_id: int, event_type: str, data: dict[str, Any], at: datetime | None = None
) -> list[UUID]:
    """Record ``event_type`` for every enabled endpoint of the tenant that subscribes to it: one outbox row
    each, written in the caller's transaction and sent after it commits. Returns the delivery ids (none
    when the tenant has no such endpoint: one indexed query, nothing written)."""
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(tenant_id=tenant_id, enabled=True)
        if endpoint.wants(event_type)
    ]
    if not endpoints:
        return []
    at = at or timezone.now()
    event_id = uuid4()
    payload = _payload(event_id=event_id, event_type=event_type, tenant_id=tenant_id, at=at, data=data)
    rows = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            tenant_id=tenant_id,
            endpoint=endpoint,
            event_type=event_type,
            event_id=event_id,
            payload=payload,
            next_attempt_at=at,
            created_at=at,
        )
        for endpoint in endpoints
    )
    ids = [row.pk for row in rows]
    _enqueue_on_commit(ids)
    return ids


def webhook_test_send(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A ``webhook.test`` event to this endpoint only (whatever it subscribes to, enabled or not)."""
    now = timezone.now()
    event_id = uuid4()
    data = {"message": "This is a test event.", "endpoint_id": endpoint.pk}
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            tenant_id=endpoint.tenant_id,
            endpoint=endpoint,
            event_type=TEST,
            event_id=event_id,
            payload=_payload(
                event_id=event_id, event_type=TEST, tenant_id=endpoint.tenant_id, at=now, data=data
            ),
            next_attempt_at=now,
            created_at=now,
        )
        _enqueue_on_commit([delivery.pk])
    return delivery


def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again (same ``Webhook-Id``, same body), with a fresh budget of tries."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update(no_key=True).get(pk=delivery.pk)
        delivery.status = WebhookDelivery.Status.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = timezone.now()
        delivery.save(update_fields=["status", "attempts", "next_attempt_at"])
        _enqueue_on_commit([delivery.pk])
    return delivery


def webhook_deliveries_prune(*, now: datetime | None = None, batch: int = 1000) -> int:
    """Delete delivered and failed deliveries older than ``WEBHOOK_LOG_RETENTION_DAYS`` (pending ones are
    kept whatever their age: they are still owed), at most ``batch`` per call; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=int(settings.WEBHOOK_LOG_RETENTION_DAYS))
    old = list(
        WebhookDelivery.objects.filter(created_at__lt=cutoff)
        .exclude(status=WebhookDelivery.Status.PENDING)
        .order_by("created_at")
        .values_list("pk", flat=True)[:batch]
    )
    if not old:
        return 0
    deleted, _ = WebhookDelivery.objects.filter(pk__in=old).delete()
    return deleted


def webhook_deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[UUID]:
    """Pending deliveries whose try is due (the sweep enqueues them)."""
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


# ------------------------------------------------------------------------------------------- one try


@dataclass(frozen=True)
class DeliveryResult:
    outcome: str  # "delivered", "retry", "failed", "skipped"
    status_code: int | None = None
    retry_in_s: float = 0.0


@dataclass(frozen=True)
class _Answer:
    status_code: int | None
    excerpt: str
    error: str


def _post(url: str, body: bytes, headers: dict[str, str]) -> _Answer:
    """POST through the URL policy's transport; at most WEBHOOK_RESPONSE_MAX_BYTES of the answer read."""
    cap = int(settings.WEBHOOK_RESPONSE_MAX_BYTES)
    timeout = float(settings.WEBHOOK_TIMEOUT_S)
    transport = PolicyTransport(UrlPolicy.from_settings())
    try:
        with httpx.Client(transport=transport, timeout=timeout, follow_redirects=False) as client:
            with client.stream("POST", url, content=body, headers=headers) as response:
                received = bytearray()
                for chunk in response.iter_bytes():
                    received += chunk
                    if len(received) >= cap:
                        break
                excerpt = bytes(received[:cap]).decode("utf-8", errors="replace")[:EXCERPT_MAX_LENGTH]
                return _Answer(response.status_code, excerpt, "")
    except httpx.HTTPError as exc:
        return _Answer(None, "", f"{type(exc).__name__}: {exc}"[:EXCERPT_MAX_LENGTH])


def webhook_deliver(*, delivery_id: UUID, now: datetime | None = None) -> DeliveryResult:
    """One try of a due pending delivery (safe to run twice: a delivery not due, or leased by a try in
    flight, is skipped). See the module docstring."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(no_key=True, skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if delivery is None:
            return DeliveryResult("skipped")
        endpoint = delivery.endpoint
        if not endpoint.enabled and delivery.event_type != TEST:
            delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
            delivery.last_error = "the endpoint is disabled"
            delivery.save(update_fields=["status", "next_attempt_at", "last_error"])
            return DeliveryResult("failed")
        try:
            secret = webhook_endpoint_secret(endpoint)
        except crypto.InvalidToken:
            delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
            delivery.last_error = "the endpoint's secret cannot be decrypted (rotate it)"
            delivery.save(update_fields=["status", "next_attempt_at", "last_error"])
            return DeliveryResult("failed")
        delivery.attempts += 1
        delivery.last_attempt_at = now
        lease = float(settings.WEBHOOK_TIMEOUT_S) + _LEASE_GRACE_S
        delivery.next_attempt_at = now + timedelta(seconds=lease)
        delivery.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at"])
        attempt_number, url = delivery.attempts, endpoint.url
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        ID_HEADER: str(delivery.pk),
        EVENT_HEADER: delivery.event_type,
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
    }
    answer = _post(url, body, headers)
    return _record_try(delivery_id=delivery.pk, attempt_number=attempt_number, answer=answer)


def _record_try(*, delivery_id: UUID, attempt_number: int, answer: _Answer) -> DeliveryResult:
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update(no_key=True).get(pk=delivery_id)
        if delivery.status != WebhookDelivery.Status.PENDING or delivery.attempts != attempt_number:
            return DeliveryResult("skipped", answer.status_code)  # redelivered meanwhile: that try decides
        delivery.last_status_code = answer.status_code
        delivery.response_excerpt = answer.excerpt
        delivery.last_error = answer.error
        fields = ["last_status_code", "response_excerpt", "last_error", "status", "next_attempt_at"]
        if answer.status_code is not None and 200 <= answer.status_code < 300:
            delivery.status, delivery.next_attempt_at, delivery.delivered_at = (
                WebhookDelivery.Status.DELIVERED,
                None,
                now,
            )
            delivery.save(update_fields=[*fields, "delivered_at"])
            return DeliveryResult("delivered", answer.status_code)
        if not answer.error:
            delivery.last_error = f"HTTP {answer.status_code}"
        if delivery.attempts >= int(settings.WEBHOOK_MAX_ATTEMPTS):
            delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
            delivery.save(update_fields=fields)
            logger.warning("webhook %s: failed after %s tries", delivery.pk, delivery.attempts)
            return DeliveryResult("failed", answer.status_code)
        delay = backoff_s(delivery.attempts)
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        delivery.save(update_fields=fields)
        if delay <= _COUNTDOWN_MAX_S:
            transaction.on_commit(lambda: _enqueue(delivery_id, countdown=delay))
        return DeliveryResult("retry", answer.status_code, delay)
