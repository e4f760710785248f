"""Audio for simulated callees: media formats, G.711, synthesis, WAV loading, and a "what was heard" meter.

All PCM here is 16-bit signed, **little-endian**, mono, passed around as ``bytes`` (AudioSocket carries host
order and every Asterisk host that matters is little-endian, PROTOCOLS.md §4.3). Standard library only.

Subtle points:

* **µ-law (and a-law) frames go out labelled 0x10.** Asterisk picks the AudioSocket kind from the frame's
  format when sending and uses 0x10 for everything that is not signed linear (§4.2, "the 0x10 caveat"). So
  ``FORMATS["ulaw"]`` has ``kind=0x10`` and 160-byte frames (20 ms of 8-bit samples), exactly what the real
  Asterisk sent in ``outbound_answered_bridged_ulaw_app_hangs_up.json``. The reverse direction is not
  symmetric: whatever the server sends back under 0x10 is read as 8 kHz slin, which is why
  :class:`HeardMeter` uses :data:`~wire.audiosocket.AUDIO_KIND_RATES` and never decodes µ-law.
* **The last frame of a stream can be short.** Asterisk forwards the frames its sources produce, and a
  source (a played file, a stream that stops) ends with the remainder that does not fill 20 ms: 48 bytes
  (slin16) and 72 bytes (slin24) were seen. :func:`frames` reproduces that: full ``frame_bytes`` chunks and
  one shorter last chunk, never empty and, for slin, always a whole number of samples.
* **G.711 tables follow ITU-T G.191 (and Asterisk's ulaw.c/alaw.c tables)**: negative samples are
  quantised by their one's complement, so ``-1 .. -4`` encode to µ-law 0x7F (which decodes to 0), not 0x7E.
  Encoding uses a 65536-entry table indexed by the unsigned 16-bit sample, driven by C-level ``map``.
* **Voiced-frame detection is exact but cheap**: a sample's high byte alone decides whether ``|x|`` is
  certainly above or certainly within the threshold for all but two high-byte values, so
  ``bytes.translate`` on the high bytes answers almost every frame without a Python loop.
"""

from __future__ import annotations

import math
import random
import sys
import wave
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from os import PathLike
from typing import Any, Final

from wire.audiosocket import (
    AUDIO_KIND_RATES,
    KIND_SLIN,
    KIND_SLIN12,
    KIND_SLIN16,
    KIND_SLIN24,
    KIND_SLIN32,
    KIND_SLIN44,
    KIND_SLIN48,
    KIND_SLIN96,
    KIND_SLIN192,
)

__all__ = [
    "FORMATS",
    "FRAME_MS",
    "HeardMeter",
    "MediaFormat",
    "alaw_decode",
    "alaw_encode",
    "beep",
    "encode_for",
    "frames",
    "load_wav",
    "phrase",
    "phrase_ms",
    "resample",
    "silence",
    "tone",
    "ulaw_decode",
    "ulaw_encode",
]

_BIG_ENDIAN: Final = sys.byteorder == "big"
FRAME_MS: Final = 20


# ------------------------------------------------------------------------------------------- formats


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """An externalMedia ``format`` as the simulated AudioSocket channel sends it.

    ``kind`` is the AudioSocket kind Asterisk puts on *outgoing* frames (0x10 for µ-law/a-law, see the
    module header); ``frame_bytes`` is one 20 ms frame on the wire.
    """

    name: str
    kind: int
    rate: int
    frame_bytes: int
    ulaw: bool
    alaw: bool = False

    @property
    def companded(self) -> bool:
        """True for G.711 (one byte per sample), False for 16-bit slin."""
        return self.ulaw or self.alaw

    @property
    def bytes_per_second(self) -> int:
        return self.rate if self.companded else self.rate * 2


def _slin(name: str, kind: int, rate: int) -> MediaFormat:
    return MediaFormat(name, kind, rate, rate * FRAME_MS // 1000 * 2, ulaw=False)


#: externalMedia ``format`` names the simulator supports (Asterisk accepts these for AudioSocket).
FORMATS: Final[dict[str, MediaFormat]] = {
    f.name: f
    for f in (
        _slin("slin", KIND_SLIN, 8000),
        _slin("slin12", KIND_SLIN12, 12000),
        _slin("slin16", KIND_SLIN16, 16000),
        _slin("slin24", KIND_SLIN24, 24000),
        _slin("slin32", KIND_SLIN32, 32000),
        _slin("slin44", KIND_SLIN44, 44100),
        _slin("slin48", KIND_SLIN48, 48000),
        _slin("slin96", KIND_SLIN96, 96000),
        _slin("slin192", KIND_SLIN192, 192000),
        MediaFormat("ulaw", KIND_SLIN, 8000, 160, ulaw=True),
        MediaFormat("alaw", KIND_SLIN, 8000, 160, ulaw=False, alaw=True),
    )
}


# ---------------------------------------------------------------------------------------------- G.711


def _ulaw_compress(x: int) -> int:
    """ITU-T G.191 ``ulaw_compress`` for one 16-bit sample (one's complement magnitude for negatives)."""
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    segno = (absno >> 6).bit_length() + 1
    low = 0x0F - ((absno >> segno) & 0x0F)
    out = ((8 - segno) << 4) | low
    return out | 0x80 if x >= 0 else out


def _ulaw_expand(code: int) -> int:
    """ITU-T G.191 ``ulaw_expand``: the decoded 16-bit value of one µ-law byte."""
    inv = ~code & 0xFF
    exponent = (inv >> 4) & 0x07
    step = 4 << (exponent + 1)
    magnitude = (0x80 << exponent) + step * (inv & 0x0F) + step // 2 - 4 * 33
    return magnitude if code >= 0x80 else -magnitude


def _alaw_compress(x: int) -> int:
    """ITU-T G.191 ``alaw_compress`` for one 16-bit sample."""
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


def _alaw_expand(code: int) -> int:
    """ITU-T G.191 ``alaw_expand``."""
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0x0F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x08
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def _signed(u: int) -> int:
    return u - 0x10000 if u & 0x8000 else u


def _encoder_table(compress: Callable[[int], int], shift: int) -> bytes:
    """65536-entry table indexed by the *unsigned* 16-bit sample, so that array('H') feeds it directly.

    The codes depend only on ``sample >> shift`` (``~x >> n == ~(x >> n)``), so each distinct code is computed
    once and spread over its ``2**shift`` samples with slice assignments.
    """
    coarse = bytes(compress(_signed(u << shift)) for u in range(0x10000 >> shift))
    table = bytearray(0x10000)
    for offset in range(1 << shift):
        table[offset :: 1 << shift] = coarse
    return bytes(table)


_ULAW_ENC: Final = _encoder_table(_ulaw_compress, 2)
_ALAW_ENC: Final = _encoder_table(_alaw_compress, 4)
_ULAW_DEC: Final = array("h", (_ulaw_expand(c) for c in range(256)))
_ALAW_DEC: Final = array("h", (_alaw_expand(c) for c in range(256)))


def _unsigned_samples(pcm: bytes | bytearray | memoryview) -> array[int]:
    samples = array("H")
    samples.frombytes(pcm[: len(pcm) & ~1])
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples


def _pcm_bytes(samples: array[int]) -> bytes:
    if _BIG_ENDIAN:
        samples = array(samples.typecode, samples)
        samples.byteswap()
    return samples.tobytes()


def ulaw_encode(pcm: bytes | bytearray | memoryview) -> bytes:
    """16-bit LE PCM → µ-law, one byte per sample (a trailing odd byte is ignored)."""
    return bytes(map(_ULAW_ENC.__getitem__, _unsigned_samples(pcm)))


def ulaw_decode(data: bytes | bytearray | memoryview) -> bytes:
    """µ-law → 16-bit LE PCM."""
    return _pcm_bytes(array("h", map(_ULAW_DEC.__getitem__, data)))


def alaw_encode(pcm: bytes | bytearray | memoryview) -> bytes:
    """16-bit LE PCM → a-law."""
    return bytes(map(_ALAW_ENC.__getitem__, _unsigned_samples(pcm)))


def alaw_decode(data: bytes | bytearray | memoryview) -> bytes:
    """a-law → 16-bit LE PCM."""
    return _pcm_bytes(array("h", map(_ALAW_DEC.__getitem__, data)))


# ------------------------------------------------------------------------------------------ synthesis


def _n_samples(ms: float, rate: int) -> int:
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    if ms < 0:
        raise ValueError(f"duration must not be negative, got {ms}")
    return round(ms * rate / 1000)


def silence(ms: float, rate: int) -> bytes:
    """``ms`` milliseconds of digital silence."""
    return bytes(2 * _n_samples(ms, rate))


def tone(freq_hz: float, ms: float, rate: int, amplitude: int = 8000) -> bytes:
    """A sine tone starting at phase 0 (results are cached: callees replay the same beeps)."""
    if not 0 <= amplitude <= 32767:
        raise ValueError(f"amplitude must be within 0..32767, got {amplitude}")
    return _tone(freq_hz, _n_samples(ms, rate), rate, amplitude)


@lru_cache(maxsize=32)
def _tone(freq_hz: float, n: int, rate: int, amplitude: int) -> bytes:
    w = 2 * math.pi * freq_hz / rate
    sin = math.sin
    return _pcm_bytes(array("h", [round(amplitude * sin(w * i)) for i in range(n)]))


def beep(rate: int) -> bytes:
    """A voicemail beep: 1000 Hz for 500 ms."""
    return tone(1000.0, 500, rate)


_PHRASE_MS_PER_CHAR: Final = 65
_PHRASE_MIN_MS: Final = 300
_PHRASE_MAX_MS: Final = 20_000
# Relative harmonic amplitudes (1st..6th) giving a few vowel-like spectra.
_VOWELS: Final[tuple[tuple[float, ...], ...]] = (
    (1.0, 0.8, 0.35, 0.2, 0.1, 0.05),  # "ah"
    (1.0, 0.3, 0.15, 0.35, 0.25, 0.1),  # "eh"
    (1.0, 0.2, 0.05, 0.1, 0.3, 0.25),  # "ee"
    (1.0, 0.6, 0.15, 0.05, 0.03, 0.02),  # "oo"
    (1.0, 0.7, 0.5, 0.2, 0.08, 0.04),  # "oh"
)
_ENVELOPE: Final = tuple(0.25 + 0.75 * math.sin(math.pi * (k + 0.5) / 64) for k in range(64))


def phrase_ms(text: str) -> int:
    """Duration of :func:`phrase` for ``text``: 65 ms per character, clamped to 300 ms .. 20 s."""
    return max(_PHRASE_MIN_MS, min(_PHRASE_MAX_MS, _PHRASE_MS_PER_CHAR * len(text.strip())))


def phrase(text: str, rate: int, seed: int = 0, amplitude: int = 8000) -> bytes:
    """A deterministic speech-like signal standing for ``text`` being said.

    Words become voiced stretches (a 120-220 Hz fundamental with vowel-like harmonics and a syllable-rate
    envelope that never falls below a quarter of the peak, so an energy VAD sees each word as one run of
    speech); words are separated by 60-110 ms of silence, 160 ms after ``,;:`` and 260 ms after ``.!?``
    (only gaps of 200 ms or more end a talk spurt). The length is exactly :func:`phrase_ms` at ``rate``.
    Word timing and pitch depend on ``text`` and ``seed`` only, not on ``rate``. Results are cached.

    Synthesis costs about 3 ms per second of audio at 24 kHz, so a 20 s phrase takes ~60 ms on first use.
    """
    if not 0 <= amplitude <= 32767:
        raise ValueError(f"amplitude must be within 0..32767, got {amplitude}")
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    return _phrase(text, rate, seed, amplitude)


def _split_exact(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integer parts proportional to ``weights`` that sum exactly to ``total``."""
    whole = sum(weights)
    parts: list[int] = []
    acc = 0.0
    done = 0
    for weight in weights:
        acc += weight
        upto = round(total * acc / whole)
        parts.append(upto - done)
        done = upto
    return parts


# Bounded: a 20 s phrase at 48 kHz is 1.9 MB; simulated callees reuse a handful of phrases.
@lru_cache(maxsize=64)
def _phrase(text: str, rate: int, seed: int, amplitude: int) -> bytes:
    total_ms = phrase_ms(text)
    total = _n_samples(total_ms, rate)
    rng = random.Random(f"{seed}\x00{text}")  # noqa: S311 - reproducible synthesis, not security
    words = text.split() or ["-"]
    gaps_ms: list[float] = []
    for word in words[:-1]:
        if word[-1] in ".!?":
            gaps_ms.append(260.0)
        elif word[-1] in ",;:":
            gaps_ms.append(160.0)
        else:
            gaps_ms.append(rng.uniform(60.0, 110.0))
    # Keep at least 60 % of the phrase voiced, whatever the punctuation.
    max_gaps_ms = 0.4 * total_ms
    if sum(gaps_ms) > max_gaps_ms:
        scale = max_gaps_ms / sum(gaps_ms)
        gaps_ms = [g * scale for g in gaps_ms]
    gap_samples = [_n_samples(g, rate) for g in gaps_ms]
    word_samples = _split_exact(total - sum(gap_samples), [float(len(w)) for w in words])

    base_f0 = rng.uniform(120.0, 220.0)
    fade = max(1, _n_samples(10, rate))
    out = array("h")
    sin = math.sin
    n_words = len(words)
    for index, (word, n_word) in enumerate(zip(words, word_samples, strict=True)):
        syllables = max(1, round(len(word) / 3))
        word_pcm: list[int] = []
        for n_syl in _split_exact(n_word, [1.0] * syllables):
            # A falling intonation over the phrase, with per-syllable jitter.
            f0 = base_f0 * (1.08 - 0.16 * index / n_words) * rng.uniform(0.9, 1.1)
            period = max(2, round(rate / f0))
            harmonics = [
                (a, h) for h, a in enumerate(rng.choice(_VOWELS), start=1) if h * rate / period < rate / 2
            ]
            cycle = [sum(a * sin(2 * math.pi * h * j / period) for a, h in harmonics) for j in range(period)]
            peak = max(abs(v) for v in cycle) or 1.0
            cycle = [amplitude * v / peak for v in cycle]
            env = _ENVELOPE
            if n_syl:
                word_pcm.extend([int(env[(i << 6) // n_syl] * cycle[i % period]) for i in range(n_syl)])
        # Short linear fades at the word's edges avoid clicks.
        edge = min(fade, len(word_pcm) // 2)
        for i in range(edge):
            gain = i / edge
            word_pcm[i] = int(word_pcm[i] * gain)
            word_pcm[-1 - i] = int(word_pcm[-1 - i] * gain)
        out.extend(word_pcm)
        if index < n_words - 1:
            out.frombytes(bytes(2 * gap_samples[index]))
    return _pcm_bytes(out)


# ----------------------------------------------------------------------------------- files, resampling


def _signed_samples(pcm: bytes | bytearray | memoryview) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) & ~1])
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples


def resample(pcm: bytes | bytearray | memoryview, from_rate: int, to_rate: int) -> bytes:
    """Resample 16-bit PCM by linear interpolation (no anti-alias filter: fine for a simulator).

    The output has ``round(n * to_rate / from_rate)`` samples; sample ``j`` is read at input position
    ``j * from_rate / to_rate``.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} and {to_rate}")
    src = _signed_samples(pcm)
    n_in = len(src)
    if from_rate == to_rate or n_in == 0:
        return _pcm_bytes(src)
    n_out = (n_in * to_rate + from_rate // 2) // from_rate
    src.append(src[-1])  # guard: position j never reaches n_in, so src[i + 1] always exists
    positions = (divmod(j * from_rate, to_rate) for j in range(n_out))
    return _pcm_bytes(array("h", [src[i] + (src[i + 1] - src[i]) * r // to_rate for i, r in positions]))


_FLIP_SIGN: Final = bytes((b ^ 0x80) for b in range(256))


def load_wav(path: str | PathLike[str], rate: int) -> bytes:
    """Read a PCM WAV file as 16-bit mono at ``rate``.

    8-bit (unsigned) and 16/24/32-bit (signed) samples are converted to 16-bit; several channels are
    averaged; the sample rate is converted with :func:`resample`.
    """
    with wave.open(str(path), "rb") as wav:
        channels = wav.getnchannels()
        width = wav.getsampwidth()
        file_rate = wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    count = len(raw) // width
    pcm = bytearray(2 * count)
    if width == 1:
        pcm[1::2] = raw.translate(_FLIP_SIGN)
    elif width == 2:
        pcm[:] = raw[: 2 * count]
    elif width in (3, 4):
        pcm[0::2] = raw[width - 2 :: width][:count]
        pcm[1::2] = raw[width - 1 :: width][:count]
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    if channels > 1:
        samples = _signed_samples(pcm)
        columns = [samples[c::channels] for c in range(channels)]
        mixed = [sum(frame) // channels for frame in zip(*columns, strict=True)]
        pcm = bytearray(_pcm_bytes(array("h", mixed)))
    return resample(pcm, file_rate, rate)


# ------------------------------------------------------------------------------------------ framing


def encode_for(fmt: MediaFormat, pcm: bytes | bytearray | memoryview) -> bytes:
    """16-bit PCM at ``fmt.rate`` → the bytes the channel puts on the wire (G.711 for ulaw/alaw)."""
    if fmt.ulaw:
        return ulaw_encode(pcm)
    if fmt.alaw:
        return alaw_encode(pcm)
    return bytes(pcm)


def frames(fmt: MediaFormat, audio: bytes | bytearray | memoryview) -> list[bytes]:
    """Split wire-format audio into ``fmt.frame_bytes`` chunks; the last one may be shorter, never empty.

    For slin the input must be a whole number of samples, so every chunk is even too.
    """
    size = fmt.frame_bytes
    total = len(audio)
    if not fmt.companded and total & 1:
        raise ValueError(f"{fmt.name} audio must be a whole number of 16-bit samples, got {total} bytes")
    return [bytes(audio[i : i + size]) for i in range(0, total, size)]


# ------------------------------------------------------------------------------------------- metering


class _PeakDetector:
    """Exact ``max |sample| > threshold`` for 16-bit LE PCM, with C-level byte operations only.

    A sample's high byte ``h`` confines it to ``[256h, 256h + 255]``: for all but at most two high bytes
    (those whose range contains ``threshold`` or ``-threshold``) that range is entirely loud or entirely
    quiet, so ``bytes.translate`` over the high bytes settles most frames. For an *ambiguous* high byte the
    low bytes decide: they are selected with a big-integer AND/OR against a mask built from the high bytes
    (elementwise over the whole frame at once), then tested with one more ``translate``.
    """

    __slots__ = ("ambiguous", "not_loud", "quiet")

    def __init__(self, threshold: int) -> None:
        quiet = bytearray()
        not_loud = bytearray()
        #: (high byte, mask table, combine with AND?, low bytes that do NOT make the sample loud)
        self.ambiguous: list[tuple[bytes, bytes, bool, bytes]] = []
        for hi in range(256):
            base = (hi - 256 if hi & 0x80 else hi) * 256
            loud_lows = [lo for lo in range(256) if abs(base + lo) > threshold]
            if not loud_lows:
                quiet.append(hi)
            if len(loud_lows) < 256:
                not_loud.append(hi)
            if 0 < len(loud_lows) < 256:
                # The loud lows form an interval touching 0 or 255 but not both. Non-candidate positions must
                # read as a quiet low byte: 0x00 via AND (mask 0x00) if 0 is quiet, else 0xFF via OR.
                use_and = 0 not in loud_lows
                table = bytes(
                    (0xFF if b == hi else 0x00) if use_and else (0x00 if b == hi else 0xFF)
                    for b in range(256)
                )
                quiet_lows = bytes(lo for lo in range(256) if lo not in loud_lows)
                self.ambiguous.append((bytes((hi,)), table, use_and, quiet_lows))
        self.quiet = bytes(quiet)
        self.not_loud = bytes(not_loud)

    def __call__(self, payload: bytes | bytearray) -> bool:
        high = payload[1::2]
        if high.translate(None, self.not_loud):
            return True  # a high byte that only loud samples have
        if not high.translate(None, self.quiet):
            return False  # every high byte belongs to quiet samples only
        count = len(high)
        lows = int.from_bytes(payload[0 : 2 * count : 2], "little")
        for hi, table, use_and, quiet_lows in self.ambiguous:
            if hi not in high:
                continue
            mask = int.from_bytes(high.translate(table), "little")
            selected = (lows & mask) if use_and else (lows | mask)
            if selected.to_bytes(count, "little").translate(None, quiet_lows):
                return True
        return False


_detector = lru_cache(maxsize=16)(_PeakDetector)


_ZEROS: dict[int, bytes] = {}


class HeardMeter:
    """Accumulates what a simulated callee heard: the audio the external server sent to "Asterisk".

    A frame is *voiced* when its peak ``|sample|`` exceeds ``threshold``. Received and heard durations come
    from the payload length and the kind's rate (0x10 is 8 kHz slin on receive).

    Talk spurts are measured on a playout clock: a frame plays from its arrival time ``now``, or from the
    end of the previous frame if that is later (a server that bursts frames is laid end to end, as a
    listener would hear them). A spurt is ``(start of its first voiced frame, end of its last voiced
    frame)``; it ends once ``spurt_gap`` seconds (default 200 ms) pass on that clock without voiced audio,
    whether they are filled with silent frames or with no frames at all. For a paced server the start is
    exactly the ``now`` of the spurt's first frame. ``first_voiced_at``/``last_voiced_at`` are raw ``now``
    values.
    """

    __slots__ = (
        "_clock",
        "_gap",
        "_peak",
        "_spurt_end",
        "_spurt_start",
        "first_frame_at",
        "first_voiced_at",
        "frames",
        "heard_s",
        "kinds",
        "last_frame_at",
        "last_voiced_at",
        "received_s",
        "spurt_gap",
        "spurts",
        "threshold",
        "voiced_frames",
    )

    def __init__(self, threshold: int = 300, spurt_gap: float = 0.2) -> None:
        if not 0 <= threshold <= 32767:
            raise ValueError(f"threshold must be within 0..32767, got {threshold}")
        self.threshold = threshold
        self.spurt_gap = spurt_gap
        self._peak = _detector(threshold)
        self.frames = 0
        self.voiced_frames = 0
        self.received_s = 0.0
        self.heard_s = 0.0
        self.kinds: dict[int, int] = {}
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        self.first_voiced_at: float | None = None
        self.last_voiced_at: float | None = None
        #: closed talk spurts, as (start, end) times
        self.spurts: list[tuple[float, float]] = []
        self._spurt_start: float | None = None
        self._spurt_end = 0.0
        self._clock = -math.inf
        # A hair under spurt_gap, so that exactly spurt_gap of silence (10 x 20 ms frames) counts.
        self._gap = spurt_gap - 1e-9

    @property
    def heard_ms(self) -> float:
        return self.heard_s * 1000.0

    @property
    def received_ms(self) -> float:
        return self.received_s * 1000.0

    def is_voiced(self, payload: bytes | bytearray) -> bool:
        """True if some sample's magnitude exceeds the threshold (exact)."""
        size = len(payload)
        if size < 2:
            return False
        zeros = _ZEROS.get(size)
        if zeros is None and size <= 16384 and len(_ZEROS) < 64:
            zeros = _ZEROS[size] = bytes(size)
        if payload == zeros:
            return False
        return self._peak(payload)

    def add(self, kind: int, payload: bytes | bytearray, now: float) -> None:
        """Account one received audio frame that arrived at ``now`` (seconds, any monotonic clock)."""
        rate = AUDIO_KIND_RATES.get(kind)
        if rate is None:
            raise ValueError(f"kind 0x{kind:02x} is not an audio kind")
        duration = len(payload) / (2 * rate)
        self.frames += 1
        self.received_s += duration
        kinds = self.kinds
        kinds[kind] = kinds.get(kind, 0) + 1
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.last_frame_at = now
        # Playout clock: a frame plays from its arrival, or right after the previous one if that is later.
        start = self._clock if self._clock > now else now
        end = self._clock = start + duration
        if self._spurt_start is not None and start - self._spurt_end >= self._gap:
            self._close_spurt()
        if self.is_voiced(payload):
            self.voiced_frames += 1
            self.heard_s += duration
            if self.first_voiced_at is None:
                self.first_voiced_at = now
            self.last_voiced_at = now
            if self._spurt_start is None:
                self._spurt_start = start
            self._spurt_end = end
        elif self._spurt_start is not None and end - self._spurt_end >= self._gap:
            self._close_spurt()

    def _close_spurt(self) -> None:
        if self._spurt_start is not None:
            self.spurts.append((self._spurt_start, self._spurt_end))
        self._spurt_start = None

    def all_spurts(self) -> list[tuple[float, float]]:
        """Closed spurts plus the one still open, if any."""
        if self._spurt_start is None:
            return list(self.spurts)
        return [*self.spurts, (self._spurt_start, self._spurt_end)]

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready summary (milliseconds rounded to 0.1 ms, times as given to :meth:`add`)."""
        return {
            "heard_ms": round(self.heard_ms, 1),
            "received_ms": round(self.received_ms, 1),
            "frames": self.frames,
            "voiced_frames": self.voiced_frames,
            "kinds": {f"0x{kind:02x}": count for kind, count in sorted(self.kinds.items())},
            "first_frame_at": self.first_frame_at,
            "last_frame_at": self.last_frame_at,
            "first_voiced_at": self.first_voiced_at,
            "last_voiced_at": self.last_voiced_at,
            "spurts": [[start, end] for start, end in self.all_spurts()],
            "threshold": self.threshold,
        }
