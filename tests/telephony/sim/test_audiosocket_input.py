"""Bad and unusual input from the media server over real AudioSocket TCP connections (PROTOCOLS.md §4.1-§4.5,
§7.4): only the offending AudioSocket leg ends; the caller stays in its bridge and in Stasis; other calls
are untouched. Fragmented and odd-length frames are accepted; audio sent before bridging is dropped.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from wire import audiosocket
from wire.audiosocket import REASON_BAD_KIND, REASON_BAD_LENGTH

from .conftest import APP, EventStream, MediaConnection, MediaServer, Sim, wait_until

SILENT = "+15550300001"
TALKER = "+15550300002"  # talks without a pause for the whole call


@pytest.fixture
def plan_doc() -> dict[str, Any]:
    return {
        "numbers": {
            SILENT: {"behaviour": "answer", "after": 0, "say": []},
            TALKER: {
                "behaviour": "answer",
                "after": 0,
                "say": [{"at": 0, "text": "Hello there, I keep on talking.", "repeat": True}],
            },
        }
    }


@pytest.fixture
async def stream(sim: Sim) -> Any:
    s = await sim.events(APP)
    await wait_until(lambda: sim.pbx.active_app(APP), timeout=2)
    yield s
    await s.close()


@dataclass
class BridgedCall:
    caller: str
    bridge: str
    media_id: str
    conn: MediaConnection


def slin_frame(n: int = 0, rate: int = 8000, ms: int = 20, hz: float = 440.0) -> bytes:
    count = rate * ms // 1000
    return b"".join(
        struct.pack("<h", round(8000 * math.sin(2 * math.pi * hz * (n * count + i) / rate)))
        for i in range(count)
    )


async def originate(sim: Sim, number: str) -> str:
    cid = str(uuid.uuid4())
    await sim.request(
        "POST",
        "/ari/channels",
        params={"endpoint": f"PJSIP/{number}@trunk", "app": APP, "appArgs": "outbound", "channelId": cid},
        expect=200,
    )
    return cid


async def external_media(
    sim: Sim, media: MediaServer, stream: EventStream, fmt: str
) -> tuple[str, MediaConnection]:
    media_id, _ = await sim.external_media(media, stream, fmt)
    conn = media.by_uuid(media_id)
    sock = conn.writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # our writes leave as separate segments
    return media_id, conn


async def bridged_call(
    sim: Sim, media: MediaServer, stream: EventStream, number: str, fmt: str = "slin"
) -> BridgedCall:
    caller = await originate(sim, number)
    await stream.wait_type("StasisStart", caller, timeout=3)
    bridge = str(uuid.uuid4())
    await sim.request("POST", "/ari/bridges", params={"bridgeId": bridge}, expect=200)
    media_id, conn = await external_media(sim, media, stream, fmt)
    await sim.request(
        "POST", f"/ari/bridges/{bridge}/addChannel", params={"channel": f"{caller},{media_id}"}, expect=204
    )
    return BridgedCall(caller, bridge, media_id, conn)


async def heard(sim: Sim, call_id: str) -> dict[str, Any]:
    _, record = await sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    return dict(record["heard"])


async def media_entry(sim: Sim, call_id: str, media_id: str) -> dict[str, Any]:
    _, record = await sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    return next(m for m in record["media"] if m["channel"] == media_id)


async def send_paced(conn: MediaConnection, frames: int, kind: int = 0x10) -> None:
    for n in range(frames):
        conn.send(audiosocket.encode(kind, slin_frame(n)))
        await conn.writer.drain()
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------------------- bad input

BAD_INPUT = {
    "error_frame_0xff": (b"\xff\x00\x01\x01", "malformed", REASON_BAD_KIND),
    "uuid_frame_0x01": (b"\x01\x00\x10" + uuid.uuid4().bytes, "malformed", REASON_BAD_KIND),
    "zero_length_audio": (b"\x13\x00\x00", "malformed", REASON_BAD_LENGTH),
    "unknown_kind_0x20": (b"\x20\x00\x02\x00\x00", "malformed", REASON_BAD_KIND),
    "hangup_frame": (b"\x00\x00\x00", "hangup_frame", None),
    "socket_closed": (b"", "socket_closed", None),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
async def test_bad_input_ends_only_that_audiosocket_leg(
    sim: Sim, media_server: MediaServer, stream: EventStream, case: str
) -> None:
    data, end_reason, error = BAD_INPUT[case]
    a = await bridged_call(sim, media_server, stream, SILENT)
    b = await bridged_call(sim, media_server, stream, TALKER, fmt="slin16")
    await wait_until(lambda: len(b.conn.audio()) >= 5, timeout=2)
    await send_paced(a.conn, 3)  # good audio first: heard
    await wait_until(lambda: sim.pbx.calls[a.caller].heard.frames == 3, timeout=1)

    if data:
        a.conn.send(data)
        await a.conn.writer.drain()
    else:
        a.conn.writer.close()

    destroyed = await stream.wait_type("ChannelDestroyed", a.media_id, timeout=2)
    assert destroyed["cause"] == 16
    types = [e["type"] for e in stream.about(a.media_id)]
    tail = types[types.index("ChannelHangupRequest") :]
    assert tail.index("ChannelLeftBridge") < tail.index("StasisEnd") < tail.index("ChannelDestroyed")
    if data:
        # the simulator (Asterisk) closes the socket itself
        await wait_until(lambda: a.conn.eof_at is not None, timeout=1)

    # the caller stays in its bridge and in Stasis (A9 / §4.5)
    await asyncio.sleep(0.1)
    assert not any(
        e["type"] in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest") for e in stream.about(a.caller)
    )
    left = [e for e in stream.events if e["type"] == "ChannelLeftBridge"]
    assert [e["channel"]["id"] for e in left] == [a.media_id]
    _, bridge = await sim.request("GET", f"/ari/bridges/{a.bridge}", expect=200)
    assert bridge["channels"] == [a.caller]
    await sim.request(
        "POST",
        f"/ari/channels/{a.caller}/variable",
        params={"variable": "STILL", "value": "here"},
        expect=204,
    )  # needs Stasis
    assert (await sim.request("GET", f"/ari/channels/{a.media_id}"))[0] == 404

    # inspection says why the leg ended
    entry = await media_entry(sim, a.caller, a.media_id)
    assert entry["ended"] is True and entry["end_reason"] == end_reason and entry["error"] == error
    assert entry["frames_in"] == 3
    assert (await heard(sim, a.caller))["frames"] == 3

    # the other call is unaffected: it keeps receiving audio, and what its server sends is heard
    before = len(b.conn.audio())
    await asyncio.sleep(0.3)
    assert len(b.conn.audio()) - before >= 10
    assert b.conn.eof_at is None
    heard_before = (await heard(sim, b.caller))["frames"]
    await send_paced(b.conn, 5, kind=0x12)
    await wait_until(lambda: sim.pbx.calls[b.caller].heard.frames == heard_before + 5, timeout=1)
    entry_b = await media_entry(sim, b.caller, b.media_id)
    assert entry_b["ended"] is False and entry_b["end_reason"] is None
    assert not any(e["type"] in ("StasisEnd", "ChannelDestroyed") for e in stream.about(b.media_id))

    # the caller can still be hung up normally
    await sim.request("DELETE", f"/ari/channels/{a.caller}", expect=204)
    assert (await stream.wait_type("ChannelDestroyed", a.caller, timeout=2))["cause"] == 16
    await sim.request("DELETE", f"/ari/channels/{b.caller}", expect=204)
    await sim.request("DELETE", f"/ari/channels/{b.media_id}", expect=204)


async def test_frames_before_a_bad_one_in_the_same_segment_are_heard(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    a = await bridged_call(sim, media_server, stream, SILENT)
    a.conn.send(
        audiosocket.encode(0x10, slin_frame(0)) + audiosocket.encode(0x10, slin_frame(1)) + b"\xff\x00\x00"
    )
    await stream.wait_type("ChannelDestroyed", a.media_id, timeout=2)
    assert (await heard(sim, a.caller))["frames"] == 2
    entry = await media_entry(sim, a.caller, a.media_id)
    assert (entry["end_reason"], entry["error"]) == ("malformed", REASON_BAD_KIND)


async def test_nothing_after_a_hangup_frame_is_read(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    a = await bridged_call(sim, media_server, stream, SILENT)
    a.conn.send(b"\x00\x00\x05" + b"\xff\x00\x00" + audiosocket.encode(0x10, slin_frame(0)))
    await stream.wait_type("ChannelDestroyed", a.media_id, timeout=2)
    entry = await media_entry(sim, a.caller, a.media_id)
    assert (entry["end_reason"], entry["error"]) == ("hangup_frame", None)
    assert (await heard(sim, a.caller))["frames"] == 0


# ------------------------------------------------------------------------------------ unusual but fine


async def test_fragmented_frames_are_reassembled(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    a = await bridged_call(sim, media_server, stream, SILENT)
    for n in range(5):
        message = audiosocket.encode(0x10, slin_frame(n))
        for i in range(len(message)):  # one byte per write; the header straddles several segments
            a.conn.send(message[i : i + 1])
            await a.conn.writer.drain()
            if i < 6:
                await asyncio.sleep(0.003)
        await asyncio.sleep(0.005)
    await wait_until(lambda: sim.pbx.calls[a.caller].heard.frames == 5, timeout=2)
    h = await heard(sim, a.caller)
    assert h["frames"] == 5 and h["voiced_frames"] == 5
    assert h["received_ms"] == 100.0 and h["heard_ms"] == 100.0 and h["kinds"] == {"0x10": 5}
    assert sim.pbx.legs[a.media_id].frames_in == 5 and not sim.pbx.legs[a.media_id].ended
    assert not any(e["type"] == "ChannelDestroyed" for e in stream.about(a.media_id))
    # and they count once the leg's stats are taken (leaving the bridge)
    await sim.request(
        "POST", f"/ari/bridges/{a.bridge}/removeChannel", params={"channel": a.media_id}, expect=204
    )
    entry = await media_entry(sim, a.caller, a.media_id)
    assert entry["ended"] is False and entry["frames_in"] == 5


async def test_inspection_media_stats_are_live_while_bridged(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    a = await bridged_call(sim, media_server, stream, TALKER, fmt="slin16")
    await wait_until(lambda: len(a.conn.audio()) >= 10, timeout=2)
    await send_paced(a.conn, 5, kind=0x12)
    await wait_until(lambda: sim.pbx.calls[a.caller].heard.frames == 5, timeout=1)
    entry = await media_entry(sim, a.caller, a.media_id)
    assert entry["frames_in"] == 5
    assert entry["frames_out"] >= 10


async def test_odd_length_audio_is_accepted(sim: Sim, media_server: MediaServer, stream: EventStream) -> None:
    a = await bridged_call(sim, media_server, stream, SILENT)
    odd = slin_frame(0) + b"\x7f"  # 321 bytes: the trailing byte is never played
    a.conn.send(audiosocket.encode(0x10, odd))
    await asyncio.sleep(0.02)
    a.conn.send(audiosocket.encode(0x10, slin_frame(1)))  # the stream stays aligned after it
    await wait_until(lambda: sim.pbx.calls[a.caller].heard.frames == 2, timeout=1)
    h = await heard(sim, a.caller)
    assert h["received_ms"] == 40.0
    await asyncio.sleep(0.05)
    entry = await media_entry(sim, a.caller, a.media_id)
    assert entry["ended"] is False and entry["error"] is None
    assert a.conn.eof_at is None


async def test_audio_before_the_leg_is_bridged_is_dropped(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    caller = await originate(sim, SILENT)
    await stream.wait_type("StasisStart", caller, timeout=3)
    bridge = str(uuid.uuid4())
    await sim.request("POST", "/ari/bridges", params={"bridgeId": bridge}, expect=200)
    media_id, conn = await external_media(sim, media_server, stream, "slin")
    await send_paced(conn, 10)  # in Stasis, not bridged: consumed and dropped (§4.4)
    await sim.request("POST", f"/ari/bridges/{bridge}/addChannel", params={"channel": caller}, expect=204)
    await send_paced(conn, 3)  # the caller is bridged, the leg is not yet
    await asyncio.sleep(0.1)
    await sim.request("POST", f"/ari/bridges/{bridge}/addChannel", params={"channel": media_id}, expect=204)
    assert (await heard(sim, caller))["frames"] == 0
    await send_paced(conn, 4)
    await wait_until(lambda: sim.pbx.calls[caller].heard.frames == 4, timeout=1)
    await asyncio.sleep(0.1)
    h = await heard(sim, caller)
    assert h["frames"] == 4 and h["received_ms"] == 80.0
    entry = await media_entry(sim, caller, media_id)
    assert entry["ended"] is False
    # after leaving the bridge, audio is dropped again
    await sim.request(
        "POST", f"/ari/bridges/{bridge}/removeChannel", params={"channel": media_id}, expect=204
    )
    await send_paced(conn, 3)
    await asyncio.sleep(0.1)
    assert (await heard(sim, caller))["frames"] == 4
