"""The streaming resampler: rates to and from 24 kHz, state across chunks, odd byte counts, identity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from media.resample import AUDIOSOCKET_RATES, MODEL_RATE, StreamResampler
from wire.audiosocket import AUDIO_KIND_RATES

OTHER_RATES = [r for r in AUDIOSOCKET_RATES if r != MODEL_RATE]
PAIRS = [(r, MODEL_RATE) for r in OTHER_RATES] + [(MODEL_RATE, r) for r in OTHER_RATES]


def sine(freq: float, rate: int, seconds: float, amplitude: int = 10000) -> bytes:
    n = round(rate * seconds)
    return (np.sin(np.arange(n) * (2 * math.pi * freq / rate)) * amplitude).astype("<i2").tobytes()


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int64)


def zero_crossings(x: np.ndarray) -> int:
    signs = np.signbit(x)
    return int(np.count_nonzero(signs[1:] != signs[:-1]))


def run_chunked(resampler: StreamResampler, pcm: bytes, chunk: int) -> bytes:
    out = [resampler.process(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk)]
    return b"".join(out) + resampler.flush()


def test_rates_are_the_audiosocket_rates() -> None:
    assert sorted(AUDIOSOCKET_RATES) == sorted(AUDIO_KIND_RATES.values())
    assert MODEL_RATE == 24000


def test_1khz_at_8k_to_24k_keeps_frequency_and_length() -> None:
    pcm = sine(1000, 8000, 1.0)
    resampler = StreamResampler(8000, 24000)
    out = samples(run_chunked(resampler, pcm, 320))  # 20 ms frames, as AudioSocket delivers them
    assert abs(len(out) - 24000) <= 1
    # 1 kHz for one second: 2000 zero crossings (the filter's start and end transients cost a few).
    assert abs(zero_crossings(out[100:-100]) - 2000 * (len(out) - 200) / 24000) <= 4
    # The level is kept (a pure tone well below both Nyquist limits).
    rms_in = float(np.sqrt(np.mean(samples(pcm) ** 2)))
    rms_out = float(np.sqrt(np.mean(out[500:-500] ** 2)))
    assert rms_out == pytest.approx(rms_in, rel=0.02)


def test_chunked_equals_one_shot() -> None:
    pcm = sine(700, 16000, 0.8) + sine(1300, 16000, 0.4)
    whole = StreamResampler(16000, 24000)
    one_shot = samples(whole.process(pcm) + whole.flush())
    for chunk in (640, 2, 98, 4000):
        chunked = samples(run_chunked(StreamResampler(16000, 24000), pcm, chunk))
        assert len(chunked) == len(one_shot)
        assert int(np.max(np.abs(chunked - one_shot))) <= 2  # libsoxr's int16 rounding/dither only


def test_no_clicks_at_frame_boundaries() -> None:
    amplitude = 10000
    out = samples(run_chunked(StreamResampler(8000, 24000), sine(1000, 8000, 0.5, amplitude), 320))
    steady = out[300:-300]
    # The steepest step of a 1 kHz sine at 24 kHz is A·2π·1000/24000 ≈ 0.26·A; a click would exceed it.
    assert int(np.max(np.abs(np.diff(steady)))) <= 0.28 * amplitude


@pytest.mark.parametrize("chunk", [1, 3, 7, 321, 641])
def test_odd_byte_counts_carry_the_half_sample(chunk: int) -> None:
    pcm = sine(440, 8000, 0.3)
    reference = StreamResampler(8000, 24000)
    expected = samples(reference.process(pcm) + reference.flush())
    got = samples(run_chunked(StreamResampler(8000, 24000), pcm, chunk))
    assert len(got) == len(expected)
    assert int(np.max(np.abs(got - expected))) <= 2


def test_identity_when_rates_are_equal() -> None:
    resampler = StreamResampler(24000, 24000)
    assert resampler.identity
    frame = sine(1000, 24000, 0.02)
    assert resampler.process(frame) is frame  # no copy
    assert resampler.flush() == b""
    # Odd splits still come out whole samples, in order.
    assert resampler.process(frame[:5]) == frame[:4]
    assert resampler.process(frame[5:9]) == frame[4:8]
    assert resampler.process(frame[9:]) == frame[8:]
    assert resampler.process(b"\x01") == b""
    assert resampler.flush() == b""  # the half sample is dropped
    assert resampler.process(b"\x02\x03") == b"\x02\x03"


@pytest.mark.parametrize(("from_rate", "to_rate"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_audiosocket_rate_to_and_from_24k(from_rate: int, to_rate: int) -> None:
    seconds = 0.5
    freq = 440.0  # below every Nyquist limit involved
    pcm = sine(freq, from_rate, seconds)
    resampler = StreamResampler(from_rate, to_rate)
    assert not resampler.identity
    out = samples(run_chunked(resampler, pcm, from_rate // 50 * 2))  # 20 ms frames
    expected = len(pcm) // 2 * to_rate / from_rate
    assert abs(len(out) - expected) <= 1
    trim = to_rate // 100  # 10 ms of filter transient at each end
    body = out[trim:-trim]
    assert abs(zero_crossings(body) - 2 * freq * len(body) / to_rate) <= 3
    rms_in = float(np.sqrt(np.mean(samples(pcm) ** 2)))
    assert float(np.sqrt(np.mean(body**2))) == pytest.approx(rms_in, rel=0.03)


def test_flush_ends_a_stretch_and_the_stream_goes_on() -> None:
    pcm = sine(1000, 8000, 0.1)
    resampler = StreamResampler(8000, 24000)
    first = resampler.process(pcm)
    tail = resampler.flush()
    assert len(first) + len(tail) == 3 * len(pcm)
    assert tail  # the filter held samples back: without flush() they would be lost
    second = samples(resampler.process(pcm) + resampler.flush())
    fresh = StreamResampler(8000, 24000)
    assert int(np.max(np.abs(second - samples(fresh.process(pcm) + fresh.flush())))) <= 2


def test_reset_drops_pending_audio() -> None:
    resampler = StreamResampler(8000, 24000)
    resampler.process(sine(1000, 8000, 0.05) + b"\x01")
    resampler.reset()
    silence = bytes(1600)
    out = samples(resampler.process(silence) + resampler.flush())
    assert len(out) == 3 * 800
    assert int(np.max(np.abs(out))) <= 2  # nothing of the tone (or the carried byte) leaks through


def test_empty_input() -> None:
    resampler = StreamResampler(48000, 24000)
    assert resampler.process(b"") == b""
    assert resampler.flush() == b""


@pytest.mark.parametrize(
    ("from_rate", "to_rate", "quality"), [(0, 24000, "HQ"), (8000, -1, "HQ"), (8000, 24000, "XQ")]
)
def test_bad_arguments(from_rate: int, to_rate: int, quality: str) -> None:
    with pytest.raises(ValueError):
        StreamResampler(from_rate, to_rate, quality=quality)


@pytest.mark.parametrize("quality", ["QQ", "LQ", "MQ", "HQ", "VHQ"])
def test_every_quality_keeps_length(quality: str) -> None:
    pcm = sine(500, 16000, 0.2)
    out = run_chunked(StreamResampler(16000, 24000, quality=quality), pcm, 640)
    assert abs(len(out) // 2 - len(pcm) // 2 * 3 // 2) <= 1
