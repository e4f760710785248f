"""A campaign's results as CSV (``GET /api/v1/campaigns/{id}/export``): one row per lead, with its contact,
where it stands and what its calls gave. The rows come from :func:`campaign_results` (a selector: one
query, read in chunks), the text from ``orchestrator.exports.csv_lines``, the product's one CSV writer,
which neutralises spreadsheet formulas in every cell.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from campaigns.models import CallAttempt, Campaign, Lead
from orchestrator.exports import csv_lines

#: The columns of the results export, in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "lead_id",
    "contact_id",
    "phone_number",
    "name",
    "timezone",
    "status",
    "attempts",
    "last_outcome",
    "disposition",
    "last_call_at",
    "callback_at",
    "transferred_to",
    "next_due_at",
    "done_reason",
)

_CHUNK = 2_000


def campaign_results(*, campaign: Campaign) -> QuerySet[Lead]:
    """The campaign's leads with their contacts, in id order, annotated with what their calls left:
    ``last_call_at`` (when the latest attempt was placed, or queued if it never was), and the latest
    non-empty ``disposition``, ``callback_at`` and ``transferred_to`` the agent recorded. The campaign
    comes from a tenant-scoped lookup, so the rows are that tenant's only."""
    attempts = CallAttempt.objects.filter(lead=OuterRef("pk")).order_by("-queued_at", "-pk")
    return (
        Lead.objects.filter(campaign=campaign)
        .select_related("contact")
        .annotate(
            last_call_at=Subquery(
                attempts.annotate(at=Coalesce("originated_at", "queued_at")).values("at")[:1]
            ),
            last_disposition=Subquery(attempts.exclude(disposition="").values("disposition")[:1]),
            last_callback_at=Subquery(attempts.filter(callback_at__isnull=False).values("callback_at")[:1]),
            last_transferred_to=Subquery(attempts.exclude(transferred_to="").values("transferred_to")[:1]),
        )
        .order_by("pk")
    )


def _row(lead: Any) -> tuple[Any, ...]:
    contact = lead.contact
    return (
        lead.pk,
        contact.pk,
        contact.phone_number,
        contact.name,
        contact.timezone,
        lead.status,
        lead.attempts,
        lead.last_outcome,
        lead.last_disposition,
        lead.last_call_at,
        lead.last_callback_at,
        lead.last_transferred_to,
        lead.next_due_at,
        lead.done_reason,
    )


def campaign_results_csv(*, campaign: Campaign) -> Iterator[str]:
    """The results export of ``campaign``, line by line (see the module docstring)."""
    leads = campaign_results(campaign=campaign).iterator(chunk_size=_CHUNK)
    return csv_lines(RESULT_COLUMNS, (_row(lead) for lead in leads))
