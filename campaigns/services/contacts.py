"""Writes for contacts and leads."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone as django_timezone

from campaigns.models import CONTACT_NAME_MAX_LENGTH, Campaign, Contact, Lead
from campaigns.phone import normalize_phone_number, timezone_for_number
from orchestrator.errors import InvalidInput
from tenants.models import Tenant
from tenants.validators import is_timezone_name

MAX_VARIABLES = 100
MAX_VARIABLE_LENGTH = 2_000


def validate_variables(variables: object) -> dict[str, str]:
    """Template variables: an object of text → text (numbers are accepted and kept as text)."""
    if not isinstance(variables, dict):
        raise InvalidInput("variables", "must be an object of name -> text")
    if len(variables) > MAX_VARIABLES:
        raise InvalidInput("variables", f"at most {MAX_VARIABLES} variables")
    cleaned: dict[str, str] = {}
    for key, value in variables.items():
        if not isinstance(key, str) or not key:
            raise InvalidInput("variables", f"{key!r} is not a variable name")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidInput("variables", f"{key}: must be text, got {type(value).__name__}")
        text = str(value)
        if len(text) > MAX_VARIABLE_LENGTH:
            raise InvalidInput("variables", f"{key}: longer than {MAX_VARIABLE_LENGTH} characters")
        cleaned[key] = text
    return cleaned


def contact_upsert(
    *,
    tenant: Tenant,
    phone_number: str,
    name: str = "",
    timezone: str = "",
    variables: dict[str, Any] | None = None,
) -> Contact:
    """The tenant's contact for ``phone_number`` (parsed to E.164), created or updated.

    On update, a non-empty ``name`` or ``timezone`` and a given ``variables`` replace the stored values;
    empty ones keep them. A blank timezone is derived from the number when the number has exactly one
    zone; otherwise it stays blank and calling windows must hold in every zone of the number.
    """
    e164 = normalize_phone_number(phone_number, field="phone_number")
    if timezone and not is_timezone_name(timezone):
        raise InvalidInput("timezone", f"{timezone!r} is not an IANA time zone name")
    cleaned_variables = None if variables is None else validate_variables(variables)
    if len(name) > CONTACT_NAME_MAX_LENGTH:
        raise InvalidInput("name", f"longer than {CONTACT_NAME_MAX_LENGTH} characters")
    with transaction.atomic():
        # get_or_create handles a concurrent insert of the same number (unique index) by re-reading it.
        contact, created = Contact.objects.select_for_update().get_or_create(
            tenant=tenant,
            phone_number=e164,
            defaults={
                "name": name,
                "timezone": timezone or timezone_for_number(e164),
                "variables": cleaned_variables or {},
            },
        )
        if created:
            return contact
        changed = []
        if name and name != contact.name:
            contact.name = name
            changed.append("name")
        if timezone and timezone != contact.timezone:
            contact.timezone = timezone
            changed.append("timezone")
        if cleaned_variables is not None and cleaned_variables != contact.variables:
            contact.variables = cleaned_variables
            changed.append("variables")
        if changed:
            contact.save(update_fields=changed)
    return contact


def lead_add(*, campaign: Campaign, contact: Contact) -> tuple[Lead, bool]:
    """Put ``contact`` in ``campaign`` as a lead due now; an existing lead is returned unchanged.
    Returns the lead and whether it was created."""
    if contact.tenant_id != campaign.tenant_id:
        raise InvalidInput("contact", "no such contact in this tenant")
    return Lead.objects.get_or_create(
        campaign=campaign,
        contact=contact,
        defaults={"status": Lead.Status.WAITING, "next_due_at": django_timezone.now()},
    )
