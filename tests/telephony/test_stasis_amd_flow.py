"""The answering-machine detection hop through the real Stasis app, against the PBX simulator over real TCP
(its ``ai-amd`` context emulating AMD() over the callee's own audio) with a real Redis for the replies to
the media worker: a person joins the prepared media leg and the worker is told; a callee gone during
detection ends the call (no event comes: the timer and GET find it); an app restarted mid-hop takes the call
back when it returns."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.conf import settings
from redis import asyncio as aioredis

from telephony.events import CallAmd, CallAnswered, CallBridged, CallEnded

from .sim.conftest import APP, wait_until
from .test_stasis import running_harness
from .test_stasis_commands import CommandHarness, Replies, no_channels_left

PERSON = "+15557780001"  # "Hello?" then listens
QUITTER = "+15557780002"  # answers and hangs up during detection
SILENT = "+15557780003"  # answers and says nothing: INITIALSILENCE after 2.5 s
AMD_ARGS = "2500,1500,800,5000,100,50,2,256,5000"
PLAN = {
    "numbers": {
        PERSON: {"behaviour": "answer", "after": 0.2, "say": [{"at": 0.3, "text": "Hello?"}]},
        QUITTER: {"behaviour": "hangup_after", "after": 0.2, "seconds": 0.7},
        SILENT: {"behaviour": "answer", "after": 0.2, "say": []},
    }
}


@pytest.fixture
async def h() -> AsyncIterator[CommandHarness]:
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    async with running_harness(
        PLAN,
        CommandHarness,
        redis_url=settings.REDIS_URL,
        command_keys=(f"stasis:commands:test-{uuid.uuid4().hex}",),
        command_poll_s=0.5,
        amd_check_s=1.5,
        amd_recheck_s=0.5,
    ) as harness:
        harness.redis, harness.key = client, harness.config.command_keys[0]
        try:
            yield harness
        finally:
            await client.aclose()


async def originate_amd(h: CommandHarness, number: str) -> str:
    call_id = str(uuid.uuid4())
    h.sink.live.add(call_id)
    await h.sim.request(
        "POST",
        "/ari/channels",
        expect=200,
        json={
            "endpoint": f"PJSIP/{number}@trunk",
            "app": APP,
            "appArgs": f"outbound,{call_id},amd",
            "channelId": call_id,
            "timeout": "30",
            "variables": {"AI_AMD_ARGS": AMD_ARGS, "AI_STASIS_APP": APP},
        },
    )
    return call_id


async def sim_call(h: CommandHarness, call_id: str) -> dict[str, Any]:
    _, body = await h.sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    return dict(body)


async def test_a_person_joins_the_prepared_agent_and_the_media_worker_is_told(h: CommandHarness) -> None:
    await h.start()
    call_id = str(uuid.uuid4())
    async with Replies(h.redis, call_id) as replies:
        h.sink.live.add(call_id)
        await h.sim.request(
            "POST",
            "/ari/channels",
            expect=200,
            json={
                "endpoint": f"PJSIP/{PERSON}@trunk",
                "app": APP,
                "appArgs": f"outbound,{call_id},amd",
                "channelId": call_id,
                "variables": {"AI_AMD_ARGS": AMD_ARGS, "AI_STASIS_APP": APP},
            },
        )
        await h.sink.wait(call_id, CallAnswered)
        # During detection the media leg waits in the bridge alone: the callee is in the dialplan.
        await wait_until(lambda: len(h.media.connections) == 1, timeout=5)
        await asyncio.sleep(0.3)
        assert call_id not in await h.bridge_members(call_id)
        reply = await replies.next()
    assert reply == {"type": "amd", "status": "HUMAN", "cause": "HUMAN-800-800"}
    amd = h.sink.of(call_id, CallAmd)[0]
    assert (amd.status, amd.cause) == ("HUMAN", "HUMAN-800-800")
    bridged = await h.sink.wait(call_id, CallBridged)
    media_id = await h.media_leg(call_id)
    assert await h.bridge_members(call_id) == sorted([call_id, media_id])
    assert h.sink.events.index(amd) < h.sink.events.index(bridged)
    assert not h.sink.of(call_id, CallEnded), "the hop's StasisEnd is not the end"
    await h.sim.request("DELETE", f"/ari/channels/{call_id}", expect=204)
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.answered and ended.reason == "destroyed"
    await no_channels_left(h)


async def test_a_callee_gone_during_detection_ends_the_call_and_its_legs(h: CommandHarness) -> None:
    await h.start()
    call_id = await originate_amd(h, QUITTER)
    await h.sink.wait(call_id, CallAnswered)
    ended = await h.sink.wait(call_id, CallEnded, timeout=6)
    assert ended.answered and ended.reason == "destroyed"
    assert not h.sink.of(call_id, CallAmd) and not h.sink.of(call_id, CallBridged)
    record = await sim_call(h, call_id)
    assert record["ended_by"] == "callee" and record["amd"]["status"] == "HANGUP"
    await no_channels_left(h)  # the prepared media leg and the bridge went too
    await h.wait_gone(f"/ari/bridges/bridge-{call_id}")


async def test_an_app_restarted_during_detection_takes_the_call_back(h: CommandHarness) -> None:
    first = await h.start()
    call_id = await originate_amd(h, SILENT)
    await h.sink.wait(call_id, CallAnswered)
    await wait_until(lambda: len(h.media.connections) == 1, timeout=5)
    first.stop()  # (as after a crash: nothing cleaned up)
    await wait_until(lambda: not first.connected.is_set(), timeout=5)
    await h.start()
    amd = await h.sink.wait(call_id, CallAmd, timeout=6)
    assert (amd.status, amd.cause) == ("MACHINE", "INITIALSILENCE-2500-2500")
    await h.sink.wait(call_id, CallBridged, timeout=6)
    media_id = await h.media_leg(call_id)  # exactly one: the old process's leg was given up
    assert await h.bridge_members(call_id) == sorted([call_id, media_id])
    assert not h.sink.of(call_id, CallEnded)
    await h.sim.request("DELETE", f"/ari/channels/{call_id}", expect=204)
    await h.sink.wait(call_id, CallEnded)
    await no_channels_left(h)
