"""Sans-I/O AudioSocket codec, Asterisk side (the simulator plays Asterisk 22.10.1).

Wire format (PROTOCOLS.md §4.1): every message is a 1-byte *kind*, a 2-byte big-endian payload length and
exactly that many payload bytes, so a payload is at most 65535 bytes and a hangup is ``00 00 00``.

Direction matters, and the two directions obey different rules:

* **Asterisk → external server** (what the simulator *sends*; encode with :func:`encode_uuid`,
  :func:`encode_audio`, :func:`encode_dtmf`): the 16-byte binary UUID (kind 0x01) first and exactly once,
  then audio (0x10-0x18) and DTMF (0x03, one ASCII digit, sent on DTMF end). Asterisk never sends 0x00 or
  0xFF: when its side ends it just closes the socket (§4.5). :class:`ClientStreamParser` parses this
  direction, for tests and load generators that play the external server.
* **External server → Asterisk** (what the simulator *receives*; parse with :class:`ServerStreamParser`).
  Asterisk 22.10.1 reads the 3-byte header first and checks the kind *before* reading any payload
  (res_audiosocket.c L330-376):

  - kind 0x00 ends the stream at once, whatever the length field says; nothing after it is read;
  - any kind other than 0x00 and 0x10-0x18 (0x01, 0x02, 0x03, 0xFF, 0x20, ...) fails with
    "Received AudioSocket message other than hangup or audio" and tears the call down;
  - a zero-length audio message fails with "Invalid message length";
  - otherwise it reads ``length`` bytes and builds a frame of ``length // 2`` samples. An odd length is
    therefore accepted and its trailing byte is simply never played: the parser drops it from the payload
    it returns and counts it in :attr:`ServerStreamParser.odd_length_frames`.

  Since 22.9.0 TCP fragmentation is tolerated anywhere, header included (§4.8a), so the parser is
  incremental and accepts any split of the byte stream.

**Why µ-law travels as kind 0x10** (the "0x10 caveat", §4.2): when *sending*, Asterisk picks the kind from
the frame's format and falls back to 0x10 for every format that is not signed linear. A channel created with
``format=ulaw`` therefore sends 160-byte µ-law frames labelled 0x10 (trace
``outbound_answered_bridged_ulaw_app_hangs_up.json``). On *receive*, 0x10 always means 8 kHz slin, which is
why :data:`AUDIO_KIND_RATES` maps 0x10 to 8000 with no format attached: the label alone does not say
whether bytes Asterisk sent are slin or µ-law; only the channel's format does.

Kinds 0x11-0x18 exist from 22.7.0 on; this module models 22.10.1.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, NoReturn, TypeAlias

__all__ = [
    "AUDIO_KINDS",
    "AUDIO_KIND_RATES",
    "DTMF_DIGITS",
    "HANGUP_MESSAGE",
    "HEADER_SIZE",
    "KIND_DTMF",
    "KIND_ERROR",
    "KIND_HANGUP",
    "KIND_SLIN",
    "KIND_SLIN12",
    "KIND_SLIN16",
    "KIND_SLIN24",
    "KIND_SLIN32",
    "KIND_SLIN44",
    "KIND_SLIN48",
    "KIND_SLIN96",
    "KIND_SLIN192",
    "KIND_UUID",
    "MAX_PAYLOAD",
    "REASON_BAD_KIND",
    "REASON_BAD_LENGTH",
    "AudioSocketError",
    "ClientStreamParser",
    "Frame",
    "ServerStreamParser",
    "encode",
    "encode_audio",
    "encode_dtmf",
    "encode_uuid",
]

KIND_HANGUP: Final = 0x00
KIND_UUID: Final = 0x01
KIND_DTMF: Final = 0x03
KIND_SLIN: Final = 0x10
KIND_SLIN12: Final = 0x11
KIND_SLIN16: Final = 0x12
KIND_SLIN24: Final = 0x13
KIND_SLIN32: Final = 0x14
KIND_SLIN44: Final = 0x15
KIND_SLIN48: Final = 0x16
KIND_SLIN96: Final = 0x17
KIND_SLIN192: Final = 0x18
KIND_ERROR: Final = 0xFF

#: Sample rate of each audio kind *as Asterisk interprets it on receive* (0x10 is always 8 kHz slin there).
AUDIO_KIND_RATES: Final[dict[int, int]] = {
    KIND_SLIN: 8000,
    KIND_SLIN12: 12000,
    KIND_SLIN16: 16000,
    KIND_SLIN24: 24000,
    KIND_SLIN32: 32000,
    KIND_SLIN44: 44100,
    KIND_SLIN48: 48000,
    KIND_SLIN96: 96000,
    KIND_SLIN192: 192000,
}
AUDIO_KINDS: Final[frozenset[int]] = frozenset(AUDIO_KIND_RATES)

HEADER_SIZE: Final = 3
MAX_PAYLOAD: Final = 65535
UUID_SIZE: Final = 16
HANGUP_MESSAGE: Final = b"\x00\x00\x00"
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")

#: Asterisk's log texts for the two receive errors (res_audiosocket.c L338-376).
REASON_BAD_KIND: Final = "Received AudioSocket message other than hangup or audio"
REASON_BAD_LENGTH: Final = "Invalid message length"

_DTMF_BYTES: Final[frozenset[int]] = frozenset(d.encode("ascii")[0] for d in DTMF_DIGITS)
_AUDIO_HEADERS: Final[dict[int, bytes]] = {k: bytes((k,)) for k in AUDIO_KINDS}

Bytes: TypeAlias = bytes | bytearray | memoryview


@dataclass(slots=True, frozen=True)
class Frame:
    """One AudioSocket message: its kind and payload (for a hangup, the payload is always empty)."""

    kind: int
    payload: bytes


class AudioSocketError(Exception):
    """A protocol violation that ends the connection.

    ``reason`` is the message Asterisk would log. ``frames`` holds the frames that were complete *before*
    the violation in the same :meth:`feed` call: Asterisk had already delivered them to the call.
    """

    def __init__(self, reason: str, *, kind: int | None = None, frames: list[Frame] | None = None) -> None:
        super().__init__(reason if kind is None else f"{reason} (kind 0x{kind:02x})")
        self.reason = reason
        self.kind = kind
        self.frames: list[Frame] = frames if frames is not None else []


# --------------------------------------------------------------------------------------------- encoding


def encode(kind: int, payload: Bytes = b"") -> bytes:
    """Frame ``payload`` under ``kind`` without judging the kind (tests use it to build bad input)."""
    size = len(payload)
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"kind {kind!r} does not fit in a byte")
    if size > MAX_PAYLOAD:
        raise ValueError(f"payload of {size} bytes exceeds {MAX_PAYLOAD}")
    return bytes((kind, size >> 8, size & 0xFF)) + payload


def encode_uuid(u: uuid.UUID) -> bytes:
    """The first message Asterisk sends: kind 0x01 with the UUID's 16 raw bytes."""
    return b"\x01\x00\x10" + u.bytes


def encode_dtmf(digit: str) -> bytes:
    """A DTMF message as Asterisk sends it on DTMF end: kind 0x03 with one ASCII digit (0-9 * # A-D)."""
    if len(digit) != 1 or digit not in DTMF_DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return b"\x03\x00\x01" + digit.encode("ascii")


def encode_audio(kind: int, payload: Bytes) -> bytes:
    """An audio message (kinds 0x10-0x18). Length parity is not checked: µ-law rides under 0x10."""
    size = len(payload)
    if kind not in AUDIO_KINDS:
        raise ValueError(f"kind 0x{kind:02x} is not an audio kind")
    if size == 0 or size > MAX_PAYLOAD:
        raise ValueError(f"audio payload must be 1..{MAX_PAYLOAD} bytes, got {size}")
    return _AUDIO_HEADERS[kind] + size.to_bytes(2, "big") + payload


# ---------------------------------------------------------------------------------------------- parsing


class ServerStreamParser:
    """Incremental parser for the bytes an external AudioSocket server sends to (simulated) Asterisk.

    ``feed`` returns the complete frames; audio frames carry an even-length payload (an odd trailing byte is
    dropped, as Asterisk never plays it) and the hangup frame is ``Frame(KIND_HANGUP, b"")``. After a hangup
    :attr:`closed` is True and further input is ignored. A violation raises :class:`AudioSocketError`; the
    parser then stays failed and every later ``feed`` raises the same error.
    """

    __slots__ = ("_buf", "_closed", "_error", "frame_count", "odd_length_frames")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._closed = False
        self._error: AudioSocketError | None = None
        #: audio frames delivered so far (hangup not counted)
        self.frame_count = 0
        #: audio frames whose odd trailing byte was dropped
        self.odd_length_frames = 0

    @property
    def closed(self) -> bool:
        """True once a hangup was parsed or a violation was raised."""
        return self._closed

    @property
    def error(self) -> AudioSocketError | None:
        return self._error

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held back, waiting for more input."""
        return len(self._buf)

    def feed(self, data: Bytes) -> list[Frame]:
        if self._closed:
            if self._error is not None:
                raise self._error
            return []
        buf = self._buf
        if not buf:
            # Fast path: a paced server writes one whole, well-formed frame per send().
            size = len(data)
            if size > HEADER_SIZE:
                kind = data[0]
                length = (data[1] << 8) | data[2]
                if size == length + HEADER_SIZE and kind in AUDIO_KINDS and not length & 1:
                    self.frame_count += 1
                    return [Frame(kind, bytes(data[HEADER_SIZE:]))]
            src: Bytes = data
        else:
            buf += data
            src = buf
        frames: list[Frame] = []
        end = len(src)
        off = 0
        audio_kinds = AUDIO_KINDS
        while end - off >= HEADER_SIZE:
            kind = src[off]
            if kind == KIND_HANGUP:
                # Asterisk checks the kind before the length and reads nothing more.
                frames.append(Frame(KIND_HANGUP, b""))
                self._closed = True
                self._buf = bytearray()
                self.frame_count += len(frames) - 1
                return frames
            if kind not in audio_kinds:
                self._fail(AudioSocketError(REASON_BAD_KIND, kind=kind, frames=frames))
            length = (src[off + 1] << 8) | src[off + 2]
            if length == 0:
                self._fail(AudioSocketError(REASON_BAD_LENGTH, kind=kind, frames=frames))
            stop = off + HEADER_SIZE + length
            if stop > end:
                break
            if length & 1:
                self.odd_length_frames += 1
                frames.append(Frame(kind, bytes(src[off + HEADER_SIZE : stop - 1])))
            else:
                frames.append(Frame(kind, bytes(src[off + HEADER_SIZE : stop])))
            off = stop
        self.frame_count += len(frames)
        if src is buf:
            if off:
                del buf[:off]
        elif off < end:
            buf += data[off:] if off else data
        return frames

    def _fail(self, error: AudioSocketError) -> NoReturn:
        self.frame_count += len(error.frames)
        self._closed = True
        self._error = error
        self._buf = bytearray()
        raise error


class ClientStreamParser:
    """Incremental parser for what Asterisk sends to the external server (the load generator's view).

    Strict about 22.10.1's sending rules: the first message must be a 16-byte UUID (kind 0x01) and no second
    UUID may follow; after it come audio (0x10-0x18, any non-zero length: µ-law frames can be odd) and DTMF
    (0x03, exactly one digit byte). Asterisk never sends 0x00 or 0xFF (it closes the socket instead), so
    those, like every other kind, raise :class:`AudioSocketError`.
    """

    __slots__ = ("_buf", "_error", "uuid")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._error: AudioSocketError | None = None
        #: the call's UUID, once the first message was parsed
        self.uuid: uuid.UUID | None = None

    def feed(self, data: Bytes) -> list[Frame]:
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        end = len(buf)
        off = 0
        while end - off >= HEADER_SIZE:
            kind = buf[off]
            length = (buf[off + 1] << 8) | buf[off + 2]
            if self.uuid is None:
                if kind != KIND_UUID or length != UUID_SIZE:
                    self._fail(
                        f"first message must be a 16-byte UUID, got kind 0x{kind:02x} length {length}",
                        kind,
                        frames,
                    )
            elif kind == KIND_UUID:
                self._fail("UUID sent more than once", kind, frames)
            elif kind == KIND_DTMF:
                if length != 1:
                    self._fail(f"DTMF payload must be 1 byte, got {length}", kind, frames)
            elif kind not in AUDIO_KINDS:
                self._fail("Asterisk sends only UUID, DTMF and audio", kind, frames)
            elif length == 0:
                self._fail(REASON_BAD_LENGTH, kind, frames)
            stop = off + HEADER_SIZE + length
            if stop > end:
                break
            payload = bytes(buf[off + HEADER_SIZE : stop])
            if kind == KIND_UUID:
                self.uuid = uuid.UUID(bytes=payload)
            elif kind == KIND_DTMF and payload[0] not in _DTMF_BYTES:
                self._fail(f"not a DTMF digit: {payload!r}", kind, frames)
            frames.append(Frame(kind, payload))
            off = stop
        if off:
            del buf[:off]
        return frames

    def _fail(self, reason: str, kind: int, frames: list[Frame]) -> NoReturn:
        self._error = AudioSocketError(reason, kind=kind, frames=frames)
        self._buf = bytearray()
        raise self._error
