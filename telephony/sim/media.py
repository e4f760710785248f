"""Media of the simulated PBX: AudioSocket legs, talking parties and the 20 ms media clock.

What real Asterisk 22.10.1 does, and so what this module does (PROTOCOLS.md A6-A9, §4):
- For externalMedia with AudioSocket, Asterisk is the TCP *client*; it connects during the HTTP request
  and sends the 16-byte UUID frame first.
- It sends audio only while something in the bridge produces media (A7): a silent callee means no frames
  at all, so a party's audio is sent only while it speaks. Frames are 20 ms of the leg's format; the last
  frame of an utterance may be short.
- Whatever the external server sends is played to the other bridge members at once: here it is
  measured per simulated party (what the callee "heard").
- A 0x00 frame or a closed socket ends the AudioSocket leg only (A9); malformed input (a kind other than
  0x00/0x10-0x18, a zero-length audio frame) drops that leg the way Asterisk drops the call.

One clock serves every call: each tick writes the frames that are due for every talking party, so a few
thousand legs cost one timer, not thousands.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
import uuid as uuid_mod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from wire import audiosocket

from . import audio
from .audio import MediaFormat

if TYPE_CHECKING:
    from .model import Bridge, Channel, Recording

log = logging.getLogger("telephony.sim.media")

FRAME_SECONDS = 0.02
MAX_CATCH_UP_FRAMES = 5  # after a stall, send at most this many overdue frames at once
MAX_WRITE_BUFFER = 1 << 20  # a peer that stops reading gets frames dropped, not unbounded memory


class AudioSocketLeg(asyncio.Protocol):
    """The TCP connection of one externalMedia channel, Asterisk side."""

    def __init__(
        self,
        *,
        channel_id: str,
        media_uuid: uuid_mod.UUID,
        fmt: MediaFormat,
        service: str,
        on_audio: Callable[[AudioSocketLeg, int, bytes], None],
        on_end: Callable[[AudioSocketLeg, str, str | None], None],
    ) -> None:
        self.channel_id = channel_id
        self.uuid = media_uuid
        self.fmt = fmt
        self.service = service
        self._on_audio = on_audio
        self._on_end = on_end
        self._parser = audiosocket.ServerStreamParser()
        self.transport: asyncio.Transport | None = None
        self.frames_out = 0
        self.frames_in = 0
        self.bytes_in = 0
        self.dtmf_out = 0
        self.dropped_out = 0
        self.ended = False
        self.end_reason: str | None = None
        self.error: str | None = None
        self.connected = asyncio.get_running_loop().create_future()

    # asyncio.Protocol -------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is a stream transport without subclassing asyncio.Transport: no isinstance
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.connected.done():
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        error: audiosocket.AudioSocketError | None = None
        try:
            frames = self._parser.feed(data)
        except audiosocket.AudioSocketError as exc:
            frames, error = list(exc.frames), exc  # what came before the bad frame was already played
        for frame in frames:
            if frame.kind == audiosocket.KIND_HANGUP:
                self._finish("hangup_frame", None)
                return
            self.frames_in += 1
            self.bytes_in += len(frame.payload)
            self._on_audio(self, frame.kind, frame.payload)
        if error is not None:
            self._finish("malformed", error.reason)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("connection lost"))
        self._finish("socket_closed", None)

    # Asterisk side ------------------------------------------------------------------------------------------
    def send(self, message: bytes) -> int:
        """Write one message; returns how many were written (0 when the leg is gone or not reading)."""
        t = self.transport
        if t is None or self.ended or t.is_closing():
            return 0
        if t.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.dropped_out += 1
            return 0
        t.write(message)
        self.frames_out += 1
        return 1

    def send_many(self, messages: list[bytes]) -> int:
        """Catch-up frames in one write (one system call instead of several)."""
        t = self.transport
        if t is None or self.ended or t.is_closing():
            return 0
        if t.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.dropped_out += len(messages)
            return 0
        t.write(b"".join(messages))
        self.frames_out += len(messages)
        return len(messages)

    def send_dtmf(self, digit: str) -> None:
        self.send(audiosocket.encode_dtmf(digit))
        self.dtmf_out += 1

    def close(self, reason: str = "hangup") -> None:
        """Asterisk ends the leg: it closes the socket without sending 0x00 (PROTOCOLS.md §4.5)."""
        if not self.ended:
            self.ended = True
            self.end_reason = reason
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _finish(self, reason: str, error: str | None) -> None:
        if self.ended:
            return
        self.ended = True
        self.end_reason = reason
        self.error = error
        if error:
            log.warning("AudioSocket %s dropped: %s", self.uuid, error)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._on_end(self, reason, error)

    def stats(self) -> dict[str, Any]:
        return {
            "channel": self.channel_id,
            "uuid": str(self.uuid),
            "service": self.service,
            "format": self.fmt.name,
            "frames_out": self.frames_out,
            "frames_in": self.frames_in,
            "dtmf_out": self.dtmf_out,
            "dropped_out": self.dropped_out,
            "ended": self.ended,
            "end_reason": self.end_reason,
            "error": self.error,
        }


async def connect_leg(host: str, port: int, leg: AudioSocketLeg, limit_s: float = 2.0) -> None:
    """Connect like res_audiosocket: non-blocking connect, 2 s per address, TCP_NODELAY. The UUID is not
    sent here: Asterisk sends it later, from the dial thread (:func:`send_uuid`)."""
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.create_connection(lambda: leg, host, port), limit_s)
    if leg.transport is None or leg.transport.is_closing():
        raise ConnectionError("AudioSocket connection closed at once")


def send_uuid(leg: AudioSocketLeg) -> None:
    """chan_audiosocket's ``audiosocket_call``: the UUID frame, always the first message, sent once."""
    leg.send(audiosocket.encode_uuid(leg.uuid))
    leg.frames_out = 0  # count audio frames only


_MESSAGE_CACHE: dict[tuple[Any, ...], list[bytes]] = {}
_MESSAGE_CACHE_SIZE = 256


@dataclass(eq=False)
class Speaker:
    """Something producing audio now: a party's utterance or a playback into a bridge.

    The audio is rendered once per format and cut into ready-to-write AudioSocket messages; the clock
    then writes frame i at start + i * 20 ms to every AudioSocket leg of the owner's bridge.
    """

    key: tuple[Any, ...]  # identifies the audio, so every call saying the same thing shares one rendering
    render: Callable[[int], bytes]  # rate -> 16-bit PCM
    start: float
    owner: Channel | None = None
    bridge: Bridge | None = None
    repeat: bool = False
    duration: float = 0.0
    _sent: dict[int, int] = field(default_factory=dict)
    start_index: int | None = None  # the clock's grid step at which frame 0 plays
    done: bool = False

    def messages(self, fmt: MediaFormat) -> list[bytes]:
        cache_key = (self.key, fmt.name)
        msgs = _MESSAGE_CACHE.get(cache_key)
        if msgs is None:
            pcm = self.render(fmt.rate)
            payloads = audio.frames(fmt, audio.encode_for(fmt, pcm))
            msgs = [audiosocket.encode_audio(fmt.kind, p) for p in payloads]
            if len(_MESSAGE_CACHE) >= _MESSAGE_CACHE_SIZE:
                _MESSAGE_CACHE.pop(next(iter(_MESSAGE_CACHE)))
            _MESSAGE_CACHE[cache_key] = msgs
        if not self.duration:
            self.duration = len(msgs) * FRAME_SECONDS
        return msgs

    def pcm_frames(self, rate: int) -> list[bytes]:
        """The audio as 20 ms frames of 16-bit PCM at ``rate`` (what a bridge recording mixes)."""
        cache_key = (self.key, "pcm", rate)
        chunks = _MESSAGE_CACHE.get(cache_key)
        if chunks is None:
            pcm = self.render(rate)
            step = rate * 2 // 50
            chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)] or [b""]
            if len(_MESSAGE_CACHE) >= _MESSAGE_CACHE_SIZE:
                _MESSAGE_CACHE.pop(next(iter(_MESSAGE_CACHE)))
            _MESSAGE_CACHE[cache_key] = chunks
        return chunks

    def outlets(self) -> list[Bridge]:
        if self.bridge is not None:
            return [self.bridge]
        if self.owner is None:
            return []
        out = [self.owner.bridge] if self.owner.bridge is not None else []
        for snoop in self.owner.snoops:
            if snoop.snoop_spy in ("in", "both") and snoop.bridge is not None:
                out.append(snoop.bridge)
        return out


class MediaClock:
    """The shared 20 ms clock that paces every talking party's frames.

    Ticks fall on a fixed wall-clock grid (epoch + k * 20 ms) and a speaker's frame number is counted in
    grid steps, so a tick that wakes a few ms late still sends exactly one frame per talking party rather
    than flipping between none and two.
    """

    def __init__(self) -> None:
        self.speakers: set[Speaker] = set()
        self._task: asyncio.Task[None] | None = None
        self.epoch = time.time()
        self.ticks = 0
        self.frames_sent = 0
        self.late_ticks = 0
        self.max_lag_ms = 0.0

    def index(self, moment: float) -> int:
        return round((moment - self.epoch) / FRAME_SECONDS)

    def add(self, speaker: Speaker) -> None:
        if speaker.start_index is None:
            speaker.start_index = self.index(speaker.start)
        self.speakers.add(speaker)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def remove(self, speaker: Speaker) -> None:
        speaker.done = True
        self.speakers.discard(speaker)

    async def _run(self) -> None:
        while self.speakers:
            now = time.time()
            due_at = self.epoch + (math.floor((now - self.epoch) / FRAME_SECONDS) + 1) * FRAME_SECONDS
            await asyncio.sleep(due_at - now)
            now = time.time()
            lag = now - due_at
            if lag > FRAME_SECONDS:
                self.late_ticks += 1
                self.max_lag_ms = max(self.max_lag_ms, lag * 1000)
            self.tick(now)

    def tick(self, now: float) -> None:
        self.ticks += 1
        index = self.index(now)
        for speaker in list(self.speakers):
            if speaker.start_index is None:
                speaker.start_index = self.index(speaker.start)
            due = index - speaker.start_index + 1
            if due <= 0:
                continue
            owner = speaker.owner
            if speaker.bridge is None and owner is not None and owner.bridge is None and not owner.snoops:
                # nobody can hear it: just let the utterance run its course
                if not speaker.repeat and due * FRAME_SECONDS >= speaker.duration:
                    self.remove(speaker)
                continue
            finished = True
            for bridge in speaker.outlets():
                for rec in bridge.recordings:
                    if not self._record(speaker, rec, due):
                        finished = False
                for member in bridge.channels:
                    leg = member.leg
                    if leg is None or leg.ended or member is owner:
                        continue
                    msgs = speaker.messages(leg.fmt)
                    total = len(msgs)
                    key = id(leg)
                    sent = speaker._sent.get(key)
                    if sent is None:  # joined mid-utterance: start from what is playing now
                        sent = max(due - 1, 0)
                    target = due if speaker.repeat else min(due, total)
                    if target - sent > MAX_CATCH_UP_FRAMES:
                        sent = target - MAX_CATCH_UP_FRAMES
                    if target - sent == 1:
                        self.frames_sent += leg.send(msgs[sent % total])
                    elif target > sent:
                        self.frames_sent += leg.send_many([msgs[i % total] for i in range(sent, target)])
                    speaker._sent[key] = target
                    if speaker.repeat or target < total:
                        finished = False
            if finished and not speaker.repeat and due * FRAME_SECONDS >= speaker.duration:
                self.remove(speaker)

    def _record(self, speaker: Speaker, rec: Recording, due: int) -> bool:
        """Mix the speaker's due frames into a bridge recording, each at its place on the clock's grid.
        True when the speaker has nothing more for it."""
        mix = rec.mix
        if mix is None or speaker.start_index is None:
            return True
        chunks = speaker.pcm_frames(mix.rate)
        total = len(chunks)
        key = id(rec)
        sent = speaker._sent.get(key)
        if sent is None:  # recording started mid-utterance: from what is playing now
            sent = max(due - 1, 0)
        target = due if speaker.repeat else min(due, total)
        for i in range(sent, target):
            moment = self.epoch + (speaker.start_index + i) * FRAME_SECONDS
            mix.add_at(chunks[i % total], mix.rate, moment)
        speaker._sent[key] = target
        return not speaker.repeat and target >= total

    def stats(self) -> dict[str, Any]:
        return {
            "talking": len(self.speakers),
            "ticks": self.ticks,
            "frames_sent": self.frames_sent,
            "late_ticks": self.late_ticks,
            "max_lag_ms": round(self.max_lag_ms, 1),
        }
