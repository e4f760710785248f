"""The call attempt's life cycle, as data: states, the inputs (events) that move them, and the outcomes.

Every state change of a CallAttempt goes through :func:`transition`; the table below is the only place
that says which changes are legal (h11 ``_state.py`` style). An illegal or repeated event is refused (and
logged by the caller), never silently applied: ARI events can arrive twice (reconnect, reconciliation) or
out of order.

The subtle parts
----------------
* **Events can beat the HTTP response.** The originate task learns of the call from the ``200`` of
  ``POST /channels``, but the ARI events for that channel travel on a different connection (the Stasis
  app's websocket) and may be processed first. So ``queued`` accepts RINGING, ANSWERED, BRIDGED and ENDED
  directly, and the ``200`` (ORIGINATE_ACCEPTED) arriving afterwards is a harmless *duplicate*.
* **Progress events imply their predecessors.** The states are ordered (:data:`STATE_RANK`):
  ``queued < dialing < ringing < answered < bridged < ended``. A progress event (ORIGINATE_ACCEPTED,
  RINGING, ANSWERED, BRIDGED) moves a live attempt forward from *any* earlier state, because the
  intermediate events may be late or lost (not every call rings: a Local channel goes straight to Up). An
  event whose target is not ahead of the current state is a ``"duplicate"``: it was already passed. The
  state therefore never moves backwards.
* **Refusals before the call existed.** ORIGINATE_FAILED (a terminal refusal of the originate) and
  CANCELLED (the re-check right before originating said no) end an attempt that is still ``queued``.
  Once the PBX accepted the call (``dialing`` or later) they are ``"illegal"``: a call exists and only
  its own end (ENDED) may close the attempt; a 409 on a repeated originate means "already placed"
  (DESIGN.md §5 rule 2), not a failure.
* **ENDED closes any live state**: ``ChannelDestroyed`` (outbound), ``StasisEnd`` (dialplan-entered
  calls, PROTOCOLS.md A4), the reconciler finding the channel gone, or the hard maximum duration.
* **``ended`` is absorbing.** Every event on an ended attempt is refused with reason ``"terminal"``.

The retry policy (what a lead does after an attempt ended with an outcome) is here too, as pure functions
of the outcome, the attempt budget and the campaign's ``retry_delays``; see :func:`retry_decision`.

This module imports nothing from Django so it can be property-tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType


class AttemptState(StrEnum):
    QUEUED = "queued"  # created by dispatch, originate not sent yet
    DIALING = "dialing"  # originate accepted by the PBX (200 + Down snapshot)
    RINGING = "ringing"  # the far end is alerting
    ANSWERED = "answered"  # StasisStart: answered and controllable
    BRIDGED = "bridged"  # bridged to the media worker
    ENDED = "ended"  # terminal; see the outcome


LIVE_STATES: frozenset[AttemptState] = frozenset(
    {
        AttemptState.QUEUED,
        AttemptState.DIALING,
        AttemptState.RINGING,
        AttemptState.ANSWERED,
        AttemptState.BRIDGED,
    }
)

# Live states in which the PBX has (had) the channel: a queued attempt's originate may not have been sent.
PLACED_STATES: frozenset[AttemptState] = LIVE_STATES - {AttemptState.QUEUED}


class AttemptOutcome(StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    CONGESTION = "congestion"
    UNREACHABLE = "unreachable"
    INVALID_NUMBER = "invalid_number"
    FAILED = "failed"
    CANCELLED = "cancelled"  # never placed: the re-check before originate said no
    VOICEMAIL = "voicemail"  # (older rows; new calls end voicemail_left or machine_detected)
    VOICEMAIL_LEFT = "voicemail_left"  # a machine answered and the campaign's message was left
    MACHINE_DETECTED = "machine_detected"  # a machine answered, no message left
    OPTED_OUT = "opted_out"
    ERROR = "error"  # the PBX refused the originate (terminal 4xx) or the attempt was lost
    # Answered, but the agent never got to the callee: the media leg never came up (no media worker), or
    # the agent never spoke (the speech model failed). Not a success: retried by the campaign's rules.
    MEDIA_FAILED = "media_failed"
    # Placed on a PBX while its Stasis app was not listening (A11): a callee who answered was dropped at once.
    APP_UNAVAILABLE = "app_unavailable"
    # The end was not seen and nothing recorded says it was answered (see unseen_end_outcome).
    UNKNOWN = "unknown"


class AttemptInput(StrEnum):
    """What can happen to an attempt: the inputs of :data:`TRANSITIONS`. (Not to be confused with the
    ``campaigns.models.AttemptEvent`` rows, the attempt's append-only log.)"""

    ORIGINATE_ACCEPTED = "originate_accepted"  # 200 from POST /channels (or a 409 confirmed as placed)
    ORIGINATE_FAILED = "originate_failed"  # terminal refusal before the call existed (4xx/500, 409 then 404)
    CANCELLED = "cancelled"  # the re-check before originate said no (window, DNC, campaign paused)
    RINGING = "ringing"  # Dial RINGING / ChannelStateChange Ringing
    ANSWERED = "answered"  # StasisStart (PROTOCOLS.md §2.2 step 5: the authoritative "answered")
    BRIDGED = "bridged"  # the call is bridged to the media worker
    # ChannelDestroyed; StasisEnd for dialplan-entered calls; reconciliation found it gone; hard max duration
    ENDED = "ended"


# The order a call goes through; a state's rank never decreases (see the module docstring).
STATE_RANK: Mapping[AttemptState, int] = MappingProxyType(
    {
        AttemptState.QUEUED: 0,
        AttemptState.DIALING: 1,
        AttemptState.RINGING: 2,
        AttemptState.ANSWERED: 3,
        AttemptState.BRIDGED: 4,
        AttemptState.ENDED: 5,
    }
)


# The whole table: (state, input) -> new state. Any pair not listed is refused.
TRANSITIONS: Mapping[tuple[AttemptState, AttemptInput], AttemptState] = MappingProxyType(
    {
        # queued: the originate is not (known to be) accepted yet; ARI events may beat the HTTP 200.
        (AttemptState.QUEUED, AttemptInput.ORIGINATE_ACCEPTED): AttemptState.DIALING,
        (AttemptState.QUEUED, AttemptInput.ORIGINATE_FAILED): AttemptState.ENDED,
        (AttemptState.QUEUED, AttemptInput.CANCELLED): AttemptState.ENDED,
        (AttemptState.QUEUED, AttemptInput.RINGING): AttemptState.RINGING,
        (AttemptState.QUEUED, AttemptInput.ANSWERED): AttemptState.ANSWERED,
        (AttemptState.QUEUED, AttemptInput.BRIDGED): AttemptState.BRIDGED,
        (AttemptState.QUEUED, AttemptInput.ENDED): AttemptState.ENDED,
        # dialing: the PBX accepted the call and is dialing it.
        (AttemptState.DIALING, AttemptInput.RINGING): AttemptState.RINGING,
        # A Local channel or a fast answer never reports ringing.
        (AttemptState.DIALING, AttemptInput.ANSWERED): AttemptState.ANSWERED,
        # The ANSWERED event is late (events handled by concurrent workers).
        (AttemptState.DIALING, AttemptInput.BRIDGED): AttemptState.BRIDGED,
        (AttemptState.DIALING, AttemptInput.ENDED): AttemptState.ENDED,
        # ringing
        (AttemptState.RINGING, AttemptInput.ANSWERED): AttemptState.ANSWERED,
        (AttemptState.RINGING, AttemptInput.BRIDGED): AttemptState.BRIDGED,
        (AttemptState.RINGING, AttemptInput.ENDED): AttemptState.ENDED,
        # answered (in Stasis, not yet talking to the media worker)
        (AttemptState.ANSWERED, AttemptInput.BRIDGED): AttemptState.BRIDGED,
        (AttemptState.ANSWERED, AttemptInput.ENDED): AttemptState.ENDED,
        # bridged
        (AttemptState.BRIDGED, AttemptInput.ENDED): AttemptState.ENDED,
    }
)

# The state each progress event leads to; used to tell a duplicate ("already there or past it") from an
# illegal event. ORIGINATE_FAILED and CANCELLED are not progress: they only make sense before the call.
_PROGRESS_TARGET: Mapping[AttemptInput, AttemptState] = MappingProxyType(
    {
        AttemptInput.ORIGINATE_ACCEPTED: AttemptState.DIALING,
        AttemptInput.RINGING: AttemptState.RINGING,
        AttemptInput.ANSWERED: AttemptState.ANSWERED,
        AttemptInput.BRIDGED: AttemptState.BRIDGED,
    }
)

REASON_APPLIED = "applied"
REASON_DUPLICATE = "duplicate"
REASON_ILLEGAL = "illegal"
REASON_TERMINAL = "terminal"


@dataclass(frozen=True)
class Transition:
    """The result of offering ``event`` to an attempt in state ``old``.

    ``applied`` is False for a refused event; then ``new == old`` and ``reason`` is ``"duplicate"`` (the
    event would keep the state, or its state was already passed: harmless), ``"illegal"`` (a bug or a
    confused PBX: log it) or ``"terminal"`` (the attempt already ended). Applied transitions have
    reason ``"applied"``.
    """

    old: AttemptState
    event: AttemptInput
    new: AttemptState
    applied: bool
    reason: str


def transition(state: AttemptState, event: AttemptInput) -> Transition:
    """Looks ``(state, event)`` up in :data:`TRANSITIONS`. Never raises for a well-typed input."""
    new = TRANSITIONS.get((state, event))
    if new is not None:
        return Transition(old=state, event=event, new=new, applied=True, reason=REASON_APPLIED)
    if state is AttemptState.ENDED:
        reason = REASON_TERMINAL
    elif event is AttemptInput.ENDED or (
        event in _PROGRESS_TARGET and STATE_RANK[_PROGRESS_TARGET[event]] <= STATE_RANK[state]
    ):
        # ENDED is legal from every live state, so it can only be refused as terminal (above); kept here
        # so that a future table edit cannot turn a repeated end into an "illegal" alarm.
        reason = REASON_DUPLICATE
    else:
        reason = REASON_ILLEGAL
    return Transition(old=state, event=event, new=state, applied=False, reason=reason)


def is_live(state: AttemptState) -> bool:
    """True while the attempt holds a concurrency slot (DESIGN.md §5 rule 1)."""
    return state in LIVE_STATES


# -------------------------------------------------------------------------------------- unseen ends
#
# DESIGN.md §5 rule 5: a call whose end was not seen (its Stasis app was down: the end is found by the
# reconciliation after a restart, or by the overdue sweep) is classified from what was seen before the gap
# and what the product itself recorded, never guessed as a retryable failure; an answered contact is never
# redialed because of a guess.


@dataclass(frozen=True)
class EndEvidence:
    """What the product recorded about a call whose end it did not see.

    ``answered``: StasisStart was seen (the attempt has an ``answered_at``, or the Stasis app saw it).
    ``connected``: the call reached its agent: bridged to media, the media worker took its AudioSocket leg,
    or it has a transcript. ``placed_during_gap``: the originate was sent after the Stasis app was last known
    to listen (so a callee who answered met no app, PROTOCOLS.md A11)."""

    answered: bool = False
    connected: bool = False
    placed_during_gap: bool = False


def unseen_end_outcome(reported: AttemptOutcome, evidence: EndEvidence) -> AttemptOutcome:
    """The outcome of a call whose end was not seen. ``reported``: what the Stasis app saw before the gap
    (``unknown`` when that said nothing; ``media_failed`` when its media could not be set up).

    * it reached its agent → ``answered`` (it happened; its end time is when the gap was noticed);
    * answered but never connected to the agent → ``media_failed`` (the callee heard silence);
    * what was seen before the gap says how it went (a final Dial status: busy, no answer...) → that;
    * placed while the app was not listening → ``app_unavailable``;
    * else ``unknown``. Nothing recorded says it was answered, and a call that reached its agent always
      leaves a record (the media worker's mark): so no conversation took place, and a retry redials
      nobody who talked to the agent.
    """
    if evidence.connected:
        return AttemptOutcome.ANSWERED
    if evidence.answered or reported in (AttemptOutcome.ANSWERED, AttemptOutcome.MEDIA_FAILED):
        return AttemptOutcome.MEDIA_FAILED
    if reported not in (AttemptOutcome.UNKNOWN, AttemptOutcome.FAILED, AttemptOutcome.ERROR):
        return reported
    if evidence.placed_during_gap:
        return AttemptOutcome.APP_UNAVAILABLE
    return AttemptOutcome.UNKNOWN


# ---------------------------------------------------------------------------------------- retry policy
#
# After an attempt ends, its lead is either done or waits until a next-due time. How the caller uses this:
#
# 1. ``attempts_made`` is the number of attempts that *consumed* the lead's budget, **including the one
#    that just ended** when ``consumes_attempt(outcome)`` is true. So the caller increments its counter
#    (with ``F()``) only for consuming outcomes, then passes the new value.
# 2. CANCELLED does not consume an attempt: nothing was dialed (the re-check before originating said no,
#    e.g. outside the calling window or the campaign was paused). The decision is then a retry after the
#    cancelled delay; the caller should move that time forward to the next opening of the callee's calling
#    window (``campaigns.windows``) when the cancellation was for the window. A number that was found
#    suppressed is not "cancelled" but OPTED_OUT (never retried).
# 3. Outcomes missing from ``retry_delays`` wait DEFAULT_RETRY_DELAY_SECONDS.

DEFAULT_RETRY_DELAY_SECONDS = 900

# "rejected (21), invalid number (1, 28) and opted-out are never retried".
NEVER_RETRY: frozenset[AttemptOutcome] = frozenset(
    {AttemptOutcome.REJECTED, AttemptOutcome.INVALID_NUMBER, AttemptOutcome.OPTED_OUT}
)
# A completed call finishes the lead, unless the callee asked to be called back (``callback_at``).
FINAL_SUCCESS: frozenset[AttemptOutcome] = frozenset({AttemptOutcome.ANSWERED})
# Done unless the campaign lists the outcome in its ``retry_delays`` (the message was left: calling again is
# the campaign's choice, not the default).
DONE_UNLESS_LISTED: frozenset[AttemptOutcome] = frozenset({AttemptOutcome.VOICEMAIL_LEFT})
DONE_VOICEMAIL_LEFT = "voicemail_left"

_NOT_CONSUMING: frozenset[AttemptOutcome] = frozenset({AttemptOutcome.CANCELLED})

DONE_SUCCESS = "success"
DONE_NEVER_RETRY = "never_retry"
DONE_MAX_ATTEMPTS = "max_attempts"
#: The retry reason when the lead is due again because the callee asked for a callback.
RETRY_CALLBACK = "callback"


@dataclass(frozen=True)
class RetryDecision:
    """Either ``done`` (the lead is finished, ``reason`` says why) or ``retry`` at ``at``."""

    should_retry: bool
    reason: str
    at: datetime | None = None

    @classmethod
    def done(cls, reason: str) -> RetryDecision:
        return cls(should_retry=False, reason=reason, at=None)

    @classmethod
    def retry(cls, at: datetime, reason: str = "retry") -> RetryDecision:
        return cls(should_retry=True, reason=reason, at=at)


def consumes_attempt(outcome: AttemptOutcome) -> bool:
    """Whether an attempt that ended with ``outcome`` counts against the lead's ``max_attempts``."""
    return outcome not in _NOT_CONSUMING


def retry_delay_seconds(outcome: AttemptOutcome, retry_delays: Mapping[str, int]) -> int:
    """The configured delay for ``outcome`` (keys are outcome values), else the default; never negative."""
    return max(0, int(retry_delays.get(outcome.value, DEFAULT_RETRY_DELAY_SECONDS)))


def retry_decision(
    *,
    outcome: AttemptOutcome,
    attempts_made: int,
    max_attempts: int,
    retry_delays: Mapping[str, int],
    now: datetime,
    callback_at: datetime | None = None,
) -> RetryDecision:
    """What the lead does after an attempt ended with ``outcome`` (see the notes above on the counters).

    ``callback_at``: the callee asked (through the agent) to be called back then. The lead is then due at
    that time (``now`` if it has passed) instead of done or the outcome's retry delay, attempts permitting.

    Order: never-retry outcomes → done; a callback → retry then, or done when the budget is spent;
    success → done; budget spent → done; else retry after the outcome's delay. ``now`` and ``callback_at``
    must be timezone-aware (the result is compared with aware database times).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("retry_decision needs an aware datetime for now")
    if callback_at is not None and (callback_at.tzinfo is None or callback_at.utcoffset() is None):
        raise ValueError("retry_decision needs an aware datetime for callback_at")
    if outcome in NEVER_RETRY:
        return RetryDecision.done(DONE_NEVER_RETRY)
    if callback_at is not None:
        if attempts_made >= max_attempts:
            return RetryDecision.done(DONE_MAX_ATTEMPTS)
        return RetryDecision.retry(max(callback_at, now), reason=RETRY_CALLBACK)
    if outcome in FINAL_SUCCESS:
        return RetryDecision.done(DONE_SUCCESS)
    if outcome in DONE_UNLESS_LISTED and outcome.value not in retry_delays:
        return RetryDecision.done(DONE_VOICEMAIL_LEFT)
    if attempts_made >= max_attempts:
        return RetryDecision.done(DONE_MAX_ATTEMPTS)
    delay = retry_delay_seconds(outcome, retry_delays)
    return RetryDecision.retry(now + timedelta(seconds=delay), reason=outcome.value)
