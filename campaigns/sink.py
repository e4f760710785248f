"""The orchestrator's side of the Stasis app: call events become call-attempt changes.

``telephony.stasis.StasisApp`` knows nothing of campaigns (DESIGN.md §3); it hands :mod:`telephony.events`
to the sink named by ``settings.TELEPHONY_EVENT_SINK``, which is :class:`AttemptEventSink`. Each event goes
through :func:`campaigns.services.call_events.attempt_apply` (the one state machine), so duplicates (a
``reconciled`` end after a ``destroyed`` one, a replay after reconnect) are refused and logged, never
applied twice.

The Django ORM is synchronous and the Stasis app's event loop must never block (a blocked reader is
disconnected by Asterisk after 100 ms, PROTOCOLS.md §1.3), so every database access runs in a small thread
pool (``max_workers`` threads, so at most that many database connections), with ``close_old_connections()``
around it as Django's request cycle would do (a connection that died or outlived ``CONN_MAX_AGE`` is dropped
rather than reused).

**Group commit.** The Stasis app hands over the events of different calls concurrently (one at a time per
call). Events waiting while every thread is busy are applied together by the next free thread, in arrival
order, inside one outer transaction (at most ``batch_max`` of them): each ``attempt_apply`` keeps its own
atomic block (a savepoint there), so one refused or failing event changes nothing of the others, and the
batch pays for one commit instead of one each. ``handle`` returns when its event is committed. Under light
load a batch is one event, as before. A transient database error fails the whole batch before commit
(nothing of it was applied), and its events are then retried one transaction each, with the usual delays.

**Coalescing.** When a call's events pile up while an earlier one of it is applied (the sink is behind),
the Stasis app hands them over together (:meth:`AttemptEventSink.handle_many`); they are applied by one
:func:`campaigns.services.call_events.attempt_apply_many`: one lock, one update of the attempt, one insert of
the log rows and at most one update of the lead, instead of that per event, with the same result (every
event offered to the state machine in order, every timestamp kept, one log row each, duplicates refused
and noted). Should that fail for another reason than a transient error, its events are applied again
each on its own, so only the failing one is lost (and a call's end is not).

Mapping:

* ``CallRinging`` → RINGING; ``CallAnswered`` → ANSWERED; ``CallBridged`` → BRIDGED (not with the media
  UUID: it is the one secret that binds a media connection to the call, and the event log is shown to the
  tenant);
* ``CallEnded`` → ENDED with the outcome mapped by value (``CallOutcome`` values are ``AttemptOutcome``
  values), the causes, and the reason; after commit, ``on_ended(tenant_id)`` asks for a dispatch pass so
  the freed slot is used at once (``campaigns.tasks.trigger_dispatch``, looked up lazily). A
  ``reconciled`` end was not seen: the media worker's marks of the call are read (Redis) and the outcome is
  decided from the evidence when the attempt is locked (``campaigns.lifecycle.unseen_end_outcome``);
* ``CallDtmf`` and ``MediaGone`` → a ``note`` in the attempt's log;
* ``TransferUpdated`` → the transfer's ``CallTransfer`` row (``campaigns.services.transfers``) and a
  ``transfer_<state>`` note;
* ``CallAmd`` → an ``amd`` note, and the attempt's ``amd_status``, ``amd_cause`` and ``answered_by``
  (campaigns/amd.py);
* ``CallTransferred`` → a ``transferred`` note, and ``transferred_to`` set on the attempt (no state
  change: the caller is still on the line, now with a human, and the call ends as any other);
* ``CallRecording`` → a ``recording`` note (started, finished, failed).

After an event's step was applied, the hooks named in ``settings.TELEPHONY_EVENT_HOOKS`` (dotted paths of
``hook(*, attempt_id, event)``) run in the same savepoint: apps that sit above campaigns react to call
events without campaigns importing them (the recordings app starts and fetches recordings this way).

Events for a call id that is not an attempt (a dialplan-entered call's channel id, a transfer leg) are
logged and dropped: inbound calls get their own records later.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from uuid import UUID

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections, transaction
from django.utils.module_loading import import_string

from campaigns import lifecycle
from campaigns.lifecycle import AttemptInput, AttemptOutcome
from campaigns.models import E164_MAX_LENGTH, CallAttempt, Pbx
from campaigns.selectors import attempt_media_marks
from campaigns.services.call_events import AttemptStep, UnseenEnd, attempt_apply_many
from campaigns.services.transfers import transfer_apply_update
from telephony.events import (
    CallAmd,
    CallAnswered,
    CallBridged,
    CallDtmf,
    CallEnded,
    CallEvent,
    CallRecording,
    CallRinging,
    CallTransferred,
    MediaGone,
    TransferUpdated,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Live states in which the PBX has (had) the channel: a queued attempt's originate may not have been sent,
# so it is not "live on the PBX" (see telephony.events.CallEventSink.live_call_ids).
PLACED_STATES: tuple[str, ...] = tuple(sorted(s.value for s in lifecycle.PLACED_STATES))


#: Pauses between tries when the database fails transiently (then the error reaches the Stasis app's log).
RETRY_DELAYS_S: tuple[float, ...] = (0.1, 0.5, 2.0)


#: The database errors worth another try: connection lost, failover, lock timeout, deadlock victim.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


@dataclass
class _Item:
    """Events of one call handed over together (one for ``handle``), in order, and each one's error."""

    attempt_id: UUID
    events: list[CallEvent]
    done: asyncio.Future[None]
    errors: list[Exception | None] = field(default_factory=list)

    def fail(self, error: Exception) -> None:
        """Every event of the item that has no error of its own gets ``error``."""
        self.errors = [own or error for own in self.errors] if self.errors else [error] * len(self.events)


def _default_on_ended() -> Callable[[list[int]], None] | None:
    try:
        from campaigns.tasks import trigger_dispatch_many  # noqa: PLC0415 - optional, and Celery-heavy
    except ImportError:
        logger.warning("campaigns.tasks.trigger_dispatch_many is not available: no dispatch on call end")
        return None
    return trigger_dispatch_many


def pbx_ids_sharing_app(pbx: Pbx) -> list[int]:
    """The PBX rows that reach the same Asterisk app as ``pbx`` (same ARI URL and app name), e.g. one
    Asterisk shared by several tenants: the one Stasis app of that Asterisk serves all their calls."""
    url = pbx.ari_url.rstrip("/")
    return [
        row.pk
        for row in Pbx.objects.filter(app_name=pbx.app_name).only("pk", "ari_url")
        if row.ari_url.rstrip("/") == url
    ]


class AttemptEventSink:
    """A :class:`telephony.events.CallEventSink` that applies call events to ``CallAttempt`` rows.

    ``pbx_ids`` scopes :meth:`live_call_ids` (None: all PBXs). After a transaction that ended attempts has
    committed, ``on_ended_many(tenant_ids)`` runs once with their tenants (by default
    ``campaigns.tasks.trigger_dispatch_many``: one Redis round trip and a few passes per Celery message for
    the whole batch); ``on_ended(tenant_id)``, if given instead, runs once per ended attempt.
    """

    def __init__(
        self,
        *,
        pbx_ids: Iterable[int] | None = None,
        on_ended: Callable[[int], None] | None = None,
        on_ended_many: Callable[[list[int]], None] | None = None,
        max_workers: int = 4,
        batch_max: int = 64,
    ) -> None:
        if max_workers < 1 or batch_max < 1:
            raise ValueError("AttemptEventSink: max_workers and batch_max must be at least 1")
        if on_ended is not None and on_ended_many is not None:
            raise ValueError("AttemptEventSink: give on_ended or on_ended_many, not both")
        self.pbx_ids: frozenset[int] | None = frozenset(pbx_ids) if pbx_ids is not None else None
        if on_ended is not None:
            one = on_ended

            def each(tenant_ids: list[int]) -> None:
                for tenant_id in tenant_ids:
                    one(tenant_id)

            on_ended_many = each
        elif on_ended_many is None:
            on_ended_many = _default_on_ended()
        self._on_ended_many_safe = self._wrap(on_ended_many) if on_ended_many is not None else None
        self._local = threading.local()  # per sink thread: the batch being applied (see _apply_all)
        self.max_workers = max_workers
        self.batch_max = batch_max
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="attempt-sink")
        self._waiting: list[_Item] = []  # events handed over and not yet in a batch (event loop only)
        self._batches = 0  # batches being applied (event loop only); at most max_workers
        self._batch_tasks: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        """Close every thread's database connection (one job per thread: they meet at a barrier) and stop."""
        barrier = threading.Barrier(self.max_workers)

        def close_connections() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            connections.close_all()

        for _ in range(self.max_workers):
            self._executor.submit(close_connections)
        self._executor.shutdown(wait=True)

    @staticmethod
    def _wrap(on_ended_many: Callable[[list[int]], Any]) -> Callable[[list[int]], None]:
        """The after-commit callback must not fail the events (the attempts already ended): a dispatch
        trigger that cannot be enqueued (broker down) is logged; the periodic sweep will dispatch."""

        def safe(tenant_ids: list[int]) -> None:
            try:
                on_ended_many(tenant_ids)
            except Exception:  # the sweep is the guarantee (DESIGN.md §5 rule 3); logged with traceback
                logger.exception("on_ended(%s) failed; the periodic sweep will dispatch", tenant_ids)

        return safe

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_thread, fn, args)

    @staticmethod
    def _in_thread(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        close_old_connections()
        try:
            return fn(*args)
        finally:
            close_old_connections()

    # --------------------------------------------------------------------------------- the protocol
    async def handle(self, event: CallEvent) -> None:
        (error,) = await self.handle_many([event])
        if error is not None:
            raise error

    async def handle_many(self, events: Sequence[CallEvent]) -> list[Exception | None]:
        """Events of one call, in order (see :class:`telephony.events.CallEventBatchSink`): applied together
        by :func:`campaigns.services.call_events.attempt_apply_many` (one lock, one update, one insert), each
        one's result as if handed over alone. Returns when they are committed, each one's error or None."""
        if not events:
            return []
        call_id = events[0].call_id
        if any(event.call_id != call_id for event in events):
            raise ValueError("AttemptEventSink.handle_many: the events must be of one call")
        attempt_id = _attempt_id(call_id)
        if attempt_id is None:
            for event in events:
                logger.info("call event for %s, which is not an attempt id: %r", call_id, event)
            return [None] * len(events)
        item = _Item(attempt_id, list(events), asyncio.get_running_loop().create_future())
        self._waiting.append(item)
        self._start_batches()
        await item.done
        return item.errors

    def _start_batches(self) -> None:
        while self._waiting and self._batches < self.max_workers:
            batch, self._waiting = self._waiting[: self.batch_max], self._waiting[self.batch_max :]
            self._batches += 1
            task = asyncio.get_running_loop().create_task(self._apply_batch(batch))
            self._batch_tasks.add(task)
            task.add_done_callback(self._batch_tasks.discard)

    async def _apply_batch(self, batch: list[_Item]) -> None:
        try:
            try:
                await self._run(self._apply_all, batch)
            except TRANSIENT_ERRORS as exc:
                # Rolled back as a whole, so nothing of it was applied: each event is retried on its own.
                if len(batch) > 1:
                    logger.warning(
                        "applying %d call events failed (%s); retrying each alone", len(batch), exc
                    )
                await asyncio.gather(*(self._retry_alone(item, exc) for item in batch))
            except Exception as exc:  # noqa: BLE001 - e.g. the pool was shut down: every event fails with it
                for item in batch:
                    item.fail(exc)
            for item in batch:
                if not item.done.done():  # else its handle() was cancelled
                    item.done.set_result(None)
        finally:
            for item in batch:
                if not item.done.done():  # cancelled at shutdown: do not leave handle() waiting
                    item.done.cancel()
            self._batches -= 1
            self._start_batches()

    async def _retry_alone(self, item: _Item, error: Exception) -> None:
        """A transient database error must not lose a call's end (connection lost, failover, lock timeout):
        retry a few times, one transaction for this item (one call's events) alone. Safe because
        attempt_apply is one transaction and refuses a duplicate event. The last error is the events'."""
        for delay in RETRY_DELAYS_S:
            logger.warning("applying %r failed (%s); retrying in %.1fs", item.events, error, delay)
            await asyncio.sleep(delay)
            try:
                await self._run(self._apply_all, [item])
                return
            except TRANSIENT_ERRORS as exc:
                error = exc
        item.fail(error)

    async def live_call_ids(self) -> set[str]:
        return await self._run(self._live_call_ids)

    # ------------------------------------------------------------------------------- in the threads
    def _live_call_ids(self) -> set[str]:
        attempts = CallAttempt.objects.filter(state__in=PLACED_STATES)
        if self.pbx_ids is not None:
            attempts = attempts.filter(pbx_id__in=self.pbx_ids)
        return {str(pk) for pk in attempts.values_list("pk", flat=True)}

    def _apply_all(self, batch: list[_Item]) -> None:
        """Apply the batch in one transaction, in order. A transient error aborts (and rolls back) all of it;
        any other error is the event's own: its savepoint was rolled back and the others go on. A call's
        events handed over together are applied as one (one savepoint); if that fails for another reason
        than a transient error, each of them is applied alone, so only the failing one is lost."""
        # The tenants of the attempts this transaction ends: appended by on_commit callbacks (so only for
        # savepoints that were kept) when it commits, i.e. when the atomic block below is left normally.
        ended: list[int] = []
        self._local.ended = ended
        with transaction.atomic():
            for item in batch:
                item.errors = [None] * len(item.events)
                if len(item.events) > 1:
                    try:
                        self._apply_many(item.attempt_id, item.events)
                        continue
                    except TRANSIENT_ERRORS:
                        raise
                    except Exception as exc:  # noqa: BLE001 - each event again alone: see which one fails
                        logger.warning(
                            "applying %d events of %s together failed (%r); applying each alone",
                            len(item.events),
                            item.attempt_id,
                            exc,
                        )
                for i, event in enumerate(item.events):
                    try:
                        self._apply(item.attempt_id, event)
                    except TRANSIENT_ERRORS:
                        raise
                    except Exception as exc:  # noqa: BLE001 - the event's own failure: its handle() raises it
                        item.errors[i] = exc
        if ended and self._on_ended_many_safe is not None:
            self._on_ended_many_safe(ended)

    def _apply_many(self, attempt_id: UUID, events: list[CallEvent]) -> None:
        """A call's events in one ``attempt_apply_many`` (a savepoint in the batch), then the hooks."""
        for event in events:
            if isinstance(event, TransferUpdated):  # its CallTransfer row too (the note below is the log's)
                transfer_apply_update(
                    attempt_id=attempt_id,
                    transfer_id=event.transfer_id,
                    state=event.state,
                    at=event.at,
                    reason=event.reason,
                )
        steps = [_with_evidence(attempt_id, event, _step(event)) for event in events]
        try:
            attempt_apply_many(attempt_id=attempt_id, steps=steps, on_ended=self._collect_ended)
        except CallAttempt.DoesNotExist:
            for event in events:
                logger.warning("call event for unknown attempt %s: %r", attempt_id, event)
            return
        for hook in event_hooks():
            for event in events:
                hook(attempt_id=attempt_id, event=event)

    def _apply(self, attempt_id: UUID, event: CallEvent) -> None:
        """One event alone (in its own savepoint)."""
        self._apply_many(attempt_id, [event])

    def _collect_ended(self, tenant_id: int) -> None:
        # Runs on commit of the batch's transaction, in the thread that applied it (see _apply_all).
        self._local.ended.append(tenant_id)


@functools.cache
def event_hooks() -> tuple[Callable[..., None], ...]:
    """The call-event hooks of ``settings.TELEPHONY_EVENT_HOOKS``, imported once."""
    return tuple(import_string(path) for path in getattr(settings, "TELEPHONY_EVENT_HOOKS", ()))


def _with_evidence(attempt_id: UUID, event: CallEvent, step: AttemptStep) -> AttemptStep:
    """For an end nobody saw, the step with what else is known of the call (the media worker's marks, the
    gap's start); any other step as it is."""
    if not isinstance(event, CallEnded) or event.reason != "reconciled":
        return step
    marks = attempt_media_marks(attempt_id=attempt_id)
    unseen = UnseenEnd(
        media_connected=marks.connected, agent_spoke=marks.agent_spoke, gap_started_at=event.gap_started_at
    )
    return replace(step, unseen=unseen)


def _step(event: CallEvent) -> AttemptStep:
    """The attempt step a call event stands for (see the mapping in the module docstring)."""
    if isinstance(event, CallRinging):
        return AttemptStep(event=AttemptInput.RINGING, at=event.at)
    if isinstance(event, CallAnswered):
        return AttemptStep(event=AttemptInput.ANSWERED, at=event.at, data={"channel_id": event.channel_id})
    if isinstance(event, CallBridged):
        return AttemptStep(event=AttemptInput.BRIDGED, at=event.at)
    if isinstance(event, CallEnded):
        return AttemptStep(
            event=AttemptInput.ENDED,
            at=event.at,
            outcome=AttemptOutcome(event.outcome.value),
            cause=event.cause,
            cause_txt=event.cause_txt,
            dialstatus=event.dialstatus,
            tech_cause=event.tech_cause,
            data={
                "reason": event.reason,
                "answered": event.answered,
                **({"gap_started_at": event.gap_started_at.isoformat()} if event.gap_started_at else {}),
            },
        )
    if isinstance(event, CallDtmf):
        return AttemptStep(event=None, note="dtmf", at=event.at, data={"digit": event.digit})
    if isinstance(event, MediaGone):
        return AttemptStep(event=None, note="media_gone", at=event.at, data={})
    if isinstance(event, CallRecording):
        data: dict[str, Any] = {"name": event.name, "state": event.state, "duration": event.duration}
        if event.cause:
            data["cause"] = event.cause
        return AttemptStep(event=None, note="recording", at=event.at, data=data)
    if isinstance(event, CallAmd):
        # Not a life-cycle change: who answered (by the campaign's rule) and AMD()'s own words.
        return AttemptStep(
            event=None,
            note="amd",
            at=event.at,
            data={"status": event.status, "cause": event.cause},
            amd=(event.status, event.cause),
        )
    if isinstance(event, CallTransferred):
        # Not a life-cycle change: the call goes on with the human and ends as usual (its outcome is what
        # the end classifies, e.g. answered).
        return AttemptStep(
            event=None,
            note="transferred",
            at=event.at,
            data={"number": event.number},
            transferred_to=event.number[:E164_MAX_LENGTH],
        )
    if isinstance(event, TransferUpdated):
        return AttemptStep(
            event=None,
            note=f"transfer_{event.state}",
            at=event.at,
            data={"transfer_id": event.transfer_id, **({"reason": event.reason} if event.reason else {})},
        )
    raise TypeError(f"not a call event: {event!r}")


def _attempt_id(call_id: str) -> UUID | None:
    try:
        return UUID(call_id)
    except ValueError:
        return None
