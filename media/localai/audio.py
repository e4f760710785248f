"""Audio for the Realtime stand-in: delta-sized base64 clips and the tone pattern that stands for speech.

All PCM is 16-bit signed little-endian mono at 24 kHz (the Realtime GA ``audio/pcm`` format), passed
around as ``bytes``. Standard library only.

Why clips are pre-encoded: the stand-in runs beside the media benchmark with hundreds of connections, so a
reply is cut into delta-sized chunks and base64-encoded once, then the same strings are reused by every
response that says the same thing.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from media.pcm import BYTES_PER_MS, RATE, WavError, parse_wav, resample, silence, to_mono, tone

__all__ = [
    "BYTES_PER_MS",
    "RATE",
    "AudioClip",
    "WavError",
    "clip_from_pcm",
    "parse_wav",
    "pattern_ms",
    "resample",
    "silence",
    "to_mono",
    "tone",
    "tone_pattern",
]


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
