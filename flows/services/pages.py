"""Notification legs (:class:`flows.models.Page`): creating them, sending them (the ``flows.page_send``
task), stopping them, and what their channels report back.

Exactly-once and no double dialing
----------------------------------
* A page is created in ``to_send`` in the transaction that decided it (a step firing, an acknowledgement),
  and its send is enqueued after that commit (:mod:`flows.services.outbox`). A send lost on the way is sent
  again by :func:`pages_resend_stalled` (beat).
* An SMS page is sent by moving it ``to_send → sent`` under its row lock in the same transaction that
  queues the message (``messaging.services.message_send``): a repeated send finds it sent and does nothing.
* A call page claims its originate with a conditional UPDATE of ``sent_at`` (as campaign attempts do,
  ``campaigns.services.originate``) right before ``POST /channels`` with the page's flow call id as the
  channel id; a later run that finds the claim asks the PBX (``GET /channels/<id>``) instead of dialing
  again, and a repeated POST answers 409 ("already placed").
* A page stopped (cancelled) while its originate was in flight is hung up by the run that placed it.

Replies and statuses from the messaging app arrive through :func:`page_sms_status` and
:func:`page_sms_reply` (settings ``MESSAGING_STATUS_HANDLERS`` / ``MESSAGING_REPLY_HANDLERS``).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from campaigns.models import Pbx
from campaigns.selectors import pbx_list_with_free_channels
from campaigns.services.pbx import pbx_ari_client
from flows.lifecycle import PAGE_PENDING, PageInput, PageStatus, page_transition
from flows.models import Incident, IncidentEvent, OnCallPerson, Page
from flows.services import outbox
from flows.services.briefs import endpoint_for, leg_brief_write
from flows.services.sms import SmsUnavailable, sms_send
from flows.services.timeline import event_add, new_flow_call_id
from orchestrator.redis_client import get_redis
from telephony.ari import AriRetryableError, AriTerminalError
from telephony.stasis import command_key
from wire.brief import reply_channel

logger = logging.getLogger(__name__)

#: A page still ``to_send`` this long after its creation had its send lost: send it again.
PAGE_STALL_S = 10.0
#: How long after a call page's originate claim the request has surely settled (client timeouts).
PAGE_SETTLE_S = 15.0

SENT = "sent"
ALREADY = "already"
NOT_TO_SEND = "not_to_send"
FAILED = "failed"
RETRY = "retry"

_PENDING = sorted(status.value for status in PAGE_PENDING)

Kind = IncidentEvent.Kind


class PageRetry(Exception):
    """A retryable failure of a page's send (the PBX unreachable): the task retries after ``countdown``."""

    def __init__(self, message: str, countdown: float) -> None:
        super().__init__(message)
        self.countdown = countdown


# -------------------------------------------------------------------------------------------- create


def page_create(
    *,
    incident: Incident,
    channel: str,
    to_number: str,
    text: str,
    purpose: str = Page.Purpose.PAGE,
    person: OnCallPerson | None = None,
    round: int = 0,  # noqa: A002 - the policy's vocabulary
    step: int = 0,
    now: datetime | None = None,
) -> Page:
    """A new leg in ``to_send``; its send is enqueued after the commit."""
    page = Page.objects.create(
        incident=incident,
        person=person,
        purpose=purpose,
        round=round,
        step=step,
        channel=channel,
        to_number=to_number,
        text=text,
        call_id=new_flow_call_id() if channel == Page.Channel.CALL else None,
        created_at=now or timezone.now(),
    )
    outbox.enqueue(outbox.PAGE_SEND, page.pk)
    return page


def page_apply(*, page: Page, event: PageInput, at: datetime, **fields: Any) -> bool:
    """Move a (locked) page by ``event`` through the table; False (nothing changed) when refused."""
    move = page_transition(page.status, event)
    if not move.ok or move.to is None:
        logger.debug("page %s: %s refused in %s (%s)", page.pk, event, page.status, move.reason)
        return False
    page.status = move.to
    for name, value in fields.items():
        setattr(page, name, value)
    if event in (PageInput.ENDED, PageInput.CANCELLED, PageInput.FAILED) and page.ended_at is None:
        page.ended_at = at
    if event in (PageInput.ACCEPTED, PageInput.DECLINED):
        page.responded_at = at
    page.save()
    return True


# ---------------------------------------------------------------------------------------------- send


def _choose_pbx(incident: Incident) -> Pbx | None:
    """The PBX that took the incident's inbound call when it still serves the tenant, else the tenant's
    PBX with the most free channels."""
    choices = pbx_list_with_free_channels(tenant=incident.tenant)
    call_pbx = incident.inbound_call.pbx_id if incident.inbound_call_id and incident.inbound_call else None
    for pbx, _free in choices:
        if pbx.pk == call_pbx:
            return pbx
    if choices:
        return choices[0][0]
    return Pbx.objects.filter(placements__tenant=incident.tenant, enabled=True).order_by("pk").first()


def page_send(*, page_id: int, now: datetime | None = None) -> str:
    """Send one leg (the ``flows.page_send`` task). Safe to run twice (module docstring). Raises
    :class:`PageRetry` for a retryable failure."""
    page = Page.objects.select_related(
        "incident", "incident__tenant", "incident__inbound_call", "person"
    ).get(pk=page_id)
    if page.status != PageStatus.TO_SEND:
        return NOT_TO_SEND
    if page.purpose == Page.Purpose.PAGE and page.incident.status != Incident.Status.OPEN:
        return _stop_unsent(page.pk, now)
    if page.channel == Page.Channel.SMS:
        return _send_sms(page.pk, now)
    return _send_call(page, now)


def _stop_unsent(page_id: int, now: datetime | None) -> str:
    """A page whose incident no longer escalates (taken, exhausted, resolved) is not sent."""
    at = now or timezone.now()
    with transaction.atomic():
        page = Page.objects.select_for_update().select_related("incident").filter(pk=page_id).first()
        if page is None or page.sent_at is not None:
            return NOT_TO_SEND
        if page_apply(page=page, event=PageInput.CANCELLED, at=at):
            event_add(
                incident=page.incident, kind=Kind.LEG_STOPPED, at=at, page=page, detail={"reason": "not_sent"}
            )
    return NOT_TO_SEND


def _send_sms(page_id: int, now: datetime | None) -> str:
    with transaction.atomic():
        page = (
            Page.objects.select_for_update()
            .select_related("incident")
            .filter(pk=page_id, status=PageStatus.TO_SEND)
            .first()
        )
        if page is None:
            return NOT_TO_SEND
        at = now or timezone.now()
        incident = page.incident
        try:
            message = sms_send(
                tenant_id=incident.tenant_id,
                to=page.to_number,
                text=page.text,
                purpose=f"flows.{page.purpose}",
                ref=f"flows.page:{page.pk}",
            )
        except SmsUnavailable as exc:
            page_apply(page=page, event=PageInput.FAILED, at=at, error=str(exc)[:1000])
            event_add(
                incident=incident, kind=Kind.SMS_FAILED, at=at, page=page, detail={"error": str(exc)[:500]}
            )
            return FAILED
        page_apply(
            page=page, event=PageInput.SENT, at=at, sent_at=at, message_id=getattr(message, "pk", None)
        )
        event_add(
            incident=incident,
            kind=Kind.TEXTED,
            at=at,
            page=page,
            detail={"to": page.to_number, "purpose": page.purpose, "message_id": page.message_id},
        )
    return SENT


def _send_call(page: Page, now: datetime | None) -> str:
    incident = page.incident
    at = now or timezone.now()
    if page.sent_at is not None:
        return _settle_call(page, at)
    pbx = _choose_pbx(incident)
    if pbx is None:
        return _fail_call(page.pk, "the tenant has no PBX to call from", at)
    try:
        client = pbx_ari_client(pbx=pbx)
    except ImproperlyConfigured as exc:
        return _fail_call(page.pk, f"PBX configuration: {exc}", at)
    claimed = Page.objects.filter(pk=page.pk, status=PageStatus.TO_SEND, sent_at__isnull=True).update(
        sent_at=at, pbx_id=pbx.pk
    )
    if not claimed:
        return NOT_TO_SEND
    page.sent_at, page.pbx_id = at, pbx.pk
    try:
        leg_brief_write(page=page, incident=incident, pbx=pbx)
    except RedisError as exc:
        logger.warning("page %s: brief not written (%s); calling anyway", page.pk, exc)
    try:
        client.originate(
            channel_id=page.call_id or "",
            number=page.to_number,
            app_args=f"outbound,{page.call_id}",
            caller_id=incident.did,
            timeout_s=int(settings.FLOWS_PAGE_RING_S),
            variables={"FLOW_PAGE_ID": str(page.pk), "INCIDENT_ID": str(incident.pk)},
        )
    except AriTerminalError as exc:
        return _fail_call(page.pk, f"originate refused: {exc}", at)
    except AriRetryableError as exc:
        if not exc.maybe_placed:
            Page.objects.filter(pk=page.pk, sent_at=at, status=PageStatus.TO_SEND).update(sent_at=None)
        raise PageRetry(str(exc), countdown=2.0) from exc
    return _placed(page.pk, at, client_hangup=client.hangup)


def _placed(page_id: int, at: datetime, *, client_hangup: Any) -> str:
    with transaction.atomic():
        page = Page.objects.select_for_update().select_related("incident").get(pk=page_id)
        if page.status == PageStatus.CANCELLED:
            hang = True
        else:
            hang = False
            page_apply(page=page, event=PageInput.SENT, at=at)
            kind = Kind.CALLBACK_PLACED if page.purpose == Page.Purpose.CALLBACK else Kind.CALLED
            event_add(
                incident=page.incident,
                kind=kind,
                at=at,
                page=page,
                detail={"to": page.to_number, "purpose": page.purpose, "call_id": page.call_id},
            )
    if hang:
        # Stopped while its originate was in flight: hang up what was just placed.
        try:
            client_hangup(page.call_id or "")
        except (AriRetryableError, AriTerminalError) as exc:
            logger.warning("page %s: cancelled leg not hung up (%s)", page_id, exc)
        return NOT_TO_SEND
    return SENT


def _fail_call(page_id: int, error: str, at: datetime) -> str:
    with transaction.atomic():
        page = Page.objects.select_for_update().select_related("incident").get(pk=page_id)
        if page_apply(page=page, event=PageInput.FAILED, at=at, error=error[:1000]):
            event_add(
                incident=page.incident, kind=Kind.CALL_FAILED, at=at, page=page, detail={"error": error[:500]}
            )
    return FAILED


def _settle_call(page: Page, at: datetime) -> str:
    """An originate was claimed for this page and its answer not recorded: ask the PBX, never redial."""
    assert page.sent_at is not None  # noqa: S101 - the caller checked
    age = (at - page.sent_at).total_seconds()
    if age < PAGE_SETTLE_S:
        raise PageRetry("an earlier originate may still be in flight", countdown=PAGE_SETTLE_S - age + 0.5)
    pbx = Pbx.objects.filter(pk=page.pbx_id or 0).first()
    if pbx is None:
        return _fail_call(page.pk, "its PBX is gone", at)
    try:
        client = pbx_ari_client(pbx=pbx)
        channel = client.get_channel(page.call_id or "")
    except (ImproperlyConfigured, AriTerminalError) as exc:
        return _fail_call(page.pk, f"originate outcome unknown: {exc}", at)
    except AriRetryableError as exc:
        raise PageRetry(str(exc), countdown=5.0) from exc
    if channel is None:
        return _fail_call(page.pk, "an originate was sent but no channel exists: not dialed again", at)
    return _placed(page.pk, at, client_hangup=client.hangup)


def pages_resend_stalled(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Pages still ``to_send`` well after their creation (their send task was lost): send them again."""
    cutoff = (now or timezone.now()) - timedelta(seconds=PAGE_STALL_S)
    ids = list(
        Page.objects.filter(status=PageStatus.TO_SEND, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    for page_id in ids:
        outbox.enqueue(outbox.PAGE_SEND, page_id)
    if ids:
        logger.warning("re-sending %d stalled page(s)", len(ids))
    return ids


# ---------------------------------------------------------------------------------------------- stop


def pages_stop(*, incident: Incident, at: datetime, keep: Page | None = None, reason: str) -> list[Page]:
    """Stop every pending leg of a (locked) incident but ``keep``: cancelled, no further SMS; call legs
    that may be ringing or answered are hung up after the commit. Returns the stopped pages."""
    pages = list(
        Page.objects.select_for_update()
        .filter(incident=incident, status__in=_PENDING)
        .exclude(pk=keep.pk if keep else 0)
        .order_by("pk")
    )
    stopped = []
    for page in pages:
        was = page.status
        if not page_apply(page=page, event=PageInput.CANCELLED, at=at):
            continue
        stopped.append(page)
        event_add(
            incident=incident, kind=Kind.LEG_STOPPED, at=at, page=page, detail={"reason": reason, "was": was}
        )
        if page.channel == Page.Channel.CALL and (page.sent_at is not None or was != PageStatus.TO_SEND):
            outbox.enqueue(outbox.PAGE_HANGUP, page.pk)
    return stopped


def page_hangup(*, page_id: int) -> bool:
    """Hang a flow leg up (``DELETE /channels/<id>``); False when it was gone already."""
    page = Page.objects.filter(pk=page_id).first()
    if page is None or not page.call_id or page.pbx_id is None:
        return False
    pbx = Pbx.objects.filter(pk=page.pbx_id or 0).first()
    if pbx is None:
        return False
    try:
        return pbx_ari_client(pbx=pbx).hangup(page.call_id)
    except AriTerminalError as exc:
        logger.warning("page %s: hang-up refused (%s)", page_id, exc)
        return False


# ---------------------------------------------------------------------------------- talking to a leg


def say_on_commit(*, call_id: str, text: str) -> None:
    """Make the agent on a live leg say ``text`` (contract 3: a ``say`` message on its reply channel)."""
    payload = json.dumps({"type": "say", "text": text})

    def publish() -> None:
        try:
            get_redis().publish(reply_channel(call_id), payload)
        except RedisError as exc:
            logger.warning("call %s: could not say %r (%s)", call_id, text, exc)

    transaction.on_commit(publish)


def transfer_on_commit(*, page: Page, number: str, caller_id: str) -> None:
    """Bridge a live leg to ``number`` (contract 3: the Stasis app's transfer command on the PBX's key)."""
    pbx = Pbx.objects.filter(pk=page.pbx_id or 0).first()
    if pbx is None:
        return
    command = json.dumps(
        {
            "action": "transfer",
            "call_id": page.call_id,
            "number": number,
            "endpoint": endpoint_for(pbx, number),
            "caller_id": caller_id,
            "timeout_s": 30,
        }
    )

    def push() -> None:
        try:
            get_redis().rpush(command_key(pbx.pk), command)
        except RedisError as exc:
            logger.warning("page %s: transfer command not sent (%s)", page.pk, exc)

    transaction.on_commit(push)


# ------------------------------------------------------------------------ messaging's handlers (contract 5)

_DELIVERED = {"delivered"}
_FAILED = {"undelivered", "failed", "blocked", "opted_out"}


def _page_of_message(message: Any) -> Page | None:
    ref = str(getattr(message, "ref", "") or "")
    if not ref.startswith("flows.page:"):
        return None
    try:
        page_id = int(ref.split(":", 1)[1])
    except ValueError:
        return None
    return Page.objects.select_for_update().select_related("incident").filter(pk=page_id).first()


def page_sms_status(*, message: Any) -> None:
    """A status change of a message the flows sent (``MESSAGING_STATUS_HANDLERS``): delivered and failures
    go on the timeline (a provider failure shows there; the call leg races on)."""
    status = str(getattr(message, "status", ""))
    if status not in _DELIVERED | _FAILED:
        return
    with transaction.atomic():
        page = _page_of_message(message)
        if page is None:
            return
        at = getattr(message, "delivered_at", None) or getattr(message, "updated_at", None) or timezone.now()
        detail = {"status": status, "message_id": getattr(message, "pk", None)}
        if status in _DELIVERED:
            if page.delivered_at is None:
                page.delivered_at = at
                page.save(update_fields=["delivered_at", "updated_at"])
                event_add(incident=page.incident, kind=Kind.DELIVERED, at=at, page=page, detail=detail)
            return
        detail["error_code"] = str(getattr(message, "error_code", "") or "")
        detail["error"] = str(getattr(message, "error_message", "") or "")[:500]
        already = IncidentEvent.objects.filter(page=page, kind=Kind.SMS_FAILED).exists()
        page_apply(page=page, event=PageInput.FAILED, at=at, error=f"{status} {detail['error_code']}".strip())
        if not already:
            event_add(incident=page.incident, kind=Kind.SMS_FAILED, at=at, page=page, detail=detail)


def page_sms_reply(*, message: Any) -> bool:
    """An inbound SMS (``MESSAGING_REPLY_HANDLERS``): "1" / "1 <code>" accepts, "2" declines; True when it
    was an answer to a page (consumed)."""
    from flows.services.responses import sms_reply  # noqa: PLC0415 - responses imports this module

    return sms_reply(message=message)
