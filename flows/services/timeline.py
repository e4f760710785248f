"""Appending to an incident's timeline (append-only; ordered by time, then id). Every event appended is
announced to the tenant's live pages (``orchestrator.live.live_notify``, kind ``incident``: the portal's
incident page re-reads its timeline on ``incident-<id>``) once the transaction commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from flows.models import Incident, IncidentEvent, OnCallPerson, Page
from orchestrator.live import live_notify


def event_add(
    *,
    incident: Incident | int,
    kind: str,
    at: datetime | None = None,
    person: OnCallPerson | int | None = None,
    page: Page | None = None,
    channel: str = "",
    round: int | None = None,  # noqa: A002 - the timeline's own vocabulary
    step: int | None = None,
    detail: dict[str, Any] | None = None,
) -> IncidentEvent:
    incident_id = incident if isinstance(incident, int) else incident.pk
    person_id = person if isinstance(person, int) or person is None else person.pk
    if person_id is None and page is not None:
        person_id = page.person_id
    event = IncidentEvent.objects.create(
        incident_id=incident_id,
        kind=kind,
        at=at or timezone.now(),
        person_id=person_id,
        page=page,
        channel=channel or (page.channel if page is not None else ""),
        round=round if round is not None else (page.round if page is not None else None),
        step=step if step is not None else (page.step if page is not None else None),
        detail=detail or {},
    )
    if isinstance(incident, Incident):
        tenant_id: int | None = incident.tenant_id
    else:
        tenant_id = Incident.objects.filter(pk=incident_id).values_list("tenant_id", flat=True).first()
    if tenant_id is not None:
        live_notify(tenant_id=tenant_id, kind="incident", incident_id=incident_id, event=event.kind)
    return event
