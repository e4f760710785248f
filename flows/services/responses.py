"""What people answer, by every channel, and what their call legs report: the product decides from explicit
answers only (an answered call is not an acknowledgement: voicemail answers too).

* A page call: key 1 accepts, 2 declines; after accepting, 1 connects to the caller now, 2 is "later".
* A connect call (the acknowledger called back to be put through) is bridged to the caller once the leg is
  bridged to its agent (``CallBridged``): before that the Stasis app cannot transfer it.
* An SMS reply: "1" or "1 <code>" accepts, "2" (or "2 <code>") declines. Several open pages for one number
  and no code: the person is asked to add the code.
* The signed link: accept / decline, then connect / later (POST only; see flows/views.py).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from flows.lifecycle import ACKNOWLEDGEABLE, PageInput, PageStatus
from flows.models import Incident, IncidentEvent, Page
from flows.services.incidents import incident_acknowledge, incident_choose, page_decline
from flows.services.pages import page_apply, page_create, transfer_on_commit
from flows.services.timeline import event_add

logger = logging.getLogger(__name__)

Kind = IncidentEvent.Kind

_REPLY = re.compile(r"^\s*([12])(?:\s*[-:#]?\s*(\d{3,8}))?\s*[.!]?\s*$")
_ACKABLE = sorted(status.value for status in ACKNOWLEDGEABLE)


# -------------------------------------------------------------------------------------- call legs


def _leg(call_id: str) -> Page | None:
    return Page.objects.select_related("incident", "person").filter(call_id=call_id).first()


def leg_answered(*, call_id: str, at: datetime) -> bool:
    page = _leg(call_id)
    if page is None:
        return False
    with transaction.atomic():
        locked = Page.objects.select_for_update().select_related("incident").get(pk=page.pk)
        if locked.answered_at is None:
            locked.answered_at = at
            locked.save(update_fields=["answered_at", "updated_at"])
            event_add(incident=locked.incident, kind=Kind.ANSWERED, at=at, page=locked)
        page_apply(page=locked, event=PageInput.ANSWERED, at=at)
    return True


def leg_bridged(*, call_id: str, at: datetime) -> bool:
    """The leg is bridged to its agent: from now on the Stasis app can transfer it (it refuses a call whose
    bridge is not up yet). A connect call (the acknowledger, called because they took the incident by SMS
    or link) is put through to the caller here, not on its answer."""
    page = _leg(call_id)
    if page is None:
        return False
    if page.purpose != Page.Purpose.CONNECT:
        return True
    with transaction.atomic():
        locked = Page.objects.select_for_update().select_related("incident").get(pk=page.pk)
        if locked.status == PageStatus.CANCELLED or locked.ended_at is not None:
            return True
        incident = locked.incident
        caller = str((incident.intake or {}).get("callback_number") or "") or incident.caller_number
        transfer_on_commit(page=locked, number=caller, caller_id=incident.did)
    return True


def leg_ringing(*, call_id: str, at: datetime) -> bool:
    page = _leg(call_id)
    if page is None:
        return False
    if not IncidentEvent.objects.filter(page=page, kind=Kind.RINGING).exists():
        event_add(incident=page.incident_id, kind=Kind.RINGING, at=at, page=page)
    return True


def leg_ended(*, call_id: str, at: datetime, outcome: str = "", reason: str = "") -> bool:
    page = _leg(call_id)
    if page is None:
        return False
    with transaction.atomic():
        locked = Page.objects.select_for_update().get(pk=page.pk)
        if IncidentEvent.objects.filter(page=locked, kind=Kind.CALL_ENDED).exists():
            return True  # reported already
        if not page_apply(page=locked, event=PageInput.ENDED, at=at) and locked.ended_at is None:
            locked.ended_at = at
            locked.save(update_fields=["ended_at", "updated_at"])
        # Also for a leg the flow stopped (cancelled when someone acknowledged): the timeline shows when the
        # PBX really ended it, and how (a ringing call hung up unanswered).
        event_add(
            incident=page.incident_id,
            kind=Kind.CALL_ENDED,
            at=at,
            page=locked,
            detail={"outcome": outcome, "reason": reason},
        )
    return True


def leg_transferred(*, call_id: str, number: str, at: datetime) -> bool:
    page = _leg(call_id)
    if page is None:
        return False
    event_add(incident=page.incident_id, kind=Kind.CONNECTED, at=at, page=page, detail={"number": number})
    return True


def leg_dtmf(*, call_id: str, digit: str, at: datetime) -> bool:
    """A key pressed on a flow leg; the product decides (contract 3)."""
    page = _leg(call_id)
    if page is None:
        return False
    incident = page.incident
    event_add(incident=incident, kind=Kind.PRESSED, at=at, page=page, detail={"digit": digit})
    if page.purpose != Page.Purpose.PAGE:
        return True
    if page.status in (PageStatus.SENT, PageStatus.ANSWERED, PageStatus.TO_SEND):
        if digit == "1":
            incident_acknowledge(
                incident_id=incident.pk,
                person_id=page.person_id,
                channel="call",
                page_id=page.pk,
                at=at,
                detail={"digit": digit},
            )
        elif digit == "2":
            page_decline(page_id=page.pk, at=at, channel="call")
        return True
    if page.status == PageStatus.ACCEPTED and digit in ("1", "2"):
        choice = Incident.AckChoice.CONNECT if digit == "1" else Incident.AckChoice.LATER
        incident_choose(
            incident_id=incident.pk, choice=choice, person_id=page.person_id, channel="call", at=at
        )
    return True


# -------------------------------------------------------------------------------------------- SMS


def sms_reply(*, message: Any) -> bool:
    """An inbound SMS (messaging's reply handler, contract 5); True when it answered a page."""
    body = str(getattr(message, "body", "") or "")
    match = _REPLY.match(body)
    if match is None:
        return False
    digit, code = match.group(1), match.group(2)
    sender = str(getattr(message, "from_number", "") or "")
    tenant_id = getattr(message, "tenant_id", None)
    at = getattr(message, "created_at", None) or timezone.now()
    pages = Page.objects.select_related("incident", "person").filter(
        purpose=Page.Purpose.PAGE,
        channel=Page.Channel.SMS,
        to_number=sender,
        incident__status__in=_ACKABLE,
    )
    if tenant_id is not None:
        pages = pages.filter(incident__tenant_id=tenant_id)
    if code:
        pages = pages.filter(incident__short_code=code)
    candidates = list(pages.order_by("-created_at", "-pk"))
    incidents: dict[int, Page] = {}
    for candidate in candidates:  # the latest page per incident
        incidents.setdefault(candidate.incident_id, candidate)
    if not incidents:
        return _late_reply(sender=sender, tenant_id=tenant_id, code=code, body=body, at=at)
    if len(incidents) > 1:
        latest = candidates[0]
        codes = ", ".join(sorted({p.incident.short_code for p in candidates}))
        with transaction.atomic():
            page_create(
                incident=latest.incident,
                person=latest.person,
                purpose=Page.Purpose.TAKEN,
                channel=Page.Channel.SMS,
                to_number=sender,
                text=f"Several incidents are open ({codes}): reply {digit} <code>, e.g. {digit} "
                f"{latest.incident.short_code}.",
                round=latest.round,
                step=-1,
                now=at,
            )
        return True
    page = next(iter(incidents.values()))
    detail = {"body": body[:160], "message_id": getattr(message, "pk", None)}
    event_add(incident=page.incident, kind=Kind.REPLIED, at=at, page=page, channel="sms", detail=detail)
    if digit == "1":
        incident_acknowledge(
            incident_id=page.incident_id,
            person_id=page.person_id,
            channel="sms",
            page_id=page.pk,
            at=at,
            detail=detail,
        )
    else:
        page_decline(page_id=page.pk, at=at, channel="sms")
    return True


def _late_reply(*, sender: str, tenant_id: int | None, code: str | None, body: str, at: datetime) -> bool:
    """A reply to a page whose incident was taken (or resolved) since, e.g. the same reply delivered twice:
    recorded, acts on nothing; someone else than the acknowledger is told who took it."""
    pages = Page.objects.select_related("incident", "incident__acknowledged_by").filter(
        purpose=Page.Purpose.PAGE,
        channel=Page.Channel.SMS,
        to_number=sender,
        created_at__gte=at - timedelta(days=1),
    )
    if tenant_id is not None:
        pages = pages.filter(incident__tenant_id=tenant_id)
    if code:
        pages = pages.filter(incident__short_code=code)
    page = pages.order_by("-created_at", "-pk").first()
    if page is None:
        return False
    incident = page.incident
    with transaction.atomic():
        event_add(
            incident=incident,
            kind=Kind.REPLIED,
            at=at,
            page=page,
            channel="sms",
            detail={"body": body[:160], "late": True, "status": incident.status},
        )
        taker = incident.acknowledged_by
        if taker is not None and taker.pk != page.person_id:
            page_create(
                incident=incident,
                person=page.person,
                purpose=Page.Purpose.TAKEN,
                channel=Page.Channel.SMS,
                to_number=sender,
                text=f"Incident {incident.short_code} was already taken by {taker.name}.",
                round=page.round,
                step=-1,
                now=at,
            )
    return True


# ------------------------------------------------------------------------------------------- link


LINK_ACTIONS = ("accept", "decline", "connect", "later")


def link_act(*, incident_id: int, person_id: int, action: str, at: datetime | None = None) -> bool:
    """What the signed link's page POSTs. ``decline`` declines that person's pending pages of the step."""
    at = at or timezone.now()
    incident = Incident.objects.filter(pk=incident_id).first()
    if incident is None or action not in LINK_ACTIONS:
        return False
    if action == "accept":
        page = (
            Page.objects.filter(incident=incident, person_id=person_id, purpose=Page.Purpose.PAGE)
            .order_by("-created_at", "-pk")
            .first()
        )
        accepting = page.pk if page is not None and page.channel == Page.Channel.SMS else None
        return incident_acknowledge(
            incident_id=incident_id, person_id=person_id, channel="link", page_id=accepting, at=at
        )
    if action == "decline":
        page = (
            Page.objects.filter(
                incident=incident,
                person_id=person_id,
                purpose=Page.Purpose.PAGE,
                status__in=[PageStatus.SENT, PageStatus.ANSWERED, PageStatus.TO_SEND],
            )
            .order_by("-created_at", "-pk")
            .first()
        )
        return page is not None and page_decline(page_id=page.pk, at=at, channel="link")
    choice = Incident.AckChoice.CONNECT if action == "connect" else Incident.AckChoice.LATER
    return incident_choose(incident_id=incident_id, choice=choice, person_id=person_id, channel="link", at=at)
