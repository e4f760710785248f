"""Writes for the do-not-call list. Numbers are stored in E.164 so every lookup is an exact match."""

from __future__ import annotations

from campaigns.models import DncEntry
from campaigns.phone import normalize_phone_number
from orchestrator.errors import InvalidInput
from tenants.models import Tenant


def dnc_add(*, tenant: Tenant, phone_number: str, source: str, note: str = "") -> DncEntry:
    """Put the number on the tenant's DNC list (idempotent: an existing entry is kept as it is, so the
    first source and time stay on record)."""
    if source not in DncEntry.Source.values:
        raise InvalidInput("source", f"must be one of {', '.join(DncEntry.Source.values)}")
    e164 = normalize_phone_number(phone_number, field="phone_number")
    entry, _ = DncEntry.objects.get_or_create(
        tenant=tenant, phone_number=e164, defaults={"source": source, "note": note}
    )
    return entry


def dnc_remove(*, tenant: Tenant, phone_number: str) -> bool:
    """Take the number off the tenant's DNC list; whether it was on it."""
    e164 = normalize_phone_number(phone_number, field="phone_number")
    deleted, _ = DncEntry.objects.filter(tenant=tenant, phone_number=e164).delete()
    return deleted > 0
