"""Answering-machine detection and voicemail settings of a campaign: Asterisk ``AMD()``'s thresholds, what
an uncertain result counts as, and the recorded voicemail message.

The thresholds go to the PBX as the channel variable ``AI_AMD_ARGS`` (AMD()'s nine arguments, in its order)
on the originate; the ``ai-amd`` dialplan context (deploy/asterisk) runs ``AMD(${AI_AMD_ARGS})`` and comes
back into Stasis with ``AMDSTATUS``/``AMDCAUSE`` (telephony.stasis.controller, ``CallAmd``).

What a result means for the call (:func:`amd_answered_by`): ``HUMAN`` is a person and ``MACHINE`` a machine,
except that the causes that only say "nobody spoke in time" (``INITIALSILENCE``) and ``NOTSURE`` (``TOOLONG``)
follow the campaign's ``amd_notsure_action``, "human" by default: a person left in silence while the product
waits for a beep that never comes (or hung up on) is the worse error; a machine taken for a person only
hears the agent's greeting.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from orchestrator.errors import InvalidInput

#: AMD()'s arguments in the dialplan application's order, with the product's defaults, and the range a
#: campaign may set (milliseconds, except the word count and the energy threshold). The defaults are
#: Asterisk's (amd.conf) but for ``after_greeting_silence``: 600 ms instead of 800, because a person waits
#: for AMD's verdict before hearing the agent and the product's budget for that wait is 2 s (bench/amd.py:
#: p95 2,001 ms at 800, 1,802 ms at 600, the same accuracy); a machine whose greeting pauses longer than
#: that is caught by the media worker's second opinion (its beep and greeting phrases).
AMD_DEFAULTS: Final[dict[str, int]] = {
    "initial_silence": 2500,
    "greeting": 1500,
    "after_greeting_silence": 600,
    "total_analysis_time": 5000,
    "min_word_length": 100,
    "between_words_silence": 50,
    "maximum_number_of_words": 2,
    "silence_threshold": 256,
    "maximum_word_length": 5000,
}
AMD_RANGES: Final[dict[str, tuple[int, int]]] = {
    "initial_silence": (500, 10_000),
    "greeting": (500, 10_000),
    "after_greeting_silence": (100, 5_000),
    # The Stasis app looks for a call that did not come back after 10 s (telephony.stasis.config).
    "total_analysis_time": (1_000, 10_000),
    "min_word_length": (20, 1_000),
    "between_words_silence": (20, 1_000),
    "maximum_number_of_words": (1, 20),
    "silence_threshold": (1, 32_767),
    "maximum_word_length": (500, 10_000),
}

NOTSURE_HUMAN = "human"
NOTSURE_MACHINE = "machine"
NOTSURE_ACTIONS: Final = (NOTSURE_HUMAN, NOTSURE_MACHINE)
VOICEMAIL_HANG_UP = "hang_up"
VOICEMAIL_LEAVE_MESSAGE = "leave_message"
VOICEMAIL_ACTIONS: Final = (VOICEMAIL_HANG_UP, VOICEMAIL_LEAVE_MESSAGE)
VOICEMAIL_TEXT_MAX = 1000

#: The recorded message as the media worker plays it: raw 16-bit mono PCM at 24 kHz.
VOICEMAIL_AUDIO_RATE: Final = 24_000
VOICEMAIL_AUDIO_MAX_S: Final = 60.0
VOICEMAIL_UPLOAD_MAX_BYTES: Final = 20 * 1024 * 1024
#: How long the media worker waits for the beep (or the greeting's end) before leaving the message anyway.
VOICEMAIL_MAX_WAIT_S: Final = 30.0


def voicemail_audio_key(sha256: str) -> str:
    """The Redis key of a recorded message (raw PCM) the brief names as ``voicemail.audio_key``."""
    return f"media:voicemail:{sha256}"


#: What the attempt's ``answered_by`` says.
ANSWERED_BY_HUMAN = "human"
ANSWERED_BY_MACHINE = "machine"


def validate_amd_settings(data: object) -> dict[str, int]:
    """The campaign's AMD thresholds: an object with some of :data:`AMD_DEFAULTS`' keys (the others keep
    Asterisk's defaults), whole numbers within :data:`AMD_RANGES`. Returns all nine."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InvalidInput("amd_settings", "must be an object of threshold -> value")
    unknown = sorted(set(data) - set(AMD_DEFAULTS))
    if unknown:
        raise InvalidInput(
            "amd_settings", f"{unknown[0]!r} is not an AMD threshold (one of {', '.join(AMD_DEFAULTS)})"
        )
    out = dict(AMD_DEFAULTS)
    for key, value in data.items():
        low, high = AMD_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput("amd_settings", f"{key}: must be a whole number between {low} and {high}")
        out[key] = value
    return out


def amd_args(settings: Mapping[str, Any] | None) -> str:
    """``AI_AMD_ARGS``: AMD()'s nine arguments in order, comma separated."""
    merged = {**AMD_DEFAULTS, **{k: v for k, v in (settings or {}).items() if k in AMD_DEFAULTS}}
    return ",".join(str(int(merged[key])) for key in AMD_DEFAULTS)


def amd_is_uncertain(status: str, cause: str) -> bool:
    """NOTSURE (TOOLONG), and a MACHINE that only means nobody spoke in time (INITIALSILENCE)."""
    status = status.upper()
    return status == "NOTSURE" or (status == "MACHINE" and cause.upper().startswith("INITIALSILENCE"))


def amd_answered_by(status: str, cause: str, notsure_action: str) -> str:
    """Who answered, from AMD()'s result and the campaign's rule; "" when it says nothing (HANGUP)."""
    status = status.upper()
    if amd_is_uncertain(status, cause):
        return ANSWERED_BY_MACHINE if notsure_action == NOTSURE_MACHINE else ANSWERED_BY_HUMAN
    if status == "MACHINE":
        return ANSWERED_BY_MACHINE
    if status == "HUMAN":
        return ANSWERED_BY_HUMAN
    return ""


def voicemail_audio_from_wav(data: bytes) -> tuple[bytes, float]:
    """An uploaded WAV as the media worker plays it: 16-bit mono PCM at 24 kHz, and its length in seconds.

    Accepts PCM WAV (8/16/24/32-bit integer, any rate from 8 kHz, mono or stereo, mixed down); anything
    else, an empty or a too long message is refused (``InvalidInput("voicemail_audio", ...)``)."""
    if len(data) > VOICEMAIL_UPLOAD_MAX_BYTES:
        raise InvalidInput("voicemail_audio", f"the file is larger than {VOICEMAIL_UPLOAD_MAX_BYTES} bytes")
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width, rate, frames = (
                wav.getnchannels(),
                wav.getsampwidth(),
                wav.getframerate(),
                wav.getnframes(),
            )
            if channels not in (1, 2) or width not in (1, 2, 3, 4) or not 8000 <= rate <= 192_000:
                raise InvalidInput(
                    "voicemail_audio", "must be a PCM WAV, mono or stereo, 8 to 32-bit, at 8 kHz or more"
                )
            if frames / rate > VOICEMAIL_AUDIO_MAX_S + 0.05:
                raise InvalidInput("voicemail_audio", f"is longer than {VOICEMAIL_AUDIO_MAX_S:g} seconds")
            raw = wav.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise InvalidInput("voicemail_audio", f"is not a readable PCM WAV file ({exc})") from None
    samples = _to_float(raw, width)
    if channels == 2:
        samples = samples[: len(samples) // 2 * 2].reshape(-1, 2).mean(axis=1)
    if samples.size == 0:
        raise InvalidInput("voicemail_audio", "has no audio")
    if rate != VOICEMAIL_AUDIO_RATE:
        n_out = round(samples.size * VOICEMAIL_AUDIO_RATE / rate)
        positions = np.arange(n_out) * (rate / VOICEMAIL_AUDIO_RATE)
        samples = np.interp(positions, np.arange(samples.size), samples)
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2").tobytes()
    return pcm, round(len(pcm) / 2 / VOICEMAIL_AUDIO_RATE, 3)


def _to_float(raw: bytes, width: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    if width == 1:  # unsigned 8-bit
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    if width == 3:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints & 0x800000, ints - 0x1000000, ints)
        return ints.astype(np.float64) / 8388608.0
    return np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0
