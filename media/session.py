"""One call's agent logic, sans I/O: Realtime GA server events and caller input in; client events, audio
frames and actions out (DESIGN.md §4 "sans-I/O protocol cores", §6 media rules).

The asyncio adapter (:mod:`media.call`) owns the sockets and the clock. It feeds this object:

* ``start()`` / ``reseed()`` when a Realtime connection opens (first, or the one bounded reconnect);
* ``on_server_event(event, now)`` for every Realtime event;
* ``caller_audio(pcm, now)`` for every AudioSocket audio frame (24 kHz PCM) and ``dtmf(digit, now)``;
* ``next_frame(now)`` from the call's 20 ms clock (it returns the frame to write: agent audio or silence);
* ``tick(now)`` a few times a second for the timers (caller silence, maximum duration, hangup deadline);
* ``tool_result(call_id, output)`` when a tool the model called has run.

and collects what it must do in :attr:`outbox` (Realtime client events, JSON text) and :attr:`actions`
(:class:`ToolCall`, :class:`Hangup`, :class:`Transcript`, :class:`RealtimeError`).

Barge-in (PROTOCOLS.md §6.6): on ``input_audio_buffer.speech_started`` the queued agent audio is dropped at
once (the next frame the clock takes is silence), ``response.cancel`` is sent only when the effective
session does not interrupt by itself, the assistant item being played is truncated at the milliseconds
actually handed to the wire (clamped to what was received for it), and deltas still arriving for the
interrupted response are ignored.

A key press (DTMF) interrupts the same way, except that ``response.cancel`` is always sent: the server
cancels by itself only on speech it detected, never for a text item. The "caller pressed N" item and its
``response.create`` wait until the cancelled response is done, because a real server answers a
``response.create`` during an active response with ``conversation_already_has_active_response``.

A failed ``session.update`` (an ``error`` event echoing its ``event_id``) is fatal: the agent would talk
without its instructions and tools. Its audio is stopped and a fatal :class:`RealtimeError` tells the
adapter to apologise and hang up.

Tools run when their response is ``done`` and was not cancelled: arguments of an interrupted response are
never acted on. Tools that end the call (``end_call``) wait until the goodbye is fully played.
"""

from __future__ import annotations

import base64
import binascii
import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from media.playout import Playout
from wire.brief import Brief

FRAME_S = 0.020
OUT_RATE = 24000
INPUT_BYTES_PER_MS = 48  # 24 kHz, 16-bit mono
HANGUP_DRAIN_CAP_S = 15.0  # a goodbye that never finishes does not keep the line open longer than this
SILENCE_FILL_AFTER_MS = 100  # an input gap this long is filled with silence (A7: silence sends nothing)

_APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'
_APPEND_SUFFIX = '"}'


# ------------------------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Hangup:
    reason: str


@dataclass(frozen=True)
class Transcript:
    role: str  # agent | caller | system
    text: str
    t_ms: int


@dataclass(frozen=True)
class RealtimeError:
    message: str
    code: str = ""
    fatal: bool = False


Action = ToolCall | Hangup | Transcript | RealtimeError


@dataclass
class Metrics:
    started_at: float
    first_audio_at: float | None = None
    reply_latencies_ms: list[float] = field(default_factory=list)
    barge_ins: int = 0
    frames_in: int = 0
    frames_out: int = 0
    agent_frames_out: int = 0
    underruns: int = 0
    realtime_errors: int = 0
    realtime_reconnects: int = 0
    dtmf: int = 0
    tool_calls: int = 0

    def as_dict(self, now: float) -> dict[str, Any]:
        lat = sorted(self.reply_latencies_ms)
        return {
            "answer_to_first_audio_ms": (
                round((self.first_audio_at - self.started_at) * 1000, 1)
                if self.first_audio_at is not None
                else None
            ),
            # A call whose agent never spoke is not a success, whatever else happened on it.
            "agent_spoke": self.first_audio_at is not None,
            "reply_latency_ms_p50": round(statistics.median(lat), 1) if lat else None,
            "reply_latency_ms_p95": round(lat[min(len(lat) - 1, int(len(lat) * 0.95))], 1) if lat else None,
            "replies": len(lat),
            "barge_ins": self.barge_ins,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "agent_frames_out": self.agent_frames_out,
            "underruns": self.underruns,
            "realtime_errors": self.realtime_errors,
            "realtime_reconnects": self.realtime_reconnects,
            "dtmf": self.dtmf,
            "tool_calls": self.tool_calls,
            "duration_s": round(now - self.started_at, 3),
        }


def _event(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def _user_text(text: str, role: str = "user") -> str:
    return _event(
        "conversation.item.create",
        item={"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]},
    )


class CallSession:
    """The agent side of one call; see the module docstring."""

    def __init__(
        self,
        brief: Brief,
        *,
        now: float,
        tools: list[dict[str, Any]] | None = None,
        transcribe_model: str = "",
        max_call_s: float = 3600.0,
        hold_greeting: bool = False,
    ) -> None:
        self.brief = brief
        # The agent may not speak on its own (no greeting, no automatic replies, no silence prompts): while
        # answering-machine detection decides (``hold_greeting``), and for good once the call is a machine's
        # (``voicemail``, where only :meth:`say` speaks: the campaign's message). See media/voicemail.py.
        self.muted = hold_greeting
        self.voicemail = False
        self._greeting_held = False
        self.tools = tools or []
        self.transcribe_model = transcribe_model
        self.max_call_s = brief.max_call_s or max_call_s
        self.playout = Playout(rate=OUT_RATE)
        self.metrics = Metrics(started_at=now)
        self.outbox: list[str] = []
        self.actions: list[Action] = []
        self.transcript: list[dict[str, Any]] = []
        self.interrupt_response = True  # GA server_vad default; replaced by session.updated
        self.connected = False
        self._response_id: str | None = None
        self._response_calls: list[ToolCall] = []
        self._cancelled: set[str] = set()
        # A response.cancel went out while our response.create had no response.created yet: the response
        # that is created next is the cancelled one (its deltas are ignored, its tools never run).
        self._cancel_when_created = False
        self._after_response: list[str] = []  # items to send right before the deferred response.create
        self._session_updates: set[str] = set()  # event_ids of our session.update events
        self._audio_responses: set[str] = set()  # responses whose audio has started (for underruns)
        self._want_response: dict[str, Any] | None = None
        self._hangup_reason: str | None = None
        self._hangup_deadline = 0.0
        self._hung_up = False
        self._awaiting_reply_since: float | None = None
        self._last_caller_activity = now
        self._agent_busy_until = now
        self._silence_prompted = False
        self._input_started_at: float | None = None
        self._input_ms_sent = 0.0
        self._caller_items: dict[str, dict[str, Any]] = {}
        self._agent_items: dict[str, dict[str, Any]] = {}
        # Agent items cut short by the caller before their transcript came: how much of each was heard. Its
        # transcript, when it comes, is still the record of what the agent was saying (marked interrupted):
        # the opening AI disclosure among them.
        self._cut_items: dict[str, int] = {}
        self._tools_pending = 0
        self._max_duration_hit = False
        #: when a barge-in dropped queued agent audio and no frame has been written since (for the probe)
        self.flushed_at: float | None = None
        #: a warm transfer is under way (the callee on hold, then a human being briefed): their silence is
        #: not the callee's, so no silence prompt and no hang-up for silence until it is settled.
        self.on_hold = False

    # --------------------------------------------------------------------------------- connection
    def start(self, now: float) -> None:
        """A Realtime connection opened: configure the session and ask for the greeting."""
        self._open(now)
        if self.muted:
            self._greeting_held = True
            return
        self._greet()

    def _greet(self) -> None:
        greeting = self.brief.greeting.strip()
        if greeting:
            self.request_response(instructions=f'Greet the caller. Say exactly: "{greeting}"')
        else:
            self.request_response(instructions="Greet the caller briefly, as your instructions say.")

    def reseed(self, now: float) -> None:
        """The one reconnect after a drop: a new session knows nothing, so re-tell it the call as text."""
        self.metrics.realtime_reconnects += 1
        self._response_id = None
        self._response_calls = []
        self._want_response = None
        self._cancel_when_created = False
        self._after_response = []  # the transcript below re-tells pressed keys too
        self.playout.clear()
        self._open(now)
        lines = [f"{line['role']}: {line['text']}" for line in self.transcript if line.get("text")]
        if lines:
            self.outbox.append(
                _user_text(
                    "The call was briefly interrupted by a technical problem. The conversation so far:\n"
                    + "\n".join(lines[-40:]),
                    role="system",
                )
            )
        if not self.muted:
            self.request_response(
                instructions="Apologise in one short sentence for the interruption and go on."
            )

    def release(self, now: float) -> None:
        """Answering-machine detection says a person answered: the agent may speak, its greeting first."""
        if not self.muted or self.voicemail:
            return
        self.muted = False
        self._caller_active(now)  # the silence timers start now, not at the answer
        if self.connected:
            self._update_turn_detection()
        if self._greeting_held:
            self._greeting_held = False
            self._greet()

    def enter_voicemail(self, now: float) -> None:
        """The call is a machine's: stop the agent at once (queued audio dropped, its response cancelled and
        truncated) and keep it silent; the caller's sound no longer interrupts (only :meth:`say` speaks)."""
        if self.voicemail:
            return
        self.voicemail = self.muted = True
        self._greeting_held = False
        self._want_response = None
        self._after_response = []
        self._interrupt(now, cancel=True, count=False)
        if self.connected:
            self._update_turn_detection()

    def _update_turn_detection(self) -> None:
        event_id = f"session_update_{len(self._session_updates) + 1}"
        self._session_updates.add(event_id)
        turn = self.session_config()["audio"]["input"]["turn_detection"]
        update = {"type": "realtime", "audio": {"input": {"turn_detection": turn}}}
        self.outbox.append(_event("session.update", session=update, event_id=event_id))

    @property
    def speaking(self) -> bool:
        """A response is asked for or under way, or its audio is still queued for the caller."""
        return self._response_id is not None or not self.playout.idle or self._want_response is not None

    def _open(self, now: float) -> None:
        self.connected = True
        self._input_started_at = now
        self._input_ms_sent = 0.0
        event_id = f"session_update_{len(self._session_updates) + 1}"
        self._session_updates.add(event_id)
        self.outbox.append(_event("session.update", session=self.session_config(), event_id=event_id))

    def disconnected(self) -> None:
        self.connected = False
        self._response_id = None
        self._cancel_when_created = False

    def session_config(self) -> dict[str, Any]:
        brief = self.brief
        turn: dict[str, Any] = {
            "type": brief.turn_detection,
            "create_response": not self.muted,
            "interrupt_response": not self.voicemail,
        }
        audio_in: dict[str, Any] = {"format": {"type": "audio/pcm", "rate": OUT_RATE}, "turn_detection": turn}
        if self.transcribe_model:
            audio_in["transcription"] = {"model": self.transcribe_model, "language": brief.language}
        config: dict[str, Any] = {
            "type": "realtime",
            "instructions": brief.instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": audio_in,
                "output": {"format": {"type": "audio/pcm", "rate": OUT_RATE}, "voice": brief.voice},
            },
        }
        if self.tools:
            config["tools"] = self.tools
            config["tool_choice"] = "auto"
        return config

    # ------------------------------------------------------------------------------------ caller in
    def caller_audio(self, pcm: bytes, now: float) -> str | None:
        """A caller frame (24 kHz PCM): the ``input_audio_buffer.append`` to send, or None (not connected)."""
        self.metrics.frames_in += 1
        if not self.connected:
            return None
        self._input_ms_sent += len(pcm) / INPUT_BYTES_PER_MS
        return _APPEND_PREFIX + base64.b64encode(pcm).decode("ascii") + _APPEND_SUFFIX

    def input_gap_fill(self, now: float) -> str | None:
        """Silence for an input gap (PROTOCOLS.md A7: a silent caller sends no frames at all), so that the
        model's VAD sees the end of speech and its audio timeline keeps up with the call's."""
        if not self.connected or self._input_started_at is None:
            return None
        behind_ms = (now - self._input_started_at) * 1000 - self._input_ms_sent
        if behind_ms < SILENCE_FILL_AFTER_MS:
            return None
        fill_ms = int(behind_ms) // 20 * 20
        self._input_ms_sent += fill_ms
        return (
            _APPEND_PREFIX
            + base64.b64encode(bytes(fill_ms * INPUT_BYTES_PER_MS)).decode("ascii")
            + _APPEND_SUFFIX
        )

    def dtmf(self, digit: str, now: float) -> None:
        """A key the caller pressed (AudioSocket 0x03): interrupts the agent like a barge-in and becomes user
        input, answered as soon as the interrupted response is done. A brief with ``dtmf_to_model: false``
        (the product decides what keys mean, e.g. a page call's "press 1 to accept") keeps keys from the
        model: they only interrupt, and the product makes the agent speak (:meth:`say`)."""
        self.metrics.dtmf += 1
        self._caller_active(now)
        # Always cancel: the server cancels by itself only on speech it detected (DESIGN.md §6).
        self._interrupt(now, cancel=True)
        self._add_transcript("caller", f"[pressed {digit}]", now)
        if self.brief.extra.get("dtmf_to_model") is False:
            return
        if self.connected and not self._hung_up and not self.muted:
            name = {"*": " (star)", "#": " (pound)"}.get(digit, "")
            item = _user_text(f"The caller pressed {digit}{name} on the keypad.")
            if self._response_id is None:
                self.outbox.append(item)
            else:
                self._after_response.append(item)  # after the cancelled response, in conversation order
            self.request_response()

    def say(self, text: str, now: float) -> None:
        """The product wants the agent to say ``text`` now (a ``say`` message on the call's reply channel):
        whatever the agent is saying is cancelled (like a barge-in) and the text is spoken as given, with no
        tool call."""
        text = " ".join(text.split())[:2000]
        if not text or self._hung_up or self._hangup_reason is not None:
            return
        self._caller_active(now)  # the conversation goes on: no silence prompt right after it
        self._interrupt(now, cancel=True, count=False)
        # (Double quotes would end the quoted sentence early: the instructions quote it.)
        quoted = text.replace('"', "'")
        body = {"instructions": f'Say exactly: "{quoted}" Say nothing else.', "tool_choice": "none"}
        if self._response_id is None and self.connected:
            self._want_response = None
            self._send_response_create(body)
        else:
            self._want_response = body  # once the cancelled response is done

    def instruct(self, context: str, instructions: str, now: float) -> None:
        """The call changed under the agent (a warm transfer's human joined, or left): ``context`` becomes a
        system item of the conversation (later turns know it) and the agent speaks now as ``instructions``
        say, cancelling whatever it was saying; tools stay available (``transfer_decision``)."""
        if self._hung_up or self._hangup_reason is not None:
            return
        self._caller_active(now)
        self._interrupt(now, cancel=True, count=False)
        self._add_transcript("system", context, now)
        if self.connected:
            item = _user_text(context, role="system")
            if self._response_id is None:
                self.outbox.append(item)
            else:
                self._after_response.append(item)
        self._want_response = None
        self.request_response(instructions=instructions)

    # ------------------------------------------------------------------------------------- clock out
    def next_frame(self, now: float) -> bytes:
        """The frame the clock writes now: the next 20 ms of agent audio, or silence."""
        self.metrics.frames_out += 1
        got = self.playout.next_frame()
        if got is None:
            if self._response_id is not None and self._response_has_audio:
                self.metrics.underruns += 1
            return self.playout.silence
        frame, item = got
        self.metrics.agent_frames_out += 1
        self._agent_busy_until = now + FRAME_S
        if self.metrics.first_audio_at is None and frame != self.playout.silence:
            self.metrics.first_audio_at = now  # the agent is heard: its first frame that is not silence
        if self._awaiting_reply_since is not None:
            self.metrics.reply_latencies_ms.append((now - self._awaiting_reply_since) * 1000)
            self._awaiting_reply_since = None
        return frame

    @property
    def agent_spoke(self) -> bool:
        """Whether any agent audio (the model's, not the clock's silence) has been played to the caller."""
        return self.metrics.first_audio_at is not None

    @property
    def _response_has_audio(self) -> bool:
        return self._response_id is not None and self._response_id in self._audio_responses

    # ------------------------------------------------------------------------------------- timers
    def tick(self, now: float) -> None:
        if self._hung_up:
            return
        if self._hangup_reason is not None:
            if now >= self._hangup_deadline or (
                self._response_id is None and self.playout.idle and self._want_response is None
            ):
                self._hang_up_now(self._hangup_reason)
            return
        if not self._max_duration_hit and now - self.metrics.started_at >= self.max_call_s:
            self._max_duration_hit = True
            self.say_goodbye_and_hang_up(
                "max_duration", now, instructions="The call has reached its time limit. Say a short goodbye."
            )
            return
        if self.muted or self._agent_busy(now):
            return
        quiet_since = max(self._last_caller_activity, self._agent_busy_until)
        quiet = now - quiet_since
        if self._silence_prompted and now - self._last_caller_activity >= self.brief.silence_end_s:
            self.say_goodbye_and_hang_up(
                "caller_silent", now, instructions="The caller is not answering. Say a short, polite goodbye."
            )
        elif not self._silence_prompted and quiet >= self.brief.silence_prompt_s:
            self._silence_prompted = True
            self.request_response(
                instructions="The caller has said nothing for a while. Ask, in one short sentence, whether "
                "they are still there."
            )

    def _agent_busy(self, now: float) -> bool:
        busy = (
            self._response_id is not None
            or not self.playout.idle
            or self._want_response is not None
            or self._tools_pending > 0
            or self.on_hold
        )
        if busy:
            self._agent_busy_until = now
        return busy

    def _caller_active(self, now: float) -> None:
        self._last_caller_activity = now
        self._silence_prompted = False

    # ----------------------------------------------------------------------------------- hang up
    def say_goodbye_and_hang_up(self, reason: str, now: float, *, instructions: str | None = None) -> None:
        """Ask for a goodbye (when connected) and hang up once it is played (or after a cap)."""
        if self._hangup_reason is not None or self._hung_up:
            return
        if self.connected and instructions:
            # Cancel whatever the agent is saying: its deltas are dropped from now on, so waiting for the
            # response to finish would only be silence before the goodbye.
            self._interrupt(now, cancel=True, count=False)
            self.request_response(instructions=instructions)
        self.hang_up_after_drain(reason, now)

    def hang_up_after_drain(self, reason: str, now: float) -> None:
        if self._hangup_reason is None:
            self._hangup_reason = reason
            self._hangup_deadline = now + HANGUP_DRAIN_CAP_S

    def _hang_up_now(self, reason: str) -> None:
        if not self._hung_up:
            self._hung_up = True
            self.actions.append(Hangup(reason))

    @property
    def hanging_up(self) -> bool:
        return self._hangup_reason is not None or self._hung_up

    # ----------------------------------------------------------------------------------- responses
    def request_response(self, *, instructions: str | None = None) -> None:
        """``response.create`` now, or as soon as the active response is done (one at a time)."""
        body: dict[str, Any] = {}
        if instructions:
            body["instructions"] = instructions
        if self._response_id is None and self._want_response is None and self.connected:
            self._send_response_create(body)
        else:
            self._want_response = body

    def _send_response_create(self, body: dict[str, Any]) -> None:
        self.outbox.append(_event("response.create", response=body) if body else _event("response.create"))
        self._response_id = "pending"

    def _interrupt(self, now: float, *, cancel: bool, count: bool = True) -> None:
        """Barge-in: drop queued audio, ``response.cancel`` when ``cancel`` (the server will not cancel by
        itself), truncate what was being played, and ignore what is still to come of the active response."""
        playing = self.playout.clear()
        active = self._response_id
        # Not interrupted yet (a second key press or barge-in during the same response changes nothing).
        fresh = active is not None and active not in self._cancelled and not self._cancel_when_created
        if active is not None and fresh:
            if active == "pending":  # asked for, not created yet: the cancel applies to the one created next
                if cancel:
                    self.outbox.append(_event("response.cancel"))
                    self._cancel_when_created = True
            else:
                if cancel:
                    self.outbox.append(_event("response.cancel"))
                self._cancelled.add(active)
                if playing is None:
                    # Nothing queued (the model is no faster than the line), but the server holds more of the
                    # item that was being heard than the caller heard: truncate it too.
                    last = self.playout.last_played
                    if last is not None and last.response_id == active:
                        playing = last
        interrupted = fresh
        if playing is not None:
            self.flushed_at = now
            played = self.playout.played_ms(playing.item_id)
            self.outbox.append(
                _event(
                    "conversation.item.truncate",
                    item_id=playing.item_id,
                    content_index=0,
                    audio_end_ms=played,
                )
            )
            line = self._agent_items.get(playing.item_id)
            if line is not None:
                line["interrupted_at_ms"] = played
            elif played > 0:
                self._cut_items[playing.item_id] = played
            interrupted = True
        if interrupted and count:
            self.metrics.barge_ins += 1

    # ------------------------------------------------------------------------------- server events
    def on_server_event(self, event: dict[str, Any], now: float) -> None:  # noqa: C901 - a dispatch table
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            self._on_audio_delta(event)
        elif kind == "input_audio_buffer.speech_started":
            self._caller_active(now)
            self._awaiting_reply_since = None
            if not self.voicemail:  # a machine's sound never cuts the message short
                self._interrupt(now, cancel=not self.interrupt_response)
        elif kind == "input_audio_buffer.speech_stopped":
            self._caller_active(now)
            self._awaiting_reply_since = now
            item_id = str(event.get("item_id") or "")
            if item_id:
                self._caller_items[item_id] = self._add_transcript("caller", "", now)
        elif kind == "response.created":
            response = event.get("response") or {}
            unsolicited = self._response_id is None
            self._response_id = str(response.get("id") or "unknown")
            self._response_calls = []
            if unsolicited and self.muted:
                # The server answered the caller on its own before our session.update turned that off.
                self.outbox.append(_event("response.cancel"))
                self._cancelled.add(self._response_id)
            elif self._cancel_when_created:
                self._cancel_when_created = False
                self._cancelled.add(self._response_id)
        elif kind == "response.output_audio.done":
            self._audio_responses.discard(str(event.get("response_id") or ""))
            if event.get("response_id") not in self._cancelled:
                self.playout.finish()
        elif kind == "response.output_audio_transcript.done":
            item_id = str(event.get("item_id") or "")
            heard_ms = self._cut_items.pop(item_id, None)
            if event.get("response_id") not in self._cancelled:
                line = self._add_transcript("agent", str(event.get("transcript") or ""), now)
                self._agent_items[item_id] = line
            elif heard_ms is not None and str(event.get("transcript") or "").strip():
                # Cancelled after the caller had heard some of it: kept, with how much was heard.
                line = self._add_transcript("agent", str(event.get("transcript") or ""), now)
                line["interrupted_at_ms"] = heard_ms
                self._agent_items[item_id] = line
        elif kind == "conversation.item.input_audio_transcription.completed":
            caller_line = self._caller_items.get(str(event.get("item_id") or ""))
            text = str(event.get("transcript") or "").strip()
            if caller_line is not None:
                caller_line["text"] = text
            elif text:
                self._add_transcript("caller", text, now)
        elif kind == "response.function_call_arguments.done":
            self._on_function_call(event)
        elif kind == "response.done":
            self._on_response_done(event, now)
        elif kind == "session.updated":
            session = event.get("session") or {}
            turn = ((session.get("audio") or {}).get("input") or {}).get("turn_detection") or {}
            self.interrupt_response = bool(turn.get("interrupt_response", False)) if turn else False
        elif kind == "error":
            self._on_error(event)

    def _on_audio_delta(self, event: dict[str, Any]) -> None:
        response_id = str(event.get("response_id") or "")
        if response_id in self._cancelled or self._hung_up:
            return
        try:
            pcm = base64.b64decode(event.get("delta") or "", validate=True)
        except (binascii.Error, ValueError):
            self._on_error({"error": {"message": "audio delta is not base64", "code": "bad_delta"}})
            return
        if len(pcm) & 1:
            pcm = pcm[:-1]
        if not pcm:
            return
        self._audio_responses.add(response_id)
        self.playout.add(item_id=str(event.get("item_id") or response_id), response_id=response_id, pcm=pcm)

    def _on_function_call(self, event: dict[str, Any]) -> None:
        name = str(event.get("name") or "")
        call_id = str(event.get("call_id") or "")
        raw = event.get("arguments") or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            self.outbox.append(
                _event(
                    "conversation.item.create",
                    item={
                        "type": "function_call_output",
                        "call_id": call_id,
                        "output": json.dumps({"ok": False, "error": "arguments are not a JSON object"}),
                    },
                )
            )
            self._want_response = self._want_response or {}
            return
        self._response_calls.append(ToolCall(call_id=call_id, name=name, arguments=arguments))

    def _on_response_done(self, event: dict[str, Any], now: float) -> None:
        response = event.get("response") or {}
        response_id = str(response.get("id") or "")
        status = response.get("status")
        calls, self._response_calls = self._response_calls, []
        self._response_id = None
        if response_id:
            self._audio_responses.discard(response_id)
        if status == "failed":
            details = response.get("status_details") or {}
            error = details.get("error") or {}
            self._on_error({"error": {"message": f"response failed: {error.get('message') or details}"}})
        elif status != "cancelled" and response_id not in self._cancelled:
            for call in calls:
                self.metrics.tool_calls += 1
                self._tools_pending += 1
                self.actions.append(call)
        self._cancelled.discard(response_id)
        self.playout.forget_before()
        if self.connected and not self._hung_up:
            self.outbox.extend(self._after_response)
            self._after_response = []
            if self._want_response is not None:
                body, self._want_response = self._want_response, None
                self._send_response_create(body)

    def _on_error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        code = str(error.get("code") or "")
        message = str(error.get("message") or "unknown Realtime error")
        if code == "response_cancel_not_active":
            return  # harmless (§6.5): we cancelled a response that had just finished
        self.metrics.realtime_errors += 1
        if code == "conversation_already_has_active_response":
            self._want_response = self._want_response or {}
        fatal = error.get("event_id") in self._session_updates and not self._hung_up
        if fatal:
            self._abandon()
        self.actions.append(RealtimeError(message=message, code=code, fatal=fatal))

    def _abandon(self) -> None:
        """The session cannot be used (its configuration was refused): silence the agent for good. The
        adapter closes the Realtime connection, apologises and hangs up."""
        self.playout.clear()
        self._hung_up = True  # no more audio, responses or timers from this session
        self._want_response = None
        self._after_response = []

    # ------------------------------------------------------------------------------------- tools
    def tool_result(self, call_id: str, output: dict[str, Any], *, respond: bool = True) -> None:
        """The output of a tool the model called: back to the model, then let it speak (§6.7)."""
        self._tools_pending = max(0, self._tools_pending - 1)
        if not self.connected:
            return
        self.outbox.append(
            _event(
                "conversation.item.create",
                item={"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)},
            )
        )
        if respond and not self.hanging_up:
            self.request_response()

    def tool_finished_silently(self) -> None:
        self._tools_pending = max(0, self._tools_pending - 1)

    def note(self, text: str, now: float) -> None:
        """A system line in the transcript (transfer, tool results)."""
        self._add_transcript("system", text, now)

    # -------------------------------------------------------------------------------- transcript
    def _add_transcript(self, role: str, text: str, now: float) -> dict[str, Any]:
        t_ms = int((now - self.metrics.started_at) * 1000)
        line: dict[str, Any] = {"role": role, "text": text, "t_ms": t_ms}
        self.transcript.append(line)
        if text:
            self.actions.append(Transcript(role, text, t_ms))
        return line

    def take(self) -> tuple[list[str], list[Action]]:
        """What to send and what to do, since the last call."""
        outbox, actions = self.outbox, self.actions
        self.outbox, self.actions = [], []
        return outbox, actions
