"""Failures, end to end on real processes: a Celery worker killed with SIGKILL in the middle of its work, and
the Stasis app's events websocket cut off for 10 s while calls end."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.lifecycle import AttemptOutcome, AttemptState
from campaigns.models import AttemptEvent, CallAttempt, Campaign, Lead
from campaigns.services.campaigns import campaign_start
from campaigns.services.contacts import lead_add
from tests.campaigns.factories import make_campaign, make_contact, make_tenant
from tests.e2e.stack import Proc, Stack, wait_for, zone_where_it_is
from tests.e2e.test_campaigns import ALL_DAY, LiveSampler, sim_pbx

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]


def campaign_of(stack: Stack, *, cap: int, leads: int, first: int = 0) -> tuple[int, Campaign]:
    tenant = make_tenant(max_concurrent_calls=cap, calls_per_second=100)
    pbx = sim_pbx(stack, tenant)
    campaign = make_campaign(
        tenant,
        calling_windows=ALL_DAY,
        ring_timeout=5,
        max_attempts=3,
        retry_delays={AttemptOutcome.ERROR: 1, AttemptOutcome.FAILED: 1},
    )
    zone = zone_where_it_is(14)
    for n in range(first, first + leads):
        lead_add(campaign=campaign, contact=make_contact(tenant, f"+1212555{n:04d}", timezone=zone))
    campaign_start(campaign=campaign)
    return pbx.pk, campaign


def all_done(campaign: Campaign) -> bool:
    return not Lead.objects.filter(campaign=campaign).exclude(status=Lead.Status.DONE).exists()


_TASK_LINE = re.compile(r"Task (\S+)\[([0-9a-f-]{36})\] (received|succeeded|retry|raised|failed)")


def tasks_in_hand(proc: Proc, task_name: str) -> set[str]:
    """Ids of the ``task_name`` tasks the worker's log shows received and not finished: in its hands now."""
    received: set[str] = set()
    finished: set[str] = set()
    for name, task_id, what in _TASK_LINE.findall(proc.log.read_text(errors="replace")):
        if name == task_name:
            (received if what == "received" else finished).add(task_id)
    return received - finished


def kill_mid_task(proc: Proc, task_name: str, *, timeout: float = 30) -> set[str]:
    """SIGKILL the worker at a moment its log shows a ``task_name`` task received and not finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        in_hand = tasks_in_hand(proc, task_name)
        if in_hand:
            proc.kill9()
            return in_hand
        time.sleep(0.002)
    raise AssertionError(f"{proc.name} never had a {task_name} in hand")


def test_workers_killed_with_sigkill_mid_work_lose_nothing_and_dial_nothing_twice(stack: Stack) -> None:
    # Every callee answers at once and hangs up 0.3 s later: a steady stream of dispatches and originates.
    stack.start_sim({"default": {"behaviour": "answer", "after": 0.1, "hangup_after": 0.3}})
    pbx_id, campaign = campaign_of(stack, cap=8, leads=160)
    # Queued attempts whose task died with a worker are resumed after 5 s (instead of the default minute).
    stack.env["ATTEMPT_STALL_S"] = "5"
    stack.start_media_sink()
    stack.start_stasis(pbx_id)
    stack.wait_stasis_connected()
    workers = {name: stack.start_worker(name, concurrency=4) for name in ("worker1", "worker2")}
    stack.start_beat()

    interrupted: list[set[str]] = []
    # A dispatch task claims leads and then originates them itself: killed in its hands, it may die in the
    # claim transaction, between the commit and the POST, during the POST, or before recording its answer.
    kills = [(name, "campaigns.tasks.dispatch_tenant_task") for name in ("worker1", "worker2") * 2]
    for round_, (name, task_name) in enumerate(kills):
        wait_for(
            lambda n=round_: CallAttempt.objects.filter(campaign=campaign).count() >= 20 * (n + 1),
            timeout=60,
            what="the campaign to make progress",
        )
        interrupted.append(kill_mid_task(workers[name], task_name))
        workers[name] = stack.start_worker(f"{name}-{round_ + 2}", concurrency=4)
    wait_for(lambda: all_done(campaign), timeout=120, what="every lead to be done", interval=0.5)

    assert all(interrupted), interrupted  # each kill really hit a worker holding tasks
    with stack.sim() as sim:
        calls = sim.get("/sim/calls", params={"state": "all"}).json()["calls"]
    # Nothing dialed twice: one call per channel id, and one call per number (every callee answers, so one
    # attempt each is all it takes).
    ids = Counter(call["id"] for call in calls)
    assert ids and max(ids.values()) == 1
    numbers = Counter(call["number"] for call in calls)
    assert len(numbers) == 160 and set(numbers.values()) == {1}, numbers.most_common(3)
    # Nothing lost: every lead done with its one answered attempt, nothing left live.
    attempts = CallAttempt.objects.filter(campaign=campaign)
    assert not attempts.exclude(state=AttemptState.ENDED).exists()
    answered = attempts.filter(outcome=AttemptOutcome.ANSWERED)
    assert answered.count() == 160
    assert {str(pk) for pk in answered.values_list("pk", flat=True)} == set(ids)
    assert set(Lead.objects.filter(campaign=campaign).values_list("done_reason", flat=True)) == {"success"}
    resumed = sum(p.log.read_text(errors="replace").count("stalled queued attempt") for p in stack.procs)
    print(f"kills interrupted {[len(i) for i in interrupted]} tasks; resumes that found work: {resumed}")


def test_a_10s_events_outage_is_reconciled_and_frees_the_slots(stack: Stack) -> None:
    # Calls last 2 s: the ones up when the outage starts end while the Stasis app hears nothing.
    stack.start_sim({"default": {"behaviour": "answer", "after": 0.2, "hangup_after": 2.0}})
    pbx_id, campaign = campaign_of(stack, cap=3, leads=12)
    stack.start_media_sink()
    stack.start_stasis(pbx_id)
    stack.wait_stasis_connected()
    stack.start_worker("worker", concurrency=4)
    stack.start_beat()
    sampler = LiveSampler(stack, key=lambda call: "tenant")
    sampler.start()
    try:
        live_in_db = CallAttempt.objects.filter(campaign=campaign, state=AttemptState.BRIDGED)
        wait_for(lambda: live_in_db.count() == 3, timeout=30, what="three bridged calls")
        cut_off = set(live_in_db.values_list("pk", flat=True))
        with stack.sim() as sim:
            outage_start = datetime.now(UTC)
            assert sim.post("/sim/events/outage", json={"seconds": 10}).json()["closed"] == 1

            # The calls end during the outage; the orchestrator cannot know, so the slots stay taken.
            wait_for(lambda: not sim.get("/sim/calls", params={"state": "live"}).json()["calls"],
                     timeout=8, what="the calls to end on the PBX")  # fmt: skip
            time.sleep(2)
            assert (
                set(
                    CallAttempt.objects.filter(campaign=campaign, state=AttemptState.BRIDGED).values_list(
                        "pk", flat=True
                    )
                )
                == cut_off
            )
            assert not sim.get("/sim/calls", params={"state": "live"}).json()["calls"]  # nothing new dialed

        # The app reconnects after the outage, reconciles, and the campaign goes on to the end.
        wait_for(lambda: all_done(campaign), timeout=90, what="every lead to be done", interval=0.5)
    finally:
        sampler.stop()

    assert sampler.peak["tenant"] <= 3
    for attempt in CallAttempt.objects.filter(pk__in=cut_off):
        assert attempt.state == AttemptState.ENDED
        assert attempt.outcome == AttemptOutcome.ANSWERED  # what was known before the gap
        assert attempt.ended_at is not None and attempt.ended_at - outage_start >= timedelta(seconds=10)
        end = AttemptEvent.objects.get(attempt=attempt, kind=AttemptEvent.Kind.STATE, type="bridged->ended")
        assert end.data["data"]["reason"] == "reconciled"
    # The freed slots were used: every lead was called once and answered.
    assert CallAttempt.objects.filter(campaign=campaign, outcome=AttemptOutcome.ANSWERED).count() == 12
