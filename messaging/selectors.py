"""Reads of messaging: every query a tenant reaches is scoped by its tenant (DESIGN.md §5 rule 7)."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from django.db.models import QuerySet
from django.utils import timezone

from messaging.lifecycle import MessageStatus
from messaging.models import Message, OptOut, SmsAccount, WebhookReceipt
from tenants.models import Tenant


def message_list(
    *,
    tenant: Tenant,
    direction: str | None = None,
    status: str | None = None,
    to_number: str | None = None,
    from_number: str | None = None,
    purpose: str | None = None,
    ref: str | None = None,
    since: datetime | None = None,
) -> QuerySet[Message]:
    messages = Message.objects.filter(tenant=tenant)
    if direction:
        messages = messages.filter(direction=direction)
    if status:
        messages = messages.filter(status=status)
    if to_number:
        messages = messages.filter(to_number=to_number)
    if from_number:
        messages = messages.filter(from_number=from_number)
    if purpose:
        messages = messages.filter(purpose=purpose)
    if ref:
        messages = messages.filter(ref=ref)
    if since is not None:
        messages = messages.filter(created_at__gte=since)
    return messages.order_by("-created_at", "-pk")


def opt_out_list(*, tenant: Tenant) -> QuerySet[OptOut]:
    return OptOut.objects.filter(tenant=tenant).order_by("-created_at", "-pk")


def opted_out(*, tenant_id: int, phone_number: str) -> bool:
    return OptOut.objects.filter(tenant_id=tenant_id, phone_number=phone_number).exists()


def sms_account_list(*, tenant: Tenant) -> QuerySet[SmsAccount]:
    return SmsAccount.objects.filter(tenant=tenant).order_by("pk")


def sms_account_for_webhook(*, webhook_id: UUID, kind: str) -> SmsAccount | None:
    """The enabled account a webhook URL names (its unguessable id), of the provider the route is for."""
    return (
        SmsAccount.objects.select_related("tenant")
        .filter(webhook_id=webhook_id, kind=kind, enabled=True)
        .first()
    )


def messages_due(*, older_than_s: float, limit: int = 500) -> list[int]:
    """Queued messages whose send is overdue (their task lost): for the sweep to enqueue again."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    return list(
        Message.objects.filter(
            direction=Message.Direction.OUT, status=MessageStatus.QUEUED, next_try_at__lte=cutoff
        )
        .order_by("next_try_at")
        .values_list("pk", flat=True)[:limit]
    )


def receipts_due(*, older_than_s: float, max_tries: int, limit: int = 500) -> list[int]:
    """Unprocessed receipts whose task was lost or failed (fewer than ``max_tries`` runs): for the sweep."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    return list(
        WebhookReceipt.objects.filter(processed_at__isnull=True, received_at__lte=cutoff, tries__lt=max_tries)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )


def opted_out_numbers(*, tenant: Tenant, phone_numbers: list[str]) -> set[str]:
    """Which of ``phone_numbers`` opted out of the tenant's text messages (one query)."""
    return set(
        OptOut.objects.filter(tenant=tenant, phone_number__in=phone_numbers).values_list(
            "phone_number", flat=True
        )
    )


def opt_out_search(*, tenant: Tenant, number: str = "") -> QuerySet[OptOut]:
    """The tenant's SMS opt-outs, newest first; ``number`` matches the digits anywhere in the number."""
    digits = "".join(ch for ch in number if ch.isdigit())
    opt_outs = opt_out_list(tenant=tenant)
    return opt_outs.filter(phone_number__contains=digits) if digits else opt_outs
