"""The AudioSocket codec from the media worker's side: what Asterisk (or a peer playing it) sends.

The simulator's side (ServerStreamParser, the encoders, the strict ClientStreamParser against the recorded
traces) is tested in tests/telephony/sim/test_audiosocket_codec.py; this file covers AsteriskStreamParser
(the worker's parser), the rules it shares with the strict parser, and the module's layering.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from wire.audiosocket import (
    AUDIO_KINDS,
    DTMF_DIGITS,
    HANGUP_MESSAGE,
    KIND_DTMF,
    KIND_ERROR,
    KIND_HANGUP,
    KIND_SLIN,
    KIND_SLIN12,
    KIND_SLIN16,
    KIND_SLIN24,
    KIND_SLIN48,
    KIND_UUID,
    MAX_PAYLOAD,
    REASON_BAD_LENGTH,
    REASON_DTMF_DIGIT,
    REASON_DTMF_LENGTH,
    REASON_NOT_SENT_BY_ASTERISK,
    REASON_TOO_LONG,
    REASON_UNKNOWN_KIND,
    REASON_UUID_FIRST,
    REASON_UUID_TWICE,
    SLIN_KINDS,
    UUID_SIZE,
    WORKER_MAX_PAYLOAD,
    AsteriskStreamParser,
    AudioSocketError,
    ClientStreamParser,
    Frame,
    encode,
    encode_audio,
    encode_dtmf,
    encode_uuid,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
U = uuid.UUID("590f1a45-4988-470e-b021-16a09e85ee34")
HELLO = encode_uuid(U)
UUID_FRAME = Frame(KIND_UUID, U.bytes)
KNOWN_KINDS = {KIND_HANGUP, KIND_UUID, KIND_DTMF, KIND_ERROR} | AUDIO_KINDS
UNKNOWN_KINDS = [k for k in range(256) if k not in KNOWN_KINDS]
DTMF_BYTES = {d.encode()[0] for d in DTMF_DIGITS}
ALL_REASONS = {
    REASON_BAD_LENGTH,
    REASON_DTMF_DIGIT,
    REASON_DTMF_LENGTH,
    REASON_TOO_LONG,
    REASON_UNKNOWN_KIND,
    REASON_UUID_FIRST,
    REASON_UUID_TWICE,
}


def feed_all(parser: ClientStreamParser, chunks: list[bytes]) -> list[Frame]:
    out: list[Frame] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def outcome(
    data: bytes, chunks: list[bytes], max_payload: int = WORKER_MAX_PAYLOAD
) -> tuple[list[Frame], str | None]:
    """All frames delivered (returned or carried by the error) and the violation's reason, if any."""
    parser = AsteriskStreamParser(max_payload=max_payload)
    frames: list[Frame] = []
    try:
        for chunk in chunks:
            frames.extend(parser.feed(chunk))
    except AudioSocketError as error:
        assert parser.closed and parser.error is error
        return frames + error.frames, error.reason
    return frames, None


def violation(parser: ClientStreamParser, data: bytes) -> AudioSocketError:
    with pytest.raises(AudioSocketError) as caught:
        parser.feed(data)
    return caught.value


# ------------------------------------------------------------------------------------------ layering


@pytest.mark.slow
def test_the_codec_imports_only_the_standard_library() -> None:
    code = (
        "import sys; before = set(sys.modules); import wire.audiosocket; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.replace("'", '"')) == ["wire"]


@pytest.mark.slow
def test_the_simulator_imports_nothing_of_the_project_but_the_codec_and_captions() -> None:
    code = (
        "import sys; import telephony.sim.__main__, telephony.sim.server, telephony.sim.engine; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('media', 'telephony', 'campaigns', 'tenants', 'orchestrator', 'django', 'wire') "
        "and not m.startswith('telephony.sim')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    imported = json.loads(out.stdout.replace("'", '"'))
    assert imported == ["telephony", "wire", "wire.audiosocket", "wire.caption"]


# ----------------------------------------------------------------------------------------- constants


def test_worker_limits() -> None:
    assert WORKER_MAX_PAYLOAD == 8192
    assert 192000 * 20 // 1000 * 2 == 7680 <= WORKER_MAX_PAYLOAD  # 20 ms of slin192 fits
    assert SLIN_KINDS == AUDIO_KINDS - {KIND_SLIN}
    assert UUID_SIZE == 16
    assert AsteriskStreamParser().max_payload == WORKER_MAX_PAYLOAD
    assert ClientStreamParser().max_payload == MAX_PAYLOAD


@pytest.mark.parametrize("max_payload", [0, -1, MAX_PAYLOAD + 1])
def test_max_payload_must_fit_the_length_field(max_payload: int) -> None:
    with pytest.raises(ValueError):
        AsteriskStreamParser(max_payload=max_payload)


# ------------------------------------------------------------------------------------------ the UUID


def test_uuid_first_then_audio_and_dtmf() -> None:
    parser = AsteriskStreamParser()
    data = (
        HELLO
        + encode_audio(KIND_SLIN24, bytes(960))
        + encode_dtmf("7")
        + encode_audio(KIND_SLIN24, bytes(72))
    )
    assert parser.feed(data) == [
        UUID_FRAME,
        Frame(KIND_SLIN24, bytes(960)),
        Frame(KIND_DTMF, b"7"),
        Frame(KIND_SLIN24, bytes(72)),
    ]
    assert parser.uuid == U
    assert parser.frame_count == 4
    assert parser.buffered == 0
    assert not parser.closed


def test_uuid_alone_then_nothing() -> None:
    # A silent callee: only the UUID arrives for seconds (PROTOCOLS.md A7).
    parser = AsteriskStreamParser()
    assert parser.feed(HELLO[:10]) == []
    assert parser.uuid is None
    assert parser.feed(HELLO[10:]) == [UUID_FRAME]
    assert parser.uuid == U


@pytest.mark.parametrize(
    "first",
    [
        encode_audio(KIND_SLIN24, bytes(960)),
        encode_dtmf("1"),
        HANGUP_MESSAGE,
        encode(KIND_ERROR, b"\x01"),
        encode(KIND_UUID, bytes(15)),
        encode(KIND_UUID, bytes(17)),
        encode(KIND_UUID),
        encode(0x02, b"x"),
    ],
    ids=["audio", "dtmf", "hangup", "error", "uuid15", "uuid17", "uuid0", "kind02"],
)
def test_anything_but_a_uuid_first_is_a_violation(first: bytes) -> None:
    parser = AsteriskStreamParser()
    # Judged on the header alone: the payload need not arrive.
    error = violation(parser, first[:3])
    assert error.reason == REASON_UUID_FIRST
    assert error.kind == first[0]
    assert error.frames == []
    assert parser.closed and parser.error is error
    assert violation(parser, HELLO) is error  # a failed parser stays failed


def test_a_second_uuid_is_a_violation() -> None:
    parser = AsteriskStreamParser()
    error = violation(parser, HELLO + encode_dtmf("1") + HELLO[:3])
    assert error.reason == REASON_UUID_TWICE
    assert error.frames == [UUID_FRAME, Frame(KIND_DTMF, b"1")]
    assert parser.frame_count == 2


# ----------------------------------------------------------------------------------------------- DTMF


@pytest.mark.parametrize("digit", sorted(DTMF_DIGITS))
def test_every_dtmf_digit(digit: str) -> None:
    parser = AsteriskStreamParser()
    assert parser.feed(HELLO + encode_dtmf(digit)) == [UUID_FRAME, Frame(KIND_DTMF, digit.encode())]


@pytest.mark.parametrize("length", [0, 2, 16, 300])
def test_dtmf_must_be_one_byte(length: int) -> None:
    parser = AsteriskStreamParser()
    parser.feed(HELLO)
    error = violation(parser, encode(KIND_DTMF, b"1" * length)[:3])
    assert (error.reason, error.kind) == (REASON_DTMF_LENGTH, KIND_DTMF)


@pytest.mark.parametrize("byte", sorted(set(range(256)) - DTMF_BYTES))
def test_dtmf_must_be_a_digit(byte: int) -> None:
    parser = AsteriskStreamParser()
    error = violation(parser, HELLO + encode(KIND_DTMF, bytes((byte,))))
    assert error.reason == REASON_DTMF_DIGIT
    assert error.frames == [UUID_FRAME]


# ---------------------------------------------------------------------------------------------- audio


@pytest.mark.parametrize("kind", sorted(AUDIO_KINDS))
def test_every_audio_kind_and_length_limits(kind: int) -> None:
    parser = AsteriskStreamParser()
    parser.feed(HELLO)
    assert parser.feed(encode_audio(kind, b"\x01\x02")) == [Frame(kind, b"\x01\x02")]
    biggest = bytes(range(256)) * 32
    assert len(biggest) == WORKER_MAX_PAYLOAD
    assert parser.feed(encode_audio(kind, biggest)) == [Frame(kind, biggest)]
    error = violation(parser, bytes((kind, 0, 0)))
    assert (error.reason, error.kind) == (REASON_BAD_LENGTH, kind)


@pytest.mark.parametrize("kind", sorted(AUDIO_KINDS))
def test_a_payload_over_the_cap_is_refused_on_its_header(kind: int) -> None:
    parser = AsteriskStreamParser()
    parser.feed(HELLO)
    header = encode_audio(kind, bytes(WORKER_MAX_PAYLOAD + 1))[:3]
    error = violation(parser, header)  # nothing of the 8 KiB payload is waited for or buffered
    assert (error.reason, error.kind) == (REASON_TOO_LONG, kind)
    assert parser.buffered == 0
    huge = AsteriskStreamParser()
    huge.feed(HELLO)
    assert violation(huge, b"\x13\xff\xff").reason == REASON_TOO_LONG


def test_a_custom_cap() -> None:
    parser = AsteriskStreamParser(max_payload=960)
    parser.feed(HELLO)
    assert parser.feed(encode_audio(KIND_SLIN24, bytes(960))) == [Frame(KIND_SLIN24, bytes(960))]
    assert violation(parser, encode_audio(KIND_SLIN24, bytes(962))).reason == REASON_TOO_LONG
    # The strict parser takes the same cap when asked, and none by default.
    strict = ClientStreamParser(max_payload=960)
    strict.feed(HELLO)
    assert violation(strict, encode_audio(KIND_SLIN24, bytes(962))).reason == REASON_TOO_LONG
    default = ClientStreamParser()
    default.feed(HELLO)
    assert default.feed(encode_audio(KIND_SLIN48, bytes(MAX_PAYLOAD))) == [
        Frame(KIND_SLIN48, bytes(MAX_PAYLOAD))
    ]


def test_odd_lengths_kept_for_0x10_trimmed_and_counted_for_slin_kinds() -> None:
    parser = AsteriskStreamParser()
    data = HELLO + encode_audio(KIND_SLIN, b"\xff" * 159) + encode_audio(KIND_SLIN16, b"\x01\x02\x03")
    data += encode_audio(KIND_SLIN24, b"\x09") + encode_audio(KIND_SLIN12, b"\x01\x02")
    assert parser.feed(data) == [
        UUID_FRAME,
        Frame(KIND_SLIN, b"\xff" * 159),  # µ-law rides under 0x10: every byte is a sample
        Frame(KIND_SLIN16, b"\x01\x02"),
        Frame(KIND_SLIN24, b""),
        Frame(KIND_SLIN12, b"\x01\x02"),
    ]
    assert parser.odd_length_frames == 2
    # The strict parser keeps odd lengths of every kind: it checks the simulator sends what it means to.
    strict = ClientStreamParser()
    assert strict.feed(HELLO + encode_audio(KIND_SLIN16, b"\x01\x02\x03"))[1] == Frame(
        KIND_SLIN16, b"\x01\x02\x03"
    )
    assert strict.odd_length_frames == 0


# ------------------------------------------------------------------------------------ hangup and error


def test_hangup_ends_the_stream_gracefully() -> None:
    parser = AsteriskStreamParser()
    frames = parser.feed(HELLO + encode_audio(KIND_SLIN24, b"\x01\x00") + HANGUP_MESSAGE + b"\x13\x00\x02ab")
    assert frames == [UUID_FRAME, Frame(KIND_SLIN24, b"\x01\x00"), Frame(KIND_HANGUP, b"")]
    assert parser.closed
    assert parser.error is None
    assert parser.buffered == 0
    assert parser.feed(b"\xee\xee\xee anything") == []  # ignored, not a violation


def test_hangup_ignores_its_length_field() -> None:
    parser = AsteriskStreamParser()
    parser.feed(HELLO)
    assert parser.feed(b"\x00\xff\xff") == [Frame(KIND_HANGUP, b"")]
    assert parser.closed and parser.error is None


def test_hangup_needs_its_whole_header() -> None:
    parser = AsteriskStreamParser()
    parser.feed(HELLO)
    assert parser.feed(b"\x00") == []
    assert parser.feed(b"\x00") == []
    assert not parser.closed
    assert parser.feed(b"\x00") == [Frame(KIND_HANGUP, b"")]


@pytest.mark.parametrize("code", [b"", b"\x01", b"\x02", b"\x04", b"detail of the error"])
def test_error_frame_ends_the_stream_with_its_code(code: bytes) -> None:
    parser = AsteriskStreamParser()
    data = HELLO + encode(KIND_ERROR, code)
    assert feed_all(parser, [data[:-1], data[-1:]] if code else [data]) == [
        UUID_FRAME,
        Frame(KIND_ERROR, code),
    ]
    assert parser.closed and parser.error is None
    assert parser.feed(encode_audio(KIND_SLIN24, bytes(960))) == []


def test_error_frame_waits_for_its_payload_and_is_capped() -> None:
    parser = AsteriskStreamParser()
    parser.feed(HELLO)
    assert parser.feed(b"\xff\x00\x02\x01") == []
    assert not parser.closed
    assert parser.feed(b"\x02") == [Frame(KIND_ERROR, b"\x01\x02")]
    capped = AsteriskStreamParser()
    capped.feed(HELLO)
    assert violation(capped, b"\xff\x20\x01").reason == REASON_TOO_LONG


@pytest.mark.parametrize("kind", UNKNOWN_KINDS)
def test_unknown_kinds_are_violations(kind: int) -> None:
    parser = AsteriskStreamParser()
    error = violation(parser, HELLO + bytes((kind, 0, 1)))
    assert (error.reason, error.kind) == (REASON_UNKNOWN_KIND, kind)
    assert error.frames == [UUID_FRAME]
    assert f"kind 0x{kind:02x}" in str(error)


@pytest.mark.parametrize("tail", [HANGUP_MESSAGE, encode(KIND_ERROR, b"\x01")])
def test_the_strict_parser_still_refuses_hangup_and_error(tail: bytes) -> None:
    with pytest.raises(AudioSocketError) as caught:
        ClientStreamParser().feed(HELLO + tail)
    assert caught.value.reason == REASON_NOT_SENT_BY_ASTERISK


def test_error_carries_the_frames_before_the_violation() -> None:
    parser = AsteriskStreamParser()
    good = encode_audio(KIND_SLIN16, b"\x01\x02" * 4)
    assert parser.feed(HELLO + good[:5]) == [UUID_FRAME]
    error = violation(parser, good[5:] + good + b"\x13\x00\x00" + good)
    assert error.frames == [Frame(KIND_SLIN16, b"\x01\x02" * 4)] * 2
    assert error.reason == REASON_BAD_LENGTH
    assert parser.frame_count == 3
    assert parser.buffered == 0


# ------------------------------------------------------------------------------------------ fast path


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_fast_path_one_whole_frame(wrap: type) -> None:
    parser = AsteriskStreamParser()
    parser.feed(HELLO)
    payload = bytes(range(240)) * 4
    frames = parser.feed(wrap(encode_audio(KIND_SLIN24, payload)))
    assert frames == [Frame(KIND_SLIN24, payload)]
    assert type(frames[0].payload) is bytes
    assert parser.buffered == 0
    assert parser.frame_count == 2


def test_fast_path_applies_every_rule() -> None:
    parser = AsteriskStreamParser()
    parser.feed(HELLO)
    assert parser.feed(encode_audio(KIND_SLIN24, bytes(959))) == [Frame(KIND_SLIN24, bytes(958))]
    assert parser.odd_length_frames == 1
    assert parser.feed(encode_audio(KIND_SLIN, bytes(161))) == [Frame(KIND_SLIN, bytes(161))]
    small = AsteriskStreamParser(max_payload=100)
    small.feed(HELLO)
    assert violation(small, encode_audio(KIND_SLIN24, bytes(960))).reason == REASON_TOO_LONG
    # Before the UUID a whole audio frame is not taken by the fast path.
    assert (
        violation(AsteriskStreamParser(), encode_audio(KIND_SLIN24, bytes(960))).reason == REASON_UUID_FIRST
    )


def test_fast_path_and_partial_frames_mix() -> None:
    frame = encode_audio(KIND_SLIN24, b"\x10\x00" * 480)
    expected = Frame(KIND_SLIN24, b"\x10\x00" * 480)
    parser = AsteriskStreamParser()
    parser.feed(HELLO)
    assert parser.feed(frame) == [expected]  # fast path
    assert parser.feed(frame[:100]) == []  # partial: buffered
    assert parser.buffered == 100
    assert parser.feed(frame[100:]) == [expected]  # completes from the buffer
    assert parser.buffered == 0
    assert parser.feed(frame) == [expected]  # fast path again
    assert parser.feed(frame + frame[:2]) == [expected]  # not one whole frame: the loop, then a tail
    assert parser.buffered == 2
    assert parser.feed(frame[2:]) == [expected]


# ------------------------------------------------------------------------------------- fragmentation

STREAM = (
    HELLO
    + encode_audio(KIND_SLIN16, bytes(range(64)) * 10)
    + encode_dtmf("#")
    + encode_audio(KIND_SLIN, b"\x7f" * 33)
    + encode_audio(KIND_SLIN16, b"\x05\x06\x07")
    + encode(KIND_ERROR, b"\x02")
)
STREAM_FRAMES = [
    UUID_FRAME,
    Frame(KIND_SLIN16, bytes(range(64)) * 10),
    Frame(KIND_DTMF, b"#"),
    Frame(KIND_SLIN, b"\x7f" * 33),
    Frame(KIND_SLIN16, b"\x05\x06"),
    Frame(KIND_ERROR, b"\x02"),
]


def test_every_single_split_point_gives_the_same_frames() -> None:
    assert outcome(STREAM, [STREAM]) == (STREAM_FRAMES, None)
    for cut in range(len(STREAM) + 1):
        assert outcome(STREAM, [STREAM[:cut], STREAM[cut:]]) == (STREAM_FRAMES, None), cut


def test_every_pair_of_split_points_around_the_small_frames() -> None:
    start = len(HELLO) + 3 + 640 - 4  # the last bytes of the big frame and every small frame after it
    for a in range(start, len(STREAM) + 1):
        for b in range(a, len(STREAM) + 1):
            assert outcome(STREAM, [STREAM[:a], STREAM[a:b], STREAM[b:]]) == (STREAM_FRAMES, None), (a, b)


def test_byte_by_byte() -> None:
    parser = AsteriskStreamParser()
    assert feed_all(parser, [STREAM[i : i + 1] for i in range(len(STREAM))]) == STREAM_FRAMES
    assert parser.odd_length_frames == 1
    assert parser.frame_count == len(STREAM_FRAMES)


# ------------------------------------------------------------------------------- reference and fuzzing


def reference(data: bytes, max_payload: int = WORKER_MAX_PAYLOAD) -> tuple[list[Frame], str | None]:
    """A deliberately naive statement of the worker's rules over the whole stream, for comparison."""
    frames: list[Frame] = []
    pos = 0
    have_uuid = False
    while len(data) - pos >= 3:
        kind, length = data[pos], int.from_bytes(data[pos + 1 : pos + 3], "big")
        if not have_uuid:
            if kind != 0x01 or length != 16:
                return frames, REASON_UUID_FIRST
        elif kind == 0x00:
            return [*frames, Frame(0x00, b"")], None
        elif kind == 0x01:
            return frames, REASON_UUID_TWICE
        elif kind == 0x03:
            if length != 1:
                return frames, REASON_DTMF_LENGTH
        elif 0x10 <= kind <= 0x18:
            if length == 0:
                return frames, REASON_BAD_LENGTH
            if length > max_payload:
                return frames, REASON_TOO_LONG
        elif kind == 0xFF:
            if length > max_payload:
                return frames, REASON_TOO_LONG
        else:
            return frames, REASON_UNKNOWN_KIND
        if len(data) - pos - 3 < length:
            break
        payload = data[pos + 3 : pos + 3 + length]
        pos += 3 + length
        if kind == 0x01:
            have_uuid = True
        elif kind == 0x03 and payload.decode("latin-1") not in DTMF_DIGITS:
            return frames, REASON_DTMF_DIGIT
        elif kind == 0xFF:
            return [*frames, Frame(0xFF, payload)], None
        elif 0x11 <= kind <= 0x18 and length % 2:
            payload = payload[:-1]
        frames.append(Frame(kind, payload))
    return frames, None


def assert_valid(frames: list[Frame], max_payload: int = WORKER_MAX_PAYLOAD) -> None:
    """The rules every frame the worker's parser delivers obeys, whatever the input."""
    assert frames == [] or frames[0] == Frame(KIND_UUID, frames[0].payload)
    for index, frame in enumerate(frames):
        assert isinstance(frame, Frame)
        assert type(frame.payload) is bytes
        if index == 0:
            assert len(frame.payload) == UUID_SIZE
        elif frame.kind in AUDIO_KINDS:
            assert 0 <= len(frame.payload) <= max_payload
            assert frame.kind == KIND_SLIN or len(frame.payload) % 2 == 0
        elif frame.kind == KIND_DTMF:
            assert len(frame.payload) == 1 and frame.payload[0] in DTMF_BYTES
        elif frame.kind == KIND_HANGUP:
            assert frame.payload == b"" and index == len(frames) - 1
        elif frame.kind == KIND_ERROR:
            assert len(frame.payload) <= max_payload and index == len(frames) - 1
        else:
            raise AssertionError(f"kind 0x{frame.kind:02x} delivered at {index}")


# Bytes biased towards interesting headers: known and unknown kinds, small lengths.
interesting_bytes = st.lists(
    st.one_of(
        st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x10, 0x11, 0x13, 0x18, 0x19, 0xFF]),
        st.integers(0, 4),
        st.integers(0, 255),
    ),
    max_size=300,
).map(bytes)

# Messages with well-formed headers and arbitrary contents (any kind, any small payload), mixed with raw
# bytes: these reach the rules behind the header checks (DTMF digits, odd lengths, ends of stream).
framed_bytes = st.lists(
    st.one_of(
        st.tuples(
            st.one_of(st.sampled_from(sorted(KNOWN_KINDS)), st.integers(0, 255)),
            st.one_of(st.binary(max_size=2), st.binary(max_size=70)),
        ).map(lambda t: encode(*t)),
        st.binary(max_size=4),
    ),
    max_size=12,
).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(
    body=st.one_of(st.binary(max_size=400), interesting_bytes, framed_bytes),
    with_uuid=st.booleans(),
    max_payload=st.sampled_from([4, 64, WORKER_MAX_PAYLOAD]),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_fuzz_arbitrary_bytes_in_arbitrary_chunks(
    body: bytes, with_uuid: bool, max_payload: int, cuts: list[int]
) -> None:
    data = HELLO + body if with_uuid else body
    parser = AsteriskStreamParser(max_payload=max_payload)
    delivered: list[Frame] = []
    try:
        for chunk in split(data, cuts):
            delivered.extend(parser.feed(chunk))
            assert parser.buffered < 3 + max(max_payload, UUID_SIZE)  # one incomplete message at most
    except AudioSocketError as error:  # nothing else may escape
        event(error.reason)
        assert error.reason in ALL_REASONS
        assert parser.closed and parser.error is error
        delivered.extend(error.frames)
        with pytest.raises(AudioSocketError):
            parser.feed(HELLO)
    assert_valid(delivered, max_payload)
    # Whatever the chunking, the outcome is the reference model's over the whole stream.
    assert outcome(data, split(data, cuts), max_payload) == reference(data, max_payload)


dtmf_items = st.sampled_from(sorted(DTMF_DIGITS)).map(lambda d: (KIND_DTMF, d.encode()))
audio_items = st.tuples(st.sampled_from(sorted(AUDIO_KINDS)), st.binary(min_size=1, max_size=1000))
end_items = st.one_of(
    st.none(),
    st.just((KIND_HANGUP, b"")),
    st.tuples(st.just(KIND_ERROR), st.binary(max_size=4)),
)


def expected_frame(kind: int, payload: bytes) -> Frame:
    if kind in SLIN_KINDS and len(payload) % 2:
        return Frame(kind, payload[:-1])
    return Frame(kind, payload)


@settings(max_examples=300, deadline=None)
@given(
    u=st.uuids(),
    items=st.lists(st.one_of(dtmf_items, audio_items), max_size=12),
    end=end_items,
    trailing=st.binary(max_size=20),
    cuts=st.lists(st.integers(0, 20_000), max_size=30),
)
def test_valid_streams_round_trip_under_any_chunking(
    u: uuid.UUID,
    items: list[tuple[int, bytes]],
    end: tuple[int, bytes] | None,
    trailing: bytes,
    cuts: list[int],
) -> None:
    data = encode_uuid(u) + b"".join(encode(kind, payload) for kind, payload in items)
    expected = [Frame(KIND_UUID, u.bytes), *(expected_frame(k, p) for k, p in items)]
    if end is not None:
        data += encode(*end) + trailing  # anything after the end of the stream is ignored
        expected.append(Frame(*end))
    parser = AsteriskStreamParser()
    assert feed_all(parser, split(data, cuts)) == expected
    assert parser.uuid == u
    assert parser.closed == (end is not None)
    assert parser.error is None
    assert parser.buffered == 0
    assert parser.odd_length_frames == sum(1 for k, p in items if k in SLIN_KINDS and len(p) % 2)


# A violation that can be judged as soon as its bytes are in, whatever follows it.
violations = st.one_of(
    st.sampled_from(UNKNOWN_KINDS).map(lambda k: (bytes((k, 0, 1)), REASON_UNKNOWN_KIND)),
    st.sampled_from(sorted(AUDIO_KINDS)).map(lambda k: (bytes((k, 0, 0)), REASON_BAD_LENGTH)),
    st.tuples(st.sampled_from(sorted(AUDIO_KINDS)), st.integers(WORKER_MAX_PAYLOAD + 1, 0xFFFF)).map(
        lambda t: (bytes((t[0],)) + t[1].to_bytes(2, "big"), REASON_TOO_LONG)
    ),
    st.integers(WORKER_MAX_PAYLOAD + 1, 0xFFFF).map(
        lambda n: (b"\xff" + n.to_bytes(2, "big"), REASON_TOO_LONG)
    ),
    st.integers(0, 0xFFFF).map(lambda n: (encode_uuid(U)[:1] + n.to_bytes(2, "big"), REASON_UUID_TWICE)),
    st.integers(0, 0xFFFF)
    .filter(lambda n: n != 1)
    .map(lambda n: (b"\x03" + n.to_bytes(2, "big"), REASON_DTMF_LENGTH)),
    st.sampled_from(sorted(set(range(256)) - DTMF_BYTES)).map(
        lambda b: (b"\x03\x00\x01" + bytes((b,)), REASON_DTMF_DIGIT)
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.one_of(dtmf_items, audio_items), max_size=8),
    bad=violations,
    garbage=st.binary(max_size=200),
    cuts=st.lists(st.integers(0, 20_000), max_size=30),
)
def test_valid_prefix_then_garbage_yields_exactly_the_prefix(
    items: list[tuple[int, bytes]], bad: tuple[bytes, str], garbage: bytes, cuts: list[int]
) -> None:
    prefix = HELLO + b"".join(encode(kind, payload) for kind, payload in items)
    prefix_frames = [UUID_FRAME, *(expected_frame(k, p) for k, p in items)]
    violating, reason = bad
    data = prefix + violating + garbage
    assert outcome(data, split(data, cuts)) == (prefix_frames, reason)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.one_of(dtmf_items, audio_items), max_size=8),
    garbage=st.one_of(st.binary(max_size=300), interesting_bytes),
    cuts=st.lists(st.integers(0, 20_000), max_size=30),
)
def test_valid_prefix_then_any_bytes_keeps_the_prefix(
    items: list[tuple[int, bytes]], garbage: bytes, cuts: list[int]
) -> None:
    prefix = HELLO + b"".join(encode(kind, payload) for kind, payload in items)
    prefix_frames = [UUID_FRAME, *(expected_frame(k, p) for k, p in items)]
    data = prefix + garbage
    frames, reason = outcome(data, split(data, cuts))
    assert frames[: len(prefix_frames)] == prefix_frames
    assert_valid(frames)
    assert (frames, reason) == reference(data)
