"""PCM helpers for the Realtime stand-in: tones, WAV parsing, resampling, and delta-sized base64 clips.

All PCM is 16-bit signed little-endian mono at 24 kHz (the Realtime GA ``audio/pcm`` format), passed
around as ``bytes``. Standard library only.

Why clips are pre-encoded: the stand-in runs beside the media benchmark with hundreds of connections, so a
reply is cut into delta-sized chunks and base64-encoded once, then the same strings are reused by every
response that says the same thing.
"""

from __future__ import annotations

import base64
import math
import struct
import sys
from array import array
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

RATE: Final = 24000
BYTES_PER_MS: Final = RATE * 2 // 1000  # 48: 24 samples of 2 bytes

_LITTLE_ENDIAN_HOST: Final = sys.byteorder == "little"


@dataclass(frozen=True, slots=True)
class AudioClip:
    """A reply's audio, cut into deltas: ``chunks[i]`` is the base64 of ``chunk_bytes[i]`` bytes of PCM."""

    chunks: tuple[str, ...]
    chunk_bytes: tuple[int, ...]

    @property
    def total_bytes(self) -> int:
        return sum(self.chunk_bytes)

    @property
    def duration_ms(self) -> float:
        return self.total_bytes / BYTES_PER_MS


def clip_from_pcm(pcm: bytes, delta_ms: int) -> AudioClip:
    """Cut ``pcm`` into ``delta_ms`` pieces (the last may be shorter, never empty) and encode them.

    The audio is padded with silence to a whole millisecond, so "audio sent" is an exact number of ms and a
    client that clamps a truncation to the whole milliseconds it received never overshoots by a fraction.
    """
    if delta_ms <= 0:
        raise ValueError(f"delta_ms must be positive, got {delta_ms}")
    if len(pcm) % BYTES_PER_MS:
        pcm = pcm[: len(pcm) - len(pcm) % 2] + bytes(-(len(pcm) // 2 * 2) % BYTES_PER_MS)
    step = delta_ms * BYTES_PER_MS
    pieces = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    return AudioClip(
        chunks=tuple(base64.b64encode(p).decode("ascii") for p in pieces),
        chunk_bytes=tuple(len(p) for p in pieces),
    )


def _to_le_bytes(samples: array[int]) -> bytes:
    if not _LITTLE_ENDIAN_HOST:
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def _from_le_bytes(pcm: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if not _LITTLE_ENDIAN_HOST:
        samples.byteswap()
    return samples


@lru_cache(maxsize=32)
def tone(freq_hz: float, ms: int, amplitude: int = 8000, fade_ms: int = 0) -> bytes:
    """A sine of ``ms`` milliseconds at 24 kHz, optionally with linear fades (no clicks between notes)."""
    n = ms * RATE // 1000
    w = 2 * math.pi * freq_hz / RATE
    samples = array("h", [int(amplitude * math.sin(w * i)) for i in range(n)])
    fade = min(fade_ms * RATE // 1000, n // 2)
    for i in range(fade):
        samples[i] = samples[i] * i // fade
        samples[n - 1 - i] = samples[n - 1 - i] * i // fade
    return _to_le_bytes(samples)


def silence(ms: int) -> bytes:
    return bytes(ms * BYTES_PER_MS)


# A C-major arpeggio: recognisably "someone is talking" to a listener, and clearly not the test tone.
_PATTERN_NOTES_HZ: Final = (523.25, 659.25, 783.99, 659.25)
_PATTERN_NOTE_MS: Final = 180
_PATTERN_GAP_MS: Final = 40
PATTERN_MS_PER_CHAR: Final = 60
PATTERN_MIN_MS: Final = 600
PATTERN_MAX_MS: Final = 8000


def pattern_ms(text: str) -> int:
    """How long the tone pattern standing for ``text`` lasts: ~60 ms per character, clamped."""
    return max(PATTERN_MIN_MS, min(PATTERN_MAX_MS, PATTERN_MS_PER_CHAR * len(text.strip())))


@lru_cache(maxsize=64)
def tone_pattern(ms: int, amplitude: int = 6000) -> bytes:
    """A pleasant note pattern of exactly ``ms`` milliseconds: notes with short gaps, concatenated."""
    target = ms * BYTES_PER_MS
    notes = [
        tone(f, _PATTERN_NOTE_MS, amplitude, fade_ms=10) + silence(_PATTERN_GAP_MS) for f in _PATTERN_NOTES_HZ
    ]
    out = bytearray()
    i = 0
    while len(out) < target:
        out += notes[i % len(notes)]
        i += 1
    return bytes(out[:target])


class WavError(ValueError):
    """The bytes are not a 16-bit PCM WAV we can read."""


def parse_wav(data: bytes) -> tuple[bytes, int, int]:
    """Return ``(pcm, rate, channels)`` of a 16-bit PCM RIFF/WAVE file.

    Written by hand rather than with :mod:`wave` because ``espeak-ng --stdout`` streams its WAV: the header's
    sizes are placeholders, so the data chunk is taken to run to the end of the bytes we have.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    pos = 12
    rate = channels = bits = 0
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise WavError("short fmt chunk")
            fmt_tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", data, body)
            if fmt_tag not in (1, 0xFFFE) or bits != 16:
                raise WavError(f"only 16-bit PCM is supported (format {fmt_tag}, {bits} bits)")
        elif chunk_id == b"data":
            if not rate:
                raise WavError("data chunk before fmt chunk")
            end = min(len(data), body + size)
            return data[body:end], rate, channels
        pos = body + size + (size & 1)
    raise WavError("no data chunk")


def to_mono(pcm: bytes, channels: int) -> bytes:
    if channels <= 1:
        return pcm
    samples = _from_le_bytes(pcm)
    mono = array("h", [sum(samples[i : i + channels]) // channels for i in range(0, len(samples), channels)])
    return _to_le_bytes(mono)


def resample(pcm: bytes, from_rate: int, to_rate: int = RATE) -> bytes:
    """Linear-interpolation resampling with integer positions (good enough for synthetic speech)."""
    if from_rate == to_rate or not pcm:
        return pcm
    src = _from_le_bytes(pcm)
    n_src = len(src)
    if n_src < 2:
        return pcm
    n_out = n_src * to_rate // from_rate
    out = array("h", bytes(2 * n_out))
    last = n_src - 1
    for j in range(n_out):
        num = j * from_rate
        i, rem = divmod(num, to_rate)
        if i >= last:
            out[j] = src[last]
            continue
        a = src[i]
        out[j] = a + (src[i + 1] - a) * rem // to_rate
    return _to_le_bytes(out)
