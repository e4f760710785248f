"""The orchestrator's side of the Stasis app: call events become call-attempt changes.

``telephony.stasis.StasisApp`` knows nothing of campaigns (DESIGN.md §3); it hands :mod:`telephony.events`
to the sink named by ``settings.TELEPHONY_EVENT_SINK``, which is :class:`AttemptEventSink`. Each event goes
through :func:`campaigns.services.dispatch.attempt_apply` (the one state machine), so duplicates (a
``reconciled`` end after a ``destroyed`` one, a replay after reconnect) are refused and logged, never
applied twice.

The Django ORM is synchronous and the Stasis app's event loop must never block (a blocked reader is
disconnected by Asterisk after 100 ms, PROTOCOLS.md §1.3), so every database access runs in a small thread
pool, with ``close_old_connections()`` around it as Django's request cycle would do (a connection that died
or outlived ``CONN_MAX_AGE`` is dropped rather than reused).

Mapping:

* ``CallRinging`` → RINGING; ``CallAnswered`` → ANSWERED; ``CallBridged`` → BRIDGED (with the media UUID);
* ``CallEnded`` → ENDED with the outcome mapped by value (``CallOutcome`` values are ``AttemptOutcome``
  values), the causes, and the reason; after commit, ``on_ended(tenant_id)`` asks for a dispatch pass so
  the freed slot is used at once (``campaigns.tasks.trigger_dispatch``, looked up lazily);
* ``CallDtmf`` and ``MediaGone`` → a ``note`` in the attempt's log.

Events for a call id that is not an attempt (a dialplan-entered call's channel id, a transfer leg) are
logged and dropped: inbound calls get their own records later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from uuid import UUID

from django.db import InterfaceError, OperationalError, close_old_connections

from campaigns.lifecycle import LIVE_STATES, AttemptOutcome, AttemptState
from campaigns.lifecycle import AttemptEvent as Event
from campaigns.models import AttemptEvent, CallAttempt, Pbx
from campaigns.services.attempts import attempt_event_append
from campaigns.services.dispatch import attempt_apply
from telephony.events import (
    CallAnswered,
    CallBridged,
    CallDtmf,
    CallEnded,
    CallEvent,
    CallRinging,
    MediaGone,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Live states in which the PBX has (had) the channel: a queued attempt's originate may not have been sent,
# so it is not "live on the PBX" (see telephony.events.CallEventSink.live_call_ids).
PLACED_STATES: tuple[str, ...] = tuple(sorted(s.value for s in LIVE_STATES if s is not AttemptState.QUEUED))


#: Pauses between tries when the database fails transiently (then the error reaches the Stasis app's log).
RETRY_DELAYS_S: tuple[float, ...] = (0.1, 0.5, 2.0)


def _default_on_ended() -> Callable[[int], None] | None:
    try:
        from campaigns.tasks import trigger_dispatch  # noqa: PLC0415 - optional, and Celery-heavy
    except ImportError:
        logger.warning("campaigns.tasks.trigger_dispatch is not available: no dispatch on call end")
        return None
    return trigger_dispatch


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

    ``pbx_ids`` scopes :meth:`live_call_ids` (None: all PBXs). ``on_ended(tenant_id)`` runs after an
    attempt's end committed; by default ``campaigns.tasks.trigger_dispatch`` when it exists.
    """

    def __init__(
        self,
        *,
        pbx_ids: Iterable[int] | None = None,
        on_ended: Callable[[int], None] | None = None,
        max_workers: int = 4,
    ) -> None:
        self.pbx_ids: frozenset[int] | None = frozenset(pbx_ids) if pbx_ids is not None else None
        self.on_ended = on_ended if on_ended is not None else _default_on_ended()
        self._on_ended_safe = self._wrap(self.on_ended) if self.on_ended is not None else None
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="attempt-sink")

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    @staticmethod
    def _wrap(on_ended: Callable[[int], None]) -> Callable[[int], None]:
        """The after-commit callback must not fail the event (the attempt already ended): a dispatch
        trigger that cannot be enqueued (broker down) is logged; the periodic sweep will dispatch."""

        def safe(tenant_id: int) -> None:
            try:
                on_ended(tenant_id)
            except Exception:  # the sweep is the guarantee (DESIGN.md §5 rule 3); logged with traceback
                logger.exception("on_ended(%s) failed; the periodic sweep will dispatch", tenant_id)

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
        attempt_id = _attempt_id(event.call_id)
        if attempt_id is None:
            logger.info("call event for %s, which is not an attempt id: %r", event.call_id, event)
            return
        # A transient database error (connection lost, failover, lock timeout) must not lose a call's end:
        # retry a few times. Safe because attempt_apply is one transaction and refuses a duplicate event.
        for delay in (*RETRY_DELAYS_S, None):
            try:
                await self._run(self._apply, attempt_id, event)
                return
            except (OperationalError, InterfaceError) as exc:
                if delay is None:
                    raise
                logger.warning("applying %r failed (%s); retrying in %.1fs", event, exc, delay)
                await asyncio.sleep(delay)

    async def live_call_ids(self) -> set[str]:
        return await self._run(self._live_call_ids)

    # ------------------------------------------------------------------------------- in the threads
    def _live_call_ids(self) -> set[str]:
        attempts = CallAttempt.objects.filter(state__in=PLACED_STATES)
        if self.pbx_ids is not None:
            attempts = attempts.filter(pbx_id__in=self.pbx_ids)
        return {str(pk) for pk in attempts.values_list("pk", flat=True)}

    def _apply(self, attempt_id: UUID, event: CallEvent) -> None:
        try:
            if isinstance(event, CallRinging):
                attempt_apply(attempt_id=attempt_id, event=Event.RINGING, at=event.at)
            elif isinstance(event, CallAnswered):
                attempt_apply(
                    attempt_id=attempt_id,
                    event=Event.ANSWERED,
                    at=event.at,
                    data={"channel_id": event.channel_id},
                )
            elif isinstance(event, CallBridged):
                attempt_apply(
                    attempt_id=attempt_id,
                    event=Event.BRIDGED,
                    at=event.at,
                    data={"media_uuid": event.media_uuid},
                )
            elif isinstance(event, CallEnded):
                attempt_apply(
                    attempt_id=attempt_id,
                    event=Event.ENDED,
                    at=event.at,
                    outcome=AttemptOutcome(event.outcome.value),
                    cause=event.cause,
                    cause_txt=event.cause_txt,
                    dialstatus=event.dialstatus,
                    tech_cause=event.tech_cause,
                    data={"reason": event.reason, "answered": event.answered},
                    on_ended=self._on_ended_safe,
                )
            elif isinstance(event, CallDtmf):
                self._note(attempt_id, event, "dtmf", {"digit": event.digit})
            elif isinstance(event, MediaGone):
                self._note(attempt_id, event, "media_gone", {})
        except CallAttempt.DoesNotExist:
            logger.warning("call event for unknown attempt %s: %r", attempt_id, event)

    @staticmethod
    def _note(attempt_id: UUID, event: CallDtmf | MediaGone, type_: str, data: dict[str, Any]) -> None:
        attempt = CallAttempt.objects.get(pk=attempt_id)
        attempt_event_append(attempt=attempt, kind=AttemptEvent.Kind.NOTE, type=type_, data=data, at=event.at)


def _attempt_id(call_id: str) -> UUID | None:
    try:
        return UUID(call_id)
    except ValueError:
        return None
