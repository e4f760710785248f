"""Where the stand-in's audio comes from: a fixed test tone, a tone pattern, or espeak-ng.

A voice answers ``cached(text)`` at once (``None`` when it would have to synthesise) and ``render(text)``
when it may block: the server calls ``render`` in a worker thread, so the event loop never waits for
espeak-ng.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections import OrderedDict
from typing import Final, Protocol

from media.pcm import espeak_pcm

from .audio import (
    AudioClip,
    WavError,
    clip_from_pcm,
    pattern_ms,
    tone,
    tone_pattern,
)

log = logging.getLogger(__name__)

TEST_TONE_HZ: Final = 440.0
TEST_TONE_AMPLITUDE: Final = 8000
ESPEAK_TIMEOUT_S: Final = 20.0
_CACHE_SIZE: Final = 128


class Voice(Protocol):
    def cached(self, text: str) -> AudioClip | None: ...

    def render(self, text: str) -> AudioClip: ...


class ToneVoice:
    """The test voice: every reply is ``reply_ms`` of a 440 Hz tone, whatever the text."""

    def __init__(self, *, reply_ms: int, delta_ms: int) -> None:
        if reply_ms <= 0:
            raise ValueError(f"reply_ms must be positive, got {reply_ms}")
        self.clip = clip_from_pcm(tone(TEST_TONE_HZ, reply_ms, TEST_TONE_AMPLITUDE), delta_ms)

    def cached(self, text: str) -> AudioClip:
        return self.clip

    def render(self, text: str) -> AudioClip:
        return self.clip


class PatternVoice:
    """The offline fallback: a note pattern whose length follows the text (~60 ms per character)."""

    def __init__(self, *, delta_ms: int) -> None:
        self.delta_ms = delta_ms
        self._clips: dict[int, AudioClip] = {}

    def cached(self, text: str) -> AudioClip:
        ms = pattern_ms(text)
        clip = self._clips.get(ms)
        if clip is None:
            clip = self._clips[ms] = clip_from_pcm(tone_pattern(ms), self.delta_ms)
        return clip

    def render(self, text: str) -> AudioClip:
        return self.cached(text)


class EspeakVoice:
    """Speech from ``espeak-ng --stdout`` (WAV), resampled to 24 kHz and cached by text.

    Any failure (missing binary, timeout, unreadable output) falls back to the tone pattern for that text,
    with one log line, so a call always hears something.
    """

    def __init__(self, *, executable: str, delta_ms: int, voice: str = "en-us") -> None:
        self.executable = executable
        self.voice = voice
        self.delta_ms = delta_ms
        self._fallback = PatternVoice(delta_ms=delta_ms)
        self._cache: OrderedDict[str, AudioClip] = OrderedDict()
        self._lock = threading.Lock()  # render runs in worker threads

    def cached(self, text: str) -> AudioClip | None:
        with self._lock:
            clip = self._cache.get(text)
            if clip is not None:
                self._cache.move_to_end(text)
            return clip

    def render(self, text: str) -> AudioClip:
        clip = self.cached(text)
        if clip is not None:
            return clip
        try:
            clip = clip_from_pcm(self._synthesise(text), self.delta_ms)
        except (OSError, subprocess.SubprocessError, WavError) as exc:
            log.warning("espeak failed (%s); speaking a tone pattern instead", exc)
            return self._fallback.render(text)
        with self._lock:
            self._cache[text] = clip
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return clip

    def _synthesise(self, text: str) -> bytes:
        return espeak_pcm(self.executable, self.voice, text)
