"""The escalation race, with a controlled clock (timers fired by the sweep at chosen instants, as beat does):
step 1 calls and texts at once; the wait, the next step, repeats and the fallback; a policy change never
alters a running incident; a step fires exactly once whatever fires its timer; a decline moves on at once;
acknowledgements by key, SMS reply and link stop every other leg; connect now / later."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client

from flows.models import EscalationStep, Incident, IncidentEvent, Page
from flows.services.escalation import incident_timer_key
from flows.services.inbound import inbound_report_urgent, inbound_route
from flows.services.links import ack_url
from flows.services.pages import page_sms_reply, page_sms_status, pages_resend_stalled
from flows.sink import FlowCallSink
from orchestrator.redis_client import get_redis
from telephony.events import CallAnswered, CallBridged, CallDtmf, CallEnded
from telephony.outcomes import CallOutcome
from telephony.stasis import command_key
from tenants.models import Tenant
from tests.flows.conftest import DID, StubMessage
from timers.models import Timer
from timers.services import timer_fire, timers_sweep
from wire.brief import brief_key

pytestmark = pytest.mark.django_db(transaction=True)
NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 1, 5, 22, 0, tzinfo=NY)  # Monday night: after hours; Bob is on call this week
CALLER = "+12125550100"
CALLBACK = "+12125550199"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def open_incident(setup: Any) -> Incident:
    inbound_route(
        channel_id="chan.1", did=DID, caller_number=CALLER, caller_name="Pat", at=T0, pbx_id=setup.pbx.pk
    )
    incident = inbound_report_urgent(
        call_id="chan.1", tenant_id=setup.tenant.pk, summary="no heat, pipes freezing",
        fields={"name": "Pat Doe", "callback_number": CALLBACK, "problem": "no heat"}, at=T0,
    )  # fmt: skip
    assert incident is not None
    return incident


def kinds(incident: Incident) -> list[str]:
    return list(incident.events.order_by("at", "pk").values_list("kind", flat=True))


def pages_of(incident: Incident, **filters: Any) -> list[Page]:
    return list(Page.objects.filter(incident=incident, **filters).order_by("pk"))


def steps_fired(incident: Incident) -> list[tuple[int | None, int | None]]:
    return list(
        IncidentEvent.objects.filter(incident=incident, kind="step_fired")
        .order_by("at", "pk")
        .values_list("round", "step")
    )


def cid(page: Page) -> str:
    assert page.call_id is not None
    return page.call_id


def leg(setup: Any) -> FlowCallSink:
    return FlowCallSink(pbx_ids=[setup.pbx.pk])


def test_step_one_calls_and_texts_at_once(setup, outside) -> None:
    incident = open_incident(setup)
    assert incident.status == "open" and len(incident.short_code) == 5
    call, sms = pages_of(incident)
    assert (call.channel, call.person, call.status) == ("call", setup.alice, "sent")
    assert (sms.channel, sms.person, sms.status) == ("sms", setup.alice, "sent")
    assert call.created_at == sms.created_at == T0  # decided together: they race
    assert call.sent_at and sms.sent_at and abs((call.sent_at - sms.sent_at).total_seconds()) < 1
    assert UUID(call.call_id).version == 8
    (originated,) = outside.ari.originated
    assert originated["channel_id"] == call.call_id and originated["number"] == "+15550000001"
    assert originated["caller_id"] == DID and originated["app_args"] == f"outbound,{call.call_id}"
    brief = json.loads(get_redis().get(brief_key(call.call_id)) or b"{}")
    assert brief["greeting"] == (
        "Urgent call from Pat Doe (+12125550100) about no heat, pipes freezing. "
        "Press 1 to accept, 2 to decline."
    )
    assert brief["tools"] == ["end_call"]
    (text,) = outside.texts_to("+15550000001")
    assert incident.short_code in text and "/ack/" in text and "Reply 1 to accept" in text
    assert kinds(incident) == ["opened", "step_fired", "called", "texted"]
    timer = Timer.objects.get(key=incident_timer_key(incident.pk))
    assert timer.state == "pending" and timer.due_at == at(120) and timer.payload["step"] == 1


def test_no_ack_next_step_after_the_wait_then_repeat_and_fallback(setup, outside) -> None:
    # Nobody ends the page calls here (the fake ARI): room for them all, and for the call back, under the cap.
    Tenant.objects.filter(pk=setup.tenant.pk).update(max_concurrent_calls=20)
    incident = open_incident(setup)
    assert timers_sweep(now=at(119)) == 0
    assert timers_sweep(now=at(120)) == 1
    bob_pages = pages_of(incident, person=setup.bob)
    assert [(p.channel, p.to_number) for p in bob_pages] == [
        ("call", "+15550000002"),
        ("sms", "+15550000012"),
    ]
    for t in (240, 360):
        assert timers_sweep(now=at(t)) == 1
    assert steps_fired(incident) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert "round_started" in kinds(incident)
    assert timers_sweep(now=at(480)) == 1  # the fallback
    incident.refresh_from_db()
    assert incident.status == "exhausted"
    (fallback,) = outside.texts_to("+15550000009")
    assert incident.short_code in fallback and "Pat Doe" in fallback
    callback = Timer.objects.get(key=f"flows.callback:{incident.pk}")
    assert callback.due_at == datetime(2026, 1, 6, 9, 0, tzinfo=NY)  # the next opening
    assert timers_sweep(now=at(10_000)) == 0
    assert timers_sweep(now=datetime(2026, 1, 6, 9, 0, tzinfo=NY)) == 1
    (back,) = pages_of(incident, purpose="callback")
    assert back.to_number == CALLER and back.status == "sent"
    timeline = kinds(incident)
    assert timeline.index("exhausted") < timeline.index("fallback") < timeline.index("callback_scheduled")
    assert timeline[-1] == "callback_placed" and timeline.count("exhausted") == 1


def test_a_policy_change_never_alters_a_running_incident(setup, outside) -> None:
    incident = open_incident(setup)
    EscalationStep.objects.filter(policy=setup.policy, position=1).delete()
    EscalationStep.objects.filter(policy=setup.policy, position=0).update(wait_s=999, person=setup.carol)
    setup.policy.repeat = 0
    setup.policy.save()
    assert timers_sweep(now=at(120)) == 1  # step 2 of the snapshot: the rotation, after 120 s
    assert [p.person for p in pages_of(incident)][-2:] == [setup.bob, setup.bob]
    assert timers_sweep(now=at(240)) == 1  # round 2 (repeat 1 in the snapshot)
    assert [p.person for p in pages_of(incident)][-2:] == [setup.alice, setup.alice]


def test_a_step_fires_once_under_duplicate_and_stale_firings(setup, outside) -> None:
    incident = open_incident(setup)
    first = Timer.objects.get(key=incident_timer_key(incident.pk))
    stale_token = first.token
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def fire() -> None:
        try:
            barrier.wait()
            results.append(timer_fire(timer_id=first.pk, token=stale_token, now=at(121))[0])
        finally:
            connection.close()

    def sweep() -> None:
        try:
            barrier.wait()
            results.append(timers_sweep(now=at(121)))
        finally:
            connection.close()

    threads = [threading.Thread(target=fire) for _ in range(4)] + [
        threading.Thread(target=sweep) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert steps_fired(incident) == [(0, 0), (0, 1)], results
    assert len(pages_of(incident, round=0, step=1)) == 2
    # A late duplicate of step 2's message (the token it was sent with) changes nothing either.
    assert timer_fire(timer_id=first.pk, token=stale_token, now=at(500))[0] == "stale"
    assert steps_fired(incident) == [(0, 0), (0, 1)]


def test_decline_moves_on_at_once(setup, outside) -> None:
    incident = open_incident(setup)
    call, sms = pages_of(incident)
    sink = leg(setup)
    try:
        sink._apply(CallAnswered(cid(call), cid(call), at(5)))
        sink._apply(CallDtmf(cid(call), "2", at(8)))
    finally:
        sink.close()
    call.refresh_from_db()
    sms.refresh_from_db()
    assert (call.status, sms.status) == ("declined", "cancelled")
    timer = Timer.objects.get(key=incident_timer_key(incident.pk))
    assert timer.due_at == at(8)  # due now: its countdown message (0 s) fires it at once
    assert outside.timer_messages[-1][2] == 0.0
    assert timers_sweep(now=at(8)) == 1
    assert steps_fired(incident) == [(0, 0), (0, 1)]
    by_id = list(incident.events.order_by("pk").values_list("kind", flat=True))
    assert by_id[:8] == [
        "opened",
        "step_fired",
        "called",
        "texted",
        "answered",
        "pressed",
        "declined",
        "leg_stopped",
    ]


def test_ack_by_key_stops_every_other_leg_and_connects(setup, outside) -> None:
    incident = open_incident(setup)
    timers_sweep(now=at(120))  # Bob's step; Alice's call still ringing, her SMS sent
    alice_call, alice_sms, bob_call, bob_sms = pages_of(incident)
    sink = leg(setup)
    try:
        sink._apply(CallAnswered(cid(bob_call), cid(bob_call), at(130)))
        sink._apply(CallDtmf(cid(bob_call), "1", at(135)))
        incident.refresh_from_db()
        assert (incident.status, incident.acknowledged_by, incident.ack_channel) == (
            "acknowledged",
            setup.bob,
            "call",
        )
        for page in (alice_call, alice_sms, bob_sms):
            page.refresh_from_db()
            assert page.status == "cancelled"
        assert outside.ari.hung_up == [alice_call.call_id]  # her ringing call hung up; Bob's kept
        assert any("taken by Bob" in t for t in outside.texts_to("+15550000001"))
        assert any("Bob from Acme Heating has your request" in t for t in outside.texts_to(CALLBACK))
        assert Timer.objects.get(key=incident_timer_key(incident.pk)).state == "cancelled"
        assert timers_sweep(now=at(10_000)) == 0
        get_redis().delete(command_key(setup.pbx.pk))
        sink._apply(CallDtmf(cid(bob_call), "1", at(140)))  # second key: connect now
        sink._apply(CallDtmf(cid(bob_call), "2", at(141)))  # a change of mind changes nothing
    finally:
        sink.close()
    incident.refresh_from_db()
    assert incident.ack_choice == "connect"
    (raw,) = get_redis().lrange(command_key(setup.pbx.pk), 0, -1)
    command = json.loads(raw)
    assert command["action"] == "transfer" and command["call_id"] == bob_call.call_id
    assert command["number"] == CALLBACK and command["caller_id"] == DID
    events = list(incident.events.order_by("at", "pk"))
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert {"acknowledged", "chose", "connecting", "leg_stopped", "pressed", "answered"} <= {
        e.kind for e in events
    }
    assert IncidentEvent.objects.filter(incident=incident, kind="acknowledged").count() == 1


def test_ack_by_sms_reply(setup, outside) -> None:
    incident = open_incident(setup)
    call, sms = pages_of(incident)
    reply = StubMessage(900, setup.tenant.pk, from_number="+15550000001", body="1 00000", created_at=at(40))
    if incident.short_code == "00000":
        reply.body = "1 99999"
    assert page_sms_reply(message=reply) is False  # a code of no open incident: not ours
    assert (
        page_sms_reply(message=StubMessage(901, setup.tenant.pk, from_number="+15550000001", body="hello"))
        is False
    )
    page_sms_status(
        message=StubMessage(
            902, setup.tenant.pk, status="delivered", ref=f"flows.page:{sms.pk}", delivered_at=at(2)
        )
    )
    ok = StubMessage(
        903, setup.tenant.pk, from_number="+15550000001", body=f" 1 {incident.short_code} ", created_at=at(40)
    )
    assert page_sms_reply(message=ok) is True
    incident.refresh_from_db()
    assert (incident.status, incident.acknowledged_by, incident.ack_channel) == (
        "acknowledged",
        setup.alice,
        "sms",
    )
    sms.refresh_from_db()
    call.refresh_from_db()
    assert (sms.status, call.status) == ("accepted", "cancelled") and outside.ari.hung_up == [call.call_id]
    assert page_sms_reply(message=ok) is True  # a duplicate reply: consumed, acts once
    assert IncidentEvent.objects.filter(incident=incident, kind="acknowledged").count() == 1
    by_id = list(incident.events.order_by("pk").values_list("kind", flat=True))
    assert by_id[:6] == ["opened", "step_fired", "called", "texted", "delivered", "replied"]
    assert by_id.count("replied") == 2 and by_id.count("acknowledged") == 1


def test_sms_decline_and_provider_outage(setup, outside) -> None:
    outside.sms_down = True
    incident = open_incident(setup)
    call, sms = pages_of(incident)
    assert (call.status, sms.status) == ("sent", "failed")  # the call leg races on
    assert "sms_failed" in kinds(incident)
    outside.sms_down = False
    timers_sweep(now=at(120))
    bob_sms = pages_of(incident, person=setup.bob, channel="sms")[0]
    assert (
        page_sms_reply(message=StubMessage(1, setup.tenant.pk, from_number=bob_sms.to_number, body="2"))
        is True
    )
    bob_sms.refresh_from_db()
    assert bob_sms.status == "declined"
    assert Timer.objects.get(key=incident_timer_key(incident.pk)).due_at <= datetime.now(tz=NY)


def test_link_get_does_nothing_post_acts(setup, outside) -> None:
    incident = open_incident(setup)
    client = Client()
    url = ack_url(incident_id=incident.pk, person_id=setup.alice.pk).split("127.0.0.1:8000", 1)[1]
    response = client.get(url)
    assert response.status_code == 200 and b"Accept" in response.content
    incident.refresh_from_db()
    assert incident.status == "open"  # a link preview changes nothing
    assert client.get(url[:-3] + "abc").status_code == 404  # altered token
    response = client.post(url, {"action": "accept"})
    assert response.status_code == 200 and b"Taken by Alice" in response.content
    incident.refresh_from_db()
    assert (incident.status, incident.ack_channel) == ("acknowledged", "link")
    (alice_call,) = pages_of(incident, channel="call", purpose="page")
    assert outside.ari.hung_up == [alice_call.call_id]
    # Connect now: no live call with Alice, so she is called, and put through to the caller once her leg is
    # bridged (the Stasis app cannot transfer a call before that).
    client.post(url, {"action": "connect"})
    (connect,) = pages_of(incident, purpose="connect")
    assert connect.to_number == "+15550000001" and connect.status == "sent"
    get_redis().delete(command_key(setup.pbx.pk))
    sink = leg(setup)
    try:
        sink._apply(CallAnswered(cid(connect), cid(connect), at(60)))
        assert get_redis().lrange(command_key(setup.pbx.pk), 0, -1) == []
        sink._apply(CallBridged(cid(connect), cid(connect), at(61)))
        sink._apply(CallEnded(cid(connect), at(300), CallOutcome.ANSWERED))
    finally:
        sink.close()
    (raw,) = get_redis().lrange(command_key(setup.pbx.pk), 0, -1)
    assert json.loads(raw)["call_id"] == connect.call_id and json.loads(raw)["number"] == CALLBACK
    bob = ack_url(incident_id=incident.pk, person_id=setup.bob.pk).split("127.0.0.1:8000", 1)[1]
    assert b"Taken by Alice" in client.post(bob, {"action": "accept"}).content  # too late: nothing changes


def test_live_call_ids_include_flow_legs(setup, outside) -> None:
    import asyncio  # noqa: PLC0415

    incident = open_incident(setup)
    (call,) = pages_of(incident, channel="call")
    sink = leg(setup)
    try:
        assert asyncio.run(sink.live_call_ids()) == {"chan.1", call.call_id}
        sink._apply(CallEnded(cid(call), at(30), CallOutcome.NO_ANSWER))
        assert asyncio.run(sink.live_call_ids()) == {"chan.1"}
    finally:
        sink.close()
    call.refresh_from_db()
    assert call.status == "ended" and "call_ended" in kinds(incident)


def test_a_lost_page_send_is_sent_again_by_the_sweep(setup, outside, monkeypatch) -> None:
    from flows.services import outbox  # noqa: PLC0415

    lost: list[Any] = []
    monkeypatch.setattr(outbox, "send", lambda name, args, countdown=0.0: lost.append((name, args)))
    incident = open_incident(setup)
    assert {p.status for p in pages_of(incident)} == {"to_send"}  # the worker died after the commit
    assert pages_resend_stalled(now=datetime.now(tz=NY) + timedelta(seconds=11)) == [
        p.pk for p in pages_of(incident)
    ]


@pytest.mark.postgres
def test_an_ack_racing_the_next_step_never_deadlocks_and_stops_what_fired(setup, outside) -> None:
    incident = open_incident(setup)
    alice_call = pages_of(incident, channel="call")[0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(fn: Any) -> None:
        try:
            barrier.wait()
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    sink = leg(setup)
    try:
        threads = [
            threading.Thread(target=run, args=(lambda: timers_sweep(now=at(120)),)),
            threading.Thread(
                target=run, args=(lambda: sink._apply(CallDtmf(cid(alice_call), "1", at(120))),)
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sink.close()
    assert errors == []
    incident.refresh_from_db()
    assert incident.status == "acknowledged" and incident.acknowledged_by == setup.alice
    # Whatever fired before the acknowledgement was stopped; nothing is left pending.
    assert not Page.objects.filter(
        incident=incident, purpose="page", status__in=["to_send", "sent", "answered"]
    ).exists()
    assert timers_sweep(now=at(10_000)) == 0
