"""The simulated parties once a call is up: what they say, the digits they press, when they hang up.

A party follows its behaviour from the plan (`say`, `dtmf`, `hangup_after`, voicemail's greeting and beep)
at offsets from the answer, and can be made to act at once through the /sim control resources.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from wire import caption

from . import audio
from .amd import overlay
from .causes import NORMAL_CLEARING
from .core import PbxCore
from .media import Speaker
from .model import Call
from .plan import Say, machine_timeline
from .sounds import render_greeting, render_phrase, render_tone, render_wav

DTMF_DURATION = 0.1
DTMF_SPACING = 0.35  # SendDTMF(12) produced digit ends 351 ms apart in the trace


class Parties(PbxCore):
    async def _answered_script(self, call: Call) -> None:
        """Run the party's script after answer: speak, press digits, hang up, at the planned offsets."""
        b = call.behaviour
        start = call.answered or time.time()
        actions: list[tuple[float, int, Callable[[], None]]] = []
        for i, say in enumerate(b.say):
            actions.append((say.at, i, partial(self._say, call, say)))
        if b.is_machine:
            timeline = machine_timeline(b)
            actions.append((timeline.greeting_at, 100, partial(self._machine_greeting, call)))
            if timeline.beep_at is not None and b.beep_hz:
                beep = Say(at=timeline.beep_at, tone_hz=b.beep_hz, seconds=b.beep_s)
                actions.append((beep.at, 101, partial(self._say, call, beep)))
            hangup_at = timeline.hangup_at
        else:
            hangup_at = b.hangup_after if b.hangup_after is not None else -1.0
        for press in b.dtmf:
            self_far = call.far
            if self_far is not None:
                actions.append((press.at, 200, partial(self._far_app, call, "SendDTMF", press.digits)))
            for k, digit in enumerate(press.digits):
                at = press.at + DTMF_DURATION * 2 + DTMF_SPACING * k
                actions.append((at, 201 + k, partial(self._callee_dtmf, call, digit)))
        if hangup_at >= 0:
            actions.append((hangup_at, 999, partial(self._callee_hangup, call)))
        actions.sort(key=lambda a: (a[0], a[1]))
        for at, _, action in actions:
            delay = start + at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not call.live:
                return
            action()
        if call.live:
            await asyncio.Future()  # stay on the line until someone hangs up

    def _say(self, call: Call, say: Say) -> None:
        if say.text is not None:
            text = say.text
            key: tuple[Any, ...] = ("phrase", text, say.caption)

            def render(rate: int) -> bytes:
                pcm = render_phrase(text, rate)
                return caption.embed(pcm, text, rate) if say.caption else pcm

            what: dict[str, Any] = {"text": text}
            self._far_app(call, "Playback", text[:40])
        elif say.wav is not None:
            path = str(self.plan.resolve_path(say.wav))
            key = ("wav", path)

            def render(rate: int) -> bytes:
                return render_wav(path, rate)

            what = {"wav": say.wav}
        else:
            hz, seconds = float(say.tone_hz or 1000.0), say.seconds
            key = ("tone", hz, seconds)

            def render(rate: int) -> bytes:
                return render_tone(hz, seconds, rate)

            what = {"tone": hz}
        self._speak(call, key, render, what, repeat=say.repeat)

    def _machine_greeting(self, call: Call) -> None:
        text, seconds = call.behaviour.greeting, call.behaviour.greeting_s
        self._far_app(call, "Playback", text[:40])
        self._speak(
            call,
            ("greeting", text, seconds),
            lambda rate: render_greeting(text, seconds, rate),
            {"text": text, "greeting": True},
        )

    def _speak(
        self,
        call: Call,
        key: tuple[Any, ...],
        render: Callable[[int], bytes],
        what: dict[str, Any],
        *,
        repeat: bool = False,
    ) -> None:
        speaker = Speaker(key=key, render=render, start=time.time(), owner=call.channel, repeat=repeat)
        speaker.messages(audio.FORMATS["slin"])  # know the duration now, for the record
        call.speakers = [s for s in call.speakers if not s.done] + [speaker]
        call.said.append(
            {"at": call.since_answer(), "ms": int(speaker.duration * 1000), "started": speaker.start, **what}
        )
        self.clock.add(speaker)

    def callee_audio(self, call: Call, rate: int = 8000) -> bytes:
        """What the callee's script says from answer on (16-bit PCM at ``rate``), as it plays it: the
        audio AMD() analyses (telephony.sim.amd). Silence where it says nothing."""
        b = call.behaviour
        pcm = bytearray()
        for say in b.say:
            if say.text is not None:
                piece = render_phrase(say.text, rate)
            elif say.wav is not None:
                piece = render_wav(str(self.plan.resolve_path(say.wav)), rate)
            else:
                piece = render_tone(float(say.tone_hz or 1000.0), say.seconds, rate)
            if say.repeat:
                piece = piece * max(1, int(30 * rate * 2 / max(1, len(piece))))
            overlay(pcm, say.at, piece, rate)
        if b.is_machine:
            timeline = machine_timeline(b)
            overlay(pcm, timeline.greeting_at, render_greeting(b.greeting, b.greeting_s, rate), rate)
            if timeline.beep_at is not None and b.beep_hz:
                overlay(pcm, timeline.beep_at, render_tone(b.beep_hz, b.beep_s, rate), rate)
        return bytes(pcm)

    def callee_hangup_at(self, call: Call) -> float | None:
        """Seconds after answer at which the callee's script hangs up, if it does."""
        b = call.behaviour
        if b.is_machine:
            return machine_timeline(b).hangup_at
        return b.hangup_after

    def _callee_dtmf(self, call: Call, digit: str) -> None:
        ch = call.channel
        call.dtmf_sent.append({"digit": digit, "at": call.since_answer()})
        self.emit("ChannelDtmfReceived", channel=ch, fields={"digit": digit, "duration_ms": 100})
        if ch.bridge is not None:
            for leg in ch.bridge.legs():
                leg.send_dtmf(digit)  # A8: also as AudioSocket 0x03 to the bridged media server

    def _callee_hangup(self, call: Call, cause: int = NORMAL_CLEARING) -> None:
        """The far party hangs up by itself after answer."""
        ch, far = call.channel, call.far
        if not call.live:
            return
        self._stop_speaking(call)
        if far is not None:
            self._far_app(call, "Hangup", str(cause))
            self.emit("ChannelHangupRequest", channel=far, fields={"cause": cause, "soft": True})
            self.emit("ChannelHangupRequest", channel=ch, fields={"cause": cause})
            self._destroy(far, cause)
        else:
            self.emit("ChannelHangupRequest", channel=ch, fields={"cause": cause})
        self._leave_stasis(ch)
        self._destroy(ch, cause, ended_by="callee")

    async def _press_now(self, call: Call, digits: str) -> None:
        for k, digit in enumerate(digits):
            await asyncio.sleep(DTMF_DURATION * 2 if k == 0 else DTMF_SPACING)
            if not call.live:
                return
            self._callee_dtmf(call, digit)

    def _stop_speaking(self, call: Call) -> None:
        for speaker in call.speakers:
            self.clock.remove(speaker)
        call.speakers.clear()
