"""The Realtime GA protocol core of the stand-in, without I/O (PROTOCOLS.md §6).

A :class:`Session` takes client events (raw JSON text or parsed dicts) with the current monotonic time and
returns the server events to send, in order. Audio replies are paced by time: :attr:`Session.next_deadline`
says when :meth:`Session.tick` has the next delta ready, and the adapter calls it then. When the voice has
to synthesise (espeak-ng), :meth:`Session.take_synthesis` hands the adapter the texts to render off the
event loop, and :meth:`Session.audio_ready` resumes the waiting response.

Behaviour copied from the real API because clients depend on it:

* no acknowledgement for ``input_audio_buffer.append``;
* a second ``response.create`` during a response is an error (``conversation_already_has_active_response``);
* ``response.cancel`` with nothing in progress is a harmless error;
* server VAD with ``interrupt_response`` cancels the response in progress when speech starts (status
  ``cancelled``, reason ``turn_detected``) and no delta of it follows; nothing else cancels by itself (a
  text item such as a key press does not: the client sends ``response.cancel``);
* ``conversation.item.truncate`` past the audio already sent fails with "Audio content of N ms is already
  shorter than M ms";
* most errors leave the session open, and echo the client's ``event_id``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from wire.caption import CaptionReader

from .audio import BYTES_PER_MS, AudioClip
from .policy import CallTool, Context, Policy
from .vad import EnergyVad, rms_threshold_for
from .voices import Voice

Event = dict[str, Any]

CLIENT_EVENTS: Final = frozenset(
    {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "conversation.item.delete",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    }
)

# "session.update" → "_on_session_update": computed once, not per event (appends arrive 50 times a second).
_HANDLERS: Final = {name: "_on_" + name.replace(".", "_") for name in CLIENT_EVENTS}

PCM_FORMAT: Final[dict[str, Any]] = {"type": "audio/pcm", "rate": 24000}
SERVER_VAD_DEFAULTS: Final[dict[str, Any]] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: Final[dict[str, Any]] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
# semantic_vad is emulated as energy VAD that waits a little longer the less eager it is.
SEMANTIC_SILENCE_MS: Final = {"high": 400, "medium": 700, "auto": 700, "low": 1000}
VOICES: Final = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)

_SESSION_KEYS: Final = frozenset(
    {
        "type",
        "model",
        "instructions",
        "output_modalities",
        "audio",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "tracing",
        "truncation",
        "prompt",
        "include",
        "reasoning",
        "parallel_tool_calls",
        # read-only fields a client may echo back from session.created
        "id",
        "object",
        "expires_at",
    }
)
_AUDIO_INPUT_KEYS: Final = frozenset({"format", "noise_reduction", "transcription", "turn_detection"})
_AUDIO_OUTPUT_KEYS: Final = frozenset({"format", "voice", "speed"})
_MIN_COMMIT_MS: Final = 100
_RATE_LIMITS: Final = [
    {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
    {"name": "tokens", "limit": 40000, "remaining": 38000, "reset_seconds": 3.0},
]


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """How the stand-in behaves (fixed per server, not per connection)."""

    delta_ms: int = 100
    speed: float = 10.0  # real-time factor of audio delivery; 0 = as fast as possible
    latency_ms: int = 0  # from response.create to its first audio delta
    fail_session_update: bool = False


class ProtocolError(Exception):
    """A client event the server answers with an ``error`` event (the session stays open)."""

    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


@dataclass(slots=True)
class _Item:
    """The server's copy of a conversation item, plus what the stand-in needs to know about it."""

    data: Event
    sent_bytes: int = 0  # assistant audio sent for this item so far


@dataclass(slots=True)
class _Response:
    id: str
    data: Event
    item_id: str
    text: str
    clip: AudioClip | None = None  # None while the voice renders it
    next_index: int = 0
    started_at: float = 0.0
    first_at: float = 0.0
    words: list[str] = field(default_factory=list)
    words_sent: int = 0
    text_mode: bool = False

    def due(self, index: int, interval: float) -> float:
        return self.first_at + index * interval


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def default_session(model: str, session_id: str) -> Event:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": dict(PCM_FORMAT),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(SERVER_VAD_DEFAULTS),
            },
            "output": {"format": dict(PCM_FORMAT), "voice": "alloy", "speed": 1.0},
        },
    }


class Session:
    """One Realtime connection's state machine. Not thread-safe; one adapter drives it."""

    def __init__(
        self,
        *,
        policy: Policy,
        voice: Voice,
        settings: SessionSettings | None = None,
        model: str = "gpt-realtime",
    ) -> None:
        self.settings = settings or SessionSettings()
        self.policy = policy
        self.voice = voice
        self._prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self.config: Event = default_session(model, self._new_id("sess"))
        self.items: dict[str, _Item] = {}  # insertion order is the conversation order
        self.response: _Response | None = None
        self._vad: EnergyVad | None = None
        self._configure_vad()
        self._buffer_bytes = 0  # input audio since the last commit/clear
        self._appended_bytes = 0  # all input audio: the input timeline
        # No speech recognition: a simulated caller's words ride inside its audio (wire/caption.py) and
        # become the text of the user item they were said in.
        self._caption = CaptionReader()
        self._captions: dict[str, str] = {}  # user audio item id -> the words said in it
        self._last_caption: str | None = None
        self._speech_item_id: str | None = None
        self._speech_started_ms: int | None = None
        self._audio_started = False  # voice is fixed once assistant audio exists
        self._synthesis: list[str] = []
        # Records for tests and logs.
        self.received: Counter[str] = Counter()
        self.received_order: list[str] = []  # client event types in arrival order, appends left out
        self.sent: Counter[str] = Counter()
        self.truncations: list[Event] = []
        self.cancellations: list[Event] = []
        self.errors: list[Event] = []
        self.function_calls: list[Event] = []

    # ------------------------------------------------------------------------------------------ ids, events

    def _new_id(self, kind: str) -> str:
        return f"{kind}_{self._prefix}{next(self._ids):06d}"

    def _event(self, type_: str, **fields: Any) -> Event:
        self.sent[type_] += 1
        return {"type": type_, "event_id": self._new_id("event"), **fields}

    def _error(
        self, message: str, *, code: str, param: str | None, event_id: str | None, type_: str
    ) -> Event:
        error = {"type": type_, "code": code, "message": message, "param": param, "event_id": event_id}
        self.errors.append(error)
        return self._event("error", error=error)

    # ------------------------------------------------------------------------------------------ public API

    def start(self) -> list[Event]:
        return [self._event("session.created", session=copy.deepcopy(self.config))]

    @property
    def next_deadline(self) -> float | None:
        r = self.response
        if r is None or r.clip is None:
            return None
        interval = self._interval()
        return r.due(r.next_index, interval)

    def take_synthesis(self) -> list[str]:
        texts, self._synthesis = self._synthesis, []
        return texts

    def receive(self, raw: str | bytes, now: float) -> list[Event]:
        """Handle one WebSocket message."""
        try:
            event = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self.received["<invalid json>"] += 1
            return [
                self._error(
                    f"Invalid JSON: {exc}",
                    code="invalid_json",
                    param=None,
                    event_id=None,
                    type_="invalid_request_error",
                )
            ]
        if not isinstance(event, dict):
            self.received["<not an object>"] += 1
            return [
                self._error(
                    "A client event must be a JSON object.",
                    code="invalid_json",
                    param=None,
                    event_id=None,
                    type_="invalid_request_error",
                )
            ]
        return self.handle(event, now)

    def handle(self, event: Event, now: float) -> list[Event]:
        """Handle one parsed client event."""
        type_ = event.get("type")
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        name = type_ if isinstance(type_, str) else "<no type>"
        self.received[name] += 1
        if name != "input_audio_buffer.append":  # appends are only counted: 50 a second would pile up
            self.received_order.append(name)
        try:
            if not isinstance(type_, str):
                raise ProtocolError(
                    "Missing required parameter: 'type'.", code="missing_required_parameter", param="type"
                )
            if type_ not in CLIENT_EVENTS:
                raise ProtocolError(
                    f"Invalid value: '{type_}'. Supported values are: {', '.join(sorted(CLIENT_EVENTS))}.",
                    code="invalid_value",
                    param="type",
                )
            handler = getattr(self, _HANDLERS[type_])
            out: list[Event] = handler(event, now)
            return out
        except ProtocolError as exc:
            return [
                self._error(
                    exc.message,
                    code=exc.code,
                    param=exc.param,
                    event_id=event_id,
                    type_="invalid_request_error",
                )
            ]

    def tick(self, now: float) -> list[Event]:
        """Send what is due of the response in progress."""
        r = self.response
        if r is None or r.clip is None:
            return []
        out: list[Event] = []
        interval = self._interval()
        n = len(r.clip.chunks)
        item = self.items.get(r.item_id)
        while r.next_index < n and r.due(r.next_index, interval) <= now:
            i = r.next_index
            out.append(
                self._event(
                    "response.output_audio.delta",
                    response_id=r.id,
                    item_id=r.item_id,
                    output_index=0,
                    content_index=0,
                    delta=r.clip.chunks[i],
                )
            )
            if item is not None:
                item.sent_bytes += r.clip.chunk_bytes[i]
            r.next_index = i + 1
            # Spread the transcript over the audio: word k goes out with delta ⌊k·n/words⌋.
            upto = len(r.words) if r.next_index == n else (r.next_index * len(r.words)) // n
            if upto > r.words_sent:
                piece = " ".join(r.words[r.words_sent : upto])
                if r.words_sent:
                    piece = " " + piece
                r.words_sent = upto
                out.append(
                    self._event(
                        "response.output_audio_transcript.delta",
                        response_id=r.id,
                        item_id=r.item_id,
                        output_index=0,
                        content_index=0,
                        delta=piece,
                    )
                )
        if r.next_index >= n:
            out.extend(self._finish_audio(r))
        return out

    def audio_ready(self, text: str, clip: AudioClip, now: float) -> list[Event]:
        """The voice rendered ``text``; start streaming it if a response is still waiting for it."""
        r = self.response
        if r is None or r.clip is not None or r.text != text:
            return []
        self._begin_audio(r, clip, now)
        return self.tick(now)

    # ------------------------------------------------------------------------------------------ session

    def _interval(self) -> float:
        speed = self.settings.speed
        return 0.0 if speed <= 0 else self.settings.delta_ms / 1000.0 / speed

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        td: dict[str, Any] | None = self.config["audio"]["input"]["turn_detection"]
        return td

    def _configure_vad(self) -> None:
        td = self.turn_detection
        if td is None:
            self._vad = None
            return
        if td["type"] == "semantic_vad":
            silence = SEMANTIC_SILENCE_MS.get(td.get("eagerness", "auto"), 700)
            threshold = 0.5
        else:
            silence = int(td.get("silence_duration_ms", 500))
            threshold = float(td.get("threshold", 0.5))
        vad = EnergyVad(rms_threshold=rms_threshold_for(threshold), silence_ms=silence)
        if self._vad is not None:  # keep the input timeline across reconfiguration
            vad._samples = self._vad._samples
        self._vad = vad

    def _on_session_update(self, event: Event, now: float) -> list[Event]:
        if self.settings.fail_session_update:
            return [
                self._error(
                    "The server failed to apply the session update (stand-in --fail-session-update).",
                    code="session_update_failed",
                    param=None,
                    event_id=event.get("event_id"),
                    type_="server_error",
                )
            ]
        update = event.get("session")
        if not isinstance(update, dict):
            raise ProtocolError(
                "Missing required parameter: 'session'.", code="missing_required_parameter", param="session"
            )
        kind = update.get("type")
        if kind is None:
            raise ProtocolError(
                "Missing required parameter: 'session.type'.",
                code="missing_required_parameter",
                param="session.type",
            )
        if kind != "realtime":
            raise ProtocolError(
                f"Invalid value: '{kind}'. This server supports only 'realtime' sessions.",
                param="session.type",
            )
        new = copy.deepcopy(self.config)
        self._apply_update(new, update)
        self.config = new
        self._configure_vad()
        return [self._event("session.updated", session=copy.deepcopy(self.config))]

    def _apply_update(self, new: Event, update: Event) -> None:
        for key in update:
            if key not in _SESSION_KEYS:
                raise ProtocolError(
                    f"Unknown parameter: 'session.{key}'.", code="unknown_parameter", param=f"session.{key}"
                )
        for key in (
            "instructions",
            "tool_choice",
            "max_output_tokens",
            "tracing",
            "truncation",
            "prompt",
            "include",
        ):
            if key in update:
                new[key] = copy.deepcopy(update[key])
        if "instructions" in update and not isinstance(update["instructions"], str):
            raise ProtocolError("'session.instructions' must be a string.", param="session.instructions")
        if "output_modalities" in update:
            mods = update["output_modalities"]
            if mods not in (["audio"], ["text"]):
                raise ProtocolError(
                    'Invalid \'session.output_modalities\': use ["audio"] or ["text"].',
                    param="session.output_modalities",
                )
            new["output_modalities"] = list(mods)
        if "tools" in update:
            new["tools"] = self._validate_tools(update["tools"], "session.tools")
        audio = update.get("audio")
        if audio is None:
            return
        if not isinstance(audio, dict):
            raise ProtocolError("'session.audio' must be an object.", param="session.audio")
        for key in audio:
            if key not in ("input", "output"):
                raise ProtocolError(
                    f"Unknown parameter: 'session.audio.{key}'.",
                    code="unknown_parameter",
                    param=f"session.audio.{key}",
                )
        inp = audio.get("input") or {}
        out = audio.get("output") or {}
        for section, keys, name in ((inp, _AUDIO_INPUT_KEYS, "input"), (out, _AUDIO_OUTPUT_KEYS, "output")):
            if not isinstance(section, dict):
                raise ProtocolError(
                    f"'session.audio.{name}' must be an object.", param=f"session.audio.{name}"
                )
            for key in section:
                if key not in keys:
                    raise ProtocolError(
                        f"Unknown parameter: 'session.audio.{name}.{key}'.",
                        code="unknown_parameter",
                        param=f"session.audio.{name}.{key}",
                    )
            if "format" in section:
                fmt = section["format"]
                if (
                    not isinstance(fmt, dict)
                    or fmt.get("type") != "audio/pcm"
                    or fmt.get("rate", 24000) != 24000
                ):
                    raise ProtocolError(
                        "This stand-in supports only {'type': 'audio/pcm', 'rate': 24000}.",
                        param=f"session.audio.{name}.format",
                    )
                new["audio"][name]["format"] = dict(PCM_FORMAT)
        for key in ("noise_reduction", "transcription"):
            if key in inp:
                new["audio"]["input"][key] = copy.deepcopy(inp[key])
        if "turn_detection" in inp:
            new["audio"]["input"]["turn_detection"] = self._turn_detection(
                inp["turn_detection"], new["audio"]["input"]["turn_detection"]
            )
        if "voice" in out:
            voice = out["voice"]
            if not (voice in VOICES or (isinstance(voice, dict) and isinstance(voice.get("id"), str))):
                raise ProtocolError(
                    f"Invalid value: '{voice}'. Unknown voice.", param="session.audio.output.voice"
                )
            if self._audio_started and voice != new["audio"]["output"]["voice"]:
                raise ProtocolError(
                    "Cannot update a conversation's voice if assistant audio is present.",
                    code="cannot_update_voice",
                    param="session.audio.output.voice",
                )
            new["audio"]["output"]["voice"] = voice
        if "speed" in out:
            speed = out["speed"]
            if not isinstance(speed, int | float) or not 0.25 <= speed <= 1.5:
                raise ProtocolError(
                    "'session.audio.output.speed' must be within 0.25..1.5.",
                    param="session.audio.output.speed",
                )
            new["audio"]["output"]["speed"] = speed

    @staticmethod
    def _turn_detection(td: Any, current: dict[str, Any] | None) -> dict[str, Any] | None:
        param = "session.audio.input.turn_detection"
        if td is None:
            return None
        if not isinstance(td, dict):
            raise ProtocolError(f"'{param}' must be an object or null.", param=param)
        kind = td.get("type", current["type"] if current else None)
        if kind == "server_vad":
            base = dict(current) if current and current["type"] == "server_vad" else dict(SERVER_VAD_DEFAULTS)
        elif kind == "semantic_vad":
            base = (
                dict(current)
                if current and current["type"] == "semantic_vad"
                else dict(SEMANTIC_VAD_DEFAULTS)
            )
        else:
            raise ProtocolError(
                f"Invalid value: '{kind}'. Supported values are: 'server_vad' and 'semantic_vad'.",
                param=f"{param}.type",
            )
        allowed = set(SERVER_VAD_DEFAULTS if kind == "server_vad" else SEMANTIC_VAD_DEFAULTS)
        for key, value in td.items():
            if key not in allowed:
                raise ProtocolError(
                    f"Unknown parameter: '{param}.{key}'.", code="unknown_parameter", param=f"{param}.{key}"
                )
            base[key] = value
        if kind == "server_vad":
            threshold = base["threshold"]
            if not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
                raise ProtocolError(f"'{param}.threshold' must be within 0..1.", param=f"{param}.threshold")
            for key in ("silence_duration_ms", "prefix_padding_ms"):
                if not isinstance(base[key], int) or base[key] < 0:
                    raise ProtocolError(
                        f"'{param}.{key}' must be a non-negative integer.", param=f"{param}.{key}"
                    )
        elif base.get("eagerness") not in SEMANTIC_SILENCE_MS:
            raise ProtocolError(
                f"'{param}.eagerness' must be low, medium, high or auto.", param=f"{param}.eagerness"
            )
        return base

    @staticmethod
    def _validate_tools(tools: Any, param: str) -> list[Any]:
        if not isinstance(tools, list):
            raise ProtocolError(f"'{param}' must be a list.", param=param)
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type", "function") not in ("function", "mcp"):
                raise ProtocolError(f"'{param}[{i}]' must be a function tool.", param=f"{param}[{i}]")
            if tool.get("type", "function") == "function" and not isinstance(tool.get("name"), str):
                raise ProtocolError(
                    f"Missing required parameter: '{param}[{i}].name'.",
                    code="missing_required_parameter",
                    param=f"{param}[{i}].name",
                )
        return copy.deepcopy(tools)

    # ------------------------------------------------------------------------------------------ input audio

    def _on_input_audio_buffer_append(self, event: Event, now: float) -> list[Event]:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise ProtocolError(
                "Missing required parameter: 'audio'.", code="missing_required_parameter", param="audio"
            )
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(f"Invalid 'audio': not base64 ({exc}).", param="audio") from exc
        self._buffer_bytes += len(pcm)
        self._appended_bytes += len(pcm)
        self._caption.feed(pcm)  # (the media worker appends one 20 ms frame at a time)
        if self._vad is None:
            return []
        out: list[Event] = []
        for transition in self._vad.feed(pcm):
            if transition.kind == "started":
                out.extend(self._speech_started(transition.ms, now))
            else:
                out.extend(self._speech_stopped(transition.ms, now))
        return out

    def _speech_started(self, ms: int, now: float) -> list[Event]:
        self._speech_item_id = self._new_id("item")
        self._speech_started_ms = ms
        out = [
            self._event("input_audio_buffer.speech_started", audio_start_ms=ms, item_id=self._speech_item_id)
        ]
        td = self.turn_detection
        if self.response is not None and td is not None and td.get("interrupt_response", True):
            out.extend(self._cancel(self.response, "turn_detected"))
        return out

    def _speech_stopped(self, ms: int, now: float) -> list[Event]:
        item_id = self._speech_item_id or self._new_id("item")
        self._speech_item_id = None
        out = [self._event("input_audio_buffer.speech_stopped", audio_end_ms=ms, item_id=item_id)]
        started = self._speech_started_ms
        out.extend(self._commit(item_id, ms - started if started is not None else ms))
        td = self.turn_detection
        if self.response is None and td is not None and td.get("create_response", True):
            out.extend(self._start_response({}, now))
        return out

    def _commit(self, item_id: str, speech_ms: int) -> list[Event]:
        previous = next(reversed(self.items), None)
        item: Event = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.items[item_id] = _Item(item)
        self._buffer_bytes = 0
        words = self._caption.text
        if words is not None and words != self._last_caption:  # (a long phrase spans several turns)
            self._captions[item_id] = self._last_caption = words
        self._caption.reset()
        out = [
            self._event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous),
            self._event("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)),
            self._event("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item)),
        ]
        if self.config["audio"]["input"]["transcription"] is not None:
            # No speech recognition here: the caption, else a placeholder that lets clients exercise their
            # caller-transcript path.
            transcript = self._captions.get(item_id) or f"[caller speech, {speech_ms} ms]"
            item["content"][0]["transcript"] = transcript
            out.append(
                self._event(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=item_id,
                    content_index=0,
                    transcript=transcript,
                )
            )
        return out

    def _on_input_audio_buffer_commit(self, event: Event, now: float) -> list[Event]:
        buffered_ms = self._buffer_bytes / BYTES_PER_MS
        if buffered_ms < _MIN_COMMIT_MS:
            raise ProtocolError(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {buffered_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
                param=None,
            )
        if self._vad is not None:
            self._vad.reset()
        item_id = self._speech_item_id or self._new_id("item")
        self._speech_item_id = None
        return self._commit(item_id, int(buffered_ms))

    def _on_input_audio_buffer_clear(self, event: Event, now: float) -> list[Event]:
        self._buffer_bytes = 0
        self._speech_item_id = None
        if self._vad is not None:
            self._vad.reset()
        return [self._event("input_audio_buffer.cleared")]

    def _on_output_audio_buffer_clear(self, event: Event, now: float) -> list[Event]:
        raise ProtocolError(
            "output_audio_buffer.clear is only supported for WebRTC and SIP sessions.",
            code="unsupported_event",
            param="type",
        )

    # ------------------------------------------------------------------------------------------ conversation

    def _on_conversation_item_create(self, event: Event, now: float) -> list[Event]:
        item = event.get("item")
        if not isinstance(item, dict):
            raise ProtocolError(
                "Missing required parameter: 'item'.", code="missing_required_parameter", param="item"
            )
        kind = item.get("type")
        stored: Event = {
            "id": item.get("id") or self._new_id("item"),
            "object": "realtime.item",
            "type": kind,
        }
        if kind == "message":
            role = item.get("role")
            allowed = {
                "user": {"input_text", "input_audio", "input_image"},
                "system": {"input_text"},
                "assistant": {"output_text"},
            }
            if role not in allowed:
                raise ProtocolError(
                    f"Invalid value: '{role}'. Supported values are: 'user', 'system' and 'assistant'.",
                    param="item.role",
                )
            content = item.get("content")
            if not isinstance(content, list) or not content:
                raise ProtocolError("'item.content' must be a non-empty list.", param="item.content")
            for i, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in allowed[role]:
                    got = part.get("type") if isinstance(part, dict) else part
                    raise ProtocolError(
                        f"Invalid value: '{got}'. Supported values for a {role} message are: "
                        + ", ".join(sorted(allowed[role]))
                        + ".",
                        param=f"item.content[{i}].type",
                    )
            stored.update(status="completed", role=role, content=copy.deepcopy(content))
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("output"), str):
                raise ProtocolError(
                    "A function_call_output needs a string 'call_id' and a string 'output'.",
                    param="item.output",
                )
            stored.update(status="completed", call_id=item["call_id"], output=item["output"])
        elif kind == "function_call":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("name"), str):
                raise ProtocolError("A function_call needs 'call_id' and 'name'.", param="item.call_id")
            stored.update(
                status="completed",
                call_id=item["call_id"],
                name=item["name"],
                arguments=str(item.get("arguments", "")),
            )
        else:
            raise ProtocolError(
                f"Invalid value: '{kind}'. Supported values are: "
                "'message', 'function_call' and 'function_call_output'.",
                param="item.type",
            )
        if stored["id"] in self.items:
            raise ProtocolError(
                f"Item with id '{stored['id']}' already exists.", code="duplicate_item_id", param="item.id"
            )
        previous = next(reversed(self.items), None)
        self.items[stored["id"]] = _Item(stored)
        return [
            self._event("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(stored)),
            self._event("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(stored)),
        ]

    def _item_for(self, event: Event) -> tuple[str, _Item]:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            raise ProtocolError(
                "Missing required parameter: 'item_id'.", code="missing_required_parameter", param="item_id"
            )
        item = self.items.get(item_id)
        if item is None:
            raise ProtocolError(
                f"Item with item_id not found: {item_id}", code="item_not_found", param="item_id"
            )
        return item_id, item

    def _on_conversation_item_retrieve(self, event: Event, now: float) -> list[Event]:
        _, item = self._item_for(event)
        return [self._event("conversation.item.retrieved", item=copy.deepcopy(item.data))]

    def _on_conversation_item_delete(self, event: Event, now: float) -> list[Event]:
        item_id, _ = self._item_for(event)
        if self.response is not None and self.response.item_id == item_id:
            raise ProtocolError("Cannot delete an item while its response is in progress.", param="item_id")
        del self.items[item_id]
        return [self._event("conversation.item.deleted", item_id=item_id)]

    def _on_conversation_item_truncate(self, event: Event, now: float) -> list[Event]:
        item_id, item = self._item_for(event)
        if item.data.get("role") != "assistant" or not any(
            p.get("type") == "output_audio" for p in item.data.get("content", [])
        ):
            raise ProtocolError("Only assistant messages with audio can be truncated.", param="item_id")
        content_index = event.get("content_index", 0)
        if content_index != 0:
            raise ProtocolError(
                f"Invalid value: '{content_index}'. Content index out of range.", param="content_index"
            )
        end_ms = event.get("audio_end_ms")
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            raise ProtocolError("'audio_end_ms' must be a non-negative integer.", param="audio_end_ms")
        sent_ms = item.sent_bytes // BYTES_PER_MS
        if end_ms > sent_ms:
            raise ProtocolError(
                f"Audio content of {sent_ms} ms is already shorter than {end_ms} ms",
                code="invalid_value",
                param="audio_end_ms",
            )
        self.truncations.append(
            {"item_id": item_id, "content_index": 0, "audio_end_ms": end_ms, "sent_ms": sent_ms, "at": now}
        )
        for part in item.data.get("content", []):
            if part.get("type") == "output_audio":
                part["transcript"] = ""  # the real server drops the transcript of a truncated item
        return [
            self._event("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms)
        ]

    # ------------------------------------------------------------------------------------------ responses

    def _on_response_create(self, event: Event, now: float) -> list[Event]:
        if self.response is not None:
            raise ProtocolError(
                f"Conversation already has an active response in progress: {self.response.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
                param=None,
            )
        params = event.get("response") or {}
        if not isinstance(params, dict):
            raise ProtocolError("'response' must be an object.", param="response")
        if "instructions" in params and not isinstance(params["instructions"], str):
            raise ProtocolError("'response.instructions' must be a string.", param="response.instructions")
        if "tools" in params:
            self._validate_tools(params["tools"], "response.tools")
        if "output_modalities" in params and params["output_modalities"] not in (["audio"], ["text"]):
            raise ProtocolError(
                'Invalid \'response.output_modalities\': use ["audio"] or ["text"].',
                param="response.output_modalities",
            )
        return self._start_response(params, now)

    def _on_response_cancel(self, event: Event, now: float) -> list[Event]:
        r = self.response
        wanted = event.get("response_id")
        if r is None or (isinstance(wanted, str) and wanted != r.id):
            raise ProtocolError(
                "Cancellation failed: no active response found.",
                code="response_cancel_not_active",
                param=None,
            )
        return self._cancel(r, "client_cancelled")

    def _context(self, params: Event) -> Context:
        tools: list[Any] = params["tools"] if "tools" in params else self.config["tools"]
        names = frozenset(t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str))
        if params.get("tool_choice", self.config.get("tool_choice")) == "none":
            names = frozenset()  # the response may call no tool at all
        properties = {
            t["name"]: tuple(sorted((t.get("parameters") or {}).get("properties") or {}))
            for t in tools
            if isinstance(t, dict) and t.get("name") in names and isinstance(t.get("parameters"), dict)
        }
        instructions = params.get("instructions")
        history = self._history()
        last = next(reversed(self.items.values()), None)
        if last is None:
            return Context("none", None, None, instructions, names, properties=properties, history=history)
        data = last.data
        if data["type"] == "function_call_output":
            name = next(
                (
                    i.data.get("name")
                    for i in self.items.values()
                    if i.data["type"] == "function_call" and i.data.get("call_id") == data.get("call_id")
                ),
                None,
            )
            output = data.get("output")
            return Context(
                "function_call_output",
                None,
                name,
                instructions,
                names,
                tool_output=output if isinstance(output, str) else None,
                properties=properties,
                history=history,
            )
        if data["type"] == "message" and data.get("role") == "user":
            texts = [p.get("text", "") for p in data["content"] if p.get("type") == "input_text"]
            if not texts and data.get("id") in self._captions:
                texts = [self._captions[data["id"]]]
            if texts:
                return Context(
                    "user_text",
                    " ".join(texts),
                    None,
                    instructions,
                    names,
                    properties=properties,
                    history=history,
                )
            return Context(
                "user_audio", None, None, instructions, names, properties=properties, history=history
            )
        return Context("other", None, None, instructions, names, properties=properties, history=history)

    def _history(self) -> tuple[tuple[str, str], ...]:
        """The conversation so far as (kind, text): ``user`` texts and ``call`` (the functions called)."""
        out: list[tuple[str, str]] = []
        for item in self.items.values():
            data = item.data
            if data["type"] == "function_call":
                out.append(("call", str(data.get("name") or "")))
            elif data["type"] == "message" and data.get("role") == "user":
                for part in data.get("content") or ():
                    if part.get("type") == "input_text" and part.get("text"):
                        out.append(("user", str(part["text"])))
                if data.get("id") in self._captions:
                    out.append(("user", self._captions[data["id"]]))
        return tuple(out)

    def _start_response(self, params: Event, now: float) -> list[Event]:
        plan = self.policy.plan(self._context(params))
        response_id = self._new_id("resp")
        modalities: list[str] = (
            params["output_modalities"] if "output_modalities" in params else self.config["output_modalities"]
        )
        data: Event = {
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": "conv_" + self._prefix,
            "output_modalities": list(modalities),
            "max_output_tokens": params.get("max_output_tokens", self.config["max_output_tokens"]),
            "audio": {"output": copy.deepcopy(self.config["audio"]["output"])},
            "usage": None,
            "metadata": params.get("metadata"),
        }
        out = [
            self._event("response.created", response=copy.deepcopy(data)),
            self._event("rate_limits.updated", rate_limits=copy.deepcopy(_RATE_LIMITS)),
        ]
        if isinstance(plan, CallTool):
            out.extend(self._function_call(response_id, data, plan))
            return out
        item_id = self._new_id("item")
        text_mode = modalities == ["text"]
        item: Event = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        previous = next(reversed(self.items), None)
        self.items[item_id] = _Item(item)
        data["output"] = [item]
        r = _Response(
            id=response_id, data=data, item_id=item_id, text=plan.text, started_at=now, text_mode=text_mode
        )
        r.words = plan.text.split()
        self.response = r
        out.append(
            self._event(
                "response.output_item.added",
                response_id=response_id,
                output_index=0,
                item=copy.deepcopy(item),
            )
        )
        out.append(
            self._event("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item))
        )
        part = {"type": "text", "text": ""} if text_mode else {"type": "audio", "transcript": ""}
        out.append(
            self._event(
                "response.content_part.added",
                response_id=response_id,
                item_id=item_id,
                output_index=0,
                content_index=0,
                part=part,
            )
        )
        if text_mode:
            out.extend(self._finish_text(r))
            return out
        item["content"] = [{"type": "output_audio", "transcript": ""}]
        clip = self.voice.cached(plan.text)
        if clip is None:
            self._synthesis.append(plan.text)
        else:
            self._begin_audio(r, clip, now)
            out.extend(self.tick(now))
        return out

    def _begin_audio(self, r: _Response, clip: AudioClip, now: float) -> None:
        r.clip = clip
        r.first_at = max(now, r.started_at + self.settings.latency_ms / 1000.0)
        self._audio_started = True

    def _finish_text(self, r: _Response) -> list[Event]:
        common = {"response_id": r.id, "item_id": r.item_id, "output_index": 0, "content_index": 0}
        out = [self._event("response.output_text.delta", delta=r.text, **common)]
        out.append(self._event("response.output_text.done", text=r.text, **common))
        out.append(self._event("response.content_part.done", part={"type": "text", "text": r.text}, **common))
        item = self.items[r.item_id].data
        item["content"] = [{"type": "output_text", "text": r.text}]
        return out + self._complete(r, "completed", None)

    def _finish_audio(self, r: _Response) -> list[Event]:
        common = {"response_id": r.id, "item_id": r.item_id, "output_index": 0, "content_index": 0}
        out = [
            self._event("response.output_audio.done", **common),
            self._event("response.output_audio_transcript.done", transcript=r.text, **common),
            self._event("response.content_part.done", part={"type": "audio", "transcript": r.text}, **common),
        ]
        self.items[r.item_id].data["content"] = [{"type": "output_audio", "transcript": r.text}]
        return out + self._complete(r, "completed", None)

    def _complete(self, r: _Response, status: str, reason: str | None) -> list[Event]:
        """End the response: item done, conversation item done, response.done (always the last event)."""
        self.response = None
        stored = self.items.get(r.item_id)
        item = stored.data if stored is not None else {"id": r.item_id}
        item["status"] = "completed" if status == "completed" else "incomplete"
        previous = self._previous_of(r.item_id)
        out = [
            self._event(
                "response.output_item.done", response_id=r.id, output_index=0, item=copy.deepcopy(item)
            ),
            self._event("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item)),
        ]
        r.data.update(
            status=status,
            status_details=None if reason is None else {"type": status, "reason": reason},
            output=[copy.deepcopy(item)],
            usage=self._usage(r),
        )
        out.append(self._event("response.done", response=copy.deepcopy(r.data)))
        return out

    def _cancel(self, r: _Response, reason: str) -> list[Event]:
        sent_ms = self.items[r.item_id].sent_bytes // BYTES_PER_MS if r.item_id in self.items else 0
        self.cancellations.append(
            {"response_id": r.id, "item_id": r.item_id, "reason": reason, "sent_ms": sent_ms}
        )
        if r.words_sent:
            self.items[r.item_id].data["content"] = [
                {"type": "output_audio", "transcript": " ".join(r.words[: r.words_sent])}
            ]
        return self._complete(r, "cancelled", reason)

    def _previous_of(self, item_id: str) -> str | None:
        previous = None
        for key in self.items:
            if key == item_id:
                return previous
            previous = key
        return previous

    @staticmethod
    def _usage(r: _Response) -> Event:
        audio_tokens = (r.clip.total_bytes // BYTES_PER_MS // 50) if r.clip else 0
        text_tokens = len(r.words)
        return {
            "total_tokens": 120 + audio_tokens + text_tokens,
            "input_tokens": 120,
            "output_tokens": audio_tokens + text_tokens,
            "input_token_details": {"text_tokens": 100, "audio_tokens": 20, "cached_tokens": 0},
            "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
        }

    def _function_call(self, response_id: str, data: Event, call: CallTool) -> list[Event]:
        item_id = self._new_id("item")
        call_id = self._new_id("call")
        arguments = json.dumps(call.arguments)
        item: Event = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": call.name,
            "call_id": call_id,
            "arguments": "",
        }
        previous = next(reversed(self.items), None)
        self.items[item_id] = _Item(item)
        common = {"response_id": response_id, "item_id": item_id, "output_index": 0, "call_id": call_id}
        half = len(arguments) // 2
        out = [
            self._event(
                "response.output_item.added",
                response_id=response_id,
                output_index=0,
                item=copy.deepcopy(item),
            ),
            self._event("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)),
            self._event("response.function_call_arguments.delta", delta=arguments[:half], **common),
            self._event("response.function_call_arguments.delta", delta=arguments[half:], **common),
            self._event(
                "response.function_call_arguments.done", name=call.name, arguments=arguments, **common
            ),
        ]
        item["arguments"] = arguments
        self.function_calls.append({"name": call.name, "call_id": call_id, "arguments": call.arguments})
        r = _Response(id=response_id, data=data, item_id=item_id, text="")
        return out + self._complete(r, "completed", None)
