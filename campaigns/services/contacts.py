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


#: What :func:`contact_sync` did: made the contact, changed it, or found it as it was.
CONTACT_CREATED = "created"
CONTACT_UPDATED = "updated"
CONTACT_UNCHANGED = "unchanged"


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
    contact, _ = contact_sync(
        tenant=tenant, phone_number=phone_number, name=name, timezone=timezone, variables=variables
    )
    return contact


def contact_sync(
    *,
    tenant: Tenant,
    phone_number: str,
    name: str = "",
    timezone: str = "",
    variables: dict[str, Any] | None = None,
) -> tuple[Contact, str]:
    """:func:`contact_upsert`, also saying what it did: :data:`CONTACT_CREATED`, :data:`CONTACT_UPDATED`
    (a value really changed) or :data:`CONTACT_UNCHANGED` (the stored contact already had these values)."""
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
            return contact, CONTACT_CREATED
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
    return contact, CONTACT_UPDATED if changed else CONTACT_UNCHANGED


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


def contact_create(
    *,
    tenant: Tenant,
    phone_number: str,
    name: str = "",
    timezone: str = "",
    variables: dict[str, Any] | None = None,
) -> Contact:
    """A new contact; InvalidInput on ``phone_number`` when the tenant already has one with that number
    (use :func:`contact_update`, or :func:`contact_upsert` to merge)."""
    e164 = normalize_phone_number(phone_number, field="phone_number")
    if Contact.objects.filter(tenant=tenant, phone_number=e164).exists():
        raise InvalidInput("phone_number", f"a contact with {e164} already exists")
    return contact_upsert(tenant=tenant, phone_number=e164, name=name, timezone=timezone, variables=variables)


_CONTACT_UPDATABLE = ("name", "timezone", "variables")


def contact_update(*, contact: Contact, **changes: Any) -> Contact:
    """Change a contact's name, timezone (blank: derived from the number again) or variables. The number
    is the contact's identity and cannot be changed: make a new contact instead."""
    unknown = sorted(set(changes) - set(_CONTACT_UPDATABLE))
    if unknown:
        raise InvalidInput(unknown[0], "cannot be changed")
    if "name" in changes:
        if not isinstance(changes["name"], str) or len(changes["name"]) > CONTACT_NAME_MAX_LENGTH:
            raise InvalidInput("name", f"must be text of at most {CONTACT_NAME_MAX_LENGTH} characters")
    if "timezone" in changes:
        zone = changes["timezone"]
        if not isinstance(zone, str) or (zone and not is_timezone_name(zone)):
            raise InvalidInput("timezone", f"{zone!r} is not an IANA time zone name")
        changes["timezone"] = zone or timezone_for_number(contact.phone_number)
    if "variables" in changes:
        changes["variables"] = validate_variables(changes["variables"])
    for field, value in changes.items():
        setattr(contact, field, value)
    if changes:
        contact.save(update_fields=list(changes))
    return contact


def contact_delete(*, contact: Contact) -> None:
    """Delete a contact and its leads; not while one of its leads is being called."""
    if contact.leads.filter(status=Lead.Status.IN_ATTEMPT).exists():
        raise InvalidInput("contact", "a call to this contact is in progress")
    contact.delete()
