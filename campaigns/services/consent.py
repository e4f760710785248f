"""Writes for prior express consent (TCPA): recording a contact's consent and revoking it.

A campaign with ``requires_prior_consent`` dials only contacts holding a valid consent of its kind
(``campaigns.selectors.consent_*``: checked in the dispatcher's claim query and again right before the
originate). Consents are never deleted: revoking one stamps ``revoked_at``, so the record of what was held
when stays.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from campaigns.disclosure import clean_prompt_text
from campaigns.models import ConsentKind, Contact, ContactConsent
from orchestrator.errors import InvalidInput

__all__ = [
    "CONSENT_EVIDENCE_MAX_LENGTH",
    "CONSENT_SOURCE_MAX_LENGTH",
    "consent_create",
    "consent_revoke",
    "validate_consent",
]

CONSENT_SOURCE_MAX_LENGTH = 200
CONSENT_EVIDENCE_MAX_LENGTH = 5_000
#: A consent captured this far in the future is a typo (or a clock), not a consent.
CAPTURED_AT_SKEW_S = 300


def validate_consent(
    *, kind: str, source: str, captured_at: datetime | None, evidence: str = "", now: datetime | None = None
) -> tuple[str, str, datetime, str]:
    """The fields of a consent, checked and normalised; InvalidInput names the field."""
    now = now or timezone.now()
    if kind not in ConsentKind.values:
        raise InvalidInput("kind", f"must be one of {', '.join(ConsentKind.values)}")
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput("source", "is required: where the consent was given (a form, a call, a paper)")
    source = clean_prompt_text(source, max_length=CONSENT_SOURCE_MAX_LENGTH + 1)
    if len(source) > CONSENT_SOURCE_MAX_LENGTH:
        raise InvalidInput("source", f"at most {CONSENT_SOURCE_MAX_LENGTH} characters")
    if captured_at is None:
        raise InvalidInput("captured_at", "is required: when the consent was given")
    if not isinstance(captured_at, datetime) or captured_at.tzinfo is None:
        raise InvalidInput("captured_at", "must be a timezone-aware date and time")
    if (captured_at - now).total_seconds() > CAPTURED_AT_SKEW_S:
        raise InvalidInput("captured_at", "is in the future")
    if not isinstance(evidence, str) or len(evidence) > CONSENT_EVIDENCE_MAX_LENGTH:
        raise InvalidInput("evidence", f"text of at most {CONSENT_EVIDENCE_MAX_LENGTH} characters")
    return kind, source, captured_at, evidence


def consent_create(
    *,
    contact: Contact,
    source: str,
    captured_at: datetime | None,
    kind: str = ConsentKind.PRIOR_EXPRESS,
    evidence: str = "",
) -> ContactConsent:
    """Record a contact's consent. The same consent given again (kind, source and time equal, not revoked)
    is not recorded twice: the existing row is returned."""
    kind, source, captured_at, evidence = validate_consent(
        kind=kind, source=source, captured_at=captured_at, evidence=evidence
    )
    existing = ContactConsent.objects.filter(
        contact=contact, kind=kind, source=source, captured_at=captured_at, revoked_at__isnull=True
    ).first()
    if existing is not None:
        return existing
    return ContactConsent.objects.create(
        tenant_id=contact.tenant_id,
        contact=contact,
        kind=kind,
        source=source,
        captured_at=captured_at,
        evidence=evidence,
    )


def consent_revoke(*, consent: ContactConsent, at: datetime | None = None) -> ContactConsent:
    """Revoke a consent (from ``at``, now by default). Revoking a revoked one keeps its first time. A
    queued call of the contact is cancelled by the re-check before originating."""
    with transaction.atomic():
        locked = ContactConsent.objects.select_for_update(no_key=True).get(pk=consent.pk)
        if locked.revoked_at is None:
            locked.revoked_at = at or timezone.now()
            locked.save(update_fields=["revoked_at"])
    return locked
