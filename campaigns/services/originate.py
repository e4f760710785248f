"""Placing the call of a claimed attempt: the re-check, the CPS limiter, the claim to send, the POST.

Two entry points, both returning an :class:`OriginateResult` (what happened, or when to try again) and
never raising for a failure of the call itself; the Celery tasks (``campaigns.tasks``) map the result to a
retry or a hand-off:

* :func:`attempt_originate` (the originate task: hand-offs, retries, resumed attempts) re-checks the
  attempt in full, waits for a calls-per-second slot of the tenant and of the PBX
  (:mod:`campaigns.ratelimit`), claims the send and sends ``POST /channels`` with the attempt id as channel
  id.
* :func:`attempt_originate_claimed` (the dispatch task, right after its pass committed) does only the
  plain case: window open, a CPS slot free, the send claimed, the POST answered. An attempt that needs
  anything else (a CPS wait, an ARI retry, a reason not to dial) is handed off with nothing sent
  (``handed_off``), to :func:`attempt_originate`.

Both write the call brief for the media worker (``campaigns.services.briefs``) right before the POST, from
the rows already loaded. :func:`originate_cps_wait` is the one place a limiter wait is known.

Safe to run twice (``acks_late`` redelivery, a duplicate enqueue, the stalled-attempt sweep)
---------------------------------------------------------------------------------------------
* An originate re-checks the attempt first (``not_queued`` once it moved on), and claims the right to send
  by setting ``originate_sent_at`` with a conditional UPDATE (``state = queued AND originate_sent_at IS
  NULL``) right before the POST. Only one run can win that; the others, and any later run that finds it
  set (the sender died, or its answer was lost), never send again: they wait until the first request has
  surely settled (:data:`ORIGINATE_SETTLE_S`) and then ask the PBX. A live channel with the attempt's id
  means the call was placed (ORIGINATE_ACCEPTED); no channel means it was never placed or has already
  ended without the Stasis app telling us, and the attempt ends with outcome ``error`` — the lead's retry
  policy takes over with a new attempt, and the number is not dialed twice for this one.
* A failure that certainly did not reach the PBX (connection refused, an error status) clears the claim,
  so the retry sends again; one that may have (a timeout after sending) keeps it.

Stalled attempts
----------------
Each hand-off and each retry records in Redis until when a run for the attempt is expected
(:func:`originate_expect`). An attempt queued for longer than ``settings.ATTEMPT_STALL_S`` with no such
record is stalled — its task was lost: the worker was killed between the dispatch commit and the originate
or the hand-off, or while holding the message (with ``acks_late`` and the Redis broker an unacknowledged
message only comes back after the broker's visibility timeout, an hour by default) — and
:func:`attempts_resume_stalled` gives it a new one. (An attempt the dispatch task originates itself needs
no record: it leaves ``queued`` within the same task, milliseconds after its commit.)

What the re-check's answers do (re-check answer → input, outcome): see
:mod:`campaigns.services.call_events`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Exists, OuterRef
from django.utils import timezone
from redis.exceptions import RedisError

from campaigns import metrics, ratelimit
from campaigns.amd import amd_args
from campaigns.lifecycle import AttemptInput, AttemptOutcome, AttemptState
from campaigns.models import CallAttempt, Campaign, DncEntry, Pbx
from campaigns.phone import normalize_phone_number
from campaigns.selectors import (
    RECHECK_CAMPAIGN_NOT_RUNNING,
    RECHECK_DNC,
    RECHECK_INVALID_NUMBER,
    RECHECK_NO_CONSENT,
    RECHECK_NOT_QUEUED,
    RECHECK_OUTSIDE_WINDOW,
    attempt_for_originate,
    attempt_recheck,
    attempts_queued_before,
    callee_window,
    campaign_dialing_filter,
    consent_exists_for_campaign,
    pbx_health,
    window_open_for_originate,
)
from campaigns.services.briefs import brief_write
from campaigns.services.call_events import attempt_apply
from campaigns.services.pbx import pbx_ari_client
from orchestrator.errors import InvalidInput
from orchestrator.redis_client import get_redis
from telephony.ari import AriClient, AriRetryableError, AriTerminalError

logger = logging.getLogger(__name__)

__all__ = [
    "EXPECT_KEY_PREFIX",
    "ORIGINATE_MAX_ARI_RETRIES",
    "ORIGINATE_SETTLE_S",
    "PBX_UNAVAILABLE_RETRY_S",
    "OriginateResult",
    "attempt_originate",
    "attempt_originate_claimed",
    "attempts_resume_stalled",
    "originate_cps_wait",
    "originate_expect",
]

#: How many times a retryable ARI failure (PBX down, 5xx, timeout, stale 409) is retried before the
#: attempt is failed with outcome ``error``; the lead's own retry policy takes over from there.
ORIGINATE_MAX_ARI_RETRIES = 5
ORIGINATE_BACKOFF_BASE_S = 2.0
ORIGINATE_BACKOFF_CAP_S = 60.0

#: How long after ``originate_sent_at`` the request has surely settled: longer than the client's connect,
#: pool and read timeouts together (2 + 2 + 5 s), so no request of an earlier try can still reach the PBX.
ORIGINATE_SETTLE_S = 15.0

#: How soon an originate held back because its PBX cannot take calls now (no Stasis app listening, no media
#: worker up) looks again.
PBX_UNAVAILABLE_RETRY_S = 2.0

#: Redis keys recording until when an originate run is expected for an attempt (see the module docstring).
EXPECT_KEY_PREFIX = "orchestrator:originate-expected"

#: At most this many stalled attempts are resumed per sweep.
STALLED_BATCH = 1000

# What happened (OriginateResult.status). A re-check's answer (campaigns.selectors.RECHECK_*) is one too.
ORIGINATED = "originated"  # POST /channels answered 200: the call is placed
ALREADY = "already"  # the call had been placed by an earlier try (a 409 confirmed, or found when settling)
FAILED = "failed"  # the attempt ended with outcome error: nothing (more) will be sent for it
RETRY = "retry"  # nothing sent now: run again in retry_in seconds (see wait)
HANDED_OFF = "handed_off"  # (the dispatch task's inline originate) nothing sent: the originate task takes it

# Why a RETRY or HANDED_OFF result waits (OriginateResult.wait).
WAIT_NONE = ""  # a hand-off to re-check in full at once
WAIT_CPS = "cps"  # no calls-per-second slot of the tenant or the PBX this second
WAIT_PBX_UNAVAILABLE = "pbx_unavailable"  # its Stasis app is not listening or no media worker is up
WAIT_SETTLING = "settling"  # an earlier try's send is claimed: wait until it has surely settled
WAIT_ARI_BACKOFF = "ari_backoff"  # a retryable ARI failure: exponential backoff

# The re-check's answer → (input, outcome); see the campaigns.services.call_events module docstring.
_RECHECK_INPUTS: dict[str, tuple[AttemptInput, AttemptOutcome]] = {
    RECHECK_CAMPAIGN_NOT_RUNNING: (AttemptInput.CANCELLED, AttemptOutcome.CANCELLED),
    RECHECK_OUTSIDE_WINDOW: (AttemptInput.CANCELLED, AttemptOutcome.CANCELLED),
    RECHECK_DNC: (AttemptInput.CANCELLED, AttemptOutcome.OPTED_OUT),
    RECHECK_INVALID_NUMBER: (AttemptInput.CANCELLED, AttemptOutcome.INVALID_NUMBER),
    # Consent revoked since the claim: waiting again, and not claimed until a valid one is recorded.
    RECHECK_NO_CONSENT: (AttemptInput.CANCELLED, AttemptOutcome.CANCELLED),
}

OnEnded = Callable[[int], None] | None


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """What one originate run did.

    ``status``: :data:`ORIGINATED`, :data:`ALREADY`, :data:`FAILED`, a re-check's answer (``not_queued``,
    ``dnc``...), or — nothing sent — :data:`RETRY` / :data:`HANDED_OFF`, to run again in ``retry_in``
    seconds (``wait`` says why). ``ari_failures``: set when this run failed retryably at the ARI: the
    failures the next run carries (counted against :data:`ORIGINATE_MAX_ARI_RETRIES`); None otherwise (a
    CPS or health wait is not counted)."""

    status: str
    retry_in: float = 0.0
    wait: str = WAIT_NONE
    ari_failures: int | None = None

    @classmethod
    def retry(cls, retry_in: float, wait: str, *, ari_failures: int | None = None) -> OriginateResult:
        return cls(status=RETRY, retry_in=retry_in, wait=wait, ari_failures=ari_failures)

    @classmethod
    def hand_off(
        cls, retry_in: float = 0.0, wait: str = WAIT_NONE, *, ari_failures: int | None = None
    ) -> OriginateResult:
        return cls(status=HANDED_OFF, retry_in=retry_in, wait=wait, ari_failures=ari_failures)


# --------------------------------------------------------------------------------- the originate task


def attempt_originate(
    *, attempt_id: UUID, ari_failures: int = 0, on_ended: OnEnded = None
) -> OriginateResult:
    """Place the call of a queued attempt, or say why not or when to try again.

    ``ari_failures``: retryable ARI failures so far (carried across retries; waiting for a CPS slot does
    not count). ``on_ended(tenant_id)`` runs after the commit when the attempt ended (a refusal, a
    failure), so that a new pass can use the freed slot.
    """
    pk = attempt_id
    # One read for the re-check and the originate (tenant, campaign, PBX, lead and contact).
    loaded = attempt_for_originate(attempt_id=pk)
    reason = attempt_recheck(attempt_id=pk, attempt=loaded)
    if reason == RECHECK_NOT_QUEUED:
        return OriginateResult(reason)  # a repeated run: the attempt already moved on
    if reason is not None:
        event, outcome = _RECHECK_INPUTS[reason]
        attempt_apply(
            attempt_id=pk, event=event, outcome=outcome, data={"recheck": reason}, on_ended=on_ended
        )
        return OriginateResult(reason)

    assert loaded is not None  # noqa: S101 - the re-check answers not_queued otherwise
    attempt = loaded
    pbx = attempt.pbx
    if pbx is None:
        return _fail(pk, "attempt has no PBX", on_ended)
    try:
        client = pbx_ari_client(pbx=pbx)
    except ImproperlyConfigured as exc:
        return _fail(pk, f"PBX configuration: {exc}", on_ended)
    if attempt.originate_sent_at is not None:
        return _settle(attempt, client, ari_failures, on_ended)

    if not pbx_health(pbx_ids=[pbx.pk]).usable(pbx.pk):
        # DESIGN.md §5 rule 9: its Stasis app is not listening or no media worker is up, so a callee who
        # answered would be dropped (A11) or hear silence. Nothing is sent; wait for them, uncounted.
        return OriginateResult.retry(PBX_UNAVAILABLE_RETRY_S, WAIT_PBX_UNAVAILABLE)

    wait = originate_cps_wait(attempt=attempt, pbx=pbx)
    if wait > 0:
        # No slot this second: come back when one frees up. Not an ARI failure, so not counted; the
        # attempt stays queued and nothing was dialed.
        return OriginateResult.retry(wait, WAIT_CPS)

    # The claim to send (see the module docstring): only one run ever sends for an attempt.
    sent_at = timezone.now()
    claimed = CallAttempt.objects.filter(
        pk=pk, state=AttemptState.QUEUED, originate_sent_at__isnull=True
    ).update(originate_sent_at=sent_at)
    if not claimed:
        attempt.refresh_from_db()
        if attempt.state != AttemptState.QUEUED:
            return OriginateResult(RECHECK_NOT_QUEUED)
        return _settle(attempt, client, ari_failures, on_ended)
    try:
        return _send(attempt, client, sent_at, on_ended)
    except AriRetryableError as exc:
        return _ari_retry(pk, exc, ari_failures, on_ended)


# --------------------------------------------------------------------------------- the dispatch task


def attempt_originate_claimed(*, attempt: CallAttempt, on_ended: OnEnded = None) -> OriginateResult:
    """Originate one attempt a dispatch pass has just claimed and committed, from the rows the pass read
    (no read of its own); anything but the plain case is handed off with nothing sent.

    The re-check right before the POST (DESIGN.md §5 rule 4) is cheaper here than in the task: milliseconds
    after the claim, in the same process, the calling window is evaluated at the current time from the rows
    the pass read, and everything that others may have changed since — the attempt's state, the tenant's and
    the campaign's status, the DNC list, the contact's consent when the campaign requires one — is re-read by
    the claim to send itself, one conditional UPDATE.
    When any of it says no (or the number does not parse, or the PBX has no CPS slot now), the attempt is
    handed off with nothing sent: :func:`attempt_originate` re-checks in full and ends it with the right
    outcome, waits, or (when someone else has sent) settles it.
    """
    pk = attempt.pk
    pbx = attempt.pbx
    now = timezone.now()
    window = callee_window(campaign=attempt.campaign, contact=attempt.lead.contact, tenant=attempt.tenant)
    try:
        e164 = normalize_phone_number(attempt.number, field="number")
    except InvalidInput:
        e164 = None
    if pbx is None or e164 is None or not window_open_for_originate(window, now):
        return OriginateResult.hand_off()
    try:
        client = pbx_ari_client(pbx=pbx)
    except ImproperlyConfigured:
        return OriginateResult.hand_off()
    wait = originate_cps_wait(attempt=attempt, pbx=pbx)
    if wait > 0:
        return OriginateResult.hand_off(wait, WAIT_CPS)
    sent_at = timezone.now()
    sendable = CallAttempt.objects.filter(
        pk=pk, state=AttemptState.QUEUED, originate_sent_at__isnull=True
    ).filter(
        Exists(Campaign.objects.filter(campaign_dialing_filter(now=sent_at), pk=OuterRef("campaign_id"))),
        ~Exists(DncEntry.objects.filter(tenant_id=OuterRef("tenant_id"), phone_number=e164)),
    )
    if attempt.campaign.requires_prior_consent:
        # The consent too is re-read by the claim to send (revoked since the claim: handed off, cancelled).
        sendable = sendable.filter(
            consent_exists_for_campaign(
                campaign=attempt.campaign, now=sent_at, contact_ref="lead__contact_id"
            )
        )
    claimed = sendable.update(originate_sent_at=sent_at)
    if not claimed:
        return OriginateResult.hand_off()
    try:
        return _send(attempt, client, sent_at, on_ended)
    except AriRetryableError as exc:
        countdown = _backoff_s(0)
        logger.warning("attempt %s: ARI failed (%s); retry in %.1f s", pk, exc, countdown)
        return OriginateResult.hand_off(countdown, WAIT_ARI_BACKOFF, ari_failures=1)


# ------------------------------------------------------------------------------------------ the steps


def originate_cps_wait(*, attempt: CallAttempt, pbx: Pbx) -> float:
    """Take a calls-per-second slot of the attempt's tenant and of its PBX; 0, or the seconds to wait."""
    wait = ratelimit.acquire_all(
        [
            (ratelimit.tenant_key(attempt.tenant_id), attempt.tenant.calls_per_second),
            (ratelimit.pbx_key(pbx.pk), pbx.calls_per_second),
        ]
    )
    metrics.observe_limiter_wait(wait)
    return wait


def _send(attempt: CallAttempt, client: AriClient, sent_at: datetime, on_ended: OnEnded) -> OriginateResult:
    """``POST /channels`` for an attempt whose send this run has claimed (``originate_sent_at = sent_at``),
    and record the answer. Raises AriRetryableError (after giving the claim back when the request certainly
    did not reach the PBX) for the caller to retry."""
    pk = attempt.pk
    campaign = attempt.campaign
    try:
        # The media worker reads it when the answered call's AudioSocket leg connects: it must be there
        # before the call can be answered, so right before the POST (both originate paths come here).
        brief_write(attempt=attempt, endpoint_for=client.config.endpoint_for)
    except RedisError as exc:
        # Dial anyway: without its brief the media worker apologises and hangs up, which loses less than
        # failing an attempt whose send is already claimed.
        logger.warning("attempt %s: call brief not written (%s); the agent will not be able to talk", pk, exc)
    variables = {
        "ATTEMPT_ID": str(pk),
        "CAMPAIGN_ID": str(campaign.pk),
        "TENANT_ID": str(attempt.tenant_id),
    }
    app_args = f"outbound,{pk}"
    if campaign.amd_enabled:
        # The Stasis app sends the answered call through the ai-amd dialplan context (deploy/asterisk):
        # AMD(${AI_AMD_ARGS}), then back into Stasis(${AI_STASIS_APP},amd,STATUS,CAUSE).
        app_args += ",amd"
        variables["AI_AMD_ARGS"] = amd_args(campaign.amd_settings)
        variables["AI_STASIS_APP"] = client.config.app
    try:
        result = client.originate(
            channel_id=str(pk),
            number=attempt.number,
            app_args=app_args,
            caller_id=campaign.caller_id,
            timeout_s=campaign.ring_timeout,
            variables=variables,
        )
    except AriTerminalError as exc:
        logger.warning("attempt %s: originate refused: %s", pk, exc)
        return _fail(pk, f"originate refused: {exc}", on_ended)
    except AriRetryableError as exc:
        if not exc.maybe_placed:
            # Certainly not placed: give the claim back so that the retry sends again.
            CallAttempt.objects.filter(pk=pk, originate_sent_at=sent_at).update(originate_sent_at=None)
        raise
    _accepted(pk, already=result.already, channel=result.channel)
    return OriginateResult(ALREADY if result.already else ORIGINATED)


def _settle(attempt: CallAttempt, client: AriClient, ari_failures: int, on_ended: OnEnded) -> OriginateResult:
    """An originate was already sent for this queued attempt and its answer never recorded: find out from
    the PBX instead of dialing again (see the module docstring)."""
    assert attempt.originate_sent_at is not None  # noqa: S101 - the caller checked
    age = (timezone.now() - attempt.originate_sent_at).total_seconds()
    if age < ORIGINATE_SETTLE_S:
        return OriginateResult.retry(ORIGINATE_SETTLE_S - age + 0.5, WAIT_SETTLING)
    try:
        channel = client.get_channel(str(attempt.pk))
    except AriTerminalError as exc:
        return _fail(attempt.pk, f"originate outcome unknown, and the PBX refused to tell: {exc}", on_ended)
    except AriRetryableError as exc:
        return _ari_retry(attempt.pk, exc, ari_failures, on_ended)
    if channel is not None:
        logger.info("attempt %s: the earlier originate was placed; not dialing again", attempt.pk)
        _accepted(attempt.pk, already=True, channel=channel, settled=True)
        return OriginateResult(ALREADY)
    logger.warning("attempt %s: an originate was sent but no channel exists; not dialing again", attempt.pk)
    return _fail(
        attempt.pk,
        "an originate was sent but its answer was lost, and the PBX has no such channel now "
        "(never placed, or already ended): not dialed again for this attempt",
        on_ended,
    )


def _ari_retry(pk: UUID, exc: AriRetryableError, ari_failures: int, on_ended: OnEnded) -> OriginateResult:
    """Retry after a retryable ARI failure with backoff, or fail the attempt when the budget is spent. The
    retry re-checks the attempt first (it may have been cancelled meanwhile)."""
    if ari_failures >= ORIGINATE_MAX_ARI_RETRIES:
        logger.warning("attempt %s: ARI failed %d times, giving up: %s", pk, ari_failures + 1, exc)
        return _fail(pk, f"originate failed after {ari_failures + 1} tries: {exc}", on_ended)
    countdown = _backoff_s(ari_failures)
    logger.warning("attempt %s: ARI failed (%s); retry in %.1f s", pk, exc, countdown)
    return OriginateResult.retry(countdown, WAIT_ARI_BACKOFF, ari_failures=ari_failures + 1)


def _backoff_s(failures: int) -> float:
    """Exponential backoff with "equal jitter": half the delay fixed, half random."""
    delay = min(ORIGINATE_BACKOFF_CAP_S, ORIGINATE_BACKOFF_BASE_S * 2**failures)
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not cryptography


def _accepted(pk: UUID, *, already: bool, channel: dict[str, Any], settled: bool = False) -> None:
    data: dict[str, Any] = {"already": already, "channel_state": channel.get("state")}
    if settled:
        data["settled"] = True
    attempt_apply(attempt_id=pk, event=AttemptInput.ORIGINATE_ACCEPTED, data=data)


def _fail(attempt_id: UUID, error: str, on_ended: OnEnded) -> OriginateResult:
    attempt_apply(
        attempt_id=attempt_id,
        event=AttemptInput.ORIGINATE_FAILED,
        outcome=AttemptOutcome.ERROR,
        error=error[:1000],
        on_ended=on_ended,
    )
    return OriginateResult(FAILED)


# -------------------------------------------------------------------------------------- stalled attempts


def _expect_key(attempt_id: UUID | str) -> str:
    return f"{EXPECT_KEY_PREFIX}:{attempt_id}"


def originate_expect(*, attempt_ids: Iterable[UUID | str], within_s: float = 0.0) -> None:
    """Record that an originate run for these attempts will start within ``within_s`` (plus the stall
    time): the stalled-attempt sweep leaves them alone until then."""
    ttl = max(1, int(within_s + settings.ATTEMPT_STALL_S + 1))
    pipe = get_redis().pipeline(transaction=False)
    for attempt_id in attempt_ids:
        pipe.set(_expect_key(attempt_id), b"1", ex=ttl)
    pipe.execute()


def attempts_resume_stalled(*, resume: Callable[[str], Any], now: datetime | None = None) -> list[str]:
    """Find the queued attempts whose originate run was lost (see the module docstring), record that a run
    is expected for each, and ``resume(attempt_id)`` them; returns their ids."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.ATTEMPT_STALL_S)
    candidates = attempts_queued_before(cutoff=cutoff, limit=STALLED_BATCH)
    if not candidates:
        return []
    pipe = get_redis().pipeline(transaction=False)
    for attempt_id in candidates:
        pipe.exists(_expect_key(attempt_id))
    expected = pipe.execute()
    stalled = [attempt_id for attempt_id, known in zip(candidates, expected, strict=True) if not known]
    if stalled:
        logger.warning("resuming %d stalled queued attempt(s): %s", len(stalled), ", ".join(stalled[:10]))
        originate_expect(attempt_ids=stalled)
        for attempt_id in stalled:
            resume(attempt_id)
    return stalled
