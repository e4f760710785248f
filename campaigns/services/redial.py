"""A campaign's "redial": the leads a finished (or paused) campaign did not reach (voicemail, no answer,
busy, or the outcomes chosen) go into a new draft campaign with the same settings, ready to start.

The new campaign copies every setting of the source (its agent, caller id, windows, caps, retries, result
fields, and whatever other settings the campaign has, many-to-many ones included: the copy is made from the
model's fields, so a setting added later is copied too) but its name, status, schedule (``starts_at``,
``ends_at``: they belonged to the source's run) and times. A lead qualifies when
its last outcome is one of ``outcomes``; numbers on the tenant's do-not-call list are left out.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models, transaction
from django.utils import timezone

from campaigns.lifecycle import AttemptOutcome
from campaigns.models import Campaign, DncEntry, Lead
from orchestrator.errors import InvalidInput

__all__ = ["REDIAL_DEFAULT_OUTCOMES", "REDIALABLE_STATUSES", "campaign_redial"]

#: The outcomes redialled when none are given: nobody (human) was reached.
REDIAL_DEFAULT_OUTCOMES: tuple[str, ...] = (
    "voicemail",
    "voicemail_left",
    "machine_detected",
    "no_answer",
    "busy",
)
REDIALABLE_STATUSES = (Campaign.Status.COMPLETED, Campaign.Status.PAUSED, Campaign.Status.ARCHIVED)
# The schedule (starts_at, ends_at) belonged to the source's run: a redial is started when its owner says.
_NOT_COPIED = {"id", "tenant", "name", "status", "starts_at", "ends_at", "created_at", "updated_at"}
_BATCH = 2_000


def _known_outcomes() -> set[str]:
    return {outcome.value for outcome in AttemptOutcome} | set(REDIAL_DEFAULT_OUTCOMES)


def _clean_outcomes(outcomes: Iterable[str] | None) -> list[str]:
    if outcomes is None:
        return list(REDIAL_DEFAULT_OUTCOMES)
    if isinstance(outcomes, str) or not all(isinstance(o, str) for o in outcomes):
        raise InvalidInput("outcomes", "must be a list of outcomes")
    chosen = list(dict.fromkeys(outcomes))
    if not chosen:
        raise InvalidInput("outcomes", "choose at least one outcome")
    unknown = sorted(set(chosen) - _known_outcomes())
    if unknown:
        raise InvalidInput(
            "outcomes", f"{unknown[0]!r} is not an outcome (one of {', '.join(sorted(_known_outcomes()))})"
        )
    return chosen


def campaign_redial(
    *, campaign: Campaign, outcomes: Iterable[str] | None = None, name: str | None = None
) -> Campaign:
    """A new draft campaign with ``campaign``'s settings and the leads whose last outcome is in ``outcomes``
    (default :data:`REDIAL_DEFAULT_OUTCOMES`), numbers on the DNC list left out. InvalidInput names
    ``outcomes``, ``name`` or ``status`` (the source must be completed, paused or archived)."""
    chosen = _clean_outcomes(outcomes)
    new_name = (f"{campaign.name} (redial)" if name is None else str(name)).strip()[:200]
    if not new_name:
        raise InvalidInput("name", "must not be empty")
    if campaign.status not in REDIALABLE_STATUSES:
        raise InvalidInput("status", f"cannot redial a {campaign.status} campaign: pause it or let it finish")
    now = timezone.now()
    with transaction.atomic():
        copy = Campaign(tenant_id=campaign.tenant_id, name=new_name, status=Campaign.Status.DRAFT)
        for field in Campaign._meta.concrete_fields:
            if field.name not in _NOT_COPIED:
                setattr(copy, field.attname, getattr(campaign, field.attname))
        copy.save()
        _copy_many_to_many(source=campaign, copy=copy)
        dnc = DncEntry.objects.filter(tenant_id=campaign.tenant_id).values("phone_number")
        contact_ids = (
            Lead.objects.filter(campaign=campaign, last_outcome__in=chosen)
            .exclude(contact__phone_number__in=dnc)
            .order_by("pk")
            .values_list("contact_id", flat=True)
        )
        batch: list[Lead] = []
        for contact_id in contact_ids.iterator(chunk_size=_BATCH):
            batch.append(
                Lead(campaign=copy, contact_id=contact_id, status=Lead.Status.WAITING, next_due_at=now)
            )
            if len(batch) >= _BATCH:
                Lead.objects.bulk_create(batch)
                batch = []
        Lead.objects.bulk_create(batch)
    return copy


def _copy_many_to_many(*, source: Campaign, copy: Campaign) -> None:
    """The source's many-to-many settings on the copy; rows of an explicit through model are cloned with
    their extra columns (e.g. an order)."""
    for field in Campaign._meta.many_to_many:
        manager = getattr(source, field.name)
        through: type[models.Model] = manager.through
        if through._meta.auto_created:
            getattr(copy, field.name).set(manager.all())
            continue
        source_fk = next(
            f.name
            for f in through._meta.concrete_fields
            if isinstance(f, models.ForeignKey) and f.related_model is Campaign
        )
        rows = []
        for row in through._default_manager.filter(**{source_fk: source}):
            row.pk = None
            setattr(row, source_fk, copy)
            rows.append(row)
        through._default_manager.bulk_create(rows)
