"""Answering-machine detection as Asterisk's ``AMD()`` (apps/app_amd.c) does it, over a callee's own audio.

The simulator has no dialplan; the one context it runs is ``ai-amd`` (deploy/asterisk ships the same):
``AMD(${AI_AMD_ARGS})``, then ``Stasis(${AI_STASIS_APP},amd,${AMDSTATUS},${AMDCAUSE})``, then ``Hangup()``.
:func:`detect` is the loop of ``isAnsweringMachine`` on 20 ms frames of 8 kHz signed linear:

* a frame is silent when its mean absolute sample is below ``silence_threshold`` (``ast_dsp_silence``);
  the silence duration is the *consecutive* silence so far (the DSP's ``totalsilence``);
* silence of ``between_words_silence`` or more puts the detector in the silence state; voice of
  ``min_word_length`` consecutive ms after a silence state counts a word. The detector *starts in the word
  state* (as app_amd.c does), so a greeting that starts at once is not counted as a word until a pause;
* the causes, checked in app_amd.c's order: ``TOOLONG-<total>`` (NOTSURE) once ``total_analysis_time`` of
  audio was read; ``INITIALSILENCE-<silence>-<initial>`` (MACHINE) for a callee silent that long;
  ``HUMAN-<silence>-<after greeting>`` for the silence after a short greeting; ``MAXWORDLENGTH-<n>``,
  ``MAXWORDS-<words>-<max>`` and ``LONGGREETING-<voice>-<greeting>`` (MACHINE) while voice goes on;
  a hang-up during the analysis is ``HANGUP`` with an empty cause.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, fields

FRAME_MS = 20
RATE = 8000
SAMPLES_PER_FRAME = RATE * FRAME_MS // 1000

#: AMD()'s arguments in their dialplan order, with Asterisk's defaults (amd.conf sample, app_amd.c).
AMD_ARGUMENTS: tuple[str, ...] = (
    "initial_silence",
    "greeting",
    "after_greeting_silence",
    "total_analysis_time",
    "min_word_length",
    "between_words_silence",
    "maximum_number_of_words",
    "silence_threshold",
    "maximum_word_length",
)


@dataclass(frozen=True, slots=True)
class AmdParams:
    initial_silence: int = 2500
    greeting: int = 1500
    after_greeting_silence: int = 800
    total_analysis_time: int = 5000
    min_word_length: int = 100
    between_words_silence: int = 50
    maximum_number_of_words: int = 2
    silence_threshold: int = 256
    maximum_word_length: int = 5000

    @classmethod
    def parse(cls, data: str) -> AmdParams:
        """AMD()'s comma-separated arguments: a missing or empty one keeps its default; like app_amd.c's
        ``atoi``, a non-numeric one counts as 0."""
        values: dict[str, int] = {}
        for name, raw in zip(AMD_ARGUMENTS, (data or "").split(","), strict=False):
            raw = raw.strip()
            if raw:
                values[name] = _atoi(raw)
        return cls(**values)

    def args(self) -> str:
        return ",".join(str(getattr(self, f.name)) for f in fields(self))


def _atoi(raw: str) -> int:
    digits = ""
    for i, ch in enumerate(raw):
        if ch.isdigit() or (i == 0 and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class AmdResult:
    status: str  # MACHINE | HUMAN | NOTSURE | HANGUP
    cause: str
    ms: int  # how much audio the analysis read before deciding


def frame_is_silent(frame: array[int], threshold: int) -> bool:
    """``ast_dsp_silence``: the mean absolute sample of the frame below the threshold."""
    if not frame:
        return True
    return sum(abs(s) for s in frame) // len(frame) < threshold


def detect(pcm: bytes, params: AmdParams, *, hangup_ms: int | None = None) -> AmdResult:
    """Run AMD() over ``pcm`` (16-bit 8 kHz, starting when AMD() starts); after its end the callee is
    silent (frames of silence keep coming, as from a line). ``hangup_ms``: the callee hangs up then."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    total = 0
    silence_duration = 0
    dsp_silence = 0
    voice_duration = 0
    consecutive_voice = 0
    words = 0
    in_initial_silence = True
    in_greeting = False
    in_word = True  # app_amd.c: currentState = STATE_IN_WORD
    index = 0
    while True:
        if hangup_ms is not None and total >= hangup_ms:
            return AmdResult("HANGUP", "", total)
        frame = samples[index : index + SAMPLES_PER_FRAME]
        index += SAMPLES_PER_FRAME
        total += FRAME_MS
        if total >= params.total_analysis_time:
            return AmdResult("NOTSURE", f"TOOLONG-{total}", total)
        if frame_is_silent(frame, params.silence_threshold):
            dsp_silence += FRAME_MS
        else:
            dsp_silence = 0
        if dsp_silence > 0:
            silence_duration = dsp_silence
            if silence_duration >= params.between_words_silence:
                in_word = False
                consecutive_voice = 0
            if in_initial_silence and silence_duration >= params.initial_silence:
                return AmdResult(
                    "MACHINE", f"INITIALSILENCE-{silence_duration}-{params.initial_silence}", total
                )
            if silence_duration >= params.after_greeting_silence and in_greeting:
                return AmdResult("HUMAN", f"HUMAN-{silence_duration}-{params.after_greeting_silence}", total)
        else:
            consecutive_voice += FRAME_MS
            voice_duration += FRAME_MS
            if consecutive_voice >= params.min_word_length and not in_word:
                words += 1
                in_word = True
            if consecutive_voice >= params.maximum_word_length:
                return AmdResult("MACHINE", f"MAXWORDLENGTH-{consecutive_voice}", total)
            if words >= params.maximum_number_of_words:
                return AmdResult("MACHINE", f"MAXWORDS-{words}-{params.maximum_number_of_words}", total)
            if in_greeting and voice_duration >= params.greeting:
                return AmdResult("MACHINE", f"LONGGREETING-{voice_duration}-{params.greeting}", total)
            if voice_duration >= params.min_word_length:
                silence_duration = 0
            if consecutive_voice >= params.min_word_length and not in_greeting:
                in_initial_silence = False
                in_greeting = True


def overlay(base: bytearray, offset_s: float, pcm: bytes, rate: int = RATE) -> None:
    """Write ``pcm`` into ``base`` (16-bit, ``rate``) from ``offset_s``, growing it as needed."""
    start = max(0, round(offset_s * rate)) * 2
    end = start + len(pcm)
    if len(base) < end:
        base.extend(bytes(end - len(base)))
    base[start:end] = pcm
