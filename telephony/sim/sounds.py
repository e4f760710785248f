"""What the simulated parties and playbacks sound like: rendered once per rate and cached."""

from __future__ import annotations

from functools import lru_cache

from . import audio


@lru_cache(maxsize=512)
def render_phrase(text: str, rate: int) -> bytes:
    return audio.phrase(text, rate)


@lru_cache(maxsize=128)
def render_tone(hz: float, seconds: float, rate: int) -> bytes:
    return audio.tone(hz, int(seconds * 1000), rate)


@lru_cache(maxsize=64)
def render_wav(path: str, rate: int) -> bytes:
    return audio.load_wav(path, rate)


def playback_seconds(scheme: str, what: str) -> float | None:
    """How long a playback lasts in the simulator (None: until stopped, as tones loop)."""
    if scheme == "tone":
        return None
    if scheme in ("digits", "characters", "number"):
        return 0.5 * len(what)
    return 1.5


def render_playback(uri: str, rate: int) -> bytes:
    scheme, _, what = uri.partition(":")
    if scheme == "tone":
        return render_tone(440.0, 1.0, rate)
    return render_phrase(what.replace("-", " ").replace("_", " "), rate)


@lru_cache(maxsize=64)
def render_greeting(text: str, seconds: float | None, rate: int) -> bytes:
    """An answering machine's greeting: ``text`` said, repeated or cut to last exactly ``seconds``."""
    if seconds is None:
        return render_phrase(text, rate)
    want = round(seconds * rate) * 2
    spoken = text.strip() or "-"
    said = render_phrase(spoken, rate)
    while len(said) < want:
        said += audio.silence(200, rate) + render_phrase(spoken, rate)
    return said[:want]
