"""One AudioSocket connection and, once its UUID names a call with a brief, that call's Realtime session.

The thin asyncio adapter around :class:`media.session.CallSession`:

* :class:`AudioSocketConnection` is an ``asyncio.Protocol`` (no streams: one callback per read, no task per
  frame). The UUID frame must come first and within ``uuid_timeout_s``; a malformed stream closes this
  connection only, with one log line. The UUID is not the call id: it becomes a call only if the Stasis app
  announced it (``media:expect:<uuid>``, claimed once, see wire/brief.py); any other connection is closed
  with one warning and nothing else happens (no audio, no report): a second connection presenting a live
  call's UUID must not hear that call or act on it.
* The **call clock** starts right after the UUID: one frame every 20 ms scheduled with ``loop.call_at`` at
  ``t0 + n × 20 ms`` (absolute times, so no drift however long the call), silence until the agent speaks,
  one frame written ahead of the beat (so a late wake-up of the loop does not starve the line) and never more
  than two. After a stall longer than a few frames the clock re-bases instead of bursting the backlog.
* The **Realtime connection** (``websockets``) is opened once the brief is read; a drop gets one bounded
  reconnect with the conversation re-seeded as text, else the caller hears an apology and the call ends.
* Caller audio goes to the model as it arrives (one ``input_audio_buffer.append`` per frame, so the added
  latency is one loop iteration), through a per-call send queue drained by one task.
* A peer that stops reading (its socket buffer fills) gets no more frames queued; stalled for longer than
  ``STALLED_PEER_S`` it is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from redis.exceptions import RedisError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State

from media import speech
from media.config import peer_allowed
from media.resample import StreamResampler
from media.session import FRAME_S, CallSession, Hangup, RealtimeError, ToolCall, Transcript
from media.tools import CallState, run_tool, tool_definitions
from media.transfer import back_with_caller, human_brief
from media.voicemail import (
    CallerListener,
    Classified,
    HangUp,
    LeaveMessage,
    MachineAction,
    MachineSettings,
    Release,
    Silence,
    VoicemailMachine,
    parse_machine_settings,
)
from wire import logctx
from wire import tasks as media_tasks
from wire.audiosocket import (
    AUDIO_KIND_RATES,
    HANGUP_MESSAGE,
    KIND_DTMF,
    KIND_ERROR,
    KIND_HANGUP,
    KIND_SLIN24,
    KIND_UUID,
    AsteriskStreamParser,
    AudioSocketError,
    Frame,
)
from wire.brief import Brief, BriefError
from wire.callids import is_attempt_call_id

if TYPE_CHECKING:
    from media.config import MediaConfig
    from media.probe import Probe
    from media.session import Metrics


class CallHost(Protocol):
    """What a connection and its call need from the process that hosts them (the media worker).

    Written here, next to its one user, so that ``media/call.py`` does not import the worker class that
    imports it: the worker satisfies this protocol; tests may host calls with anything that does.
    """

    config: MediaConfig
    probe: Probe
    refused: int
    refused_uuids: int

    def admit(self, conn: AudioSocketConnection) -> bool: ...
    def release(self, conn: AudioSocketConnection) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...
    async def claim_media(self, media_uuid: str) -> str | None: ...
    def call_started(self, call: Call) -> None: ...
    def call_ended(self, call: Call) -> None: ...
    def mark_seen(self, call_id: str, what: str, at: float) -> None: ...
    async def read_brief(self, call_id: str) -> Brief | None: ...
    def subscribe(self, call_id: str) -> None: ...
    def unsubscribe(self, call_id: str) -> None: ...
    def report(self, call: Call) -> None: ...
    def publish_transcript(self, call: Call, line: Transcript) -> None: ...
    async def command(self, key: str, command: dict[str, Any]) -> None: ...
    async def await_transfer(self, call_id: str, timeout_s: float) -> dict[str, Any] | None: ...
    async def send_task(self, name: str, kwargs: dict[str, Any]) -> None: ...
    async def read_audio(self, key: str) -> bytes | None: ...
    def machine_detected(self, source: str) -> None: ...


logger = logging.getLogger(__name__)

LEAD_FRAMES = 1  # frames written ahead of the beat; at most LEAD_FRAMES + 1 are ever ahead
TICK_TOLERANCE_FRAMES = 0.1  # a tick up to 2 ms early counts as on time (uvloop timers: 1 ms resolution)
REBASE_AFTER_FRAMES = 5  # a clock later than this re-bases instead of catching up in a burst
WRITE_BUFFER_LIMIT = 64 * 1024  # ~1.3 s of slin24: the peer is not reading
STALLED_PEER_S = 5.0
# A small kernel send buffer: paced audio never needs more than a few frames in flight, and a peer that
# stops reading then shows up in the transport's buffer within seconds rather than after megabytes.
SEND_BUFFER_BYTES = 64 * 1024
CLAIM_BUFFER_FRAMES = 50  # caller frames kept while the UUID is being claimed (normally a millisecond)
TICK_EVERY_FRAMES = 10  # session timers every 200 ms
REALTIME_OPEN_TIMEOUT_S = 10.0
TRANSFER_REPLY_GRACE_S = 2.0
REPORT_BEFORE_HANGUP_S = 3.0  # media.voicemail_left goes out before the hangup, but never holds it longer
REALTIME_MAX_MESSAGE = 16 * 1024 * 1024
REALTIME_WRITE_BUFFER_LIMIT = 256 * 1024  # beyond this, sends wait for the socket (flow control)


class AudioSocketConnection(asyncio.Protocol):
    """An accepted AudioSocket TCP connection (see the module docstring)."""

    def __init__(self, worker: CallHost) -> None:
        self.worker = worker
        self.loop = asyncio.get_running_loop()
        self.parser = AsteriskStreamParser()
        self.transport: asyncio.Transport | None = None
        self.call: Call | None = None
        self.peer = "?"
        self.closed = False
        self._uuid_timer: asyncio.TimerHandle | None = None
        self._claiming: list[Frame] | None = None  # frames that arrive while the UUID is being claimed
        self.read_at = 0.0  # perf_counter of the last read (the probe's "frame in")

    # ------------------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's are not asyncio.Transport subclasses, so no isinstance check).
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        address = str(peer[0]) if isinstance(peer, tuple) else ""
        if not peer_allowed(address, self.worker.config.allowed_peers):
            logger.warning("audiosocket %s: refused, not in MEDIA_ALLOWED_PEERS", self.peer)
            self.worker.refused += 1
            self.close(abort=True)
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        if not self.worker.admit(self):
            logger.warning(
                "audiosocket %s: refused, %d calls already live", self.peer, self.worker.config.max_calls
            )
            self.close()
            return
        self._uuid_timer = self.loop.call_later(self.worker.config.uuid_timeout_s, self._uuid_timeout)

    def data_received(self, data: bytes) -> None:
        call = self.call
        if call is not None:
            # The transport calls back in the listener's context: log lines of the call carry its ids.
            call.log_context.run(self._received, data)
        else:
            self._received(data)

    def _received(self, data: bytes) -> None:
        self.read_at = time.perf_counter()
        try:
            frames = self.parser.feed(data)
        except AudioSocketError as exc:
            self._handle(exc.frames)
            logger.warning("audiosocket %s: malformed stream, closing: %s", self.peer, exc)
            self.close()
            return
        self._handle(frames)

    def connection_lost(self, exc: Exception | None) -> None:
        call = self.call
        if call is not None:
            call.log_context.run(self._lost)
        else:
            self._lost()

    def _lost(self) -> None:
        self.closed = True
        if self._uuid_timer is not None:
            self._uuid_timer.cancel()
        self.worker.release(self)
        if self.call is not None:
            self.call.socket_closed()

    # ------------------------------------------------------------------------------------- frames
    def _handle(self, frames: list[Frame]) -> None:
        call = self.call
        for index, frame in enumerate(frames):
            kind = frame.kind
            if self._claiming is not None:
                # Whether this leg is a call is not known yet: keep its frames (a few ms' worth) for it.
                if kind in (KIND_HANGUP, KIND_ERROR):
                    self.close()
                    return
                if len(self._claiming) < CLAIM_BUFFER_FRAMES:
                    self._claiming.append(frame)
            elif call is not None:
                if kind == KIND_DTMF:
                    call.dtmf(frame.payload.decode("ascii"))
                elif kind == KIND_HANGUP or kind == KIND_ERROR:
                    logger.info("audiosocket %s: peer ended the stream (kind 0x%02x)", self.peer, kind)
                    self.close()
                    return
                else:
                    call.caller_audio(kind, frame.payload)
            elif kind == KIND_UUID:
                if self._uuid_timer is not None:
                    self._uuid_timer.cancel()
                self._claiming = list(frames[index + 1 :])
                self.worker.spawn(self._claim(str(uuid.UUID(bytes=frame.payload))))
                return
            elif kind in (KIND_HANGUP, KIND_ERROR):
                self.close()
                return

    async def _claim(self, media_uuid: str) -> None:
        """Become the call the Stasis app announced for ``media_uuid``, or be refused (fail closed)."""
        try:
            call_id = await self.worker.claim_media(media_uuid)
            reason = "no call expects it (unknown, expired or already taken)"
        except (RedisError, OSError, TimeoutError) as exc:
            call_id, reason = None, f"Redis could not say whether a call expects it ({exc!r})"
        if call_id is None:
            self.worker.refused_uuids += 1
            logger.warning("audiosocket %s: refused media UUID %s: %s", self.peer, media_uuid, reason)
            self.close()
            return
        # From here on this task's log lines, and those of every task and timer of the call, carry its id
        # (the tenant is added once the brief names it).
        logctx.bind_call(call_id=call_id)
        if self.closed:
            logger.warning("call %s: media UUID %s hung up before it was accepted", call_id, media_uuid)
            return
        logger.info("call %s: media leg %s from %s", call_id, media_uuid, self.peer)
        early, self._claiming = self._claiming or [], None
        call = self.call = Call(self, call_id)
        call.begin()
        self._handle(early)

    def _uuid_timeout(self) -> None:
        if self.call is None and not self.closed:
            logger.warning(
                "audiosocket %s: no UUID within %.1f s, closing", self.peer, self.worker.config.uuid_timeout_s
            )
            self.close()

    # -------------------------------------------------------------------------------------- output
    def write(self, data: bytes) -> bool:
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            return False
        transport.write(data)
        return True

    def write_buffer_size(self) -> int:
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def close(self, *, hangup_frame: bool = False, abort: bool = False) -> None:
        """Close the leg; ``abort`` drops what is still buffered (a peer that does not read would otherwise
        keep a plain close waiting for the buffer to drain forever)."""
        transport = self.transport
        if transport is None:
            return
        if abort:
            transport.abort()
            return
        if transport.is_closing():
            return
        if hangup_frame:
            transport.write(HANGUP_MESSAGE)
        transport.close()


class Call:
    """One answered call: its clock, its Realtime connection and its tools."""

    def __init__(self, conn: AudioSocketConnection, call_id: str) -> None:
        self.conn = conn
        self.worker = conn.worker
        self.loop = conn.loop
        self.call_id = call_id
        self.started = self.loop.time()
        self.started_wall = time.time()
        self.brief: Brief | None = None
        self.session: CallSession | None = None
        self.ended = False
        self.end_reason = ""
        self.errors: list[str] = []
        self.transferred_to = ""
        self.realtime_connection_failures = 0
        # The log context of the call (its ids), for callbacks of the transport (data_received, ...).
        self.log_context = contextvars.copy_context()
        # audio format: the caller's kind decides ours (we ask for slin24: 0x13, no resampling)
        self.kind = KIND_SLIN24
        self.header = b"\x13\x03\xc0"
        self._to_24k: Callable[[bytes], bytes] | None = None
        self._from_24k: Callable[[bytes], bytes] | None = None
        self._resampled = bytearray()
        self._frame_bytes = 960
        # clock
        self._t0 = 0.0
        self._n = 0
        self._timer: asyncio.TimerHandle | None = None
        self._stalled_since: float | None = None
        self._canned: deque[bytes] = deque()
        self.late_ticks = 0
        # realtime
        self._ws: ClientConnection | None = None
        self._out: deque[str] = deque()
        self.probe = self.worker.probe if self.worker.probe.enabled else None
        self._due = 0.0
        self._out_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._transfer_pending = False
        self._transfer_settled = asyncio.Event()  # the transfer tool finished, or a human took the call
        self.tool_state = CallState()  # what this call's tools recorded (the intake so far)
        self._pending_say: str | None = None  # a "say" that came before the session was up
        self._briefing = False  # a warm transfer's human is on the line with the agent (media.transfer)
        # answering machines (media/voicemail.py): the machine, what listens to the caller for it, and the
        # campaign's message on its way out (recorded audio as 24 kHz frames, or a text the agent says)
        self.voicemail: VoicemailMachine | None = None
        self._listener: CallerListener | None = None
        self._message: deque[bytes] = deque()
        self._message_audio: asyncio.Future[bytes | None] | None = None
        self._message_started_wall: float | None = None
        self._message_text = False
        # The orchestrator applies this call's reports in the order they were decided (human, then machine):
        # one at a time, the Celery sends of a thread pool could overtake each other.
        self._report_lock = asyncio.Lock()

    @property
    def session_metrics(self) -> Metrics | None:
        return self.session.metrics if self.session is not None else None

    # ----------------------------------------------------------------------------------- lifecycle
    def begin(self) -> None:
        self.worker.call_started(self)
        self.worker.mark_seen(self.call_id, "connected", self.started_wall)
        self._t0 = self.loop.time()
        self._n = 0
        self._tick()
        self._spawn(self._run())

    async def _run(self) -> None:
        brief = await self.worker.read_brief(self.call_id)
        if self.ended:
            return
        if brief is None:
            logger.warning("call %s: no usable brief; apologising and hanging up", self.call_id)
            self.errors.append("no call brief")
            await self._apologise_and_end("no_brief")
            return
        self.brief = brief
        ids = logctx.current()
        if ids is not None and brief.tenant_id is not None:
            ids.update(tenant_id=brief.tenant_id)  # shared by every context of the call
        outbound = is_attempt_call_id(self.call_id)
        try:
            settings = parse_machine_settings(brief.extra, outbound=outbound)
        except BriefError as exc:
            # The rest of the brief is fine: the call goes on as a plain one rather than apologise.
            logger.error("call %s: %s; no answering-machine handling", self.call_id, exc)
            self.errors.append(str(exc)[:300])
            settings = MachineSettings(media=outbound)
        self.voicemail = VoicemailMachine(settings, started_at=self.started)
        self.session = CallSession(
            brief,
            now=self.started,
            tools=tool_definitions(brief.tools, brief),
            transcribe_model=self.worker.config.transcribe_model,
            max_call_s=self.worker.config.max_call_s,
            hold_greeting=self.voicemail.holding,
        )
        self.worker.subscribe(self.call_id)
        self._spawn(self._sender())
        for attempt in range(2):
            if self.ended or self.session.hanging_up:
                return
            try:
                await self._realtime(first=attempt == 0)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
                self.realtime_connection_failures += 1
                self.errors.append(f"realtime connection: {exc!r}")
                logger.warning("call %s: Realtime connection failed or dropped: %r", self.call_id, exc)
            else:
                if self.ended or self.session.hanging_up:
                    return
                self.realtime_connection_failures += 1
                logger.warning("call %s: Realtime closed the connection", self.call_id)
            self.session.disconnected()
        if not self.ended and not self.session.hanging_up:
            await self._apologise_and_end("realtime_unavailable")

    async def _realtime(self, *, first: bool) -> None:
        assert self.session is not None  # noqa: S101
        config = self.worker.config
        model = (self.brief.model if self.brief else "") or config.realtime_model
        sep = "&" if "?" in config.realtime_url else "?"
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        async with connect(
            f"{config.realtime_url}{sep}model={model}",
            additional_headers=headers,
            compression=None,
            open_timeout=REALTIME_OPEN_TIMEOUT_S,
            max_size=REALTIME_MAX_MESSAGE,
            ping_interval=20,
            ping_timeout=20,
        ) as ws:
            self._ws = ws
            now = self.loop.time()
            if first:
                self.session.start(now)
            else:
                self.session.reseed(now)
            if self._pending_say is not None:
                text, self._pending_say = self._pending_say, None
                self.session.say(text, now)
            self._flush()
            async for message in ws:
                read_at = time.perf_counter()
                if self.ended:
                    return
                try:
                    event = json.loads(message)
                except ValueError:
                    self.errors.append("realtime sent a non-JSON message")
                    continue
                if isinstance(event, dict):
                    if event.get("type") == "conversation.item.input_audio_transcription.completed":
                        self._caller_said(event.get("transcript"))
                    self.session.on_server_event(event, self.loop.time())
                    if self.session.flushed_at is not None:
                        self._silence_now()
                    self._flush()
                    if self.probe is not None and event.get("type") == "response.output_audio.delta":
                        self.probe.add("delta_to_queue_ms", (time.perf_counter() - read_at) * 1000)
        self._ws = None

    def _send(self, message: str) -> None:
        """Send a Realtime client event now when the socket can take it, else queue it for the sender.

        The fast path writes the frame in this very callback (``send_text`` + ``send_data``, what
        ``ClientConnection.send`` does inside its send context), saving a task switch and an async
        context per caller frame: the hot path of the worker. Anything unusual (not open, the socket's
        buffer filling up, earlier messages still queued) takes the regular ``await ws.send`` path, which
        handles flow control and closing.
        """
        ws = self._ws
        if ws is None:
            return
        if (
            not self._out
            and ws.protocol.state is State.OPEN
            and ws.transport.get_write_buffer_size() < REALTIME_WRITE_BUFFER_LIMIT
        ):
            ws.protocol.send_text(message.encode())
            ws.send_data()
            return
        self._out.append(message)
        self._out_ready.set()

    async def _sender(self) -> None:
        out = self._out
        while not self.ended:
            await self._out_ready.wait()
            self._out_ready.clear()
            ws = self._ws
            while out and ws is not None:
                message = out.popleft()
                try:
                    await ws.send(message)
                except ConnectionClosed:
                    out.clear()
                    break

    def socket_closed(self) -> None:
        """The AudioSocket connection is gone: the caller hung up, the call was transferred, or we closed."""
        if self.ended:
            return
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
        self._out_ready.set()
        ws = self._ws
        if ws is not None:
            self._spawn_detached(ws.close())
        if self._transfer_pending:
            # The Stasis app deletes our leg right after it publishes "answered": the TCP close can beat
            # the pub/sub reply here. Give the reply a moment before deciding how the call ended.
            self._spawn_detached(self._finish_after_transfer_reply())
            return
        self._finish()

    async def _finish_after_transfer_reply(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._transfer_settled.wait(), TRANSFER_REPLY_GRACE_S)
        self._finish()

    def _finish(self) -> None:
        if not self.end_reason:
            self.end_reason = "transferred" if self.transferred_to else "caller_hung_up"
        self.worker.call_ended(self)
        self.worker.unsubscribe(self.call_id)
        for task in list(self._tasks):
            task.cancel()
        self.worker.report(self)

    def transferred(self, number: str) -> None:
        """A human took the call (the Stasis app's reply): our leg is about to be deleted."""
        if self.transferred_to:
            return
        self.transferred_to = number
        self.end_reason = "transferred"
        self._transfer_settled.set()
        if self.session is not None:
            self.session.note(f"transfer_to_human: connected to {number}", self.loop.time())

    def hang_up(self, reason: str) -> None:
        """End the call from our side: ask the Stasis app to hang the caller up, then close our leg."""
        if self.ended:
            return
        self.end_reason = self.end_reason or reason
        brief = self.brief
        if brief is not None and brief.command_key:
            self._spawn_detached(
                self.worker.command(
                    brief.command_key, {"action": "hangup", "call_id": self.call_id, "reason": reason}
                )
            )
            # The Stasis app deletes our leg (A9); if it does not within a moment, close it ourselves.
            self.loop.call_later(2.0, self.conn.close)
        else:
            self.conn.close(hangup_frame=True)

    def goodbye(self, reason: str) -> None:
        """Shutdown: let the agent say goodbye (if it can) and hang up once that is played."""
        if self.ended:
            return
        session = self.session
        if session is None or not session.connected:
            self.hang_up(reason)
            return
        session.say_goodbye_and_hang_up(
            reason, self.loop.time(), instructions="The service is closing. Say a short goodbye."
        )
        self._flush()

    async def _apologise_and_end(self, reason: str) -> None:
        self.end_reason = reason
        language = self.brief.language if self.brief else "en"
        pcm = await self.loop.run_in_executor(None, speech.apology, language)  # espeak may take a moment
        size = 960
        self._canned.extend(pcm[i : i + size].ljust(size, b"\0") for i in range(0, len(pcm), size))
        self._canned.append(b"")  # marker: hang up when played

    # ---------------------------------------------------------------------------------- caller in
    def caller_audio(self, kind: int, payload: bytes) -> None:
        if kind != self.kind:
            self._switch_format(kind)
        session = self.session
        if session is None:
            return
        machine = self.voicemail
        now = self.loop.time()
        if machine is not None and machine.listens(now):
            listener = self._listener
            if listener is None:
                listener = self._listener = CallerListener(AUDIO_KIND_RATES.get(self.kind, 24000))
            heard = listener.feed(payload, now)
            if heard or machine.holding:
                self._machine_actions(machine.heard(heard, now))
        pcm = self._to_24k(payload) if self._to_24k is not None else payload
        message = session.caller_audio(pcm, now)
        if message is not None and self._ws is not None:
            self._send(message)
            if self.probe is not None:
                self.probe.add("in_to_out_ms", (time.perf_counter() - self.conn.read_at) * 1000)

    def say(self, text: str) -> None:
        """The product wants the agent to say ``text`` now (``say`` on the reply channel)."""
        session = self.session
        if self.ended:
            return
        if session is None or not session.connected:
            self._pending_say = text  # said once the Realtime session is up
            return
        session.say(text, self.loop.time())
        if session.flushed_at is not None:
            self._silence_now()
        self._flush()

    def transfer_update(self, data: dict[str, Any]) -> None:
        """A warm transfer's state from the Stasis app (``{"type": "transfer", "state"}``; media.transfer)."""
        state, session = data.get("state"), self.session
        if state == "connected":
            self._briefing = False
            self.tool_state.warm_transfer = False
            self.transferred(str(data.get("number") or "unknown"))
            return
        if state not in ("human_joined", "declined", "no_answer", "failed", "cancelled"):
            return
        if state == "human_joined":
            self._briefing = True
        else:
            self._briefing = False
            self.tool_state.warm_transfer = False
            if session is not None:
                session.on_hold = False
        if session is None or self.ended or state == "cancelled":
            return
        if state == "human_joined":
            contact = self.brief.extra.get("contact") if self.brief is not None else None
            name = contact.get("name") if isinstance(contact, dict) else ""
            context, instructions = human_brief(
                session.transcript,
                contact_name=name if isinstance(name, str) else "",
                reason=self.tool_state.transfer_reason or str(data.get("summary_hint") or "")[:500],
            )
        else:
            context, instructions = back_with_caller(str(state))
        session.instruct(context, instructions, self.loop.time())
        if session.flushed_at is not None:
            self._silence_now()
        self._flush()

    def dtmf(self, digit: str) -> None:
        if self._briefing:
            # The briefed human's key: the Stasis app reads it (1 accept, 2 decline); the model must not
            # take it for the callee's.
            logger.info("call %s: key %s of the transfer's human left to the Stasis app", self.call_id, digit)
            return
        if self.session is not None:
            self.session.dtmf(digit, self.loop.time())
            if self.session.flushed_at is not None:
                self._silence_now()
            self._flush()

    def _switch_format(self, kind: int) -> None:
        """The caller's audio kind decides ours (DESIGN.md §6: accept every kind with its own rate)."""
        rate = AUDIO_KIND_RATES.get(kind)
        if rate is None:
            return
        self.kind = kind
        self._listener = None  # made again at the new rate
        frame_bytes = self._frame_bytes = rate * 2 // 50
        self.header = bytes((kind,)) + frame_bytes.to_bytes(2, "big")
        self._resampled.clear()
        if rate == 24000:
            self._to_24k = self._from_24k = None
        else:
            self._to_24k = StreamResampler(rate, 24000).process
            self._from_24k = StreamResampler(24000, rate).process
        logger.info("call %s: caller audio is kind 0x%02x (%d Hz); resampling", self.call_id, kind, rate)

    # --------------------------------------------------------------------------------------- clock
    def _tick(self) -> None:
        """Write the frames due now (one per 20 ms of the call's own clock) and schedule the next tick."""
        if self.ended:
            return
        now = self.loop.time()
        # Frames that should have been written by now. The tolerance matters: uvloop's clock has 1 ms
        # resolution and its timers may fire up to that much early, and even asyncio's exact float can give
        # n − 1e-13 at the boundary; without it the tick finds nothing due and re-arms at the same, already
        # past instant: a busy spin until the clock crosses the boundary.
        due = int((now - self._t0) / FRAME_S + TICK_TOLERANCE_FRAMES) + 1 + LEAD_FRAMES
        behind = due - self._n
        if behind > REBASE_AFTER_FRAMES:
            self.late_ticks += 1
            self._n = due - 1  # skip what we missed: never burst a backlog into the caller's ear
            behind = 1
        conn = self.conn
        if conn.write_buffer_size() > WRITE_BUFFER_LIMIT:
            if self._stalled_since is None:
                self._stalled_since = now
            elif now - self._stalled_since > STALLED_PEER_S:
                logger.warning("call %s: the AudioSocket peer stopped reading; closing", self.call_id)
                self.end_reason = "peer_stalled"
                conn.close(abort=True)
                return
            self._n = due
        else:
            self._stalled_since = None
            if self.probe is not None and behind > 0 and self._n:
                self.probe.add("tick_late_ms", (now - self._due) * 1000)
            for _ in range(min(behind, 2)):
                self._write_frame(now)
                self._n += 1
        if self._n % TICK_EVERY_FRAMES == 0 or behind > 1:
            self._timers(now)
        self._due = self._t0 + (self._n - LEAD_FRAMES) * FRAME_S
        self._timer = self.loop.call_at(self._due, self._tick)

    def _silence_now(self) -> None:
        """Barge-in: write the next frame (silence now that the queue is dropped) at once rather than at the
        next beat, and let that beat pass without a write. At most two frames are then ahead, and the
        agent's voice stops within the frames already on the wire."""
        if self.ended or self._timer is None:
            return
        now = self.loop.time()
        due = int((now - self._t0) / FRAME_S + TICK_TOLERANCE_FRAMES) + 1 + LEAD_FRAMES
        if self._n > due or self.conn.write_buffer_size() > WRITE_BUFFER_LIMIT:
            return  # already a frame beyond the lead (or the peer is not reading): the next beat does it
        self._write_frame(now)
        self._n += 1

    def _write_frame(self, now: float) -> None:
        if self._canned:
            frame = self._canned.popleft()
            if not frame:
                self.hang_up(self.end_reason or "apology")
                return
        elif self._message:
            frame = self._message.popleft()
            self._message_heard(now)
            if not self._message and self.voicemail is not None:
                self._machine_actions(self.voicemail.message_done(now))
        elif self.session is not None:
            session = self.session
            spoke = session.agent_spoke
            frame = session.next_frame(now)
            if not spoke and session.agent_spoke:
                self.worker.mark_seen(self.call_id, "agent_audio", time.time())
            machine = self.voicemail
            if machine is not None and frame is not session.playout.silence:
                machine.agent_heard(FRAME_S)
                if self._message_text:
                    self._message_heard(now)
            if session.flushed_at is not None and frame is session.playout.silence:
                if self.probe is not None:
                    self.probe.add("flush_ms", (now - session.flushed_at) * 1000)
                session.flushed_at = None
        else:
            frame = bytes(960)
        if self._from_24k is None:
            self.conn.write(self.header + frame)
            return
        # The resampler hands out audio in blocks (tens of ms at a time): keep it and write whole frames.
        buf = self._resampled
        buf += self._from_24k(frame)
        size = self._frame_bytes
        if len(buf) >= size:
            out = bytes(buf[:size])
            del buf[:size]
        else:
            out = bytes(size)  # the filter's start-up delay: silence, never a short or late frame
        self.conn.write(self.header + out)

    def _timers(self, now: float) -> None:
        session = self.session
        if session is None:
            return
        fill = session.input_gap_fill(now)
        if fill is not None and self._ws is not None:
            self._send(fill)
        session.tick(now)
        self._flush()
        machine = self.voicemail
        if machine is None:
            return
        if self._listener is not None:
            heard = self._listener.idle(now)
            if heard:
                self._machine_actions(machine.heard(heard, now))
        if self._message_text and self._message_started_wall is not None and not session.speaking:
            self._message_text = False
            self._machine_actions(machine.message_done(now))
        self._machine_actions(machine.tick(now))

    # ---------------------------------------------------------------------------- answering machines
    def amd(self, status: str, cause: str) -> None:
        """The Stasis app's ``amd`` reply: what Asterisk's AMD() concluded."""
        machine = self.voicemail
        if machine is None or self.ended:
            return
        logger.info("call %s: AMD says %s (%s)", self.call_id, status, cause)
        self._machine_actions(machine.amd(status, cause, self.loop.time()))

    def _caller_said(self, text: object) -> None:
        machine = self.voicemail
        if machine is not None and isinstance(text, str) and text.strip():
            self._machine_actions(machine.caller_said(text, self.loop.time()))

    def _machine_actions(self, actions: list[MachineAction]) -> None:
        """Carry out what the voicemail machine decided."""
        session, machine = self.session, self.voicemail
        if session is None or machine is None or self.ended:
            return
        for action in actions:
            now = self.loop.time()
            if isinstance(action, Release):
                session.release(now)
                self._flush()
            elif isinstance(action, Silence):
                logger.info(
                    "call %s: answering machine (%s); the agent is silent", self.call_id, machine.source
                )
                session.enter_voicemail(now)
                if session.flushed_at is not None:
                    self._silence_now()
                self._flush()
                key = machine.settings.audio_key
                if machine.settings.has_message and key and self._message_audio is None:
                    self._message_audio = asyncio.ensure_future(self.worker.read_audio(key))
            elif isinstance(action, Classified):
                self._classified(action)
            elif isinstance(action, LeaveMessage):
                self._spawn(self._leave_message())
            elif isinstance(action, HangUp):
                if action.reason == "voicemail_left":
                    self._spawn(self._report_message_then_hang_up())
                else:
                    self.hang_up(action.reason)

    def _wall(self, now: float) -> float:
        return self.started_wall + (now - self.started)

    def _classified(self, action: Classified) -> None:
        brief = self.brief
        if action.answered_by == "machine":
            self.worker.machine_detected(action.source)
        if brief is None or not is_attempt_call_id(self.call_id):
            return
        self._spawn_report(
            media_tasks.ANSWERED_BY,
            {
                "call_id": self.call_id,
                "tenant_id": brief.tenant_id,
                "answered_by": action.answered_by,
                "source": action.source,
                "at": round(self._wall(action.at), 3),
            },
        )

    def _spawn_report(self, name: str, kwargs: dict[str, Any]) -> None:
        async def send() -> None:
            async with self._report_lock:
                try:
                    await self.worker.send_task(name, kwargs)
                except Exception:  # noqa: BLE001 - the broker may be down; the end-of-call report says it too
                    logger.exception("call %s: %s could not be sent", self.call_id, name)

        self._spawn_detached(send())

    def _message_heard(self, now: float) -> None:
        if self._message_started_wall is None and self.voicemail is not None:
            self._message_started_wall = self._wall(now)
            self.voicemail.message_started(now)

    async def _leave_message(self) -> None:
        session, machine = self.session, self.voicemail
        assert session is not None and machine is not None  # noqa: S101
        pcm = await self._message_audio if self._message_audio is not None else None
        if self.ended:
            return
        if pcm:
            size = 960  # 20 ms at 24 kHz: paced by the call's clock like the agent's audio
            self._message.extend(pcm[i : i + size].ljust(size, b"\0") for i in range(0, len(pcm), size))
            logger.info("call %s: leaving the recorded message (%.1f s)", self.call_id, len(pcm) / 48000)
        elif machine.settings.text:
            logger.info("call %s: the agent says the voicemail message", self.call_id)
            self._message_text = True
            self.say(machine.settings.text)
        else:
            self.errors.append("voicemail: the recorded message could not be read")
            self.hang_up("machine_detected")

    async def _report_message_then_hang_up(self) -> None:
        brief = self.brief
        if brief is not None and is_attempt_call_id(self.call_id):
            kwargs = {
                "call_id": self.call_id,
                "tenant_id": brief.tenant_id,
                "started_at": round(self._message_started_wall or time.time(), 3),
                "ended_at": round(time.time(), 3),
            }
            try:
                async with asyncio.timeout(REPORT_BEFORE_HANGUP_S), self._report_lock:
                    await self.worker.send_task(media_tasks.VOICEMAIL_LEFT, kwargs)
            except Exception:  # noqa: BLE001 - the hangup must happen whatever the broker does
                logger.exception("call %s: media.voicemail_left could not be sent", self.call_id)
        self.hang_up("voicemail_left")

    # --------------------------------------------------------------------------------- session out
    def _flush(self) -> None:
        session = self.session
        if session is None:
            return
        outbox, actions = session.take()
        if outbox and self._ws is not None:
            for message in outbox:
                self._send(message)
        for action in actions:
            if isinstance(action, Transcript):
                self.worker.publish_transcript(self, action)
            elif isinstance(action, ToolCall):
                self._spawn(self._run_tool(action))
            elif isinstance(action, Hangup):
                self.hang_up(action.reason)
            elif isinstance(action, RealtimeError):
                self.errors.append(f"realtime error {action.code}: {action.message}"[:300])
                logger.warning("call %s: Realtime error %s: %s", self.call_id, action.code, action.message)
                if action.fatal:
                    # The session refused its configuration: no agent without its instructions and tools.
                    ws = self._ws
                    if ws is not None:
                        self._spawn_detached(ws.close())
                    self._spawn(self._apologise_and_end("realtime_session_failed"))

    async def _run_tool(self, call: ToolCall) -> None:
        session, brief = self.session, self.brief
        assert session is not None and brief is not None  # noqa: S101
        logger.info("call %s: tool %s %s", self.call_id, call.name, call.arguments)
        self._transfer_pending = call.name == "transfer_to_human"
        try:
            outcome = await run_tool(
                call,
                brief=brief,
                send_task=self.worker.send_task,
                control=self.worker,
                state=self.tool_state,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing tool must not end the call; the model is told
            self._transfer_pending = False
            self._transfer_settled.set()
            logger.exception("call %s: tool %s failed", self.call_id, call.name)
            self.errors.append(f"tool {call.name} failed: {exc!r}"[:300])
            session.tool_result(
                call.call_id, {"ok": False, "error": "the action failed; apologise and go on"}
            )
            self._flush()
            return
        self._transfer_pending = False
        self._transfer_settled.set()
        now = self.loop.time()
        if self.tool_state.warm_transfer:
            session.on_hold = True  # until the transfer is settled (transfer_update)
        if outcome.transferred:
            self.transferred(outcome.transferred)
        else:
            session.note(f"{call.name}: {json.dumps(outcome.output, separators=(',', ':'))}", now)
        session.tool_result(call.call_id, outcome.output, respond=outcome.respond)
        if outcome.hang_up:
            session.hang_up_after_drain(outcome.hang_up, now)
        self._flush()

    # -------------------------------------------------------------------------------------- tasks
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _spawn_detached(self, coro: Any) -> None:
        self.worker.spawn(coro)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("call %s: task failed", self.call_id, exc_info=task.exception())

    # ------------------------------------------------------------------------------------- report
    def report(self) -> dict[str, Any]:
        now = self.loop.time()
        session = self.session
        metrics: dict[str, Any] = (
            session.metrics.as_dict(now)
            if session is not None
            else {
                "answer_to_first_audio_ms": None,
                "agent_spoke": False,
                "duration_s": round(now - self.started, 3),
            }
        )
        metrics["late_ticks"] = self.late_ticks
        if self.voicemail is not None:
            metrics.update(self.voicemail.report())
        else:
            metrics.update({"answered_by": "", "machine_source": "", "voicemail_left": False})
        metrics["errors"] = self.errors[-20:]
        transcript = []
        for line in session.transcript if session is not None else []:
            at = datetime.fromtimestamp(self.started_wall + line["t_ms"] / 1000, UTC).isoformat()
            entry = {"role": line["role"], "text": line["text"], "at": at}
            if "interrupted_at_ms" in line:
                entry["interrupted_at_ms"] = line["interrupted_at_ms"]
            transcript.append(entry)
        return {
            "call_id": self.call_id,
            "tenant_id": self.brief.tenant_id if self.brief else None,
            "transcript": transcript,
            "metrics": metrics,
            "end_reason": self.end_reason,
            "errors": self.errors[-20:],
        }
