"""Durable timers with real processes: an escalation whose countdown messages were never sent (the worker
that would have sent them died; the broker lost them) still steps, exactly once per step, because beat's
``timers.sweep`` fires every overdue timer from the database within its period."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from flows.models import Incident, IncidentEvent, OnCallPerson
from flows.services.escalation import STEP_KIND, incident_timer_key
from tests.campaigns.factories import make_tenant
from tests.e2e.stack import Stack, wait_for
from timers import services as timer_services
from timers.models import Timer
from timers.services import timer_set

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgres]


def test_the_sweep_fires_overdue_steps_after_a_restart_exactly_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timer_services, "send_fire", lambda *args: None)  # no countdown message at all
    tenant = make_tenant()
    person = OnCallPerson.objects.create(tenant=tenant, name="Alice", phone="+15550000001")
    step = {
        "position": 0,
        "target_kind": "person",
        "target_id": person.pk,
        "people": [person.pk],
        "notify_call": False,
        "notify_sms": True,
        "wait_s": 2,
    }
    snapshot = {
        "policy_id": None,
        "name": "p",
        "repeat": 1,
        "steps": [step],
        "fallback": {"people": [], "sms": "", "callback": False},
    }
    incident = Incident.objects.create(
        tenant=tenant,
        short_code="12345",
        caller_number="+12125550100",
        summary="no heat",
        policy_snapshot=snapshot,
    )
    due = timezone.now() - timedelta(seconds=30)  # overdue while nothing ran
    timer_set(
        kind=STEP_KIND,
        key=incident_timer_key(incident.pk),
        due_at=due,
        payload={"incident_id": incident.pk, "round": 0, "step": 0},
    )

    stack.start_worker(env={"TIMERS_SWEEP_S": "1"}, concurrency=2)
    stack.start_worker(name="worker2", env={"TIMERS_SWEEP_S": "1"}, concurrency=2)
    started = time.monotonic()
    stack.start_beat()
    # A step each 2 s, then the fallback; each fired by a worker from the countdown sent by the step
    # before it, or by the sweep.
    wait_for(
        lambda: Incident.objects.get(pk=incident.pk).status == "exhausted", timeout=40, what="the fallback"
    )
    assert time.monotonic() - started < 30
    fired = list(
        IncidentEvent.objects.filter(incident=incident, kind="step_fired")
        .order_by("at")
        .values_list("round", "step")
    )
    assert fired == [(0, 0), (1, 0)]
    assert IncidentEvent.objects.filter(incident=incident, kind="exhausted").count() == 1
    assert Timer.objects.get(key=incident_timer_key(incident.pk)).state == "fired"
