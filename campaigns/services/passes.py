"""Requesting dispatch passes: coalesced per tenant, so a burst of triggers costs one pass.

Whoever requests a pass first sets a short-lived "pass pending" flag in Redis (``SET NX``), and a pass
clears it as its very first step (:func:`dispatch_pass_started`), before it locks and counts. A request
that finds the flag set sends nothing: a pass that has not started yet will count after the caller's
commit anyway. A burst of call ends of one tenant thus costs one pass, and a backlog never holds several
identical passes of one tenant. The flag lives as long as the message may
(:data:`DISPATCH_MESSAGE_EXPIRES_S`), so a lost or expired message blocks nobody for longer than that.

How a pass is sent is the caller's (the Celery tasks in ``campaigns.tasks``): :func:`dispatch_passes_request`
takes a ``send`` callable that gets a chunk of tenant ids.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.redis_client import get_redis

__all__ = [
    "DISPATCH_MESSAGE_EXPIRES_S",
    "PENDING_KEY_PREFIX",
    "TRIGGER_GROUP",
    "dispatch_pass_started",
    "dispatch_passes_request",
    "pending_key",
]

#: The sweep's per-tenant messages expire: if workers fall behind, stale passes are dropped instead of
#: piling up; the next sweep enqueues fresh ones, so nothing is lost.
DISPATCH_MESSAGE_EXPIRES_S = 10.0

#: Redis keys flagging a pending (enqueued, not yet started) dispatch pass of a tenant; see the module
#: docstring. They expire with the message they stand for.
PENDING_KEY_PREFIX = "orchestrator:dispatch-pending"

#: Tenants per message when a batch of call ends triggers their passes together
#: (``campaigns.tasks.trigger_dispatch_many``).
TRIGGER_GROUP = 8


def pending_key(tenant_id: int) -> str:
    return f"{PENDING_KEY_PREFIX}:{tenant_id}"


def _claim_pending(tenant_ids: list[int]) -> list[int]:
    """Flag a pending pass for each tenant that has none; returns the tenants flagged now (to send)."""
    if not tenant_ids:
        return []
    ttl_ms = int(DISPATCH_MESSAGE_EXPIRES_S * 1000)
    pipe = get_redis().pipeline(transaction=False)
    for tenant_id in tenant_ids:
        pipe.set(pending_key(tenant_id), b"1", nx=True, px=ttl_ms)
    return [tenant_id for tenant_id, fresh in zip(tenant_ids, pipe.execute(), strict=True) if fresh]


def dispatch_passes_request(
    *, tenant_ids: list[int], send: Callable[[list[int]], None], group: int = 1
) -> int:
    """Request a pass for each tenant without one pending: ``send(chunk)`` for ``group`` tenants at most per
    chunk (one message per tenant lets the passes run in parallel on every worker; a few per message save the
    per-message cost when many calls end together). Returns how many tenants got a pass.

    When ``send`` raises, the flags not yet used are given back (the next trigger or sweep tries again) and
    the error goes to the caller. (The flags' expiry covers a failure of this cleanup too.)
    """
    claimed = _claim_pending(list(dict.fromkeys(tenant_ids)))
    for start in range(0, len(claimed), group):
        try:
            send(claimed[start : start + group])
        except Exception:
            get_redis().delete(*(pending_key(tenant_id) for tenant_id in claimed[start:]))
            raise
    return len(claimed)


def dispatch_pass_started(*, tenant_id: int) -> None:
    """A pass of the tenant starts: from here on a new request sends a new pass, which then waits for this
    one's lock and counts after it. Call it first, before the pass locks and counts."""
    get_redis().delete(pending_key(tenant_id))
