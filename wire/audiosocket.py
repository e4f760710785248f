"""Sans-I/O AudioSocket codec, both directions, standard library only (PROTOCOLS.md §4, §7 items 1, 2, 4).

The wire format is written once, here, and used from both ends of the socket:

* the **media worker** (``media/``) is the external AudioSocket server: it parses what Asterisk sends with
  :class:`AsteriskStreamParser` and sends paced audio built with :func:`encode_audio`;
* the **PBX simulator** (``telephony/sim/``) plays Asterisk 22.10.1: it sends with :func:`encode_uuid`,
  :func:`encode_audio` and :func:`encode_dtmf`, and parses what the server sends with
  :class:`ServerStreamParser`. ``telephony/sim/`` imports nothing from the project but ``wire/``, which is
  why the codec lives here: written once, and a pure standard-library module that never imports Django or
  any other part of the project.

Wire format (§4.1): every message is a 1-byte *kind*, a 2-byte big-endian payload length and exactly that
many payload bytes, so a payload is at most 65535 bytes and a hangup is ``00 00 00``. TCP may split a
message anywhere (header included), so every parser here is incremental and accepts any split.

Direction matters, and the two directions obey different rules:

* **Asterisk → external server**: the 16-byte binary UUID (kind 0x01) first and exactly once, then audio
  (0x10-0x18) and DTMF (0x03, one ASCII digit, sent on DTMF end). Asterisk never sends 0x00 or 0xFF: when its
  side ends it just closes the socket (§4.5). :class:`ClientStreamParser` parses this direction strictly (the
  load generator and the simulator's tests use it to check that the simulator sends exactly what Asterisk
  does); :class:`AsteriskStreamParser` is the media worker's variant of the same parser: it also accepts a
  0x00 hangup or a 0xFF error from a peer as the end of the stream, drops the odd trailing byte of a slin
  frame, and caps audio payloads (:data:`WORKER_MAX_PAYLOAD`) so that a garbage length cannot make it buffer
  64 KiB per connection.
* **External server → Asterisk** (:class:`ServerStreamParser`). Asterisk 22.10.1 reads the 3-byte header
  first and checks the kind *before* reading any payload (res_audiosocket.c L330-376):

  - kind 0x00 ends the stream at once, whatever the length field says; nothing after it is read;
  - any kind other than 0x00 and 0x10-0x18 (0x01, 0x02, 0x03, 0xFF, 0x20, ...) fails with
    "Received AudioSocket message other than hangup or audio" and tears the call down;
  - a zero-length audio message fails with "Invalid message length";
  - otherwise it reads ``length`` bytes and builds a frame of ``length // 2`` samples. An odd length is
    therefore accepted and its trailing byte is simply never played: the parser drops it from the payload
    it returns and counts it in :attr:`ServerStreamParser.odd_length_frames`.

**Why µ-law travels as kind 0x10** (the "0x10 caveat", §4.2): when *sending*, Asterisk picks the kind from
the frame's format and falls back to 0x10 for every format that is not signed linear. A channel created with
``format=ulaw`` therefore sends 160-byte µ-law frames labelled 0x10 (trace
``outbound_answered_bridged_ulaw_app_hangs_up.json``), which is why an odd length is kept under 0x10 by
every parser of that direction. On *receive*, 0x10 always means 8 kHz slin, which is why
:data:`AUDIO_KIND_RATES` maps 0x10 to 8000 with no format attached: the label alone does not say whether
bytes Asterisk sent are slin or µ-law; only the channel's format does.

Kinds 0x11-0x18 exist from 22.7.0 on; this module models 22.10.1.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, NoReturn, TypeAlias

__all__ = [
    "AUDIO_KINDS",
    "AUDIO_KIND_RATES",
    "SLIN_KINDS",
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
    "REASON_DTMF_DIGIT",
    "REASON_DTMF_LENGTH",
    "REASON_NOT_SENT_BY_ASTERISK",
    "REASON_TOO_LONG",
    "REASON_UNKNOWN_KIND",
    "REASON_UUID_FIRST",
    "REASON_UUID_TWICE",
    "UUID_SIZE",
    "WORKER_MAX_PAYLOAD",
    "AsteriskStreamParser",
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
#: The audio kinds that can only carry 16-bit slin (0x10 may carry µ-law bytes from Asterisk, see above).
SLIN_KINDS: Final[frozenset[int]] = AUDIO_KINDS - {KIND_SLIN}

HEADER_SIZE: Final = 3
MAX_PAYLOAD: Final = 65535
UUID_SIZE: Final = 16
HANGUP_MESSAGE: Final = b"\x00\x00\x00"
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
#: The media worker's cap on one audio (or error) payload: 20 ms of slin192 is 7680 bytes.
WORKER_MAX_PAYLOAD: Final = 8192

#: Asterisk's log texts for the two receive errors (res_audiosocket.c L338-376).
REASON_BAD_KIND: Final = "Received AudioSocket message other than hangup or audio"
REASON_BAD_LENGTH: Final = "Invalid message length"

#: Violations of what Asterisk sends (:class:`ClientStreamParser`, :class:`AsteriskStreamParser`).
REASON_UUID_FIRST: Final = "first message must be a 16-byte UUID"
REASON_UUID_TWICE: Final = "UUID sent more than once"
REASON_DTMF_LENGTH: Final = "DTMF payload must be 1 byte"
REASON_DTMF_DIGIT: Final = "not a DTMF digit"
REASON_TOO_LONG: Final = "payload longer than the limit"
REASON_NOT_SENT_BY_ASTERISK: Final = "Asterisk sends only UUID, DTMF and audio"
REASON_UNKNOWN_KIND: Final = "unknown AudioSocket kind"

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

    ``reason`` is one of the ``REASON_*`` constants (for :class:`ServerStreamParser`, the message Asterisk
    would log); ``detail`` says what was seen instead. ``frames`` holds the frames that were complete
    *before* the violation in the same ``feed`` call: they were valid and are delivered with the error.
    """

    def __init__(
        self, reason: str, *, kind: int | None = None, frames: list[Frame] | None = None, detail: str = ""
    ) -> None:
        message = f"{reason}: {detail}" if detail else reason
        super().__init__(message if kind is None else f"{message} (kind 0x{kind:02x})")
        self.reason = reason
        self.detail = detail
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


class _StreamParser:
    """What both parsers share: the held-back bytes, the end of stream and the sticky violation."""

    __slots__ = ("_buf", "_closed", "_error", "frame_count", "odd_length_frames")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._closed = False
        self._error: AudioSocketError | None = None
        #: frames delivered so far
        self.frame_count = 0
        #: frames whose odd trailing byte was dropped
        self.odd_length_frames = 0

    @property
    def closed(self) -> bool:
        """True once the stream ended (a hangup, or an error frame) or a violation was raised."""
        return self._closed

    @property
    def error(self) -> AudioSocketError | None:
        return self._error

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held back, waiting for more input."""
        return len(self._buf)


class ServerStreamParser(_StreamParser):
    """Incremental parser for the bytes an external AudioSocket server sends to (simulated) Asterisk.

    ``feed`` returns the complete frames; audio frames carry an even-length payload (an odd trailing byte is
    dropped, as Asterisk never plays it) and the hangup frame is ``Frame(KIND_HANGUP, b"")``. After a hangup
    :attr:`closed` is True and further input is ignored. A violation raises :class:`AudioSocketError`; the
    parser then stays failed and every later ``feed`` raises the same error.
    """

    __slots__ = ()

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


class ClientStreamParser(_StreamParser):
    """Incremental parser for what Asterisk sends to the external server.

    By default it is strict about 22.10.1's sending rules, for the load generator and the simulator's tests:
    the first message must be a 16-byte UUID (kind 0x01) and no second UUID may follow; after it come audio
    (0x10-0x18, 1..``max_payload`` bytes, kept as sent: µ-law frames can be odd) and DTMF (0x03, exactly one
    digit byte from ``0-9 * # A-D``). Asterisk never sends 0x00 or 0xFF (it closes the socket instead), so
    those, like every other kind, raise :class:`AudioSocketError`.

    ``lenient=True`` gives the media worker's rules (see :class:`AsteriskStreamParser`, which also lowers
    ``max_payload``): a 0x00 hangup from a peer ends the stream gracefully (``Frame(KIND_HANGUP, b"")``,
    whatever its length field says, nothing after it is read); a 0xFF error ends it too, as
    ``Frame(KIND_ERROR, payload)`` once its payload (an optional error code, at most ``max_payload`` bytes)
    has arrived; any other unknown kind is still a violation; an odd slin frame (0x11-0x18) loses its
    trailing byte, counted in :attr:`odd_length_frames` (0x10 keeps it: µ-law rides there).

    Every rule that depends only on the header (kind, the UUID-first rule, lengths) is checked as soon as the
    3 header bytes are in, so a bad length is rejected before its payload is waited for or buffered. After
    a violation the parser stays failed: every later :meth:`feed` raises the same error. After an end of
    stream (hangup or error frame) :attr:`closed` is True and further input is ignored.
    """

    __slots__ = ("_lenient", "_max_payload", "_trim_kinds", "uuid")

    def __init__(self, *, lenient: bool = False, max_payload: int = MAX_PAYLOAD) -> None:
        if not 1 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be 1..{MAX_PAYLOAD}, got {max_payload}")
        super().__init__()
        self._lenient = lenient
        self._max_payload = max_payload
        self._trim_kinds: frozenset[int] = SLIN_KINDS if lenient else frozenset()
        #: the call's UUID, once the first message was parsed
        self.uuid: uuid.UUID | None = None

    @property
    def max_payload(self) -> int:
        return self._max_payload

    def feed(self, data: Bytes) -> list[Frame]:
        """Parse ``data`` (any split of the stream); return the frames it completed, in order."""
        if self._closed:
            if self._error is not None:
                raise self._error
            return []
        buf = self._buf
        max_payload = self._max_payload
        if not buf:
            # Fast path: Asterisk writes one whole frame per write(), and TCP_NODELAY keeps it together.
            size = len(data)
            if size > HEADER_SIZE and self.uuid is not None:
                kind = data[0]
                length = (data[1] << 8) | data[2]
                if (
                    size - HEADER_SIZE == length
                    and kind in AUDIO_KINDS
                    and length <= max_payload
                    and not (length & 1 and kind in self._trim_kinds)
                ):
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
        lenient = self._lenient
        while end - off >= HEADER_SIZE:
            kind = src[off]
            length = (src[off + 1] << 8) | src[off + 2]
            # Header checks: everything that can be judged before the payload arrives.
            if self.uuid is None:
                if kind != KIND_UUID or length != UUID_SIZE:
                    self._fail(REASON_UUID_FIRST, kind, frames, f"got kind 0x{kind:02x} length {length}")
            elif kind in audio_kinds:
                if length == 0:
                    self._fail(REASON_BAD_LENGTH, kind, frames)
                if length > max_payload:
                    self._fail(REASON_TOO_LONG, kind, frames, f"{length} > {max_payload} bytes")
            elif kind == KIND_DTMF:
                if length != 1:
                    self._fail(REASON_DTMF_LENGTH, kind, frames, f"got {length}")
            elif kind == KIND_UUID:
                self._fail(REASON_UUID_TWICE, kind, frames)
            elif not lenient:
                self._fail(REASON_NOT_SENT_BY_ASTERISK, kind, frames)
            elif kind == KIND_HANGUP:
                # Graceful end of stream, like Asterisk's own receive loop: the length field is not read.
                frames.append(Frame(KIND_HANGUP, b""))
                return self._end(frames)
            elif kind == KIND_ERROR:
                if length > max_payload:
                    self._fail(REASON_TOO_LONG, kind, frames, f"{length} > {max_payload} bytes")
            else:
                self._fail(REASON_UNKNOWN_KIND, kind, frames)
            stop = off + HEADER_SIZE + length
            if stop > end:
                break
            if kind in audio_kinds:
                if length & 1 and kind in self._trim_kinds:
                    self.odd_length_frames += 1
                    frames.append(Frame(kind, bytes(src[off + HEADER_SIZE : stop - 1])))
                else:
                    frames.append(Frame(kind, bytes(src[off + HEADER_SIZE : stop])))
            else:
                payload = bytes(src[off + HEADER_SIZE : stop])
                if kind == KIND_UUID:
                    self.uuid = uuid.UUID(bytes=payload)
                elif kind == KIND_DTMF:
                    if payload[0] not in _DTMF_BYTES:
                        self._fail(REASON_DTMF_DIGIT, kind, frames, repr(payload))
                else:  # KIND_ERROR, lenient: the peer ends the stream with an optional error code
                    frames.append(Frame(KIND_ERROR, payload))
                    return self._end(frames)
                frames.append(Frame(kind, payload))
            off = stop
        self.frame_count += len(frames)
        if src is buf:
            if off:
                del buf[:off]
        elif off < end:
            buf += data[off:] if off else data
        return frames

    def _end(self, frames: list[Frame]) -> list[Frame]:
        self.frame_count += len(frames)
        self._closed = True
        self._buf = bytearray()
        return frames

    def _fail(self, reason: str, kind: int, frames: list[Frame], detail: str = "") -> NoReturn:
        self.frame_count += len(frames)
        self._closed = True
        self._error = AudioSocketError(reason, kind=kind, frames=frames, detail=detail)
        self._buf = bytearray()
        raise self._error


class AsteriskStreamParser(ClientStreamParser):
    """The media worker's parser for what Asterisk (or a peer playing it) sends.

    :class:`ClientStreamParser` in lenient mode with audio payloads capped at ``max_payload`` (default
    :data:`WORKER_MAX_PAYLOAD`, enough for 20 ms of slin192): UUID first and once, DTMF, audio, and a 0x00
    hangup or 0xFF error as a graceful end of stream. A violation raises :class:`AudioSocketError`; the
    connection should then be closed (one log line), and the frames in the error's ``frames`` were valid.
    """

    __slots__ = ()

    def __init__(self, *, max_payload: int = WORKER_MAX_PAYLOAD) -> None:
        super().__init__(lenient=True, max_payload=max_payload)
