"""AttemptEventSink: call events from the Stasis app applied to real attempts and leads (in its threads)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, TypeVar

import aiohttp
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError

from campaigns import sink as campaigns_sink
from campaigns.lifecycle import AttemptState
from campaigns.models import CallAttempt, Lead
from campaigns.services.dispatch import dispatch_tenant
from campaigns.sink import AttemptEventSink, pbx_ids_sharing_app
from orchestrator.sink import CallEventRouter
from telephony.events import (
    CallAnswered,
    CallBridged,
    CallDtmf,
    CallEnded,
    CallEvent,
    CallRinging,
    CallTransferred,
    MediaGone,
)
from telephony.outcomes import CallOutcome
from telephony.sim.plan import parse_plan
from telephony.stasis import StasisApp, StasisConfig
from tests.campaigns.factories import make_pbx, make_tenant
from tests.campaigns.test_dispatch import NOW, due_leads, live_attempt, running_campaign
from tests.orm import in_thread
from tests.telephony.sim.conftest import APP, PASSWORD, USER, MediaServer, start_sim

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")


class Ended:
    def __init__(self) -> None:
        self.tenants: list[int] = []

    def __call__(self, tenant_id: int) -> None:
        self.tenants.append(tenant_id)


@pytest.fixture
def ended() -> Ended:
    return Ended()


@pytest.fixture
def sink(ended: Ended) -> Iterator[AttemptEventSink]:
    s = AttemptEventSink(on_ended=ended)
    yield s
    s.close()


def claimed_attempt() -> CallAttempt:
    tenant = make_tenant(max_concurrent_calls=5)
    make_pbx(tenant)
    campaign = running_campaign(tenant, max_attempts=3, retry_delays={"busy": 600})
    due_leads(campaign, 1)
    (attempt_id,) = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
    return CallAttempt.objects.get(pk=attempt_id)


async def test_busy_call_ends_and_the_lead_is_retried(sink: AttemptEventSink, ended: Ended) -> None:
    attempt = await in_thread(claimed_attempt)
    call_id = str(attempt.pk)

    await sink.handle(CallRinging(call_id, NOW + timedelta(seconds=1)))
    await sink.handle(
        CallEnded(
            call_id,
            NOW + timedelta(seconds=3),
            CallOutcome.BUSY,
            cause=0,
            dialstatus="BUSY",
            reason="destroyed",
        )
    )

    attempt = await in_thread(lambda: CallAttempt.objects.select_related("lead").get(pk=attempt.pk))
    assert attempt.state == AttemptState.ENDED and attempt.outcome == "busy" and attempt.dialstatus == "BUSY"
    assert attempt.ringing_at == NOW + timedelta(seconds=1) and attempt.answered_at is None
    lead = attempt.lead
    assert lead.status == Lead.Status.WAITING and lead.attempts == 1 and lead.last_outcome == "busy"
    assert lead.next_due_at is not None and lead.next_due_at >= NOW + timedelta(seconds=600)
    assert ended.tenants == [attempt.tenant_id]


async def test_answered_bridged_ended_call_finishes_the_lead(sink: AttemptEventSink, ended: Ended) -> None:
    attempt = await in_thread(claimed_attempt)
    call_id = str(attempt.pk)

    await sink.handle(CallAnswered(call_id, call_id, NOW + timedelta(seconds=2)))
    await sink.handle(
        CallBridged(call_id, "0b6f4a38-5d7e-4b8e-9f8e-1b6f0a4a3c11", NOW + timedelta(seconds=3))
    )
    await sink.handle(CallDtmf(call_id, "5", NOW + timedelta(seconds=5)))
    await sink.handle(MediaGone(call_id, NOW + timedelta(seconds=6)))
    end = CallEnded(
        call_id,
        NOW + timedelta(seconds=12),
        CallOutcome.ANSWERED,
        cause=16,
        cause_txt="Normal Clearing",
        answered=True,
        reason="destroyed",
    )
    await sink.handle(end)
    await sink.handle(
        CallEnded(call_id, NOW + timedelta(seconds=13), CallOutcome.FAILED, reason="reconciled")
    )

    attempt = await in_thread(lambda: CallAttempt.objects.select_related("lead").get(pk=attempt.pk))
    assert attempt.state == AttemptState.ENDED and attempt.outcome == "answered"
    assert attempt.cause == 16 and attempt.duration_s == 10.0
    assert attempt.lead.status == Lead.Status.DONE and attempt.lead.attempts == 1
    log = await in_thread(lambda: list(attempt.events.values_list("kind", "type", "data")))
    kinds = [(k, t) for k, t, _ in log]
    assert kinds == [
        ("state", "created"),
        ("state", "queued->answered"),
        ("state", "answered->bridged"),
        ("note", "dtmf"),
        ("note", "media_gone"),
        ("state", "bridged->ended"),
        ("note", "refused:ended"),  # the late duplicate end changed nothing
    ]
    assert log[3][2] == {"digit": "5"}
    assert log[5][2]["data"] == {"reason": "destroyed", "answered": True}
    assert ended.tenants == [attempt.tenant_id]


async def test_events_for_unknown_or_foreign_ids_are_dropped(
    sink: AttemptEventSink, ended: Ended, caplog: pytest.LogCaptureFixture
) -> None:
    attempt = await in_thread(claimed_attempt)  # a real live attempt, which none of these events may touch

    def snapshot() -> tuple[int, list[tuple[Any, ...]]]:
        rows = CallAttempt.objects.order_by("pk").values_list("pk", "state", "outcome", "ended_at")
        return CallAttempt.objects.count(), [tuple(row) for row in rows]

    def event_log() -> list[tuple[str, str]]:
        return list(attempt.events.order_by("pk").values_list("kind", "type"))

    before, log_before = await in_thread(snapshot), await in_thread(event_log)
    caplog.set_level("INFO", logger=campaigns_sink.logger.name)

    # Not an attempt id at all (an Asterisk uniqueid, e.g. a channel some other app placed) ...
    await sink.handle(CallEnded("1700000000.42", NOW, CallOutcome.ANSWERED, reason="stasis_end"))
    # ... and a well-formed attempt id that no attempt has.
    unknown = "8c1d7c52-36a6-4d59-a3a4-4e8f3c1b9a01"
    await sink.handle(CallRinging(unknown, NOW))
    await sink.handle(CallEnded(unknown, NOW, CallOutcome.BUSY))
    # Several events of an unknown call handed over together are dropped as well, none of them an error.
    errors = await sink.handle_many(
        [CallAnswered(unknown, unknown, NOW), CallEnded(unknown, NOW, CallOutcome.ANSWERED)]
    )

    assert errors == [None, None]
    assert await in_thread(snapshot) == before  # no attempt created, none changed
    assert await in_thread(event_log) == log_before
    assert ended.tenants == []  # nothing ended, so no dispatch pass was asked for
    assert "call event for 1700000000.42, which is not an attempt id" in caplog.text
    assert caplog.text.count(f"call event for unknown attempt {unknown}") == 4
    refreshed = await in_thread(lambda: CallAttempt.objects.get(pk=attempt.pk))
    assert refreshed.state == attempt.state and refreshed.outcome == attempt.outcome


async def test_live_call_ids_are_the_placed_live_attempts_of_the_pbx() -> None:
    def setup() -> tuple[list[str], int, int]:
        tenant = make_tenant(max_concurrent_calls=10)
        pbx = make_pbx(tenant)
        other = make_pbx(tenant)
        campaign = running_campaign(tenant)
        leads = due_leads(campaign, 6)
        dialing = live_attempt(leads[0], state=AttemptState.DIALING, pbx=pbx)
        bridged = live_attempt(leads[1], state=AttemptState.BRIDGED, pbx=pbx)
        live_attempt(leads[2], state=AttemptState.QUEUED, pbx=pbx)  # originate not sent: not on the PBX
        live_attempt(leads[3], state=AttemptState.ENDED, pbx=pbx)
        live_attempt(leads[4], state=AttemptState.ANSWERED, pbx=other)
        return sorted([str(dialing.pk), str(bridged.pk)]), pbx.pk, other.pk

    expected, pbx_id, other_id = await in_thread(setup)
    sink = AttemptEventSink(pbx_ids=[pbx_id], on_ended=Ended())
    try:
        assert sorted(await sink.live_call_ids()) == expected
    finally:
        sink.close()
    everything = AttemptEventSink(on_ended=Ended())
    try:
        assert len(await everything.live_call_ids()) == 3
    finally:
        everything.close()


def test_pbx_rows_sharing_one_asterisk_app() -> None:
    a, b = make_tenant(), make_tenant()
    first = make_pbx(a, ari_url="http://pbx1.example.com:8088/")
    second = make_pbx(b, ari_url="http://pbx1.example.com:8088")
    make_pbx(b, ari_url="http://pbx1.example.com:8088/", app_name="other_app")
    make_pbx(a, ari_url="http://pbx2.example.com:8088/")
    assert sorted(pbx_ids_sharing_app(first)) == sorted([first.pk, second.pk])


def test_run_stasis_refuses_an_unknown_pbx() -> None:
    with pytest.raises(CommandError, match="no PBX"):
        call_command("run_stasis", pbx="nope")


async def test_a_transfer_to_a_human_is_recorded_and_the_call_ends_as_answered(
    sink: AttemptEventSink, ended: Ended
) -> None:
    attempt = await in_thread(claimed_attempt)
    call_id = str(attempt.pk)

    await sink.handle(CallAnswered(call_id, call_id, NOW + timedelta(seconds=2)))
    await sink.handle(CallBridged(call_id, call_id, NOW + timedelta(seconds=3)))
    # The Stasis app bridged the human and dropped the media leg; then the human or the callee hangs up.
    errors = await sink.handle_many(
        [
            CallTransferred(call_id, "+12125550199", NOW + timedelta(seconds=20)),
            MediaGone(call_id, NOW + timedelta(seconds=20)),
        ]
    )
    assert errors == [None, None]
    await sink.handle(CallTransferred(call_id, "+12125550199", NOW + timedelta(seconds=21)))  # a replay
    await sink.handle(
        CallEnded(call_id, NOW + timedelta(seconds=80), CallOutcome.ANSWERED, cause=16, answered=True)
    )

    attempt = await in_thread(lambda: CallAttempt.objects.select_related("lead").get(pk=attempt.pk))
    assert attempt.transferred_to == "+12125550199"
    assert (attempt.state, attempt.outcome) == (AttemptState.ENDED, "answered")
    assert attempt.lead.status == Lead.Status.DONE and attempt.lead.done_reason == "success"
    log = await in_thread(lambda: list(attempt.events.values_list("kind", "type", "data")))
    assert [(kind, type) for kind, type, _ in log] == [
        ("state", "created"),
        ("state", "queued->answered"),
        ("state", "answered->bridged"),
        ("note", "transferred"),
        ("note", "media_gone"),
        ("note", "transferred"),
        ("state", "bridged->ended"),
    ]
    assert log[3][2] == {"number": "+12125550199"}


async def test_stasis_app_drives_a_real_attempt_through_the_sink(ended: Ended) -> None:
    """End to end on the orchestrator side: simulator → StasisApp → AttemptEventSink → the database."""
    attempt = await in_thread(claimed_attempt)
    call_id = str(attempt.pk)
    plan = parse_plan(
        {"numbers": {attempt.number: {"behaviour": "answer", "after": 0.2, "hangup_after": 0.8}}}
    )
    runner, pbx, port = await start_sim(plan)
    media = MediaServer()
    await media.start()
    assert attempt.pbx_id is not None
    sink = AttemptEventSink(pbx_ids=[attempt.pbx_id], on_ended=ended)
    base = f"http://127.0.0.1:{port}"
    app = StasisApp(
        StasisConfig(base_url=base, user=USER, password=PASSWORD, app=APP, media_hosts=(media.address,)), sink
    )
    task = asyncio.get_running_loop().create_task(app.run())
    try:
        await asyncio.wait_for(app.connected.wait(), 5)
        async with aiohttp.ClientSession(
            headers={"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
        ) as session:
            params = {
                "endpoint": f"PJSIP/{attempt.number}@trunk",
                "app": APP,
                "appArgs": f"outbound,{call_id}",
                "channelId": call_id,
            }
            async with session.post(f"{base}/ari/channels", params=params) as resp:
                assert resp.status == 200

        async def ended_in_db() -> bool:
            state = await in_thread(lambda: CallAttempt.objects.get(pk=call_id).state)
            return bool(state == AttemptState.ENDED)

        deadline = asyncio.get_running_loop().time() + 10
        while not await ended_in_db():
            assert asyncio.get_running_loop().time() < deadline, "the attempt did not end"
            await asyncio.sleep(0.3)
    finally:
        app.stop()
        await asyncio.wait_for(task, 10)
        sink.close()
        await media.close()
        await runner.cleanup()

    attempt = await in_thread(lambda: CallAttempt.objects.select_related("lead").get(pk=call_id))
    assert attempt.outcome == "answered" and attempt.cause == 16 and attempt.answered_at is not None
    assert attempt.lead.status == Lead.Status.DONE
    types = await in_thread(lambda: list(attempt.events.filter(kind="state").values_list("type", flat=True)))
    assert types == ["created", "queued->ringing", "ringing->answered", "answered->bridged", "bridged->ended"]
    assert ended.tenants == [attempt.tenant_id]


async def test_a_transient_database_error_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    attempt = await in_thread(claimed_attempt)
    calls: list[int] = []

    def flaky_dispatch(tenant_id: int) -> None:
        calls.append(tenant_id)
        raise ConnectionError("broker down")  # logged, never fails the event

    sink = AttemptEventSink(on_ended=flaky_dispatch)
    real_apply = sink._apply
    failures = [OperationalError("server closed the connection unexpectedly")]

    def apply(*args: Any) -> None:
        if failures:
            raise failures.pop()
        real_apply(*args)

    monkeypatch.setattr(sink, "_apply", apply)
    monkeypatch.setattr("campaigns.sink.RETRY_DELAYS_S", (0.01,))
    try:
        await sink.handle(CallEnded(str(attempt.pk), NOW, CallOutcome.NO_ANSWER, cause=19))
    finally:
        sink.close()
    attempt = await in_thread(lambda: CallAttempt.objects.get(pk=attempt.pk))
    assert attempt.state == AttemptState.ENDED and attempt.outcome == "no_answer"
    assert calls == [attempt.tenant_id]


def test_run_stasis_builds_the_app_from_the_pbx_and_settings(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    tenant = make_tenant()
    pbx = make_pbx(tenant, name="edge-1", ari_url="http://pbx1.example.com:8088/", app_name="agent_app")
    shared = make_pbx(
        make_tenant(), name="edge-1b", ari_url="http://pbx1.example.com:8088", app_name="agent_app"
    )
    monkeypatch.setenv("TEST_ARI_PASSWORD", "hunter2")
    settings.MEDIA_WORKER_HOSTS = ["10.0.0.5:9092", "10.0.0.6:9092"]
    settings.MAX_CALL_DURATION_S = 900
    seen: dict[str, Any] = {}

    async def fake_run(app: StasisApp, signals: Any) -> None:
        seen["app"], seen["signals"] = app, list(signals)

    monkeypatch.setattr("campaigns.management.commands.run_stasis.run_until_signalled", fake_run)
    call_command("run_stasis", pbx=str(pbx.pk))

    app = seen["app"]
    assert app.config.base_url == "http://pbx1.example.com:8088"
    assert (app.config.user, app.config.password, app.config.app) == ("asterisk", "hunter2", "agent_app")
    assert app.config.media_hosts == ("10.0.0.5:9092", "10.0.0.6:9092")
    assert app.config.media_format == "slin24" and app.config.max_call_duration_s == 900
    # Outbound calls go to the attempts, dialplan-entered ones to the inbound call records.
    assert isinstance(app.sink, CallEventRouter)
    assert isinstance(app.sink.attempts, AttemptEventSink)
    assert app.sink.attempts.pbx_ids == frozenset({pbx.pk, shared.pk})
    assert sorted(app.config.pbx_ids) == sorted([str(pbx.pk), str(shared.pk)])  # its heartbeat covers both
    assert len(seen["signals"]) == 2
    call_command("run_stasis", pbx="edge-1")  # by name too
    assert seen["app"].config.app == "agent_app"


def claimed_attempts(count: int) -> list[CallAttempt]:
    tenant = make_tenant(max_concurrent_calls=count)
    make_pbx(tenant)
    campaign = running_campaign(
        tenant, max_attempts=3, max_concurrent_calls=count, retry_delays={"busy": 600}
    )
    due_leads(campaign, count)
    ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
    return list(CallAttempt.objects.filter(pk__in=ids))


async def test_events_handed_over_together_are_applied_in_one_batch_each_on_its_own(
    ended: Ended, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: with one thread busy, waiting events go in one transaction; a failing event (here: a
    bug) and an unknown attempt are their own business, the others are applied."""
    attempts = await in_thread(lambda: claimed_attempts(6))
    ids = [str(a.pk) for a in attempts]
    sink = AttemptEventSink(on_ended=ended, max_workers=1)
    batches: list[int] = []
    real_apply_all, real_apply = sink._apply_all, sink._apply

    def apply_all(batch: Any) -> None:
        batches.append(len(batch))
        real_apply_all(batch)

    def apply(attempt_id: Any, event: Any) -> None:
        if str(attempt_id) == ids[1]:
            raise ValueError("a bug")
        real_apply(attempt_id, event)

    monkeypatch.setattr(sink, "_apply_all", apply_all)
    monkeypatch.setattr(sink, "_apply", apply)
    unknown = "8c1d7c52-36a6-4d59-a3a4-4e8f3c1b9a01"
    try:
        results = await asyncio.gather(
            *(sink.handle(CallEnded(i, NOW, CallOutcome.BUSY, cause=17, dialstatus="BUSY")) for i in ids),
            sink.handle(CallEnded(unknown, NOW, CallOutcome.BUSY)),
            return_exceptions=True,
        )
    finally:
        sink.close()

    assert isinstance(results[1], ValueError)
    assert [r for i, r in enumerate(results) if i != 1] == [None] * 6
    assert batches[0] == 1 and sum(batches) == 7 and len(batches) < 7  # the rest waited and went together
    states = await in_thread(lambda: dict(CallAttempt.objects.filter(pk__in=ids).values_list("pk", "state")))
    assert sorted(str(pk) for pk, state in states.items() if state == AttemptState.ENDED) == sorted(
        ids[:1] + ids[2:]
    )
    assert len(ended.tenants) == 5


async def test_a_transient_error_in_a_batch_retries_each_event_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = await in_thread(lambda: claimed_attempts(3))
    ids = [str(a.pk) for a in attempts]
    sink = AttemptEventSink(on_ended=Ended(), max_workers=1)
    real_apply = sink._apply
    failures = [OperationalError("server closed the connection unexpectedly")]

    def apply(attempt_id: Any, event: Any) -> None:
        real_apply(attempt_id, event)
        if str(attempt_id) == ids[2] and failures:
            raise failures.pop()  # after the others of its batch were applied: all of it rolls back

    real_apply_all = sink._apply_all
    batches: list[int] = []

    def apply_all(batch: Any) -> None:
        batches.append(len(batch))
        real_apply_all(batch)

    monkeypatch.setattr(sink, "_apply", apply)
    monkeypatch.setattr(sink, "_apply_all", apply_all)
    monkeypatch.setattr("campaigns.sink.RETRY_DELAYS_S", (0.01,))
    try:
        # The first takes the only thread; the next two wait for it and go together: the failure of the
        # last rolls the whole batch back, then each is retried alone.
        await asyncio.gather(*(sink.handle(CallRinging(i, NOW)) for i in ids))
    finally:
        sink.close()
    log = await in_thread(
        lambda: list(
            CallAttempt.objects.filter(pk__in=ids).values_list("state", "events__type").order_by("events__id")
        )
    )
    assert all(state == AttemptState.RINGING for state, _ in log)
    assert [t for _, t in log].count("queued->ringing") == 3  # each applied exactly once
    assert batches == [1, 2, 1, 1]


# ------------------------------------------------------------------ a call's waiting events applied together


def answered_call(call_id: str) -> list[Any]:
    return [
        CallRinging(call_id, NOW + timedelta(seconds=1)),
        CallAnswered(call_id, call_id, NOW + timedelta(seconds=4)),
        CallBridged(call_id, "0b6f4a38-5d7e-4b8e-9f8e-1b6f0a4a3c11", NOW + timedelta(seconds=5)),
        CallDtmf(call_id, "7", NOW + timedelta(seconds=6)),
        CallEnded(call_id, NOW + timedelta(seconds=14), CallOutcome.ANSWERED, cause=16, answered=True),
    ]


def attempt_log(pk: Any) -> list[tuple[str, str]]:
    return list(CallAttempt.objects.get(pk=pk).events.values_list("kind", "type"))


async def test_a_calls_waiting_events_are_applied_together_keeping_every_timestamp_and_row(
    sink: AttemptEventSink, ended: Ended, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt = await in_thread(claimed_attempt)
    call_id = str(attempt.pk)
    alone: list[Any] = []
    monkeypatch.setattr(sink, "_apply", lambda attempt_id, event: alone.append(event))  # must not be used

    assert await sink.handle_many(answered_call(call_id)) == [None] * 5

    assert alone == []
    attempt = await in_thread(lambda: CallAttempt.objects.select_related("lead").get(pk=attempt.pk))
    assert attempt.state == AttemptState.ENDED and attempt.outcome == "answered"
    assert attempt.originated_at == NOW + timedelta(seconds=1)  # the first progress out of queued
    assert attempt.ringing_at == NOW + timedelta(seconds=1)
    assert attempt.answered_at == NOW + timedelta(seconds=4)
    assert attempt.ended_at == NOW + timedelta(seconds=14) and attempt.duration_s == 10.0
    assert attempt.lead.status == Lead.Status.DONE and attempt.lead.attempts == 1
    assert await in_thread(lambda: attempt_log(attempt.pk)) == [
        ("state", "created"),
        ("state", "queued->ringing"),
        ("state", "ringing->answered"),
        ("state", "answered->bridged"),
        ("note", "dtmf"),
        ("state", "bridged->ended"),
    ]
    assert ended.tenants == [attempt.tenant_id]  # once, after the commit


async def test_duplicates_among_coalesced_events_are_refused_and_logged(
    sink: AttemptEventSink, ended: Ended
) -> None:
    attempt = await in_thread(claimed_attempt)
    call_id = str(attempt.pk)
    events: list[CallEvent] = [
        CallAnswered(call_id, call_id, NOW + timedelta(seconds=2)),
        CallRinging(call_id, NOW + timedelta(seconds=1)),  # late: answered implied it
        CallAnswered(call_id, call_id, NOW + timedelta(seconds=2)),  # a replay
        CallEnded(call_id, NOW + timedelta(seconds=5), CallOutcome.ANSWERED, answered=True),
        CallEnded(call_id, NOW + timedelta(seconds=6), CallOutcome.FAILED, reason="reconciled"),
    ]
    assert await sink.handle_many(events) == [None] * 5

    attempt = await in_thread(lambda: CallAttempt.objects.select_related("lead").get(pk=attempt.pk))
    assert attempt.outcome == "answered" and attempt.ringing_at is None and attempt.duration_s == 3.0
    assert attempt.lead.attempts == 1
    log = await in_thread(lambda: list(attempt.events.order_by("pk").values_list("type", "data")))
    assert [t for t, _ in log] == [  # in the order they were offered
        "created",
        "queued->answered",
        "refused:ringing",
        "refused:answered",
        "answered->ended",
        "refused:ended",
    ]
    assert log[2][1]["reason"] == "duplicate" and log[5][1]["reason"] == "terminal"
    assert ended.tenants == [attempt.tenant_id]


async def test_one_failing_event_of_a_coalesced_call_does_not_lose_the_others(
    sink: AttemptEventSink, ended: Ended, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Applied together they fail (here a bug on the DTMF digit): nothing of that is kept, then each is
    applied alone, so only the failing one is lost and the call's end is applied."""
    attempt = await in_thread(claimed_attempt)
    call_id = str(attempt.pk)
    real_step = campaigns_sink._step

    def step(event: Any) -> Any:
        if isinstance(event, CallDtmf):
            raise ValueError("a bug")
        return real_step(event)

    monkeypatch.setattr(campaigns_sink, "_step", step)
    errors = await sink.handle_many(answered_call(call_id))

    assert [type(e).__name__ if e else None for e in errors] == [None, None, None, "ValueError", None]
    assert await in_thread(lambda: attempt_log(attempt.pk)) == [
        ("state", "created"),
        ("state", "queued->ringing"),
        ("state", "ringing->answered"),
        ("state", "answered->bridged"),
        ("state", "bridged->ended"),
    ]
    assert ended.tenants == [attempt.tenant_id]


async def test_a_coalesced_end_is_not_lost_to_a_transient_error(monkeypatch: pytest.MonkeyPatch) -> None:
    attempt = await in_thread(claimed_attempt)
    call_id = str(attempt.pk)
    ended = Ended()
    sink = AttemptEventSink(on_ended=ended, max_workers=1)
    real = campaigns_sink.attempt_apply_many
    failures = [OperationalError("server closed the connection unexpectedly")]

    def apply_many(**kwargs: Any) -> Any:
        result = real(**kwargs)
        if failures:
            raise failures.pop()  # after it was applied: the whole transaction rolls back
        return result

    monkeypatch.setattr(campaigns_sink, "attempt_apply_many", apply_many)
    monkeypatch.setattr("campaigns.sink.RETRY_DELAYS_S", (0.01,))
    try:
        assert await sink.handle_many(answered_call(call_id)) == [None] * 5
    finally:
        sink.close()
    log = await in_thread(lambda: attempt_log(attempt.pk))
    assert [t for _, t in log].count("bridged->ended") == 1 and len(log) == 6  # applied exactly once
    assert ended.tenants == [attempt.tenant_id]


async def test_handle_many_takes_the_events_of_one_call_only(sink: AttemptEventSink) -> None:
    assert await sink.handle_many([]) == []
    assert await sink.handle_many([CallDtmf("1700000000.1", "1", NOW)] * 2) == [None, None]  # not an attempt
    with pytest.raises(ValueError, match="one call"):
        await sink.handle_many([CallDtmf("a", "1", NOW), CallDtmf("b", "1", NOW)])


async def test_the_stasis_app_hands_a_calls_waiting_events_to_the_sink_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the first event of a call is being applied the rest arrive: they go in one handle_many."""
    attempt = await in_thread(claimed_attempt)
    call_id = str(attempt.pk)
    ended = Ended()
    sink = AttemptEventSink(on_ended=ended, max_workers=1)
    real_apply_all = sink._apply_all
    release = threading.Event()
    batches: list[list[int]] = []

    def apply_all(batch: Any) -> None:
        batches.append([len(item.events) for item in batch])
        release.wait(5)  # the first event is in the database while the others come
        real_apply_all(batch)

    monkeypatch.setattr(sink, "_apply_all", apply_all)
    config = StasisConfig(base_url="http://127.0.0.1:9", user=USER, password=PASSWORD)
    app = StasisApp(config, sink)
    delivery = asyncio.get_running_loop().create_task(app._deliver())
    try:
        first, *rest = answered_call(call_id)
        app._emit(first)
        await asyncio.sleep(0.05)  # handed over, and held in the database
        for event in rest:
            app._emit(event)
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.wait_for(app._queue.join(), 10)
    finally:
        delivery.cancel()
        await asyncio.gather(delivery, *app._lane_tasks, return_exceptions=True)
        sink.close()
    assert batches == [[1], [4]]
    assert (await in_thread(lambda: CallAttempt.objects.get(pk=attempt.pk))).state == AttemptState.ENDED
    assert ended.tenants == [attempt.tenant_id]


async def test_the_ends_of_one_batch_trigger_their_passes_in_one_call() -> None:
    attempts = await in_thread(lambda: claimed_attempts(5))
    calls: list[list[int]] = []
    sink = AttemptEventSink(on_ended_many=calls.append, max_workers=1)
    try:
        await asyncio.gather(
            *(sink.handle(CallEnded(str(a.pk), NOW, CallOutcome.BUSY, cause=17)) for a in attempts)
        )
    finally:
        sink.close()
    # The first end went alone (the thread was free); the four that waited were committed together.
    assert sorted(len(c) for c in calls) == [1, 4]
    assert sorted(t for c in calls for t in c) == sorted(a.tenant_id for a in attempts)


def test_one_callback_or_the_other() -> None:
    with pytest.raises(ValueError, match="not both"):
        AttemptEventSink(on_ended=print, on_ended_many=print)


# ---------------------------------------------------------------------------- ends nobody saw (rule 5)


def _mark_media(call_id: str, **fields: float) -> None:
    from orchestrator.redis_client import get_redis  # noqa: PLC0415
    from wire.brief import media_seen_key  # noqa: PLC0415

    get_redis().hset(media_seen_key(call_id), mapping={name: repr(at) for name, at in fields.items()})
    get_redis().expire(media_seen_key(call_id), 60)


def _placed(attempt: CallAttempt, *, answered: bool = False, sent_at: Any = None) -> None:
    from campaigns.lifecycle import AttemptInput  # noqa: PLC0415
    from campaigns.services.call_events import attempt_apply  # noqa: PLC0415

    CallAttempt.objects.filter(pk=attempt.pk).update(originate_sent_at=sent_at or NOW)
    attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ORIGINATE_ACCEPTED, at=NOW)
    if answered:
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ANSWERED, at=NOW + timedelta(seconds=2))


def _reconciled(call_id: str, outcome: CallOutcome = CallOutcome.UNKNOWN, **fields: Any) -> CallEnded:
    return CallEnded(call_id, NOW + timedelta(seconds=60), outcome, reason="reconciled", **fields)


async def test_an_unseen_end_of_a_call_that_talked_is_answered_and_its_lead_is_not_redialed(
    sink: AttemptEventSink,
) -> None:
    """The Stasis app was killed; after its restart the call is gone and nothing of its end was seen. The
    media worker's marks say the agent talked to the callee: answered (lead done), never "failed"."""
    attempt = await in_thread(claimed_attempt)
    await in_thread(lambda: _placed(attempt))
    at = NOW.timestamp()
    await in_thread(lambda: _mark_media(str(attempt.pk), connected=at, agent_audio=at))

    await sink.handle(_reconciled(str(attempt.pk)))

    attempt = await in_thread(lambda: CallAttempt.objects.select_related("lead").get(pk=attempt.pk))
    assert attempt.state == AttemptState.ENDED and attempt.outcome == "answered"
    assert attempt.lead.status == Lead.Status.DONE and attempt.lead.done_reason == "success"


async def test_an_unseen_end_of_a_call_answered_but_never_bridged_is_media_failed(
    sink: AttemptEventSink,
) -> None:
    attempt = await in_thread(claimed_attempt)
    await in_thread(lambda: _placed(attempt, answered=True))

    await sink.handle(_reconciled(str(attempt.pk), CallOutcome.ANSWERED, answered=True))

    attempt = await in_thread(lambda: CallAttempt.objects.select_related("lead").get(pk=attempt.pk))
    assert attempt.outcome == "media_failed"  # the callee heard silence: retried, not a success
    assert attempt.lead.status == Lead.Status.WAITING and attempt.lead.last_outcome == "media_failed"


@pytest.mark.parametrize(
    ("sent_after_gap", "outcome"), [(True, "app_unavailable"), (False, "unknown")], ids=["in-gap", "before"]
)
async def test_an_unseen_end_with_no_evidence_is_never_guessed(
    sink: AttemptEventSink, sent_after_gap: bool, outcome: str
) -> None:
    """Nothing says it was answered: placed while the app was not listening → app_unavailable (A11: a
    callee who answered met no app); else unknown. Both retried; neither is "failed"."""
    attempt = await in_thread(claimed_attempt)
    gap = NOW + timedelta(seconds=10)
    await in_thread(lambda: _placed(attempt, sent_at=gap + timedelta(seconds=1 if sent_after_gap else -5)))

    await sink.handle(_reconciled(str(attempt.pk), gap_started_at=gap))

    attempt = await in_thread(lambda: CallAttempt.objects.select_related("lead").get(pk=attempt.pk))
    assert attempt.outcome == outcome
    assert attempt.lead.status == Lead.Status.WAITING
    data = await in_thread(lambda: attempt.events.filter(type="dialing->ended").get().data)
    assert data["data"]["gap_started_at"] == gap.isoformat()


async def test_what_was_seen_before_the_gap_is_kept(sink: AttemptEventSink) -> None:
    attempt = await in_thread(claimed_attempt)
    await in_thread(lambda: _placed(attempt))
    await sink.handle(_reconciled(str(attempt.pk), CallOutcome.BUSY, dialstatus="BUSY"))
    assert await in_thread(lambda: CallAttempt.objects.get(pk=attempt.pk).outcome) == "busy"


async def test_the_media_uuid_is_not_kept_in_the_event_log(sink: AttemptEventSink) -> None:
    """It is the one secret binding a media connection to the call; tenants see the event log."""
    attempt = await in_thread(claimed_attempt)
    media_uuid = "0b6f4a38-5d7e-4b8e-9f8e-1b6f0a4a3c11"
    await sink.handle(CallAnswered(str(attempt.pk), str(attempt.pk), NOW + timedelta(seconds=2)))
    await sink.handle(CallBridged(str(attempt.pk), media_uuid, NOW + timedelta(seconds=3)))
    rows = await in_thread(lambda: [str(e.data) for e in attempt.events.all()])
    assert rows and not any(media_uuid in row for row in rows)
