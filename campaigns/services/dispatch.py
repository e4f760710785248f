"""The dispatcher: claiming due leads into call attempts, under the caps.

Why the caps hold (DESIGN.md §5 rule 1)
---------------------------------------
The free capacity of a tenant is computed from durable truth only: the ``CallAttempt`` rows in a live state
(:data:`campaigns.lifecycle.LIVE_STATES`). No counter is kept anywhere, so nothing can drift: a slot is
taken by inserting a ``queued`` attempt and given back by the transition to ``ended``.

A dispatch pass (:func:`dispatch_tenant`) is ONE short transaction that:

1. locks the tenant row (``SELECT … FOR NO KEY UPDATE``). Two passes for the same tenant — a periodic
   sweep, an on-end trigger, a second worker — therefore run one after the other: the second one blocks
   here until the first commits, and then (READ COMMITTED: every statement sees what was committed before
   it started) counts the first one's attempts. The count and the inserts that follow are atomic with
   respect to every other pass; there is no check-then-act window. ``NO KEY`` keeps the lock from blocking
   unrelated inserts that merely reference the tenant (foreign-key checks take ``KEY SHARE``).
2. counts live attempts per tenant, campaign and PBX, and derives the free capacity
   ``min(tenant cap − tenant live − inbound reserve, Σ PBX free channels)`` and per campaign
   ``campaign cap − campaign live``. A concurrent *end* of a call can only lower the true count, so a stale
   read errs on the safe side (fewer calls, never more).
3. claims due leads with ``SELECT … FOR NO KEY UPDATE SKIP LOCKED OF lead``: a lead locked by anyone else
   (an event being applied to it, an admin edit) is skipped, not waited for, and re-checked on its newest
   version (``status = waiting AND next_due_at <= now``), so it cannot be claimed twice. Only the lead rows
   are locked (``of=("self",)``), not the joined contact or campaign rows.
4. inserts the attempts at the end of the pass, in one statement (the partial unique index
   ``attempt_one_live_per_lead`` is the database's last word on "one live attempt per lead"), and
   registers the originates with ``transaction.on_commit``, so nobody sees an attempt id that is not
   committed, and a rolled-back pass originates nothing.

**Lock order** is fixed: tenant, then leads (dispatch); attempt, then its lead
(:func:`campaigns.services.call_events.attempt_apply`).
Dispatch takes leads with ``SKIP LOCKED`` and never waits for one, and ``attempt_apply`` never takes the
tenant lock, so no cycle (deadlock) is possible. ``attempt_apply`` does not need the tenant lock: ending a
call only frees capacity.

Rule 3 (a lead is always in exactly one of waiting-with-due-time / in an attempt / done / suppressed) holds
because every change of a lead's status goes through the lead's table (:mod:`campaigns.lead_lifecycle`) and
happens in the same transaction as the attempt change that causes it: claim (lead → in_attempt + attempt
inserted) and end (attempt → ended + lead → waiting/done).

Fairness
--------
Running campaigns are served by priority (higher first). Campaigns of the same priority are served
round-robin, one lead per campaign per round (each campaign's leads oldest-due first); a round starts with
the campaign that has the fewest live calls, so across passes the one that just got a call goes last.

Applying call events to attempts (and finishing their leads) is in :mod:`campaigns.services.call_events`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from campaigns.lead_lifecycle import LeadInput
from campaigns.lifecycle import (
    LIVE_STATES,
    AttemptState,
)
from campaigns.models import AttemptEvent, CallAttempt, Campaign, DncEntry, Lead, Pbx
from campaigns.selectors import (
    NO_OPENING_RETRY,
    WAIT_OUTSIDE_WINDOW,
    callee_window,
    campaign_abandonment_cached,
    campaign_dialing_filter,
    consent_exists_for_campaign,
    live_attempts,
    pbx_health,
    pbx_list_with_free_channels,
    tenant_live_calls_elsewhere,
)
from campaigns.services.leads import lead_move, leads_move
from campaigns.transfer_selectors import campaign_transfer_links_prefetch
from orchestrator.live import live_notify
from tenants.models import Tenant

logger = logging.getLogger(__name__)

__all__ = ["DONE_REASON_DNC", "SCAN_LIMIT", "dispatch_tenant"]

DONE_REASON_DNC = "dnc"

#: At most this many due leads are examined per pass (claimed, suppressed or rescheduled), so one pass
#: stays a short transaction even when many leads are outside their window; the rest wait for the next.
SCAN_LIMIT = 500


def _noop(_: Any) -> None:
    return None


# ---------------------------------------------------------------------------------------------- dispatch


class _CampaignQueue:
    """One campaign's due leads for this pass, locked in batches as they are needed."""

    def __init__(self, campaign: Campaign, free: int, now: datetime) -> None:
        self.campaign = campaign
        self.free = free  # campaign cap − campaign live, minus what this pass claimed
        self.now = now
        self.buffer: deque[Lead] = deque()
        self.exhausted = False
        self.seen: list[int] = []  # leads handed out by this queue in this pass

    def next_lead(self, batch: int) -> Lead | None:
        if not self.buffer and not self.exhausted:
            # The pass writes its changes to the leads at its end (_PassWrites), so the leads handed out
            # earlier still look due in the database: a fresh query excludes them and so continues where
            # the last one ended. Rows locked by others are skipped. Each lead carries whether its number is
            # on the tenant's DNC list (``on_dnc``), read in the same query.
            due = Lead.objects.filter(
                campaign=self.campaign, status=Lead.Status.WAITING, next_due_at__lte=self.now
            )
            if self.campaign.requires_prior_consent:
                # A lead without a valid consent is not claimed (nor scanned): it stays waiting until one is
                # recorded ("why not dialed" says no_consent). One condition in this query, not a row check.
                due = due.filter(consent_exists_for_campaign(campaign=self.campaign, now=self.now))
            leads = list(
                due.exclude(pk__in=self.seen)
                .select_related("contact")
                .annotate(
                    on_dnc=Exists(
                        DncEntry.objects.filter(
                            tenant_id=self.campaign.tenant_id, phone_number=OuterRef("contact__phone_number")
                        )
                    )
                )
                .order_by("next_due_at", "pk")
                .select_for_update(skip_locked=True, no_key=True, of=("self",))[:batch]
            )
            self.buffer.extend(leads)
            self.seen.extend(lead.pk for lead in leads)
            self.exhausted = len(leads) < batch
        return self.buffer.popleft() if self.buffer else None


@dataclass
class _PassWrites:
    """What a pass changes, written in a few statements at its end (still inside its transaction)."""

    attempts: list[CallAttempt] = field(default_factory=list)
    suppressed: list[int] = field(default_factory=list)  # lead ids found on the DNC list
    rescheduled: list[Lead] = field(default_factory=list)  # leads outside their window, next_due_at set

    def flush(self, now: datetime) -> None:
        if self.attempts:
            CallAttempt.objects.bulk_create(self.attempts)
            for tenant_id in {attempt.tenant_id for attempt in self.attempts}:
                live_notify(tenant_id=tenant_id, kind="call", state="queued")
            AttemptEvent.objects.bulk_create(
                AttemptEvent(
                    attempt=attempt,
                    at=now,
                    kind=AttemptEvent.Kind.STATE,
                    type="created",
                    data={"pbx": attempt.pbx_id},
                )
                for attempt in self.attempts
            )
        updated_at = timezone.now()  # what auto_now would have set
        if self.attempts:
            leads_move(
                lead_ids=[attempt.lead_id for attempt in self.attempts],
                by=LeadInput.CLAIMED,
                next_due_at=None,
                wait_reason="",
                updated_at=updated_at,
            )
        if self.suppressed:
            leads_move(
                lead_ids=self.suppressed,
                by=LeadInput.ON_DNC,
                done_reason=DONE_REASON_DNC,
                next_due_at=None,
                updated_at=updated_at,
            )
        if self.rescheduled:
            for lead in self.rescheduled:
                lead.updated_at = updated_at
            Lead.objects.bulk_update(self.rescheduled, ["next_due_at", "wait_reason", "updated_at"])


def dispatch_tenant(
    *,
    tenant_id: int,
    now: datetime | None = None,
    on_commit: Callable[[list[UUID]], None] | None = None,
    on_commit_attempts: Callable[[list[CallAttempt]], None] | None = None,
    scan_limit: int = SCAN_LIMIT,
) -> list[UUID]:
    """One dispatch pass for a tenant: claim due leads into ``queued`` attempts up to the free capacity.

    Returns the new attempt ids, in claim order; ``on_commit`` receives the same list once the transaction
    has committed (not called when nothing was claimed), and ``on_commit_attempts`` the attempts themselves,
    with their tenant, campaign (and its agent), PBX, lead and contact loaded as the pass read them (to
    originate them without reading them again). See the module docstring for why concurrent passes never
    exceed a cap. Due leads found on the DNC list are suppressed; due leads outside their calling window get
    the next opening as their due time. Neither takes a slot.

    Call it outside any transaction: inside one, the locks are held (and ``on_commit`` deferred) until the
    outer transaction ends.
    """
    callback = on_commit or _noop
    attempts_callback = on_commit_attempts or _noop
    writes = _PassWrites()
    with transaction.atomic():
        # Lock order, step 1: the tenant. Serialises passes for this tenant (see the module docstring).
        tenant = Tenant.objects.select_for_update(no_key=True).filter(pk=tenant_id).first()
        if tenant is None or tenant.status != Tenant.Status.ACTIVE:
            return []
        # The time is read once the lock is held: a pass that waited for another one stamps its attempts
        # with when it really counted, so queued_at never predates the end of a call whose slot it reuses.
        now = now or timezone.now()

        # Every attempt has a campaign of its tenant: the tenant's live count is the sum over its campaigns.
        campaign_live: dict[int, int] = dict(
            live_attempts(tenant=tenant)
            .order_by()
            .values("campaign")
            .annotate(n=Count("pk"))
            .values_list("campaign", "n")
        )
        # Plus the tenant's calls owned by other apps (inbound calls, on-call pages: settings
        # TENANT_LIVE_CALLS_ELSEWHERE), which count against the same cap (rule 1).
        tenant_live = sum(campaign_live.values()) + tenant_live_calls_elsewhere(tenant_id=tenant.pk)
        # Enabled PBXs with free channels (rows and live counts in one query), most free first; of those,
        # only where a call can succeed: its Stasis app listening and a media worker up (rule 9).
        pbx_rows = pbx_list_with_free_channels(tenant=tenant)
        health = pbx_health(pbx_ids=[pbx.pk for pbx, _ in pbx_rows]) if pbx_rows else None
        pbxs = {pbx.pk: pbx for pbx, _ in pbx_rows if health is not None and health.usable(pbx.pk)}
        pbx_free = {pbx.pk: free for pbx, free in pbx_rows if pbx.pk in pbxs}
        capacity = min(
            tenant.max_concurrent_calls - tenant_live - tenant.inbound_reserve,
            sum(pbx_free.values()),
        )
        if capacity <= 0:
            return []

        # With its agent: the originates of this pass's attempts write the call brief without a read.
        dialing = list(
            Campaign.objects.filter(campaign_dialing_filter(now=now), tenant=tenant)
            .select_related("agent")
            .prefetch_related(campaign_transfer_links_prefetch())
            .order_by("-priority", "pk")
        )
        # A campaign abandoning too many answered calls dials at half its cap (selectors.Abandonment): the
        # figures come from a short Redis cache (one MGET per pass), not an aggregate per pass.
        abandonment = campaign_abandonment_cached(campaign_ids=[campaign.pk for campaign in dialing], now=now)
        caps = {
            campaign.pk: abandonment[campaign.pk].dialing_cap(campaign.max_concurrent_calls)
            for campaign in dialing
        }
        campaigns = [
            campaign for campaign in dialing if caps[campaign.pk] - campaign_live.get(campaign.pk, 0) > 0
        ]
        scanned = 0
        for priority in sorted({campaign.priority for campaign in campaigns}, reverse=True):
            group = sorted(
                (campaign for campaign in campaigns if campaign.priority == priority),
                key=lambda campaign: (campaign_live.get(campaign.pk, 0), campaign.pk),
            )
            queues = [
                _CampaignQueue(campaign, caps[campaign.pk] - campaign_live.get(campaign.pk, 0), now)
                for campaign in group
            ]
            # Round-robin: one lead per campaign per round, until capacity or leads run out.
            while queues and capacity > 0 and scanned < scan_limit:
                for queue in list(queues):
                    if capacity <= 0 or scanned >= scan_limit:
                        break
                    lead = queue.next_lead(batch=min(capacity, queue.free))
                    if lead is None:
                        queues.remove(queue)
                        continue
                    scanned += 1
                    attempt = _claim_lead(
                        tenant=tenant,
                        campaign=queue.campaign,
                        lead=lead,
                        now=now,
                        pbxs=pbxs,
                        pbx_free=pbx_free,
                        writes=writes,
                    )
                    if attempt is not None:
                        capacity -= 1
                        queue.free -= 1
                        if queue.free <= 0:
                            queues.remove(queue)
        _hold_pbx_caps(writes)
        writes.flush(now)
        claimed = [attempt.pk for attempt in writes.attempts]
        if claimed:
            ids, attempts = list(claimed), list(writes.attempts)

            def after_commit() -> None:
                callback(ids)
                attempts_callback(attempts)

            transaction.on_commit(after_commit)
    return claimed


def _hold_pbx_caps(writes: _PassWrites) -> None:
    """A PBX's cap counts every tenant's calls on it, and passes of different tenants do not share a lock:
    lock the PBXs this pass is about to use (lock order: tenant, leads, then PBXs by id; nothing that holds
    a PBX waits for a tenant or a lead), count their live attempts again now that any pass that held them
    has committed, and give up the claims that would exceed a cap (their leads stay waiting, unchanged).
    The lock is held only from here to the commit."""
    if not writes.attempts:
        return
    pbx_ids = sorted({attempt.pbx_id for attempt in writes.attempts if attempt.pbx_id is not None})
    caps = dict(
        Pbx.objects.select_for_update(no_key=True)
        .filter(pk__in=pbx_ids)
        .order_by("pk")
        .values_list("pk", "max_channels")
    )
    live = dict(
        CallAttempt.objects.filter(pbx_id__in=pbx_ids, state__in=[s.value for s in LIVE_STATES])
        .order_by()
        .values("pbx")
        .annotate(n=Count("pk"))
        .values_list("pbx", "n")
    )
    room = {pbx_id: caps.get(pbx_id, 0) - live.get(pbx_id, 0) for pbx_id in pbx_ids}
    kept = []
    for attempt in writes.attempts:
        pbx_id = attempt.pbx_id
        if pbx_id is not None and room.get(pbx_id, 0) > 0:
            room[pbx_id] -= 1
            kept.append(attempt)
    if len(kept) < len(writes.attempts):
        logger.info(
            "dispatch: %d claim(s) given up: their PBX filled up with other tenants' calls meanwhile",
            len(writes.attempts) - len(kept),
        )
        writes.attempts = kept


def _claim_lead(
    *,
    tenant: Tenant,
    campaign: Campaign,
    lead: Lead,
    now: datetime,
    pbxs: dict[int, Pbx],
    pbx_free: dict[int, int],
    writes: _PassWrites,
) -> CallAttempt | None:
    """Suppress, reschedule or claim one locked, due lead (recorded in ``writes``, written at the end of the
    pass); the new attempt when claimed."""
    number = lead.contact.phone_number
    if getattr(lead, "on_dnc", False):
        lead_move(lead=lead, by=LeadInput.ON_DNC)
        lead.done_reason = DONE_REASON_DNC
        lead.next_due_at = None
        writes.suppressed.append(lead.pk)
        return None
    window = callee_window(campaign=campaign, contact=lead.contact, tenant=tenant)
    if window is None or not window.is_open(now):
        # Never dial outside the window: due again at the next opening (a day later if none is in sight,
        # or if the window cannot be evaluated: such a lead is retried daily and never dialed).
        lead_move(lead=lead, by=LeadInput.DEFERRED)
        lead.next_due_at = window.dialable_from(now) if window is not None else now + NO_OPENING_RETRY
        lead.wait_reason = WAIT_OUTSIDE_WINDOW  # what the explainer says until then (not "retry_delay")
        writes.rescheduled.append(lead)
        return None
    if not lead_move(lead=lead, by=LeadInput.CLAIMED).applied:
        return None  # (the pass read it waiting, under its lock: never happens)
    lead.next_due_at = None
    # The PBX with the most free channels takes the call (ties: lowest id).
    pbx_id = min(pbx_free, key=lambda pk: (-pbx_free[pk], pk))
    pbx_free[pbx_id] -= 1
    if pbx_free[pbx_id] <= 0:
        del pbx_free[pbx_id]
    attempt = CallAttempt(
        tenant=tenant,
        campaign=campaign,
        lead=lead,
        pbx=pbxs[pbx_id],
        number=number,
        state=AttemptState.QUEUED,
        queued_at=now,
    )
    writes.attempts.append(attempt)
    return attempt
