"""Celery tasks of the dialer: thin wrappers that load ids and call one service (DESIGN.md §4).

* :func:`dispatch_sweep` (beat, every second) enqueues one :func:`dispatch_tenant_task` per active tenant
  with a dialing campaign. It is the guarantee that no lead is lost (DESIGN.md §5 rule 3); every other
  trigger (a call ended: :func:`trigger_dispatch`) is only an optimisation.
* :func:`dispatch_tenant_task` runs one dispatch pass and, after its commit, enqueues one
  :func:`originate_attempt` per claimed attempt.
* :func:`originate_attempt` re-checks the attempt, waits for a calls-per-second slot of the tenant and of
  the PBX (:mod:`campaigns.ratelimit`), and sends ``POST /channels`` with the attempt id as channel id.

Every task is safe to run twice (``acks_late`` redelivery, a duplicate enqueue): a dispatch pass counts
durable state under the tenant lock; a second originate finds the attempt no longer ``queued`` (the
re-check answers ``not_queued``) or, if it races the first, gets the 409 path (``already=True``) and its
ORIGINATE_ACCEPTED is refused as a duplicate. Nothing dials a number twice for one attempt.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any
from uuid import UUID

from celery import Task, shared_task
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from campaigns import ratelimit
from campaigns.lifecycle import AttemptEvent, AttemptOutcome
from campaigns.models import CallAttempt, Campaign, Pbx
from campaigns.selectors import (
    RECHECK_CAMPAIGN_NOT_RUNNING,
    RECHECK_DNC,
    RECHECK_INVALID_NUMBER,
    RECHECK_NOT_QUEUED,
    RECHECK_OUTSIDE_WINDOW,
    attempt_recheck,
    campaign_dialing_filter,
)
from campaigns.services.dispatch import attempt_apply, dispatch_tenant
from campaigns.services.pbx import pbx_password
from telephony.ari import AriClient, AriRetryableError, AriTerminalError, PbxConfig
from tenants.models import Tenant

logger = logging.getLogger(__name__)

#: How many times a retryable ARI failure (PBX down, 5xx, timeout, stale 409) is retried before the
#: attempt is failed with outcome ``error``; the lead's own retry policy takes over from there.
ORIGINATE_MAX_ARI_RETRIES = 5
ORIGINATE_BACKOFF_BASE_S = 2.0
ORIGINATE_BACKOFF_CAP_S = 60.0

#: The sweep's per-tenant messages expire: if workers fall behind, stale passes are dropped instead of
#: piling up; the next sweep enqueues fresh ones, so nothing is lost.
DISPATCH_MESSAGE_EXPIRES_S = 10.0

# The re-check's answer → (event, outcome); see the campaigns.services.dispatch module docstring.
_RECHECK_EVENTS: dict[str, tuple[AttemptEvent, AttemptOutcome]] = {
    RECHECK_CAMPAIGN_NOT_RUNNING: (AttemptEvent.CANCELLED, AttemptOutcome.CANCELLED),
    RECHECK_OUTSIDE_WINDOW: (AttemptEvent.CANCELLED, AttemptOutcome.CANCELLED),
    RECHECK_DNC: (AttemptEvent.CANCELLED, AttemptOutcome.OPTED_OUT),
    RECHECK_INVALID_NUMBER: (AttemptEvent.CANCELLED, AttemptOutcome.INVALID_NUMBER),
}


# ------------------------------------------------------------------------------------------- dispatch


def trigger_dispatch(tenant_id: int) -> None:
    """Ask for a dispatch pass for the tenant now (e.g. a call ended and freed a slot).

    Pass it as ``attempt_apply(..., on_ended=trigger_dispatch)``: it then runs after the commit.
    """
    dispatch_tenant_task.delay(tenant_id)


def _enqueue_originates(attempt_ids: list[UUID]) -> None:
    # Called by dispatch_tenant after its transaction committed (transaction.on_commit).
    for attempt_id in attempt_ids:
        originate_attempt.delay(str(attempt_id))


@shared_task(name="campaigns.tasks.dispatch_tenant_task")
def dispatch_tenant_task(tenant_id: int) -> int:
    """One dispatch pass for the tenant; returns how many attempts it claimed."""
    return len(dispatch_tenant(tenant_id=tenant_id, on_commit=_enqueue_originates))


@shared_task(name="campaigns.tasks.dispatch_sweep")
def dispatch_sweep() -> int:
    """Enqueue a dispatch pass for every active tenant with a dialing campaign; returns how many.

    Always enqueued, never run inline: the passes of different tenants then run in parallel on all
    workers, and one slow tenant cannot delay the others or make the sweep overrun its 1 s period.
    """
    now = timezone.now()
    dialing = Campaign.objects.filter(campaign_dialing_filter(now=now)).values("tenant")
    tenant_ids = list(
        Tenant.objects.filter(status=Tenant.Status.ACTIVE, pk__in=dialing)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for tenant_id in tenant_ids:
        dispatch_tenant_task.apply_async((tenant_id,), expires=DISPATCH_MESSAGE_EXPIRES_S)
    return len(tenant_ids)


# ------------------------------------------------------------------------------------------ originate

_clients: dict[int, tuple[PbxConfig, AriClient]] = {}
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

    Cached per PBX id together with the whole configuration it was built from (URL, user, password,
    app, template): any change to the row (or to the password's environment variable) builds a new
    client and closes the old one. The Pbx model has no ``updated_at``, and comparing the effective
    configuration is stricter than a timestamp anyway.
    """
    config = _pbx_config(pbx)
    with _clients_lock:
        cached = _clients.get(pbx.pk)
        if cached is not None and cached[0] == config:
            return cached[1]
        client = AriClient(config)
        _clients[pbx.pk] = (config, client)
    if cached is not None:
        cached[1].close()
    return client


def _backoff_s(failures: int) -> float:
    """Exponential backoff with "equal jitter": half the delay fixed, half random."""
    delay = min(ORIGINATE_BACKOFF_CAP_S, ORIGINATE_BACKOFF_BASE_S * 2**failures)
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not cryptography


def _fail(attempt_id: UUID, error: str) -> str:
    attempt_apply(
        attempt_id=attempt_id,
        event=AttemptEvent.ORIGINATE_FAILED,
        outcome=AttemptOutcome.ERROR,
        error=error[:1000],
        on_ended=trigger_dispatch,
    )
    return "failed"


# max_retries=None: Celery's own counter would count CPS waits too (and its default of 3 would end the task
# with MaxRetriesExceededError, leaving the attempt queued); the ARI budget is ``ari_failures`` instead.
@shared_task(bind=True, name="campaigns.tasks.originate_attempt", max_retries=None)
def originate_attempt(self: Task[Any, Any], attempt_id: str, ari_failures: int = 0) -> str:
    """Place the call of a queued attempt; returns what happened (for logs and tests).

    ``ari_failures`` counts retryable ARI failures so far (carried across retries; waiting for a CPS slot
    does not count).
    """
    pk = UUID(attempt_id)
    reason = attempt_recheck(attempt_id=pk)
    if reason == RECHECK_NOT_QUEUED:
        return reason  # a repeated task: the attempt already moved on
    if reason is not None:
        event, outcome = _RECHECK_EVENTS[reason]
        attempt_apply(attempt_id=pk, event=event, outcome=outcome, data={"recheck": reason},
                      on_ended=trigger_dispatch)  # fmt: skip
        return reason

    attempt = CallAttempt.objects.select_related("tenant", "campaign", "pbx").get(pk=pk)
    pbx = attempt.pbx
    if pbx is None:
        return _fail(pk, "attempt has no PBX")

    wait = ratelimit.acquire_all(
        [
            (ratelimit.tenant_key(attempt.tenant_id), attempt.tenant.calls_per_second),
            (ratelimit.pbx_key(pbx.pk), pbx.calls_per_second),
        ]
    )
    if wait > 0:
        # No slot this second: come back when one frees up. Not an ARI failure, so not counted; the
        # attempt stays queued and nothing was dialed.
        raise self.retry(countdown=wait)

    try:
        client = ari_client_for(pbx)
    except ImproperlyConfigured as exc:
        return _fail(pk, f"PBX configuration: {exc}")
    campaign = attempt.campaign
    try:
        result = client.originate(
            channel_id=str(attempt.pk),
            number=attempt.number,
            app_args=f"outbound,{attempt.pk}",
            caller_id=campaign.caller_id,
            timeout_s=campaign.ring_timeout,
            variables={
                "ATTEMPT_ID": str(attempt.pk),
                "CAMPAIGN_ID": str(campaign.pk),
                "TENANT_ID": str(attempt.tenant_id),
            },
        )
    except AriTerminalError as exc:
        logger.warning("attempt %s: originate refused: %s", pk, exc)
        return _fail(pk, f"originate refused: {exc}")
    except AriRetryableError as exc:
        if ari_failures >= ORIGINATE_MAX_ARI_RETRIES:
            logger.warning("attempt %s: originate failed %d times, giving up: %s", pk, ari_failures + 1, exc)
            return _fail(pk, f"originate failed after {ari_failures + 1} tries: {exc}")
        countdown = _backoff_s(ari_failures)
        logger.warning("attempt %s: originate failed (%s); retry in %.1f s", pk, exc, countdown)
        # The retry re-checks the attempt first (it may have been cancelled meanwhile). exc is not passed:
        # called directly (tests) retry() would then raise it instead of Retry; it is logged above.
        raise self.retry(
            countdown=countdown,
            args=(attempt_id,),
            kwargs={"ari_failures": ari_failures + 1},
        ) from exc
    attempt_apply(
        attempt_id=pk,
        event=AttemptEvent.ORIGINATE_ACCEPTED,
        data={"already": result.already, "channel_state": result.channel.get("state")},
    )
    return "already" if result.already else "originated"
