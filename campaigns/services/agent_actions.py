"""Writes for what the AI agent does during a call: the effects of the media worker's Celery tasks
(``media.*`` in campaigns/tasks.py: the task names and keyword arguments the media worker sends).

Every function takes the attempt id (the call id) and the tenant the media worker says it belongs to, and
raises ``CallAttempt.DoesNotExist`` unless the attempt is that tenant's (the tasks log and drop such a
message), ``InvalidInput`` for bad arguments (before any change). Each is idempotent: it returns whether it
changed anything, and a repeated message changes nothing and logs nothing twice. Each locks the attempt row
first (and then, where needed, its lead: the lock order of ``campaigns.services.call_events``), so an action
and the call's end (the Stasis sink) are applied one after the other, in either order:

* ``attempt_schedule_callback`` on a live attempt stores ``callback_at``; the end of the attempt then makes
  the lead due at that time instead of done (``campaigns.lifecycle.retry_decision``). Arriving after the
  end, it moves the lead at once (``lead_apply_late_callback``).
* ``attempt_add_to_dnc`` puts the number on the tenant's DNC list and finishes the lead as ``done`` with
  ``done_reason="opted_out"`` at once, even during the call; the end then keeps that (it only counts the
  attempt). Every other lead with that number is suppressed when it is next due (the dispatcher's and the
  originate's DNC checks).

Each action that changes something appends a ``note`` to the attempt's log.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from celery import current_app
from django.db import transaction
from django.utils import timezone

from campaigns.lead_lifecycle import LeadInput
from campaigns.lifecycle import AttemptOutcome, AttemptState
from campaigns.models import AttemptEvent, CallAttempt, DncEntry, Lead
from campaigns.phone import normalize_phone_number
from campaigns.services.attempts import attempt_event_append
from campaigns.services.call_events import attempt_reclassify_agent_silent, lead_apply_late_callback
from campaigns.services.dnc import dnc_add
from campaigns.services.leads import lead_move
from campaigns.services.passes import dispatch_passes_request
from campaigns.services.voicemail import attempt_apply_report_verdict
from campaigns.webhooks import callback_scheduled_record, lead_finished_record
from messaging.services import MAX_SMS_LENGTH, message_send
from orchestrator.errors import InvalidInput
from orchestrator.live import live_notify
from timers.models import Timer
from timers.services import timer_set
from wire.report import clean_transcript

logger = logging.getLogger(__name__)

__all__ = [
    "DONE_REASON_OPTED_OUT",
    "attempt_add_to_dnc",
    "attempt_record_report",
    "attempt_schedule_callback",
    "attempt_send_sms",
    "attempt_set_disposition",
    "callback_timer_due",
]

#: A lead whose callee asked not to be called again (the agent's add_to_dnc): done, with this reason.
DONE_REASON_OPTED_OUT = AttemptOutcome.OPTED_OUT.value

MAX_ERRORS = 100
MAX_ERROR_LENGTH = 1000
MAX_NOTE_LENGTH = 1000
#: A callback further ahead than this is refused (a misread date, not a callee's wish).
MAX_CALLBACK_AHEAD = timedelta(days=366)

_NOTE = AttemptEvent.Kind.NOTE
#: A caller id messaging takes as the sender (E.164); anything else sends from the SMS account's number.
E164_SENDER = re.compile(r"\+[1-9][0-9]{6,14}")


def _locked_attempt(*, attempt_id: UUID, tenant_id: int) -> CallAttempt:
    """The attempt, locked until the caller's transaction ends, with its tenant and campaign;
    ``CallAttempt.DoesNotExist`` unless it is an attempt of ``tenant_id``."""
    return (
        CallAttempt.objects.select_related("tenant", "campaign")
        .select_for_update(no_key=True, of=("self",))
        .get(pk=attempt_id, tenant_id=tenant_id)
    )


def _note(value: object) -> str:
    return str(value or "")[:MAX_NOTE_LENGTH]


# ----------------------------------------------------------------------------------------- call report


def _clean_transcript(transcript: object) -> tuple[list[dict[str, str]], int]:
    """The well-formed turns (``role``, ``text``, ``at``; texts capped) and how many were dropped."""
    try:
        return clean_transcript(transcript)
    except ValueError as exc:
        raise InvalidInput("transcript", str(exc)) from None


def _clean_errors(errors: object, *, field: str) -> list[str]:
    if errors is None:
        return []
    if not isinstance(errors, list):
        raise InvalidInput(field, "must be a list of strings")
    return [str(error)[:MAX_ERROR_LENGTH] for error in errors if error not in (None, "")]


def attempt_record_report(
    *,
    attempt_id: UUID,
    tenant_id: int,
    transcript: object,
    metrics: object,
    end_reason: str = "",
    errors: object = None,
) -> bool:
    """Save the media worker's report of the call: ``transcript`` replaces the attempt's (turns that are
    not ``{"role": agent|caller|system, "text": str, "at": str}`` are dropped, and counted in the errors),
    ``metrics`` are merged into ``media_metrics`` (contract §6) with ``end_reason``, and the errors (the
    report's ``errors`` and ``metrics["errors"]``) are appended to ``media_metrics["errors"]``, each once."""
    turns, dropped = _clean_transcript(transcript)
    if not isinstance(metrics, dict):
        raise InvalidInput("metrics", "must be an object")
    new_errors = _clean_errors(metrics.get("errors"), field="metrics") + _clean_errors(errors, field="errors")
    if dropped:
        new_errors.append(f"call report: {dropped} malformed or excess transcript turn(s) dropped")
    with transaction.atomic():
        attempt = _locked_attempt(attempt_id=attempt_id, tenant_id=tenant_id)
        current: dict[str, Any] = (
            dict(attempt.media_metrics) if isinstance(attempt.media_metrics, dict) else {}
        )
        known = [str(error) for error in current.get("errors") or []]
        merged = known + [error for error in dict.fromkeys(new_errors) if error not in known]
        media_metrics = {**current, **{key: value for key, value in metrics.items() if key != "errors"}}
        media_metrics["errors"] = merged[-MAX_ERRORS:]
        if end_reason:
            media_metrics["end_reason"] = str(end_reason)[:100]
        if turns == attempt.transcript and media_metrics == attempt.media_metrics:
            return False
        attempt.transcript, attempt.media_metrics = turns, media_metrics
        attempt.save(update_fields=["transcript", "media_metrics"])
        # An open call page re-reads the call: the whole transcript is stored now.
        live_notify(tenant_id=attempt.tenant_id, kind="call", call_id=str(attempt.pk), state=attempt.state)
        attempt_event_append(
            attempt=attempt,
            kind=_NOTE,
            type="media_report",
            data={"end_reason": str(end_reason)[:100], "turns": len(turns), "errors": len(new_errors)},
        )
        # Who answered, as the report says (when the media worker's own reports were lost).
        attempt_apply_report_verdict(attempt=attempt, metrics=media_metrics)
        # The report usually comes after the end: a call whose agent never spoke was no success.
        attempt_reclassify_agent_silent(attempt=attempt)
    return True


# -------------------------------------------------------------------------------------------- callback


def _aware(value: object, *, field: str) -> datetime:
    """An ISO-8601 time with an offset (or an aware datetime)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(field, f"{value!r} is not an ISO-8601 time") from None
    if not isinstance(value, datetime):
        raise InvalidInput(field, "must be an ISO-8601 time with an offset")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field, f"{value.isoformat()} has no UTC offset")
    return value


def attempt_schedule_callback(
    *, attempt_id: UUID, tenant_id: int, at: object, note: str = "", now: datetime | None = None
) -> bool:
    """The callee asked to be called back at ``at`` (ISO-8601 with an offset): stored as the attempt's
    ``callback_at``; the lead becomes due then when the attempt ends, or at once if it already has (see the
    module docstring). A later call replaces the time."""
    when = _aware(at, field="at")
    now = now or timezone.now()
    if when > now + MAX_CALLBACK_AHEAD:
        raise InvalidInput("at", f"{when.isoformat()} is more than a year ahead")
    with transaction.atomic():
        attempt = _locked_attempt(attempt_id=attempt_id, tenant_id=tenant_id)
        if attempt.callback_at == when:
            return False
        attempt.callback_at = when
        attempt.save(update_fields=["callback_at"])
        data: dict[str, Any] = {"at": when.isoformat(), "note": _note(note)}
        if attempt.state == AttemptState.ENDED:
            data["after_end"] = True
            data["lead_rescheduled"] = lead_apply_late_callback(attempt=attempt, now=now)
        attempt_event_append(attempt=attempt, kind=_NOTE, type="callback_scheduled", data=data)
        callback_scheduled_record(attempt=attempt, note=_note(note))
        # The lead's next_due_at stays the durable truth (the dispatch sweep dials it when due); the timer
        # makes the pass start at the callback time rather than whenever the sweep next looks.
        timer_set(
            kind=CALLBACK_TIMER_KIND,
            key=f"{CALLBACK_TIMER_KIND}:lead:{attempt.lead_id}",
            due_at=when,
            payload={
                "tenant_id": attempt.tenant_id,
                "lead_id": attempt.lead_id,
                "attempt_id": str(attempt.pk),
            },
        )
    return True


#: The durable timer kind of a callback (settings.TIMER_HANDLERS).
CALLBACK_TIMER_KIND = "campaigns.callback"


def _send_pass(tenant_ids: list[int]) -> None:
    # By name: campaigns.tasks imports this module.
    for tenant_id in tenant_ids:
        current_app.send_task("campaigns.tasks.dispatch_tenant_task", args=(tenant_id,), expires=10.0)


def callback_timer_due(*, timer: Timer) -> None:
    """A callback's time came (a durable timer, timers/services.py): ask for a dispatch pass of the tenant
    after the commit, so the lead, due now, is dialed at once (its calling window permitting)."""
    tenant_id = timer.payload.get("tenant_id")
    if not isinstance(tenant_id, int):
        return
    transaction.on_commit(lambda: dispatch_passes_request(tenant_ids=[tenant_id], send=_send_pass))


# ------------------------------------------------------------------------------------ disposition, DNC


def attempt_set_disposition(*, attempt_id: UUID, tenant_id: int, disposition: str, note: str = "") -> bool:
    """Store the agent's conclusion about the call (``CallAttempt.Disposition``); ``do_not_call`` also does
    what :func:`attempt_add_to_dnc` does."""
    if disposition not in CallAttempt.Disposition.values:
        raise InvalidInput(
            "disposition", f"must be one of {', '.join(CallAttempt.Disposition.values)}, not {disposition!r}"
        )
    with transaction.atomic():
        attempt = _locked_attempt(attempt_id=attempt_id, tenant_id=tenant_id)
        changed = attempt.disposition != disposition
        if changed:
            attempt.disposition = disposition
            attempt.save(update_fields=["disposition"])
            attempt_event_append(
                attempt=attempt,
                kind=_NOTE,
                type="disposition",
                data={"disposition": disposition, "note": _note(note)},
            )
        if disposition == CallAttempt.Disposition.DO_NOT_CALL:
            changed = _add_to_dnc(attempt=attempt, note=note) or changed
    return changed


def attempt_add_to_dnc(*, attempt_id: UUID, tenant_id: int, note: str = "") -> bool:
    """The callee asked not to be called again: the attempt's number goes on the tenant's DNC list (source
    ``agent``) and the lead is done (``opted_out``), both at once (see the module docstring)."""
    with transaction.atomic():
        attempt = _locked_attempt(attempt_id=attempt_id, tenant_id=tenant_id)
        return _add_to_dnc(attempt=attempt, note=note)


def _add_to_dnc(*, attempt: CallAttempt, note: str) -> bool:
    """:func:`attempt_add_to_dnc` on the locked attempt."""
    number = normalize_phone_number(attempt.number, field="number")
    listed = DncEntry.objects.filter(tenant_id=attempt.tenant_id, phone_number=number).exists()
    if not listed:
        dnc_add(tenant=attempt.tenant, phone_number=number, source=DncEntry.Source.AGENT, note=_note(note))
    # Lock order: the attempt (held), then its lead.
    lead = Lead.objects.select_for_update(no_key=True).get(pk=attempt.lead_id)
    finish = lead.status != Lead.Status.SUPPRESSED and not (
        lead.status == Lead.Status.DONE and lead.done_reason == DONE_REASON_OPTED_OUT
    )
    if finish:
        # Also while the call is live: its end then keeps this (campaigns.services.call_events._lead_finish).
        finish = lead_move(lead=lead, by=LeadInput.OPTED_OUT).applied
    if finish:
        lead.next_due_at, lead.done_reason = None, DONE_REASON_OPTED_OUT
        lead.save(update_fields=["status", "next_due_at", "done_reason", "updated_at"])
        if lead.status == Lead.Status.DONE:
            lead_finished_record(lead=lead, tenant_id=attempt.tenant_id)
    if listed and not finish:
        return False
    attempt_event_append(
        attempt=attempt,
        kind=_NOTE,
        type="dnc_added",
        data={"number": number, "note": _note(note), "listed_now": not listed, "lead_done": finish},
    )
    return True


# ------------------------------------------------------------------------------------------------- SMS


def attempt_send_sms(*, attempt_id: UUID, tenant_id: int, to: str, text: str) -> bool:
    """Queue ``text`` to ``to`` through ``messaging.services.message_send`` (from the campaign's caller id;
    the tenant's SMS provider, the console one without an account) and record it on the attempt. The same
    text to the same number is queued once per attempt (a repeated message is a redelivery, not a new
    wish). The message row is written in this transaction and sent by messaging's worker task once it
    commits (retries and the opt-out list are messaging's).
    """
    number = normalize_phone_number(str(to), field="to")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("text", "must not be empty")
    if len(text) > MAX_SMS_LENGTH:
        raise InvalidInput("text", f"longer than {MAX_SMS_LENGTH} characters")
    with transaction.atomic():
        attempt = _locked_attempt(attempt_id=attempt_id, tenant_id=tenant_id)
        if attempt.events.filter(kind=_NOTE, type="sms_sent", data__to=number, data__text=text).exists():
            return False
        caller_id = attempt.campaign.caller_id
        message = message_send(
            tenant_id=attempt.tenant_id,
            to=number,
            text=text,
            purpose="agent_sms",
            ref=f"campaigns.attempt:{attempt.pk}",
            sender=caller_id if E164_SENDER.fullmatch(caller_id or "") else "",
        )
        attempt_event_append(
            attempt=attempt,
            kind=_NOTE,
            type="sms_sent",
            data={
                "to": number,
                "text": text,
                "provider": message.provider,
                "message_id": message.pk,
                "status": message.status,
            },
        )
    return True
