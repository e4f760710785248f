"""What the media worker reports about who answered a call and the voicemail message it left
(``media.answered_by``, ``media.voicemail_left``; campaigns/tasks.py), applied to the attempt.

The outcome of an answered call a machine took is ``voicemail_left`` (the campaign's message was played to
the end) or ``machine_detected`` (no message): decided at the call's end when these reports came first
(:func:`campaigns.services.call_events.machine_outcome`), else re-decided when they arrive
(:func:`campaigns.services.call_events.attempt_reclassify_machine`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from django.db import transaction

from campaigns.amd import ANSWERED_BY_HUMAN, ANSWERED_BY_MACHINE
from campaigns.models import AttemptEvent, CallAttempt
from campaigns.services.call_events import attempt_reclassify_machine, attempt_set_answered_by
from orchestrator.errors import InvalidInput

logger = logging.getLogger(__name__)

MACHINE_SOURCES = ("amd", "beep", "greeting")


def _locked(attempt_id: UUID, tenant_id: int) -> CallAttempt:
    return (
        CallAttempt.objects.select_related("campaign")
        .select_for_update(no_key=True, of=("self",))
        .get(pk=attempt_id, tenant_id=tenant_id)
    )


def _epoch(value: object, *, field: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, "must be a time in epoch seconds")
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidInput(field, f"{value!r} is not a time") from None


def attempt_answered_by(
    *, attempt_id: UUID, tenant_id: int, answered_by: object, source: object, at: object = None
) -> bool:
    """The media worker decided who answered (``human``/``machine``, from ``amd``, a ``beep`` or the
    ``greeting``'s words). A machine is never turned back into a person. Returns whether it changed."""
    if answered_by not in (ANSWERED_BY_HUMAN, ANSWERED_BY_MACHINE):
        raise InvalidInput("answered_by", "must be human or machine")
    if source not in MACHINE_SOURCES:
        raise InvalidInput("source", f"must be one of {', '.join(MACHINE_SOURCES)}")
    when = _epoch(at, field="at") if at is not None else None
    with transaction.atomic():
        attempt = _locked(attempt_id, tenant_id)
        if not attempt_set_answered_by(attempt, str(answered_by), str(source)):
            return False
        attempt.save(update_fields=["answered_by", "machine_source"])
        _note(attempt, "answered_by", {"answered_by": answered_by, "source": source}, when)
        attempt_reclassify_machine(attempt=attempt)
    return True


def attempt_voicemail_left(*, attempt_id: UUID, tenant_id: int, started_at: object, ended_at: object) -> bool:
    """The campaign's message was played to a machine to the end (``ended_at``): the attempt records it
    (and that a machine answered, if nothing said so yet). Returns whether it changed."""
    started, ended = _epoch(started_at, field="started_at"), _epoch(ended_at, field="ended_at")
    if ended < started:
        raise InvalidInput("ended_at", "is before started_at")
    with transaction.atomic():
        attempt = _locked(attempt_id, tenant_id)
        if attempt.voicemail_left_at is not None:
            return False
        attempt.voicemail_left_at = ended
        fields = ["voicemail_left_at"]
        if attempt_set_answered_by(attempt, ANSWERED_BY_MACHINE, attempt.machine_source or "amd"):
            fields += ["answered_by", "machine_source"]
        attempt.save(update_fields=fields)
        _note(
            attempt,
            "voicemail_left",
            {"started_at": started.isoformat(), "ended_at": ended.isoformat()},
            ended,
        )
        attempt_reclassify_machine(attempt=attempt)
    return True


def attempt_apply_report_verdict(*, attempt: CallAttempt, metrics: dict[str, Any]) -> None:
    """The end-of-call report's ``answered_by`` / ``machine_source`` / ``voicemail_left`` (its metrics), on
    the locked attempt, for when the separate reports were lost; the caller saves nothing more."""
    who, source = metrics.get("answered_by"), metrics.get("machine_source")
    fields: list[str] = []
    if who == ANSWERED_BY_MACHINE and source in MACHINE_SOURCES:
        if attempt_set_answered_by(attempt, ANSWERED_BY_MACHINE, str(source)):
            fields += ["answered_by", "machine_source"]
    elif who == ANSWERED_BY_HUMAN and attempt_set_answered_by(attempt, ANSWERED_BY_HUMAN, ""):
        fields.append("answered_by")
    if metrics.get("voicemail_left") is True and attempt.voicemail_left_at is None:
        attempt.voicemail_left_at = attempt.ended_at or datetime.now(UTC)
        fields.append("voicemail_left_at")
        if attempt_set_answered_by(attempt, ANSWERED_BY_MACHINE, attempt.machine_source or "amd"):
            fields += ["answered_by", "machine_source"]
    if fields:
        attempt.save(update_fields=sorted(set(fields)))
        attempt_reclassify_machine(attempt=attempt)


def _note(attempt: CallAttempt, type_: str, data: dict[str, Any], at: datetime | None) -> None:
    AttemptEvent.objects.create(
        attempt=attempt,
        at=at or datetime.now(UTC),
        kind=AttemptEvent.Kind.NOTE,
        type=type_,
        data=data,
    )
