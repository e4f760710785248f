"""Celery tasks of the dialer: thin wrappers that load ids and call one service (DESIGN.md §4).

* :func:`dispatch_sweep` (beat, every second) enqueues one :func:`dispatch_tenant_task` per active tenant
  that has something to dial: a dialing campaign with due leads and room under its cap, and room under the
  tenant's cap (``campaigns.selectors.tenant_ids_to_dispatch``, read from durable state on every sweep). It
  is the guarantee that no lead is lost (DESIGN.md §5 rule 3); every other trigger (a call ended:
  :func:`trigger_dispatch`) is only an optimisation. A tenant at its cap is skipped: the end of one of its
  calls triggers a pass, and if that trigger is lost the next sweep sees the free slot.
* Passes are coalesced per tenant: whoever enqueues a pass first sets a short-lived "pass pending" flag in
  Redis (``SET NX``, :func:`_claim_pending`), and a pass clears it as its very first step, before it locks
  and counts. A trigger or sweep that finds the flag set enqueues nothing: a pass that has not started yet
  will count after the caller's commit anyway. A burst of call ends of one tenant thus costs one pass, and
  a backlog never holds several identical passes of one tenant. The flag lives as long as the message may
  (:data:`DISPATCH_MESSAGE_EXPIRES_S`), so a lost or expired message blocks nobody for longer than that.
* :func:`dispatch_tenant_task` runs one dispatch pass and, after its commit, originates the attempts it
  claimed itself (:func:`originate_claimed`), one after the other: no message and no reads per call. Only
  the plain case is done there (window open, a CPS slot free, the send claimed, the POST answered); an
  attempt that needs anything else — a CPS wait, an ARI retry, a reason not to dial — is handed to
  :func:`originate_attempt` with nothing sent (:func:`_hand_off`).
* :func:`originate_attempt` (hand-offs, retries, resumed attempts) re-checks the attempt, waits for a
  calls-per-second slot of the tenant and of the PBX (:mod:`campaigns.ratelimit`), and sends
  ``POST /channels`` with the attempt id as channel id.
* Both originate paths write the call brief for the media worker (``campaigns.services.briefs``) right
  before the POST, from the rows already loaded.

* :func:`resume_stalled_attempts` (beat, every 10 s) gives a new originate task to a queued attempt whose
  task was lost: the worker was killed between the dispatch commit and the originate or the hand-off, or
  while holding the message (with ``acks_late`` and the Redis broker an unacknowledged message only comes
  back after the broker's visibility timeout, an hour by default). Each enqueue and each retry records in
  Redis until when a task for the attempt is expected (:func:`_expect_originate`); an attempt queued for
  longer than ``settings.ATTEMPT_STALL_S`` with no such record is stalled. (An attempt the dispatch task
  originates itself needs no record: it leaves ``queued`` within the same task, milliseconds after its
  commit.)

Every task is safe to run twice (``acks_late`` redelivery, a duplicate enqueue, the stalled-attempt sweep):

* a dispatch pass counts durable state under the tenant lock;
* a redelivered dispatch task runs a new pass: it originates only what that pass claims, never the
  attempts of the run that died (those are resumed, and settled if their send was claimed);
* an originate re-checks the attempt first (``not_queued`` once it moved on), and claims the right to send
  by setting ``originate_sent_at`` with a conditional UPDATE (``state = queued AND originate_sent_at IS
  NULL``) right before the POST. Only one task can win that; the others, and any later run that finds it
  set (the sender died, or its answer was lost), never send again: they wait until the first request has
  surely settled (:data:`ORIGINATE_SETTLE_S`) and then ask the PBX. A live channel with the attempt's id
  means the call was placed (ORIGINATE_ACCEPTED); no channel means it was never placed or has already
  ended without the Stasis app telling us, and the attempt ends with outcome ``error`` — the lead's retry
  policy takes over with a new attempt, and the number is not dialed twice for this one.
* A failure that certainly did not reach the PBX (connection refused, an error status) clears the claim,
  so the retry sends again; one that may have (a timeout after sending) keeps it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
from celery import Task, shared_task
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Exists, OuterRef
from django.utils import timezone
from redis.exceptions import RedisError

from campaigns import ratelimit
from campaigns.lifecycle import AttemptInput, AttemptOutcome, AttemptState
from campaigns.models import CallAttempt, Campaign, DncEntry, Pbx
from campaigns.phone import normalize_phone_number
from campaigns.selectors import (
    RECHECK_CAMPAIGN_NOT_RUNNING,
    RECHECK_DNC,
    RECHECK_INVALID_NUMBER,
    RECHECK_NOT_QUEUED,
    RECHECK_OUTSIDE_WINDOW,
    attempt_for_originate,
    attempt_recheck,
    callee_window,
    campaign_dialing_filter,
    pbx_health,
    tenant_ids_to_dispatch,
    window_open_for_originate,
)
from campaigns.services import agent_actions
from campaigns.services.briefs import brief_write
from campaigns.services.call_events import attempt_apply, attempts_end_overdue
from campaigns.services.dispatch import dispatch_tenant
from campaigns.services.imports import contact_import_run
from campaigns.services.pbx import pbx_password, pbx_target_check
from campaigns.sms import SmsError
from orchestrator.errors import InvalidInput
from orchestrator.redis_client import get_redis
from telephony.ari import AriClient, AriRetryableError, AriTerminalError, PbxConfig
from tenants.urlpolicy import PolicyTransport

logger = logging.getLogger(__name__)

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

#: Redis keys recording until when an originate task is expected for an attempt (see the module docstring).
EXPECT_KEY_PREFIX = "orchestrator:originate-expected"

#: At most this many stalled attempts are resumed per sweep.
STALLED_BATCH = 1000

#: The sweep's per-tenant messages expire: if workers fall behind, stale passes are dropped instead of
#: piling up; the next sweep enqueues fresh ones, so nothing is lost.
DISPATCH_MESSAGE_EXPIRES_S = 10.0

#: Redis keys flagging a pending (enqueued, not yet started) dispatch pass of a tenant; see the module
#: docstring. They expire with the message they stand for.
PENDING_KEY_PREFIX = "orchestrator:dispatch-pending"

# The re-check's answer → (event, outcome); see the campaigns.services.call_events module docstring.
_RECHECK_EVENTS: dict[str, tuple[AttemptInput, AttemptOutcome]] = {
    RECHECK_CAMPAIGN_NOT_RUNNING: (AttemptInput.CANCELLED, AttemptOutcome.CANCELLED),
    RECHECK_OUTSIDE_WINDOW: (AttemptInput.CANCELLED, AttemptOutcome.CANCELLED),
    RECHECK_DNC: (AttemptInput.CANCELLED, AttemptOutcome.OPTED_OUT),
    RECHECK_INVALID_NUMBER: (AttemptInput.CANCELLED, AttemptOutcome.INVALID_NUMBER),
}


# ------------------------------------------------------------------------------------------- dispatch


def _pending_key(tenant_id: int) -> str:
    return f"{PENDING_KEY_PREFIX}:{tenant_id}"


def _claim_pending(tenant_ids: list[int]) -> list[int]:
    """Flag a pending pass for each tenant that has none; returns the tenants flagged now (to enqueue)."""
    if not tenant_ids:
        return []
    ttl_ms = int(DISPATCH_MESSAGE_EXPIRES_S * 1000)
    pipe = get_redis().pipeline(transaction=False)
    for tenant_id in tenant_ids:
        pipe.set(_pending_key(tenant_id), b"1", nx=True, px=ttl_ms)
    return [tenant_id for tenant_id, fresh in zip(tenant_ids, pipe.execute(), strict=True) if fresh]


def _enqueue_passes(tenant_ids: list[int], *, group: int = 1) -> int:
    """Enqueue a pass for each tenant without one pending; ``group`` tenants per message at most (one
    message per tenant lets the passes run in parallel on every worker; a few per message save the
    per-message cost when many calls end together)."""
    claimed = _claim_pending(list(dict.fromkeys(tenant_ids)))
    for start in range(0, len(claimed), group):
        chunk = claimed[start : start + group]
        try:
            if len(chunk) == 1:
                dispatch_tenant_task.apply_async((chunk[0],), expires=DISPATCH_MESSAGE_EXPIRES_S)
            else:
                dispatch_tenants_task.apply_async((chunk,), expires=DISPATCH_MESSAGE_EXPIRES_S)
        except Exception:
            # Not enqueued: give the flags back so the next trigger or sweep tries again, then let the
            # caller see the error. (The flags' expiry covers a failure of this cleanup too.)
            get_redis().delete(*(_pending_key(tenant_id) for tenant_id in claimed[start:]))
            raise
    return len(claimed)


#: Tenants per message when a batch of call ends triggers their passes (see trigger_dispatch_many).
TRIGGER_GROUP = 8


def trigger_dispatch(tenant_id: int) -> None:
    """Ask for a dispatch pass for the tenant now (e.g. a call ended and freed a slot).

    Pass it as ``attempt_apply(..., on_ended=trigger_dispatch)``: it then runs after the commit. Nothing is
    enqueued when a pass of the tenant is already pending (see the module docstring): it starts after this
    commit, so it sees the freed slot.
    """
    _enqueue_passes([tenant_id])


def trigger_dispatch_many(tenant_ids: list[int]) -> None:
    """:func:`trigger_dispatch` for the tenants of several calls that ended in one commit (the Stasis sink
    applies waiting events together): one Redis round trip, and up to :data:`TRIGGER_GROUP` passes per
    message."""
    _enqueue_passes(tenant_ids, group=TRIGGER_GROUP)


def _expect_key(attempt_id: UUID | str) -> str:
    return f"{EXPECT_KEY_PREFIX}:{attempt_id}"


def _expect_originate(attempt_ids: Iterable[UUID | str], *, within_s: float = 0.0) -> None:
    """Record that an originate task for these attempts will run within ``within_s`` (plus the stall time)."""
    ttl = max(1, int(within_s + settings.ATTEMPT_STALL_S + 1))
    pipe = get_redis().pipeline(transaction=False)
    for attempt_id in attempt_ids:
        pipe.set(_expect_key(attempt_id), b"1", ex=ttl)
    pipe.execute()


def _hand_off(attempt_id: UUID, *, countdown: float = 0.0, ari_failures: int = 0) -> None:
    """Give a claimed attempt that the dispatch task did not originate itself to :func:`originate_attempt`
    (``countdown`` s from now), recording that its task is expected."""
    _expect_originate([attempt_id], within_s=countdown)
    options: dict[str, Any] = {"countdown": countdown} if countdown > 0 else {}
    originate_attempt.apply_async(
        (str(attempt_id),), {"ari_failures": ari_failures} if ari_failures else None, **options
    )


@shared_task(name="campaigns.tasks.end_overdue_attempts", ignore_result=True)
def end_overdue_attempts() -> int:
    """End placed attempts whose call never reported an end within its hard maximum; returns how many."""
    return len(attempts_end_overdue(on_ended=trigger_dispatch))


@shared_task(name="campaigns.tasks.resume_stalled_attempts")
def resume_stalled_attempts() -> int:
    """Give a new originate task to every queued attempt whose task was lost; returns how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.ATTEMPT_STALL_S)
    candidates = [
        str(pk)
        for pk in CallAttempt.objects.filter(state=AttemptState.QUEUED, queued_at__lte=cutoff)
        .order_by("queued_at")
        .values_list("pk", flat=True)[:STALLED_BATCH]
    ]
    if not candidates:
        return 0
    pipe = get_redis().pipeline(transaction=False)
    for attempt_id in candidates:
        pipe.exists(_expect_key(attempt_id))
    expected = pipe.execute()
    stalled = [attempt_id for attempt_id, known in zip(candidates, expected, strict=True) if not known]
    if stalled:
        logger.warning("resuming %d stalled queued attempt(s): %s", len(stalled), ", ".join(stalled[:10]))
        _expect_originate(stalled)
        for attempt_id in stalled:
            originate_attempt.delay(attempt_id)
    return len(stalled)


# Results are not read by anyone (the return values are for logs and tests): not storing them saves a
# Redis write per task on the hot path.
@shared_task(name="campaigns.tasks.dispatch_tenant_task", ignore_result=True)
def dispatch_tenant_task(tenant_id: int) -> int:
    """One dispatch pass for the tenant, then the originates of what it claimed; returns how many attempts
    it claimed."""
    # First, before the pass locks and counts: from here on a new trigger enqueues a new pass (see the
    # module docstring), which then waits for this one's lock and counts after it.
    get_redis().delete(_pending_key(tenant_id))
    return len(dispatch_tenant(tenant_id=tenant_id, on_commit_attempts=originate_claimed))


@shared_task(name="campaigns.tasks.dispatch_tenants_task", ignore_result=True)
def dispatch_tenants_task(tenant_ids: list[int]) -> int:
    """:func:`dispatch_tenant_task` for several tenants, one after another; returns how many attempts the
    passes claimed. A pass that fails is logged and the others still run (the sweep retries it)."""
    claimed = 0
    for tenant_id in tenant_ids:
        try:
            claimed += dispatch_tenant_task.run(tenant_id)
        except Exception:  # one tenant's failure must not starve the others; the sweep covers it
            logger.exception("dispatch pass of tenant %s failed", tenant_id)
    return claimed


@shared_task(name="campaigns.tasks.dispatch_sweep", ignore_result=True)
def dispatch_sweep() -> int:
    """Enqueue a dispatch pass for every active tenant with something to dial now and no pass pending;
    returns how many were enqueued.

    Always enqueued, never run inline: the passes of different tenants then run in parallel on all
    workers, and one slow tenant cannot delay the others or make the sweep overrun its 1 s period.
    """
    return _enqueue_passes(tenant_ids_to_dispatch(now=timezone.now()))


# ------------------------------------------------------------------------------------------ originate

# One client per distinct configuration, shared by every PBX row that has it (e.g. one Asterisk serving many
# tenants, each with a row of its own): one connection pool per Asterisk, not one per row.
_clients: dict[PbxConfig, AriClient] = {}
_client_config_of_pbx: dict[int, PbxConfig] = {}
_clients_lock = threading.Lock()


def _pbx_config(pbx: Pbx) -> PbxConfig:
    return PbxConfig(
        base_url=pbx.ari_url,
        user=pbx.ari_user,
        password=pbx_password(pbx=pbx),
        app=pbx.app_name,
        endpoint_template=pbx.endpoint_template,
    )


def ari_client_for(pbx: Pbx) -> AriClient:
    """This process's pooled client for the PBX.

    Cached by the whole configuration it is built from (URL, user, password, app, template), so rows that
    reach the same Asterisk the same way share one client, and any change to a row (or to the password's
    environment variable) gives that row a new client; the old one is closed once no row uses it. The Pbx
    model has no ``updated_at``, and comparing the effective configuration is stricter than a timestamp
    anyway.

    A tenant's own PBX (its URL is tenant input) is checked against the URL policy here, at use time, and
    its client connects only to addresses the policy allows, checked again on every request
    (``tenants.urlpolicy.PolicyTransport``): ``ImproperlyConfigured`` when its URL is refused now.
    """
    policy = pbx_target_check(pbx=pbx)
    config = _pbx_config(pbx)
    stale: AriClient | None = None
    with _clients_lock:
        previous = _client_config_of_pbx.get(pbx.pk)
        _client_config_of_pbx[pbx.pk] = config
        client = _clients.get(config)
        if client is None:
            transport = None
            if policy is not None:
                limits = httpx.Limits(
                    max_connections=config.max_connections, max_keepalive_connections=config.max_connections
                )
                transport = PolicyTransport(policy, limits=limits)
            client = _clients[config] = AriClient(config, transport=transport)
        if previous is not None and previous != config and previous not in _client_config_of_pbx.values():
            stale = _clients.pop(previous, None)
    if stale is not None:
        stale.close()
    return client


def _backoff_s(failures: int) -> float:
    """Exponential backoff with "equal jitter": half the delay fixed, half random."""
    delay = min(ORIGINATE_BACKOFF_CAP_S, ORIGINATE_BACKOFF_BASE_S * 2**failures)
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not cryptography


def _fail(attempt_id: UUID, error: str) -> str:
    attempt_apply(
        attempt_id=attempt_id,
        event=AttemptInput.ORIGINATE_FAILED,
        outcome=AttemptOutcome.ERROR,
        error=error[:1000],
        on_ended=trigger_dispatch,
    )
    return "failed"


# max_retries=None: Celery's own counter would count CPS waits too (and its default of 3 would end the task
# with MaxRetriesExceededError, leaving the attempt queued); the ARI budget is ``ari_failures`` instead.
@shared_task(bind=True, name="campaigns.tasks.originate_attempt", max_retries=None, ignore_result=True)
def originate_attempt(self: Task[Any, Any], attempt_id: str, ari_failures: int = 0) -> str:
    """Place the call of a queued attempt; returns what happened (for logs and tests).

    ``ari_failures`` counts retryable ARI failures so far (carried across retries; waiting for a CPS slot
    does not count).
    """
    pk = UUID(attempt_id)
    # One read for the re-check and the originate (tenant, campaign, PBX, lead and contact).
    loaded = attempt_for_originate(attempt_id=pk)
    reason = attempt_recheck(attempt_id=pk, attempt=loaded)
    if reason == RECHECK_NOT_QUEUED:
        return reason  # a repeated task: the attempt already moved on
    if reason is not None:
        event, outcome = _RECHECK_EVENTS[reason]
        attempt_apply(attempt_id=pk, event=event, outcome=outcome, data={"recheck": reason},
                      on_ended=trigger_dispatch)  # fmt: skip
        return reason

    assert loaded is not None  # noqa: S101 - the re-check answers not_queued otherwise
    attempt = loaded
    pbx = attempt.pbx
    if pbx is None:
        return _fail(pk, "attempt has no PBX")
    try:
        client = ari_client_for(pbx)
    except ImproperlyConfigured as exc:
        return _fail(pk, f"PBX configuration: {exc}")
    if attempt.originate_sent_at is not None:
        return _settle(self, attempt, client, ari_failures)

    if not pbx_health(pbx_ids=[pbx.pk]).usable(pbx.pk):
        # DESIGN.md §5 rule 9: its Stasis app is not listening or no media worker is up, so a callee who
        # answered would be dropped (A11) or hear silence. Nothing is sent; wait for them, uncounted.
        _expect_originate([pk], within_s=PBX_UNAVAILABLE_RETRY_S)
        raise self.retry(countdown=PBX_UNAVAILABLE_RETRY_S)

    wait = _cps_wait(attempt, pbx)
    if wait > 0:
        # No slot this second: come back when one frees up. Not an ARI failure, so not counted; the
        # attempt stays queued and nothing was dialed.
        _expect_originate([pk], within_s=wait)
        raise self.retry(countdown=wait)

    # The claim to send (see the module docstring): only one run of this task ever sends for an attempt.
    sent_at = timezone.now()
    claimed = CallAttempt.objects.filter(
        pk=pk, state=AttemptState.QUEUED, originate_sent_at__isnull=True
    ).update(originate_sent_at=sent_at)
    if not claimed:
        attempt.refresh_from_db()
        if attempt.state != AttemptState.QUEUED:
            return RECHECK_NOT_QUEUED
        return _settle(self, attempt, client, ari_failures)
    try:
        return _send(attempt, client, sent_at)
    except AriRetryableError as exc:
        return _retry_ari(self, attempt_id, exc, ari_failures)


def _send(attempt: CallAttempt, client: AriClient, sent_at: datetime) -> str:
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
    try:
        result = client.originate(
            channel_id=str(pk),
            number=attempt.number,
            app_args=f"outbound,{pk}",
            caller_id=campaign.caller_id,
            timeout_s=campaign.ring_timeout,
            variables={
                "ATTEMPT_ID": str(pk),
                "CAMPAIGN_ID": str(campaign.pk),
                "TENANT_ID": str(attempt.tenant_id),
            },
        )
    except AriTerminalError as exc:
        logger.warning("attempt %s: originate refused: %s", pk, exc)
        return _fail(pk, f"originate refused: {exc}")
    except AriRetryableError as exc:
        if not exc.maybe_placed:
            # Certainly not placed: give the claim back so that the retry sends again.
            CallAttempt.objects.filter(pk=pk, originate_sent_at=sent_at).update(originate_sent_at=None)
        raise
    _accepted(pk, already=result.already, channel=result.channel)
    return "already" if result.already else "originated"


# ---------------------------------------------------------------------------------- originate, inline


def _cps_wait(attempt: CallAttempt, pbx: Pbx) -> float:
    """Take a calls-per-second slot of the attempt's tenant and of its PBX; 0, or the seconds to wait."""
    return ratelimit.acquire_all(
        [
            (ratelimit.tenant_key(attempt.tenant_id), attempt.tenant.calls_per_second),
            (ratelimit.pbx_key(pbx.pk), pbx.calls_per_second),
        ]
    )


def originate_claimed(attempts: list[CallAttempt]) -> None:
    """Originate the attempts a dispatch pass has just claimed and committed, in the dispatch task itself
    (one after the other: a pass claims a few), saving a message and the reads of a task per call.

    Only the plain case is handled here (see :func:`_originate_inline`); an attempt that needs a wait, a
    retry or a reason not to dial goes to :func:`originate_attempt`, which does the full re-check. If this
    process dies half-way, the attempts not yet handled are queued with no task expected and
    :func:`resume_stalled_attempts` gives them one; one whose send was already claimed is then settled by
    asking the PBX, never sent again (see the module docstring).
    """
    for attempt in attempts:
        try:
            _originate_inline(attempt)
        except Exception:
            # Whatever went wrong (a database or broker error), the other attempts of the pass still go out;
            # this one goes to the originate task, which re-checks and settles it.
            logger.exception("attempt %s: originate in the dispatch task failed; handing it over", attempt.pk)
            try:
                _hand_off(attempt.pk)
            except Exception:
                logger.exception("attempt %s: hand-over failed; the stalled sweep resumes it", attempt.pk)


def _originate_inline(attempt: CallAttempt) -> str:
    """Originate one freshly claimed attempt; returns what happened (for logs and tests).

    The re-check right before the POST (DESIGN.md §5 rule 4) is cheaper here than in the task: milliseconds
    after the claim, in the same process, the calling window is evaluated at the current time from the rows
    the pass read, and everything that others may have changed since — the attempt's state, the tenant's and
    the campaign's status, the DNC list — is re-read by the claim to send itself, one conditional UPDATE.
    When any of it says no (or the number does not parse, or the PBX has no CPS slot now), the attempt goes
    to :func:`originate_attempt` with nothing sent, which re-checks in full and ends it with the right
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
        _hand_off(pk)
        return "handed_off"
    try:
        client = ari_client_for(pbx)
    except ImproperlyConfigured:
        _hand_off(pk)
        return "handed_off"
    wait = _cps_wait(attempt, pbx)
    if wait > 0:
        _hand_off(pk, countdown=wait)
        return "handed_off"
    sent_at = timezone.now()
    claimed = (
        CallAttempt.objects.filter(pk=pk, state=AttemptState.QUEUED, originate_sent_at__isnull=True)
        .filter(
            Exists(Campaign.objects.filter(campaign_dialing_filter(now=sent_at), pk=OuterRef("campaign_id"))),
            ~Exists(DncEntry.objects.filter(tenant_id=OuterRef("tenant_id"), phone_number=e164)),
        )
        .update(originate_sent_at=sent_at)
    )
    if not claimed:
        _hand_off(pk)
        return "handed_off"
    try:
        return _send(attempt, client, sent_at)
    except AriRetryableError as exc:
        countdown = _backoff_s(0)
        logger.warning("attempt %s: ARI failed (%s); retry in %.1f s", pk, exc, countdown)
        _hand_off(pk, countdown=countdown, ari_failures=1)
        return "handed_off"


def _accepted(pk: UUID, *, already: bool, channel: dict[str, Any], settled: bool = False) -> None:
    data: dict[str, Any] = {"already": already, "channel_state": channel.get("state")}
    if settled:
        data["settled"] = True
    attempt_apply(attempt_id=pk, event=AttemptInput.ORIGINATE_ACCEPTED, data=data)


def _retry_ari(self: Task[Any, Any], attempt_id: str, exc: AriRetryableError, ari_failures: int) -> str:
    """Retry after a retryable ARI failure with backoff, or fail the attempt when the budget is spent."""
    pk = UUID(attempt_id)
    if ari_failures >= ORIGINATE_MAX_ARI_RETRIES:
        logger.warning("attempt %s: ARI failed %d times, giving up: %s", pk, ari_failures + 1, exc)
        return _fail(pk, f"originate failed after {ari_failures + 1} tries: {exc}")
    countdown = _backoff_s(ari_failures)
    logger.warning("attempt %s: ARI failed (%s); retry in %.1f s", pk, exc, countdown)
    _expect_originate([pk], within_s=countdown)
    # The retry re-checks the attempt first (it may have been cancelled meanwhile). exc is not passed:
    # called directly (tests) retry() would then raise it instead of Retry; it is logged above.
    raise self.retry(
        countdown=countdown,
        args=(attempt_id,),
        kwargs={"ari_failures": ari_failures + 1},
    ) from exc


def _settle(self: Task[Any, Any], attempt: CallAttempt, client: AriClient, ari_failures: int) -> str:
    """An originate was already sent for this queued attempt and its answer never recorded: find out from
    the PBX instead of dialing again (see the module docstring)."""
    assert attempt.originate_sent_at is not None  # noqa: S101 - the caller checked
    age = (timezone.now() - attempt.originate_sent_at).total_seconds()
    if age < ORIGINATE_SETTLE_S:
        wait = ORIGINATE_SETTLE_S - age + 0.5
        _expect_originate([attempt.pk], within_s=wait)
        raise self.retry(countdown=wait)
    try:
        channel = client.get_channel(str(attempt.pk))
    except AriTerminalError as exc:
        return _fail(attempt.pk, f"originate outcome unknown, and the PBX refused to tell: {exc}")
    except AriRetryableError as exc:
        return _retry_ari(self, str(attempt.pk), exc, ari_failures)
    if channel is not None:
        logger.info("attempt %s: the earlier originate was placed; not dialing again", attempt.pk)
        _accepted(attempt.pk, already=True, channel=channel, settled=True)
        return "already"
    logger.warning("attempt %s: an originate was sent but no channel exists; not dialing again", attempt.pk)
    return _fail(
        attempt.pk,
        "an originate was sent but its answer was lost, and the PBX has no such channel now "
        "(never placed, or already ended): not dialed again for this attempt",
    )


# ----------------------------------------------------------------------------------- the media worker's
#
# What the AI agent did during a call, sent by the media worker by name (it never imports Django):
# ``send_task("media.…", kwargs={...})`` (the issue 4 contract, §4). Each task checks that the call id is an
# attempt of the tenant it names (otherwise the message is logged and dropped), calls one service of
# campaigns.services.agent_actions, and is safe to run twice. Bad arguments are logged and dropped: a
# retry would not fix them. Extra keyword arguments (a newer media worker) are ignored.

MEDIA_DONE = "done"
MEDIA_UNCHANGED = "unchanged"
MEDIA_DROPPED = "dropped"
MEDIA_INVALID = "invalid"

#: Retries of an SMS whose backend failed transiently, and the pause between them.
SMS_MAX_RETRIES = 5
SMS_RETRY_S = 30.0


def _media_action(task: str, call_id: object, tenant_id: object, action: Callable[[UUID, int], bool]) -> str:
    """Run ``action(attempt_id, tenant_id)`` for a media task; what happened (for logs and tests)."""
    try:
        attempt_id = UUID(str(call_id))
        tenant = int(str(tenant_id))
    except ValueError:
        logger.warning("%s: call %r of tenant %r is not an attempt; dropped", task, call_id, tenant_id)
        return MEDIA_DROPPED
    try:
        changed = action(attempt_id, tenant)
    except CallAttempt.DoesNotExist:
        logger.warning("%s: no attempt %s of tenant %s; dropped", task, attempt_id, tenant)
        return MEDIA_DROPPED
    except InvalidInput as exc:
        logger.warning("%s: attempt %s: %s; dropped", task, attempt_id, exc)
        return MEDIA_INVALID
    return MEDIA_DONE if changed else MEDIA_UNCHANGED


@shared_task(name="media.call_report", ignore_result=True)
def media_call_report(
    call_id: str,
    tenant_id: int,
    transcript: list[Any],
    metrics: dict[str, Any],
    end_reason: str = "",
    errors: list[str] | None = None,
    **_extra: Any,
) -> str:
    """The call's transcript and media metrics (and the media worker's errors), saved on the attempt."""
    return _media_action(
        "media.call_report",
        call_id,
        tenant_id,
        lambda pk, tenant: agent_actions.attempt_record_report(
            attempt_id=pk,
            tenant_id=tenant,
            transcript=transcript,
            metrics=metrics,
            end_reason=end_reason,
            errors=errors,
        ),
    )


@shared_task(name="media.schedule_callback", ignore_result=True)
def media_schedule_callback(call_id: str, tenant_id: int, at: str, note: str = "", **_extra: Any) -> str:
    """The callee asked to be called back at ``at``: the lead is due then once the call ended."""
    return _media_action(
        "media.schedule_callback",
        call_id,
        tenant_id,
        lambda pk, tenant: agent_actions.attempt_schedule_callback(
            attempt_id=pk, tenant_id=tenant, at=at, note=note
        ),
    )


@shared_task(name="media.set_disposition", ignore_result=True)
def media_set_disposition(
    call_id: str, tenant_id: int, disposition: str, note: str = "", **_extra: Any
) -> str:
    """The agent's conclusion about the call (``do_not_call`` also puts the number on the DNC list)."""
    return _media_action(
        "media.set_disposition",
        call_id,
        tenant_id,
        lambda pk, tenant: agent_actions.attempt_set_disposition(
            attempt_id=pk, tenant_id=tenant, disposition=disposition, note=note
        ),
    )


@shared_task(name="media.add_to_dnc", ignore_result=True)
def media_add_to_dnc(call_id: str, tenant_id: int, note: str = "", **_extra: Any) -> str:
    """ "Stop calling me": the number goes on the tenant's DNC list and the lead is done, at once."""
    return _media_action(
        "media.add_to_dnc",
        call_id,
        tenant_id,
        lambda pk, tenant: agent_actions.attempt_add_to_dnc(attempt_id=pk, tenant_id=tenant, note=note),
    )


@shared_task(bind=True, name="media.send_sms", ignore_result=True, max_retries=SMS_MAX_RETRIES)
def media_send_sms(
    self: Task[Any, Any], call_id: str, tenant_id: int, to: str, text: str, **_extra: Any
) -> str:
    """An SMS the agent sends during the call, through ``campaigns.sms`` (recorded on the attempt)."""
    try:
        return _media_action(
            "media.send_sms",
            call_id,
            tenant_id,
            lambda pk, tenant: agent_actions.attempt_send_sms(
                attempt_id=pk, tenant_id=tenant, to=to, text=text
            ),
        )
    except SmsError as exc:
        if not exc.retryable:
            logger.warning("media.send_sms: call %s: not sent (%s); dropped", call_id, exc)
            return MEDIA_INVALID
        logger.warning("media.send_sms: call %s: not sent (%s); retry in %.0f s", call_id, exc, SMS_RETRY_S)
        raise self.retry(countdown=SMS_RETRY_S) from exc


@shared_task(name="campaigns.tasks.run_contact_import", ignore_result=True)
def run_contact_import(import_id: int) -> None:
    """Run a queued CSV import, or resume one whose worker died; an ended one is left as it is."""
    contact_import_run(import_id=import_id)
