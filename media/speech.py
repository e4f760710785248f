"""What the worker says on its own, when no Realtime session can: an apology before it hangs up.

espeak-ng speaks it where installed; otherwise the caller hears the special information tone (SIT, ITU-T
E.180: 913.8, 1370.6, 1776.7 Hz), which is what a phone network plays for "this call cannot be completed",
so there is a clear signal instead of dead air. 24 kHz 16-bit LE mono PCM, like the Realtime audio.
"""

from __future__ import annotations

import functools
import logging
import subprocess

from media.pcm import WavError, espeak_pcm, find_espeak, silence, tone

logger = logging.getLogger(__name__)

APOLOGY = "Sorry, we cannot take your call right now. Please try again later. Goodbye."


def sit_tone() -> bytes:
    """The three rising SIT segments (330 ms each) and a pause, twice."""
    once = tone(913.8, 330, 6000) + tone(1370.6, 330, 6000) + tone(1776.7, 330, 6000) + silence(400)
    return once * 2


@functools.lru_cache(maxsize=8)
def apology(language: str = "en") -> bytes:
    """What the caller hears before the worker hangs up on its own (computed once per language)."""
    executable = find_espeak()
    if executable is not None:
        try:
            return espeak_pcm(executable, language or "en", APOLOGY)
        except (OSError, subprocess.SubprocessError, WavError) as exc:
            logger.warning("espeak failed (%s); the apology is the SIT tone", exc)
    return sit_tone()
