"""Builders for what a tenant sets up for inbound calls (through the services, like the product)."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

from django.utils import timezone

from flows.models import (
    EscalationPolicy,
    InboundCall,
    InboundFlow,
    Incident,
    OnCallGroup,
    OnCallPerson,
    PhoneNumber,
    Rotation,
)
from flows.services.incidents import incident_open
from flows.services.setup import inbound_flow_create, phone_number_create
from flows.services.setup_oncall import (
    escalation_policy_create,
    oncall_group_create,
    oncall_person_create,
    rotation_create,
)
from tenants.models import Tenant

_counter = itertools.count(1)


def make_person(tenant: Tenant, **overrides: Any) -> OnCallPerson:
    n = next(_counter)
    fields: dict[str, Any] = {"name": f"Person {n}", "phone": f"+1212555{n % 10000:04d}"}
    fields.update(overrides)
    return oncall_person_create(tenant=tenant, **fields)


def make_group(tenant: Tenant, members: list[OnCallPerson] | None = None) -> OnCallGroup:
    return oncall_group_create(tenant=tenant, name=f"Group {next(_counter)}", members=members or [])


def make_rotation(tenant: Tenant, members: list[OnCallPerson] | None = None, **overrides: Any) -> Rotation:
    fields: dict[str, Any] = {
        "name": f"Rotation {next(_counter)}",
        "start_date": date(2026, 1, 5),
        "handoff": "daily",
        "timezone": "UTC",
        "members": members if members is not None else [make_person(tenant)],
    }
    fields.update(overrides)
    return rotation_create(tenant=tenant, **fields)


def make_policy(tenant: Tenant, person: OnCallPerson | None = None, **overrides: Any) -> EscalationPolicy:
    fields: dict[str, Any] = {
        "name": f"Policy {next(_counter)}",
        "steps": [{"target_kind": "person", "person": person or make_person(tenant), "wait_s": 120}],
    }
    fields.update(overrides)
    return escalation_policy_create(tenant=tenant, **fields)


def make_flow(tenant: Tenant, **overrides: Any) -> InboundFlow:
    fields: dict[str, Any] = {
        "name": f"Flow {next(_counter)}",
        "instructions": "Take the caller's details.",
        "intake_fields": [{"name": "name", "label": "Name", "required": True}],
    }
    fields.update(overrides)
    return inbound_flow_create(tenant=tenant, **fields)


def make_number(tenant: Tenant, flow: InboundFlow | None = None, number: str | None = None) -> PhoneNumber:
    return phone_number_create(
        tenant=tenant, number=number or f"+1646555{next(_counter) % 10000:04d}", flow=flow
    )


def make_call(tenant: Tenant, flow: InboundFlow | None, did: str, **overrides: Any) -> InboundCall:
    fields: dict[str, Any] = {
        "channel_id": f"1767650400.{next(_counter)}",
        "tenant": tenant,
        "flow": flow,
        "did": did,
        "caller_number": "+19175551212",
        "handling": InboundCall.Handling.AGENT,
        "status": InboundCall.Status.ENDED,
        "started_at": timezone.now(),
        "intake": {"name": "Pat", "problem": "No heat"},
    }
    fields.update(overrides)
    return InboundCall.objects.create(**fields)


def make_incident(tenant: Tenant, **overrides: Any) -> Incident:
    """An open incident whose first step fired (its side effects wait for a commit that tests never make)."""
    person = overrides.pop("person", None) or make_person(tenant)
    policy = overrides.pop("policy", None) or make_policy(tenant, person)
    flow = overrides.pop("flow", None) or make_flow(tenant, escalation_policy=policy)
    did = overrides.pop("did", None) or make_number(tenant, flow).number
    call = overrides.pop("inbound_call", None) or make_call(tenant, flow, did)
    fields: dict[str, Any] = {
        "tenant_id": tenant.pk,
        "flow": flow,
        "policy": policy,
        "inbound_call": call,
        "caller_number": call.caller_number,
        "did": did,
        "intake": dict(call.intake),
        "summary": "No heat, baby at home",
    }
    fields.update(overrides)
    return incident_open(**fields)
