"""What a tenant's user does to an incident through the API: acknowledge it on someone's behalf, resolve it
with a note, escalate it now. Each calls the engine's service (``flows.services.incidents``) and refuses
what the incident's state does not allow with InvalidInput on ``status`` (a 400, like a campaign's moves).
"""

from __future__ import annotations

from django.db import transaction

from flows.models import Incident, IncidentEvent, OnCallPerson
from flows.services.incidents import incident_acknowledge, incident_escalate_now, incident_resolve
from flows.services.setup import same_tenant
from flows.services.setup_text import clean_text
from flows.services.timeline import event_add
from orchestrator.errors import InvalidInput

NOTE_MAX = 2000


def incident_acknowledge_by_api(*, incident: Incident, person: OnCallPerson | None, by: str = "") -> Incident:
    """``person`` (of the incident's tenant; none: "a manager") takes the incident: pending legs stop,
    the others and the caller are told, as for an acknowledgement by key, SMS or link."""
    same_tenant(person, incident.tenant, field="person")
    done = incident_acknowledge(
        incident_id=incident.pk,
        person_id=person.pk if person else None,
        channel="api",
        detail={"by": clean_text(by, field="by", max_length=150)} if by else None,
    )
    if not done:
        incident.refresh_from_db()
        raise InvalidInput("status", f"the incident is {incident.status}: it cannot be acknowledged")
    incident.refresh_from_db()
    return incident


def incident_resolve_by_api(*, incident: Incident, note: str = "", by: str = "") -> Incident:
    """Close the incident (timers cancelled, pending legs stopped); ``note`` goes on its timeline."""
    text = clean_text(note, field="note", max_length=NOTE_MAX, multiline=True)
    who = clean_text(by, field="by", max_length=150)
    with transaction.atomic():
        if not incident_resolve(incident_id=incident.pk, by=who):
            incident.refresh_from_db()
            raise InvalidInput("status", f"the incident is {incident.status} already")
        if text:
            event_add(
                incident=incident,
                kind=IncidentEvent.Kind.NOTE,
                channel="api",
                detail={"note": text, "by": who},
            )
    incident.refresh_from_db()
    return incident


def incident_escalate_by_api(*, incident: Incident) -> Incident:
    """Fire the next step now, without waiting for the current one's deadline."""
    if not incident_escalate_now(incident_id=incident.pk):
        incident.refresh_from_db()
        raise InvalidInput("status", f"the incident is {incident.status}: only an open incident escalates")
    incident.refresh_from_db()
    return incident
