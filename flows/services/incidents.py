"""Incidents: opening one (the agent reported an urgent call), acknowledging it (only explicit answers
count: a key on the page call, an SMS reply, the signed link, the API), declining a page, choosing how to
reach the caller, resolving.

Each locks the incident row first (then its pages: the one lock order of this domain), moves its status
through ``flows.lifecycle`` (refusals change nothing) and writes the timeline. Side effects (SMS, hang-ups,
say, transfer) are enqueued after the commit.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from flows.lifecycle import ACKNOWLEDGEABLE, IncidentInput, PageInput, PageStatus, incident_transition
from flows.models import (
    DEFAULT_CALLER_ACK_SMS,
    DEFAULT_TAKEN_SMS,
    EscalationPolicy,
    InboundCall,
    InboundFlow,
    Incident,
    IncidentEvent,
    OnCallPerson,
    Page,
)
from flows.services import escalation
from flows.services.pages import page_apply, page_create, pages_stop, say_on_commit, transfer_on_commit
from flows.services.timeline import event_add
from integrations import events
from integrations.services import webhook_event_record
from orchestrator.errors import InvalidInput
from timers.models import Timer
from timers.services import timer_cancel, timer_fire, timer_set

logger = logging.getLogger(__name__)

Kind = IncidentEvent.Kind

ACK_CHANNELS = ("call", "sms", "link", "api")
SHORT_CODE_DIGITS = 5

SAY_ACCEPTED = (
    "Thank you, it is yours. Press 1 to be connected to the caller now, or 2 to call them back later."
)
SAY_DECLINED = "Understood. We will contact someone else. Goodbye."
SAY_CONNECTING = "Connecting you to the caller now."
SAY_LATER = "Understood. The caller's details are in your text messages. Goodbye."


def _new_code() -> str:
    return f"{secrets.randbelow(10**SHORT_CODE_DIGITS):0{SHORT_CODE_DIGITS}d}"


def _fmt(template: str, **values: str) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return template


# ------------------------------------------------------------------------------------------ webhooks


def _incident_webhook(incident: Incident, event_type: str) -> None:
    """The tenant's webhooks for an incident's change, in the transaction of the change (the outbox)."""
    webhook_event_record(
        tenant_id=incident.tenant_id,
        event_type=event_type,
        data={
            "incident_id": incident.pk,
            "short_code": incident.short_code,
            "status": incident.status,
            "flow_id": incident.flow_id,
            "caller_number": incident.caller_number,
            "summary": incident.summary,
            "opened_at": incident.opened_at,
            "acknowledged_at": incident.acknowledged_at,
            "ack_channel": incident.ack_channel,
            "resolved_at": incident.resolved_at,
        },
    )


# --------------------------------------------------------------------------------------------- open


def incident_open(
    *,
    tenant_id: int,
    flow: InboundFlow | None,
    policy: EscalationPolicy | None,
    inbound_call: InboundCall | None = None,
    caller_number: str = "",
    did: str = "",
    intake: dict[str, Any] | None = None,
    summary: str = "",
    at: datetime | None = None,
) -> Incident:
    """Open an incident and fire its first step at once, in one transaction. One incident per inbound call:
    a repeat returns the existing one (its summary and intake updated)."""
    at = at or timezone.now()
    with transaction.atomic():
        if inbound_call is not None:
            existing = Incident.objects.select_for_update().filter(inbound_call=inbound_call).first()
            if existing is not None:
                changed: list[str] = []
                if summary and summary != existing.summary:
                    existing.summary, changed = summary[:2000], [*changed, "summary"]
                if intake:
                    existing.intake, changed = {**existing.intake, **intake}, [*changed, "intake"]
                if changed:
                    existing.save(update_fields=[*changed, "updated_at"])
                return existing
        snapshot = escalation.policy_snapshot(policy=policy)
        incident = None
        for _ in range(20):
            try:
                with transaction.atomic():
                    incident = Incident.objects.create(
                        tenant_id=tenant_id,
                        flow=flow,
                        inbound_call=inbound_call,
                        short_code=_new_code(),
                        caller_number=caller_number[:64],
                        did=did[:64],
                        intake=intake or {},
                        summary=summary[:2000],
                        policy_snapshot=snapshot,
                        opened_at=at,
                    )
                break
            except IntegrityError:
                if inbound_call is not None and Incident.objects.filter(inbound_call=inbound_call).exists():
                    return Incident.objects.get(inbound_call=inbound_call)
                continue  # a short code in use: draw another
        if incident is None:
            raise RuntimeError("no free short code for a new incident")
        event_add(
            incident=incident,
            kind=Kind.OPENED,
            at=at,
            channel="system",
            detail={
                "summary": incident.summary,
                "policy": snapshot.get("name"),
                "steps": len(snapshot["steps"]),
            },
        )
        _incident_webhook(incident, events.INCIDENT_OPENED)
        timer = timer_set(
            kind=escalation.STEP_KIND,
            key=escalation.incident_timer_key(incident.pk),
            due_at=at,
            payload={"incident_id": incident.pk, "round": 0, "step": 0},
        )
        # Step 1 fires at once, in this transaction (the timer's countdown message, sent after the commit,
        # then finds its token stale). Should the step fail, its timer stays pending for the sweep.
        timer_fire(timer_id=timer.pk, token=timer.token, now=at)
    logger.info("incident %s (%s) opened for tenant %s", incident.pk, incident.short_code, tenant_id)
    return incident


# ------------------------------------------------------------------------------------- acknowledge


def _lock(incident_id: int) -> Incident | None:
    """Lock the incident for a change, after its timers' rows: a timer firing holds its timer row and then
    locks the incident, so every other path takes them in that same order (no deadlock)."""
    list(
        Timer.objects.select_for_update()
        .filter(
            key__in=[escalation.incident_timer_key(incident_id), escalation.callback_timer_key(incident_id)]
        )
        .order_by("key")
        .values_list("pk", flat=True)
    )
    return (
        Incident.objects.select_for_update(of=("self",))
        .select_related("tenant", "flow", "acknowledged_by", "inbound_call")
        .filter(pk=incident_id)
        .first()
    )


def incident_acknowledge(
    *,
    incident_id: int,
    person_id: int | None,
    channel: str,
    page_id: int | None = None,
    at: datetime | None = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    """``person_id`` takes the incident (explicitly: ``channel`` call, sms, link or api). Every other
    pending leg stops, the others are told, the caller is confirmed. False when it could not be taken
    (acknowledged or resolved already)."""
    if channel not in ACK_CHANNELS:
        raise InvalidInput("channel", f"must be one of {', '.join(ACK_CHANNELS)}")
    at = at or timezone.now()
    with transaction.atomic():
        incident = _lock(incident_id)
        if incident is None:
            raise Incident.DoesNotExist(f"no incident {incident_id}")
        return _acknowledge_locked(incident, person_id, channel, page_id, at, detail or {})


def _acknowledge_locked(
    incident: Incident,
    person_id: int | None,
    channel: str,
    page_id: int | None,
    at: datetime,
    detail: dict[str, Any],
) -> bool:
    move = incident_transition(incident.status, IncidentInput.ACKNOWLEDGE)
    if not move.ok or move.to is None:
        return False
    person = (
        OnCallPerson.objects.filter(pk=person_id, tenant_id=incident.tenant_id).first() if person_id else None
    )
    accepting = (
        Page.objects.select_for_update().filter(pk=page_id, incident=incident).first() if page_id else None
    )
    incident.status = move.to
    incident.acknowledged_by, incident.acknowledged_at, incident.ack_channel = person, at, channel
    incident.save(update_fields=["status", "acknowledged_by", "acknowledged_at", "ack_channel", "updated_at"])
    _incident_webhook(incident, events.INCIDENT_ACKNOWLEDGED)
    if accepting is not None:
        page_apply(page=accepting, event=PageInput.ACCEPTED, at=at)
    event_add(
        incident=incident,
        kind=Kind.ACKNOWLEDGED,
        at=at,
        person=person,
        page=accepting,
        channel=channel,
        detail=detail,
    )
    escalation.escalation_stop(incident=incident)
    timer_cancel(key=escalation.callback_timer_key(incident.pk))
    pages_stop(incident=incident, at=at, keep=accepting, reason="acknowledged")
    name = person.name if person else "a manager"
    flow = incident.flow
    # The others who were paged: "taken by X".
    others = (
        Page.objects.filter(incident=incident, purpose=Page.Purpose.PAGE, person__isnull=False)
        .exclude(person_id=person.pk if person else None)
        .values_list("person_id", flat=True)
        .distinct()
    )
    taken = _fmt((flow.taken_sms if flow else "") or DEFAULT_TAKEN_SMS, person=name, code=incident.short_code)
    for other in OnCallPerson.objects.filter(pk__in=list(others)).order_by("pk"):
        if other.text_number:
            page_create(
                incident=incident,
                person=other,
                purpose=Page.Purpose.TAKEN,
                channel=Page.Channel.SMS,
                to_number=other.text_number,
                text=taken,
                round=incident.round,
                step=incident.step,
                now=at,
            )
    caller = str((incident.intake or {}).get("callback_number") or "") or incident.caller_number
    if caller:
        business = (flow.business_name if flow else "") or incident.tenant.name
        text = _fmt(
            (flow.caller_ack_sms if flow else "") or DEFAULT_CALLER_ACK_SMS,
            person=name,
            business=business,
            code=incident.short_code,
        )
        page_create(
            incident=incident,
            purpose=Page.Purpose.CALLER,
            channel=Page.Channel.SMS,
            to_number=caller,
            text=text,
            round=incident.round,
            step=incident.step,
            now=at,
        )
    if accepting is not None and accepting.channel == Page.Channel.CALL and accepting.call_id:
        say_on_commit(call_id=accepting.call_id, text=SAY_ACCEPTED)
    logger.info("incident %s acknowledged by %s via %s", incident.pk, name, channel)
    return True


def page_decline(*, page_id: int, at: datetime | None = None, channel: str = "") -> bool:
    """The person of a page declines: the page is declined and, when it belongs to the step running now,
    the next step fires at once. False when the page could not be declined (not pending, incident taken)."""
    at = at or timezone.now()
    incident_id = Page.objects.filter(pk=page_id).values_list("incident_id", flat=True).first()
    if incident_id is None:
        return False
    with transaction.atomic():
        incident = _lock(incident_id)
        page = Page.objects.select_for_update().filter(pk=page_id).first()
        if incident is None or page is None or incident.status != Incident.Status.OPEN:
            return False
        if not page_apply(page=page, event=PageInput.DECLINED, at=at):
            return False
        event_add(incident=incident, kind=Kind.DECLINED, at=at, page=page, channel=channel or page.channel)
        # The same person's other leg of this step stops too (they said no).
        for twin in (
            Page.objects.select_for_update()
            .filter(
                incident=incident,
                person_id=page.person_id,
                round=page.round,
                step=page.step,
                status__in=[PageStatus.TO_SEND, PageStatus.SENT, PageStatus.ANSWERED],
            )
            .exclude(pk=page.pk)
        ):
            if page_apply(page=twin, event=PageInput.CANCELLED, at=at):
                event_add(
                    incident=incident, kind=Kind.LEG_STOPPED, at=at, page=twin, detail={"reason": "declined"}
                )
                if twin.channel == Page.Channel.CALL and twin.sent_at is not None:
                    from flows.services import outbox  # noqa: PLC0415 - small, local

                    outbox.enqueue(outbox.PAGE_HANGUP, twin.pk)
        if (page.round, page.step) == (incident.round, incident.step):
            # Others of the same step (a group) may still answer, but a decline moves on at once.
            escalation.escalation_advance_now(incident=incident, at=at)
        if page.channel == Page.Channel.CALL and page.call_id:
            say_on_commit(call_id=page.call_id, text=SAY_DECLINED)
    return True


# ------------------------------------------------------------------------------------------- choose


def incident_choose(
    *,
    incident_id: int,
    choice: str,
    person_id: int | None = None,
    channel: str = "api",
    at: datetime | None = None,
) -> bool:
    """The acknowledger chooses to be connected to the caller now (``connect``) or to call back later
    (``later``). Once only; False when refused (not acknowledged, chosen already, not the acknowledger)."""
    if choice not in (Incident.AckChoice.CONNECT, Incident.AckChoice.LATER):
        raise InvalidInput("choice", "must be connect or later")
    at = at or timezone.now()
    with transaction.atomic():
        incident = _lock(incident_id)
        if incident is None:
            raise Incident.DoesNotExist(f"no incident {incident_id}")
        if incident.status != Incident.Status.ACKNOWLEDGED or incident.ack_choice:
            return False
        if person_id is not None and incident.acknowledged_by_id not in (None, person_id):
            return False
        incident.ack_choice = choice
        incident.save(update_fields=["ack_choice", "updated_at"])
        event_add(
            incident=incident,
            kind=Kind.CHOSE,
            at=at,
            person=incident.acknowledged_by,
            channel=channel,
            detail={"choice": choice},
        )
        live_call = (
            Page.objects.select_for_update()
            .filter(
                incident=incident,
                channel=Page.Channel.CALL,
                status=PageStatus.ACCEPTED,
                ended_at__isnull=True,
                person=incident.acknowledged_by,
            )
            .exclude(person__isnull=True)
            .order_by("-pk")
            .first()
        )
        if choice == Incident.AckChoice.LATER:
            if live_call is not None and live_call.call_id:
                say_on_commit(call_id=live_call.call_id, text=SAY_LATER)
            return True
        caller = str((incident.intake or {}).get("callback_number") or "") or incident.caller_number
        if not caller:
            event_add(
                incident=incident, kind=Kind.CONNECT_FAILED, at=at, detail={"error": "no caller number"}
            )
            return True
        if live_call is not None and live_call.call_id:
            say_on_commit(call_id=live_call.call_id, text=SAY_CONNECTING)
            transfer_on_commit(page=live_call, number=caller, caller_id=incident.did)
            event_add(
                incident=incident, kind=Kind.CONNECTING, at=at, page=live_call, detail={"number": caller}
            )
            return True
        person = incident.acknowledged_by
        if person is None or not person.phone:
            event_add(incident=incident, kind=Kind.CONNECT_FAILED, at=at, detail={"error": "nobody to call"})
            return True
        # No live call with the acknowledger (they answered by SMS or link): call them, then bridge.
        leg = page_create(
            incident=incident,
            person=person,
            purpose=Page.Purpose.CONNECT,
            channel=Page.Channel.CALL,
            to_number=person.phone,
            text=SAY_CONNECTING,
            round=incident.round,
            step=incident.step,
            now=at,
        )
        event_add(incident=incident, kind=Kind.CONNECTING, at=at, page=leg, detail={"number": caller})
    return True


# ------------------------------------------------------------------------------------------ resolve


def incident_resolve(*, incident_id: int, by: str = "", at: datetime | None = None) -> bool:
    """Close the incident: escalation and callback timers cancelled, pending legs stopped."""
    at = at or timezone.now()
    with transaction.atomic():
        incident = _lock(incident_id)
        if incident is None:
            raise Incident.DoesNotExist(f"no incident {incident_id}")
        move = incident_transition(incident.status, IncidentInput.RESOLVE)
        if not move.ok or move.to is None:
            return False
        incident.status, incident.resolved_at = move.to, at
        incident.save(update_fields=["status", "resolved_at", "updated_at"])
        _incident_webhook(incident, events.INCIDENT_RESOLVED)
        escalation.escalation_stop(incident=incident)
        timer_cancel(key=escalation.callback_timer_key(incident.pk))
        pages_stop(incident=incident, at=at, reason="resolved")
        event_add(incident=incident, kind=Kind.RESOLVED, at=at, channel="api", detail={"by": by[:150]})
    return True


def incident_acknowledgeable(incident: Incident) -> bool:
    return incident.status in ACKNOWLEDGEABLE


def incident_escalate_now(*, incident_id: int, at: datetime | None = None) -> bool:
    """Fire the next step now (an operator's nudge from the API)."""
    at = at or timezone.now()
    with transaction.atomic():
        incident = _lock(incident_id)
        if incident is None or incident.status != Incident.Status.OPEN:
            return False
        return escalation.escalation_advance_now(incident=incident, at=at)


__all__ = [
    "incident_acknowledge",
    "incident_choose",
    "incident_escalate_now",
    "incident_open",
    "incident_resolve",
    "page_decline",
]
