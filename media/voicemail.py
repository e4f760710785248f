"""Answering machines on the media side, sans I/O: the brief's settings, a beep detector, a greeting-phrase
classifier and the per-call voicemail state machine.

The asyncio adapter (:mod:`media.call`) feeds a :class:`VoicemailMachine` with what it learns (the Stasis
app's ``amd`` reply, what a :class:`CallerListener` hears in the caller's audio, the caller's transcript
lines, when the agent was heard, when the campaign's message finished) and with the time, and carries out
the actions it returns (:class:`Release`, :class:`Silence`, :class:`Classified`, :class:`LeaveMessage`,
:class:`HangUp`). Every state change goes through :data:`TRANSITIONS`; anything else is refused.

Why these rules:

* **Holding the greeting.** With AMD on, Asterisk's ``AMD()`` listens before the agent may speak; the agent
  stays silent until the ``amd`` reply, or :data:`AMD_WAIT_S` (a person left waiting longer is the worse
  error, so the call is then treated as a human's).
* **The second opinion** (beep or greeting phrases) runs for the first :data:`MEDIA_WINDOW_S` only. A phrase
  counts only before the caller and the agent had an exchange (the caller spoke, the agent answered for a
  while, the caller spoke again): a person who says "can you leave a message for Sam" later in the
  conversation is not a machine.
* **Never over the greeting.** The message starts :data:`AFTER_BEEP_S` after a beep ends, or, without a
  beep, once the caller was silent for :data:`GREETING_END_SILENCE_S` after speaking. A machine still talking
  when ``max_wait_s`` is over gets no message (``machine_detected``); a silent one gets it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal

import numpy as np

from wire.brief import BriefError

logger = logging.getLogger(__name__)

AMD_WAIT_S: Final = 10.0  # no ``amd`` reply by then: a human (the agent speaks)
MEDIA_WINDOW_S: Final = 15.0  # the second opinion listens this long after the answer
AFTER_BEEP_S: Final = 0.3  # the message starts this long after the beep ended
GREETING_END_SILENCE_S: Final = 1.5  # caller silence after speech that ends a greeting without a beep
QUIET_TO_LEAVE_S: Final = 0.5  # at max_wait_s, the line must be at least this quiet to leave the message
MESSAGE_CAP_S: Final = 120.0  # a message that never finishes does not keep the line open
EXCHANGE_AGENT_S: Final = 1.0  # agent audio heard between two caller turns that makes an exchange
DEFAULT_MAX_WAIT_S: Final = 30.0
MAX_TEXT_CHARS: Final = 2000
_EPSILON: Final = 1e-6  # timers compare float seconds
_AUDIO_KEY = re.compile(r"^[\w:.\-]{1,200}$")


# ------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class MachineSettings:
    """The brief's ``amd``, ``voicemail`` and ``machine_detection`` keys."""

    amd_enabled: bool = False
    notsure: Literal["human", "machine"] = "human"
    action: Literal["leave_message", "hang_up"] = "hang_up"
    text: str = ""
    audio_key: str = ""
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    media: bool = True

    @property
    def has_message(self) -> bool:
        return self.action == "leave_message" and bool(self.text or self.audio_key)


def _section(extra: dict[str, Any], key: str) -> dict[str, Any]:
    value = extra.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BriefError(f"brief field {key!r} must be an object")
    return value


def _flag(section: dict[str, Any], name: str, key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise BriefError(f"brief field '{name}.{key}' must be true or false")
    return value


def _choice(section: dict[str, Any], name: str, key: str, choices: tuple[str, ...], default: str) -> str:
    value = section.get(key, default)
    if value in ("", None):
        return default
    if value not in choices:
        raise BriefError(f"brief field '{name}.{key}' must be one of {', '.join(choices)}")
    return str(value)


def parse_machine_settings(extra: dict[str, Any], *, outbound: bool) -> MachineSettings:
    """:class:`MachineSettings` from ``brief.extra``; :class:`BriefError` naming the field when invalid.

    Without a ``machine_detection`` key the second opinion is on for campaign attempts (``outbound``) and
    off for any other call (an inbound caller is never an answering machine)."""
    amd = _section(extra, "amd")
    voicemail = _section(extra, "voicemail")
    detection = _section(extra, "machine_detection")
    text = voicemail.get("text") or ""
    if not isinstance(text, str):
        raise BriefError("brief field 'voicemail.text' must be a string")
    text = " ".join(text.split())
    if len(text) > MAX_TEXT_CHARS:
        raise BriefError(f"brief field 'voicemail.text' is longer than {MAX_TEXT_CHARS} characters")
    audio_key = voicemail.get("audio_key") or ""
    if not isinstance(audio_key, str) or (audio_key and not _AUDIO_KEY.match(audio_key)):
        raise BriefError("brief field 'voicemail.audio_key' must be a Redis key name")
    max_wait = voicemail.get("max_wait_s", DEFAULT_MAX_WAIT_S)
    if max_wait is None:
        max_wait = DEFAULT_MAX_WAIT_S
    if isinstance(max_wait, bool) or not isinstance(max_wait, int | float) or not 0 < max_wait <= 300:
        raise BriefError("brief field 'voicemail.max_wait_s' must be a number of seconds in (0, 300]")
    notsure = _choice(amd, "amd", "notsure", ("human", "machine"), "human")
    action = _choice(voicemail, "voicemail", "action", ("leave_message", "hang_up"), "hang_up")
    return MachineSettings(
        amd_enabled=_flag(amd, "amd", "enabled", False),
        notsure="machine" if notsure == "machine" else "human",
        action="leave_message" if action == "leave_message" else "hang_up",
        text=text,
        audio_key=audio_key,
        max_wait_s=float(max_wait),
        media=_flag(detection, "machine_detection", "media", outbound),
    )


def amd_says(status: str, cause: str, notsure: str) -> Literal["human", "machine"] | None:
    """What Asterisk's ``AMDSTATUS``/``AMDCAUSE`` mean for the call: ``HUMAN`` and ``MACHINE`` as said,
    ``NOTSURE`` and the causes that are no real evidence (``TOOLONG``, ``INITIALSILENCE``) by the campaign's
    rule; None for ``HANGUP`` (the callee is gone) and anything unknown is taken by the rule too."""
    status = status.strip().upper()
    cause = cause.strip().upper()
    rule: Literal["human", "machine"] = "machine" if notsure == "machine" else "human"
    if status == "HANGUP":
        return None
    if status == "NOTSURE" or cause.startswith(("TOOLONG", "INITIALSILENCE")):
        return rule
    if status == "HUMAN":
        return "human"
    if status == "MACHINE":
        return "machine"
    return rule


# ------------------------------------------------------------------------------------- beep detector
BEEP_MIN_HZ: Final = 400.0
BEEP_MAX_HZ: Final = 2100.0
BEEP_MIN_S: Final = 0.2
BEEP_PURITY: Final = 0.65  # share of the window's energy within ±LOBE_HZ of the peak
BEEP_MIN_RMS: Final = 200.0  # quieter than this (about −44 dBFS) is no beep
LOBE_HZ: Final = 60.0
DRIFT_HZ: Final = 20.0  # a beep's frequency stays within this of where it started
VOICE_RMS: Final = 500.0  # a 20 ms frame louder than this is caller sound (speech, a beep)
SPEECH_START_FRAMES: Final = 3
SPEECH_HANGOVER_S: Final = 0.3
IDLE_AFTER_S: Final = 0.1  # no caller frame for this long: the caller is silent


@dataclass(frozen=True)
class BeepHeard:
    at: float  # when the tone started
    hz: float


@dataclass(frozen=True)
class BeepEnded:
    at: float
    seconds: float
    hz: float


@dataclass(frozen=True)
class SpeechStarted:
    at: float


@dataclass(frozen=True)
class SpeechStopped:
    at: float  # the end of the last loud frame


Heard = BeepHeard | BeepEnded | SpeechStarted | SpeechStopped


class BeepDetector:
    """A steady single tone of 400–2,100 Hz lasting at least 200 ms, in 16-bit mono PCM at ``rate``.

    Every 20 ms a 40 ms Hann window is analysed (zero-padded FFT): the peak must lie in the band, hold at
    least :data:`BEEP_PURITY` of the window's energy (speech spreads its energy over harmonics of a
    fundamental below 400 Hz, noise over everything) and stay within :data:`DRIFT_HZ` of where the run began
    (a voice's pitch moves from syllable to syllable)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.hop = max(1, rate // 50)
        size = 2 * self.hop
        self._window = np.hanning(size)
        self._nfft = 1 << max(10, (2 * size - 1).bit_length())  # zero-padded: ~12 Hz bins at any rate
        self._freqs = np.fft.rfftfreq(self._nfft, 1.0 / rate)
        self._lobe = max(2, int(LOBE_HZ * self._nfft / rate))
        self._last = np.zeros(self.hop)
        self._pending = np.zeros(0)
        self._run_hz = 0.0
        self._run_hops = 0
        self._run_start = 0.0
        self._reported = False

    def tonal(self, samples: np.ndarray) -> float | None:
        """The tone's frequency when ``samples`` (one window) is a single in-band tone, else None."""
        if float(np.sqrt(np.mean(samples * samples))) < BEEP_MIN_RMS:
            return None
        power = np.abs(np.fft.rfft(samples * self._window, self._nfft)) ** 2
        power[0] = 0.0
        total = float(power.sum())
        if total <= 0.0:
            return None
        peak = int(power.argmax())
        hz = float(self._freqs[peak])
        if not BEEP_MIN_HZ <= hz <= BEEP_MAX_HZ:
            return None
        lobe = float(power[max(0, peak - self._lobe) : peak + self._lobe + 1].sum())
        return hz if lobe / total >= BEEP_PURITY else None

    def feed(self, pcm: bytes, now: float) -> list[BeepHeard | BeepEnded]:
        """Caller audio that ends at ``now``; the beeps that started or ended in it."""
        usable = len(pcm) - len(pcm) % 2
        fresh = np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float64)
        data = np.concatenate((self._pending, fresh)) if self._pending.size else fresh
        out: list[BeepHeard | BeepEnded] = []
        hops = data.size // self.hop
        for index in range(hops):
            hop = data[index * self.hop : (index + 1) * self.hop]
            at = now - (data.size - (index + 1) * self.hop) / self.rate  # the end of this hop
            hz = self.tonal(np.concatenate((self._last, hop)))
            self._last = hop
            out.extend(self._step(hz, at))
        self._pending = data[hops * self.hop :].copy()
        return out

    def _step(self, hz: float | None, at: float) -> list[BeepHeard | BeepEnded]:
        hop_s = self.hop / self.rate
        if hz is not None and self._run_hops and abs(hz - self._run_hz) <= DRIFT_HZ:
            self._run_hops += 1
        else:
            ended = self._end_run(at - 2 * hop_s)
            if hz is None:
                return ended
            # A new run: the window is 40 ms, so the tone began within the previous hop.
            self._run_hz, self._run_hops, self._run_start, self._reported = hz, 1, at - 2 * hop_s, False
            return ended
        # Windows overlap the tone by one hop more than it lasts: n tonal hops ≈ (n − 1) hops of tone.
        if not self._reported and (self._run_hops - 1) * hop_s >= BEEP_MIN_S - 1e-9:
            self._reported = True
            return [BeepHeard(at=self._run_start + hop_s, hz=round(self._run_hz, 1))]
        return []

    def flush(self, at: float) -> list[BeepHeard | BeepEnded]:
        """No audio came after ``at`` (a silent caller sends no frames at all): a beep in progress ended."""
        self._last = np.zeros(self.hop)
        self._pending = np.zeros(0)
        return self._end_run(at)

    def _end_run(self, at: float) -> list[BeepHeard | BeepEnded]:
        reported, start, hz = self._reported, self._run_start + self.hop / self.rate, self._run_hz
        self._run_hops, self._reported = 0, False
        if not reported:
            return []
        return [BeepEnded(at=at, seconds=round(at - start, 3), hz=round(hz, 1))]


class CallerListener:
    """What the voicemail machine needs to hear in the caller's audio: beeps, and when the caller (a person
    or a greeting) makes sound and stops. The rate is the call's own (AudioSocket kind)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.beeps = BeepDetector(rate)
        self.speaking = False
        self._loud_frames = 0
        self._last_loud_at = 0.0
        self._fed_at: float | None = None

    def feed(self, pcm: bytes, now: float) -> list[Heard]:
        self._fed_at = now
        out: list[Heard] = list(self.beeps.feed(pcm, now))
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
        loud = bool(samples.size) and float(np.sqrt(np.mean(samples * samples))) > VOICE_RMS
        if loud:
            self._loud_frames += 1
            self._last_loud_at = now
            if not self.speaking and self._loud_frames >= SPEECH_START_FRAMES:
                self.speaking = True
                out.append(SpeechStarted(now - SPEECH_START_FRAMES * len(pcm) / 2 / self.rate))
        else:
            self._loud_frames = 0
            if self.speaking and now - self._last_loud_at >= SPEECH_HANGOVER_S:
                self.speaking = False
                out.append(SpeechStopped(self._last_loud_at))
        return out

    def idle(self, now: float) -> list[Heard]:
        """Called from the call's timers: Asterisk sends no frames while the caller is silent (PROTOCOLS.md
        A7), so the end of a beep or of speech may come with no audio at all to show it."""
        fed = self._fed_at
        if fed is None or now - fed < IDLE_AFTER_S:
            return []
        self._fed_at = None
        out: list[Heard] = list(self.beeps.flush(fed))
        self._loud_frames = 0
        if self.speaking:
            self.speaking = False
            out.append(SpeechStopped(self._last_loud_at))
        return out


# ------------------------------------------------------------------------------ greeting phrases
# A phrase a voicemail greeting says and a person answering the phone practically never does first.
_STRONG: Final = tuple(
    re.compile(p)
    for p in (
        r"\b(leave|record)\s+(me\s+|us\s+)?(a|your|a\s+brief|a\s+short|a\s+detailed)\s+(voice\s*)?message\b",
        r"\b(after|at)\s+the\s+(tone|beep|signal)\b",
        r"\bvoice\s*-?\s*mail\b",
        r"\bmail\s*box\b",
        r"\banswering\s+machine\b",
        r"\bnot\s+available\s+to\s+take\s+your\s+call\b",
        r"\b(can't|cannot|can\s+not|unable\s+to)\s+(come\s+to|get\s+to|answer)\s+the\s+phone\b",
        r"\b(can't|cannot|can\s+not|unable\s+to)\s+take\s+your\s+call\b",
    )
)
# Phrases that need a second one (weak or strong) to count.
_WEAK: Final = tuple(
    re.compile(p)
    for p in (
        r"\b(is|am|are)\s+(not\s+available|unavailable)\b",
        r"\byou\s*('ve|\s+have)\s+reached\b",
        r"\bplease\s+leave\b",
        r"\b(get|call)\s+(back\s+to\s+you|you\s+back)\b",
        r"\bas\s+soon\s+as\s+possible\b",
        r"\bname\s+and\s+(phone\s+)?number\b",
        r"\baway\s+from\s+(my|the)\s+(desk|phone)\b",
    )
)


def greeting_score(text: str) -> int:
    """2 for a strong voicemail phrase, 1 per weak one (at most 2 in all)."""
    folded = " ".join(text.casefold().replace("’", "'").split())
    if any(p.search(folded) for p in _STRONG):
        return 2
    return min(2, sum(1 for p in _WEAK if p.search(folded)))


def sounds_like_voicemail(text: str) -> bool:
    """Whether a caller's words are a voicemail greeting (conservative: see the module docstring)."""
    return greeting_score(text) >= 2


# ------------------------------------------------------------------------------------- state machine
class State(StrEnum):
    AWAITING_AMD = "awaiting_amd"  # the agent's greeting is held until AMD says who answered
    HUMAN = "human"  # the agent talks (the second opinion may still re-classify)
    MACHINE_WAIT_BEEP = "machine_wait_beep"  # a machine: silent until its beep or the end of its greeting
    LEAVING_MESSAGE = "leaving_message"
    DONE = "done"


class Input(StrEnum):
    AMD_HUMAN = "amd_human"
    AMD_MACHINE = "amd_machine"
    AMD_TIMEOUT = "amd_timeout"
    MEDIA_MACHINE = "media_machine"  # a beep or a greeting phrase
    GREETING_OVER = "greeting_over"  # the beep ended, or the greeting did
    GIVE_UP = "give_up"  # no message to leave, or the greeting never ended
    MESSAGE_DONE = "message_done"
    MESSAGE_TIMEOUT = "message_timeout"


#: Every state change of the voicemail machine; any other (state, input) pair is refused and logged.
TRANSITIONS: Final[dict[tuple[State, Input], State]] = {
    (State.AWAITING_AMD, Input.AMD_HUMAN): State.HUMAN,
    (State.AWAITING_AMD, Input.AMD_TIMEOUT): State.HUMAN,
    (State.AWAITING_AMD, Input.AMD_MACHINE): State.MACHINE_WAIT_BEEP,
    (State.AWAITING_AMD, Input.MEDIA_MACHINE): State.MACHINE_WAIT_BEEP,
    (State.HUMAN, Input.MEDIA_MACHINE): State.MACHINE_WAIT_BEEP,
    (State.HUMAN, Input.AMD_MACHINE): State.MACHINE_WAIT_BEEP,  # a late reply, after AMD_WAIT_S
    (State.MACHINE_WAIT_BEEP, Input.GREETING_OVER): State.LEAVING_MESSAGE,
    (State.MACHINE_WAIT_BEEP, Input.GIVE_UP): State.DONE,
    (State.LEAVING_MESSAGE, Input.MESSAGE_DONE): State.DONE,
    (State.LEAVING_MESSAGE, Input.MESSAGE_TIMEOUT): State.DONE,
}


@dataclass(frozen=True)
class Release:
    """Let the agent speak: its greeting now."""


@dataclass(frozen=True)
class Silence:
    """A machine: cancel whatever the agent says and keep it silent for the rest of the call."""


@dataclass(frozen=True)
class Classified:
    answered_by: Literal["human", "machine"]
    source: Literal["amd", "beep", "greeting"]
    at: float


@dataclass(frozen=True)
class LeaveMessage:
    """Play the campaign's recorded message or say its text; then :meth:`VoicemailMachine.message_done`."""


@dataclass(frozen=True)
class HangUp:
    reason: str  # voicemail_left | machine_detected | voicemail_timeout


MachineAction = Release | Silence | Classified | LeaveMessage | HangUp


@dataclass
class VoicemailMachine:
    """One call's voicemail logic; see the module docstring. Times are the adapter's monotonic seconds."""

    settings: MachineSettings
    started_at: float
    state: State = State.HUMAN
    answered_by: str = ""  # human | machine | "" (undecided)
    source: str = ""  # amd | beep | greeting, for a machine
    amd_status: str = ""
    amd_cause: str = ""
    refused: list[str] = field(default_factory=list)
    machine_at: float | None = None
    message_started_at: float | None = None
    _beep_on: bool = False
    _beep_ended_at: float | None = None
    _speaking: bool = False
    _last_sound_at: float | None = None  # the end of the caller's latest sound
    _caller_turns: int = 0
    _agent_heard_s: float = 0.0  # agent audio since the caller's latest turn began
    _exchanged: bool = False
    _message_done: bool = False

    def __post_init__(self) -> None:
        if self.settings.amd_enabled:
            self.state = State.AWAITING_AMD

    # ----------------------------------------------------------------------------------- queries
    @property
    def holding(self) -> bool:
        """The agent must not speak on its own (before AMD, and for a machine)."""
        return self.state is not State.HUMAN

    def listens(self, now: float) -> bool:
        """Whether the caller's audio still matters (the adapter skips the detector otherwise)."""
        if self.state in (State.AWAITING_AMD, State.MACHINE_WAIT_BEEP):
            return True
        return self.state is State.HUMAN and self._in_window(now)

    def _in_window(self, now: float) -> bool:
        return self.settings.media and now - self.started_at < MEDIA_WINDOW_S

    @property
    def voicemail_left(self) -> bool:
        return self._message_done

    # ------------------------------------------------------------------------------- transitions
    def _go(self, what: Input) -> bool:
        target = TRANSITIONS.get((self.state, what))
        if target is None:
            self.refused.append(f"{what} in {self.state}")
            logger.info("voicemail: %s refused in state %s", what, self.state)
            return False
        self.state = target
        return True

    def _machine(
        self, what: Input, source: Literal["amd", "beep", "greeting"], now: float
    ) -> list[MachineAction]:
        if not self._go(what):
            return []
        self.answered_by, self.source, self.machine_at = "machine", source, now
        actions: list[MachineAction] = [Silence(), Classified("machine", source, now)]
        if not self.settings.has_message:
            self._go(Input.GIVE_UP)
            actions.append(HangUp("machine_detected"))
        return actions

    # ------------------------------------------------------------------------------------ inputs
    def amd(self, status: str, cause: str, now: float) -> list[MachineAction]:
        """The Stasis app's ``amd`` reply."""
        self.amd_status, self.amd_cause = status, cause
        verdict = amd_says(status, cause, self.settings.notsure)
        if verdict == "machine":
            return self._machine(Input.AMD_MACHINE, "amd", now)
        if verdict == "human" and self.state is State.AWAITING_AMD and self._go(Input.AMD_HUMAN):
            self.answered_by = "human"
            return [Release(), Classified("human", "amd", now)]
        return []

    def heard(self, events: list[Heard], now: float) -> list[MachineAction]:
        """What a :class:`CallerListener` heard."""
        actions: list[MachineAction] = []
        for event in events:
            if isinstance(event, BeepHeard):
                self._beep_on = True
                if self.state in (State.AWAITING_AMD, State.HUMAN) and self._in_window(event.at):
                    actions += self._machine(Input.MEDIA_MACHINE, "beep", now)
            elif isinstance(event, BeepEnded):
                self._beep_on = False
                self._beep_ended_at = event.at
                self._last_sound_at = event.at
            elif isinstance(event, SpeechStarted):
                self._speaking = True
                if self._caller_turns and self._agent_heard_s >= EXCHANGE_AGENT_S:
                    self._exchanged = True
                self._caller_turns += 1
                self._agent_heard_s = 0.0
            else:
                self._speaking = False
                self._last_sound_at = event.at
        return actions + self.tick(now)

    def caller_said(self, text: str, now: float) -> list[MachineAction]:
        """A caller transcript line."""
        if self.state not in (State.AWAITING_AMD, State.HUMAN) or self._exchanged or not self._in_window(now):
            return []
        if sounds_like_voicemail(text):
            return self._machine(Input.MEDIA_MACHINE, "greeting", now)
        return []

    def agent_heard(self, seconds: float) -> None:
        """``seconds`` of agent audio reached the caller (for the exchange rule)."""
        self._agent_heard_s += seconds

    def message_started(self, now: float) -> None:
        if self.message_started_at is None:
            self.message_started_at = now

    def message_done(self, now: float) -> list[MachineAction]:
        if self.state is State.LEAVING_MESSAGE and self._go(Input.MESSAGE_DONE):
            self._message_done = True
            return [HangUp("voicemail_left")]
        return []

    def tick(self, now: float) -> list[MachineAction]:
        """The timers: the AMD wait, the end of a greeting, ``max_wait_s``, the message's cap."""
        state = self.state
        if (
            state is State.AWAITING_AMD
            and now - self.started_at >= AMD_WAIT_S
            and self._go(Input.AMD_TIMEOUT)
        ):
            self.answered_by = "human"
            return [Release(), Classified("human", "amd", now)]
        if state is State.MACHINE_WAIT_BEEP:
            if self._greeting_over(now):
                self._go(Input.GREETING_OVER)
                return [LeaveMessage()]
            assert self.machine_at is not None  # noqa: S101 - set on the way in
            if now - self.machine_at >= self.settings.max_wait_s - _EPSILON:
                quiet = not self._speaking and not self._beep_on
                quiet_since = self._last_sound_at if self._last_sound_at is not None else self.started_at
                if quiet and now - quiet_since >= QUIET_TO_LEAVE_S:
                    self._go(Input.GREETING_OVER)
                    return [LeaveMessage()]
                self._go(Input.GIVE_UP)
                return [HangUp("machine_detected")]
        if (
            state is State.LEAVING_MESSAGE
            and self.machine_at is not None
            and now - self.machine_at >= self.settings.max_wait_s + MESSAGE_CAP_S
            and self._go(Input.MESSAGE_TIMEOUT)
        ):
            return [HangUp("voicemail_timeout")]
        return []

    def _greeting_over(self, now: float) -> bool:
        if self._beep_on or self._speaking:
            return False
        if self._beep_ended_at is not None:
            return now - self._beep_ended_at >= AFTER_BEEP_S - _EPSILON
        return (
            self._last_sound_at is not None and now - self._last_sound_at >= GREETING_END_SILENCE_S - _EPSILON
        )

    def report(self) -> dict[str, Any]:
        """The end-of-call report's fields."""
        return {
            "answered_by": self.answered_by or ("unknown" if self.state is State.AWAITING_AMD else "human"),
            "machine_source": self.source,
            "voicemail_left": self.voicemail_left,
            "amd_status": self.amd_status,
            "amd_cause": self.amd_cause,
        }
