"""The escalation of an open incident, driven by one durable timer per incident (``flows.incident:<id>``,
kind ``flows.escalation_step``; timers/services.py).

The timer's payload names what fires next: ``{"incident_id", "round", "step"}`` or ``{"incident_id",
"fallback": true}``. :func:`escalation_step_due` runs inside the transaction that moved the timer from
pending to fired (so a stale or duplicate firing never gets here), locks the incident, fires the step
(a ``step_fired`` timeline row, UNIQUE per incident/round/step, and the step's pages, UNIQUE per
person/channel), and re-arms the same timer for what comes next, ``wait_s`` later. A decline re-arms it
for now (:func:`escalation_advance_now`); an acknowledgement or a resolution cancels it.

Steps are taken from the incident's ``policy_snapshot`` (:func:`policy_snapshot`, taken when it opened):
a later change of the policy never alters a running escalation. Who a rotation step pages is who is on call
when the step fires; a group step pages the members recorded in the snapshot.

After the last step of the last round (``repeat + 1`` rounds), the fallback: the incident is
``exhausted``, the fallback people are texted, and, when the policy says so, a call back to the caller is
scheduled at the flow's next opening (another durable timer, ``flows.callback:<id>``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from flows.lifecycle import IncidentInput, incident_transition
from flows.models import (
    EscalationPolicy,
    EscalationStep,
    Incident,
    IncidentEvent,
    OnCallPerson,
    Page,
    Rotation,
)
from flows.selectors import flow_next_opening, rotation_on_call_person
from flows.services.links import ack_url
from flows.services.pages import page_create
from flows.services.timeline import event_add
from orchestrator.errors import InvalidInput
from timers.models import Timer
from timers.services import timer_cancel, timer_set

logger = logging.getLogger(__name__)

STEP_KIND = "flows.escalation_step"
CALLBACK_KIND = "flows.caller_callback"

Kind = IncidentEvent.Kind


def incident_timer_key(incident_id: int) -> str:
    return f"flows.incident:{incident_id}"


def callback_timer_key(incident_id: int) -> str:
    return f"flows.callback:{incident_id}"


def step_wait_validate(wait_s: int, *, field: str = "wait_s") -> None:
    """A step waits at least ``settings.FLOWS_MIN_STEP_WAIT_S`` seconds (the API and admin call this)."""
    minimum = int(settings.FLOWS_MIN_STEP_WAIT_S)
    if not isinstance(wait_s, int) or isinstance(wait_s, bool) or wait_s < minimum:
        raise InvalidInput(field, f"must be a whole number of seconds, at least {minimum}")


# ------------------------------------------------------------------------------------------ snapshot


def policy_snapshot(*, policy: EscalationPolicy | None) -> dict[str, Any]:
    """The policy as data (see ``Incident.policy_snapshot``)."""
    if policy is None:
        return {
            "policy_id": None,
            "name": "",
            "repeat": 0,
            "steps": [],
            "fallback": {"people": [], "sms": "", "callback": False},
        }
    steps: list[dict[str, Any]] = []
    for step in policy.steps.select_related("person", "rotation", "group").order_by("position", "pk"):
        entry: dict[str, Any] = {
            "position": step.position,
            "target_kind": step.target_kind,
            "notify_call": step.notify_call,
            "notify_sms": step.notify_sms,
            "wait_s": step.wait_s,
        }
        if step.target_kind == EscalationStep.TargetKind.PERSON and step.person is not None:
            entry.update(target_id=step.person.pk, target_name=step.person.name, people=[step.person.pk])
        elif step.target_kind == EscalationStep.TargetKind.ROTATION and step.rotation is not None:
            entry.update(target_id=step.rotation.pk, target_name=step.rotation.name)
        elif step.group is not None:
            members = list(step.group.members.order_by("pk").values_list("pk", flat=True))
            entry.update(target_id=step.group.pk, target_name=step.group.name, people=members)
        steps.append(entry)
    people = [
        {"id": p.pk, "name": p.name, "sms_number": p.text_number}
        for p in policy.fallback_people.order_by("pk")
    ]
    return {
        "policy_id": policy.pk,
        "name": policy.name,
        "repeat": policy.repeat,
        "steps": steps,
        "fallback": {"people": people, "sms": policy.fallback_sms, "callback": policy.fallback_callback},
    }


# ------------------------------------------------------------------------------------------- texts


def caller_label(incident: Incident) -> str:
    intake = incident.intake or {}
    name = str(intake.get("name") or intake.get("caller_name") or "").strip()
    if not name and incident.inbound_call_id and incident.inbound_call is not None:
        name = incident.inbound_call.caller_name
    number = incident.caller_number
    return f"{name} ({number})" if name and number else (name or number or "an unknown caller")


def problem_of(incident: Incident) -> str:
    intake = incident.intake or {}
    return (incident.summary or str(intake.get("problem") or "") or "an urgent problem").strip()[:300]


def business_of(incident: Incident) -> str:
    flow = incident.flow
    return (flow.business_name if flow else "") or incident.tenant.name


def notification_text(incident: Incident) -> str:
    return (
        f"Urgent call from {caller_label(incident)} about {problem_of(incident)}. "
        "Press 1 to accept, 2 to decline."
    )


def page_sms_text(incident: Incident, person: OnCallPerson) -> str:
    callback = str((incident.intake or {}).get("callback_number") or incident.caller_number or "")
    link = ack_url(incident_id=incident.pk, person_id=person.pk)
    return (
        f"URGENT {incident.short_code}: call from {caller_label(incident)} about {problem_of(incident)}. "
        f"Callback {callback}. Reply 1 to accept or 2 to decline (or 1 {incident.short_code}). {link}"
    )


# ---------------------------------------------------------------------------------------- the steps


def _people_of(step: dict[str, Any], at: datetime) -> list[OnCallPerson]:
    if step.get("target_kind") == EscalationStep.TargetKind.ROTATION:
        rotation = Rotation.objects.filter(pk=int(step.get("target_id") or 0)).first()
        person = rotation_on_call_person(rotation=rotation, at=at) if rotation else None
        return [person] if person and person.active else []
    ids = [int(pk) for pk in step.get("people") or []]
    by_id = {p.pk: p for p in OnCallPerson.objects.filter(pk__in=ids, active=True)}
    return [by_id[pk] for pk in ids if pk in by_id]


def _fire_step(
    incident: Incident, round_: int, step_index: int, step: dict[str, Any], at: datetime, due_at: datetime
) -> None:
    people = _people_of(step, at)
    event_add(
        incident=incident,
        kind=Kind.STEP_FIRED,
        at=at,
        round=round_,
        step=step_index,
        detail={
            "target_kind": step.get("target_kind"),
            "target_id": step.get("target_id"),
            "target_name": step.get("target_name", ""),
            "people": [p.pk for p in people],
            "wait_s": step.get("wait_s"),
            # The deadline it fired for: the timeline shows how late a step was (bench/escalation.py).
            "due_at": due_at.isoformat(),
        },
    )
    if not people:
        event_add(incident=incident, kind=Kind.NO_TARGET, at=at, round=round_, step=step_index)
        return
    notification = notification_text(incident)
    for person in people:
        # Call and SMS are created together and their sends enqueued together: they race in parallel.
        if step.get("notify_call") and person.phone:
            page_create(
                incident=incident,
                person=person,
                channel=Page.Channel.CALL,
                to_number=person.phone,
                text=notification,
                round=round_,
                step=step_index,
                now=at,
            )
        if step.get("notify_sms") and person.text_number:
            page_create(
                incident=incident,
                person=person,
                channel=Page.Channel.SMS,
                to_number=person.text_number,
                text=page_sms_text(incident, person),
                round=round_,
                step=step_index,
                now=at,
            )


def _next_of(snapshot: dict[str, Any], round_: int, step_index: int) -> dict[str, Any]:
    steps = snapshot.get("steps") or []
    if step_index + 1 < len(steps):
        return {"round": round_, "step": step_index + 1}
    if round_ < int(snapshot.get("repeat") or 0):
        return {"round": round_ + 1, "step": 0}
    return {"fallback": True}


def escalation_step_due(*, timer: Timer) -> None:
    """The ``flows.escalation_step`` timer handler (see the module docstring)."""
    at = timer.fired_at or timezone.now()
    payload = timer.payload or {}
    incident = (
        Incident.objects.select_for_update(of=("self",))
        .select_related("tenant", "flow", "inbound_call")
        .filter(pk=int(payload.get("incident_id") or 0))
        .first()
    )
    if incident is None or not incident_transition(incident.status, IncidentInput.EXHAUST).ok:
        return  # acknowledged, resolved or exhausted meanwhile: nothing more fires
    snapshot = incident.policy_snapshot or {}
    steps = snapshot.get("steps") or []
    if payload.get("fallback") or not steps:
        _fallback(incident, at)
        return
    round_, step_index = int(payload.get("round", 0)), int(payload.get("step", 0))
    if step_index >= len(steps) or (
        incident.step >= 0 and (round_, step_index) <= (incident.round, incident.step)
    ):
        logger.warning(
            "incident %s: step %s/%s is not ahead of %s/%s; ignored",
            incident.pk,
            round_,
            step_index,
            incident.round,
            incident.step,
        )
        return
    if step_index == 0 and round_ > 0:
        event_add(incident=incident, kind=Kind.ROUND_STARTED, at=at, round=round_, step=0)
    step = steps[step_index]
    _fire_step(incident, round_, step_index, step, at, timer.due_at)
    incident.round, incident.step = round_, step_index
    incident.save(update_fields=["round", "step", "updated_at"])
    timer_set(
        kind=STEP_KIND,
        key=incident_timer_key(incident.pk),
        due_at=at + timedelta(seconds=int(step.get("wait_s") or settings.FLOWS_MIN_STEP_WAIT_S)),
        payload={"incident_id": incident.pk, **_next_of(snapshot, round_, step_index)},
    )


def escalation_advance_now(*, incident: Incident, at: datetime) -> bool:
    """Fire what comes next now instead of at the end of the wait (a decline). The incident is locked by
    the caller; False when nothing is pending."""
    timer = Timer.objects.filter(key=incident_timer_key(incident.pk), state=Timer.State.PENDING).first()
    if timer is None:
        return False
    timer_set(kind=STEP_KIND, key=timer.key, due_at=at, payload=timer.payload)
    return True


def escalation_stop(*, incident: Incident) -> None:
    timer_cancel(key=incident_timer_key(incident.pk))


# ----------------------------------------------------------------------------------------- fallback


def _fallback(incident: Incident, at: datetime) -> None:
    move = incident_transition(incident.status, IncidentInput.EXHAUST)
    if not move.ok or move.to is None:
        return
    incident.status, incident.exhausted_at = move.to, at
    incident.save(update_fields=["status", "exhausted_at", "updated_at"])
    event_add(incident=incident, kind=Kind.EXHAUSTED, at=at, round=incident.round, step=incident.step)
    fallback = (incident.policy_snapshot or {}).get("fallback") or {}
    template = str(fallback.get("sms") or "")
    values = {
        "code": incident.short_code,
        "caller": caller_label(incident),
        "summary": problem_of(incident),
        "business": business_of(incident),
    }
    try:
        text = template.format(**values) if template else ""
    except (KeyError, IndexError, ValueError):
        text = template
    people = fallback.get("people") or []
    persons = {p.pk: p for p in OnCallPerson.objects.filter(pk__in=[int(x["id"]) for x in people])}
    for entry in people:
        person = persons.get(int(entry["id"]))
        number = (person.text_number if person else "") or str(entry.get("sms_number") or "")
        if text and number:
            page_create(
                incident=incident,
                person=person,
                purpose=Page.Purpose.FALLBACK,
                channel=Page.Channel.SMS,
                to_number=number,
                text=text,
                round=incident.round,
                step=-1,
                now=at,
            )
    event_add(
        incident=incident,
        kind=Kind.FALLBACK,
        at=at,
        detail={"texted": [int(x["id"]) for x in people], "callback": bool(fallback.get("callback"))},
    )
    if fallback.get("callback") and incident.caller_number:
        opening = flow_next_opening(flow=incident.flow, after=at) if incident.flow else None
        due = opening or at
        timer_set(
            kind=CALLBACK_KIND,
            key=callback_timer_key(incident.pk),
            due_at=due,
            payload={"incident_id": incident.pk},
        )
        event_add(incident=incident, kind=Kind.CALLBACK_SCHEDULED, at=at, detail={"due_at": due.isoformat()})


def incident_callback_due(*, timer: Timer) -> None:
    """The ``flows.caller_callback`` timer handler: call the caller back (the flow's agent), unless someone
    took the incident or it was resolved meanwhile."""
    at = timer.fired_at or timezone.now()
    incident = (
        Incident.objects.select_for_update(of=("self",))
        .select_related("tenant", "flow")
        .filter(pk=int((timer.payload or {}).get("incident_id") or 0))
        .first()
    )
    if incident is None or incident.status != Incident.Status.EXHAUSTED or not incident.caller_number:
        return
    greeting = (
        f"Hello, this is {business_of(incident)} returning your call about {problem_of(incident)}. "
        "How can we help?"
    )
    page_create(
        incident=incident,
        purpose=Page.Purpose.CALLBACK,
        channel=Page.Channel.CALL,
        to_number=incident.caller_number,
        text=greeting,
        round=incident.round,
        step=-1,
        now=at,
    )
