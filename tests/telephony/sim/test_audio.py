"""Audio helpers of the simulated callees: formats, G.711, synthesis, WAV, framing, and the HeardMeter."""

from __future__ import annotations

import json
import wave
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.sim.audio import (
    FORMATS,
    HeardMeter,
    MediaFormat,
    alaw_decode,
    alaw_encode,
    beep,
    encode_for,
    frames,
    load_wav,
    phrase,
    phrase_ms,
    resample,
    silence,
    tone,
    ulaw_decode,
    ulaw_encode,
)
from wire.audiosocket import AUDIO_KIND_RATES

RATES = [8000, 12000, 16000, 24000, 32000, 48000]


def pcm(samples: list[int]) -> bytes:
    return array("h", samples).tobytes()


def samples_of(data: bytes) -> list[int]:
    out = array("h")
    out.frombytes(data)
    return out.tolist()


def zero_crossings(data: bytes) -> int:
    values = samples_of(data)
    return sum(1 for a, b in zip(values, values[1:], strict=False) if (a < 0) != (b < 0))


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# --------------------------------------------------------------------------------------------- formats


def test_formats() -> None:
    expected = {
        "slin": (0x10, 8000, 320, False),
        "slin12": (0x11, 12000, 480, False),
        "slin16": (0x12, 16000, 640, False),
        "slin24": (0x13, 24000, 960, False),
        "slin32": (0x14, 32000, 1280, False),
        "slin48": (0x16, 48000, 1920, False),
        "ulaw": (0x10, 8000, 160, True),  # µ-law rides under 0x10, 160 bytes (trace)
    }
    for name, (kind, rate, frame_bytes, ulaw) in expected.items():
        fmt = FORMATS[name]
        assert (fmt.name, fmt.kind, fmt.rate, fmt.frame_bytes, fmt.ulaw) == (
            name,
            kind,
            rate,
            frame_bytes,
            ulaw,
        )
    assert FORMATS["alaw"].kind == 0x10 and FORMATS["alaw"].alaw and FORMATS["alaw"].frame_bytes == 160
    for fmt in FORMATS.values():
        # 20 ms per frame, and the kind's receive rate matches for every slin format.
        assert fmt.frame_bytes * 1000 // fmt.bytes_per_second == 20
        if not fmt.companded:
            assert AUDIO_KIND_RATES[fmt.kind] == fmt.rate


# ------------------------------------------------------------------------------------------------ G.711


def asterisk_ulaw_table() -> bytes:
    """Asterisk's ulaw.c (default algorithm): linear2ulaw() filling __ast_lin2mu[(unsigned short)i >> 2]."""
    exp_lut = [0, 0] + [1] * 2 + [2] * 4 + [3] * 8 + [4] * 16 + [5] * 32 + [6] * 64 + [7] * 128

    def linear2ulaw(sample: int) -> int:
        sign = 0x80 if sample < 0 else 0
        if sign:
            sample = -sample
        sample = min(sample, 32635) + 0x84
        exponent = exp_lut[(sample >> 7) & 0xFF]
        mantissa = (sample >> (exponent + 3)) & 0x0F
        return ~(sign | (exponent << 4) | mantissa) & 0xFF

    table = bytearray(16384)
    for i in range(-32768, 32768):
        table[(i & 0xFFFF) >> 2] = linear2ulaw(i)
    return bytes(table[(i & 0xFFFF) >> 2] for i in range(-32768, 32768))


def asterisk_mulaw(code: int) -> int:
    mu = 255 - code
    e, f = (mu & 0x70) // 16, mu & 0x0F
    y = f * (1 << (e + 3)) + [0, 132, 396, 924, 1980, 4092, 8316, 16764][e]
    return -y if mu & 0x80 else y


ALL_SAMPLES = pcm(list(range(-32768, 32768)))


def test_ulaw_known_code_points() -> None:
    assert ulaw_encode(pcm([0])) == b"\xff"
    assert ulaw_encode(pcm([1, 2, 3])) == b"\xff\xff\xff"
    assert ulaw_encode(pcm([-1, -4])) == b"\x7f\x7f"  # one's complement: -1..-4 are "negative zero"
    assert ulaw_encode(pcm([-5, -8])) == b"\x7e\x7e"
    assert ulaw_encode(pcm([32767, -32768])) == b"\x80\x00"
    assert ulaw_encode(pcm([32124, -32124])) == b"\x80\x00"
    assert samples_of(ulaw_decode(b"\xff\x7f\x80\x00\xfe")) == [0, 0, 32124, -32124, 8]


def test_ulaw_matches_asterisk_tables_for_every_sample() -> None:
    assert ulaw_encode(ALL_SAMPLES) == asterisk_ulaw_table()
    assert samples_of(ulaw_decode(bytes(range(256)))) == [asterisk_mulaw(c) for c in range(256)]


def test_ulaw_round_trip_error_bounds() -> None:
    decoded = samples_of(ulaw_decode(ulaw_encode(ALL_SAMPLES)))
    for x, y in zip(range(-32768, 32768), decoded, strict=True):
        if abs(x) > 32124:
            assert abs(y) == 32124  # beyond the last decision level: clipped
            continue
        magnitude = abs(x) + 132
        step = 8 << max(0, magnitude.bit_length() - 8)  # the µ-law step of this segment
        assert abs(x - y) <= step // 2 + 4, (x, y)
        assert (x < 0 and y <= 0) or (x >= 0 and y >= 0)


def test_ulaw_codes_are_stable() -> None:
    codes = bytes(range(256))
    expected = bytearray(codes)
    expected[0x7F] = 0xFF  # the two zeros collapse to +0
    assert ulaw_encode(ulaw_decode(codes)) == bytes(expected)


def test_alaw_code_points_and_stability() -> None:
    assert alaw_encode(pcm([0, -1, 32767, -32768])) == b"\xd5\x55\xaa\x2a"
    assert samples_of(alaw_decode(b"\xd5\x55\xaa\x2a")) == [8, -8, 32256, -32256]
    codes = bytes(range(256))
    assert alaw_encode(alaw_decode(codes)) == codes
    decoded = samples_of(alaw_decode(alaw_encode(ALL_SAMPLES)))
    assert max(abs(x - y) for x, y in zip(range(-32768, 32768), decoded, strict=True)) <= 512


def test_encoder_tables_equal_the_per_sample_g191_formulas() -> None:
    from telephony.sim import audio

    # The tables are built from one code per 4 (µ-law) or 16 (a-law) samples; that shortcut must be exact.
    # Index order is the unsigned sample: 0..32767, then -32768..-1.
    order = [*range(0, 32768), *range(-32768, 0)]
    assert audio._ULAW_ENC == bytes(audio._ulaw_compress(x) for x in order)
    assert audio._ALAW_ENC == bytes(audio._alaw_compress(x) for x in order)


def test_g711_buffers() -> None:
    speech = phrase("buffers of speech", 8000)
    assert len(ulaw_encode(speech)) == len(speech) // 2
    assert ulaw_encode(speech + b"\x01") == ulaw_encode(speech)  # a trailing odd byte is ignored
    assert ulaw_encode(bytearray(speech)) == ulaw_encode(memoryview(speech))
    assert ulaw_encode(b"") == b"" and ulaw_decode(b"") == b""
    assert ulaw_encode(silence(20, 8000)) == b"\xff" * 160  # as in the real ulaw trace


# -------------------------------------------------------------------------------------------- synthesis


@pytest.mark.parametrize("rate", RATES)
def test_silence(rate: int) -> None:
    assert silence(20, rate) == bytes(rate // 50 * 2)
    assert silence(0, rate) == b""
    with pytest.raises(ValueError):
        silence(-1, rate)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("freq", [300.0, 440.0, 1000.0])
def test_tone_frequency_and_level(rate: int, freq: float) -> None:
    data = tone(freq, 1000, rate, amplitude=10000)
    assert len(data) == 2 * rate
    values = samples_of(data)
    assert 9900 <= max(values) <= 10000 and -10000 <= min(values) <= -9900
    # Two sign changes per cycle.
    assert abs(zero_crossings(data) - 2 * freq) <= 2


def test_tone_validation() -> None:
    with pytest.raises(ValueError):
        tone(440, 100, 8000, amplitude=40000)
    with pytest.raises(ValueError):
        tone(440, 100, 0)


@pytest.mark.parametrize("rate", [8000, 24000])
def test_beep(rate: int) -> None:
    data = beep(rate)
    assert len(data) == rate  # 500 ms of 16-bit samples
    assert abs(zero_crossings(data) - 1000) <= 2


def voiced_runs(data: bytes, rate: int, threshold: int = 300) -> list[int]:
    """Lengths (in 20 ms frames) of runs of frames whose peak exceeds the threshold."""
    runs: list[int] = []
    current = 0
    for frame in chunks(data, rate // 50 * 2):
        if max(abs(v) for v in samples_of(frame)) > threshold:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return runs


def test_phrase_is_deterministic() -> None:
    a = phrase("Hello, this is your reminder.", 24000, seed=3)
    assert a == phrase("Hello, this is your reminder.", 24000, seed=3)
    assert a != phrase("Hello, this is your reminder.", 24000, seed=4)
    assert a != phrase("Hello, this is your reminder!", 24000, seed=3)


def test_phrase_duration_scales_with_text() -> None:
    assert phrase_ms("hello") == 325
    assert phrase_ms("hi") == 300  # clamped up
    assert phrase_ms("x" * 1000) == 20_000  # clamped down
    assert phrase_ms("  padded  ") == 65 * 6
    for rate in RATES:
        for text in ("hi", "hello there", "a much longer sentence than the others, with commas."):
            assert len(phrase(text, rate)) == 2 * round(phrase_ms(text) * rate / 1000)
    assert len(phrase("one two three four five", 8000)) > len(phrase("one two", 8000))
    assert len(phrase("word " * 400, 8000)) == 2 * 20 * 8000
    assert len(phrase("", 8000)) == 2 * 300 * 8


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_phrase_looks_like_speech_to_an_energy_vad(rate: int) -> None:
    text = "one two three four five"
    data = phrase(text, rate, amplitude=8000)
    values = samples_of(data)
    assert max(abs(v) for v in values) <= 8000
    runs = voiced_runs(data, rate)
    assert len(runs) == 5  # one run of voiced frames per word, silence in between
    total_frames = len(data) // (rate // 50 * 2)
    assert sum(runs) >= 0.6 * total_frames
    # Pitched like a voice: the dominant periodicity of a voiced stretch is 100-250 Hz.
    stretch = values[len(values) // 10 : len(values) // 10 + rate // 20]
    lags = range(rate // 250, rate // 100 + 1)
    best = max(lags, key=lambda lag: sum(a * b for a, b in zip(stretch, stretch[lag:], strict=False)))
    assert 100 <= rate / best <= 250


def test_phrase_sentences_make_separate_spurts() -> None:
    rate = 8000
    size = rate // 50 * 2

    def spurts(text: str) -> int:
        meter = HeardMeter()
        for index, frame in enumerate(chunks(phrase(text, rate), size)):
            meter.add(0x10, frame, index * 0.02)
        return len(meter.snapshot()["spurts"])

    assert spurts("one two three four") == 1  # word gaps are shorter than 200 ms
    assert spurts("Hello there. How are you doing today?") == 2


def test_phrase_structure_does_not_depend_on_rate() -> None:
    text = "Press one to confirm."
    assert voiced_runs(phrase(text, 8000), 8000) == voiced_runs(phrase(text, 48000), 48000)


# -------------------------------------------------------------------------------------------- resample


def test_resample_lengths_and_identity() -> None:
    frame16 = tone(440, 20, 16000)
    assert resample(frame16, 16000, 16000) == frame16
    assert len(resample(frame16, 16000, 24000)) == 960
    assert len(resample(tone(440, 20, 24000), 24000, 16000)) == 640
    assert len(resample(tone(440, 20, 44100), 44100, 8000)) == 320
    assert resample(b"", 8000, 24000) == b""
    assert resample(b"\x01\x00\x02", 8000, 8000) == b"\x01\x00"  # the odd byte is dropped
    with pytest.raises(ValueError):
        resample(frame16, 0, 8000)


def test_resample_preserves_constant_and_frequency() -> None:
    assert set(samples_of(resample(pcm([1234] * 800), 8000, 24000))) == {1234}
    assert set(samples_of(resample(pcm([-77] * 2400), 24000, 8000))) == {-77}
    up = resample(tone(440, 1000, 8000), 8000, 24000)
    assert len(up) == 48000
    assert abs(zero_crossings(up) - 880) <= 4
    down = resample(tone(440, 1000, 48000), 48000, 16000)
    assert abs(zero_crossings(down) - 880) <= 4


def test_resample_interpolates_linearly() -> None:
    assert samples_of(resample(pcm([0, 300]), 8000, 24000)) == [0, 100, 200, 300, 300, 300]


# ------------------------------------------------------------------------------------------------- WAV


def write_wav(path: Path, rate: int, width: int, channels: int, frames_data: bytes) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frames_data)
    return path


def test_load_wav_mono_16bit(tmp_path: Path) -> None:
    data = tone(440, 100, 8000)
    assert load_wav(write_wav(tmp_path / "a.wav", 8000, 2, 1, data), 8000) == data
    assert len(load_wav(tmp_path / "a.wav", 24000)) == 3 * len(data)
    assert len(load_wav(str(tmp_path / "a.wav"), 16000)) == 2 * len(data)


def test_load_wav_stereo_is_averaged(tmp_path: Path) -> None:
    interleaved = pcm([1000, -1000, 1000, 3000, -32768, -32768, 32767, 32767])
    path = write_wav(tmp_path / "s.wav", 16000, 2, 2, interleaved)
    assert samples_of(load_wav(path, 16000)) == [0, 2000, -32768, 32767]


def test_load_wav_8bit_unsigned(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "u8.wav", 8000, 1, 1, bytes([128, 255, 0, 129]))
    assert samples_of(load_wav(path, 8000)) == [0, 127 * 256, -32768, 256]


def test_load_wav_24bit(tmp_path: Path) -> None:
    raw = b"".join(v.to_bytes(3, "little", signed=True) for v in (0, 0x123456, -0x123456, -1))
    path = write_wav(tmp_path / "s24.wav", 8000, 3, 1, raw)
    assert samples_of(load_wav(path, 8000)) == [0, 0x1234, (-0x123456) >> 8, -1]


# ----------------------------------------------------------------------------------------- framing


def test_encode_for() -> None:
    speech = phrase("encode me", 8000)
    assert encode_for(FORMATS["slin"], speech) == speech
    assert encode_for(FORMATS["ulaw"], speech) == ulaw_encode(speech)
    assert encode_for(FORMATS["alaw"], speech) == alaw_encode(speech)


def test_frames_last_chunk_rule() -> None:
    slin24, ulaw = FORMATS["slin24"], FORMATS["ulaw"]
    assert [len(f) for f in frames(slin24, bytes(2 * 960 + 72))] == [960, 960, 72]  # as in the trace
    assert [len(f) for f in frames(FORMATS["slin16"], bytes(640 + 48))] == [640, 48]
    assert [len(f) for f in frames(slin24, bytes(3 * 960))] == [960] * 3
    assert [len(f) for f in frames(ulaw, bytes(161))] == [160, 1]  # µ-law may end odd
    assert frames(slin24, b"") == []
    with pytest.raises(ValueError):
        frames(slin24, bytes(961))
    data = phrase("content is kept in order", 24000)
    assert b"".join(frames(slin24, data)) == data


@settings(max_examples=100, deadline=None)
@given(samples=st.integers(0, 5000), name=st.sampled_from(sorted(FORMATS)))
def test_frames_property(samples: int, name: str) -> None:
    fmt: MediaFormat = FORMATS[name]
    audio = bytes(samples if fmt.companded else 2 * samples)
    parts = frames(fmt, audio)
    assert b"".join(parts) == audio
    assert all(len(p) == fmt.frame_bytes for p in parts[:-1])
    assert all(0 < len(p) <= fmt.frame_bytes for p in parts)
    if not fmt.companded:
        assert all(len(p) % 2 == 0 for p in parts)


# -------------------------------------------------------------------------------------------- HeardMeter

VOICED = tone(440, 20, 24000, amplitude=5000)
QUIET = bytes(960)


def feed(meter: HeardMeter, pattern: str, start: float = 0.0, step: float = 0.02) -> float:
    """'v' = a voiced 20 ms slin24 frame, 's' = a silent one, '_' = 20 ms with no frame at all."""
    now = start
    for symbol in pattern:
        if symbol != "_":
            meter.add(0x13, VOICED if symbol == "v" else QUIET, now)
        now += step
    return now


def test_meter_counts_voiced_and_silent_ms() -> None:
    meter = HeardMeter()
    feed(meter, "v" * 50 + "s" * 25)
    snap = meter.snapshot()
    assert snap["heard_ms"] == 1000.0
    assert snap["received_ms"] == 1500.0
    assert snap["frames"] == 75 and snap["voiced_frames"] == 50
    assert snap["first_voiced_at"] == 0.0
    assert snap["last_voiced_at"] == pytest.approx(0.98)
    assert snap["spurts"] == [[0.0, pytest.approx(1.0)]]
    json.dumps(snap)


def test_meter_rates_per_kind() -> None:
    meter = HeardMeter()
    meter.add(0x10, bytes(320), 0.0)  # 0x10 on receive is always 8 kHz slin: 20 ms
    meter.add(0x12, bytes(640), 0.02)
    meter.add(0x16, bytes(1920), 0.04)
    meter.add(0x13, bytes(72), 0.06)  # a short last frame: 1.5 ms
    assert meter.snapshot()["received_ms"] == 61.5
    assert meter.snapshot()["kinds"] == {"0x10": 1, "0x12": 1, "0x13": 1, "0x16": 1}
    assert meter.heard_ms == 0.0
    with pytest.raises(ValueError):
        meter.add(0x03, b"1", 0.1)


@pytest.mark.parametrize(
    ("peak", "voiced"),
    [(300, False), (-300, False), (301, True), (-301, True), (32767, True), (-32768, True), (1, False)],
)
def test_meter_threshold(peak: int, voiced: bool) -> None:
    meter = HeardMeter()
    frame = pcm([0] * 100 + [peak] + [0] * 379)
    meter.add(0x13, frame, 0.0)
    assert (meter.voiced_frames == 1) is voiced
    assert HeardMeter(threshold=0).is_voiced(pcm([0, 0, -1])) is True
    assert HeardMeter(threshold=0).is_voiced(pcm([0, 0, 0])) is False


def test_meter_spurts_end_after_200ms_of_silent_frames() -> None:
    meter = HeardMeter()
    feed(meter, "v" * 10 + "s" * 9 + "v" * 10)  # 180 ms of silence: one spurt
    assert meter.snapshot()["spurts"] == [[0.0, pytest.approx(0.58)]]
    meter = HeardMeter()
    feed(meter, "v" * 10 + "s" * 10 + "v" * 10)  # 200 ms: two spurts
    assert meter.snapshot()["spurts"] == [[0.0, pytest.approx(0.2)], [pytest.approx(0.4), pytest.approx(0.6)]]
    assert len(meter.spurts) == 1  # the second one is still open
    assert meter.spurts[0][0] == 0.0
    assert meter.spurts[0][1] == pytest.approx(0.2)


def test_meter_spurts_end_on_gaps_between_frames() -> None:
    meter = HeardMeter()
    feed(meter, "v" * 10 + "_" * 9 + "v" * 10)  # 180 ms without frames
    assert len(meter.snapshot()["spurts"]) == 1
    meter = HeardMeter()
    feed(meter, "v" * 10 + "_" * 10 + "v" * 10)  # 200 ms without frames
    assert len(meter.snapshot()["spurts"]) == 2
    meter = HeardMeter()
    feed(meter, "v" * 10 + "s_s_s__s__" + "v")  # silent frames and gaps add up to 200 ms
    assert len(meter.snapshot()["spurts"]) == 2


def test_meter_lays_bursts_end_to_end() -> None:
    meter = HeardMeter()
    feed(meter, "v" * 50, start=5.0, step=0.0)  # an unpaced server: one second of audio at once
    feed(meter, "v" * 50, start=6.0, step=0.0)
    snap = meter.snapshot()
    assert snap["heard_ms"] == 2000.0
    assert snap["spurts"] == [[5.0, pytest.approx(7.0)]]
    assert snap["first_voiced_at"] == 5.0 and snap["last_voiced_at"] == 6.0


def test_meter_silence_only() -> None:
    meter = HeardMeter()
    feed(meter, "s" * 100)
    snap = meter.snapshot()
    assert snap["heard_ms"] == 0.0 and snap["received_ms"] == 2000.0
    assert snap["spurts"] == [] and snap["first_voiced_at"] is None
    assert HeardMeter().snapshot()["frames"] == 0


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.integers(-32768, 32767), max_size=64),
    threshold=st.one_of(st.sampled_from([0, 1, 255, 256, 300, 511, 512, 32767]), st.integers(0, 32767)),
    scale=st.sampled_from([1, 2, 8, 256, 700]),
    odd=st.booleans(),
)
def test_is_voiced_is_exact(values: list[int], threshold: int, scale: int, odd: bool) -> None:
    # Most values small (around the threshold's neighbourhood), some spanning the full range.
    values = [v // (32768 // scale) for v in values] if scale < 700 else values
    payload = pcm(values) + (b"\x7f" if odd else b"")
    assert HeardMeter(threshold=threshold).is_voiced(payload) is any(abs(v) > threshold for v in values)


def test_meter_validation() -> None:
    with pytest.raises(ValueError):
        HeardMeter(threshold=-1)
    with pytest.raises(ValueError):
        HeardMeter(threshold=32768)
