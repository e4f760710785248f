"""Writes for call attempts' event log (the attempt life cycle itself goes through campaigns.lifecycle), and
the two single-statement writes of the originate's hot path (:func:`attempt_claim_send`,
:func:`attempt_originate_accepted`).

The hot-path writes are plain SQL: each runs once per call placed, and building the same statement with the
ORM costs more than the database's work for it. Each is one statement, so atomic on its own.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection
from django.utils import timezone

from campaigns.lifecycle import AttemptEvent as Event
from campaigns.lifecycle import AttemptState, transition
from campaigns.models import AttemptEvent, CallAttempt, Campaign
from orchestrator.errors import InvalidInput
from tenants.models import Tenant


def attempt_event_append(
    *,
    attempt: CallAttempt,
    kind: str,
    type: str,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AttemptEvent:
    """Append an event to the attempt's log. The log is append-only: there is no update or delete."""
    if kind not in AttemptEvent.Kind.values:
        raise InvalidInput("kind", f"must be one of {', '.join(AttemptEvent.Kind.values)}")
    return AttemptEvent.objects.create(
        attempt=attempt, kind=kind, type=type, data=data or {}, at=at or timezone.now()
    )


# The claim to send, with the re-check of what others may have changed folded in (the same conditions as
# ``campaigns.selectors.campaign_dialing_filter`` and ``dnc_contains``).
_CLAIM_SEND_SQL = """
UPDATE campaigns_callattempt AS a SET originate_sent_at = %(sent_at)s
WHERE a.id = %(id)s AND a.state = %(queued)s AND a.originate_sent_at IS NULL
  AND EXISTS (
    SELECT 1 FROM campaigns_campaign AS c JOIN tenants_tenant AS t ON t.id = c.tenant_id
    WHERE c.id = a.campaign_id AND t.status = %(active)s AND c.status = %(running)s
      AND (c.starts_at IS NULL OR c.starts_at <= %(sent_at)s)
      AND (c.ends_at IS NULL OR c.ends_at > %(sent_at)s)
  )
  AND NOT EXISTS (
    SELECT 1 FROM campaigns_dncentry AS d WHERE d.tenant_id = a.tenant_id AND d.phone_number = %(e164)s
  )
"""


def attempt_claim_send(*, attempt_id: UUID, sent_at: datetime, e164: str) -> bool:
    """Claim the right to send the originate of a queued attempt (set ``originate_sent_at``), only if it is
    still queued with no send claimed, its tenant is active, its campaign dialing at ``sent_at``, and
    ``e164`` (its number, normalised) is not on the tenant's DNC list. True when claimed; False changes
    nothing (the caller finds out why with the full re-check)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SEND_SQL,
            {
                "sent_at": sent_at,
                "id": attempt_id,
                "queued": AttemptState.QUEUED.value,
                "active": Tenant.Status.ACTIVE.value,
                "running": Campaign.Status.RUNNING.value,
                "e164": e164,
            },
        )
        return cursor.rowcount == 1


_ACCEPTED = transition(AttemptState.QUEUED, Event.ORIGINATE_ACCEPTED)
assert _ACCEPTED.applied  # noqa: S101 - the table says queued → dialing; the statement below relies on it

# queued → dialing and its log row, in one statement. ``originated_at`` is kept if already set, as the
# state machine's application does (``campaigns.services.dispatch``).
_ACCEPTED_SQL = """
WITH moved AS (
  UPDATE campaigns_callattempt SET state = %(new)s, originated_at = COALESCE(originated_at, %(at)s)
  WHERE id = %(id)s AND state = %(old)s
  RETURNING id
)
INSERT INTO campaigns_attemptevent (attempt_id, at, kind, type, data)
SELECT id, %(at)s, %(kind)s, %(type)s, %(data)s::jsonb FROM moved
"""


def attempt_originate_accepted(
    *, attempt_id: UUID, at: datetime | None = None, data: dict[str, Any] | None = None
) -> bool:
    """The PBX accepted the originate: apply ORIGINATE_ACCEPTED to a ``queued`` attempt (→ ``dialing``,
    ``originated_at``, the ``queued->dialing`` log row, exactly as ``attempt_apply`` writes them), in one
    statement with no transaction of its own.

    Returns True when applied. False means the attempt was not ``queued`` (its ARI events beat the
    originate's answer, or it ended meanwhile) or does not exist, and nothing was written: the caller then
    offers the event to ``attempt_apply``, which refuses it the usual way (duplicate/terminal, with a note).
    """
    at = at or timezone.now()
    event_data: dict[str, Any] = {"event": Event.ORIGINATE_ACCEPTED.value}
    if data:
        event_data["data"] = data
    with connection.cursor() as cursor:
        cursor.execute(
            _ACCEPTED_SQL,
            {
                "id": attempt_id,
                "old": _ACCEPTED.old.value,
                "new": _ACCEPTED.new.value,
                "at": at,
                "kind": AttemptEvent.Kind.STATE.value,
                "type": f"{_ACCEPTED.old.value}->{_ACCEPTED.new.value}",
                "data": json.dumps(event_data),
            },
        )
        return cursor.rowcount == 1
