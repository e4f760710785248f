"""aioari, the ARI client the Stasis app uses, drives a whole call against the simulator.

originate → StasisStart → mixing bridge → externalMedia (AudioSocket) → audio both ways and DTMF →
hangup, all through aioari's swagger-built client and its events websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import uuid
from typing import Any

import aioari
import pytest

from wire import audiosocket

from .conftest import APP, PASSWORD, USER, MediaServer, Sim, wait_until

NUMBER = "+15550001234"


@pytest.fixture
def plan_doc() -> dict[str, Any]:
    return {
        "numbers": {
            NUMBER: {
                "behaviour": "answer",
                "after": 0.3,
                "dtmf": [{"at": 0.8, "digits": "12"}],
                "say": [{"at": 1.2, "text": "Hello, this is the callee speaking."}],
            }
        }
    }


def tone_frame(n: int, rate: int = 24000) -> bytes:
    samples = rate // 50
    return b"".join(
        struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * (n * samples + i) / rate)))
        for i in range(samples)
    )


async def test_aioari_drives_a_bridged_call(sim: Sim, media_server: MediaServer) -> None:
    client = await aioari.connect(sim.base + "/", USER, PASSWORD)
    started: asyncio.Queue[Any] = asyncio.Queue()
    dtmf: list[str] = []
    destroyed: dict[str, Any] = {}

    def on_start(objs: Any, event: dict[str, Any]) -> None:
        # StasisStart has two Channel-typed fields (channel, replace_channel): aioari passes a dict of them
        started.put_nowait((objs["channel"], event))

    client.on_channel_event("StasisStart", on_start)
    client.on_channel_event("ChannelDtmfReceived", lambda ch, ev: dtmf.append(ev["digit"]))
    client.on_channel_event("ChannelDestroyed", lambda ch, ev: destroyed.setdefault(ch.id, ev))
    runner = asyncio.get_running_loop().create_task(client.run(apps=APP))
    try:
        await wait_until(lambda: bool(sim.pbx.apps.get(APP) and sim.pbx.apps[APP].connection))
        call_id = str(uuid.uuid4())
        caller = await client.channels.originate(
            endpoint=f"PJSIP/{NUMBER}@trunk",
            app=APP,
            appArgs=f"outbound,{call_id}",
            channelId=call_id,
            callerId='"Acme" <+15550001111>',
            timeout=30,
        )
        assert caller.json["state"] == "Down"
        channel, event = await asyncio.wait_for(started.get(), 5)
        assert channel.id == call_id and event["args"] == ["outbound", call_id]

        bridge = await client.bridges.create(type="mixing")
        media_uuid = str(uuid.uuid4())
        media = await client.channels.externalMedia(
            app=APP,
            external_host=media_server.address,
            encapsulation="audiosocket",
            transport="tcp",
            format="slin24",
            data=media_uuid,
        )
        media_channel, media_event = await asyncio.wait_for(started.get(), 5)
        assert media_channel.id == media.id and media_event["args"] == [media_uuid]
        await bridge.addChannel(channel=[channel.id, media.id])

        conn = media_server.by_uuid(media_uuid)
        assert conn.frames[0][1] == audiosocket.KIND_UUID

        # the media worker's side: speak to the callee for one second, paced at 20 ms
        for n in range(50):
            conn.send(audiosocket.encode(0x13, tone_frame(n)))
            await asyncio.sleep(0.02)
        await wait_until(lambda: conn.dtmf() == "12", timeout=5)
        await wait_until(lambda: len(conn.audio()) > 40, timeout=5)
        assert dtmf == ["1", "2"]
        assert all(k == 0x13 and len(p) <= 960 for _, k, p in conn.audio())

        await channel.hangup()
        await wait_until(lambda: call_id in destroyed, timeout=5)
        assert destroyed[call_id]["cause"] == 16
        await asyncio.sleep(0.1)
        assert conn.eof_at is None, "the AudioSocket leg outlives the caller until the app hangs it up (A9)"
        await media.hangup()
        await bridge.destroy()
        await wait_until(lambda: conn.eof_at is not None, timeout=5)

        status, record = await sim.request("GET", f"/sim/calls/{call_id}")
        assert status == 200
        assert record["state"] == "ended" and record["ended_by"] == "app" and record["cause"] == 16
        assert [d["digit"] for d in record["dtmf_sent"]] == ["1", "2"]
        assert 900 <= record["heard"]["heard_ms"] <= 1100
        assert record["said"][0]["text"].startswith("Hello")
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
        await client.close()
