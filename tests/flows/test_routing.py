"""Routing inbound calls by DID (contract 2): the same number is transferred to the office in business
hours and answered by the agent (with intake and report_urgent) after hours, with a controlled clock; an
unknown number and a call over the tenant's cap are refused politely; the question asked twice gets the
same answer; the intake and urgent tasks (contract 4)."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from flows.models import InboundCall, Incident
from flows.services.inbound import inbound_route
from flows.sink import FlowCallSink
from flows.tasks import media_flow_intake, media_flow_urgent
from orchestrator.redis_client import get_redis
from orchestrator.sink import CallEventRouter
from telephony.events import CallEnded, CallInbound
from telephony.outcomes import CallOutcome
from tests.campaigns.factories import make_lead
from tests.flows.conftest import DID
from wire.brief import brief_key

pytestmark = pytest.mark.django_db(transaction=True)
NY = ZoneInfo("America/New_York")
MONDAY_2PM = datetime(2026, 1, 5, 14, 0, tzinfo=NY)
MONDAY_10PM = datetime(2026, 1, 5, 22, 0, tzinfo=NY)


def _brief(call_id: str) -> dict:
    raw = get_redis().get(brief_key(call_id))
    assert raw is not None
    return json.loads(raw)


def test_business_hours_transfer_and_after_hours_agent_on_the_same_did(setup) -> None:
    day = inbound_route(
        channel_id="chan.day",
        did="15551230000",
        caller_number="+12125550100",
        caller_name="Pat",
        at=MONDAY_2PM,
        pbx_id=setup.pbx.pk,
    )
    assert day.action == "transfer" and day.number == "+15550009999"
    assert day.endpoint == "PJSIP/+15550009999@trunk" and day.fallback_to_agent
    call = InboundCall.objects.get(channel_id="chan.day")
    assert (call.tenant, call.flow, call.phone_number, call.in_hours) == (
        setup.tenant,
        setup.flow,
        setup.number,
        True,
    )
    assert call.handling == InboundCall.Handling.TRANSFERRED
    brief = _brief("chan.day")  # the agent answers if the office does not
    assert "report_urgent" not in brief["tools"] and "transfer_to_human" in brief["tools"]

    night = inbound_route(
        channel_id="chan.night",
        did=DID,
        caller_number="+12125550100",
        caller_name="Pat",
        at=MONDAY_10PM,
        pbx_id=setup.pbx.pk,
    )
    assert night.action == "agent"
    call = InboundCall.objects.get(channel_id="chan.night")
    assert call.handling == InboundCall.Handling.AGENT and call.in_hours is False
    brief = _brief("chan.night")
    assert brief["tools"] == ["end_call", "record_intake", "report_urgent"]
    assert [f["name"] for f in brief["intake_fields"]] == ["name", "callback_number", "problem"]
    assert brief["greeting"] == "Acme Heating, hello." and brief["tenant_id"] == setup.tenant.pk
    assert brief["command_key"] == f"stasis:commands:{setup.pbx.pk}" and brief["urgent_reply"]
    # Asked again (a retry of the Stasis app), the same answer, nothing recorded twice.
    again = inbound_route(
        channel_id="chan.night",
        did=DID,
        caller_number="+12125550100",
        caller_name="Pat",
        at=MONDAY_2PM,
        pbx_id=setup.pbx.pk,
    )
    assert again.action == "agent" and InboundCall.objects.filter(channel_id="chan.night").count() == 1


def test_holiday_is_after_hours(setup) -> None:
    route = inbound_route(
        channel_id="chan.xmas",
        did=DID,
        caller_number="+12125550100",
        caller_name="",
        at=datetime(2026, 12, 25, 11, 0, tzinfo=NY),
        pbx_id=setup.pbx.pk,
    )
    assert route.action == "agent" and InboundCall.objects.get(channel_id="chan.xmas").in_hours is False


def test_unknown_did_is_refused_and_recorded(setup, settings) -> None:
    route = inbound_route(
        channel_id="chan.x", did="+15559999999", caller_number="+1212", caller_name="", at=MONDAY_10PM
    )
    assert route.action == "refuse" and route.message == settings.INBOUND_UNROUTED_MESSAGE
    call = InboundCall.objects.get(channel_id="chan.x")
    assert call.handling == InboundCall.Handling.UNROUTED and call.tenant is None


def test_over_the_tenant_cap_is_refused_politely(setup) -> None:
    setup.flow.refusal_message = "sound:all-circuits-busy-now"
    setup.flow.save()
    # Cap 3: one live campaign attempt, one live inbound call, one live page call leg fill it.
    lead = make_lead(setup.tenant)
    from campaigns.models import CallAttempt  # noqa: PLC0415

    CallAttempt.objects.create(
        tenant=setup.tenant, campaign=lead.campaign, lead=lead, number="+12125550123", state="answered"
    )
    assert (
        inbound_route(channel_id="c1", did=DID, caller_number="+1", caller_name="", at=MONDAY_10PM).action
        == "agent"
    )
    assert (
        inbound_route(channel_id="c2", did=DID, caller_number="+2", caller_name="", at=MONDAY_10PM).action
        == "agent"
    )
    refused = inbound_route(channel_id="c3", did=DID, caller_number="+3", caller_name="", at=MONDAY_10PM)
    assert refused.action == "refuse" and refused.message == "sound:all-circuits-busy-now"
    assert InboundCall.objects.get(channel_id="c3").handling == InboundCall.Handling.REFUSED_OVER_CAP
    # A refused call holds no slot; an ended call frees one.
    InboundCall.objects.filter(channel_id="c1").update(status="ended")
    assert (
        inbound_route(channel_id="c4", did=DID, caller_number="+4", caller_name="", at=MONDAY_10PM).action
        == "agent"
    )


async def test_the_router_asks_the_flows_and_records_the_end(setup) -> None:
    router = CallEventRouter(pbx_ids=[setup.pbx.pk])
    try:
        event = CallInbound("1767650400.99", DID, "+12125550100", "Pat", MONDAY_10PM)
        route = await router.route_inbound(event)
        assert route.action == "agent"
        await router.handle(event)  # the app's CallInbound event too: nothing twice
        assert await router.live_call_ids() == {"1767650400.99"}
        await router.handle(
            CallEnded("1767650400.99", MONDAY_10PM, CallOutcome.ANSWERED, reason="stasis_end")
        )
        assert await router.live_call_ids() == set()
    finally:
        router.close()
    assert isinstance(router.inbound, FlowCallSink)


def test_intake_and_urgent_tasks(setup, outside) -> None:
    inbound_route(
        channel_id="chan.u",
        did=DID,
        caller_number="+12125550100",
        caller_name="Pat",
        at=MONDAY_10PM,
        pbx_id=setup.pbx.pk,
    )
    assert (
        media_flow_intake("chan.u", setup.tenant.pk, {"name": "Pat Doe", "bogus": "x", "BAD NAME": "y"})
        == "done"
    )
    assert media_flow_intake("chan.u", setup.tenant.pk + 1, {"name": "z"}) == "dropped"  # another tenant's
    assert InboundCall.objects.get(channel_id="chan.u").intake == {"name": "Pat Doe"}
    result = media_flow_urgent(
        "chan.u",
        setup.tenant.pk,
        "No heat, pipes freezing",
        {"callback_number": "+12125550199", "problem": "no heat"},
    )
    incident = Incident.objects.get()
    assert result == f"incident:{incident.pk}"
    assert incident.intake == {"name": "Pat Doe", "callback_number": "+12125550199", "problem": "no heat"}
    assert incident.summary == "No heat, pipes freezing" and incident.did == DID
    assert media_flow_urgent("chan.u", setup.tenant.pk, "again") == f"incident:{incident.pk}"  # once per call
    assert Incident.objects.count() == 1
