"""Reads of the inbound flows domain: live calls (for the Stasis app's reconciliation and the tenant cap),
whether a flow is open, who is on call, incidents and their timelines (tenant-scoped, for the API)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Prefetch, QuerySet

from flows.hours import OpenRange, Override, is_open, next_opening, rotation_on_call
from flows.lifecycle import PAGE_CALL_LIVE
from flows.models import (
    EscalationPolicy,
    InboundCall,
    InboundFlow,
    Incident,
    IncidentEvent,
    OnCallPerson,
    Page,
    PhoneNumber,
    Rotation,
)
from tenants.models import Tenant

#: Inbound calls that hold a slot of the tenant's concurrency (refused and unrouted ones are being told
#: and hung up: they are not counted).
SLOT_HANDLINGS = (InboundCall.Handling.AGENT, InboundCall.Handling.TRANSFERRED)
_LIVE_PAGE_CALL = sorted(status.value for status in PAGE_CALL_LIVE)


def inbound_live_channel_ids(*, pbx_ids: Iterable[int] | None = None) -> set[str]:
    """The channel ids of inbound calls not ended yet (of these PBX rows' Stasis app, when given)."""
    calls = InboundCall.objects.filter(status=InboundCall.Status.LIVE)
    if pbx_ids is not None:
        calls = calls.filter(pbx_id__in=list(pbx_ids))
    return set(calls.values_list("channel_id", flat=True))


def flow_legs_live_call_ids(*, pbx_ids: Iterable[int] | None = None) -> set[str]:
    """The call ids of flow legs (page calls, connect and callback calls) placed and not ended."""
    pages = Page.objects.filter(
        channel=Page.Channel.CALL, status__in=_LIVE_PAGE_CALL, call_id__isnull=False, sent_at__isnull=False
    )
    if pbx_ids is not None:
        pages = pages.filter(pbx_id__in=list(pbx_ids))
    return {call_id for call_id in pages.values_list("call_id", flat=True) if call_id}


def flow_live_call_ids(*, pbx_ids: Iterable[int] | None = None) -> set[str]:
    return inbound_live_channel_ids(pbx_ids=pbx_ids) | flow_legs_live_call_ids(pbx_ids=pbx_ids)


def tenant_live_flow_calls(*, tenant_id: int) -> int:
    """Live inbound calls holding a slot plus live flow call legs of the tenant."""
    inbound = InboundCall.objects.filter(
        tenant_id=tenant_id, status=InboundCall.Status.LIVE, handling__in=SLOT_HANDLINGS
    ).count()
    # A call page holds a line from its originate's claim (``sent_at``) until it ends; one still waiting for
    # a free line (flows.services.pages) holds none.
    legs = Page.objects.filter(
        incident__tenant_id=tenant_id,
        channel=Page.Channel.CALL,
        status__in=_LIVE_PAGE_CALL,
        sent_at__isnull=False,
    ).count()
    return inbound + legs


def phone_number_for_did(*, did: str) -> PhoneNumber | None:
    """The tenant's number a call was made to (its flow and tenant loaded), from the DID as the dialplan
    passed it (E.164, or digits without the +)."""
    text = (did or "").strip()
    if not text:
        return None
    candidates = {text}
    if not text.startswith("+"):
        candidates.add(f"+{text}")
    return (
        PhoneNumber.objects.select_related("tenant", "flow", "flow__agent", "flow__escalation_policy")
        .filter(number__in=candidates)
        .first()
    )


def flow_timezone(*, flow: InboundFlow) -> str:
    return flow.timezone or flow.tenant.default_timezone or "UTC"


def _ranges(flow: InboundFlow) -> list[OpenRange]:
    return [OpenRange(h.weekday, h.opens, h.closes) for h in flow.business_hours.all()]


def flow_is_open(*, flow: InboundFlow, at: datetime) -> bool:
    """Within the flow's business hours at ``at`` (its timezone, weekdays, holidays)."""
    return is_open(
        ranges=_ranges(flow),
        holidays=flow.holidays.values_list("date", flat=True),
        tz=flow_timezone(flow=flow),
        at=at,
    )


def flow_next_opening(*, flow: InboundFlow, after: datetime) -> datetime | None:
    return next_opening(
        ranges=_ranges(flow),
        holidays=list(flow.holidays.values_list("date", flat=True)),
        tz=flow_timezone(flow=flow),
        after=after,
    )


def rotation_on_call_person(*, rotation: Rotation, at: datetime) -> OnCallPerson | None:
    """Who the rotation puts on call at ``at`` (overrides first).

    A rotation read with its members and overrides prefetched (``flows.setup_selectors.rotation_list``:
    ordered, with their people) is answered from those rows, so a page that asks for many rotations or many
    days does no query per answer; otherwise the rows are read here."""
    cache = getattr(rotation, "_prefetched_objects_cache", {})
    people: dict[int, OnCallPerson] = {}
    if "members" in cache:
        rows = sorted(rotation.members.all(), key=lambda m: (m.position, m.pk))
        members = [m.person_id for m in rows]
        people.update({m.person_id: m.person for m in rows if "person" in m._state.fields_cache})
    else:
        members = list(rotation.members.order_by("position", "pk").values_list("person_id", flat=True))
    if "overrides" in cache:
        covering = [o for o in rotation.overrides.all() if o.starts_at <= at < o.ends_at]
        people.update({o.person_id: o.person for o in covering if "person" in o._state.fields_cache})
    else:
        covering = list(rotation.overrides.filter(starts_at__lte=at, ends_at__gt=at))
    overrides = [Override(o.person_id, o.starts_at, o.ends_at, o.pk) for o in covering]
    person_id = rotation_on_call(
        members=members,
        handoff=rotation.handoff,
        handoff_weekday=rotation.handoff_weekday,
        handoff_time=rotation.handoff_time,
        start_date=rotation.start_date,
        tz=rotation.timezone,
        at=at,
        overrides=overrides,
    )
    if person_id is None:
        return None
    if person_id in people:
        return people[person_id]
    return OnCallPerson.objects.filter(pk=person_id).first()


def rotation_calendar(
    *, rotation: Rotation, start: date, days: int
) -> list[tuple[date, datetime, OnCallPerson | None]]:
    """Who the rotation puts on call on each of ``days`` local dates from ``start``: at that day's hand-off
    time (local to the rotation), as :func:`rotation_on_call_person` decides (overrides first)."""
    zone = ZoneInfo(rotation.timezone)
    out: list[tuple[date, datetime, OnCallPerson | None]] = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        at = datetime.combine(day, rotation.handoff_time, tzinfo=zone)
        out.append((day, at, rotation_on_call_person(rotation=rotation, at=at)))
    return out


# ------------------------------------------------------------------------------------------ API reads


def incident_list(
    *,
    tenant: Tenant,
    status: str | None = None,
    flow_id: int | None = None,
    opened_after: datetime | None = None,
    opened_before: datetime | None = None,
    acknowledged_by: int | None = None,
) -> QuerySet[Incident]:
    incidents = Incident.objects.filter(tenant=tenant).select_related("acknowledged_by", "flow")
    if status:
        incidents = incidents.filter(status=status)
    if flow_id is not None:
        incidents = incidents.filter(flow_id=flow_id)
    if opened_after is not None:
        incidents = incidents.filter(opened_at__gte=opened_after)
    if opened_before is not None:
        incidents = incidents.filter(opened_at__lt=opened_before)
    if acknowledged_by is not None:
        incidents = incidents.filter(acknowledged_by_id=acknowledged_by)
    return incidents


def incident_timeline(*, incident: Incident) -> QuerySet[IncidentEvent]:
    """The incident's timeline, in order (the liability record)."""
    return incident.events.select_related("person").order_by("at", "pk")


def incident_get(*, tenant: Tenant, incident_id: int) -> Incident:
    """Scoped by tenant: another tenant's incident raises ``Incident.DoesNotExist`` (a 404)."""
    return Incident.objects.prefetch_related(
        Prefetch("pages", queryset=Page.objects.select_related("person"))
    ).get(tenant=tenant, pk=incident_id)


def policy_list(*, tenant: Tenant) -> QuerySet[EscalationPolicy]:
    return EscalationPolicy.objects.filter(tenant=tenant).prefetch_related("steps")


def inbound_call_list(*, tenant: Tenant) -> QuerySet[InboundCall]:
    return InboundCall.objects.filter(tenant=tenant)
