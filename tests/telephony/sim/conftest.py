"""Fixtures that run the PBX simulator on a real TCP port and talk to it as an ARI client would.

The simulator runs in the test's own event loop (aiohttp on 127.0.0.1, an ephemeral port); clients use
real HTTP, a real events websocket and real AudioSocket TCP connections.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from telephony.sim.engine import Pbx
from telephony.sim.plan import Plan, parse_plan
from telephony.sim.server import make_app
from wire import audiosocket

USER, PASSWORD = "asterisk", "s3cret"
APP = "ai_agent"


@dataclass
class Sim:
    pbx: Pbx
    base: str
    session: aiohttp.ClientSession
    port: int

    @property
    def ari(self) -> str:
        return f"{self.base}/ari"

    async def request(self, method: str, path: str, *, expect: int | None = None, **kwargs: Any) -> Any:
        async with self.session.request(method, f"{self.base}{path}", **kwargs) as resp:
            text = await resp.text()
            if expect is not None:
                assert resp.status == expect, f"{method} {path}: {resp.status} {text}"
            body = json.loads(text) if text else None
            return resp.status, body

    async def external_media(
        self, media: MediaServer, stream: EventStream, fmt: str = "slin24"
    ) -> tuple[str, dict[str, Any]]:
        """externalMedia over AudioSocket to the test's media server; returns (channel id, response)."""
        media_id = str(uuid.uuid4())
        _, body = await self.request(
            "POST",
            "/ari/channels/externalMedia",
            expect=200,
            params={
                "app": APP,
                "external_host": media.address,
                "encapsulation": "audiosocket",
                "transport": "tcp",
                "format": fmt,
                "data": media_id,
                "channelId": media_id,
            },
        )
        await stream.wait_type("StasisStart", media_id, timeout=3)
        return media_id, body

    async def bridge_with_media(
        self, media: MediaServer, stream: EventStream, caller: str, fmt: str = "slin24"
    ) -> tuple[str, str]:
        """A mixing bridge holding `caller` and a new AudioSocket leg; returns (bridge id, media id)."""
        bridge_id = str(uuid.uuid4())
        await self.request(
            "POST", "/ari/bridges", params={"type": "mixing", "bridgeId": bridge_id}, expect=200
        )
        media_id, _ = await self.external_media(media, stream, fmt)
        await self.request(
            "POST",
            f"/ari/bridges/{bridge_id}/addChannel",
            params={"channel": f"{caller},{media_id}"},
            expect=204,
        )
        return bridge_id, media_id

    async def events(self, app: str = APP, *, subscribe_all: bool = False) -> EventStream:
        ws = await self.session.ws_connect(
            f"{self.base}/ari/events", params={"app": app, "subscribeAll": str(subscribe_all).lower()}
        )
        stream = EventStream(ws)
        stream.start()
        return stream


@dataclass
class EventStream:
    ws: aiohttp.ClientWebSocketResponse
    events: list[dict[str, Any]] = field(default_factory=list)
    _cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            async with self._cond:
                self.events.append(json.loads(msg.data))
                self._cond.notify_all()

    async def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first event (seen so far or arriving within `timeout`) that satisfies `pred`."""
        deadline = time.monotonic() + timeout
        async with self._cond:
            while True:
                for event in self.events:
                    if pred(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    types = [
                        (e["type"], (e.get("channel") or e.get("peer") or {}).get("id")) for e in self.events
                    ]
                    raise AssertionError(f"no matching event within {timeout}s; got {types}")
                try:
                    await asyncio.wait_for(self._cond.wait(), remaining)
                except TimeoutError:
                    pass

    async def wait_type(
        self, type_: str, channel_id: str | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        return await self.wait_for(
            lambda e: e["type"] == type_ and (channel_id is None or about(e) == channel_id), timeout
        )

    def about(self, channel_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if about(e) == channel_id]

    async def close(self) -> None:
        await self.ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def about(event: dict[str, Any]) -> str | None:
    obj = event.get("channel") or event.get("peer")
    return obj.get("id") if obj else None


async def start_sim(plan: Plan | None = None) -> tuple[web.AppRunner, Pbx, int]:
    pbx = Pbx(plan or Plan())
    runner = web.AppRunner(make_app(pbx, user=USER, password=PASSWORD, ws_write_timeout=2.0), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, pbx, port


@pytest.fixture
def plan_doc() -> dict[str, Any]:
    return {}


@pytest.fixture
async def sim(plan_doc: dict[str, Any]) -> AsyncIterator[Sim]:
    runner, pbx, port = await start_sim(parse_plan(plan_doc))
    async with aiohttp.ClientSession(
        headers={"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
    ) as session:
        yield Sim(pbx=pbx, base=f"http://127.0.0.1:{port}", session=session, port=port)
    await runner.cleanup()


@dataclass
class MediaConnection:
    """One AudioSocket connection accepted by the test's media server (the role of the media worker)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    uuid: uuid.UUID | None = None
    frames: list[tuple[float, int, bytes]] = field(default_factory=list)
    eof_at: float | None = None
    first_byte_at: float | None = None

    def audio(self) -> list[tuple[float, int, bytes]]:
        return [f for f in self.frames if f[1] >= 0x10 and f[1] != 0xFF]

    def dtmf(self) -> str:
        return "".join(p.decode() for _, k, p in self.frames if k == audiosocket.KIND_DTMF)

    def send(self, data: bytes) -> None:
        self.writer.write(data)


class MediaServer:
    """A minimal AudioSocket server: records what Asterisk (the simulator) sends, lets tests send back."""

    def __init__(self) -> None:
        self.connections: list[MediaConnection] = []
        self.connected = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = MediaConnection(reader, writer)
        self.connections.append(conn)
        self.connected.set()
        parser = audiosocket.ClientStreamParser()
        start = time.monotonic()
        while True:
            data = await reader.read(65536)
            if not data:
                conn.eof_at = time.monotonic() - start
                break
            if conn.first_byte_at is None:
                conn.first_byte_at = time.monotonic() - start
            for frame in parser.feed(data):
                if frame.kind == audiosocket.KIND_UUID:
                    conn.uuid = uuid.UUID(bytes=frame.payload)
                conn.frames.append((time.monotonic() - start, frame.kind, frame.payload))

    def by_uuid(self, media_uuid: str) -> MediaConnection:
        for conn in self.connections:
            if conn.uuid is not None and str(conn.uuid) == media_uuid:
                return conn
        raise AssertionError(f"no AudioSocket connection for {media_uuid}")

    async def close(self) -> None:
        for conn in self.connections:
            conn.writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def media_server() -> AsyncIterator[MediaServer]:
    server = MediaServer()
    await server.start()
    yield server
    await server.close()


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)
