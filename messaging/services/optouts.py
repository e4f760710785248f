"""Writes for a tenant's SMS opt-out list (STOP / START, a provider's opt-out error, the API)."""

from __future__ import annotations

from messaging.models import OptOut
from messaging.services.accounts import validate_e164
from tenants.models import Tenant


def opt_out_add(*, tenant_id: int, phone_number: str, source: str, keyword: str = "") -> tuple[OptOut, bool]:
    """The number on the tenant's opt-out list (and whether it was added now). Idempotent."""
    validate_e164(phone_number, field="phone_number")
    return OptOut.objects.get_or_create(
        tenant_id=tenant_id, phone_number=phone_number, defaults={"source": source, "keyword": keyword}
    )


def opt_out_remove(*, tenant_id: int, phone_number: str) -> bool:
    """START: the number may be texted again. Whether it was on the list."""
    deleted, _ = OptOut.objects.filter(tenant_id=tenant_id, phone_number=phone_number).delete()
    return deleted > 0


def opt_out_create(*, tenant: Tenant, phone_number: str) -> OptOut:
    """Through the API: the entry (the existing one if the number is already listed)."""
    entry, _ = opt_out_add(tenant_id=tenant.pk, phone_number=phone_number, source=OptOut.Source.API)
    return entry
