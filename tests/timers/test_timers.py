"""Durable timers: a firing acts once whatever fires it (its countdown task, a duplicate, the sweep), a stale
firing (moved, cancelled) does nothing, a failing handler rolls back and is retried, and the sweep fires
what is overdue after a restart, with no countdown message at all."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction

from timers import services
from timers.models import Timer
from timers.services import EARLY, FAILED, FIRED, STALE, timer_cancel, timer_fire, timer_set, timers_sweep

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CALLS: list[dict[str, Any]] = []


def record(*, timer: Timer) -> None:
    CALLS.append({"key": timer.key, "payload": timer.payload, "fired_at": timer.fired_at})


def explode(*, timer: Timer) -> None:
    Timer.objects.create(kind="test.record", key=f"side-effect-{timer.pk}", due_at=NOW)
    raise RuntimeError("boom")


@pytest.fixture(autouse=True)
def _handlers(settings: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, float]]:
    settings.TIMER_HANDLERS = {
        **settings.TIMER_HANDLERS,
        "test.record": "tests.timers.test_timers.record",
        "test.explode": "tests.timers.test_timers.explode",
    }
    CALLS.clear()
    sent: list[tuple[int, str, float]] = []
    monkeypatch.setattr(services, "send_fire", lambda *args: sent.append(args))
    return sent


@pytest.mark.django_db
def test_set_fire_once_and_duplicates_do_nothing(
    django_capture_on_commit_callbacks: Any, _handlers: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        timer = timer_set(kind="test.record", key="k1", due_at=NOW, payload={"a": 1})
    # Due in the past: the countdown task is sent at once (countdown 0).
    assert _handlers == [(timer.pk, str(timer.token), 0.0)]
    assert timer_fire(timer_id=timer.pk, token=timer.token, now=NOW) == (FIRED, 0.0)
    assert timer_fire(timer_id=timer.pk, token=timer.token, now=NOW) == (STALE, 0.0)
    assert timers_sweep(now=NOW + timedelta(hours=1)) == 0
    assert [c["key"] for c in CALLS] == ["k1"] and CALLS[0]["payload"] == {"a": 1}


@pytest.mark.django_db
def test_moving_a_timer_makes_the_old_token_stale_and_early_firings_wait() -> None:
    old = timer_set(kind="test.record", key="k2", due_at=NOW)
    old_token = old.token
    moved = timer_set(kind="test.record", key="k2", due_at=NOW + timedelta(seconds=60))
    assert moved.pk == old.pk and moved.token != old_token
    assert timer_fire(timer_id=old.pk, token=old_token, now=NOW + timedelta(seconds=90))[0] == STALE
    result, remaining = timer_fire(timer_id=moved.pk, token=moved.token, now=NOW + timedelta(seconds=10))
    assert result == EARLY and remaining == pytest.approx(50)
    assert timer_fire(timer_id=moved.pk, token=moved.token, now=NOW + timedelta(seconds=60))[0] == FIRED
    assert len(CALLS) == 1


@pytest.mark.django_db
def test_a_cancelled_timer_never_fires() -> None:
    timer = timer_set(kind="test.record", key="k3", due_at=NOW)
    assert timer_cancel(key="k3") is True and timer_cancel(key="k3") is False
    assert timer_fire(timer_id=timer.pk, token=timer.token, now=NOW)[0] == STALE
    assert timers_sweep(now=NOW + timedelta(days=1)) == 0 and CALLS == []


@pytest.mark.django_db
def test_a_failing_handler_rolls_back_and_is_retried_after_a_backoff() -> None:
    timer = timer_set(kind="test.explode", key="k4", due_at=NOW)
    assert timer_fire(timer_id=timer.pk, token=timer.token, now=NOW)[0] == FAILED
    timer.refresh_from_db()
    assert timer.state == Timer.State.PENDING and timer.failures == 1 and "boom" in timer.last_error
    assert not Timer.objects.filter(key__startswith="side-effect").exists()  # the handler's write rolled back


@pytest.mark.django_db
def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="no handler"):
        timer_set(kind="nope", key="k5", due_at=NOW)


@pytest.mark.django_db
def test_sweep_fires_overdue_timers_after_a_restart_with_no_countdown_message() -> None:
    # Timers whose countdown messages were lost (nothing was sent: the broker forgot them): only the rows.
    for i in range(5):
        timer_set(kind="test.record", key=f"lost-{i}", due_at=NOW + timedelta(seconds=i))
    timer_set(kind="test.record", key="later", due_at=NOW + timedelta(minutes=10))
    assert timers_sweep(now=NOW + timedelta(seconds=4)) == 5
    assert [c["key"] for c in CALLS] == [f"lost-{i}" for i in range(5)]
    assert timers_sweep(now=NOW + timedelta(seconds=5)) == 0
    assert Timer.objects.get(key="later").state == Timer.State.PENDING


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_firings_of_one_timer_fire_it_once() -> None:
    timer = timer_set(kind="test.record", key="race", due_at=NOW)
    results: list[str] = []
    barrier = threading.Barrier(6)

    def fire() -> None:
        try:
            barrier.wait()
            results.append(timer_fire(timer_id=timer.pk, token=timer.token, now=NOW)[0])
        finally:
            connection.close()

    def sweep() -> None:
        try:
            barrier.wait()
            results.append(f"sweep:{timers_sweep(now=NOW)}")
        finally:
            connection.close()

    threads = [threading.Thread(target=fire) for _ in range(4)] + [
        threading.Thread(target=sweep) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(CALLS) == 1, results
    assert results.count(FIRED) + results.count("sweep:1") == 1


@pytest.mark.django_db
def test_a_handler_may_rearm_its_own_timer() -> None:
    timer = timer_set(kind="test.record", key="again", due_at=NOW)
    with transaction.atomic():
        assert timer_fire(timer_id=timer.pk, token=timer.token, now=NOW)[0] == FIRED
        rearmed = timer_set(kind="test.record", key="again", due_at=NOW + timedelta(seconds=30))
    assert rearmed.pk == timer.pk and Timer.objects.get(pk=timer.pk).state == Timer.State.PENDING


@pytest.mark.django_db
def test_no_countdown_is_ever_long_the_sweep_dispatches_each_token_once(
    django_capture_on_commit_callbacks: Any, _handlers: Any, settings: Any
) -> None:
    """A worker holds its countdown messages in memory until they are due: a far deadline gets no message at
    set time; the sweep sends it once the deadline is within the look-ahead, once per token."""
    settings.TIMERS_LOOKAHEAD_S = 3.0
    due = datetime.now(UTC) + timedelta(seconds=120)
    with django_capture_on_commit_callbacks(execute=True):
        timer = timer_set(kind="test.record", key="far", due_at=due)
    assert _handlers == []
    assert services.timers_dispatch(now=due - timedelta(seconds=10)) == 0
    assert services.timers_dispatch(now=due - timedelta(seconds=2)) == 1
    assert services.timers_dispatch(now=due - timedelta(seconds=1)) == 0  # once per token
    [(timer_id, token, countdown)] = _handlers
    assert (timer_id, token) == (timer.pk, str(timer.token)) and 0 < countdown <= 120
    # Moved: a new token, dispatched again when it comes near; the old message is stale.
    later = due + timedelta(seconds=60)
    with django_capture_on_commit_callbacks(execute=True):
        moved = timer_set(kind="test.record", key="far", due_at=later)
    assert services.timers_dispatch(now=later - timedelta(seconds=1)) == 1
    assert _handlers[-1][:2] == (moved.pk, str(moved.token))
    assert timer_fire(timer_id=timer.pk, token=token, now=later)[0] == STALE
    # The message of the moved timer lost (a worker killed with -9): the sweep fires it once overdue.
    assert timers_sweep(now=later + timedelta(seconds=1)) == 1
    assert [c["key"] for c in CALLS] == ["far"]
