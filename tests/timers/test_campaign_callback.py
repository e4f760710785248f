"""Campaign callbacks ("call me back at 3") share the durable timers: the lead's next_due_at stays the truth
(the dispatch sweep dials it when due), and a ``campaigns.callback`` timer starts the tenant's dispatch pass
at the callback time, fired by the timers sweep even when its countdown message was lost."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from campaigns.services import agent_actions
from campaigns.services.agent_actions import attempt_schedule_callback
from tests.campaigns.test_dispatch import claimed_attempt
from timers import services as timer_services
from timers.models import Timer
from timers.services import timers_sweep


@pytest.mark.django_db(transaction=True)
def test_a_callback_arms_a_timer_that_kicks_the_tenants_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timer_services, "send_fire", lambda *args: None)  # the countdown message is lost
    passes: list[Any] = []
    monkeypatch.setattr(
        agent_actions, "dispatch_passes_request", lambda **kwargs: passes.append(kwargs["tenant_ids"])
    )
    attempt = claimed_attempt()
    when = timezone.now() + timedelta(hours=2)
    assert attempt_schedule_callback(attempt_id=attempt.pk, tenant_id=attempt.tenant_id, at=when.isoformat())
    timer = Timer.objects.get(key=f"campaigns.callback:lead:{attempt.lead_id}")
    assert (timer.kind, timer.due_at, timer.state) == ("campaigns.callback", when, "pending")
    later = when + timedelta(minutes=30)
    assert attempt_schedule_callback(attempt_id=attempt.pk, tenant_id=attempt.tenant_id, at=later.isoformat())
    assert Timer.objects.filter(kind="campaigns.callback").count() == 1  # moved, not doubled
    assert timers_sweep(now=when) == 0
    assert timers_sweep(now=later) == 1
    assert passes == [[attempt.tenant_id]]
    assert timers_sweep(now=later + timedelta(hours=1)) == 0
