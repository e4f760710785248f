"""Writes for messages: sending (:func:`message_send`, then :func:`message_deliver` in the worker) and
applying provider statuses (:func:`message_apply`).

Concurrency (DESIGN.md §4):

* :func:`message_send` writes the row in the caller's transaction and enqueues the send on commit: a
  rolled-back caller sends nothing. The periodic sweep (``messaging.sweep``) re-enqueues a queued message
  whose task was lost.
* :func:`message_deliver` locks the row (``skip_locked``: a second copy of the task skips it) and keeps it
  locked across the provider call, which is bounded by ``SMS_PROVIDER_TIMEOUT_S``: two copies of the task
  cannot both send. A worker killed during the call rolls back, and the message is sent again later: at
  least once, never lost.
* Status changes go through :func:`messaging.lifecycle.transition`; late or repeated provider statuses
  change nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from messaging import hooks
from messaging.lifecycle import MessageInput, MessageStatus, transition
from messaging.models import Message, OptOut, Provider, SmsAccount
from messaging.providers import OutboundSms, ProviderError, provider_for
from messaging.services.accounts import (
    provider_config,
    telnyx_webhook_url,
    twilio_status_url,
    validate_e164,
)
from messaging.services.optouts import opt_out_add
from orchestrator.errors import InvalidInput

logger = logging.getLogger(__name__)

#: Longest text sent (ten concatenated GSM-7 segments).
MAX_SMS_LENGTH = 1600
MAX_PURPOSE = 32
MAX_REF = 200

# GSM 03.38 basic character set and its extension table (each extension character takes two septets).
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def segments_for(text: str) -> int:
    """How many SMS segments ``text`` takes: GSM-7 (160, or 153 per part) or UCS-2 (70, or 67 per part)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text):
        septets = sum(2 if ch in _GSM_EXTENDED else 1 for ch in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def _account_of(tenant_id: int) -> SmsAccount | None:
    return SmsAccount.objects.filter(tenant_id=tenant_id, enabled=True).first()


def message_send(
    *, tenant_id: int, to: str, text: str, purpose: str = "", ref: str = "", sender: str = ""
) -> Message:
    """Queue ``text`` to ``to`` (E.164) for the tenant, through its SMS account (the console provider
    without one), from ``sender`` or the account's first number. The row is written in the caller's
    transaction and sent by a worker after it commits (status ``queued``). A number on the tenant's opt-out
    list gets a ``blocked`` row at once and is never sent. InvalidInput names a bad argument."""
    validate_e164(to, field="to")
    if sender:
        validate_e164(sender, field="sender")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("text", "must not be empty")
    if len(text) > MAX_SMS_LENGTH:
        raise InvalidInput("text", f"longer than {MAX_SMS_LENGTH} characters")
    if len(purpose) > MAX_PURPOSE:
        raise InvalidInput("purpose", f"longer than {MAX_PURPOSE} characters")
    if len(ref) > MAX_REF:
        raise InvalidInput("ref", f"longer than {MAX_REF} characters")
    account = _account_of(tenant_id)
    from_number = sender or (account.from_numbers[0] if account is not None and account.from_numbers else "")
    blocked = OptOut.objects.filter(tenant_id=tenant_id, phone_number=to).exists()
    now = timezone.now()
    message = Message.objects.create(
        tenant_id=tenant_id,
        account=account,
        direction=Message.Direction.OUT,
        to_number=to,
        from_number=from_number,
        body=text,
        provider=account.kind if account is not None else Provider.CONSOLE,
        status=MessageStatus.BLOCKED if blocked else MessageStatus.QUEUED,
        error_message="the recipient opted out (STOP)" if blocked else "",
        segments=segments_for(text),
        purpose=purpose,
        ref=ref,
        next_try_at=None if blocked else now,
    )
    if blocked:
        logger.info("SMS %s to %s blocked: opted out with tenant %s", message.pk, to, tenant_id)
        return message
    from messaging.tasks import send_message  # noqa: PLC0415 - the tasks module imports this one

    transaction.on_commit(lambda: send_message.delay(message.pk))
    return message


# ------------------------------------------------------------------------------------------- statuses
def message_apply(
    *,
    message: Message,
    event: MessageInput,
    at: datetime | None = None,
    error_code: str = "",
    error_message: str = "",
) -> bool:
    """Apply ``event`` to a message locked by the caller (see messaging.lifecycle) and save it; the status
    handlers run when the status changed. Whether it changed."""
    result = transition(message.status, event)
    if not result.ok:
        if result.reason == "illegal":
            logger.warning("SMS %s: %s refused in status %s", message.pk, event, message.status)
        return False
    at = at or timezone.now()
    message.status = result.status
    if result.status in (MessageStatus.SENT, MessageStatus.DELIVERED) and message.sent_at is None:
        message.sent_at = at
    if result.status == MessageStatus.DELIVERED:
        message.delivered_at = at
    if error_code or error_message:
        message.error_code = error_code[:32]
        message.error_message = error_message[:500]
    message.next_try_at = None if result.status != MessageStatus.QUEUED else message.next_try_at
    message.save()
    hooks.status_changed(message)
    return True


# --------------------------------------------------------------------------------------------- sending
@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: str  # "sent", "retry", "failed", "blocked", "opted_out", "skipped"
    retry_in_s: float = 0.0


def retry_delay_s(tries: int) -> float:
    """Exponential backoff after the ``tries``-th failed try, capped."""
    base = float(settings.SMS_RETRY_BACKOFF_S)
    return float(min(base * 2 ** max(tries - 1, 0), float(settings.SMS_RETRY_BACKOFF_MAX_S)))


def _callback_url(message: Message) -> str:
    account = message.account
    if account is None:
        return ""
    if account.kind == Provider.TWILIO:
        return twilio_status_url(account, message_id=message.pk)
    if account.kind == Provider.TELNYX:
        return telnyx_webhook_url(account, message_id=message.pk)
    return ""


def message_deliver(*, message_id: int) -> Delivery:
    """Send a queued message through its provider (see the module docstring). Safe to run twice."""
    now = timezone.now()
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
            .select_related("account")
            .filter(pk=message_id, direction=Message.Direction.OUT)
            .first()
        )
        if message is None or message.status != MessageStatus.QUEUED:
            return Delivery("skipped")
        if message.next_try_at is not None and message.next_try_at > now + timedelta(seconds=1):
            return Delivery("skipped")  # a retry is scheduled: this copy is early
        if OptOut.objects.filter(tenant_id=message.tenant_id, phone_number=message.to_number).exists():
            message_apply(
                message=message, event=MessageInput.BLOCKED, error_message="the recipient opted out"
            )
            return Delivery("blocked")
        account = message.account
        if account is not None and not account.enabled:
            account = None
        if account is None and message.provider != Provider.CONSOLE:
            message_apply(
                message=message,
                event=MessageInput.FAILED,
                error_message="the SMS account is gone or disabled",
            )
            return Delivery("failed")
        message.tries += 1
        sms = OutboundSms(
            message_id=message.pk,
            tenant_id=message.tenant_id,
            to=message.to_number,
            from_number=message.from_number,
            body=message.body,
            status_callback_url=_callback_url(message),
        )
        try:
            result = provider_for(provider_config(account)).send(sms)
        except ProviderError as exc:
            return _failed_try(message, exc)
        message.provider_message_id = result.provider_message_id[:100]
        if result.segments:
            message.segments = result.segments
        if result.price is not None:
            message.price = Decimal(result.price)
            message.price_unit = result.price_unit[:8]
        if result.from_number:
            message.from_number = result.from_number[:32]
        message.error_code = message.error_message = ""
        message_apply(message=message, event=result.event)
    logger.info("SMS %s to %s handed to %s (%s)", message.pk, message.to_number, message.provider,
                message.provider_message_id)  # fmt: skip
    return Delivery("sent")


def _failed_try(message: Message, exc: ProviderError) -> Delivery:
    code, text = exc.code[:32], exc.message[:500]
    if exc.opted_out:
        opt_out_add(
            tenant_id=message.tenant_id, phone_number=message.to_number, source=OptOut.Source.PROVIDER
        )
        message_apply(message=message, event=MessageInput.OPTED_OUT, error_code=code, error_message=text)
        logger.info("SMS %s: %s refused it, the recipient opted out (%s)", message.pk, message.provider, code)
        return Delivery("opted_out")
    if exc.retryable and message.tries < int(settings.SMS_SEND_MAX_TRIES):
        delay = retry_delay_s(message.tries)
        message.error_code, message.error_message = code, text
        message.next_try_at = timezone.now() + timedelta(seconds=delay)
        message.save(update_fields=["tries", "error_code", "error_message", "next_try_at", "updated_at"])
        logger.warning("SMS %s: try %s failed (%s); retry in %.0f s", message.pk, message.tries, text, delay)
        return Delivery("retry", retry_in_s=delay)
    message_apply(message=message, event=MessageInput.FAILED, error_code=code, error_message=text)
    logger.warning("SMS %s: failed after %s tries (%s)", message.pk, message.tries, text)
    return Delivery("failed")
