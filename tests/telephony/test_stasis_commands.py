"""Call actions (hang up, transfer to a human) reaching the Stasis app over Redis: JSON commands on the
``stasis:commands:<pbx id>`` lists it serves, replies on ``media:call:<call id>`` (telephony/stasis.py).

Against the PBX simulator over real TCP, as in test_stasis.py, with a real Redis (``settings.REDIS_URL``:
the REDIS_URL of the environment, else the test session's embedded one). Every test uses lists and
channels of its own (random names), so nothing is ever flushed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.conf import settings
from redis import asyncio as aioredis

from telephony import health
from telephony.events import CallBridged, CallEnded, CallTransferred, MediaGone
from telephony.health import STASIS_SEEN_KEY
from telephony.outcomes import CallOutcome
from telephony.stasis import StasisApp, StasisConfig, reply_channel
from wire.brief import MEDIA_WORKERS_KEY, STASIS_APPS_KEY, media_expect_key, media_seen_key

from .sim.conftest import APP, wait_until
from .test_stasis import Harness, RecordingSink, closed_port, running_harness

CALLEE = "+15550002001"  # answers and stays on the line
HUMAN = "+15550002099"  # the human a call is transferred to: answers after a short ring
SLOW_HUMAN = "+15550002098"  # answers, but only after 1.5 s
BUSY_HUMAN = "+15550002002"
RINGING_HUMAN = "+15550002003"
REJECTING_HUMAN = "+15550002004"

PLAN = {
    "numbers": {
        CALLEE: {"behaviour": "answer", "after": 0.2},
        HUMAN: {"behaviour": "answer", "after": 0.3},
        SLOW_HUMAN: {"behaviour": "answer", "after": 1.5},
        BUSY_HUMAN: {"behaviour": "busy", "after": 0.2},
        RINGING_HUMAN: {"behaviour": "no_answer"},
        REJECTING_HUMAN: {"behaviour": "reject", "after": 0.2},
    }
}


class CommandHarness(Harness):
    redis: aioredis.Redis
    key: str

    async def command(self, **command: Any) -> None:
        await self.redis.rpush(self.key, json.dumps(command))

    async def push_raw(self, raw: bytes | str) -> None:
        await self.redis.rpush(self.key, raw)

    async def bridged_call(self) -> tuple[str, CallBridged]:
        call_id = await self.originate(CALLEE)
        return call_id, await self.sink.wait(call_id, CallBridged)

    def transfer(
        self, call_id: str, number: str, *, local: bool = False, timeout_s: float = 10
    ) -> dict[str, Any]:
        endpoint = f"Local/{number}@sim" if local else f"PJSIP/{number}@trunk"
        return {
            "action": "transfer",
            "call_id": call_id,
            "number": number,
            "endpoint": endpoint,
            "caller_id": "+15550000000",
            "timeout_s": timeout_s,
        }


class Replies:
    """What the Stasis app publishes on ``media:call:<call id>`` (subscribed before the command is sent)."""

    def __init__(self, client: aioredis.Redis, call_id: str) -> None:
        self.pubsub = client.pubsub()
        self.channel = reply_channel(call_id)

    async def __aenter__(self) -> Replies:
        await self.pubsub.subscribe(self.channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.unsubscribe(self.channel)
        await self.pubsub.aclose()

    async def next(self, timeout: float = 10.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            if message is not None and message["type"] == "message":
                payload: dict[str, Any] = json.loads(message["data"])
                return payload
        return None


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
        command_keys=(f"{key}-other", key),
        command_poll_s=0.5,
    ) as harness:
        harness.redis, harness.key = redis_client, key
        try:
            yield harness
        finally:
            await redis_client.delete(key, f"{key}-other")


async def no_channels_left(h: Harness) -> None:
    deadline = time.monotonic() + 5
    while True:
        _, channels = await h.sim.request("GET", "/ari/channels", expect=200)
        if channels == []:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"channels left: {[c['id'] for c in channels]}")
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------------------- the media UUID


async def test_the_audiosocket_uuid_is_random_and_announced_for_the_call(h: CommandHarness) -> None:
    """The UUID the media worker receives is never the call id (tenant users see that one in the API): a
    fresh uuid4, announced in Redis as the call's for the media worker to take once."""
    await h.start()
    call_id, bridged = await h.bridged_call()
    assert bridged.media_uuid != call_id and str(uuid.UUID(bridged.media_uuid)) == bridged.media_uuid
    assert h.media.by_uuid(bridged.media_uuid).frames[0][1] == 0x01
    assert await h.redis.get(media_expect_key(bridged.media_uuid)) == call_id.encode()
    ttl = await h.redis.ttl(media_expect_key(bridged.media_uuid))
    assert 0 < ttl <= 60


# --------------------------------------------------------------------------------------------------- hangup


async def test_hangup_command_ends_the_call(h: CommandHarness) -> None:
    await h.start()
    call_id, bridged = await h.bridged_call()
    conn = h.media.by_uuid(bridged.media_uuid)

    await h.command(action="hangup", call_id=call_id, reason="agent_end_call")
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.outcome is CallOutcome.ANSWERED and ended.reason == "destroyed"
    _, record = await h.sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    assert record["ended_by"] == "app"
    await wait_until(lambda: conn.eof_at is not None, timeout=5)  # A9: the media leg is deleted too
    await h.wait_gone(f"/ari/bridges/bridge-{call_id}")
    assert not h.sink.of(call_id, MediaGone)


async def test_commands_on_any_of_the_apps_lists_are_taken(h: CommandHarness) -> None:
    await h.start()
    call_id, _ = await h.bridged_call()
    await h.redis.rpush(f"{h.key}-other", json.dumps({"action": "hangup", "call_id": call_id}))
    await h.sink.wait(call_id, CallEnded)


# ------------------------------------------------------------------------------------------------- transfer


@pytest.mark.parametrize("local", [False, True], ids=["pjsip", "local"])
async def test_transfer_answered_bridges_the_human_and_drops_the_agent(
    h: CommandHarness, local: bool
) -> None:
    await h.start()
    call_id, bridged = await h.bridged_call()
    conn = h.media.by_uuid(bridged.media_uuid)
    media_id = await h.media_leg(call_id)
    human_leg = f"xfer-{call_id}"

    async with Replies(h.redis, call_id) as replies:
        await h.command(**h.transfer(call_id, HUMAN, local=local))
        reply = await replies.next()
    assert reply == {"event": "transfer", "status": "answered", "number": HUMAN}
    transferred = await h.sink.wait(call_id, CallTransferred)
    assert transferred.number == HUMAN

    # The caller and the human share the bridge; the AudioSocket leg is gone and its socket closed.
    assert await h.bridge_members(call_id) == sorted([call_id, human_leg])
    await h.wait_gone(f"/ari/channels/{media_id}")
    await wait_until(lambda: conn.eof_at is not None, timeout=5)
    _, human = await h.sim.request("GET", f"/ari/channels/{human_leg}", expect=200)
    assert human["state"] == "Up"
    _, human_call = await h.sim.request("GET", f"/sim/calls/{human_leg}", expect=200)
    assert human_call["number"] == HUMAN
    await asyncio.sleep(0.3)
    assert not h.sink.of(call_id, MediaGone) and not h.sink.of(call_id, CallEnded)

    # The human hangs up: the caller is hung up, the bridge destroyed, the call's end reported as usual.
    await h.sim.request("POST", f"/sim/calls/{human_leg}/hangup", expect=200)
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.outcome is CallOutcome.ANSWERED and ended.reason == "destroyed"
    _, record = await h.sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    assert record["ended_by"] == "app"
    await h.wait_gone(f"/ari/bridges/bridge-{call_id}")
    await no_channels_left(h)
    # The human leg's events never made a call of their own.
    assert {e.call_id for e in h.sink.events} == {call_id}
    assert [type(e).__name__ for e in h.sink.of(call_id)][-2:] == ["CallTransferred", "CallEnded"]


async def test_the_caller_hanging_up_after_a_transfer_hangs_up_the_human(h: CommandHarness) -> None:
    await h.start()
    call_id, _ = await h.bridged_call()
    await h.command(**h.transfer(call_id, HUMAN))
    await h.sink.wait(call_id, CallTransferred)

    await h.sim.request("POST", f"/sim/calls/{call_id}/hangup", expect=200)
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.outcome is CallOutcome.ANSWERED and ended.cause == 16
    await h.wait_gone(f"/ari/channels/xfer-{call_id}")
    await h.wait_gone(f"/ari/bridges/bridge-{call_id}")
    await no_channels_left(h)
    assert {e.call_id for e in h.sink.events} == {call_id}


@pytest.mark.parametrize(
    ("number", "reason"), [(BUSY_HUMAN, "busy"), (REJECTING_HUMAN, "rejected")], ids=["busy", "rejected"]
)
async def test_a_failed_transfer_leaves_the_call_with_its_agent(
    h: CommandHarness, number: str, reason: str
) -> None:
    await h.start()
    call_id, bridged = await h.bridged_call()
    conn = h.media.by_uuid(bridged.media_uuid)

    async with Replies(h.redis, call_id) as replies:
        await h.command(**h.transfer(call_id, number))
        assert await replies.next() == {"event": "transfer", "status": "failed", "reason": reason}

        assert await h.bridge_members(call_id) == sorted([call_id, await h.media_leg(call_id)])
        assert conn.eof_at is None
        await h.wait_gone(f"/ari/channels/xfer-{call_id}")
        assert not h.sink.of(call_id, CallTransferred) and not h.sink.of(call_id, CallEnded)
        assert not h.sink.of(call_id, MediaGone)

        # The agent may try again: the next transfer works.
        await h.command(**h.transfer(call_id, HUMAN))
        assert await replies.next() == {"event": "transfer", "status": "answered", "number": HUMAN}
    assert await h.bridge_members(call_id) == sorted([call_id, f"xfer-{call_id}"])
    assert {e.call_id for e in h.sink.events} == {call_id}


async def test_a_transfer_not_answered_in_time_is_hung_up(h: CommandHarness) -> None:
    await h.start()
    call_id, bridged = await h.bridged_call()
    conn = h.media.by_uuid(bridged.media_uuid)

    async with Replies(h.redis, call_id) as replies:
        started = time.monotonic()
        await h.command(**h.transfer(call_id, RINGING_HUMAN, timeout_s=1))
        reply = await replies.next()
    assert reply == {"event": "transfer", "status": "failed", "reason": "timeout"}
    assert 0.9 <= time.monotonic() - started < 3.0
    _, human = await h.sim.request("GET", f"/sim/calls/xfer-{call_id}", expect=200)
    assert human["state"] == "ended" and human["ended_by"] == "app"
    assert await h.bridge_members(call_id) == sorted([call_id, await h.media_leg(call_id)])
    assert conn.eof_at is None and not h.sink.of(call_id, CallEnded)
    assert {e.call_id for e in h.sink.events} == {call_id}


async def test_a_second_transfer_while_one_is_pending_fails(h: CommandHarness) -> None:
    await h.start()
    call_id, _ = await h.bridged_call()

    async with Replies(h.redis, call_id) as replies:
        await h.command(**h.transfer(call_id, SLOW_HUMAN))
        await wait_until(lambda: f"xfer-{call_id}" in h.sim.pbx.channels, timeout=5)
        await h.command(**h.transfer(call_id, HUMAN))
        assert await replies.next() == {
            "event": "transfer",
            "status": "failed",
            "reason": "transfer_in_progress",
        }
        assert await replies.next() == {"event": "transfer", "status": "answered", "number": SLOW_HUMAN}
        # After the transfer the agent is gone: another transfer is refused.
        await h.command(**h.transfer(call_id, HUMAN))
        assert await replies.next() == {
            "event": "transfer",
            "status": "failed",
            "reason": "already_transferred",
        }


async def test_the_caller_hanging_up_during_a_transfer_cancels_it(h: CommandHarness) -> None:
    await h.start()
    call_id, _ = await h.bridged_call()
    await h.command(**h.transfer(call_id, SLOW_HUMAN))
    await wait_until(lambda: f"xfer-{call_id}" in h.sim.pbx.channels, timeout=5)

    await h.sim.request("POST", f"/sim/calls/{call_id}/hangup", expect=200)
    await h.sink.wait(call_id, CallEnded)
    await h.wait_gone(f"/ari/channels/xfer-{call_id}")
    await no_channels_left(h)
    await asyncio.sleep(1.8)  # past the moment the human would have answered
    await no_channels_left(h)
    assert not h.sink.of(call_id, CallTransferred)


async def test_a_transfer_with_unusable_fields_is_answered_failed(h: CommandHarness) -> None:
    await h.start()
    call_id, _ = await h.bridged_call()
    async with Replies(h.redis, call_id) as replies:
        await h.command(action="transfer", call_id=call_id, number=HUMAN)  # no endpoint
        assert await replies.next() == {"event": "transfer", "status": "failed", "reason": "invalid"}
        await h.command(**{**h.transfer(call_id, HUMAN), "timeout_s": "soon"})
        assert await replies.next() == {"event": "transfer", "status": "failed", "reason": "invalid"}
    assert await h.bridge_members(call_id) == sorted([call_id, await h.media_leg(call_id)])


# ------------------------------------------------------------------------------------------- bad commands


async def test_bad_commands_are_logged_and_dropped(
    h: CommandHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="telephony.stasis")
    await h.start()
    call_id, _ = await h.bridged_call()
    unknown_call = str(uuid.uuid4())

    async with Replies(h.redis, unknown_call) as replies:
        await h.push_raw(b"{not json")
        await h.push_raw(b"\xff\xfe\x00")
        await h.push_raw(json.dumps(["hangup", call_id]))
        await h.command(action="explode", call_id=call_id)
        await h.command(action="hangup")
        await h.command(action="hangup", call_id=unknown_call)
        await h.command(**h.transfer(unknown_call, HUMAN))
        assert await replies.next(timeout=1.0) is None  # a call this app does not have: no reply
    await wait_until(lambda: "for call " + unknown_call in caplog.text, timeout=5)
    assert caplog.text.count("dropping malformed command") == 3
    assert "dropping unknown command" in caplog.text
    assert not h.sink.of(call_id, CallEnded) and f"xfer-{unknown_call}" not in h.sim.pbx.channels

    # The consumer is still there.
    await h.command(action="hangup", call_id=call_id)
    await h.sink.wait(call_id, CallEnded)


# ------------------------------------------------------------------------------------- Redis and reconnects


async def test_redis_down_does_not_stop_call_handling(
    h: CommandHarness, caplog: pytest.LogCaptureFixture
) -> None:
    app = await h.start(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    call_id = await h.originate(HUMAN)
    # The call is still handled to its end: answered, no media leg placed (the media worker could not be
    # told whose leg it is: see test_no_media_leg_is_placed_when_it_cannot_be_announced), hung up, reported.
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.answered and ended.outcome is CallOutcome.MEDIA_FAILED
    await wait_until(lambda: "command queue unavailable" in caplog.text, timeout=5)

    started = time.monotonic()
    app.stop()
    await asyncio.wait_for(h.apps[-1][1], 5)
    assert time.monotonic() - started < 2.0


async def test_stop_is_prompt_while_waiting_for_commands(h: CommandHarness) -> None:
    app = await h.start(command_poll_s=1.0)
    await asyncio.sleep(0.2)
    started = time.monotonic()
    app.stop()
    await asyncio.wait_for(h.apps[-1][1], 5)
    assert time.monotonic() - started < 1.6


async def test_reconnect_keeps_a_live_transfer_and_drops_one_whose_call_is_gone(h: CommandHarness) -> None:
    app = await h.start(backoff_initial_s=1.0)
    kept, _ = await h.bridged_call()
    dropped, _ = await h.bridged_call()
    for call_id in (kept, dropped):
        await h.command(**h.transfer(call_id, HUMAN))
        await h.sink.wait(call_id, CallTransferred)

    connection = h.sim.pbx.apps[APP].connection
    assert connection is not None
    await connection.ws.close()  # type: ignore[attr-defined]
    await wait_until(lambda: not app.connected.is_set(), timeout=5)
    h.sink.live.discard(dropped)  # e.g. its attempt was closed elsewhere meanwhile
    await h.sim.request("DELETE", f"/ari/channels/{dropped}", expect=204)  # (its events go nowhere)
    await wait_until(lambda: app.connections == 2, timeout=10)

    await h.wait_gone(f"/ari/channels/xfer-{dropped}")
    await h.wait_gone(f"/ari/bridges/bridge-{dropped}")
    assert await h.bridge_members(kept) == sorted([kept, f"xfer-{kept}"])
    # The kept transfer still works after the reconnect: the human hangs up, the caller goes.
    await h.sim.request("POST", f"/sim/calls/xfer-{kept}/hangup", expect=200)
    await h.sink.wait(kept, CallEnded)
    await no_channels_left(h)


async def test_a_restarted_app_adopts_a_live_transfer(h: CommandHarness) -> None:
    first = await h.start()
    call_id, _ = await h.bridged_call()
    await h.command(**h.transfer(call_id, HUMAN))
    await h.sink.wait(call_id, CallTransferred)
    first.stop()
    await asyncio.wait_for(h.apps[-1][1], 5)

    await h.start()  # a new process: knows the call and its human leg only from GET /channels
    assert await h.bridge_members(call_id) == sorted([call_id, f"xfer-{call_id}"])
    await h.sim.request("POST", f"/sim/calls/xfer-{call_id}/hangup", expect=200)
    await h.sink.wait(call_id, CallEnded)
    await no_channels_left(h)


def test_redis_url_needs_command_keys() -> None:
    with pytest.raises(ValueError, match="command_keys"):
        StasisApp(
            StasisConfig(base_url="http://x", user="u", password="p", redis_url="redis://127.0.0.1/0"),
            RecordingSink(),
        )
    config = StasisConfig(base_url="http://x", user="u", password="p", redis_url="redis://:secret@h/0")
    assert "secret" not in repr(config)


# ----------------------------------------------------------------------------------------------- health


async def test_the_heartbeat_says_when_calls_may_be_placed_and_when_the_gap_began(h: CommandHarness) -> None:
    """DESIGN §5 rule 9: the app announces itself for its PBX rows while connected (the dispatcher places
    calls only then); when it stops, it is down at once; the next app that connects knows when the gap
    began and reports it with the ends it reconciles."""
    pbx_id = f"test-{uuid.uuid4().hex}"
    try:
        first = await h.start(pbx_ids=(pbx_id,))
        score = await h.redis.zscore(STASIS_APPS_KEY, pbx_id)
        assert score is not None and score > time.time() + 1  # up, for the heartbeat's TTL
        call_id = await h.originate(RINGING_HUMAN)  # rings: what the first app saw says nothing yet
        await wait_until(lambda: bool(h.sim.pbx.calls.get(call_id)), timeout=5)

        first.stop()
        await wait_until(lambda: not first.connected.is_set(), timeout=5)
        await asyncio.sleep(0.3)
        stopped_at = time.time()
        score = await h.redis.zscore(STASIS_APPS_KEY, pbx_id)
        assert score is not None and score <= stopped_at  # down: no call may be placed on this PBX now
        await h.sim.request("POST", f"/sim/calls/{call_id}/hangup", expect=200)  # ends while nobody listens

        await h.start(pbx_ids=(pbx_id,))
        ended = await h.sink.wait(call_id, CallEnded)
        assert ended.reason == "reconciled" and ended.outcome is CallOutcome.UNKNOWN
        assert ended.gap_started_at is not None
        assert stopped_at - 2 < ended.gap_started_at.timestamp() <= stopped_at  # a clean stop: exact
    finally:
        await h.redis.zrem(STASIS_APPS_KEY, pbx_id)
        await h.redis.hdel(STASIS_SEEN_KEY, pbx_id)


async def test_after_a_kill_the_gap_starts_a_heartbeat_period_after_the_last_heartbeat(
    h: CommandHarness,
) -> None:
    """A killed app leaves only its last heartbeat: it died within a period after it. A call placed in that
    period was placed while it listened (not app_unavailable), so the gap starts a period later."""
    pbx_id = f"test-{uuid.uuid4().hex}"
    beat = time.time() - 10
    try:
        await health.stasis_heartbeat(h.redis, [pbx_id], now=beat)  # what the killed process left behind
        call_id = await h.originate(RINGING_HUMAN, live=True)
        await wait_until(lambda: bool(h.sim.pbx.calls.get(call_id)), timeout=5)
        await h.sim.request("POST", f"/sim/calls/{call_id}/hangup", expect=200)
        await h.start(pbx_ids=(pbx_id,))
        ended = await h.sink.wait(call_id, CallEnded)
        assert ended.gap_started_at is not None
        assert ended.gap_started_at.timestamp() == pytest.approx(beat + health.HEARTBEAT_S + 0.5)
    finally:
        await h.redis.zrem(STASIS_APPS_KEY, pbx_id)
        await h.redis.hdel(STASIS_SEEN_KEY, pbx_id)


# ------------------------------------------------------------------------------------------ media failures


async def test_a_media_leg_that_ends_before_its_agent_spoke_is_media_failed(h: CommandHarness) -> None:
    """The media worker refused the leg or died before the agent was heard (no agent_audio mark): the
    callee heard silence, so the call is media_failed (retried), not answered."""
    await h.start()
    call_id, _ = await h.bridged_call()
    await h.sim.request("DELETE", f"/ari/channels/{await h.media_leg(call_id)}", expect=204)
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.outcome is CallOutcome.MEDIA_FAILED and ended.answered


async def test_a_media_leg_that_ends_after_its_agent_spoke_leaves_the_call_answered(h: CommandHarness):
    await h.start()
    call_id, _ = await h.bridged_call()
    await h.redis.hset(media_seen_key(call_id), mapping={"connected": "1", "agent_audio": "2"})
    try:
        await h.sim.request("DELETE", f"/ari/channels/{await h.media_leg(call_id)}", expect=204)
        ended = await h.sink.wait(call_id, CallEnded)
        assert ended.outcome is CallOutcome.ANSWERED
    finally:
        await h.redis.delete(media_seen_key(call_id))


async def test_no_media_leg_is_placed_when_it_cannot_be_announced(h: CommandHarness) -> None:
    """Redis down: the media worker would refuse a leg it was not told about, so none is placed and the
    callee is not left in silence: media_failed at once."""
    await h.start(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    call_id = await h.originate(CALLEE)
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.outcome is CallOutcome.MEDIA_FAILED
    assert h.media.connections == []


async def test_a_media_host_asterisk_cannot_reach_is_marked_down_at_once(h: CommandHarness) -> None:
    """So dispatch stops placing calls for it now, not when its heartbeat runs out."""
    dead = f"127.0.0.1:{closed_port()}"
    await h.redis.zadd(MEDIA_WORKERS_KEY, {dead: time.time() + 3})
    try:
        await h.start(media_hosts=(dead, h.media.address))
        call_id = await h.originate(CALLEE)
        await h.sink.wait(call_id, CallBridged)  # on the other host
        deadline = time.monotonic() + 5
        while await h.redis.zscore(MEDIA_WORKERS_KEY, dead) is not None:
            assert time.monotonic() < deadline, "the unreachable media worker is still announced as up"
            await asyncio.sleep(0.05)
    finally:
        await h.redis.zrem(MEDIA_WORKERS_KEY, dead)


async def test_a_media_worker_that_refuses_the_leg_makes_the_call_media_failed(h: CommandHarness) -> None:
    """The worker closes the connection as soon as it has read the UUID (it was not told about it, or it
    is going away): whichever way the race with the bridge goes, the callee heard nothing: media_failed."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(19)  # the UUID frame
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    host = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        for delay in (0.0, 0.05, 0.2):
            h.sim.pbx.media_start_delay_s = (delay, delay)
            app = await h.start(media_hosts=(host,))
            call_id = await h.originate(CALLEE)
            ended = await h.sink.wait(call_id, CallEnded)
            assert ended.outcome is CallOutcome.MEDIA_FAILED, delay
            assert not h.sink.of(call_id, CallBridged), delay
            app.stop()
            await asyncio.wait_for(h.apps[-1][1], 10)
    finally:
        server.close()
        await server.wait_closed()
