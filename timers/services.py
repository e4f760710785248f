"""Writes of durable timers (see timers/models.py for the guarantees).

* :func:`timer_set` creates or moves a timer (one upsert; a new token makes every earlier firing stale) and,
  after the commit, sends the ``timers.fire`` task with a countdown when the deadline is within
  ``settings.TIMERS_LOOKAHEAD_S``; a farther one is dispatched by the sweep when it comes that close.
* :func:`timer_cancel` cancels a pending timer.
* :func:`timer_fire` fires one timer if its token still matches: the conditional UPDATE ``pending → fired``
  and the handler's writes commit together, or not at all (then the sweep tries again).
* :func:`timers_sweep` (beat, every ``settings.TIMERS_SWEEP_S``) sends the fire tasks of the timers due
  within the look-ahead that have none yet (:func:`timers_dispatch`: short countdowns only, spread over the
  workers), then fires every overdue pending timer itself, claiming each with
  ``SELECT … FOR UPDATE SKIP LOCKED`` so concurrent sweeps and fire tasks never wait for each other nor fire
  one timer twice.

Handlers are named per kind in ``settings.TIMER_HANDLERS`` (dotted paths: this app imports no domain app)
and called as ``handler(timer=timer)`` inside the firing's transaction, with ``timer.fired_at`` = now. A
handler may set timers (its own key too: setting the fired timer again re-arms it with a new token).
A handler that raises rolls its writes back; the timer stays pending, its deadline moves back by a short
backoff and its error is recorded.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from timers.models import Timer

logger = logging.getLogger(__name__)

FIRE_TASK = "timers.fire"

FIRED = "fired"
STALE = "stale"  # moved, cancelled, fired already, or unknown: nothing to do
EARLY = "early"  # not due yet (a countdown ran early): fire again later
FAILED = "failed"  # the handler raised: rolled back, retried by the sweep after a backoff

#: Backoff after a handler failure: min(cap, base * 2**failures) seconds.
FAILURE_BACKOFF_BASE_S = 1.0
FAILURE_BACKOFF_CAP_S = 60.0

Handler = Callable[..., Any]


def send_fire(timer_id: int, token: str, countdown: float) -> None:
    """Send the ``timers.fire`` task (by name: the tasks module imports this one). Tests replace it."""
    options: dict[str, Any] = {"countdown": countdown} if countdown > 0 else {}
    current_app.send_task(FIRE_TASK, args=(timer_id, token), **options)


def _schedule(timer_id: int, token: str, due_at: datetime) -> None:
    """After the commit: the fire task, with a countdown to the deadline. A send that fails (the broker
    down) is covered by the sweep, which fires the timer once it is overdue."""
    try:
        send_fire(timer_id, token, max(0.0, (due_at - timezone.now()).total_seconds()))
    except Exception as exc:  # noqa: BLE001 - the broker being down must not fail the caller: the sweep fires it
        logger.warning("timer %s: fire task not sent (%s); the sweep will fire it", timer_id, exc)


def _near(due_at: datetime, now: datetime) -> bool:
    """Whether a timer due then gets its fire task now (else the sweep sends it when it comes this close)."""
    return (due_at - now).total_seconds() <= settings.TIMERS_LOOKAHEAD_S


def timer_set(*, kind: str, key: str, due_at: datetime, payload: dict[str, Any] | None = None) -> Timer:
    """Create the timer ``key`` or move it (pending again, new deadline, new token, new payload)."""
    if kind not in settings.TIMER_HANDLERS:
        raise ValueError(f"no handler for timer kind {kind!r} (settings.TIMER_HANDLERS)")
    token = uuid.uuid4()
    now = timezone.now()
    near = _near(due_at, now)
    (timer,) = Timer.objects.bulk_create(
        [
            Timer(
                kind=kind, key=key, due_at=due_at, token=token, payload=payload or {},
                dispatched_at=now if near else None,
            )
        ],
        update_conflicts=True,
        unique_fields=["key"],
        update_fields=[
            "kind", "due_at", "token", "state", "payload", "fired_at", "failures", "last_error",
            "dispatched_at",
        ],
    )  # fmt: skip
    if timer.pk is None:  # not every backend returns the id of an upserted row
        timer = Timer.objects.get(key=key)
    if near:
        timer_id, token_text = timer.pk, str(token)
        transaction.on_commit(lambda: _schedule(timer_id, token_text, due_at))
    return timer


def timer_cancel(*, key: str) -> bool:
    """Cancel the pending timer ``key``; False when there is none pending."""
    return bool(
        Timer.objects.filter(key=key, state=Timer.State.PENDING).update(
            state=Timer.State.CANCELLED, token=uuid.uuid4()
        )
    )


def timers_cancel_prefix(*, prefix: str) -> int:
    """Cancel every pending timer whose key starts with ``prefix``; returns how many."""
    return Timer.objects.filter(key__startswith=prefix, state=Timer.State.PENDING).update(
        state=Timer.State.CANCELLED, token=uuid.uuid4()
    )


def _handler(kind: str) -> Handler:
    path = settings.TIMER_HANDLERS.get(kind)
    if not path:
        raise LookupError(f"no handler for timer kind {kind!r}")
    handler: Handler = import_string(path)
    return handler


def _record_failure(timer_id: int, token: uuid.UUID, exc: Exception) -> None:
    timer = Timer.objects.filter(pk=timer_id).only("failures").first()
    failures = timer.failures if timer else 0
    backoff = min(FAILURE_BACKOFF_CAP_S, FAILURE_BACKOFF_BASE_S * 2**failures)
    Timer.objects.filter(pk=timer_id, token=token, state=Timer.State.PENDING).update(
        failures=F("failures") + 1,
        last_error=f"{type(exc).__name__}: {exc}"[:2000],
        due_at=timezone.now() + timedelta(seconds=backoff),
    )


def timer_fire(*, timer_id: int, token: str | uuid.UUID, now: datetime | None = None) -> tuple[str, float]:
    """Fire the timer if it is pending with this token and due; returns (result, seconds until due when
    :data:`EARLY`). A duplicate or stale firing returns :data:`STALE` and changes nothing."""
    now = now or timezone.now()
    try:
        token_uuid = uuid.UUID(str(token))
    except ValueError:
        return STALE, 0.0
    try:
        with transaction.atomic():
            # The claim: one conditional UPDATE. A concurrent firing of the same timer waits on the row lock
            # and then finds it fired (PostgreSQL re-evaluates the WHERE on the new row version).
            claimed = Timer.objects.filter(
                pk=timer_id, token=token_uuid, state=Timer.State.PENDING, due_at__lte=now
            ).update(state=Timer.State.FIRED, fired_at=now)
            if not claimed:
                pending = (
                    Timer.objects.filter(pk=timer_id, token=token_uuid, state=Timer.State.PENDING)
                    .values_list("due_at", flat=True)
                    .first()
                )
                if pending is not None:
                    return EARLY, max(0.0, (pending - now).total_seconds())
                return STALE, 0.0
            timer = Timer.objects.get(pk=timer_id)
            _handler(timer.kind)(timer=timer)
    except Exception as exc:  # noqa: BLE001 - any handler failure: rolled back, recorded, retried later
        logger.exception("timer %s: handler failed", timer_id)
        _record_failure(timer_id, token_uuid, exc)
        return FAILED, 0.0
    return FIRED, 0.0


def timers_dispatch(*, now: datetime | None = None, limit: int = 5000) -> int:
    """Send the fire task of every pending timer due within ``settings.TIMERS_LOOKAHEAD_S`` that has none
    for its token yet (one ``dispatched_at`` per token); returns how many were sent. The rows are marked in
    one short transaction (SKIP LOCKED: a timer being fired or moved right now is left alone) and the tasks
    sent after its commit: a crash in between loses the messages, and the sweep fires those timers once they
    are overdue."""
    now = now or timezone.now()
    horizon = now + timedelta(seconds=settings.TIMERS_LOOKAHEAD_S)
    with transaction.atomic():
        rows = list(
            Timer.objects.select_for_update(skip_locked=True)
            .filter(state=Timer.State.PENDING, dispatched_at__isnull=True, due_at__lte=horizon)
            .order_by("due_at", "pk")
            .values_list("pk", "token", "due_at")[:limit]
        )
        if rows:
            Timer.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(dispatched_at=now)
    for pk, token, due_at in rows:
        _schedule(pk, str(token), due_at)
    return len(rows)


def timers_sweep(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Dispatch the timers coming due (:func:`timers_dispatch`), then fire overdue pending timers (oldest
    first), at most ``limit``; returns how many fired.

    Each overdue timer is claimed and fired in a transaction of its own, with SKIP LOCKED: a timer being
    fired by its fire task or by another sweep right now is left to it.
    """
    timers_dispatch(now=now)
    fired = 0
    cutoff = now
    for _ in range(limit):
        moment = cutoff or timezone.now()
        with transaction.atomic():
            timer = (
                Timer.objects.select_for_update(skip_locked=True)
                .filter(state=Timer.State.PENDING, due_at__lte=moment)
                .order_by("due_at", "pk")
                .first()
            )
            if timer is None:
                break
            token = timer.token
            try:
                with transaction.atomic():
                    Timer.objects.filter(pk=timer.pk).update(state=Timer.State.FIRED, fired_at=moment)
                    timer.state, timer.fired_at = Timer.State.FIRED, moment
                    _handler(timer.kind)(timer=timer)
            except Exception as exc:  # noqa: BLE001 - one timer's failure must not stop the sweep
                logger.exception("timer %s (%s): handler failed in the sweep", timer.pk, timer.key)
                _record_failure(timer.pk, token, exc)
                continue
        fired += 1
    if fired:
        logger.info("timers sweep fired %d overdue timer(s)", fired)
    return fired
