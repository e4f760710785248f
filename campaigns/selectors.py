"""Reads: query functions named ``<entity>_<query>`` (e.g. ``lead_list_due``), always scoped by tenant.
Views, the API and tasks read through these rather than building querysets themselves.
"""

from __future__ import annotations

from campaigns.models import DncEntry
from campaigns.phone import normalize_phone_number
from tenants.models import Tenant


def dnc_contains(*, tenant: Tenant, phone_number: str) -> bool:
    """Whether the number is on the tenant's DNC list. An unparseable number raises InvalidInput rather
    than answering False: "not on the list" must never be the answer for a number we cannot read."""
    e164 = normalize_phone_number(phone_number, field="phone_number")
    return DncEntry.objects.filter(tenant=tenant, phone_number=e164).exists()
