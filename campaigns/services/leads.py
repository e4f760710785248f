"""Moving leads between statuses, through the table of :mod:`campaigns.lead_lifecycle` only.

:func:`lead_move` moves one lead in memory (the caller saves it, in the transaction that holds its lock);
:func:`leads_move` moves many rows in one ``UPDATE`` that matches only the rows in a status the input is
legal in. Either way a refused move changes nothing and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from campaigns.lead_lifecycle import LeadInput, LeadStatus, LeadTransition, sources, target, transition
from campaigns.models import Lead

logger = logging.getLogger(__name__)

__all__ = ["lead_move", "leads_move"]


def lead_move(*, lead: Lead, by: LeadInput) -> LeadTransition:
    """Offer ``by`` to the lead: set its status (in memory) when the table allows it, else log the refusal
    and leave the lead unchanged. The caller sets the fields that go with the move and saves."""
    result = transition(LeadStatus(lead.status), by)
    if result.applied:
        lead.status = result.new.value
    else:
        logger.warning("lead %s: %s refused in status %s (%s)", lead.pk, by.value, lead.status, result.reason)
    return result


def leads_move(*, lead_ids: Collection[int], by: LeadInput, **fields: Any) -> int:
    """Move the leads ``lead_ids`` by ``by`` in one ``UPDATE`` (setting ``fields`` too), only those in a
    status the input is legal in; the others are left alone and logged. Returns how many moved."""
    moved = Lead.objects.filter(pk__in=lead_ids, status__in=sorted(sources(by))).update(
        status=target(by).value, **fields
    )
    if moved < len(lead_ids):
        logger.warning(
            "%d of %d lead(s): %s refused (not in %s)",
            len(lead_ids) - moved,
            len(lead_ids),
            by.value,
            ", ".join(sorted(sources(by))),
        )
    return moved
