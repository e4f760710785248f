"""The simulator's AudioSocket codec: exact bytes, Asterisk 22.10.1 receive rules, fragmentation, fuzzing."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.asterisk_reference import TRACES, trace_paths
from wire.audiosocket import (
    AUDIO_KIND_RATES,
    AUDIO_KINDS,
    HANGUP_MESSAGE,
    KIND_DTMF,
    KIND_ERROR,
    KIND_HANGUP,
    KIND_SLIN,
    KIND_SLIN16,
    KIND_SLIN24,
    KIND_SLIN192,
    KIND_UUID,
    MAX_PAYLOAD,
    REASON_BAD_KIND,
    REASON_BAD_LENGTH,
    AudioSocketError,
    ClientStreamParser,
    Frame,
    ServerStreamParser,
    encode,
    encode_audio,
    encode_dtmf,
    encode_uuid,
)

DTMF_TRACE = TRACES / "outbound_answered_bridged_slin24_dtmf_callee_hangs_up.json"
# The UUID of the first frame in DTMF_TRACE, as real Asterisk 22.10.1 sent it.
TRACE_UUID_HEX = "22dadb56dc3a4884ae2b037a51055535"

REJECTED_KINDS = [k for k in range(256) if k != KIND_HANGUP and k not in AUDIO_KINDS]


def feed_all(parser: ServerStreamParser | ClientStreamParser, chunks: list[bytes]) -> list[Frame]:
    out: list[Frame] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# ------------------------------------------------------------------------------------------- constants


def test_kinds_and_rates() -> None:
    assert (KIND_HANGUP, KIND_UUID, KIND_DTMF, KIND_ERROR) == (0x00, 0x01, 0x03, 0xFF)
    assert AUDIO_KIND_RATES == {
        0x10: 8000,
        0x11: 12000,
        0x12: 16000,
        0x13: 24000,
        0x14: 32000,
        0x15: 44100,
        0x16: 48000,
        0x17: 96000,
        0x18: 192000,
    }
    assert KIND_SLIN192 == 0x18
    assert MAX_PAYLOAD == 65535
    assert HANGUP_MESSAGE == b"\x00\x00\x00"


# -------------------------------------------------------------------------------------------- encoding


def test_uuid_frame_exact_bytes() -> None:
    u = uuid.UUID("22dadb56-dc3a-4884-ae2b-037a51055535")
    assert encode_uuid(u) == b"\x01\x00\x10" + bytes.fromhex(TRACE_UUID_HEX)
    assert encode_uuid(u)[:3] == b"\x01\x00\x10"
    assert len(encode_uuid(u)) == 19


def test_uuid_frame_matches_real_asterisk_trace() -> None:
    trace = json.loads(DTMF_TRACE.read_text())
    first = trace["request"]["audiosocket"]["frames"][0]
    assert (first["kind"], first["len"]) == (KIND_UUID, 16)
    u = uuid.UUID(hex=first["payload_hex"])
    assert encode_uuid(u) == bytes((first["kind"], 0, first["len"])) + bytes.fromhex(first["payload_hex"])


def test_dtmf_exact_bytes() -> None:
    assert encode_dtmf("1") == b"\x03\x00\x011"
    assert encode_dtmf("#") == b"\x03\x00\x01#"
    for digit in "0123456789*#ABCD":
        assert encode_dtmf(digit) == b"\x03\x00\x01" + digit.encode()


@pytest.mark.parametrize("digit", ["", "12", "E", "a", "d", " ", "١"])
def test_dtmf_rejects_non_digits(digit: str) -> None:
    with pytest.raises(ValueError):
        encode_dtmf(digit)


def test_encode_header_is_kind_and_big_endian_length() -> None:
    assert encode(0x13, bytes(960))[:3] == b"\x13\x03\xc0"
    assert encode(0x12, bytes(640))[:3] == b"\x12\x02\x80"
    assert encode(0x10, bytes(160))[:3] == b"\x10\x00\xa0"
    assert encode(KIND_HANGUP) == b"\x00\x00\x00"
    assert encode(0xFF, b"\x02") == b"\xff\x00\x01\x02"
    assert encode(0x10, bytes(MAX_PAYLOAD))[:3] == b"\x10\xff\xff"


def test_encode_limits() -> None:
    with pytest.raises(ValueError):
        encode(0x10, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(ValueError):
        encode(256)
    with pytest.raises(ValueError):
        encode(-1)


def test_encode_audio() -> None:
    assert encode_audio(KIND_SLIN24, b"\x01\x02") == b"\x13\x00\x02\x01\x02"
    assert encode_audio(KIND_SLIN, b"\xff" * 161)[:3] == b"\x10\x00\xa1"  # µ-law under 0x10 may be odd
    assert encode_audio(KIND_SLIN16, bytearray(b"\x00\x00")) == b"\x12\x00\x02\x00\x00"
    with pytest.raises(ValueError):
        encode_audio(KIND_SLIN24, b"")
    with pytest.raises(ValueError):
        encode_audio(KIND_DTMF, b"1")
    with pytest.raises(ValueError):
        encode_audio(KIND_SLIN, bytes(MAX_PAYLOAD + 1))


# ------------------------------------------------------------------------------ ServerStreamParser


def test_one_whole_frame() -> None:
    parser = ServerStreamParser()
    payload = bytes(range(256)) * 3 + bytes(192)
    assert parser.feed(encode(0x13, payload)) == [Frame(0x13, payload)]
    assert parser.frame_count == 1
    assert parser.buffered == 0
    assert not parser.closed


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_accepts_any_buffer_type(wrap: type) -> None:
    data = encode(0x12, b"\x01\x02" * 320) + encode(0x12, b"\x03\x04")
    for chunks in ([data], [data[:700], data[700:]], [data[:645]]):
        parser = ServerStreamParser()
        frames = feed_all(parser, [wrap(c) for c in chunks])
        assert all(type(f.payload) is bytes for f in frames)
        assert frames[0] == Frame(0x12, b"\x01\x02" * 320)


def test_every_audio_kind_is_accepted() -> None:
    data = b"".join(encode(kind, bytes((kind, 0))) for kind in sorted(AUDIO_KINDS))
    frames = ServerStreamParser().feed(data)
    assert frames == [Frame(kind, bytes((kind, 0))) for kind in sorted(AUDIO_KINDS)]


def test_fragmentation_byte_by_byte_equals_whole() -> None:
    data = encode(0x13, bytes(range(200)) * 4) + encode(0x10, b"\x05\x06" * 160) + encode(0x13, b"\x07\x08")
    whole = ServerStreamParser().feed(data)
    assert len(whole) == 3
    parser = ServerStreamParser()
    assert feed_all(parser, byte_by_byte(data)) == whole
    assert parser.buffered == 0


def test_header_split_across_feeds() -> None:
    parser = ServerStreamParser()
    frame = encode(0x13, bytes(960))
    assert parser.feed(frame[:1]) == []
    assert parser.feed(frame[1:2]) == []
    assert parser.buffered == 2
    assert parser.feed(frame[2:500]) == []
    assert parser.feed(frame[500:] + frame[:2]) == [Frame(0x13, bytes(960))]
    assert parser.buffered == 2
    assert parser.feed(frame[2:]) == [Frame(0x13, bytes(960))]


def test_hangup() -> None:
    parser = ServerStreamParser()
    assert parser.feed(HANGUP_MESSAGE) == [Frame(KIND_HANGUP, b"")]
    assert parser.closed
    assert parser.error is None
    assert parser.feed(encode(0x13, bytes(960))) == []  # nothing after a hangup is read
    assert parser.feed(b"\xff\xff\xff") == []


def test_hangup_ignores_its_length_field_and_everything_after() -> None:
    parser = ServerStreamParser()
    data = encode(0x10, b"\x01\x00") + b"\x00\x00\x05" + b"trash" + b"\x01\x00\x00"
    assert parser.feed(data) == [Frame(0x10, b"\x01\x00"), Frame(KIND_HANGUP, b"")]
    assert parser.closed
    assert parser.frame_count == 1


def test_hangup_needs_the_whole_header() -> None:
    parser = ServerStreamParser()
    assert parser.feed(b"\x00") == []
    assert parser.feed(b"\xff") == []
    assert not parser.closed
    assert parser.feed(b"\xff") == [Frame(KIND_HANGUP, b"")]


@pytest.mark.parametrize("kind", REJECTED_KINDS)
def test_rejected_kinds(kind: int) -> None:
    parser = ServerStreamParser()
    with pytest.raises(AudioSocketError) as caught:
        # Asterisk checks the kind right after the header: the payload never has to arrive.
        parser.feed(bytes((kind, 0x00, 0x10)))
    assert caught.value.reason == REASON_BAD_KIND
    assert caught.value.reason == "Received AudioSocket message other than hangup or audio"
    assert caught.value.kind == kind
    assert parser.closed
    with pytest.raises(AudioSocketError):
        parser.feed(encode(0x13, bytes(960)))  # a failed connection stays failed


@pytest.mark.parametrize("kind", [KIND_UUID, KIND_DTMF, KIND_ERROR, 0x02, 0x20])
def test_rejected_kinds_with_their_payloads(kind: int) -> None:
    with pytest.raises(AudioSocketError, match="other than hangup or audio"):
        ServerStreamParser().feed(encode(kind, b"1" * (16 if kind == KIND_UUID else 1)))


def test_zero_length_bad_kind_reports_the_kind() -> None:
    with pytest.raises(AudioSocketError) as caught:
        ServerStreamParser().feed(b"\x03\x00\x00")
    assert caught.value.reason == REASON_BAD_KIND


@pytest.mark.parametrize("kind", sorted(AUDIO_KINDS))
def test_zero_length_audio(kind: int) -> None:
    parser = ServerStreamParser()
    with pytest.raises(AudioSocketError) as caught:
        parser.feed(bytes((kind, 0, 0)))
    assert caught.value.reason == REASON_BAD_LENGTH == "Invalid message length"
    assert parser.closed


def test_error_keeps_frames_completed_before_it() -> None:
    parser = ServerStreamParser()
    good = encode(0x13, b"\x01\x02" * 4)
    with pytest.raises(AudioSocketError) as caught:
        parser.feed(good + good + b"\x03\x00\x011")
    assert caught.value.frames == [Frame(0x13, b"\x01\x02" * 4)] * 2
    assert parser.frame_count == 2


def test_odd_length_audio_drops_the_trailing_byte() -> None:
    parser = ServerStreamParser()
    frames = parser.feed(encode(0x10, b"\x01\x02\x03") + encode(0x13, b"\x09") + encode(0x12, b"\x01\x02"))
    assert frames == [Frame(0x10, b"\x01\x02"), Frame(0x13, b""), Frame(0x12, b"\x01\x02")]
    assert parser.odd_length_frames == 2
    # The fast path (one whole frame per feed) applies the same rule.
    parser = ServerStreamParser()
    assert parser.feed(encode(0x13, bytes(959))) == [Frame(0x13, bytes(958))]
    assert parser.odd_length_frames == 1


def test_max_payload() -> None:
    payload = bytes(range(256)) * 255 + bytes(255)
    assert len(payload) == MAX_PAYLOAD
    parser = ServerStreamParser()
    assert parser.feed(encode(0x16, payload)) == [Frame(0x16, payload[:-1])]
    assert parser.odd_length_frames == 1


def test_many_frames_in_one_feed_and_a_partial_tail() -> None:
    frame = encode(0x13, b"\x10\x00" * 480)
    parser = ServerStreamParser()
    frames = parser.feed(frame * 10 + frame[:100])
    assert len(frames) == 10
    assert parser.buffered == 100
    assert parser.feed(frame[100:]) == [Frame(0x13, b"\x10\x00" * 480)]


# ----------------------------------------------------------------------------------- reference model


def reference_parse(data: bytes) -> tuple[list[Frame], str | None]:
    """A deliberately naive transcription of res_audiosocket.c's receive loop, for comparison."""
    frames: list[Frame] = []
    pos = 0
    while len(data) - pos >= 3:
        kind, length = data[pos], int.from_bytes(data[pos + 1 : pos + 3], "big")
        if kind == 0x00:
            frames.append(Frame(0, b""))
            return frames, None
        if not 0x10 <= kind <= 0x18:
            return frames, REASON_BAD_KIND
        if length == 0:
            return frames, REASON_BAD_LENGTH
        if len(data) - pos - 3 < length:
            break
        payload = data[pos + 3 : pos + 3 + length]
        frames.append(Frame(kind, payload[: length // 2 * 2]))
        pos += 3 + length
    return frames, None


def run_split(data: bytes, cuts: list[int]) -> tuple[list[Frame], str | None]:
    parser = ServerStreamParser()
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    frames: list[Frame] = []
    try:
        for start, stop in zip(points, points[1:], strict=False):
            frames.extend(parser.feed(data[start:stop]))
    except AudioSocketError as error:
        return frames + error.frames, error.reason
    return frames, None


def assert_valid(frames: list[Frame]) -> None:
    for index, frame in enumerate(frames):
        assert isinstance(frame, Frame)
        assert type(frame.payload) is bytes
        if frame.kind == KIND_HANGUP:
            assert frame.payload == b""
            assert index == len(frames) - 1
        else:
            assert frame.kind in AUDIO_KINDS
            assert len(frame.payload) % 2 == 0


# Bytes biased towards interesting headers: audio kinds, hangup, small lengths.
interesting_bytes = st.lists(
    st.one_of(
        st.sampled_from([0x00, 0x01, 0x03, 0x10, 0x13, 0x18, 0x19, 0xFF]),
        st.integers(0, 255),
    ),
    max_size=300,
).map(bytes)


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(st.binary(max_size=400), interesting_bytes), cuts=st.lists(st.integers(0, 10_000)))
def test_fuzz_arbitrary_bytes_raise_or_yield_valid_frames(data: bytes, cuts: list[int]) -> None:
    parser = ServerStreamParser()
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    try:
        for start, stop in zip(points, points[1:], strict=False):
            assert_valid(parser.feed(data[start:stop]))
    except AudioSocketError as error:
        assert error.reason in (REASON_BAD_KIND, REASON_BAD_LENGTH)
        assert_valid(error.frames)
    # Whatever the split, the outcome is the reference model's.
    assert run_split(data, cuts) == reference_parse(data)


audio_frames = st.tuples(
    st.sampled_from(sorted(AUDIO_KINDS)),
    st.binary(min_size=1, max_size=1100),
)


@settings(max_examples=300, deadline=None)
@given(
    sent=st.lists(audio_frames, max_size=12),
    hangup=st.booleans(),
    trailing=st.binary(max_size=20),
    cuts=st.lists(st.integers(0, 20_000), max_size=30),
)
def test_valid_streams_round_trip_under_any_split(
    sent: list[tuple[int, bytes]], hangup: bool, trailing: bytes, cuts: list[int]
) -> None:
    data = b"".join(encode(kind, payload) for kind, payload in sent)
    expected = [Frame(kind, payload[: len(payload) // 2 * 2]) for kind, payload in sent]
    if hangup:
        data += HANGUP_MESSAGE + trailing
        expected.append(Frame(KIND_HANGUP, b""))
    assert run_split(data, cuts) == (expected, None)


@settings(max_examples=200, deadline=None)
@given(data=st.one_of(st.binary(max_size=200), interesting_bytes))
def test_fuzz_byte_by_byte_equals_whole(data: bytes) -> None:
    assert run_split(data, list(range(len(data)))) == run_split(data, [])


# ------------------------------------------------------------------------------ ClientStreamParser


U = uuid.UUID("590f1a45-4988-470e-b021-16a09e85ee34")


def test_client_parses_what_asterisk_sends() -> None:
    data = encode_uuid(U) + encode_dtmf("1") + encode_audio(KIND_SLIN24, bytes(960)) + encode_dtmf("#")
    data += encode_audio(KIND_SLIN24, bytes(72)) + encode_audio(KIND_SLIN, b"\xff" * 159)
    expected = [
        Frame(KIND_UUID, U.bytes),
        Frame(KIND_DTMF, b"1"),
        Frame(KIND_SLIN24, bytes(960)),
        Frame(KIND_DTMF, b"#"),
        Frame(KIND_SLIN24, bytes(72)),
        Frame(KIND_SLIN, b"\xff" * 159),
    ]
    parser = ClientStreamParser()
    assert parser.feed(data) == expected
    assert parser.uuid == U
    parser = ClientStreamParser()
    assert feed_all(parser, byte_by_byte(data)) == expected
    assert parser.uuid == U


@pytest.mark.parametrize(
    "data",
    [
        encode_audio(KIND_SLIN24, bytes(960)),  # audio before the UUID
        encode_dtmf("1"),
        encode(KIND_UUID, bytes(15)),  # short UUID
        encode(KIND_UUID, bytes(17)),
        HANGUP_MESSAGE,
    ],
)
def test_client_requires_a_uuid_first(data: bytes) -> None:
    parser = ClientStreamParser()
    with pytest.raises(AudioSocketError, match="first message must be a 16-byte UUID"):
        parser.feed(data)
    with pytest.raises(AudioSocketError):
        parser.feed(encode_uuid(U))


@pytest.mark.parametrize(
    ("tail", "match"),
    [
        (encode_uuid(U), "more than once"),
        (HANGUP_MESSAGE, "only UUID, DTMF and audio"),
        (encode(KIND_ERROR, b"\x01"), "only UUID, DTMF and audio"),
        (encode(0x02, b"\x01"), "only UUID, DTMF and audio"),
        (encode(KIND_DTMF, b"12"), "DTMF payload must be 1 byte"),
        (encode(KIND_DTMF, b"E"), "not a DTMF digit"),
        (encode(KIND_SLIN16, b""), REASON_BAD_LENGTH),
    ],
)
def test_client_rejects_what_asterisk_never_sends(tail: bytes, match: str) -> None:
    parser = ClientStreamParser()
    with pytest.raises(AudioSocketError, match=match) as caught:
        parser.feed(encode_uuid(U) + encode_dtmf("5") + tail)
    assert caught.value.frames == [Frame(KIND_UUID, U.bytes), Frame(KIND_DTMF, b"5")]


@settings(max_examples=150, deadline=None)
@given(
    u=st.uuids(),
    items=st.lists(
        st.one_of(
            st.sampled_from("0123456789*#ABCD").map(lambda d: (KIND_DTMF, d.encode())),
            st.tuples(st.sampled_from(sorted(AUDIO_KINDS)), st.binary(min_size=1, max_size=700)),
        ),
        max_size=10,
    ),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
)
def test_client_round_trip_under_any_split(
    u: uuid.UUID, items: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    data = encode_uuid(u) + b"".join(
        encode_dtmf(p.decode()) if k == KIND_DTMF else encode_audio(k, p) for k, p in items
    )
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    parser = ClientStreamParser()
    frames = feed_all(parser, [data[a:b] for a, b in zip(points, points[1:], strict=False)])
    assert frames == [Frame(KIND_UUID, u.bytes), *(Frame(k, p) for k, p in items)]
    assert parser.uuid == u


def test_client_parses_streams_rebuilt_from_real_traces() -> None:
    checked = 0
    for path in trace_paths():
        audiosocket = json.loads(path.read_text())["request"].get("audiosocket")
        if not audiosocket:
            continue
        logged = audiosocket["frames"]
        data = b"".join(
            encode(f["kind"], bytes.fromhex(f["payload_hex"]) if "payload_hex" in f else bytes(f["len"]))
            for f in logged
        )
        parser = ClientStreamParser()
        frames = feed_all(parser, [data[i : i + 1000] for i in range(0, len(data), 1000)])
        assert [(f.kind, len(f.payload)) for f in frames] == [(f["kind"], f["len"]) for f in logged], path
        assert parser.uuid == uuid.UUID(hex=logged[0]["payload_hex"])
        checked += 1
    assert checked >= 4
