"""Inbound routing and flow legs through the Stasis app, against the PBX simulator over real TCP (as in
test_stasis.py) with a real Redis for call actions and replies (as in test_stasis_commands.py).

* Inbound calls: the sink's ``route_inbound`` decides (agent, refuse, transfer with its fall-backs); no
  answer in time and an error refuse the call politely.
* Flow legs (page calls to on-call people): a version-8 call id with ``outbound,<id>`` is run like an
  attempt: bridged to media, keys reported, the transfer command connects the person to a caller, and a
  DELETE of a ringing leg ends it cleanly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.conf import settings
from redis import asyncio as aioredis

from telephony.events import (
    CallAnswered,
    CallBridged,
    CallDtmf,
    CallEnded,
    CallInbound,
    CallTransferred,
    InboundRoute,
)
from telephony.outcomes import CallOutcome
from wire.callids import new_flow_call_id
from wire.caption import CaptionReader

from .sim.conftest import APP, wait_until
from .test_stasis import RecordingSink, running_harness
from .test_stasis_commands import CommandHarness, Replies, no_channels_left

DID = "15551230000"
CALLER = "+19175551212"
OFFICE = "+15557770001"  # answers after a short ring
BUSY_OFFICE = "+15557770002"
ON_CALL = "+15557770010"  # answers, presses 1, then 1 again
DECLINER = "+15557770011"  # answers and presses 2
RINGING = "+15557770012"  # never answers
CALLER_BACK = "+15557770020"  # the caller called back: answers
BUSY_CALLER = "+15557770021"

PLAN = {
    "numbers": {
        OFFICE: {"behaviour": "answer", "after": 0.3},
        BUSY_OFFICE: {"behaviour": "busy", "after": 0.2},
        ON_CALL: {
            "behaviour": "answer",
            "after": 0.2,
            "dtmf": [{"at": 0.8, "digits": "1"}, {"at": 1.6, "digits": "1"}],
        },
        DECLINER: {"behaviour": "answer", "after": 0.2, "dtmf": [{"at": 0.8, "digits": "2"}]},
        RINGING: {"behaviour": "no_answer"},
        CALLER_BACK: {"behaviour": "answer", "after": 0.3},
        BUSY_CALLER: {"behaviour": "busy", "after": 0.2},
    }
}


class RoutingSink(RecordingSink):
    """A sink that routes inbound calls as told (``route``: an InboundRoute, an exception to raise, or
    ``"hang"`` to never answer)."""

    def __init__(self, route: Any) -> None:
        super().__init__()
        self.route = route
        self.asked: list[CallInbound] = []

    async def route_inbound(self, event: CallInbound) -> InboundRoute:
        self.asked.append(event)
        self.live.add(event.call_id)
        if isinstance(self.route, BaseException):
            raise self.route
        if self.route == "hang":
            await asyncio.sleep(3600)
        assert isinstance(self.route, InboundRoute)
        return self.route


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def h(redis_client: aioredis.Redis) -> AsyncIterator[CommandHarness]:
    key = f"stasis:commands:test-{uuid.uuid4().hex}"
    async with running_harness(
        PLAN,
        CommandHarness,
        redis_url=settings.REDIS_URL,
        command_keys=(key,),
        command_poll_s=0.5,
        inbound_route_timeout_s=1.0,
        inbound_message="sound:ss-noservice",
    ) as harness:
        harness.redis, harness.key = redis_client, key
        try:
            yield harness
        finally:
            await redis_client.delete(key)


async def inbound(h: CommandHarness, **behaviour: Any) -> str:
    # As the shipped dialplan (deploy/asterisk/extensions.conf): not answered before Stasis, the app does.
    spec: dict[str, Any] = {
        "did": DID,
        "caller_number": CALLER,
        "caller_name": "Pat",
        "app": APP,
        "answered": False,
    }
    if behaviour:
        spec["behaviour"] = {"behaviour": "answer", "after": 0, **behaviour}
    _, body = await h.sim.request("POST", "/sim/inbound", json=spec, expect=200)
    return str(body["call"])


async def record(h: CommandHarness, call_id: str) -> dict[str, Any]:
    _, body = await h.sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    assert isinstance(body, dict)
    return body


# ------------------------------------------------------------------------------------------------ inbound


async def test_agent_route_bridges_the_caller_to_media_and_stasis_end_closes_it(h: CommandHarness) -> None:
    h.sink = RoutingSink(InboundRoute(action="agent"))
    await h.start()
    call_id = await inbound(
        h,
        say=[{"at": 0.5, "text": "My furnace stopped and it is an emergency", "caption": True}],
        hangup_after=4.0,
    )
    arrived = await h.sink.wait(call_id, CallInbound)
    assert (arrived.did, arrived.caller_number, arrived.caller_name) == (DID, CALLER, "Pat")
    assert h.sink.asked == [arrived]
    await h.sink.wait(call_id, CallAnswered)
    bridged = await h.sink.wait(call_id, CallBridged)
    media_id = await h.media_leg(call_id)
    assert await h.bridge_members(call_id) == sorted([call_id, media_id])
    conn = h.media.by_uuid(bridged.media_uuid)

    def caption() -> str | None:  # the caller's words ride in its audio, unchanged to the media leg
        reader = CaptionReader()
        for _, kind, payload in conn.frames:
            if kind == 0x13:
                reader.feed(payload)
        return reader.text

    await wait_until(lambda: caption() == "My furnace stopped and it is an emergency", timeout=5)
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.reason == "stasis_end" and ended.answered
    await h.wait_gone(f"/ari/bridges/bridge-{call_id}")
    await no_channels_left(h)


@pytest.mark.parametrize(
    ("route", "heard"),
    [
        (InboundRoute(action="refuse", message="sound:custom/over-capacity"), "sound:custom/over-capacity"),
        (InboundRoute(action="refuse"), "sound:ss-noservice"),
        ("hang", "sound:ss-noservice"),  # no route within inbound_route_timeout_s
        (RuntimeError("database down"), "sound:ss-noservice"),  # routing failed
    ],
    ids=["refuse", "refuse-default", "timeout", "error"],
)
async def test_a_refused_call_is_told_and_hung_up_never_silent(
    h: CommandHarness, route: Any, heard: str
) -> None:
    h.sink = RoutingSink(route)
    await h.start()
    call_id = await inbound(h)
    ended = await h.sink.wait(call_id, CallEnded, timeout=15)
    assert ended.reason == "stasis_end"
    call = await record(h, call_id)
    assert call["playbacks"] == [heard] and call["ended_by"] == "app"
    assert not h.sink.of(call_id, CallBridged)


async def test_transfer_route_connects_the_caller_to_the_office(h: CommandHarness) -> None:
    route = InboundRoute(
        action="transfer", endpoint=f"PJSIP/{OFFICE}@trunk", number=OFFICE, caller_id=CALLER, timeout_s=10
    )
    h.sink = RoutingSink(route)
    await h.start()
    call_id = await inbound(h, hangup_after=3.0)
    transferred = await h.sink.wait(call_id, CallTransferred)
    assert transferred.number == OFFICE
    assert await h.bridge_members(call_id) == sorted([call_id, f"xfer-{call_id}"])
    assert not h.sink.of(call_id, CallBridged)  # no agent
    _, human = await h.sim.request("GET", f"/sim/calls/xfer-{call_id}", expect=200)
    assert human["number"] == OFFICE
    assert (await h.sink.wait(call_id, CallEnded)).reason == "stasis_end"
    await no_channels_left(h)


@pytest.mark.parametrize("fallback", [True, False])
async def test_transfer_route_to_a_busy_office_falls_back(h: CommandHarness, fallback: bool) -> None:
    route = InboundRoute(
        action="transfer",
        endpoint=f"PJSIP/{BUSY_OFFICE}@trunk",
        number=BUSY_OFFICE,
        timeout_s=10,
        fallback_to_agent=fallback,
        message="sound:custom/closed",
    )
    h.sink = RoutingSink(route)
    await h.start()
    call_id = await inbound(h, hangup_after=4.0)
    if fallback:
        await h.sink.wait(call_id, CallBridged)  # the agent took it
    else:
        await h.sink.wait(call_id, CallEnded)
        assert (await record(h, call_id))["playbacks"] == ["sound:custom/closed"]
    assert not h.sink.of(call_id, CallTransferred)
    await h.sink.wait(call_id, CallEnded)
    await no_channels_left(h)


# -------------------------------------------------------------------------------------------- flow legs


async def originate_leg(h: CommandHarness, number: str, *, local: bool = False) -> str:
    call_id = new_flow_call_id()
    h.sink.live.add(call_id)
    await h.sim.request(
        "POST",
        "/ari/channels",
        expect=200,
        params={
            "endpoint": f"Local/{number}@sim" if local else f"PJSIP/{number}@trunk",
            "app": APP,
            "appArgs": f"outbound,{call_id}",
            "channelId": call_id,
            "callerId": DID,
            "timeout": "30",
        },
    )
    return call_id


async def test_a_page_call_is_bridged_reports_keys_and_connects_the_person_to_the_caller(
    h: CommandHarness,
) -> None:
    await h.start()
    page = await originate_leg(h, ON_CALL)
    bridged = await h.sink.wait(page, CallBridged)
    conn = h.media.by_uuid(bridged.media_uuid)
    await wait_until(lambda: len(h.sink.of(page, CallDtmf)) == 2, timeout=5)
    assert [e.digit for e in h.sink.of(page, CallDtmf)] == ["1", "1"]
    async with Replies(h.redis, page) as replies:
        await h.command(
            action="transfer",
            call_id=page,
            number=CALLER_BACK,
            endpoint=f"PJSIP/{CALLER_BACK}@trunk",
            caller_id=DID,
            timeout_s=10,
        )
        reply = await replies.next()
    assert reply == {"event": "transfer", "status": "answered", "number": CALLER_BACK}
    assert (await h.sink.wait(page, CallTransferred)).number == CALLER_BACK
    assert await h.bridge_members(page) == sorted([page, f"xfer-{page}"])  # the AudioSocket leg dropped
    await wait_until(lambda: conn.eof_at is not None, timeout=5)
    await h.sim.request("DELETE", f"/ari/channels/{page}", expect=204)  # the person hangs up ...
    ended = await h.sink.wait(page, CallEnded)
    assert ended.outcome is CallOutcome.ANSWERED and ended.reason == "destroyed"
    await no_channels_left(h)  # ... and the caller goes too


async def test_a_decline_is_reported_and_a_busy_caller_fails_the_transfer(h: CommandHarness) -> None:
    await h.start()
    page = await originate_leg(h, DECLINER)
    await h.sink.wait(page, CallBridged)
    assert (await h.sink.wait(page, CallDtmf)).digit == "2"
    async with Replies(h.redis, page) as replies:
        await h.command(
            action="transfer", call_id=page, number=BUSY_CALLER, endpoint=f"PJSIP/{BUSY_CALLER}@trunk"
        )
        reply = await replies.next()
    assert reply == {"event": "transfer", "status": "failed", "reason": "busy"}
    assert await h.media_leg(page)  # the agent stays on the call
    await h.sim.request("DELETE", f"/ari/channels/{page}", expect=204)
    await h.sink.wait(page, CallEnded)
    await no_channels_left(h)


@pytest.mark.parametrize("local", [False, True], ids=["pjsip", "local"])
async def test_a_ringing_page_call_hung_up_by_the_flow_ends_cleanly(h: CommandHarness, local: bool) -> None:
    await h.start()
    page = await originate_leg(h, RINGING, local=local)
    await wait_until(lambda: bool(h.sink.of(page)), timeout=5)  # ringing
    await h.sim.request("DELETE", f"/ari/channels/{page}", params={"reason": "normal"}, expect=204)
    ended = await h.sink.wait(page, CallEnded)
    assert ended.outcome is CallOutcome.NO_ANSWER and not ended.answered and ended.reason == "destroyed"
    assert not h.sink.of(page, CallAnswered)
    await no_channels_left(h)


async def test_an_unanswered_inbound_call_rings_until_the_app_answers_and_its_caller_then_speaks(
    h: CommandHarness,
) -> None:
    """The simulator as the shipped dialplan: the channel enters Stasis in Ring, media needs the answer
    (412 before it, as Asterisk), and the caller's script starts from the answer."""
    stream = await h.sim.events(APP)
    try:
        await wait_until(lambda: h.sim.pbx.active_app(APP), timeout=2)
        call_id = await inbound(h, say=[{"at": 0.2, "text": "Hello?"}], hangup_after=1.0)
        start = await stream.wait_type("StasisStart", call_id, timeout=3)
        assert start["channel"]["state"] == "Ring"
        status, _ = await h.sim.request("POST", f"/ari/channels/{call_id}/play", params={"media": "sound:x"})
        assert status == 412
        await asyncio.sleep(1.5)
        assert (await record(h, call_id))["said"] == []  # not answered: the caller waits
        await h.sim.request("POST", f"/ari/channels/{call_id}/answer", expect=204)
        await stream.wait_type("StasisEnd", call_id, timeout=3)  # hung up 1 s after the answer
        said = (await record(h, call_id))["said"]
        assert [s["text"] for s in said] == ["Hello?"]
    finally:
        await stream.close()
