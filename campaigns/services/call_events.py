"""Applying call events to attempts: answered, ended, DTMF and other notes, reconciled and overdue ends;
and the lead's side of an ended attempt (its retry or its end), in the same transaction.

Every state change of an attempt goes through :func:`campaigns.lifecycle.transition` (the table), in
:func:`attempt_apply_many`: one transaction, the attempt locked first, then its lead (the lock order of
:mod:`campaigns.services.dispatch`, whose passes never wait for either). A refused event changes nothing
and is logged on the attempt as a note.

Reasons to end an attempt before originating (the re-check, ``campaigns.selectors.attempt_recheck``)
---------------------------------------------------------------------------------------------------
The originate task maps the re-check's answer to :func:`attempt_apply` explicitly
(re-check answer → event, outcome → the lead afterwards):

* ``not_queued`` → no event, do not originate (the attempt already moved on) → lead unchanged.
* ``campaign_not_running`` → CANCELLED, ``cancelled`` → waiting, due after the cancelled retry delay
  (moved to the next window opening); picked up again once the campaign runs.
* ``outside_window`` → CANCELLED, ``cancelled`` → waiting, due at the next opening after that delay.
* ``dnc`` → CANCELLED, ``opted_out`` → suppressed with ``done_reason="dnc"`` (as when found at claim).
* ``invalid_number`` → CANCELLED, ``invalid_number`` → done, ``done_reason="never_retry"``.
* ``no_consent`` → CANCELLED, ``cancelled`` → waiting (the claim skips it until a valid consent exists).

A CANCELLED event never consumes one of the lead's attempts: nothing was dialed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns.amd import ANSWERED_BY_HUMAN, ANSWERED_BY_MACHINE, amd_answered_by
from campaigns.lead_lifecycle import LeadInput
from campaigns.lifecycle import (
    DONE_SUCCESS,
    PLACED_STATES,
    RETRY_CALLBACK,
    AttemptInput,
    AttemptOutcome,
    AttemptState,
    EndEvidence,
    RetryDecision,
    Transition,
    consumes_attempt,
    retry_decision,
    transition,
    unseen_end_outcome,
)
from campaigns.models import AttemptEvent, CallAttempt, Campaign, Lead
from campaigns.selectors import (
    WAIT_OUTSIDE_WINDOW,
    attempt_media_marks,
    callee_window,
)
from campaigns.services.dispatch import DONE_REASON_DNC
from campaigns.services.leads import lead_move
from campaigns.webhooks import call_ended_record, lead_finished_record
from integrations.selectors import webhook_endpoints_exist
from orchestrator.live import live_notify

logger = logging.getLogger(__name__)

__all__ = [
    "OVERDUE_GRACE",
    "AttemptStep",
    "UnseenEnd",
    "agent_never_spoke",
    "attempt_apply",
    "attempt_apply_many",
    "attempt_reclassify_agent_silent",
    "attempt_reclassify_machine",
    "attempt_set_answered_by",
    "machine_outcome",
    "attempts_end_overdue",
    "lead_apply_late_callback",
]

# Events that end an attempt and so need an outcome.
_ENDING_EVENTS = frozenset({AttemptInput.ENDED, AttemptInput.ORIGINATE_FAILED, AttemptInput.CANCELLED})


@dataclass(frozen=True, slots=True)
class UnseenEnd:
    """What is known of an end nobody saw, besides the attempt row: whether the media worker recorded the
    call (``media_connected``: it took the AudioSocket leg; ``agent_spoke``: the agent's audio reached the
    caller), and when the Stasis app was last known to listen (``gap_started_at``, None: unknown)."""

    media_connected: bool = False
    agent_spoke: bool = False
    gap_started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AttemptStep:
    """One thing that happened to an attempt, for :func:`attempt_apply_many`: a life-cycle ``event`` with
    the arguments :func:`attempt_apply` takes, or (``note`` set, ``event`` None) a note for its log that
    changes no state (a DTMF digit, the media leg gone, a transfer to a human, which also records
    ``transferred_to``), appended whatever the state."""

    event: AttemptInput | None
    at: datetime
    data: dict[str, Any] | None = None
    cause: int | None = None
    cause_txt: str = ""
    dialstatus: str = ""
    tech_cause: int | None = None
    outcome: AttemptOutcome | None = None
    error: str = ""
    note: str = ""
    transferred_to: str = ""  # a note may record the number the call was transferred to (CallTransferred)
    # A note may record AMD()'s (status, cause) (CallAmd): amd_status/amd_cause, and answered_by by the
    # campaign's rule (campaigns/amd.py).
    amd: tuple[str, str] | None = None
    # An end that was not seen (reconciliation, the overdue sweep): the outcome is decided from what the
    # product recorded (campaigns.lifecycle.unseen_end_outcome) once the attempt is locked.
    unseen: UnseenEnd | None = None

    def checked(self) -> AttemptStep:
        """The step with its event normalised and CANCELLED's default outcome; ValueError on a misuse."""
        if self.event is None:
            if not self.note or self.outcome is not None:
                raise ValueError("attempt step: a note needs a type and takes no outcome")
            return self
        if self.transferred_to or self.amd is not None:
            raise ValueError("attempt step: only a note records a transfer or an AMD result")
        event, outcome = AttemptInput(self.event), self.outcome
        if event is AttemptInput.CANCELLED and outcome is None:
            outcome = AttemptOutcome.CANCELLED
        if event in _ENDING_EVENTS and outcome is None:
            raise ValueError(f"attempt_apply: {event.value} needs an outcome")
        if event not in _ENDING_EVENTS and outcome is not None:
            raise ValueError(f"attempt_apply: {event.value} does not end an attempt, so it takes no outcome")
        if self.note:
            raise ValueError("attempt step: an event step takes no note type")
        return replace(self, event=event, outcome=outcome)


def attempt_apply(
    *,
    attempt_id: UUID,
    event: AttemptInput,
    at: datetime | None = None,
    data: dict[str, Any] | None = None,
    cause: int | None = None,
    cause_txt: str = "",
    dialstatus: str = "",
    tech_cause: int | None = None,
    outcome: AttemptOutcome | None = None,
    error: str = "",
    on_ended: Callable[[int], None] | None = None,
) -> Transition:
    """Offer ``event`` to the attempt (through :func:`campaigns.lifecycle.transition`) and apply it.

    In one transaction: lock the attempt; a refused event (duplicate, illegal, terminal) changes nothing
    but appends a ``note`` to the attempt's log; an applied one sets the state and its timestamp, appends a
    ``state`` event, and — when the attempt ended — records the outcome and finishes the lead: its attempt
    counter (only for outcomes that consume an attempt, never for CANCELLED), then waiting with the retry
    time (moved to the next calling-window opening) or done. ``on_ended(tenant_id)`` runs after commit when
    the attempt ended, so a new pass can use the freed slot at once.

    ``outcome`` is required for the events that end an attempt (ENDED, ORIGINATE_FAILED), defaults to
    ``cancelled`` for CANCELLED (see the module docstring for the re-check mapping) and must be None for
    the others. Raises ``CallAttempt.DoesNotExist`` for an unknown attempt and ``ValueError`` for a
    misuse of ``outcome`` (both before any change).
    """
    step = AttemptStep(
        event=AttemptInput(event),
        at=at or timezone.now(),
        data=data,
        cause=cause,
        cause_txt=cause_txt,
        dialstatus=dialstatus,
        tech_cause=tech_cause,
        outcome=outcome,
        error=error,
    )
    (result,) = attempt_apply_many(attempt_id=attempt_id, steps=[step], on_ended=on_ended)
    assert result is not None  # an event step always has a transition  # noqa: S101
    return result


def attempt_apply_many(
    *,
    attempt_id: UUID,
    steps: Sequence[AttemptStep],
    on_ended: Callable[[int], None] | None = None,
) -> list[Transition | None]:
    """Apply several steps that happened to one attempt, in order, as :func:`attempt_apply` would one call
    each — the same states, timestamps, outcome, lead finish and log rows (one per step, in order, refused
    ones as ``refused:…`` notes) — but in one transaction with one lock, one read, one update of the
    attempt, one insert of the log rows and at most one of the lead. Each step is offered to
    :func:`campaigns.lifecycle.transition` in the state the steps before it left, so a progress event
    still implies its predecessors and anything after an end is refused as ``terminal``.

    Returns each step's transition (None for a note). Raises ``CallAttempt.DoesNotExist`` for an unknown
    attempt and ``ValueError`` for a misused step, both before any change.
    """
    steps = [step.checked() for step in steps]
    ending = any(step.event in _ENDING_EVENTS for step in steps)
    with transaction.atomic():
        # Lock order: the attempt, then its lead (dispatch never waits on either; see the module docstring).
        # When a step may end the attempt, the lead is locked in the same statement (rows are locked in the
        # order of the join: the attempt first), its contact, campaign and tenant read along with it.
        query = CallAttempt.objects.all()
        if ending:
            query = (
                query.select_related("lead__contact", "campaign__tenant")
                .select_for_update(no_key=True, of=("self", "lead"))
                # Read with the row: a tenant without webhooks costs the end no statement.
                .annotate(tenant_has_webhooks=webhook_endpoints_exist())
            )
        else:
            query = query.select_for_update(no_key=True)
        attempt = query.get(pk=attempt_id)
        results: list[Transition | None] = []
        rows: list[AttemptEvent] = []
        changed: set[str] = set()
        finished: AttemptStep | None = None
        for step in steps:
            if step.event is None:
                if step.transferred_to and attempt.transferred_to != step.transferred_to:
                    attempt.transferred_to = step.transferred_to
                    changed.add("transferred_to")
                if step.amd is not None:
                    _note_amd(attempt, step.amd, changed)
                rows.append(
                    AttemptEvent(
                        attempt=attempt,
                        at=step.at,
                        kind=AttemptEvent.Kind.NOTE,
                        type=step.note,
                        data=step.data or {},
                    )
                )
                results.append(None)
                continue
            result = _offer(attempt, step, changed, rows)
            results.append(result)
            if result.applied and result.new is AttemptState.ENDED:
                finished = step
        if changed:
            attempt.save(update_fields=sorted(changed))
        if "state" in changed:
            live_notify(
                tenant_id=attempt.tenant_id, kind="call", call_id=str(attempt.pk), state=attempt.state
            )
        AttemptEvent.objects.bulk_create(rows)
        if finished is not None:
            assert finished.event is not None and finished.outcome is not None  # noqa: S101
            lead_was_done = attempt.lead.status == Lead.Status.DONE
            _lead_finish(
                attempt=attempt,
                lead=attempt.lead,
                campaign=attempt.campaign,
                event=finished.event,
                outcome=AttemptOutcome(attempt.outcome),  # as recorded (see _final_outcome)
                at=finished.at,
            )
            # The tenant's webhooks, in this transaction (the outbox: reported exactly when it happened).
            if getattr(attempt, "tenant_has_webhooks", True):
                call_ended_record(attempt=attempt)
                if attempt.lead.status == Lead.Status.DONE and not lead_was_done:
                    lead_finished_record(lead=attempt.lead, tenant_id=attempt.tenant_id)
            if on_ended is not None:
                tenant_id = attempt.tenant_id
                transaction.on_commit(lambda: on_ended(tenant_id))
    return results


def _offer(
    attempt: CallAttempt, step: AttemptStep, changed: set[str], rows: list[AttemptEvent]
) -> Transition:
    """One event step on the locked attempt, in memory: its fields (names added to ``changed``) and its log
    row (appended to ``rows``); the caller saves both."""
    event, at, outcome, data = step.event, step.at, step.outcome, step.data
    assert event is not None  # noqa: S101
    result = transition(AttemptState(attempt.state), event)
    if not result.applied:
        log = logger.warning if result.reason == "illegal" else logger.info
        log("attempt %s: %s refused in state %s (%s)", attempt.pk, event.value, attempt.state, result.reason)
        rows.append(
            AttemptEvent(
                attempt=attempt,
                at=at,
                kind=AttemptEvent.Kind.NOTE,
                type=f"refused:{event.value}",
                data={"state": attempt.state, "reason": result.reason, "data": data or {}},
            )
        )
        return result

    changed.add("state")
    attempt.state = result.new
    if result.old is AttemptState.QUEUED and attempt.originated_at is None:
        # Any progress out of queued means the PBX accepted the call, even if its 200 arrives later
        # (then as a refused duplicate). Not for a cancel or a failed originate: nothing was placed.
        if event not in (AttemptInput.CANCELLED, AttemptInput.ORIGINATE_FAILED):
            attempt.originated_at = at
            changed.add("originated_at")
    if event is AttemptInput.RINGING:
        attempt.ringing_at = at
        changed.add("ringing_at")
    if event in (AttemptInput.ANSWERED, AttemptInput.BRIDGED) and attempt.answered_at is None:
        attempt.answered_at = at
        changed.add("answered_at")
    if result.new is AttemptState.ENDED:
        assert outcome is not None  # checked for every ending event  # noqa: S101
        outcome = _final_outcome(attempt, result.old, step, outcome)
        attempt.ended_at = at
        attempt.duration_s = (
            max(0.0, (at - attempt.answered_at).total_seconds()) if attempt.answered_at else None
        )
        attempt.outcome = outcome.value
        attempt.cause = step.cause
        attempt.cause_txt = step.cause_txt
        attempt.dialstatus = step.dialstatus
        attempt.tech_cause = step.tech_cause
        attempt.error = step.error
        changed.update(
            ("ended_at", "duration_s", "outcome", "cause", "cause_txt", "dialstatus", "tech_cause", "error")
        )
    event_data: dict[str, Any] = {"event": event.value}
    if outcome is not None:
        event_data.update(
            outcome=outcome.value, cause=step.cause, cause_txt=step.cause_txt, dialstatus=step.dialstatus
        )
        event_data.update(tech_cause=step.tech_cause, error=step.error)
    if data:
        event_data["data"] = data
    rows.append(
        AttemptEvent(
            attempt=attempt,
            at=at,
            kind=AttemptEvent.Kind.STATE,
            type=f"{result.old.value}->{result.new.value}",
            data=event_data,
        )
    )
    return result


def _final_outcome(
    attempt: CallAttempt, old: AttemptState, step: AttemptStep, outcome: AttemptOutcome
) -> AttemptOutcome:
    """The outcome an ending step records (DESIGN.md §5 rule 5), from the locked attempt as it was before:

    * an end nobody saw (``step.unseen``) is classified from the evidence, never guessed
      (:func:`campaigns.lifecycle.unseen_end_outcome`);
    * an answered call whose agent never spoke (the media worker's report came first and says so) and
      that was not handed to a human is ``media_failed``, not a success.
    """
    if step.unseen is not None:
        evidence = EndEvidence(
            answered=attempt.answered_at is not None or bool((step.data or {}).get("answered")),
            connected=old is AttemptState.BRIDGED
            or _has_caller_turn(attempt.transcript)
            or (step.unseen.media_connected and step.unseen.agent_spoke),
            placed_during_gap=step.unseen.gap_started_at is not None
            and attempt.originate_sent_at is not None
            and attempt.originate_sent_at >= step.unseen.gap_started_at,
        )
        outcome = unseen_end_outcome(outcome, evidence)
    if outcome is AttemptOutcome.ANSWERED:
        # A machine answered (AMD, or the media worker's beep / greeting detector, reported first).
        machine = machine_outcome(attempt)
        if machine is not None:
            return machine
    if outcome is AttemptOutcome.ANSWERED and agent_never_spoke(attempt):
        outcome = AttemptOutcome.MEDIA_FAILED
    return outcome


def _note_amd(attempt: CallAttempt, amd: tuple[str, str], changed: set[str]) -> None:
    """AMD()'s result on the attempt, and who answered by the campaign's rule for it."""
    status, cause = amd
    attempt.amd_status, attempt.amd_cause = status[:16], cause[:64]
    changed.update(("amd_status", "amd_cause"))
    who = amd_answered_by(status, cause, attempt.campaign.amd_notsure_action)
    if who and attempt_set_answered_by(attempt, who, "amd"):
        changed.update(("answered_by", "machine_source"))


def attempt_set_answered_by(attempt: CallAttempt, who: str, source: str) -> bool:
    """Record who answered (in memory; returns whether it changed). A machine is never turned back into a
    person: the media worker's second opinion (a beep, a greeting) only ever finds a machine AMD missed."""
    if who == ANSWERED_BY_MACHINE:
        if attempt.answered_by == ANSWERED_BY_MACHINE:
            return False
        attempt.answered_by, attempt.machine_source = ANSWERED_BY_MACHINE, source[:8]
        return True
    if who == ANSWERED_BY_HUMAN and attempt.answered_by in ("", "unknown"):
        attempt.answered_by = ANSWERED_BY_HUMAN
        return True
    return False


def machine_outcome(attempt: CallAttempt) -> AttemptOutcome | None:
    """The outcome of an answered call a machine took: the message left, or not; None for anyone else."""
    if attempt.answered_by != ANSWERED_BY_MACHINE:
        return None
    return AttemptOutcome.VOICEMAIL_LEFT if attempt.voicemail_left_at else AttemptOutcome.MACHINE_DETECTED


def _has_caller_turn(transcript: Any) -> bool:
    return isinstance(transcript, list) and any(
        isinstance(turn, dict) and turn.get("role") == "caller" for turn in transcript
    )


def agent_never_spoke(attempt: CallAttempt) -> bool:
    """The media worker reported the call and its agent never spoke, and no human took the call over."""
    metrics = attempt.media_metrics if isinstance(attempt.media_metrics, dict) else {}
    return metrics.get("agent_spoke") is False and not attempt.transferred_to


def _lead_finish(
    *,
    attempt: CallAttempt,
    lead: Lead,
    campaign: Campaign,
    event: AttemptInput,
    outcome: AttemptOutcome,
    at: datetime,
) -> None:
    """The lead's side of an ended attempt, in the attempt's transaction (rule 3). ``lead`` is the attempt's
    lead, locked by the caller (read after the lock: its current version); ``campaign`` has its tenant."""
    consumed = event is not AttemptInput.CANCELLED and consumes_attempt(outcome)
    lead.attempts += 1 if consumed else 0  # the row is locked: no lost update
    lead.last_outcome = outcome.value
    fields = ["attempts", "last_outcome", "updated_at"]
    if lead.status != Lead.Status.IN_ATTEMPT:
        # Someone finished or suppressed the lead while the call was live (e.g. an opt-out handled
        # elsewhere): keep that decision; only the counter and the last outcome are recorded.
        lead.save(update_fields=fields)
        return
    fields += ["status", "next_due_at", "done_reason", "wait_reason"]
    if event is AttemptInput.CANCELLED and outcome is AttemptOutcome.OPTED_OUT:
        # The re-check found the number on the DNC list: the same result as finding it at claim time.
        if lead_move(lead=lead, by=LeadInput.ON_DNC).applied:
            lead.next_due_at, lead.done_reason, lead.wait_reason = None, DONE_REASON_DNC, ""
        lead.save(update_fields=fields)
        return
    decision = retry_decision(
        outcome=outcome,
        attempts_made=lead.attempts,
        max_attempts=campaign.max_attempts,
        retry_delays=campaign.retry_delays,
        now=at,
        callback_at=attempt.callback_at,  # the agent's schedule_callback, stored while the call was live
    )
    _lead_decide(lead=lead, campaign=campaign, decision=decision)
    lead.save(update_fields=fields)


def _lead_decide(*, lead: Lead, campaign: Campaign, decision: RetryDecision, redecided: bool = False) -> bool:
    """Set the lead (in memory) to waiting with the decision's time, or done with its reason; returns
    whether the table allowed it (a refused move changes nothing and is logged).

    ``redecided``: the decision is about an attempt that ended earlier (a late callback, a reclassified
    end), not the end being applied now.

    A waiting lead keeps why it waits (``wait_reason``, for the explainer): ``callback`` (the callee asked
    for it), ``outside_window`` (the retry time fell outside the callee's window and was moved to its next
    opening), else the outcome it retries after."""
    retry = decision.should_retry and decision.at is not None
    if retry:
        by = LeadInput.REDECIDED_RETRY if redecided else LeadInput.ATTEMPT_RETRY
    else:
        by = LeadInput.REDECIDED_DONE if redecided else LeadInput.ATTEMPT_DONE
    if not lead_move(lead=lead, by=by).applied:
        return False
    if decision.should_retry and decision.at is not None:
        # Only a retry needs the calling window (to move the due time to its next opening).
        window = callee_window(campaign=campaign, contact=lead.contact, tenant=campaign.tenant)
        due = decision.at
        if window is not None:
            due = window.dialable_from(due)
        reason = decision.reason
        if reason != RETRY_CALLBACK and due > decision.at:
            reason = WAIT_OUTSIDE_WINDOW
        lead.next_due_at, lead.done_reason, lead.wait_reason = due, "", reason[:32]
    else:
        lead.next_due_at, lead.done_reason, lead.wait_reason = None, decision.reason, ""
    return True


def lead_apply_late_callback(*, attempt: CallAttempt, now: datetime | None = None) -> bool:
    """A callback asked for on an attempt that had already ended when it arrived (the agent's
    schedule_callback task ran after the call's end): the lead becomes due at ``attempt.callback_at`` as
    the end would have decided (:func:`campaigns.lifecycle.retry_decision`), if it is still where that end
    left it. Returns whether the lead changed.

    Call it in a transaction holding the lock of ``attempt`` (ended, ``callback_at`` set); the lead is
    locked here (lock order: attempt, then lead). The lead is left alone when it has moved on since: a
    newer attempt, suppressed, or done for another reason than a completed call (never retried, budget
    spent, opted out).
    """
    if attempt.state != AttemptState.ENDED or attempt.callback_at is None or not attempt.outcome:
        return False
    now = now or timezone.now()
    lead = (
        Lead.objects.select_related("contact", "campaign__tenant")
        .select_for_update(no_key=True, of=("self",))
        .get(pk=attempt.lead_id)
    )
    if lead.status == Lead.Status.DONE:
        movable = lead.done_reason == DONE_SUCCESS
    else:
        movable = lead.status == Lead.Status.WAITING
    newer = CallAttempt.objects.filter(lead_id=lead.pk, queued_at__gt=attempt.queued_at).exists()
    if not movable or newer:
        logger.info("attempt %s: late callback not applied; lead %s moved on", attempt.pk, lead.pk)
        return False
    campaign = lead.campaign
    decision = retry_decision(
        outcome=AttemptOutcome(attempt.outcome),
        attempts_made=lead.attempts,
        max_attempts=campaign.max_attempts,
        retry_delays=campaign.retry_delays,
        now=now,
        callback_at=attempt.callback_at,
    )
    if not decision.should_retry:
        return False  # the budget is spent: the lead stays as the end left it
    if not _lead_decide(lead=lead, campaign=campaign, decision=decision, redecided=True):
        return False
    lead.save(update_fields=["status", "next_due_at", "done_reason", "wait_reason", "updated_at"])
    return True


def attempt_reclassify_agent_silent(*, attempt: CallAttempt, now: datetime | None = None) -> bool:
    """An answered call whose agent never spoke (the media worker's report, which arrives after the end,
    says so) was no success: its outcome becomes ``media_failed`` and, if its lead is still where that end
    left it (done as a success, no newer attempt), the lead is decided again as after a ``media_failed``
    end: retried by the campaign's rules. Returns whether anything changed.

    Call it in a transaction holding the lock of ``attempt``; the lead is locked here (attempt, then lead).
    """
    if (
        attempt.state != AttemptState.ENDED
        or attempt.outcome != AttemptOutcome.ANSWERED
        or not agent_never_spoke(attempt)
    ):
        return False
    now = now or timezone.now()
    _reclassify(attempt=attempt, outcome=AttemptOutcome.MEDIA_FAILED, why="the agent never spoke", at=now)
    lead = (
        Lead.objects.select_related("contact", "campaign__tenant")
        .select_for_update(no_key=True, of=("self",))
        .get(pk=attempt.lead_id)
    )
    newer = CallAttempt.objects.filter(lead_id=lead.pk, queued_at__gt=attempt.queued_at).exists()
    if lead.last_outcome == AttemptOutcome.ANSWERED and not newer:
        lead.last_outcome = attempt.outcome
        fields = ["last_outcome", "updated_at"]
        if lead.status == Lead.Status.DONE and lead.done_reason == DONE_SUCCESS:
            campaign = lead.campaign
            decision = retry_decision(
                outcome=AttemptOutcome.MEDIA_FAILED,
                attempts_made=lead.attempts,
                max_attempts=campaign.max_attempts,
                retry_delays=campaign.retry_delays,
                now=now,
            )
            if _lead_decide(lead=lead, campaign=campaign, decision=decision, redecided=True):
                fields += ["status", "next_due_at", "done_reason", "wait_reason"]
        lead.save(update_fields=fields)
    logger.warning("attempt %s: answered but the agent never spoke: media_failed", attempt.pk)
    return True


#: Outcomes an end may have had before a late report said a machine answered (AMD's result, the media
#: worker's beep / greeting detector, or the message left came after the call's end).
_MACHINE_RECLASSIFIABLE = frozenset(
    {AttemptOutcome.ANSWERED, AttemptOutcome.MEDIA_FAILED, AttemptOutcome.MACHINE_DETECTED}
)


def attempt_reclassify_machine(*, attempt: CallAttempt, now: datetime | None = None) -> bool:
    """An ended call that a late report says a machine took: its outcome becomes ``voicemail_left`` or
    ``machine_detected`` (:func:`machine_outcome`) and, if its lead is still where that end left it (done
    as a success, or waiting for the retry that end decided; no newer attempt), the lead is decided again
    by the new outcome's rules. Returns whether anything changed.

    Call it in a transaction holding the lock of ``attempt``; the lead is locked here (attempt, then lead).
    """
    if attempt.state != AttemptState.ENDED or not attempt.outcome:
        return False
    old = AttemptOutcome(attempt.outcome)
    new = machine_outcome(attempt)
    if new is None or new is old or old not in _MACHINE_RECLASSIFIABLE:
        return False
    now = now or timezone.now()
    _reclassify(attempt=attempt, outcome=new, why=f"a machine answered ({attempt.machine_source})", at=now)
    lead = (
        Lead.objects.select_related("contact", "campaign__tenant")
        .select_for_update(no_key=True, of=("self",))
        .get(pk=attempt.lead_id)
    )
    newer = CallAttempt.objects.filter(lead_id=lead.pk, queued_at__gt=attempt.queued_at).exists()
    if lead.last_outcome != old.value or newer:
        return True
    lead.last_outcome = new.value
    fields = ["last_outcome", "updated_at"]
    as_the_end_left_it = (lead.status == Lead.Status.DONE and lead.done_reason == DONE_SUCCESS) or (
        # waiting for the retry of this outcome (moved to the window's next opening or not); a callback the
        # callee asked for is not the end's decision
        lead.status == Lead.Status.WAITING and lead.wait_reason in (old.value, WAIT_OUTSIDE_WINDOW)
    )
    if as_the_end_left_it:
        campaign = lead.campaign
        decision = retry_decision(
            outcome=new,
            attempts_made=lead.attempts,
            max_attempts=campaign.max_attempts,
            retry_delays=campaign.retry_delays,
            now=now,
            callback_at=attempt.callback_at,
        )
        if _lead_decide(lead=lead, campaign=campaign, decision=decision, redecided=True):
            fields += ["status", "next_due_at", "done_reason", "wait_reason"]
    lead.save(update_fields=fields)
    logger.info("attempt %s: a machine answered: %s -> %s", attempt.pk, old.value, new.value)
    return True


# ------------------------------------------------------------------------------------------ overdue ends

#: How long past its hard maximum (ring timeout + ``settings.MAX_CALL_DURATION_S``) a placed attempt may
#: stay live before the overdue sweep ends it: the Stasis app hangs calls up at the maximum and reconciles
#: after every reconnect, so an attempt still live this long after has lost its end for good (its Stasis
#: app has been down all that time).
OVERDUE_GRACE = timedelta(minutes=5)


def attempts_end_overdue(
    *, now: datetime | None = None, on_ended: Callable[[int], None] | None = None, limit: int = 500
) -> list[UUID]:
    """End every placed attempt older than its hard maximum plus :data:`OVERDUE_GRACE` (DESIGN.md §5 rule
    5: no attempt stays live longer than its hard maximum); returns their ids.

    Its end was not seen, so the outcome is decided from the evidence like a reconciled end
    (:func:`campaigns.lifecycle.unseen_end_outcome`: answered when it reached its agent, else
    ``media_failed`` when it was answered, else ``unknown``); the end's data says ``reason: "overdue"``.
    An end event arriving later is refused as a duplicate, as usual.
    """
    now = now or timezone.now()
    longest_ring = (
        Campaign.objects.order_by("-ring_timeout").values_list("ring_timeout", flat=True).first() or 0
    )
    cutoff = now - timedelta(seconds=settings.MAX_CALL_DURATION_S + longest_ring) - OVERDUE_GRACE
    overdue = list(
        CallAttempt.objects.filter(state__in=[s.value for s in PLACED_STATES], queued_at__lt=cutoff)
        .order_by("queued_at")
        .values_list("pk", flat=True)[:limit]
    )
    ended = []
    for attempt_id in overdue:
        marks = attempt_media_marks(attempt_id=attempt_id)
        step = AttemptStep(
            event=AttemptInput.ENDED,
            at=now,
            outcome=AttemptOutcome.UNKNOWN,
            error="no end of the call reached the orchestrator within its hard maximum",
            data={"reason": "overdue"},
            unseen=UnseenEnd(media_connected=marks.connected, agent_spoke=marks.agent_spoke),
        )
        (result,) = attempt_apply_many(attempt_id=attempt_id, steps=[step], on_ended=on_ended)
        if result is not None and result.applied:
            logger.warning("attempt %s: no end within its hard maximum; ended as overdue", attempt_id)
            ended.append(attempt_id)
    return ended


def _reclassify(*, attempt: CallAttempt, outcome: AttemptOutcome, why: str, at: datetime) -> None:
    """An ended attempt's outcome corrected by what was learnt after its end, with a note saying why."""
    old = attempt.outcome
    attempt.outcome = outcome.value
    attempt.save(update_fields=["outcome"])
    AttemptEvent.objects.create(
        attempt=attempt,
        at=at,
        kind=AttemptEvent.Kind.NOTE,
        type="reclassified",
        data={"from": old, "to": outcome.value, "why": why},
    )
