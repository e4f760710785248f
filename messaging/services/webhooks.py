"""Provider webhooks: stored fast by the web process (:func:`receipt_store`), acted on once by a worker
(:func:`receipt_process`).

* **Store** (web, within the provider's few seconds): the signature was checked by the view; one
  :class:`WebhookReceipt` per event (unique per account and event key: a provider's retry finds it and
  changes nothing), plus the inbound :class:`Message` row for an inbound SMS, in one transaction; the
  processing task is enqueued on commit. The sweep (``messaging.sweep``) enqueues any receipt whose task
  was lost or failed, a bounded number of times.
* **Process** (worker): a status moves the message through the transition table (its row locked);
  an inbound message is a STOP/START/HELP keyword (handled here) or goes to the reply handlers. The
  receipt is marked processed in the same transaction as these effects: a task run twice acts once.
  STOP and START change the opt-out list silently (the providers' own opt-out handling confirms them on
  their side by default); HELP is answered with ``MESSAGING_HELP_TEXT``.

Receipts keep the provider's fields normalised in ``payload``: ``provider_message_id``, ``message_id`` (our
id, from the status callback URL), ``status``, ``error_code``, ``error_message``, ``from``, ``to``,
``body``, ``segments``, ``price``, ``price_unit``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from messaging import hooks
from messaging.keywords import Keyword, keyword_of
from messaging.lifecycle import TELNYX_STATUSES, TWILIO_STATUSES, MessageInput, MessageStatus
from messaging.models import Message, OptOut, Provider, SmsAccount, WebhookReceipt
from messaging.providers import parse_price
from messaging.providers.telnyx import TELNYX_OPTED_OUT
from messaging.providers.twilio import TWILIO_OPTED_OUT
from messaging.services.accounts import E164
from messaging.services.messages import message_apply, message_send
from messaging.services.optouts import opt_out_add, opt_out_remove
from orchestrator.errors import InvalidInput

logger = logging.getLogger(__name__)

Kind = WebhookReceipt.Kind


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(value: object) -> object:
    return value[0] if isinstance(value, list) and value else None


def _clip(value: object, size: int) -> str:
    return str(value or "")[:size]


# ------------------------------------------------------------------------------------------------ store
def receipt_store(
    *, account: SmsAccount, kind: str, event_key: str, payload: dict[str, Any]
) -> tuple[WebhookReceipt, bool]:
    """The receipt of one webhook event (and whether it is new); an inbound message's row is created with
    it. The processing task is enqueued when the transaction commits."""
    with transaction.atomic():
        receipt, created = WebhookReceipt.objects.get_or_create(
            account=account,
            event_key=event_key[:200],
            defaults={"provider": account.kind, "kind": kind, "payload": payload},
        )
        if not created:
            return receipt, False
        if kind == Kind.INBOUND:
            receipt.message = Message.objects.create(
                tenant_id=account.tenant_id,
                account=account,
                direction=Message.Direction.IN,
                to_number=_clip(payload.get("to"), 32),
                from_number=_clip(payload.get("from"), 32),
                body=str(payload.get("body") or ""),
                provider=account.kind,
                provider_message_id=_clip(payload.get("provider_message_id"), 100),
                status=MessageStatus.RECEIVED,
                segments=max(_int(payload.get("segments")) or 1, 1),
            )
            receipt.save(update_fields=["message"])
        from messaging.tasks import process_receipt  # noqa: PLC0415 - the tasks module imports this one

        receipt_id = receipt.pk
        transaction.on_commit(lambda: process_receipt.delay(receipt_id))
    return receipt, True


def twilio_payload(params: Any, *, message_id: str = "") -> tuple[str, str, dict[str, Any]]:
    """(kind, event key, normalised payload) of a Twilio webhook's form parameters; kind is "status" when
    the request carries a MessageStatus."""
    sid = str(params.get("MessageSid") or params.get("SmsSid") or "")
    status = str(params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    payload = {
        "provider_message_id": sid,
        "message_id": message_id,
        "status": status,
        "error_code": str(params.get("ErrorCode") or ""),
        "error_message": str(params.get("ErrorMessage") or ""),
        "from": str(params.get("From") or ""),
        "to": str(params.get("To") or ""),
        "body": str(params.get("Body") or ""),
        "segments": str(params.get("NumSegments") or ""),
        "price": str(params.get("Price") or ""),
        "price_unit": str(params.get("PriceUnit") or ""),
    }
    if status and status not in ("received", "receiving"):
        return Kind.STATUS, f"{sid}:{status}", payload
    return Kind.INBOUND, sid, payload


def telnyx_payload(body: dict[str, Any], *, message_id: str = "") -> tuple[str, str, dict[str, Any]] | None:
    """(kind, event key, payload) of a Telnyx webhook's JSON body; None for an event we do not act on."""
    data = _dict(_dict(body).get("data"))
    event_type = str(data.get("event_type") or "")
    event_id = str(data.get("id") or "")
    inner = _dict(data.get("payload"))
    first = _dict(_first(inner.get("to")))
    error = _dict(_first(inner.get("errors")))
    cost = _dict(inner.get("cost"))
    sender = _dict(inner.get("from"))
    payload = {
        "provider_message_id": str(inner.get("id") or ""),
        "message_id": message_id,
        "status": str(first.get("status") or ""),
        "error_code": str(error.get("code") or ""),
        "error_message": str(error.get("detail") or error.get("title") or ""),
        "from": str(sender.get("phone_number") or ""),
        "to": str(first.get("phone_number") or ""),
        "body": str(inner.get("text") or ""),
        "segments": str(inner.get("parts") or ""),
        "price": str(cost.get("amount") or ""),
        "price_unit": str(cost.get("currency") or ""),
    }
    if not event_id:
        return None
    if event_type == "message.received":
        return Kind.INBOUND, event_id, payload
    if event_type in ("message.sent", "message.finalized"):
        return Kind.STATUS, event_id, payload
    return None


# ---------------------------------------------------------------------------------------------- process
def receipt_process(*, receipt_id: int) -> str:
    """Act on a stored webhook once (see the module docstring); what happened."""
    counted = WebhookReceipt.objects.filter(pk=receipt_id, processed_at__isnull=True).update(
        tries=F("tries") + 1
    )
    if not counted:
        return "done"
    with transaction.atomic():
        receipt = (
            WebhookReceipt.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
            .select_related("account", "account__tenant")
            .filter(pk=receipt_id, processed_at__isnull=True)
            .first()
        )
        if receipt is None:
            return "done"
        if receipt.kind == Kind.STATUS:
            outcome = _apply_status(receipt)
        else:
            outcome = _process_inbound(receipt)
        receipt.processed_at = timezone.now()
        receipt.outcome = outcome[:200]
        receipt.save(update_fields=["processed_at", "outcome"])
    return outcome


def _status_input(provider: str, status: str, error_code: str) -> MessageInput | None:
    if error_code in (str(TWILIO_OPTED_OUT), TELNYX_OPTED_OUT):
        return MessageInput.OPTED_OUT
    table = TWILIO_STATUSES if provider == Provider.TWILIO else TELNYX_STATUSES
    return table.get(status)


def _apply_status(receipt: WebhookReceipt) -> str:
    payload = receipt.payload
    account = receipt.account
    messages = Message.objects.select_for_update(no_key=True).filter(
        tenant_id=account.tenant_id, direction=Message.Direction.OUT
    )
    message = None
    message_id = _int(payload.get("message_id"))
    if message_id is not None:
        message = messages.filter(pk=message_id).first()
    sid = str(payload.get("provider_message_id") or "")
    if message is None and sid:
        message = messages.filter(provider=account.kind, provider_message_id=sid).first()
    if message is None:
        return "unknown message"
    if sid and message.provider_message_id and message.provider_message_id != sid:
        return "another message's status"
    receipt.message = message
    receipt.save(update_fields=["message"])
    status, error_code = str(payload.get("status") or ""), str(payload.get("error_code") or "")
    event = _status_input(account.kind, status, error_code)
    if event is None:
        return f"status {status!r} ignored"
    if sid and not message.provider_message_id:
        message.provider_message_id = sid[:100]
    segments = _int(payload.get("segments"))
    if segments:
        message.segments = segments
    price = parse_price(payload.get("price"))
    if price is not None:
        message.price, message.price_unit = price, _clip(payload.get("price_unit"), 8)
    if event is MessageInput.OPTED_OUT:
        opt_out_add(
            tenant_id=message.tenant_id, phone_number=message.to_number, source=OptOut.Source.PROVIDER
        )
    changed = message_apply(
        message=message,
        event=event,
        error_code=error_code,
        error_message=str(payload.get("error_message") or (f"error {error_code}" if error_code else "")),
    )
    if not changed:
        message.save()  # the price or segments may still be new
    return f"{status}: {'applied' if changed else 'stale'}"


def _process_inbound(receipt: WebhookReceipt) -> str:
    message = receipt.message
    if message is None:
        return "no message"
    found = keyword_of(message.body)
    tenant = receipt.account.tenant
    if found is None:
        consumer = hooks.reply_received(message)
        return f"consumed by {consumer}" if consumer else "not consumed"
    keyword, word = found
    number = message.from_number
    if keyword is Keyword.STOP:
        opt_out_add(tenant_id=tenant.pk, phone_number=number, source=OptOut.Source.KEYWORD, keyword=word)
        logger.info("SMS: %s opted out of tenant %s (%s)", number, tenant.pk, word)
        return "stop"
    if keyword is Keyword.START:
        opt_out_remove(tenant_id=tenant.pk, phone_number=number)
        logger.info("SMS: %s opted back in to tenant %s (%s)", number, tenant.pk, word)
        return "start"
    try:
        message_send(
            tenant_id=tenant.pk,
            to=number,
            text=settings.MESSAGING_HELP_TEXT.format(tenant=tenant.name)[:1600],
            purpose="help",
            ref=f"messaging.help:{message.pk}",
            sender=message.to_number if E164.fullmatch(message.to_number) else "",
        )
    except InvalidInput as exc:
        logger.warning("SMS: HELP from %s not answered (%s)", number, exc)
    return "help"
