"""Plain builders for domain rows, through the services (so tests exercise the same paths as the product)."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth.models import User

from campaigns.models import AgentProfile, Campaign, Contact, Lead, Pbx
from campaigns.services.agents import agent_profile_create
from campaigns.services.campaigns import campaign_create
from campaigns.services.contacts import contact_upsert, lead_add
from campaigns.services.pbx import pbx_create, pbx_place
from tenants.models import Tenant
from tenants.services import tenant_create

_counter = itertools.count(1)


def make_user(email: str | None = None) -> User:
    email = email or f"user{next(_counter)}@example.com"
    return User.objects.create_user(username=email, email=email)


def make_tenant(**overrides: Any) -> Tenant:
    n = next(_counter)
    fields: dict[str, Any] = {"name": f"Tenant {n}", "slug": f"tenant-{n}", "owner": make_user()}
    fields.update(overrides)
    return tenant_create(**fields)


def make_agent(tenant: Tenant, **overrides: Any) -> AgentProfile:
    # No template variable by default: a campaign refuses to start while a contact lacks one it uses.
    fields: dict[str, Any] = {"name": f"Agent {next(_counter)}", "instructions": "Hi, this is a test call."}
    fields.update(overrides)
    return agent_profile_create(tenant=tenant, **fields)


def make_campaign(tenant: Tenant, **overrides: Any) -> Campaign:
    fields: dict[str, Any] = {
        "agent": overrides.pop("agent", None) or make_agent(tenant),
        "name": f"Campaign {next(_counter)}",
        "caller_id": "+14155550100",
    }
    fields.update(overrides)
    return campaign_create(tenant=tenant, **fields)


def make_contact(tenant: Tenant, phone_number: str = "+12125550123", **overrides: Any) -> Contact:
    return contact_upsert(tenant=tenant, phone_number=phone_number, **overrides)


def make_lead(tenant: Tenant, campaign: Campaign | None = None, phone_number: str = "+12125550123") -> Lead:
    campaign = campaign or make_campaign(tenant)
    lead, _ = lead_add(campaign=campaign, contact=make_contact(tenant, phone_number))
    return lead


def make_pbx(tenant: Tenant, *, share: int | None = None, **overrides: Any) -> Pbx:
    """A platform PBX (the operator's) with ``tenant`` placed on it (with a share of its channels)."""
    fields: dict[str, Any] = {
        "name": f"pbx-{next(_counter)}",
        "ari_url": "http://127.0.0.1:8088/",
        "ari_user": "asterisk",
        "password_env": "TEST_ARI_PASSWORD",
    }
    fields.update(overrides)
    pbx = pbx_create(**fields)
    pbx_place(pbx=pbx, tenant=tenant, max_channels=share)
    return pbx
