"""Fixtures for the media worker tests: a real Redis, the Realtime stand-in, the worker in this process, and a
fake Asterisk that speaks AudioSocket over real TCP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis as redis_sync
from django.conf import settings

from media.config import MediaConfig
from media.localai import RealtimeStandIn
from media.tools import TOOL_NAMES
from media.worker import MediaWorker
from orchestrator.redis_client import celery_url_for
from wire.audiosocket import (
    KIND_HANGUP,
    KIND_SLIN24,
    ServerStreamParser,
    encode_audio,
    encode_dtmf,
    encode_uuid,
)
from wire.brief import MEDIA_EXPECT_TTL_S, media_expect_key

FRAME = 960
VOICED_RMS = 300.0  # above this a frame is voice (agent or apology), below it silence


def tone(ms: int, hz: float = 300.0, amplitude: int = 8000) -> bytes:
    n = 24 * ms
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * hz * i / 24000)) for i in range(n)))


def rms(pcm: bytes) -> float:
    n = len(pcm) // 2
    if not n:
        return 0.0
    samples = struct.unpack(f"<{n}h", pcm[: 2 * n])
    return math.sqrt(sum(s * s for s in samples) / n)


@dataclass
class Received:
    kind: int
    payload: bytes
    at: float


@dataclass
class FakeAsterisk:
    """One AudioSocket leg as Asterisk plays it: sends the UUID, audio and DTMF; records what comes back."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    frames: list[Received] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, port: int) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        peer._task = asyncio.ensure_future(peer._read())
        return peer

    async def _read(self) -> None:
        parser = ServerStreamParser()
        try:
            while data := await self.reader.read(65536):
                now = time.monotonic()
                for frame in parser.feed(data):
                    self.frames.append(Received(frame.kind, frame.payload, now))
        except ConnectionError:
            pass
        finally:
            self.closed.set()

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def send_uuid(self, call_id: str) -> None:
        self.send(encode_uuid(uuid.UUID(call_id)))

    def send_audio(self, pcm: bytes) -> None:
        for off in range(0, len(pcm), FRAME):
            self.send(encode_audio(KIND_SLIN24, pcm[off : off + FRAME]))

    async def speak(self, pcm: bytes) -> None:
        """Caller audio paced at 20 ms per frame, as Asterisk forwards it."""
        for off in range(0, len(pcm), FRAME):
            self.send(encode_audio(KIND_SLIN24, pcm[off : off + FRAME]))
            await asyncio.sleep(0.02)

    def send_dtmf(self, digit: str) -> None:
        self.send(encode_dtmf(digit))

    def audio(self) -> list[Received]:
        return [f for f in self.frames if f.kind == KIND_SLIN24]

    def voiced(self, threshold: float = VOICED_RMS) -> list[Received]:
        return [f for f in self.audio() if rms(f.payload) > threshold]

    @property
    def hung_up(self) -> bool:
        return any(f.kind == KIND_HANGUP for f in self.frames)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 2)


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class MediaHarness:
    worker: MediaWorker
    standin: RealtimeStandIn
    redis: redis_sync.Redis
    queue: str
    keys: list[str] = field(default_factory=list)

    def write_brief(self, call_id: str | None = None, **overrides: Any) -> str:
        call_id = call_id or str(uuid.uuid4())
        brief: dict[str, Any] = {
            "v": 1,
            "call_id": call_id,
            "attempt_id": call_id,
            "tenant_id": 7,
            "command_key": f"test:stasis:commands:{call_id}",
            "number": "+15550100010",
            "caller_id": "+15550000000",
            "timezone": "America/New_York",
            "instructions": "You are a test agent.",
            "greeting": "Hello from the test agent.",
            "voice": "marin",
            "model": "gpt-realtime",
            "language": "en",
            "turn_detection": "server_vad",
            "tools": list(TOOL_NAMES),
            "transfer_targets": [{"number": "+15550100099", "endpoint": "Local/+15550100099@sim"}],
            "limits": {
                "max_call_s": 600,
                "silence_prompt_s": 30,
                "silence_end_s": 60,
                "transfer_timeout_s": 5,
            },
            "contact": {"name": "Dana"},
        }
        brief.update(overrides)
        key = f"media:brief:{call_id}"
        self.redis.set(key, json.dumps(brief), ex=600)
        self.keys += [key, brief["command_key"]]
        return call_id

    def commands(self, call_id: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.redis.lrange(f"test:stasis:commands:{call_id}", 0, -1)]

    def tasks(self) -> list[tuple[str, dict[str, Any]]]:
        """The Celery messages the worker published on its queue: (task name, kwargs)."""
        out = []
        for raw in self.redis.lrange(self.queue, 0, -1):
            message = json.loads(raw)
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            _args, kwargs, _embed = json.loads(body)
            out.append((message["headers"]["task"], kwargs))
        return out

    def publish_reply(self, call_id: str, data: dict[str, Any]) -> int:
        return int(self.redis.publish(f"media:call:{call_id}", json.dumps(data)))

    def expect(self, call_id: str) -> str:
        """What the Stasis app does before externalMedia: a fresh media UUID, announced for ``call_id``."""
        media_uuid = str(uuid.uuid4())
        key = media_expect_key(media_uuid)
        self.redis.set(key, call_id, ex=MEDIA_EXPECT_TTL_S)
        self.keys.append(key)
        return media_uuid

    async def present(self, media_uuid: str) -> FakeAsterisk:
        """A connection that presents ``media_uuid``, expected or not."""
        peer = await FakeAsterisk.connect(self.worker.port)
        peer.send_uuid(media_uuid)
        return peer

    async def call(self, call_id: str) -> FakeAsterisk:
        """The media leg of ``call_id`` as the Stasis app sets it up: expected, then connected."""
        return await self.present(self.expect(call_id))


MakeHarness = Callable[..., Awaitable[MediaHarness]]


@pytest.fixture
async def media() -> AsyncIterator[MakeHarness]:
    """``await media(**worker_overrides, standin=dict(...))`` → a running worker and stand-in."""
    made: list[MediaHarness] = []

    async def make(*, standin: dict[str, Any] | None = None, **overrides: Any) -> MediaHarness:
        server = RealtimeStandIn(**{"reply_ms": 600, "speed": 10.0, **(standin or {})})
        await server.start()
        queue = f"media-test-{uuid.uuid4().hex[:8]}"
        config = MediaConfig(
            **{
                "host": "127.0.0.1",
                "port": 0,
                "redis_url": settings.REDIS_URL,
                "broker_url": celery_url_for(settings.REDIS_URL),
                "celery_queue": queue,
                "realtime_url": server.url,
                "transcribe_model": "",
                "uuid_timeout_s": 0.5,
                "drain_s": 1.0,
                **overrides,
            }
        )
        worker = MediaWorker(config)
        await worker.start()
        harness = MediaHarness(worker, server, redis_sync.Redis.from_url(settings.REDIS_URL), queue)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.worker.stop(drain_s=0.2)
        await harness.standin.stop()
        harness.redis.delete(harness.queue, *harness.keys)
        harness.redis.close()
