"""Celery tasks of the durable timers: thin, safe to run twice (a stale or duplicate firing does nothing).

* ``timers.fire(timer_id, token)``: sent after the commit of :func:`timers.services.timer_set` with a
  countdown when the deadline is near. Run early (clock skew between hosts), it sends itself again.
* ``timers.sweep`` (beat, every ``settings.TIMERS_SWEEP_S``): fires every overdue pending timer. It is the
  guarantee: a lost countdown message (a worker killed with ``-9``, a broker restart) costs at most one
  sweep period.
"""

from __future__ import annotations

from celery import shared_task

from timers.services import EARLY, send_fire, timer_fire, timers_sweep


@shared_task(name="timers.fire", ignore_result=True)
def fire(timer_id: int, token: str) -> str:
    result, remaining = timer_fire(timer_id=timer_id, token=token)
    if result == EARLY:
        send_fire(timer_id, token, remaining)
    return result


@shared_task(name="timers.sweep", ignore_result=True)
def sweep() -> int:
    return timers_sweep()
