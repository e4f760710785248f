"""Helpers for the Realtime stand-in tests: a small event-level client and synthetic PCM."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from media.localai import RealtimeStandIn

RATE = 24000
FRAME_MS = 20


def tone_pcm(ms: int, hz: float = 300.0, amplitude: int = 8000) -> bytes:
    n = RATE * ms // 1000
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * hz * i / RATE)) for i in range(n)))


def silence_pcm(ms: int) -> bytes:
    return bytes(RATE * ms // 1000 * 2)


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


class Client:
    """One Realtime connection, event by event, every wait bounded."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []  # everything received, in order

    async def send(self, type_: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"type": type_, **fields}))

    async def send_raw(self, text: str) -> None:
        await self.ws.send(text)

    async def recv(self, timeout: float = 2.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        event: dict[str, Any] = json.loads(raw)
        self.events.append(event)
        return event

    async def until(self, type_: str, timeout: float = 3.0) -> list[dict[str, Any]]:
        """Receive until an event of ``type_`` arrives; return the events received, that one last."""
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.recv(timeout)
                got.append(event)
                if event["type"] == type_:
                    return got

    async def expect(self, type_: str, timeout: float = 2.0) -> dict[str, Any]:
        event = await self.recv(timeout)
        assert event["type"] == type_, event
        return event

    async def quiet(self, seconds: float = 0.1) -> list[dict[str, Any]]:
        """Everything that arrives within ``seconds`` (to assert that nothing more comes)."""
        got: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                got.append(await self.recv(left))
            except TimeoutError:
                break
        return got

    async def append(self, pcm: bytes) -> None:
        """Append audio the way the media worker does: one 20 ms frame per event."""
        step = RATE * FRAME_MS // 1000 * 2
        for i in range(0, len(pcm), step):
            await self.send("input_audio_buffer.append", audio=b64(pcm[i : i + step]))

    async def update(self, **session: Any) -> dict[str, Any]:
        await self.send("session.update", session={"type": "realtime", **session})
        return await self.expect("session.updated")


TOOLS = [
    {
        "type": "function",
        "name": name,
        "description": name,
        "parameters": {"type": "object", "properties": {}},
    }
    for name in (
        "end_call",
        "transfer_to_human",
        "schedule_callback",
        "set_disposition",
        "add_to_dnc",
        "send_sms",
    )
]


@pytest.fixture
async def server() -> AsyncIterator[RealtimeStandIn]:
    async with RealtimeStandIn("127.0.0.1", 0, mode="test", speed=10) as s:
        yield s


async def open_client(server: RealtimeStandIn, **kwargs: Any) -> Client:
    ws = await connect(f"{server.url}?model=gpt-realtime", open_timeout=2, **kwargs)
    return Client(ws)


@pytest.fixture
async def client(server: RealtimeStandIn) -> AsyncIterator[Client]:
    c = await open_client(server)
    created = await c.expect("session.created")
    assert created["session"]["type"] == "realtime"
    yield c
    await c.ws.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
