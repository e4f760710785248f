"""The websockets adapter: serves :class:`~media.localai.session.Session` at ``/v1/realtime?model=M``.

One task per connection reads client events; a second one (the pump) sleeps until the session's next
audio deadline and sends what is due. Both hold the connection's lock across "ask the session, send its
events", so server events always go out in the order the session produced them.

Tests use :class:`RealtimeStandIn` in-process (``async with RealtimeStandIn(port=0) as server``) and inspect
:attr:`RealtimeStandIn.connections`; failure tests use ``drop_all()`` or the CLI's ``--drop-after-s`` and
``--fail-session-update`` in a separate process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from media.pcm import find_espeak

from .policy import DEFAULT_RULES, AgentPolicy, Policy, Rule
from .session import Event, Session, SessionSettings
from .voices import EspeakVoice, PatternVoice, ToneVoice, Voice

log = logging.getLogger("media.localai")

PATH: Final = "/v1/realtime"
Mode = Literal["test", "agent"]
Speech = Literal["auto", "espeak", "tones"]
# Clients may append up to 15 MiB per event (PROTOCOLS.md §6.5).
MAX_MESSAGE_BYTES: Final = 16 * 2**20
DROP_CODE: Final = CloseCode.INTERNAL_ERROR  # 1011


@dataclass(eq=False)
class ConnectionRecord:
    """What one connection did, kept after it closes (tests inspect these)."""

    index: int
    path: str
    model: str
    headers: dict[str, str]
    opened_at: float
    session: Session | None = None
    closed_at: float | None = None
    close_code: int | None = None
    rejected: str | None = None  # why the server refused to run a session, if it did
    _ws: ServerConnection | None = field(default=None, repr=False)

    @property
    def live(self) -> bool:
        return self.closed_at is None

    @property
    def received(self) -> Counter[str]:
        """Client event types received, with counts."""
        return self.session.received if self.session else Counter()

    @property
    def received_order(self) -> list[str]:
        """Client event types in arrival order, without ``input_audio_buffer.append`` (see ``received``)."""
        return self.session.received_order if self.session else []

    @property
    def sent(self) -> Counter[str]:
        """Server event types sent, with counts."""
        return self.session.sent if self.session else Counter()

    @property
    def truncations(self) -> list[Event]:
        return self.session.truncations if self.session else []

    @property
    def cancellations(self) -> list[Event]:
        return self.session.cancellations if self.session else []

    @property
    def function_calls(self) -> list[Event]:
        return self.session.function_calls if self.session else []

    @property
    def errors(self) -> list[Event]:
        return self.session.errors if self.session else []

    @property
    def config(self) -> Event:
        """The session's effective configuration (as in the last session.updated)."""
        return self.session.config if self.session else {}


class RealtimeStandIn:
    """A Realtime GA protocol server: the test brain (``mode="test"``) or the local agent (``"agent"``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mode: Mode = "test",
        api_key: str | None = None,
        reply_ms: int = 2000,
        delta_ms: int = 100,
        speed: float = 10.0,
        latency_ms: int = 0,
        rules: tuple[Rule, ...] | None = None,
        drop_after_s: float | None = None,
        fail_session_update: bool = False,
        speech: Speech = "auto",
        espeak_path: str | None = None,
        espeak_voice: str = "en-us",
    ) -> None:
        if mode not in ("test", "agent"):
            raise ValueError(f"mode must be 'test' or 'agent', got {mode!r}")
        if delta_ms <= 0 or reply_ms <= 0 or speed < 0 or latency_ms < 0:
            raise ValueError("reply_ms and delta_ms must be positive; speed and latency_ms non-negative")
        self.host = host
        self.requested_port = port
        self.mode: Mode = mode
        self.api_key = api_key
        self.drop_after_s = drop_after_s
        self.settings = SessionSettings(
            delta_ms=delta_ms, speed=speed, latency_ms=latency_ms, fail_session_update=fail_session_update
        )
        rules = DEFAULT_RULES if rules is None else rules
        self.policy: Policy = AgentPolicy(rules) if mode == "agent" else Policy(rules)
        self.voice: Voice = self._make_voice(mode, speech, espeak_path, espeak_voice, reply_ms, delta_ms)
        self.connections: list[ConnectionRecord] = []
        self._server: Server | None = None

    @staticmethod
    def _make_voice(
        mode: Mode, speech: Speech, espeak_path: str | None, espeak_voice: str, reply_ms: int, delta_ms: int
    ) -> Voice:
        if mode == "test":
            return ToneVoice(reply_ms=reply_ms, delta_ms=delta_ms)
        if speech != "tones":
            executable = espeak_path or find_espeak()
            if executable:
                return EspeakVoice(executable=executable, delta_ms=delta_ms, voice=espeak_voice)
            if speech == "espeak":
                raise ValueError("speech='espeak' but neither espeak-ng nor espeak is on PATH")
        return PatternVoice(delta_ms=delta_ms)

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await serve(
            self._handle,
            self.host,
            self.requested_port,
            process_request=self._process_request,
            compression=None,  # deflating base64 audio costs CPU for little gain; OpenAI clients cope
            max_size=MAX_MESSAGE_BYTES,
            close_timeout=2,
            ping_interval=None,
        )
        log.info("Realtime stand-in (%s mode) listening on %s", self.mode, self.url)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()

    async def __aenter__(self) -> RealtimeStandIn:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        await self.start()
        if self._server is not None:
            await self._server.serve_forever()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        for sock in self._server.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("the server has no socket")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{PATH}"

    # ------------------------------------------------------------------------------------------ test hooks

    @property
    def connection_count(self) -> int:
        """Connections that got a session (rejected handshakes are not counted)."""
        return sum(1 for c in self.connections if c.session is not None)

    @property
    def live(self) -> list[ConnectionRecord]:
        return [c for c in self.connections if c.live and c.session is not None]

    async def drop_all(self, reason: str = "dropped by the stand-in") -> int:
        """Close every live connection with code 1011, as a failing server would. Returns how many."""
        victims = [c._ws for c in self.live if c._ws is not None]
        await asyncio.gather(*(ws.close(DROP_CODE, reason) for ws in victims), return_exceptions=True)
        return len(victims)

    # ------------------------------------------------------------------------------------------ handshake

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        split = urlsplit(request.path)
        if split.path.rstrip("/") != PATH:
            return connection.respond(
                HTTPStatus.NOT_FOUND, f"Not found: {split.path} (use {PATH}?model=...)\n"
            )
        if not parse_qs(split.query).get("model"):
            return connection.respond(HTTPStatus.BAD_REQUEST, "Missing required query parameter: model\n")
        if self.api_key is not None:
            auth = request.headers.get("Authorization", "")
            if auth != f"Bearer {self.api_key}":
                log.info("refused a connection: bad or missing API key")
                return connection.respond(HTTPStatus.UNAUTHORIZED, "Incorrect API key provided.\n")
        return None

    # ------------------------------------------------------------------------------------------ connections

    async def _handle(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        request = ws.request
        if request is None:  # cannot happen after a completed handshake; keeps the types honest
            return
        split = urlsplit(request.path)
        model = parse_qs(split.query)["model"][0]
        record = ConnectionRecord(
            index=len(self.connections),
            path=request.path,
            model=model,
            headers={k: v for k, v in request.headers.raw_items() if k.lower() != "authorization"},
            opened_at=time.monotonic(),
            _ws=ws,
        )
        self.connections.append(record)
        try:
            if request.headers.get("OpenAI-Beta") is not None:
                record.rejected = "openai-beta"
                await self._reject_beta(ws)
                return
            session = Session(policy=self.policy, voice=self.voice, settings=self.settings, model=model)
            record.session = session
            log.info("connection %d open from %s (model %s)", record.index, _peer(ws), model)
            conn = _Connection(ws, session, self.voice, loop)
            drop = (
                loop.call_later(self.drop_after_s, lambda: conn.spawn(ws.close(DROP_CODE, "drop-after-s")))
                if self.drop_after_s is not None
                else None
            )
            try:
                await conn.run()
            finally:
                if drop is not None:
                    drop.cancel()
        finally:
            record.closed_at = time.monotonic()
            record.close_code = ws.close_code
            record._ws = None
            if record.session is not None:
                log.info(
                    "connection %d closed (code %s) after %.1f s: %d events in, %d out",
                    record.index,
                    ws.close_code,
                    record.closed_at - record.opened_at,
                    sum(record.received.values()),
                    sum(record.sent.values()),
                )

    @staticmethod
    async def _reject_beta(ws: ServerConnection) -> None:
        error = {
            "type": "error",
            "event_id": "event_beta_rejected",
            "error": {
                "type": "invalid_request_error",
                "code": "beta_header_not_allowed",
                "message": (
                    "This server speaks the Realtime GA interface: GA clients must not send the "
                    "'OpenAI-Beta' header (it selects the beta interface)."
                ),
                "param": "OpenAI-Beta",
                "event_id": None,
            },
        }
        log.info("refused a connection: it sent OpenAI-Beta (a beta client)")
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps(error))
        await ws.close(CloseCode.POLICY_VIOLATION, "OpenAI-Beta header not allowed")


def _peer(ws: ServerConnection) -> str:
    try:
        host, port = ws.remote_address[:2]
    except (TypeError, ValueError, OSError):
        return "?"
    return f"{host}:{port}"


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Connection:
    """Drives one :class:`Session` over one WebSocket."""

    def __init__(
        self, ws: ServerConnection, session: Session, voice: Voice, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.ws = ws
        self.session = session
        self.voice = voice
        self.loop = loop
        self.lock = asyncio.Lock()
        self._wakeup: asyncio.Future[None] | None = None
        self._armed: float | None = None  # the deadline the pump sleeps until
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        session, loop = self.session, self.loop
        async with self.lock:
            await self._send(session.start())
        pump = loop.create_task(self._pump())
        try:
            async for message in self.ws:
                async with self.lock:
                    await self._send(session.receive(message, loop.time()))
                self._after_session_call()
        except ConnectionClosed:
            pass
        finally:
            pump.cancel()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _send(self, events: list[Event]) -> None:
        dumps = json.dumps
        send = self.ws.send
        for event in events:
            await send(dumps(event, separators=(",", ":")))

    def _after_session_call(self) -> None:
        """Start synthesis the session asked for and wake the pump if the next deadline moved earlier."""
        for text in self.session.take_synthesis():
            self.spawn(self._synthesise(text))
        deadline = self.session.next_deadline
        if (
            deadline is not None
            and (self._armed is None or deadline < self._armed)
            and self._wakeup is not None
        ):
            _wake(self._wakeup)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a side task of this connection; a reference is kept so it is not garbage-collected early."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _synthesise(self, text: str) -> None:
        clip = await asyncio.to_thread(self.voice.render, text)
        with contextlib.suppress(ConnectionClosed):
            async with self.lock:
                await self._send(self.session.audio_ready(text, clip, self.loop.time()))
            self._after_session_call()

    async def _pump(self) -> None:
        loop, session = self.loop, self.session
        while True:
            future: asyncio.Future[None] = loop.create_future()
            self._wakeup = future
            deadline = self._armed = session.next_deadline
            handle = loop.call_at(deadline, _wake, future) if deadline is not None else None
            try:
                await future
            finally:
                if handle is not None:
                    handle.cancel()
            async with self.lock:
                try:
                    await self._send(session.tick(loop.time()))
                except ConnectionClosed:
                    return  # the reader sees the close too and ends the connection
            self._after_session_call()
