"""PCM the media worker makes on its own: tones, silence, and speech from espeak-ng, and the WAV and
resampling helpers behind them.

All PCM is 16-bit signed little-endian mono at 24 kHz (the Realtime GA ``audio/pcm`` format), passed around as
``bytes``. Standard library only. The worker's apology (``media/speech.py``) and the local Realtime stand-in
(``media/localai/``) both build on this module; it imports neither.
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import sys
from array import array
from functools import lru_cache
from typing import Final

RATE: Final = 24000
BYTES_PER_MS: Final = RATE * 2 // 1000  # 48: 24 samples of 2 bytes

_LITTLE_ENDIAN_HOST: Final = sys.byteorder == "little"


ESPEAK_TIMEOUT_S: Final = 20.0


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


def find_espeak() -> str | None:
    return shutil.which("espeak-ng") or shutil.which("espeak")


def espeak_pcm(executable: str, voice: str, text: str) -> bytes:
    """``text`` spoken by espeak(-ng) as 24 kHz mono PCM. Raises OSError, SubprocessError or WavError."""
    # "--" ends the options, so a sentence starting with "-" is never read as a flag.
    done = subprocess.run(  # noqa: S603 - the espeak binary found on PATH, the text as one argument
        [executable, "--stdout", "-v", voice, "--", text],
        capture_output=True,
        timeout=ESPEAK_TIMEOUT_S,
        check=True,
    )
    pcm, rate, channels = parse_wav(done.stdout)
    pcm = resample(to_mono(pcm, channels), rate)
    if not pcm:
        raise WavError("espeak produced no audio")
    return pcm
