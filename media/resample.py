"""Streaming resampling of 16-bit little-endian mono PCM between an AudioSocket rate and 24 kHz.

OpenAI Realtime speaks ``audio/pcm`` at 24 kHz. With ``format=slin24`` (kind 0x13) nothing is resampled at
all (PROTOCOLS.md §4.9); any other AudioSocket rate (8, 12, 16, 32, 44.1, 48, 96, 192 kHz) goes through one
:class:`StreamResampler` per call and direction, which keeps the filter state across chunks, so that 20 ms
frames resampled one by one join without clicks and give the same samples as the whole signal at once.

Built on libsoxr (``soxr.ResampleStream``, int16 in and out, mono). Points to know when using it:

* **Output comes in blocks.** libsoxr works on blocks of its own size, so a 20 ms input frame may give no
  output now and a larger piece later (at ``quality="HQ"``, 8 → 24 kHz gives about 61 ms every third
  frame; 16 → 24 kHz about 31 ms every other frame). Callers queue the output; they do not expect one frame
  out per frame in.
* **Call :meth:`StreamResampler.flush` at the end of a continuous stretch** (the end of an agent response,
  the end of the call): it returns the samples still held in the filter, so the last syllable is not lost,
  and resets the stream for the next stretch. :meth:`StreamResampler.reset` drops them instead (barge-in).
* **Odd byte counts are fine**: a chunk that ends in the middle of a sample keeps that half sample and
  prepends it to the next chunk, so the byte stream may be split anywhere.
* Equal rates are the identity: :meth:`StreamResampler.process` returns its input object itself.

This module needs numpy and soxr but never Django; import it only where a rate other than 24 kHz is in use.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import soxr

__all__ = ["AUDIOSOCKET_RATES", "MODEL_RATE", "StreamResampler"]

#: OpenAI Realtime's ``audio/pcm`` rate.
MODEL_RATE: Final = 24000
#: The sample rates of AudioSocket kinds 0x10-0x18 (PROTOCOLS.md §4.2).
AUDIOSOCKET_RATES: Final = (8000, 12000, 16000, 24000, 32000, 44100, 48000, 96000, 192000)

_PCM: Final = np.dtype("<i2")  # 16-bit signed little-endian, as AudioSocket carries it (§4.3)
_QUALITIES: Final = frozenset({"QQ", "LQ", "MQ", "HQ", "VHQ"})


class StreamResampler:
    """Resample one continuous stream of 16-bit LE mono PCM from ``from_rate`` to ``to_rate`` (in Hz).

    One instance per call and direction: it is stateful. ``quality`` is a libsoxr preset (``"QQ"`` is a
    cubic interpolator with no delay and no anti-alias filter; ``"HQ"``, the default, is a proper 20-bit
    filter).
    """

    __slots__ = ("_carry", "_stream", "from_rate", "quality", "to_rate")

    def __init__(self, from_rate: int, to_rate: int, *, quality: str = "HQ") -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
        if quality not in _QUALITIES:
            raise ValueError(f"quality must be one of {sorted(_QUALITIES)}, got {quality!r}")
        self.from_rate = from_rate
        self.to_rate = to_rate
        self.quality = quality
        self._carry = b""  # the first byte of a sample split across two chunks
        self._stream: soxr.ResampleStream | None = (
            None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, "int16", quality)
        )

    @property
    def identity(self) -> bool:
        """True when both rates are equal: nothing is resampled."""
        return self._stream is None

    def process(self, pcm: bytes) -> bytes:
        """Resample the next chunk of the stream; return the output that is ready (possibly empty)."""
        if self._carry:
            pcm = self._carry + pcm
            self._carry = b""
        if len(pcm) & 1:
            self._carry = pcm[-1:]
            pcm = pcm[:-1]
        stream = self._stream
        if stream is None:
            return pcm
        if not pcm:
            return b""
        samples = np.frombuffer(pcm, dtype=_PCM).astype(np.int16, copy=False)
        return bytes(stream.resample_chunk(samples).astype(_PCM, copy=False).tobytes())

    def flush(self) -> bytes:
        """End the stream: return the samples still in the filter and reset for a new stream.

        A half sample still carried (an odd total byte count) is dropped.
        """
        self._carry = b""
        stream = self._stream
        if stream is None:
            return b""
        tail = stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        stream.clear()
        return bytes(tail.astype(_PCM, copy=False).tobytes())

    def reset(self) -> None:
        """Drop everything pending (input carried, samples in the filter): the next chunk starts afresh."""
        self._carry = b""
        if self._stream is not None:
            self._stream.clear()
