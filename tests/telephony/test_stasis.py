"""The Stasis app against the real simulator over TCP (ARI REST + events websocket + AudioSocket).

The only double is the orchestrator side: a sink that records call events and answers a configurable live
set. The PBX is the simulator (run in the test's loop on an ephemeral port); the media worker is the test's
AudioSocket server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import pytest

from telephony.events import (
    CallAnswered,
    CallBridged,
    CallDtmf,
    CallEnded,
    CallEvent,
    CallInbound,
    CallRinging,
    MediaGone,
)
from telephony.outcomes import CallOutcome
from telephony.sim.plan import parse_plan
from telephony.stasis import (
    HANDLED_EVENTS,
    MEDIA_SHORT_LIFE_S,
    StasisApp,
    StasisConfig,
    _ignorable,
    media_owner,
)
from tests.asterisk_reference import trace_paths

from .sim.conftest import APP, PASSWORD, USER, MediaServer, Sim, start_sim, wait_until

ANSWER = "+15550001001"
BUSY = "+15550001002"
RING = "+15550001003"
REJECT = "+15550001004"
HANGS_UP = "+15550001005"
DTMF = "+15550001006"
HANGS_UP_AT_ONCE = "+15550001007"

PLAN = {
    "numbers": {
        ANSWER: {"behaviour": "answer", "after": 0.2},
        BUSY: {"behaviour": "busy", "after": 0.2},
        RING: {"behaviour": "no_answer"},
        REJECT: {"behaviour": "reject", "after": 0.2},
        HANGS_UP: {"behaviour": "answer", "after": 0.2, "hangup_after": 1.0},
        DTMF: {"behaviour": "answer", "after": 0.2, "dtmf": [{"at": 0.5, "digits": "7"}]},
        HANGS_UP_AT_ONCE: {"behaviour": "answer", "after": 0.2, "hangup_after": 0.3},
    }
}


class RecordingSink:
    """The orchestrator side, faked: records events; ``live`` is what it claims is live on the PBX."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self.live: set[str] = set()

    async def handle(self, event: CallEvent) -> None:
        self.events.append(event)
        if isinstance(event, CallEnded):
            self.live.discard(event.call_id)

    async def live_call_ids(self) -> set[str]:
        return set(self.live)

    def of(self, call_id: str, kind: type[Any] | None = None) -> list[Any]:
        return [e for e in self.events if e.call_id == call_id and (kind is None or isinstance(e, kind))]

    async def wait(self, call_id: str, kind: type[Any], timeout: float = 10.0) -> Any:
        await wait_until(lambda: bool(self.of(call_id, kind)), timeout=timeout)
        return self.of(call_id, kind)[0]


@dataclass
class Harness:
    sim: Sim
    media: MediaServer
    sink: RecordingSink
    config: StasisConfig
    apps: list[tuple[StasisApp, asyncio.Task[None]]]

    async def start(self, **overrides: Any) -> StasisApp:
        app = StasisApp(replace(self.config, **overrides), self.sink)
        task = asyncio.get_running_loop().create_task(app.run())
        self.apps.append((app, task))
        await asyncio.wait_for(app.connected.wait(), 5)
        return app

    async def originate(self, number: str, *, live: bool = True, timeout: int = 30) -> str:
        call_id = str(uuid.uuid4())
        if live:
            self.sink.live.add(call_id)
        await self.sim.request(
            "POST",
            "/ari/channels",
            expect=200,
            params={
                "endpoint": f"PJSIP/{number}@trunk",
                "app": APP,
                "appArgs": f"outbound,{call_id}",
                "channelId": call_id,
                "timeout": str(timeout),
            },
        )
        return call_id

    async def media_leg(self, call_id: str) -> str:
        """The channel id of the call's live AudioSocket leg (``media-<call id>~<try>``)."""
        _, channels = await self.sim.request("GET", "/ari/channels", expect=200)
        legs = [c["id"] for c in channels if media_owner(c["id"]) == call_id]
        assert len(legs) == 1, legs
        return str(legs[0])

    async def bridge_members(self, call_id: str) -> list[str]:
        _, bridge = await self.sim.request("GET", f"/ari/bridges/bridge-{call_id}", expect=200)
        return sorted(bridge["channels"])

    async def exists(self, path: str) -> bool:
        status, _ = await self.sim.request("GET", path)
        return bool(status == 200)

    async def wait_gone(self, path: str, timeout: float = 5.0) -> None:
        """Wait until the simulator answers 404 for ``path`` (a channel or bridge)."""
        deadline = time.monotonic() + timeout
        while await self.exists(path):
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} still exists after {timeout}s")
            await asyncio.sleep(0.05)


H = TypeVar("H", bound=Harness)


@contextlib.asynccontextmanager
async def running_harness(plan: dict[str, Any], harness_class: type[H], **config: Any) -> AsyncIterator[H]:
    """The simulator with ``plan``, a stand-in AudioSocket listener and a harness around them; every Stasis
    app the test started is stopped on exit. ``config`` overrides the StasisConfig defaults of these tests."""
    runner, pbx, port = await start_sim(parse_plan(plan))
    media = MediaServer()
    await media.start()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(
        headers={"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
    ) as session:
        settings = {
            "base_url": base,
            "user": USER,
            "password": PASSWORD,
            "app": APP,
            "media_hosts": (media.address,),
            "max_call_duration_s": 60,
            "backoff_initial_s": 0.2,
            "end_grace_s": 2.0,
            **config,
        }
        harness = harness_class(
            sim=Sim(pbx=pbx, base=base, session=session, port=port),
            media=media,
            sink=RecordingSink(),
            config=StasisConfig(**settings),
            apps=[],
        )
        try:
            yield harness
        finally:
            for app, task in harness.apps:
                app.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 10)
            await media.close()
    await runner.cleanup()


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with running_harness(PLAN, Harness) as harness:
        yield harness


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_answered_call_is_bridged_to_an_audiosocket_leg(h: Harness) -> None:
    await h.start()
    call_id = await h.originate(ANSWER)

    answered = await h.sink.wait(call_id, CallAnswered)
    bridged = await h.sink.wait(call_id, CallBridged)
    assert answered.channel_id == call_id
    conn = h.media.by_uuid(bridged.media_uuid)
    assert conn.frames[0][1] == 0x01  # the UUID frame first

    _, bridge = await h.sim.request("GET", f"/ari/bridges/bridge-{call_id}", expect=200)
    assert bridge["bridge_type"] == "mixing"
    media_id = await h.media_leg(call_id)
    assert sorted(bridge["channels"]) == sorted([call_id, media_id])
    _, media_channel = await h.sim.request("GET", f"/ari/channels/{media_id}", expect=200)
    assert media_channel["name"].startswith("AudioSocket/")
    assert not h.sink.of(call_id, CallEnded)

    # The orchestrator hangs up (as the originate/flow code would): the call ends, answered.
    await h.sim.request("DELETE", f"/ari/channels/{call_id}", expect=204)
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.outcome is CallOutcome.ANSWERED and ended.answered and ended.reason == "destroyed"
    assert [type(e) for e in h.sink.of(call_id)] == [CallRinging, CallAnswered, CallBridged, CallEnded]
    await wait_until(lambda: conn.eof_at is not None, timeout=5)
    assert not await h.exists(f"/ari/bridges/bridge-{call_id}")


@pytest.mark.parametrize(
    ("number", "outcome"),
    [(BUSY, CallOutcome.BUSY), (RING, CallOutcome.NO_ANSWER), (REJECT, CallOutcome.REJECTED)],
)
async def test_unanswered_calls_end_with_their_outcome(h: Harness, number: str, outcome: CallOutcome) -> None:
    await h.start()
    call_id = await h.originate(number, timeout=1)

    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.outcome is outcome
    assert not ended.answered and ended.reason == "destroyed"
    assert not h.sink.of(call_id, CallAnswered) and not h.sink.of(call_id, CallBridged)
    assert h.media.connections == []


async def test_callee_hangs_up_and_the_media_leg_and_bridge_go_too(h: Harness) -> None:
    """A9: Asterisk leaves the AudioSocket leg in the bridge when the caller goes; the app removes both."""
    await h.start()
    call_id = await h.originate(HANGS_UP)
    bridged = await h.sink.wait(call_id, CallBridged)
    conn = h.media.by_uuid(bridged.media_uuid)
    media_id = await h.media_leg(call_id)

    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.outcome is CallOutcome.ANSWERED and ended.answered and ended.cause == 16
    await wait_until(lambda: conn.eof_at is not None, timeout=5)
    await h.wait_gone(f"/ari/channels/{media_id}")
    await h.wait_gone(f"/ari/bridges/bridge-{call_id}")
    assert not h.sink.of(call_id, MediaGone)
    await asyncio.sleep(0.2)  # the media leg's own ChannelDestroyed came after its teardown: not a call
    assert not h.sink.of(media_id)


async def test_dtmf_is_reported(h: Harness) -> None:
    await h.start()
    call_id = await h.originate(DTMF)
    dtmf = await h.sink.wait(call_id, CallDtmf)
    assert dtmf.digit == "7"


async def test_media_leg_ending_first_hangs_up_the_caller(h: Harness) -> None:
    await h.start()
    call_id = await h.originate(ANSWER)
    await h.sink.wait(call_id, CallBridged)
    media_id = await h.media_leg(call_id)

    await h.sim.request("DELETE", f"/ari/channels/{media_id}", expect=204)  # the media side went away
    await h.sink.wait(call_id, MediaGone)
    ended = await h.sink.wait(call_id, CallEnded)
    # (at once after the bridge, with no mark of the agent's to read: the agent was hardly heard)
    assert ended.outcome is CallOutcome.MEDIA_FAILED
    _, record = await h.sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    assert record["ended_by"] == "app"  # the caller was hung up, not left in silence
    await h.wait_gone(f"/ari/bridges/bridge-{call_id}")


async def test_hard_maximum_duration(h: Harness) -> None:
    await h.start(max_call_duration_s=1.0)
    started = time.monotonic()
    call_id = await h.originate(ANSWER)
    bridged = await h.sink.wait(call_id, CallBridged)

    ended = await h.sink.wait(call_id, CallEnded, timeout=5)
    assert 0.9 <= time.monotonic() - started <= 3.0
    assert ended.reason == "max_duration" and ended.outcome is CallOutcome.ANSWERED
    _, record = await h.sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    assert record["state"] == "ended" and record["ended_by"] == "app"
    await wait_until(lambda: h.media.by_uuid(bridged.media_uuid).eof_at is not None, timeout=5)


async def test_no_media_listener_hangs_the_caller_up(h: Harness) -> None:
    await h.start(media_hosts=(f"127.0.0.1:{closed_port()}",))
    call_id = await h.originate(ANSWER)

    await h.sink.wait(call_id, MediaGone)
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.answered and not h.sink.of(call_id, CallBridged)
    _, record = await h.sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    assert record["state"] == "ended" and record["ended_by"] == "app"
    await h.wait_gone(f"/ari/bridges/bridge-{call_id}")


async def test_a_dead_media_host_is_skipped(h: Harness) -> None:
    await h.start(media_hosts=(f"127.0.0.1:{closed_port()}", h.media.address))
    call_id = await h.originate(ANSWER)
    bridged = await h.sink.wait(call_id, CallBridged)
    assert h.media.by_uuid(bridged.media_uuid)
    assert not h.sink.of(call_id, MediaGone)


async def test_the_media_leg_is_bridged_only_once_it_entered_the_app(h: Harness) -> None:
    """DESIGN §6 / the race seen on a real Asterisk: externalMedia answers before its leg is dialed and
    has entered the app. With the leg's StasisStart 0.6 s late, an addChannel sent at once would answer 422
    and the call would be hung up; the app waits for the leg and bridges it."""
    h.sim.pbx.media_start_delay_s = (0.6, 0.6)
    await h.start()
    call_id = await h.originate(ANSWER)
    bridged = await h.sink.wait(call_id, CallBridged)
    media_id = await h.media_leg(call_id)
    assert await h.bridge_members(call_id) == sorted([call_id, media_id])
    assert not h.sink.of(call_id, MediaGone) and not h.sink.of(call_id, CallEnded)
    assert h.media.by_uuid(bridged.media_uuid).frames[0][1] == 0x01


async def test_a_media_leg_that_never_enters_the_app_fails_the_call_as_media_failed(h: Harness) -> None:
    """Bounded wait: a leg still outside the app after media_start_timeout_s is given up (and hung up);
    with no other host the caller is hung up and the call is media_failed, never answered."""
    h.sim.pbx.media_start_delay_s = (3.0, 3.0)
    await h.start(media_start_timeout_s=0.5)
    call_id = await h.originate(ANSWER)
    await h.sink.wait(call_id, MediaGone)
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.outcome is CallOutcome.MEDIA_FAILED and ended.answered
    assert not h.sink.of(call_id, CallBridged)
    _, record = await h.sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    assert record["ended_by"] == "app"
    await h.wait_gone(f"/ari/bridges/bridge-{call_id}")
    await wait_until(lambda: all(c.eof_at is not None for c in h.media.connections), timeout=5)


async def test_a_callee_who_hangs_up_during_the_media_set_up_is_answered_not_media_failed(h: Harness):
    """Picked up and hung up before the agent's leg was in (0.3 s): our media did not fail; they left."""
    h.sim.pbx.media_start_delay_s = (0.6, 0.6)
    await h.start()
    call_id = await h.originate(HANGS_UP_AT_ONCE)
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.outcome is CallOutcome.ANSWERED and ended.reason == "destroyed"
    await asyncio.sleep(1.0)  # the leg's set-up finishes meanwhile: no MediaGone, nothing left behind
    assert not h.sink.of(call_id, MediaGone) and not h.sink.of(call_id, CallBridged)
    _, channels = await h.sim.request("GET", "/ari/channels", expect=200)
    assert channels == []
    assert not await h.exists(f"/ari/bridges/bridge-{call_id}")


async def test_no_media_worker_at_all_is_media_failed(h: Harness) -> None:
    """A media worker outage: every externalMedia answers 500. The callee who just picked up is hung up
    at once (not left in silence) and the call is media_failed, retryable, not a success."""
    await h.start(media_hosts=(f"127.0.0.1:{closed_port()}", f"127.0.0.1:{closed_port()}"))
    call_id = await h.originate(ANSWER)
    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.outcome is CallOutcome.MEDIA_FAILED
    assert [type(e) for e in h.sink.of(call_id)][-2:] == [MediaGone, CallEnded]
    assert not h.sink.of(call_id, CallBridged)


async def test_a_restarted_app_sets_up_the_media_an_earlier_one_left_half_done(h: Harness) -> None:
    """The app dies after the call was answered and while its AudioSocket leg was being set up: the next
    one finds the caller alone (bridge without media), gives up the stray leg and sets up a new one: the
    caller gets an agent instead of silence."""
    h.sim.pbx.media_start_delay_s = (1.5, 1.5)
    first = await h.start(media_start_timeout_s=10)
    call_id = await h.originate(ANSWER)
    await h.sink.wait(call_id, CallAnswered)
    await wait_until(lambda: len(h.media.connections) == 1, timeout=5)  # the leg is being dialed
    first.stop()  # (its tasks are cancelled: nothing is cleaned up, as after a crash)
    await wait_until(lambda: not first.connected.is_set(), timeout=5)
    h.sim.pbx.media_start_delay_s = (0.05, 0.05)
    await h.start()
    await wait_until(lambda: len(h.sink.of(call_id, CallBridged)) == 1, timeout=10)
    bridged = h.sink.of(call_id, CallBridged)[0]
    media_id = await h.media_leg(call_id)  # exactly one leg: the stray one was hung up
    assert await h.bridge_members(call_id) == sorted([call_id, media_id])
    assert h.media.by_uuid(bridged.media_uuid).eof_at is None
    assert not h.sink.of(call_id, CallEnded)


async def test_reconnect_reconciles_calls_ended_in_the_gap_and_hangs_up_orphans(h: Harness) -> None:
    app = await h.start(backoff_initial_s=2.0)
    live_call = await h.originate(ANSWER)
    orphan = await h.originate(ANSWER, live=False)  # e.g. its attempt was already closed elsewhere
    live_media = (await h.sink.wait(live_call, CallBridged)).media_uuid
    orphan_media = (await h.sink.wait(orphan, CallBridged)).media_uuid

    # The PBX drops the events websocket (server side), and the callee hangs up during the gap.
    connection = h.sim.pbx.apps[APP].connection
    assert connection is not None
    await connection.ws.close()  # type: ignore[attr-defined]
    await wait_until(lambda: not app.connected.is_set(), timeout=5)
    await h.sim.request("POST", f"/sim/calls/{live_call}/hangup", expect=200)
    await h.wait_gone(f"/ari/channels/{live_call}")
    assert not h.sink.of(live_call, CallEnded), "its events went nowhere: the app was inactive"

    await wait_until(lambda: app.connections == 2, timeout=10)
    ended = await h.sink.wait(live_call, CallEnded)
    assert ended.reason == "reconciled"
    assert ended.outcome is CallOutcome.ANSWERED and ended.answered
    # The AudioSocket leg and bridge of the ended call, and the orphan call with its leg, are gone.
    await wait_until(lambda: h.media.by_uuid(live_media).eof_at is not None, timeout=5)
    await wait_until(lambda: h.media.by_uuid(orphan_media).eof_at is not None, timeout=5)
    await h.wait_gone(f"/ari/channels/{orphan}")
    _, record = await h.sim.request("GET", f"/sim/calls/{orphan}", expect=200)
    assert record["ended_by"] == "app"
    for call_id in (live_call, orphan):
        await h.wait_gone(f"/ari/bridges/bridge-{call_id}")
    _, channels = await h.sim.request("GET", "/ari/channels", expect=200)
    assert channels == []


async def test_reconcile_on_first_connect_closes_a_live_call_the_pbx_does_not_have(h: Harness) -> None:
    """After a restart of the app: the orchestrator thinks a call is live, the PBX has no such channel."""
    h.sink.live.add("gone-call")
    await h.start()
    ended = await h.sink.wait("gone-call", CallEnded)
    # Nothing was seen of it: the end is not guessed ("failed" would have the lead dialed again).
    assert ended.reason == "reconciled" and ended.outcome is CallOutcome.UNKNOWN and not ended.answered
    assert ended.gap_started_at is None  # no heartbeat store (no Redis): nobody knows when the gap began


async def test_application_replaced_reconnects(h: Harness) -> None:
    app = await h.start(backoff_initial_s=0.2)
    other = await h.sim.events()  # takes the app name: ours gets ApplicationReplaced
    await wait_until(lambda: app.connections == 2, timeout=5)
    await other.close()
    call_id = await h.originate(ANSWER)
    await h.sink.wait(call_id, CallBridged)


async def test_inbound_call_is_reported_told_and_ends_on_stasis_end(h: Harness) -> None:
    """Until inbound flows route them, an inbound caller is recorded (CallInbound), answered, hears a clear
    message and is hung up; A4: the call ends for the app with StasisEnd (no ChannelDestroyed reaches it)."""
    await h.start(inbound_message="sound:ss-noservice")
    _, body = await h.sim.request(
        "POST",
        "/sim/inbound",
        expect=200,
        json={"did": "15550009999", "caller_number": "+19175551212", "caller_name": "Pat", "app": APP},
    )
    call_id = body["call"]
    inbound = await h.sink.wait(call_id, CallInbound)
    assert (inbound.did, inbound.caller_number, inbound.caller_name) == ("15550009999", "+19175551212", "Pat")
    assert inbound.message == "sound:ss-noservice"

    ended = await h.sink.wait(call_id, CallEnded)
    assert ended.reason == "stasis_end" and ended.answered and ended.outcome is CallOutcome.ANSWERED
    _, record = await h.sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    assert record["playbacks"] == ["sound:ss-noservice"]  # the caller heard the message ...
    assert record["ended_by"] == "app"  # ... and was hung up on, not left waiting
    assert not h.sink.of(call_id, CallBridged) and h.media.connections == []


async def test_a_failing_reconciliation_is_retried(h: Harness) -> None:
    """The orchestrator's database is down at connect time: the app backs off and tries again."""
    failures = [RuntimeError("database is down")]
    live_call_ids = h.sink.live_call_ids

    async def flaky() -> set[str]:
        if failures:
            raise failures.pop()
        return await live_call_ids()

    h.sink.live_call_ids = flaky  # type: ignore[method-assign]
    app = await h.start()
    assert app.connections == 1 and not failures
    call_id = await h.originate(ANSWER)
    await h.sink.wait(call_id, CallBridged)


# ------------------------------------------------------------------------------------- delivery to the sink
# The delivery itself, without a PBX: events are emitted as _on_event would, the dispatcher runs as in run().


class GatedSink(RecordingSink):
    """Records events in the order handle() finished; ``gates[call_id]`` holds that call's events back."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.gates: dict[str, asyncio.Event] = {}
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self.fail: set[tuple[str, str]] = set()  # (call id, digit) of DTMF events whose handle() raises

    async def handle(self, event: CallEvent) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            gate = self.gates.get(event.call_id)
            if gate is not None:
                await gate.wait()
            await asyncio.sleep(self.delay * (hash(event) % 3))
            if isinstance(event, CallDtmf) and (event.call_id, event.digit) in self.fail:
                raise RuntimeError("the database is on fire")
            await super().handle(event)
        finally:
            self.active -= 1


@contextlib.asynccontextmanager
async def delivering(sink: RecordingSink, **overrides: Any) -> AsyncIterator[StasisApp]:
    config = StasisConfig(base_url="http://127.0.0.1:9", user=USER, password=PASSWORD, **overrides)
    app = StasisApp(config, sink)
    task = asyncio.get_running_loop().create_task(app._deliver())
    try:
        yield app
    finally:
        task.cancel()
        await asyncio.gather(task, *app._lane_tasks, return_exceptions=True)


def dtmf(call_id: str, n: int) -> CallDtmf:
    return CallDtmf(call_id, str(n), datetime.now(UTC))


async def test_events_of_many_calls_are_delivered_concurrently_each_call_in_order() -> None:
    sink = GatedSink(delay=0.002)
    calls = [f"call-{i}" for i in range(40)]
    async with delivering(sink, delivery_concurrency=8) as app:
        for n in range(6):  # interleaved, as the websocket brings them
            for call_id in calls:
                app._emit(dtmf(call_id, n))
        await asyncio.wait_for(app._queue.join(), 10)
        assert app.backlog == 0 and not app._lanes

    assert len(sink.events) == 40 * 6
    for call_id in calls:
        assert [e.digit for e in sink.of(call_id)] == [str(n) for n in range(6)]
    assert 1 < sink.max_active <= 8  # concurrent across calls, bounded by delivery_concurrency


async def test_a_slow_call_does_not_hold_up_the_others() -> None:
    sink = GatedSink()
    sink.gates["slow"] = asyncio.Event()
    async with delivering(sink, delivery_concurrency=4) as app:
        for n in range(3):
            app._emit(dtmf("slow", n))
            for i in range(10):
                app._emit(dtmf(f"fast-{i}", n))
        await wait_until(lambda: len(sink.events) == 30, timeout=5)
        assert not sink.of("slow") and app.backlog == 3  # all three still waiting, in order

        sink.gates["slow"].set()
        await asyncio.wait_for(app._queue.join(), 5)
    assert [e.digit for e in sink.of("slow")] == ["0", "1", "2"]


async def test_a_failing_sink_call_is_logged_and_the_call_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    sink = GatedSink()
    sink.fail.add(("c1", "1"))
    async with delivering(sink, delivery_concurrency=2) as app:
        for n in range(3):
            app._emit(dtmf("c1", n))
            app._emit(dtmf("c2", n))
        await asyncio.wait_for(app._queue.join(), 5)
    assert [e.digit for e in sink.of("c1")] == ["0", "2"]
    assert [e.digit for e in sink.of("c2")] == ["0", "1", "2"]
    assert "sink failed on CallDtmf(call_id='c1', digit='1'" in caplog.text


async def test_a_call_whose_lane_emptied_gets_a_new_one_in_order() -> None:
    sink = GatedSink()
    async with delivering(sink, delivery_concurrency=1) as app:
        app._emit(dtmf("c1", 0))
        await asyncio.wait_for(app._queue.join(), 5)
        assert not app._lanes
        app._emit(dtmf("c1", 1))
        app._emit(dtmf("c2", 0))
        app._emit(dtmf("c1", 2))  # queued behind c2, which waits for the only lane: c1 gets a new one later
        await asyncio.wait_for(app._queue.join(), 5)
    assert [e.digit for e in sink.of("c1")] == ["0", "1", "2"] and len(sink.of("c2")) == 1
    assert sink.max_active == 1


def test_delivery_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="delivery_concurrency"):
        StasisApp(
            StasisConfig(base_url="http://x", user="u", password="p", delivery_concurrency=0), RecordingSink()
        )


class BatchSink(GatedSink):
    """A GatedSink that also takes a call's waiting events at once; records each handover's size."""

    def __init__(self) -> None:
        super().__init__()
        self.handovers: list[tuple[str, int]] = []
        self.fail_many: set[tuple[str, str]] = set()  # (call id, digit) whose event fails inside handle_many

    async def handle(self, event: CallEvent) -> None:
        self.handovers.append((event.call_id, 1))
        await super().handle(event)

    async def handle_many(self, events: Sequence[CallEvent]) -> list[BaseException | None]:
        self.handovers.append((events[0].call_id, len(events)))
        gate = self.gates.get(events[0].call_id)
        if gate is not None:
            await gate.wait()
        errors: list[BaseException | None] = []
        for event in events:
            if isinstance(event, CallDtmf) and (event.call_id, event.digit) in self.fail_many:
                errors.append(RuntimeError("the database is on fire"))
                continue
            await RecordingSink.handle(self, event)
            errors.append(None)
        return errors


async def test_a_calls_waiting_events_are_handed_over_together_in_order() -> None:
    sink = BatchSink()
    sink.gates["c1"] = asyncio.Event()
    async with delivering(sink) as app:
        app._emit(dtmf("c1", 0))
        await wait_until(lambda: sink.handovers == [("c1", 1)], timeout=5)  # in hand, held at the gate
        for n in range(1, 4):
            app._emit(dtmf("c1", n))
        app._emit(dtmf("c2", 0))  # nothing waits behind it: alone
        await wait_until(lambda: len(sink.of("c2")) == 1, timeout=5)
        sink.gates["c1"].set()
        await asyncio.wait_for(app._queue.join(), 5)
        assert app.backlog == 0 and not app._lanes
    assert sorted(sink.handovers) == [("c1", 1), ("c1", 3), ("c2", 1)]
    assert [e.digit for e in sink.of("c1")] == ["0", "1", "2", "3"]


async def test_a_waiting_lane_gathers_its_calls_events_and_runs_in_turn() -> None:
    """With every lane busy a new call's events gather in its lane (in order) and go over at its turn."""
    sink = BatchSink()
    sink.gates["c1"] = asyncio.Event()
    async with delivering(sink, delivery_concurrency=1) as app:
        app._emit(dtmf("c1", 0))
        for n in range(3):
            app._emit(dtmf("c2", n))
        app._emit(dtmf("c3", 0))
        await wait_until(lambda: app._queue.qsize() == 0, timeout=5)
        assert list(app._lanes_waiting) == ["c2", "c3"] and len(app._lanes["c2"]) == 3
        sink.gates["c1"].set()
        await asyncio.wait_for(app._queue.join(), 5)
        assert not app._lanes and app._lanes_running == 0
    assert sink.handovers == [("c1", 1), ("c2", 3), ("c3", 1)]  # first come, first served
    assert sink.max_active == 1


async def test_a_failing_event_of_a_handover_is_logged_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = BatchSink()
    sink.gates["c1"] = asyncio.Event()
    sink.fail_many.add(("c1", "2"))
    async with delivering(sink) as app:
        app._emit(dtmf("c1", 0))
        await wait_until(lambda: bool(sink.handovers), timeout=5)
        for n in range(1, 4):
            app._emit(dtmf("c1", n))
        sink.gates["c1"].set()
        await asyncio.wait_for(app._queue.join(), 5)
        assert app.backlog == 0
    assert [e.digit for e in sink.of("c1")] == ["0", "1", "3"]
    assert "sink failed on CallDtmf(call_id='c1', digit='2'" in caplog.text
    assert "the database is on fire" in caplog.text


# ------------------------------------------------------------------------- skipping events undecoded


def _trace_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for trace in trace_paths():
        events.extend(json.loads(trace.read_text())["events"])
    return events


@pytest.mark.parametrize("indent", [None, 2])
def test_only_events_the_app_does_not_handle_are_skipped_undecoded(indent: int | None) -> None:
    events = _trace_events()
    assert len(events) > 100
    for event in events:
        text = json.dumps(event, indent=indent)
        assert _ignorable(text) is (event["type"] not in HANDLED_EVENTS), text[:200]


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "ChannelVarset", "variable": "type", "value": "x"}',  # "type" twice: decoded
        '{"variable": "X", "value": "{\\"type\\": \\"StasisStart\\"}", "type": "ChannelVarset"}',
        '{"type": "StasisStart", "args": []}',
        "not json at all",
        '{"no_type": 1}',
        "",
    ],
)
def test_anything_ambiguous_is_decoded(text: str) -> None:
    expected_skip = text.startswith('{"variable": "X"')  # the escaped quotes inside a value are not a key
    assert _ignorable(text) is expected_skip


async def test_without_the_media_workers_mark_a_leg_gone_soon_after_joining_is_media_failed(h: Harness):
    """No Redis to read the worker's mark from: a leg gone within a few seconds of joining the bridge left
    the agent hardly heard (media_failed); one gone later stays answered (never a redial on a guess)."""
    await h.start()
    soon = await h.originate(ANSWER)
    await h.sink.wait(soon, CallBridged)
    await h.sim.request("DELETE", f"/ari/channels/{await h.media_leg(soon)}", expect=204)
    assert (await h.sink.wait(soon, CallEnded)).outcome is CallOutcome.MEDIA_FAILED

    later = await h.originate(ANSWER)
    await h.sink.wait(later, CallBridged)
    await asyncio.sleep(MEDIA_SHORT_LIFE_S + 0.2)
    await h.sim.request("DELETE", f"/ari/channels/{await h.media_leg(later)}", expect=204)
    assert (await h.sink.wait(later, CallEnded)).outcome is CallOutcome.ANSWERED
