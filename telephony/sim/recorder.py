"""The mixed audio of a bridge recording: what every member of the bridge hears, into one mono track.

Asterisk's bridge recording (``POST /bridges/{id}/record``) joins a Recorder channel to the bridge, so the
file holds the bridge's mix: the callee, the AI agent (the AudioSocket leg's audio), a human after a transfer,
playbacks into the bridge. The simulator does the same from the two places audio exists in it:

* a talking party or a bridge playback (:class:`~telephony.sim.media.Speaker`): the media clock hands each due
  20 ms frame to every recorder of the bridges it plays into, placed by the clock's grid;
* what an AudioSocket leg sends (the agent): placed at its arrival time, one frame after the other (a burst is
  laid end to end, as the bridge's jitter buffer would play it).

Samples are 16-bit signed, mixed by addition with clipping, at the recording format's rate (8 kHz for ``wav``,
16 kHz for ``wav16`` and ``sln16``).
"""

from __future__ import annotations

import io
import sys
import wave
from array import array
from typing import Final

from . import audio

_BIG_ENDIAN: Final = sys.byteorder == "big"
#: An AudioSocket source silent for longer than this starts again at its arrival time (a new utterance).
SOURCE_GAP_S: Final = 0.1
#: The longest recording the simulator keeps in memory (samples beyond are dropped).
MAX_SECONDS: Final = 3600

#: Stored format -> sample rate of the mix; the file the simulator serves for it.
FORMAT_RATES: Final[dict[str, int]] = {
    "wav": 8000,
    "wav16": 16000,
    "sln": 8000,
    "sln16": 16000,
    "ulaw": 8000,
    "alaw": 8000,
    "gsm": 8000,
    "g722": 16000,
}


def _samples(pcm: bytes | bytearray | memoryview) -> array[int]:
    out = array("h")
    out.frombytes(bytes(pcm[: len(pcm) & ~1]))
    if _BIG_ENDIAN:
        out.byteswap()
    return out


class Mixdown:
    """One recording's mix, growing as audio arrives."""

    def __init__(self, fmt: str, started: float) -> None:
        self.format = fmt
        self.rate = FORMAT_RATES.get(fmt, 8000)
        self.started = started
        self.samples = array("h")
        self._cursors: dict[object, tuple[int, float]] = {}  # source -> (next sample, last arrival)
        self.voiced_samples = 0  # samples written with any source sounding (for "talking_duration")

    def add_at(self, pcm: bytes | bytearray | memoryview, rate: int, moment: float) -> None:
        """16-bit PCM at ``rate`` that sounded in the bridge from ``moment`` (epoch seconds)."""
        self._mix(round((moment - self.started) * self.rate), pcm, rate)

    def add_stream(self, source: object, pcm: bytes | bytearray | memoryview, rate: int, now: float) -> None:
        """A frame of a paced source (an AudioSocket leg) that arrived at ``now``: right after its previous
        frame, or at ``now`` after a pause."""
        at = round((now - self.started) * self.rate)
        cursor = self._cursors.get(source)
        if cursor is not None and now - cursor[1] <= SOURCE_GAP_S and cursor[0] >= at - self.rate // 10:
            at = cursor[0]
        n = self._mix(at, pcm, rate)
        self._cursors[source] = (at + n, now)

    def _mix(self, at: int, pcm: bytes | bytearray | memoryview, rate: int) -> int:
        if rate != self.rate:
            pcm = audio.resample(pcm, rate, self.rate)
        src = _samples(pcm)
        n = len(src)
        if at < 0:
            src, at = src[-at:], 0
        end = min(at + len(src), MAX_SECONDS * self.rate)
        if end <= at:
            return n
        if len(self.samples) < end:
            self.samples.frombytes(bytes(2 * (end - len(self.samples))))
        dst = self.samples
        voiced = 0
        for i in range(end - at):
            s = src[i]
            if s:
                voiced += 1
                v = dst[at + i] + s
                dst[at + i] = 32767 if v > 32767 else -32768 if v < -32768 else v
        self.voiced_samples += voiced
        return n

    def pad_to(self, moment: float) -> None:
        """The recording lasts until ``moment``: trailing silence is part of it."""
        end = min(round((moment - self.started) * self.rate), MAX_SECONDS * self.rate)
        if end > len(self.samples):
            self.samples.frombytes(bytes(2 * (end - len(self.samples))))

    def pcm(self) -> bytes:
        out = array("h", self.samples)
        if _BIG_ENDIAN:
            out.byteswap()
        return out.tobytes()

    def file_bytes(self) -> bytes:
        """The stored file: a WAV for ``wav``/``wav16``, raw audio for the headerless formats."""
        pcm = self.pcm()
        if self.format in ("wav", "wav16"):
            buf = io.BytesIO()
            with wave.open(buf, "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(self.rate)
                out.writeframes(pcm)
            return buf.getvalue()
        if self.format == "ulaw":
            return audio.ulaw_encode(pcm)
        if self.format == "alaw":
            return audio.alaw_encode(pcm)
        return pcm  # sln, sln16 (and gsm/g722, which the simulator stores as slin: no codec here)

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate
