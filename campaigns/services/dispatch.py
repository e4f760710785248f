"""The dispatcher: claiming due leads into call attempts, and applying call events to attempts and leads.

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

**Lock order** is fixed: tenant, then leads (dispatch); attempt, then its lead (:func:`attempt_apply`).
Dispatch takes leads with ``SKIP LOCKED`` and never waits for one, and ``attempt_apply`` never takes the
tenant lock, so no cycle (deadlock) is possible. ``attempt_apply`` does not need the tenant lock: ending a
call only frees capacity.

Rule 3 (a lead is always in exactly one of waiting-with-due-time / in an attempt / done / suppressed) holds
because every change of a lead's status happens in the same transaction as the attempt change that causes
it: claim (lead → in_attempt + attempt inserted) and end (attempt → ended + lead → waiting/done).

Fairness
--------
Running campaigns are served by priority (higher first). Campaigns of the same priority are served
round-robin, one lead per campaign per round (each campaign's leads oldest-due first); a round starts with
the campaign that has the fewest live calls, so across passes the one that just got a call goes last.

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

A CANCELLED event never consumes one of the lead's attempts: nothing was dialed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Field, Model
from django.utils import timezone

from campaigns.lifecycle import AttemptEvent as Event
from campaigns.lifecycle import (
    AttemptOutcome,
    AttemptState,
    Transition,
    consumes_attempt,
    retry_decision,
    transition,
)
from campaigns.models import AttemptEvent, CallAttempt, Campaign, Contact, Lead, Pbx
from campaigns.selectors import (
    NO_OPENING_RETRY,
    callee_window,
    campaign_list_dialing,
    lead_lock_due_batch,
    pbx_list_with_free_channels_and_campaign_live,
    tenant_lock_for_dispatch,
)
from tenants.models import Tenant

logger = logging.getLogger(__name__)

__all__ = [
    "DONE_REASON_DNC",
    "SCAN_LIMIT",
    "AttemptStep",
    "attempt_apply",
    "attempt_apply_many",
    "dispatch_tenant",
]

DONE_REASON_DNC = "dnc"

#: At most this many due leads are examined per pass (claimed, suppressed or rescheduled), so one pass
#: stays a short transaction even when many leads are outside their window; the rest wait for the next.
SCAN_LIMIT = 500

# Events that end an attempt and so need an outcome.
_ENDING_EVENTS = frozenset({Event.ENDED, Event.ORIGINATE_FAILED, Event.CANCELLED})


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
            leads = lead_lock_due_batch(campaign=self.campaign, now=self.now, exclude=self.seen, batch=batch)
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
        """One statement: the attempts, their ``created`` log rows, and every lead change."""
        leads: list[tuple[int, str, datetime | None, str | None]] = [  # id, status, next_due_at, done_reason
            (attempt.lead_id, Lead.Status.IN_ATTEMPT, None, None) for attempt in self.attempts
        ]
        leads += [(lead_id, Lead.Status.SUPPRESSED, None, DONE_REASON_DNC) for lead_id in self.suppressed]
        leads += [(lead.pk, Lead.Status.WAITING, lead.next_due_at, None) for lead in self.rescheduled]
        if not leads:
            return
        updated_at = timezone.now()  # what auto_now would have set
        for lead in self.rescheduled:
            lead.updated_at = updated_at
        attempts = self.attempts
        with connection.cursor() as cursor:
            cursor.execute(
                _FLUSH_SQL,
                {
                    "ids": [attempt.pk for attempt in attempts],
                    "tenants": [attempt.tenant_id for attempt in attempts],
                    "campaigns": [attempt.campaign_id for attempt in attempts],
                    "attempt_leads": [attempt.lead_id for attempt in attempts],
                    "pbxs": [attempt.pbx_id for attempt in attempts],
                    "numbers": [attempt.number for attempt in attempts],
                    "queued": AttemptState.QUEUED.value,
                    "now": now,
                    "state_kind": AttemptEvent.Kind.STATE.value,
                    "lead_ids": [lead[0] for lead in leads],
                    "statuses": [str(lead[1]) for lead in leads],
                    "dues": [lead[2] for lead in leads],
                    "reasons": [lead[3] for lead in leads],
                    "updated_at": updated_at,
                },
            )


# The writes of a pass in one statement (see _PassWrites.flush). The attempts' columns without a database
# default get the model's defaults ('' for the texts, NULL for the times); the lead rows keep their
# ``done_reason`` unless one is given, and are locked by this pass already.
_FLUSH_SQL = """
WITH new_attempts AS (
  INSERT INTO campaigns_callattempt
    (id, tenant_id, campaign_id, lead_id, pbx_id, number, state, outcome, queued_at,
     cause_txt, dialstatus, error)
  SELECT id, tenant_id, campaign_id, lead_id, pbx_id, number, %(queued)s, '', %(now)s, '', '', ''
  FROM unnest(%(ids)s::uuid[], %(tenants)s::bigint[], %(campaigns)s::bigint[], %(attempt_leads)s::bigint[],
              %(pbxs)s::bigint[], %(numbers)s::text[])
    AS new (id, tenant_id, campaign_id, lead_id, pbx_id, number)
  RETURNING id, pbx_id
), created AS (
  INSERT INTO campaigns_attemptevent (attempt_id, at, kind, type, data)
  SELECT id, %(now)s, %(state_kind)s, 'created', jsonb_build_object('pbx', pbx_id) FROM new_attempts
)
UPDATE campaigns_lead AS l
SET status = u.status, next_due_at = u.due, done_reason = COALESCE(u.reason, l.done_reason),
  updated_at = %(updated_at)s
FROM unnest(%(lead_ids)s::bigint[], %(statuses)s::text[], %(dues)s::timestamptz[], %(reasons)s::text[])
  AS u (id, status, due, reason)
WHERE l.id = u.id
"""


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
    with their tenant, campaign, PBX, lead and contact loaded as the pass read them (to originate them
    without reading them again). See the module docstring for why concurrent passes never exceed a cap. Due
    leads found on the DNC list are suppressed; due leads outside their calling window get the next opening
    as their due time. Neither takes a slot.

    Call it outside any transaction: inside one, the locks are held (and ``on_commit`` deferred) until the
    outer transaction ends.
    """
    callback = on_commit or _noop
    attempts_callback = on_commit_attempts or _noop
    writes = _PassWrites()
    with transaction.atomic():
        # Lock order, step 1: the tenant. Serialises passes for this tenant (see the module docstring).
        tenant = tenant_lock_for_dispatch(tenant_id=tenant_id)
        if tenant is None or tenant.status != Tenant.Status.ACTIVE:
            return []
        # The time is read once the lock is held: a pass that waited for another one stamps its attempts
        # with when it really counted, so queued_at never predates the end of a call whose slot it reuses.
        now = now or timezone.now()

        # Every attempt has a campaign of its tenant: the tenant's live count is the sum over its campaigns.
        # Enabled PBXs with free channels, most free first, and the live counts, in one query.
        pbx_rows, campaign_live = pbx_list_with_free_channels_and_campaign_live(tenant_id=tenant.pk)
        tenant_live = sum(campaign_live.values())
        pbxs = {pbx.pk: pbx for pbx, _ in pbx_rows}
        pbx_free = {pbx.pk: free for pbx, free in pbx_rows}
        capacity = min(
            tenant.max_concurrent_calls - tenant_live - tenant.inbound_reserve,
            sum(pbx_free.values()),
        )
        if capacity <= 0:
            return []

        campaigns = [
            campaign
            for campaign in campaign_list_dialing(tenant=tenant, now=now)
            if campaign.max_concurrent_calls - campaign_live.get(campaign.pk, 0) > 0
        ]
        scanned = 0
        for priority in sorted({campaign.priority for campaign in campaigns}, reverse=True):
            group = sorted(
                (campaign for campaign in campaigns if campaign.priority == priority),
                key=lambda campaign: (campaign_live.get(campaign.pk, 0), campaign.pk),
            )
            queues = [
                _CampaignQueue(
                    campaign, campaign.max_concurrent_calls - campaign_live.get(campaign.pk, 0), now
                )
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
        writes.flush(now)
        claimed = [attempt.pk for attempt in writes.attempts]
        if claimed:
            ids, attempts = list(claimed), list(writes.attempts)

            def after_commit() -> None:
                callback(ids)
                attempts_callback(attempts)

            transaction.on_commit(after_commit)
    return claimed


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
        lead.status = Lead.Status.SUPPRESSED
        lead.done_reason = DONE_REASON_DNC
        lead.next_due_at = None
        writes.suppressed.append(lead.pk)
        return None
    window = callee_window(campaign=campaign, contact=lead.contact, tenant=tenant)
    if window is None or not window.is_open(now):
        # Never dial outside the window: due again at the next opening (a day later if none is in sight,
        # or if the window cannot be evaluated: such a lead is retried daily and never dialed).
        lead.next_due_at = window.dialable_from(now) if window is not None else now + NO_OPENING_RETRY
        writes.rescheduled.append(lead)
        return None
    # The PBX with the most free channels takes the call (ties: lowest id).
    pbx_id = min(pbx_free, key=lambda pk: (-pbx_free[pk], pk))
    pbx_free[pbx_id] -= 1
    if pbx_free[pbx_id] <= 0:
        del pbx_free[pbx_id]
    lead.status = Lead.Status.IN_ATTEMPT
    lead.next_due_at = None
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


# ------------------------------------------------------------------------------------------- attempt end


@dataclass(frozen=True, slots=True)
class AttemptStep:
    """One thing that happened to an attempt, for :func:`attempt_apply_many`: a life-cycle ``event`` with
    the arguments :func:`attempt_apply` takes, or (``note`` set, ``event`` None) a note for its log that
    changes no state (a DTMF digit, the media leg gone), appended whatever the state."""

    event: Event | None
    at: datetime
    data: dict[str, Any] | None = None
    cause: int | None = None
    cause_txt: str = ""
    dialstatus: str = ""
    tech_cause: int | None = None
    outcome: AttemptOutcome | None = None
    error: str = ""
    note: str = ""

    def checked(self) -> AttemptStep:
        """The step with its event normalised and CANCELLED's default outcome; ValueError on a misuse."""
        if self.event is None:
            if not self.note or self.outcome is not None:
                raise ValueError("attempt step: a note needs a type and takes no outcome")
            return self
        event, outcome = Event(self.event), self.outcome
        if event is Event.CANCELLED and outcome is None:
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
    event: Event,
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
        event=Event(event),
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
        # Both reads are SQL built once: building it with the ORM cost more than running it, and this runs
        # for every event of every call. Without an ending step only the columns _offer reads are read.
        if ending:
            attempt = _attempt_lock_for_end(attempt_id)
        else:
            attempt = _attempt_lock_for_progress(attempt_id)
        results: list[Transition | None] = []
        rows: list[AttemptEvent] = []
        changed: set[str] = set()
        finished: AttemptStep | None = None
        for step in steps:
            if step.event is None:
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
            _attempt_update(attempt, changed)
        _attempt_events_insert(rows)
        if finished is not None:
            assert finished.event is not None and finished.outcome is not None  # noqa: S101
            _lead_finish(
                attempt=attempt,
                lead=attempt.lead,
                campaign=attempt.campaign,
                event=finished.event,
                outcome=finished.outcome,
                at=finished.at,
            )
            if on_ended is not None:
                tenant_id = attempt.tenant_id
                transaction.on_commit(lambda: on_ended(tenant_id))
    return results


# The columns of an attempt that progress steps (no end) read and write: see _offer.
_PROGRESS_FIELDS = frozenset({"id", "tenant_id", "state", "originated_at", "answered_at"})
_sql_cache: dict[str, str] = {}


def _attempt_lock_for_progress(attempt_id: UUID) -> CallAttempt:
    """The attempt locked (``FOR NO KEY UPDATE``) with only the fields a progress step needs (the others
    deferred); ``CallAttempt.DoesNotExist`` when there is none."""
    fields = [f for f in CallAttempt._meta.concrete_fields if f.attname in _PROGRESS_FIELDS]
    sql = _sql_cache.get("lock")
    if sql is None:
        qn = connection.ops.quote_name
        # (S608: the names come from the models' metadata, the values are parameters; so below too.)
        columns, meta = ", ".join(qn(f.column) for f in fields), CallAttempt._meta
        sql = _sql_cache["lock"] = (
            f"SELECT {columns} FROM {qn(meta.db_table)} "  # noqa: S608
            f"WHERE {qn(meta.pk.column)} = %s FOR NO KEY UPDATE"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [attempt_id])
        row = cursor.fetchone()
    if row is None:
        raise CallAttempt.DoesNotExist(f"CallAttempt {attempt_id} does not exist")
    return CallAttempt.from_db(connection.alias, [f.attname for f in fields], row)


def _attempt_lock_for_end(attempt_id: UUID) -> CallAttempt:
    """The attempt and its lead locked (``FOR NO KEY UPDATE``, in that order), read with the lead's contact
    and the campaign and its tenant in one statement: ``select_related("lead__contact",
    "campaign__tenant").select_for_update(no_key=True, of=("self", "lead")).get(pk=attempt_id)``."""
    joined: tuple[type[Model], ...] = (CallAttempt, Lead, Contact, Campaign, Tenant)
    sql = _sql_cache.get("lock_end")
    if sql is None:
        qn = connection.ops.quote_name

        def col(model: type[Model], name: str) -> str:
            meta = model._meta
            target = meta.pk if name == "pk" else _concrete(model, name)
            assert target is not None  # noqa: S101
            return f"{qn(meta.db_table)}.{qn(target.column)}"

        def join(model: type[Model], on: str) -> str:
            return f" INNER JOIN {qn(model._meta.db_table)} ON {col(model, 'pk')} = {on}"

        columns = ", ".join(
            f"{qn(model._meta.db_table)}.{qn(f.column)}"
            for model in joined
            for f in model._meta.concrete_fields
        )
        sql = _sql_cache["lock_end"] = (
            f"SELECT {columns} FROM {qn(CallAttempt._meta.db_table)}"  # noqa: S608
            + join(Lead, col(CallAttempt, "lead"))
            + join(Contact, col(Lead, "contact"))
            + join(Campaign, col(CallAttempt, "campaign"))
            + join(Tenant, col(Campaign, "tenant"))
            + f" WHERE {col(CallAttempt, 'pk')} = %s"
            + f" FOR NO KEY UPDATE OF {qn(CallAttempt._meta.db_table)}, {qn(Lead._meta.db_table)}"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [attempt_id])
        row = cursor.fetchone()
    if row is None:
        raise CallAttempt.DoesNotExist(f"CallAttempt {attempt_id} does not exist")
    objects: list[Model] = []
    start = 0
    for model in joined:
        fields = model._meta.concrete_fields
        values = list(row[start : start + len(fields)])
        start += len(fields)
        for i, (col, converters) in enumerate(_converters(model)):
            for convert in converters:
                values[i] = convert(values[i], col, connection)
        objects.append(model.from_db(connection.alias, [f.attname for f in fields], values))
    attempt, lead_obj, contact_obj, campaign_obj, tenant_obj = objects
    assert isinstance(attempt, CallAttempt) and isinstance(lead_obj, Lead)  # noqa: S101
    assert isinstance(contact_obj, Contact) and isinstance(campaign_obj, Campaign)  # noqa: S101
    assert isinstance(tenant_obj, Tenant)  # noqa: S101
    lead_obj.contact = contact_obj
    campaign_obj.tenant = tenant_obj
    attempt.lead = lead_obj
    attempt.campaign = campaign_obj
    return attempt


_converter_cache: dict[type[Model], list[tuple[Any, list[Any]]]] = {}


def _converters(model: type[Model]) -> list[tuple[Any, list[Any]]]:
    """Per concrete field of ``model``: (its column expression, the converters the ORM applies to what the
    database returns for it, e.g. JSON decoding)."""
    found = _converter_cache.get(model)
    if found is None:
        found = []
        for f in model._meta.concrete_fields:
            col = f.get_col(model._meta.db_table)
            found.append((col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)))
        _converter_cache[model] = found
    return found


def _update_fields(obj: Model, names: Iterable[str]) -> None:
    """``obj.save(update_fields=names)`` as one plain UPDATE, for models without save signals or a custom
    ``save`` (CallAttempt, Lead): ``pre_save`` still sets ``auto_now`` fields."""
    meta = obj._meta
    fields = [_concrete(type(obj), name) for name in sorted(names)]
    qn = connection.ops.quote_name
    assert meta.pk is not None  # noqa: S101
    assignments = ", ".join(f"{qn(f.column)} = %s" for f in fields)
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(meta.pk.column)} = %s"  # noqa: S608
    params = [f.get_db_prep_save(f.pre_save(obj, False), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, obj.pk])


def _concrete(model: type[Model], name: str) -> Field[Any, Any]:
    found = model._meta.get_field(name)
    assert isinstance(found, Field) and found.concrete  # noqa: S101
    return found


def _attempt_update(attempt: CallAttempt, changed: set[str]) -> None:
    _update_fields(attempt, changed)


def _attempt_events_insert(rows: Sequence[AttemptEvent]) -> None:
    """``AttemptEvent.objects.bulk_create(rows)`` as one INSERT, without reading the ids back."""
    if not rows:
        return
    meta = AttemptEvent._meta
    names = ("attempt", "at", "kind", "type", "data")
    fields = [_concrete(AttemptEvent, name) for name in names]
    sql = _sql_cache.get("events")
    if sql is None:
        qn = connection.ops.quote_name
        sql = _sql_cache["events"] = (
            f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) VALUES "  # noqa: S608
        )
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for row in rows:
        params.extend(f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(sql + values, params)


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
        if event not in (Event.CANCELLED, Event.ORIGINATE_FAILED):
            attempt.originated_at = at
            changed.add("originated_at")
    if event is Event.RINGING:
        attempt.ringing_at = at
        changed.add("ringing_at")
    if event in (Event.ANSWERED, Event.BRIDGED) and attempt.answered_at is None:
        attempt.answered_at = at
        changed.add("answered_at")
    if result.new is AttemptState.ENDED:
        assert outcome is not None  # checked for every ending event  # noqa: S101
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


def _lead_finish(
    *,
    attempt: CallAttempt,
    lead: Lead,
    campaign: Campaign,
    event: Event,
    outcome: AttemptOutcome,
    at: datetime,
) -> None:
    """The lead's side of an ended attempt, in the attempt's transaction (rule 3). ``lead`` is the attempt's
    lead, locked by the caller (read after the lock: its current version); ``campaign`` has its tenant."""
    consumed = event is not Event.CANCELLED and consumes_attempt(outcome)
    lead.attempts += 1 if consumed else 0  # the row is locked: no lost update
    lead.last_outcome = outcome.value
    fields = ["attempts", "last_outcome", "updated_at"]
    if lead.status != Lead.Status.IN_ATTEMPT:
        # Someone finished or suppressed the lead while the call was live (e.g. an opt-out handled
        # elsewhere): keep that decision; only the counter and the last outcome are recorded.
        _update_fields(lead, fields)
        return
    fields += ["status", "next_due_at", "done_reason"]
    if event is Event.CANCELLED and outcome is AttemptOutcome.OPTED_OUT:
        # The re-check found the number on the DNC list: the same result as finding it at claim time.
        lead.status, lead.next_due_at, lead.done_reason = Lead.Status.SUPPRESSED, None, DONE_REASON_DNC
        _update_fields(lead, fields)
        return
    decision = retry_decision(
        outcome=outcome,
        attempts_made=lead.attempts,
        max_attempts=campaign.max_attempts,
        retry_delays=campaign.retry_delays,
        now=at,
    )
    if decision.should_retry and decision.at is not None:
        # Only a retry needs the calling window (to move the due time to its next opening).
        window = callee_window(campaign=campaign, contact=lead.contact, tenant=campaign.tenant)
        due = decision.at
        if window is not None:
            due = window.dialable_from(due)
        lead.status, lead.next_due_at, lead.done_reason = Lead.Status.WAITING, due, ""
    else:
        lead.status, lead.next_due_at, lead.done_reason = Lead.Status.DONE, None, decision.reason
    _update_fields(lead, fields)
