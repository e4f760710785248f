"""Energy-based emulation of the Realtime API's server VAD (sans-I/O).

Feed it PCM as it is appended; it answers with speech start/stop transitions stamped in the input buffer's
own timeline (milliseconds of audio appended so far), which is what ``audio_start_ms``/``audio_end_ms`` mean
in the real API.

Cost matters (hundreds of connections at 50 appends/s each): the RMS of a 20 ms chunk is computed by
``math.hypot`` over a C-level strided memoryview of every 4th sample, so no Python loop runs per sample.
"""

from __future__ import annotations

import math
import sys
from array import array
from dataclasses import dataclass
from typing import Final, Literal

CHUNK_MS: Final = 20
RATE: Final = 24000
_CHUNK_SAMPLES: Final = RATE * CHUNK_MS // 1000
_CHUNK_BYTES: Final = 2 * _CHUNK_SAMPLES
# Every 4th sample (6 kHz effective) is plenty to tell speech-level energy from silence.
_STRIDE: Final = 4
_LITTLE_ENDIAN_HOST: Final = sys.byteorder == "little"


def rms_threshold_for(threshold: float) -> float:
    """Map the API's 0..1 ``threshold`` to an RMS level: 0.5 (the default) → 500."""
    return 1000.0 * threshold


@dataclass(frozen=True, slots=True)
class VadTransition:
    kind: Literal["started", "stopped"]
    ms: int  # audio_start_ms for "started", audio_end_ms for "stopped"


def chunk_rms(chunk: bytes | memoryview) -> float:
    """RMS of a chunk of 16-bit little-endian PCM, estimated from every 4th sample."""
    if _LITTLE_ENDIAN_HOST:
        samples: memoryview | array[int] = memoryview(chunk).cast("h")[::_STRIDE]
    else:
        swapped = array("h", bytes(chunk))
        swapped.byteswap()
        samples = swapped[::_STRIDE]
    n = len(samples)
    if not n:
        return 0.0
    return math.hypot(*samples) / math.sqrt(n)


class EnergyVad:
    """Speech starts after ``min_speech_ms`` of loud chunks and stops after ``silence_ms`` of quiet ones."""

    def __init__(self, *, rms_threshold: float, silence_ms: int, min_speech_ms: int = 60) -> None:
        self.rms_threshold = rms_threshold
        self.silence_ms = silence_ms
        self.min_speech_ms = min_speech_ms
        self._pending = b""
        self._samples = 0  # complete samples seen so far: the timeline
        self.in_speech = False
        self._run_start: int | None = None  # first sample of the current loud run (before speech starts)
        self._last_voiced_end = 0  # sample just after the last loud chunk
        # Compare hypot(*x) against threshold·sqrt(n) rather than dividing per chunk.
        self._limit = rms_threshold * math.sqrt(len(range(0, _CHUNK_SAMPLES, _STRIDE)))

    @property
    def timeline_ms(self) -> int:
        return self._samples * 1000 // RATE

    def reset(self) -> None:
        """Forget any speech in progress (``input_audio_buffer.clear``); the timeline keeps running."""
        self.in_speech = False
        self._run_start = None

    def feed(self, pcm: bytes) -> list[VadTransition]:
        if self._pending:
            pcm = self._pending + pcm
        usable = len(pcm) - len(pcm) % _CHUNK_BYTES
        self._pending = pcm[usable:]
        if not usable:
            return []
        out: list[VadTransition] = []
        view = memoryview(pcm)
        little = _LITTLE_ENDIAN_HOST
        limit = self._limit
        for offset in range(0, usable, _CHUNK_BYTES):
            chunk = view[offset : offset + _CHUNK_BYTES]
            if little:
                loud = math.hypot(*chunk.cast("h")[::_STRIDE]) > limit
            else:
                loud = chunk_rms(chunk) > self.rms_threshold
            start = self._samples
            end = start + _CHUNK_SAMPLES
            self._samples = end
            if not self.in_speech:
                if not loud:
                    self._run_start = None
                    continue
                if self._run_start is None:
                    self._run_start = start
                self._last_voiced_end = end
                if (end - self._run_start) * 1000 >= self.min_speech_ms * RATE:
                    self.in_speech = True
                    out.append(VadTransition("started", self._run_start * 1000 // RATE))
            elif loud:
                self._last_voiced_end = end
            elif (end - self._last_voiced_end) * 1000 >= self.silence_ms * RATE:
                self.in_speech = False
                self._run_start = None
                out.append(VadTransition("stopped", self._last_voiced_end * 1000 // RATE))
        return out
