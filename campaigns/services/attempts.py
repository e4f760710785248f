"""Writes for call attempts' event log (the attempt life cycle itself goes through campaigns.lifecycle)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from campaigns.models import AttemptEvent, CallAttempt
from orchestrator.errors import InvalidInput


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
