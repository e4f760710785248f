"""The portal's live stream (portal/live.py) over a real Redis: hints become coalesced SSE events, transcript
lines arrive rendered, and only the tenant's own channels are heard."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis
from django.conf import settings

from portal.live import _stream, sse_event
from wire.live import live_channel, transcript_channel


async def read_until(stream, predicate, timeout: float = 5.0) -> str:
    seen = ""

    async def pump() -> str:
        nonlocal seen
        async for chunk in stream:
            seen += chunk
            if predicate(seen):
                return seen
        return seen

    return await asyncio.wait_for(pump(), timeout)


def test_sse_event_prefixes_every_line():
    assert sse_event("calls", "") == "event: calls\ndata: \n\n"
    assert sse_event("x", "<li>a</li>\n<li>b</li>") == "event: x\ndata: <li>a</li>\ndata: <li>b</li>\n\n"


async def test_a_burst_of_call_hints_is_one_event_and_a_transcript_line_arrives_rendered():
    tenant_id, other_id = 990001, 990002
    stream = _stream(tenant_id)
    publisher = aioredis.from_url(settings.REDIS_URL)
    try:
        assert "connected" in await read_until(stream, lambda s: "connected" in s)
        for n in range(20):
            await publisher.publish(live_channel(tenant_id), json.dumps({"kind": "call", "call_id": f"c{n}"}))
        await publisher.publish(live_channel(other_id), json.dumps({"kind": "call", "call_id": "not-mine"}))
        await publisher.publish(
            transcript_channel(tenant_id),
            json.dumps({"attempt_id": "a1", "role": "assistant", "text": "Hi <b>there</b>", "at": None}),
        )
        seen = await read_until(
            stream, lambda s: "event: calls" in s and "transcript-a1" in s and "call-c19" in s
        )
        # Coalesced: the first hint at once (leading edge), the other 19 together half a second later.
        assert seen.count("event: calls\n") == 2
        assert "not-mine" not in seen  # another tenant's channel is not heard
        assert "Hi &lt;b&gt;there&lt;/b&gt;" in seen  # escaped: tenant text is never markup
        assert "Agent" in seen
        # A change after the burst still gets its own event (the trailing edge).
        await asyncio.sleep(0.6)
        await publisher.publish(live_channel(tenant_id), json.dumps({"kind": "incident", "incident_id": 7}))
        later = await read_until(stream, lambda s: "incident-7" in s)
        assert "event: incidents" in later
    finally:
        await stream.aclose()
        await publisher.aclose()
