from __future__ import annotations

from datetime import timedelta

import pytest
from celery.schedules import schedule as interval_schedule
from django.conf import settings

from orchestrator.celery import BEAT_SCHEDULE, app, every


def test_messages_are_json_only():
    conf = app.conf
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert list(conf.result_accept_content) == ["json"]


def test_delivery_is_at_least_once_one_message_at_a_time():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1


def test_time_limits_and_visibility_timeout_are_consistent():
    conf = app.conf
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    # A running task must never be redelivered to a second worker just for running long.
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit


def test_broker_and_results_come_from_redis_url():
    assert app.conf.broker_url == settings.CELERY_BROKER_URL
    assert app.conf.result_backend == settings.CELERY_RESULT_BACKEND


def _period(entry_schedule: object) -> timedelta:
    if isinstance(entry_schedule, timedelta):
        return entry_schedule
    if isinstance(entry_schedule, int | float):
        return timedelta(seconds=entry_schedule)
    if isinstance(entry_schedule, interval_schedule):
        return timedelta(seconds=entry_schedule.seconds)
    # A crontab or solar entry needs its own period computation here before it can be added.
    raise AssertionError(f"unsupported schedule type {type(entry_schedule)!r}")


def test_every_beat_entry_expires_before_its_next_run():
    schedule = app.conf.beat_schedule
    assert schedule == BEAT_SCHEDULE
    assert schedule, "the beat schedule is empty"
    for name, entry in schedule.items():
        expires = entry.get("options", {}).get("expires")
        assert expires is not None, f"{name} has no expires option"
        assert 0 < expires < _period(entry["schedule"]).total_seconds(), name


def test_every_beat_entry_names_a_registered_task():
    app.loader.import_default_modules()
    for name, entry in app.conf.beat_schedule.items():
        assert entry["task"] in app.tasks, name


def test_heartbeat_runs_every_30_s_and_expires_after_25_s():
    entry = app.conf.beat_schedule["heartbeat"]
    assert entry["task"] == "orchestrator.tasks.heartbeat"
    assert _period(entry["schedule"]) == timedelta(seconds=30)
    assert entry["options"]["expires"] == 25


@pytest.mark.parametrize("expires", [0, -1, 30, 31])
def test_every_refuses_an_expiry_outside_the_period(expires):
    with pytest.raises(ValueError, match="expires"):
        every(30, "orchestrator.tasks.heartbeat", expires=expires)
