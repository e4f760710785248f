"""Celery tasks of the durable timers: thin, safe to run twice (a stale or duplicate firing does nothing).

* ``timers.fire(timer_id, token)``: sent with a short countdown when the deadline is within
  ``TIMERS_LOOKAHEAD_S`` (by :func:`timers.services.timer_set` after its commit, or by the sweep). Run
  early (clock skew between hosts), it sends itself again.
* ``timers.sweep`` (beat, every ``settings.TIMERS_SWEEP_S``): sends the fire tasks of the timers coming
  due and fires every overdue pending timer. It is the guarantee: a lost countdown message (a worker killed
  with ``-9``, a broker restart) costs at most one sweep period.
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
