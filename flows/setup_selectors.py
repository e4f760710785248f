"""Reads for the flows API and admin, every one scoped by tenant (another tenant's id is simply not there:
a 404, DESIGN.md §5 rule 7). The engine's own reads are in ``flows.selectors``."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet

from campaigns.models import AgentProfile
from flows.models import (
    EscalationPolicy,
    EscalationStep,
    InboundCall,
    InboundFlow,
    Incident,
    IncidentEvent,
    OnCallGroup,
    OnCallPerson,
    Page,
    PhoneNumber,
    Rotation,
    RotationMember,
    RotationOverride,
)
from flows.selectors import rotation_on_call_person
from tenants.models import Tenant


def _did_variants(number: str) -> list[str]:
    """A DID as the dialplan may have passed it: E.164 or its digits without the +."""
    return [number, number.removeprefix("+")]


def phone_number_list(*, tenant: Tenant) -> QuerySet[PhoneNumber]:
    return PhoneNumber.objects.filter(tenant=tenant).select_related("flow").order_by("number")


def inbound_flow_list(*, tenant: Tenant) -> QuerySet[InboundFlow]:
    return (
        InboundFlow.objects.filter(tenant=tenant)
        .prefetch_related("business_hours", "holidays", "intake_fields", "phone_numbers")
        .order_by("name", "pk")
    )


def oncall_person_list(*, tenant: Tenant) -> QuerySet[OnCallPerson]:
    return OnCallPerson.objects.filter(tenant=tenant).order_by("name", "pk")


def oncall_group_list(*, tenant: Tenant) -> QuerySet[OnCallGroup]:
    return OnCallGroup.objects.filter(tenant=tenant).prefetch_related("members").order_by("name", "pk")


def rotation_list(*, tenant: Tenant) -> QuerySet[Rotation]:
    return (
        Rotation.objects.filter(tenant=tenant)
        .prefetch_related(
            # With their people: ``flows.selectors.rotation_on_call_person`` answers from these rows.
            Prefetch(
                "members", queryset=RotationMember.objects.select_related("person").order_by("position", "pk")
            ),
            Prefetch(
                "overrides",
                queryset=RotationOverride.objects.select_related("person").order_by("starts_at", "pk"),
            ),
        )
        .order_by("name", "pk")
    )


def rotation_override_list(*, tenant: Tenant, rotation_id: int | None = None) -> QuerySet[RotationOverride]:
    overrides = RotationOverride.objects.filter(rotation__tenant=tenant).select_related("rotation", "person")
    if rotation_id is not None:
        overrides = overrides.filter(rotation_id=rotation_id)
    return overrides.order_by("starts_at", "pk")


def escalation_policy_list(*, tenant: Tenant) -> QuerySet[EscalationPolicy]:
    return (
        EscalationPolicy.objects.filter(tenant=tenant)
        .prefetch_related(
            Prefetch(
                "steps",
                queryset=EscalationStep.objects.select_related("person", "rotation", "group").order_by(
                    "position", "pk"
                ),
            ),
            "fallback_people",
        )
        .order_by("name", "pk")
    )


def agent_profile_list(*, tenant: Tenant) -> QuerySet[AgentProfile]:
    """The tenant's agent profiles (shared with campaigns), for a flow's ``agent``."""
    return AgentProfile.objects.filter(tenant=tenant).order_by("name", "pk")


def incident_search(
    *,
    tenant: Tenant,
    status: str | None = None,
    flow_id: int | None = None,
    number: str | None = None,
    caller: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    acknowledged_by: int | None = None,
) -> QuerySet[Incident]:
    """The tenant's incidents, newest first: by status, flow, the number called (``number``), the caller,
    opened in [since, until), and who acknowledged them."""
    incidents = Incident.objects.filter(tenant=tenant).select_related("acknowledged_by", "flow")
    if status:
        incidents = incidents.filter(status=status)
    if flow_id is not None:
        incidents = incidents.filter(flow_id=flow_id)
    if number:
        incidents = incidents.filter(did__in=_did_variants(number))
    if caller:
        incidents = incidents.filter(Q(caller_number=caller) | Q(intake__callback_number=caller))
    if since is not None:
        incidents = incidents.filter(opened_at__gte=since)
    if until is not None:
        incidents = incidents.filter(opened_at__lt=until)
    if acknowledged_by is not None:
        incidents = incidents.filter(acknowledged_by_id=acknowledged_by)
    return incidents.order_by("-opened_at", "-pk")


def incident_detail_list(*, tenant: Tenant) -> QuerySet[Incident]:
    """The tenant's incidents with their pages (for a detail view)."""
    return (
        Incident.objects.filter(tenant=tenant)
        .select_related("acknowledged_by")
        .prefetch_related(Prefetch("pages", queryset=Page.objects.order_by("created_at", "pk")))
    )


def incident_events(*, incident: Incident) -> QuerySet[IncidentEvent]:
    """The incident's timeline, in order (time, then the order it was written)."""
    return IncidentEvent.objects.filter(incident=incident).select_related("person").order_by("at", "pk")


def inbound_call_search(
    *,
    tenant: Tenant,
    status: str | None = None,
    handling: str | None = None,
    flow_id: int | None = None,
    number: str | None = None,
    caller: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[InboundCall]:
    calls = InboundCall.objects.filter(tenant=tenant).select_related("flow").prefetch_related("incidents")
    if status:
        calls = calls.filter(status=status)
    if handling:
        calls = calls.filter(handling=handling)
    if flow_id is not None:
        calls = calls.filter(flow_id=flow_id)
    if number:
        calls = calls.filter(did__in=_did_variants(number))
    if caller:
        calls = calls.filter(caller_number=caller)
    if since is not None:
        calls = calls.filter(started_at__gte=since)
    if until is not None:
        calls = calls.filter(started_at__lt=until)
    return calls.order_by("-started_at", "-pk")


def on_call_now(
    *, tenant: Tenant, at: datetime, rotation_id: int | None = None
) -> list[tuple[Rotation, OnCallPerson | None]]:
    """Who each of the tenant's rotations (or the one) puts on call at ``at``."""
    rotations = rotation_list(tenant=tenant)
    if rotation_id is not None:
        rotations = rotations.filter(pk=rotation_id)
    return [(rotation, rotation_on_call_person(rotation=rotation, at=at)) for rotation in rotations]


def incident_unresolved_list(*, tenant: Tenant) -> QuerySet[Incident]:
    """The tenant's incidents still being handled (open, acknowledged or exhausted), newest first."""
    return incident_search(tenant=tenant).exclude(status=Incident.Status.RESOLVED)
