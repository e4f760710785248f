"""The simulated Asterisk: channel and bridge life cycles, Stasis applications and their events.

Every event sequence here reproduces what Asterisk 22.10.1 sent in the recorded traces
(`reference/asterisk-22.10.1/traces`), per endpoint technology:

- `Local/<n>@<ctx>` is a pair of channels. The app originates `;1`; the callee's "dialplan" runs on `;2`.
  Busy and congestion arrive as `Dial BUSY/CONGESTION` with cause 0 on `;1` (the cause is on `;2`), a
  rejection as `ChannelHangupRequest 21`, `Dial NOANSWER`, `ChannelDestroyed 21` (PROTOCOLS.md A3).
- `PJSIP/<n>@<trunk>` (and SIP, IAX2, DAHDI) is one channel that carries the cause and the SIP status
  (`tech_cause`) itself.
- StasisStart comes only after answer (A2); a channel that entered Stasis from the dialplan (an inbound
  call) ends for the app with StasisEnd and no ChannelDestroyed (A4); DELETE gives
  `ChannelHangupRequest cause=32 soft` (A5); the AudioSocket leg is never hung up by Asterisk when the
  caller goes (A9); a channel originated into an app with no websocket is dialed anyway (A11).

The engine is synchronous except for timed behaviour (callee scripts, playbacks) and the AudioSocket
connect, so an HTTP handler's effects and events happen in one step, in order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
import uuid as uuid_mod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any, Protocol

from . import audio
from .causes import (
    HANGUP_REASONS,
    NORMAL_CLEARING,
    SIP_STATUS_FOR_CAUSE,
    SOFT_HANGUP_FLAG,
    cause_text,
    dialstatus_for_cause,
)
from .media import AudioSocketLeg, MediaClock, Speaker, connect_leg, send_uuid
from .model import (
    OUTGOING_APP,
    Bridge,
    Call,
    CallerId,
    Channel,
    Dialplan,
    Playback,
    Recording,
    ari_timestamp,
)
from .plan import Behaviour, Plan, PlanError, Say, parse_behaviour

log = logging.getLogger("telephony.sim")

ASTERISK_VERSION = "22.10.1"
TRUNK_TECHS = ("PJSIP", "SIP", "IAX2", "DAHDI")
KNOWN_TECHS = ("Local", *TRUNK_TECHS)
MAX_ID_LENGTH = 149  # AST_MAX_PUBLIC_UNIQUEID
MAX_APP_NAME = 73
DTMF_DURATION = 0.1
DTMF_SPACING = 0.35  # SendDTMF(12) produced digit ends 351 ms apart in the trace
BRIDGE_TYPES = {"mixing", "holding", "dtmf_events", "proxy_media", "video_sfu", "video_single", "sdp_label"}
RECORDING_FORMATS = {"wav", "gsm", "ulaw", "alaw", "sln", "sln16", "g722", "wav16"}
MEDIA_SCHEMES = ("sound", "recording", "number", "digits", "characters", "tone")


class AriError(Exception):
    """An ARI error response: status and the JSON body Asterisk would send."""

    def __init__(self, status: int, message: str, *, key: str = "message") -> None:
        super().__init__(message)
        self.status = status
        self.body = {key: message}


def allocation_failed() -> AriError:
    return AriError(500, "Allocation failed", key="error")


class EventSink(Protocol):
    def push(self, text: str) -> None: ...


@dataclass
class AppState:
    name: str
    connection: EventSink | None = None
    subscribe_all: bool = False
    registered: float = field(default_factory=time.time)


def ast_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "true", "y", "t", "1", "on")


def int_param(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise AriError(400, f"{name} must be an integer") from None


@lru_cache(maxsize=512)
def render_phrase(text: str, rate: int) -> bytes:
    return audio.phrase(text, rate)


@lru_cache(maxsize=128)
def render_tone(hz: float, seconds: float, rate: int) -> bytes:
    return audio.tone(hz, int(seconds * 1000), rate)


@lru_cache(maxsize=64)
def render_wav(path: str, rate: int) -> bytes:
    return audio.load_wav(path, rate)


#: Seconds between the 200 of ``POST /channels/externalMedia`` and its AudioSocket leg being dialed,
#: answered and entering the app (StasisStart), drawn uniformly per leg. On a real Asterisk 22.10.1 the
#: request returns as soon as the channel exists and the TCP connection is up; the dial (UUID frame, answer,
#: Stasis) runs on a background thread, so adding the leg to a bridge at once answers 422 "Channel not in
#: Stasis application" (seen in about 15 % of calls). The simulator makes that race the rule, not the
#: exception, so a Stasis app that does not wait for the leg's own StasisStart fails its tests.
MEDIA_START_DELAY_S: tuple[float, float] = (0.01, 0.15)


class Pbx:
    def __init__(
        self,
        plan: Plan | None = None,
        *,
        asterisk_id: str = "02:fc:00:00:00:01",
        ended_history: int = 20000,
        media_start_delay_s: tuple[float, float] = MEDIA_START_DELAY_S,
        rng: random.Random | None = None,
    ) -> None:
        low, high = media_start_delay_s
        if not 0 <= low <= high:
            raise ValueError("media_start_delay_s must be (low, high) with 0 <= low <= high")
        self.plan = plan or Plan()
        self.asterisk_id = asterisk_id
        self.media_start_delay_s = (low, high)
        self._rng = rng or random.Random()  # noqa: S311 - timing jitter, not cryptography
        self.started = time.time()
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.apps: dict[str, AppState] = {}
        self.calls: dict[str, Call] = {}
        self.ended_calls: deque[Call] = deque(maxlen=ended_history)
        self.playbacks: dict[str, Playback] = {}
        self.live_recordings: dict[str, Recording] = {}
        self.stored_recordings: dict[str, Recording] = {}
        self.legs: dict[str, AudioSocketLeg] = {}
        self.clock = MediaClock()
        self.events_sent = 0
        self.events_dropped = 0
        self._name_seq = itertools.count(1)
        self._uniq_seq = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------------------------ ids
    def _unique_id(self) -> str:
        return f"{int(self.started)}.{next(self._uniq_seq)}"

    def _name_suffix(self) -> str:
        return f"{next(self._name_seq):08x}"

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator task failed", exc_info=task.exception())

    # --------------------------------------------------------------------------------------------- events
    def active_app(self, name: str) -> bool:
        state = self.apps.get(name)
        return state is not None and state.connection is not None

    def emit(
        self,
        type_: str,
        *,
        channel: Channel | None = None,
        bridge: Bridge | None = None,
        peer: Channel | None = None,
        fields: dict[str, Any] | None = None,
        apps: Iterable[str] = (),
        only_app: str | None = None,
    ) -> None:
        """Send one event to every active app subscribed to what it is about (and to subscribeAll apps).

        `only_app` is for StasisStart/StasisEnd, which res_stasis sends to the channel's own app alone.
        """
        if only_app is not None:
            targets = {only_app}
        else:
            targets = set(apps)
            for obj in (channel, peer):
                if obj is not None:
                    targets |= obj.apps
            if bridge is not None:
                targets |= bridge.apps
            for state in self.apps.values():
                if state.subscribe_all:
                    targets.add(state.name)
        if not targets:
            return
        event: dict[str, Any] = {"type": type_, "timestamp": ari_timestamp()}
        if fields:
            event.update(fields)
        if peer is not None:
            event["peer"] = peer.json()
        if bridge is not None:
            event["bridge"] = bridge.json()
        if channel is not None:
            event["channel"] = channel.json()
        event["asterisk_id"] = self.asterisk_id
        for app in sorted(targets):
            app_state = self.apps.get(app)
            if app_state is None or app_state.connection is None:
                self.events_dropped += 1  # "Inactive Stasis app '...' missed message"
                continue
            event["application"] = app
            app_state.connection.push(json.dumps(event))
            self.events_sent += 1

    # ------------------------------------------------------------------------------------ app connections
    def register(self, conn: EventSink, apps: list[str], subscribe_all: bool) -> None:
        for name in apps:
            state = self.apps.get(name)
            if state is None:
                state = self.apps[name] = AppState(name=name)
            previous = state.connection
            if previous is not None and previous is not conn:
                previous.push(
                    json.dumps(
                        {
                            "type": "ApplicationReplaced",
                            "timestamp": ari_timestamp(),
                            "application": name,
                            "asterisk_id": self.asterisk_id,
                        }
                    )
                )
            state.connection = conn
            state.subscribe_all = subscribe_all

    def unregister(self, conn: EventSink) -> None:
        for state in self.apps.values():
            if state.connection is conn:
                state.connection = None  # inactive: events are dropped, channels stay in Stasis
                state.subscribe_all = False

    def application_json(self, state: AppState) -> dict[str, Any]:
        return {
            "name": state.name,
            "channel_ids": [c.id for c in self.channels.values() if state.name in c.apps],
            "bridge_ids": [b.id for b in self.bridges.values() if state.name in b.apps],
            "endpoint_ids": [],
            "device_names": [],
            "events_allowed": [],
            "events_disallowed": [],
        }

    # ----------------------------------------------------------------------------------------- lookups
    def channel(self, channel_id: str) -> Channel:
        ch = self.channels.get(channel_id)
        if ch is None:
            raise AriError(404, "Channel not found")
        return ch

    def stasis_channel(self, channel_id: str) -> Channel:
        ch = self.channel(channel_id)
        if ch.stasis_app is None:
            raise AriError(409, "Channel not in Stasis application")
        return ch

    def bridge(self, bridge_id: str) -> Bridge:
        br = self.bridges.get(bridge_id)
        if br is None:
            raise AriError(404, "Bridge not found")
        return br

    # ------------------------------------------------------------------------------------------ originate
    def originate(self, params: dict[str, str], variables: dict[str, str]) -> dict[str, Any]:
        endpoint = params.get("endpoint", "")
        if not endpoint:
            raise AriError(400, "Endpoint must be specified")
        channel_id = params.get("channelId") or None
        other_id = params.get("otherChannelId") or None
        for cid in (channel_id, other_id):
            if cid and len(cid) > MAX_ID_LENGTH:
                raise AriError(400, "Channel ID must be less than 150 characters")
            if cid and cid in self.channels:
                raise AriError(409, "Channel with given unique ID already exists")
        tech, sep, resource = endpoint.partition("/")
        if not sep or not tech or not resource:
            raise AriError(400, "Invalid endpoint specified")
        app = params.get("app") or None
        if app is None and not params.get("extension"):
            raise AriError(400, "Application or extension must be specified")
        if params.get("originator") and params.get("formats"):
            raise AriError(400, "Originator and formats can't both be specified")
        if params.get("originator") and params["originator"] not in self.channels:
            raise AriError(400, "Provided originator channel was not found")
        if app is None and params.get("label"):
            raise AriError(404, "Requested label can not be found")
        timeout_s = int_param(params, "timeout", 30)
        timeout: float | None = None if timeout_s == -1 else float(timeout_s if timeout_s > 0 else 30)
        matched = next((t for t in KNOWN_TECHS if t.lower() == tech.lower()), None)
        if matched is None:
            raise allocation_failed()
        number = resource.split("@", 1)[0]
        behaviour = self.plan.resolve(number)
        return self._place_call(
            tech=matched,
            resource=resource,
            number=number,
            behaviour=behaviour,
            channel_id=channel_id or self._unique_id(),
            other_id=other_id,
            app=app,
            app_args=params.get("appArgs", ""),
            caller=CallerId.parse(params.get("callerId")),
            timeout=timeout,
            variables=variables,
        ).json()

    def _place_call(
        self,
        *,
        tech: str,
        resource: str,
        number: str,
        behaviour: Behaviour,
        channel_id: str,
        other_id: str | None,
        app: str | None,
        app_args: str,
        caller: CallerId,
        timeout: float | None,
        variables: dict[str, str],
    ) -> Channel:
        suffix = self._name_suffix()
        if tech == "Local":
            ctx_exten, _, context = resource.partition("@")
            dialplan = Dialplan(context=context or "default", exten=ctx_exten, priority=1)
            ch = Channel(
                id=channel_id,
                name=f"Local/{resource}-{suffix};1",
                kind="local1",
                dialplan=Dialplan(dialplan.context, dialplan.exten, 1, *OUTGOING_APP),
            )
            far: Channel | None = Channel(
                id=other_id or f"{channel_id};2",
                name=f"Local/{resource}-{suffix};2",
                kind="local2",
                state="Ring",
                dialplan=dialplan,
            )
        else:
            peer_name = resource.split("@", 1)[1] if "@" in resource else resource
            ch = Channel(
                id=channel_id,
                name=f"{tech}/{peer_name}-{suffix}",
                kind="trunk",
                dialplan=Dialplan("default", "s", 1, *OUTGOING_APP),
            )
            far = None
        ch.caller = CallerId(caller.name, caller.number)
        ch.connected = CallerId(caller.name, caller.number)
        ch.variables.update(variables)
        call = Call(
            id=channel_id,
            direction="outbound",
            endpoint=f"{tech}/{resource}",
            number=number,
            behaviour=behaviour,
            channel=ch,
            far=far,
            app=app,
            app_args=app_args.split(",") if app_args else [],
            timeout=timeout,
            variables=dict(variables),
        )
        ch.call = call
        for c in (ch, far):
            if c is None:
                continue
            self.channels[c.id] = c
            self.emit("ChannelCreated", channel=c)
            if app:
                c.apps.add(app)  # subscribed before dialing (A2), the ;2 half too
        if far is not None:
            far.call = call
            far.caller = CallerId()
        self.calls[call.id] = call
        call.task = self._spawn(self._run_outbound(call))
        return ch

    # --------------------------------------------------------------------------------- outbound scripts
    async def _run_outbound(self, call: Call) -> None:
        ch, far, b = call.channel, call.far, call.behaviour
        if far is not None:
            for name, value in call.variables.items():
                self.emit("ChannelVarset", channel=far, fields={"variable": name, "value": value})
            far.caller = CallerId(ch.caller.name, ch.caller.number)
            far.connected = CallerId(ch.caller.name, ch.caller.number)
            self.emit(
                "ChannelCallerId",
                channel=far,
                fields={
                    "caller_presentation": 0,
                    "caller_presentation_txt": "Presentation Allowed, Not Screened",
                },
            )
            self.emit("ChannelConnectedLine", channel=far)
        self._dial(call, "")
        no_answer = b.name == "no_answer"
        ring = b.after
        ringing = b.ringing if b.ringing is not None else no_answer or (far is None and ring > 0)
        if ringing:
            self._ringing(call)
        if far is not None and (no_answer or (ring > 0 and b.answers)):
            self._far_app(call, "Wait", "120" if no_answer else f"{ring:g}")
        if no_answer or ring > 0:
            if call.timeout is not None and (no_answer or ring >= call.timeout):
                await asyncio.sleep(call.timeout)
                self._no_answer_timeout(call)
                return
            if no_answer:
                await asyncio.Future()  # rings until the app hangs up (timeout=-1)
            await asyncio.sleep(ring)
        if b.name in ("busy", "congestion"):
            self._fail_indication(call, b.name)
        elif b.name in ("reject", "unreachable", "invalid"):
            self._fail_cause(call, b.cause or 21)
        else:
            self._answer(call)
            await self._answered_script(call)

    def _dial(self, call: Call, status: str) -> None:
        call.dialstatus = status or call.dialstatus
        dialstring = call.endpoint.split("/", 1)[1]
        self.emit(
            "Dial", peer=call.channel, fields={"dialstatus": status, "forward": "", "dialstring": dialstring}
        )

    def _far_app(self, call: Call, app_name: str, app_data: str) -> None:
        far = call.far
        if far is None or far.destroyed:
            return
        far.dialplan.priority += 1 if far.dialplan.app_name else 0
        far.dialplan.app_name, far.dialplan.app_data = app_name, app_data
        self.emit(
            "ChannelDialplan", channel=far, fields={"dialplan_app": app_name, "dialplan_app_data": app_data}
        )

    def _set_state(self, ch: Channel, state: str) -> None:
        if ch.state != state:
            ch.state = state
            self.emit("ChannelStateChange", channel=ch)

    def _ringing(self, call: Call) -> None:
        if call.far is not None:
            self._far_app(call, "Ringing", "")
        call.state = "ringing"
        self._set_state(call.channel, "Ringing")
        self._dial(call, "RINGING")

    def _fail_indication(self, call: Call, what: str) -> None:
        """Busy() / Congestion() on the callee side: an indication, not a hangup cause (A3)."""
        cause = 17 if what == "busy" else 34
        status = "BUSY" if what == "busy" else "CONGESTION"
        ch, far = call.channel, call.far
        if far is not None:
            self._far_app(call, "Busy" if what == "busy" else "Congestion", "5")
            self._set_state(far, "Busy")
            self._dial(call, status)
            self.emit("ChannelHangupRequest", channel=far, fields={"cause": 0})
            self._destroy(ch, 0, ended_by="callee")
            self.emit("ChannelHangupRequest", channel=far, fields={"cause": NORMAL_CLEARING, "soft": True})
            self._destroy(far, cause)
        else:
            self._trunk_failure(call, cause, status)

    def _fail_cause(self, call: Call, cause: int) -> None:
        """The callee hangs up during setup with a cause (Hangup(21) in the dialplan, a 603 on a trunk)."""
        ch, far = call.channel, call.far
        status = dialstatus_for_cause(cause)
        if far is not None:
            self._far_app(call, "Hangup", str(cause))
            self.emit("ChannelHangupRequest", channel=far, fields={"cause": NORMAL_CLEARING, "soft": True})
            self.emit("ChannelHangupRequest", channel=ch, fields={"cause": cause})
            self._destroy(far, cause)
            self._dial(call, status)
            self._destroy(ch, cause, ended_by="callee")
        else:
            self._trunk_failure(call, cause, status)

    def _trunk_failure(self, call: Call, cause: int, status: str) -> None:
        """A SIP trunk answers the INVITE with an error: the cause and SIP status are on the channel."""
        tech_cause = SIP_STATUS_FOR_CAUSE.get(cause)
        fields: dict[str, Any] = {"cause": cause}
        if tech_cause is not None:
            fields["tech_cause"] = tech_cause
        self.emit("ChannelHangupRequest", channel=call.channel, fields=fields)
        self._dial(call, status)
        self._destroy(call.channel, cause, tech_cause=tech_cause, ended_by="callee")

    def _no_answer_timeout(self, call: Call) -> None:
        """The originate timeout: cause 19 and no Dial NOANSWER (main/dial.c, fixed in 22.8.0)."""
        ch, far = call.channel, call.far
        if far is not None:
            self.emit("ChannelHangupRequest", channel=far, fields={"cause": 19})
            self._destroy(ch, 19, ended_by="timeout")
            self.emit("ChannelHangupRequest", channel=far, fields={"cause": NORMAL_CLEARING, "soft": True})
            self._destroy(far, 19)
        else:
            self._destroy(ch, 19, ended_by="timeout")

    def _answer(self, call: Call) -> None:
        ch, far = call.channel, call.far
        if far is not None:
            self._far_app(call, "Answer", "")
            self._set_state(far, "Up")
        self._set_state(ch, "Up")
        self._dial(call, "ANSWER")
        call.state = "up"
        call.answered = time.time()
        if call.app is None:
            return  # originated into the dialplan: the app is not involved
        if not self.active_app(call.app):
            # A11: dialed anyway; Stasis() fails on answer and the answered callee is hung up.
            self._end_call_channels(call, NORMAL_CLEARING, ended_by="stasis_failed")
            return
        self._enter_stasis(ch, call.app, call.app_args)

    def _enter_stasis(self, ch: Channel, app: str, args: list[str]) -> None:
        ch.dialplan.app_name = "Stasis"
        ch.dialplan.app_data = ",".join([app, *args])
        # An ARI-created channel is subscribed already and sees this; a dialplan-entered one is not yet.
        self._varset(ch, "STASISSTATUS", "")
        ch.apps.add(app)
        ch.stasis_app = app
        ch.stasis_args = list(args)
        self.emit("StasisStart", channel=ch, fields={"args": list(args)}, only_app=app)

    def _leave_stasis(self, ch: Channel) -> None:
        if ch.stasis_app is None:
            return
        self._leave_bridge(ch)
        self.emit("StasisEnd", channel=ch, only_app=ch.stasis_app)
        ch.stasis_app = None
        if ch.originated:
            self._varset(ch, "STASISSTATUS", "SUCCESS")
            ch.dialplan.app_name, ch.dialplan.app_data = OUTGOING_APP
        else:
            ch.apps.clear()  # A4: a dialplan-entered channel is no longer subscribed after StasisEnd

    def _varset(self, ch: Channel, name: str, value: str) -> None:
        ch.variables[name] = value
        self.emit("ChannelVarset", channel=ch, fields={"variable": name, "value": value})

    async def _answered_script(self, call: Call) -> None:
        """Run the party's script after answer: speak, press digits, hang up, at the planned offsets."""
        b = call.behaviour
        start = call.answered or time.time()
        actions: list[tuple[float, int, Callable[[], None]]] = []
        for i, say in enumerate(b.say):
            actions.append((say.at, i, partial(self._say, call, say)))
        if b.name == "voicemail":
            greet = Say(at=0.3, text=b.greeting)
            greeting_s = len(render_phrase(b.greeting, 8000)) / 16000
            beep = Say(at=0.3 + greeting_s + 0.2, tone_hz=1000.0, seconds=0.5)
            actions.append((greet.at, 100, partial(self._say, call, greet)))
            actions.append((beep.at, 101, partial(self._say, call, beep)))
            hangup_at = beep.at + 0.5 + (b.hangup_after or 60.0)
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
        ch = call.channel
        if say.text is not None:
            text = say.text
            key: tuple[Any, ...] = ("phrase", text)

            def render(rate: int) -> bytes:
                return render_phrase(text, rate)

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
        speaker = Speaker(key=key, render=render, start=time.time(), owner=ch, repeat=say.repeat)
        speaker.messages(audio.FORMATS["slin"])  # know the duration now, for the record
        call.speakers = [s for s in call.speakers if not s.done] + [speaker]
        call.said.append({"at": call.since_answer(), "ms": int(speaker.duration * 1000), **what})
        self.clock.add(speaker)

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

    def _stop_speaking(self, call: Call) -> None:
        for speaker in call.speakers:
            self.clock.remove(speaker)
        call.speakers.clear()

    def _end_call_channels(self, call: Call, cause: int, *, ended_by: str) -> None:
        self._stop_speaking(call)
        if call.far is not None and not call.far.destroyed:
            self._destroy(call.far, cause)
        self._destroy(call.channel, cause, ended_by=ended_by)

    def _destroy(
        self, ch: Channel, cause: int, *, tech_cause: int | None = None, ended_by: str | None = None
    ) -> None:
        if ch.destroyed:
            return
        ch.destroyed = True
        ch.hangup_cause = cause
        if ch.bridge is not None:
            self._leave_bridge(ch)
        fields: dict[str, Any] = {"cause": cause, "cause_txt": cause_text(cause)}
        if tech_cause is not None:
            fields["tech_cause"] = tech_cause
        self._end_media_operations(f"channel:{ch.id}")
        self.emit("ChannelDestroyed", channel=ch, fields=fields)
        self.channels.pop(ch.id, None)
        for snoop in list(ch.snoops):
            self.hangup_channel(snoop, NORMAL_CLEARING)
        if ch.snoop_target is not None and ch in ch.snoop_target.snoops:
            ch.snoop_target.snoops.remove(ch)
        if ch.leg is not None:
            ch.leg.close("hangup")
            self.legs.pop(str(ch.leg.uuid), None)
        call = ch.call
        if call is not None and ch is call.channel:
            self._finish_call(call, cause, tech_cause, ended_by)

    def _finish_call(self, call: Call, cause: int, tech_cause: int | None, ended_by: str | None) -> None:
        if not call.live:
            return
        self._stop_speaking(call)
        call.state = "ended"
        call.ended = time.time()
        call.cause = cause
        call.cause_txt = cause_text(cause)
        call.tech_cause = tech_cause
        call.ended_by = call.ended_by or ended_by
        self.calls.pop(call.id, None)
        self.ended_calls.append(call)
        task = call.task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()

    # --------------------------------------------------------------------------------------------- inbound
    def inbound(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A call arrives from a trunk and the dialplan runs `Stasis(<app>,inbound,<DID>)` (A4)."""
        did = str(spec.get("did") or "")
        if not did:
            raise AriError(400, "did is required")
        caller_number = str(spec.get("caller_number") or spec.get("caller") or "")
        if not caller_number:
            raise AriError(400, "caller_number is required")
        app = spec.get("app")
        if app is None:
            active = [s.name for s in self.apps.values() if s.connection is not None]
            if len(active) != 1:
                raise AriError(400, "app is required when not exactly one application is connected")
            app = active[0]
        try:
            if "behaviour" in spec:
                behaviour = self.plan.resolve(caller_number, parse_behaviour(spec["behaviour"], "behaviour"))
            else:
                behaviour = self.plan.resolve(caller_number)
        except PlanError as exc:
            raise AriError(400, str(exc)) from None
        if not behaviour.answers:
            raise AriError(400, f"behaviour {behaviour.name!r} cannot place an inbound call")
        trunk = str(spec.get("trunk") or "trunk")
        channel_id = str(spec.get("channel_id") or self._unique_id())
        if channel_id in self.channels:
            raise AriError(409, "Channel with given unique ID already exists")
        ch = Channel(
            id=channel_id,
            name=f"PJSIP/{trunk}-{self._name_suffix()}",
            kind="inbound",
            state="Up",
            originated=False,
            caller=CallerId(str(spec.get("caller_name") or ""), caller_number),
            connected=CallerId(str(spec.get("caller_name") or ""), caller_number),
            dialplan=Dialplan(context=str(spec.get("context") or "inbound"), exten=did, priority=3),
        )
        call = Call(
            id=channel_id,
            direction="inbound",
            endpoint=f"PJSIP/{caller_number}@{trunk}",
            number=caller_number,
            behaviour=behaviour,
            channel=ch,
            app=app,
            app_args=["inbound", did],
            timeout=None,
        )
        ch.call = call
        self.channels[ch.id] = ch
        self.emit("ChannelCreated", channel=ch)
        self.calls[call.id] = call
        call.task = self._spawn(self._run_inbound(call))
        return {"channel": ch.json(), "call": call.id}

    async def _run_inbound(self, call: Call) -> None:
        if call.behaviour.after > 0:
            await asyncio.sleep(call.behaviour.after)
        call.state = "up"
        call.answered = time.time()
        if call.app is None:
            return
        if not self.active_app(call.app):
            # Stasis() fails (STASISSTATUS=FAILED) and the dialplan goes on to hang up.
            call.channel.variables["STASISSTATUS"] = "FAILED"
            self._end_call_channels(call, NORMAL_CLEARING, ended_by="stasis_failed")
            return
        self._enter_stasis(call.channel, call.app, call.app_args)
        await self._answered_script(call)

    # ------------------------------------------------------------------------------------ channel actions
    def hangup(self, channel_id: str, reason: str | None, reason_code: str | None) -> None:
        ch = self.channel(channel_id)
        if reason and reason_code:
            raise AriError(400, "The reason and reason_code can't both be specified")
        cause = NORMAL_CLEARING
        if reason_code:
            try:
                cause = int(reason_code)
            except ValueError:
                raise AriError(400, "Invalid reason_code for hangup provided") from None
        elif reason:
            if reason not in HANGUP_REASONS:
                raise AriError(400, "Invalid reason for hangup provided")
            cause = HANGUP_REASONS[reason]
        self.hangup_channel(ch, cause)

    def hangup_channel(self, ch: Channel, cause: int) -> None:
        """DELETE /channels/{id}: a soft hangup (flag 32) with the given cause (A5)."""
        if ch.destroyed:
            return
        call = ch.call
        if ch.kind == "local2" and call is not None:
            self._callee_hangup(call, cause)
            return
        self.emit("ChannelHangupRequest", channel=ch, fields={"cause": SOFT_HANGUP_FLAG, "soft": True})
        if ch.stasis_app is not None:
            self._leave_stasis(ch)
        if call is not None and ch is call.channel:
            self._stop_speaking(call)
            far = call.far
            if far is not None and not far.destroyed:
                self.emit("ChannelHangupRequest", channel=far, fields={"cause": NORMAL_CLEARING})
            if not ch.originated:
                # the dialplan resumes after Stasis and hangs up; the app is no longer subscribed
                self._destroy(ch, cause, ended_by="app")
                return
            self._destroy(ch, cause, ended_by="app")
            if far is not None and not far.destroyed:
                self.emit(
                    "ChannelHangupRequest", channel=far, fields={"cause": NORMAL_CLEARING, "soft": True}
                )
                self._destroy(far, NORMAL_CLEARING)
            return
        self._destroy(ch, cause)

    def answer(self, channel_id: str) -> None:
        ch = self.stasis_channel(channel_id)
        self._set_state(ch, "Up")

    def ring(self, channel_id: str, start: bool) -> None:
        self.stasis_channel(channel_id)

    def continue_in_dialplan(self, channel_id: str, params: dict[str, str]) -> None:
        ch = self.stasis_channel(channel_id)
        if ch.state != "Up" and ch.kind == "inbound":
            raise AriError(412, "Channel in invalid state")
        self._leave_stasis(ch)
        # The simulator has no dialplan: after Stasis the channel runs off the end and hangs up.
        call = ch.call
        if call is not None and ch is call.channel:
            self._end_call_channels(call, NORMAL_CLEARING, ended_by="continue")
        else:
            self._destroy(ch, NORMAL_CLEARING)

    def send_dtmf(self, channel_id: str, params: dict[str, str]) -> None:
        ch = self.stasis_channel(channel_id)
        digits = params.get("dtmf", "")
        if not digits:
            raise AriError(400, "DTMF is required")
        if ch.state != "Up":
            raise AriError(412, "Channel in invalid state")
        if ch.call is not None:
            ch.call.dtmf_received.append({"digits": digits, "at": ch.call.since_answer()})

    def get_var(self, channel_id: str, variable: str | None) -> dict[str, str]:
        ch = self.channel(channel_id)
        if not variable:
            raise AriError(400, "Variable name is required")
        functions = {
            "CALLERID(num)": ch.caller.number,
            "CALLERID(name)": ch.caller.name,
            "CHANNEL(name)": ch.name,
            "UNIQUEID": ch.id,
        }
        if variable in functions:
            return {"value": functions[variable]}
        if variable not in ch.variables:
            raise AriError(404, "Provided variable was not found")
        return {"value": ch.variables[variable]}

    def set_var(self, channel_id: str, variable: str | None, value: str | None) -> None:
        ch = self.channel(channel_id)
        if not variable:
            raise AriError(400, "Variable name is required")
        if ch.stasis_app is None:
            raise AriError(409, "Channel not in Stasis application")
        self._varset(ch, variable, value or "")

    def snoop(self, channel_id: str, params: dict[str, str], snoop_id: str | None) -> dict[str, Any]:
        spy, whisper = params.get("spy", "none"), params.get("whisper", "none")
        for name, value in (("spy", spy), ("whisper", whisper)):
            if value not in ("none", "both", "out", "in"):
                raise AriError(400, f"Invalid direction specified for {name}")
        if spy == "none" and whisper == "none":
            raise AriError(400, "Direction must be specified for at least spy or whisper")
        app = params.get("app")
        if not app:
            raise AriError(400, "Application name is required")
        target = self.channels.get(channel_id)
        if target is None:
            raise AriError(404, "Provided channel was not found")
        sid = snoop_id or self._unique_id()
        if sid in self.channels:
            raise AriError(409, "Channel with given unique ID already exists")
        snoop = Channel(
            id=sid,
            name=f"Snoop/{target.id}-{self._name_suffix()}",
            kind="snoop",
            state="Up",
            dialplan=Dialplan("default", "s", 1, *OUTGOING_APP),
            snoop_target=target,
            snoop_spy=spy,
        )
        self.channels[sid] = snoop
        target.snoops.append(snoop)
        args = params.get("appArgs", "")
        self._enter_stasis(snoop, app, args.split(",") if args else [])
        return snoop.json()

    def list_channels(self) -> list[dict[str, Any]]:
        return [c.json() for c in self.channels.values()]

    # -------------------------------------------------------------------------------------- externalMedia
    async def external_media(self, params: dict[str, str], variables: dict[str, str]) -> dict[str, Any]:
        app = params.get("app", "")
        if not app:
            raise AriError(400, "app cannot be empty")
        encapsulation = params.get("encapsulation", "rtp")
        transport = params.get("transport", "udp")
        connection_type = params.get("connection_type", "client")
        if encapsulation not in ("rtp", "audiosocket", "none"):
            raise AriError(400, "encapsulation must be rtp, audiosocket or none")
        if transport not in ("udp", "tcp", "websocket"):
            raise AriError(400, "transport must be udp, tcp or websocket")
        if connection_type not in ("client", "server"):
            raise AriError(400, "connection_type must be client or server")
        pairs = {("rtp", "udp"), ("audiosocket", "tcp"), ("none", "websocket")}
        if (encapsulation, transport) not in pairs:
            raise AriError(400, "Invalid encapsulation/transport combination")
        if connection_type == "server" and transport != "websocket":
            raise AriError(400, "connection_type server is only valid for websocket")
        fmt_name = params.get("format", "")
        if not fmt_name:
            raise AriError(400, "format cannot be empty")
        if (encapsulation, transport) != ("audiosocket", "tcp"):
            raise AriError(501, "The simulator implements externalMedia with AudioSocket over TCP only")
        external_host = params.get("external_host", "")
        host, sep, port_txt = external_host.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_txt.isdigit() or not 0 < int(port_txt) < 65536:
            raise AriError(400, "external_host must be host:port")
        data = params.get("data", "")
        if not data:
            raise AriError(400, "data can not be empty")
        channel_id = params.get("channelId") or None
        if channel_id and channel_id in self.channels:
            raise AriError(409, "Channel with given unique ID already exists")
        fmt = audio.FORMATS.get(fmt_name)
        if fmt is None:
            raise allocation_failed()  # no such format: the channel request fails
        try:
            media_uuid = uuid_mod.UUID(data)
        except ValueError:
            raise allocation_failed() from None  # chan_audiosocket refuses a non-UUID
        cid = channel_id or self._unique_id()
        leg = AudioSocketLeg(
            channel_id=cid,
            media_uuid=media_uuid,
            fmt=fmt,
            service=external_host,
            on_audio=self._leg_audio,
            on_end=self._leg_ended,
        )
        try:
            await connect_leg(host, int(port_txt), leg)
        except (OSError, TimeoutError):
            leg.close("connect_failed")
            raise allocation_failed() from None
        if cid in self.channels:  # taken while we were connecting
            leg.close("duplicate")
            raise AriError(409, "Channel with given unique ID already exists")
        ch = Channel(
            id=cid,
            name=f"AudioSocket/{external_host}-{data}",
            kind="audiosocket",
            dialplan=Dialplan("default", "s", 1, *OUTGOING_APP),
            leg=leg,
        )
        ch.variables.update(variables)
        ch.variables.update({"AUDIOSOCKET_SERVICE": external_host, "AUDIOSOCKET_UUID": data})
        ch.channelvars = {"AUDIOSOCKET_SERVICE": external_host, "AUDIOSOCKET_UUID": data}
        self.channels[cid] = ch
        self.legs[str(media_uuid)] = leg
        self.emit("ChannelCreated", channel=ch)
        ch.apps.add(app)
        snapshot = ch.json()
        ch.channelvars = None
        self._spawn(self._answer_media_channel(ch, app, data))
        return snapshot

    async def _answer_media_channel(self, ch: Channel, app: str, data: str) -> None:
        # After the HTTP response, as Asterisk's dial thread does, and a little later (MEDIA_START_DELAY_S).
        low, high = self.media_start_delay_s
        await asyncio.sleep(self._rng.uniform(low, high) if high > 0 else 0)
        if ch.destroyed:
            return
        if ch.leg is not None:
            send_uuid(ch.leg)  # audiosocket_call: queue ANSWER, send the UUID
        peer_fields = {"forward": "", "dialstring": f"{ch.leg.service if ch.leg else ''}/{data}"}
        self.emit("Dial", peer=ch, fields={"dialstatus": "", **peer_fields})
        self._set_state(ch, "Up")
        self.emit("Dial", peer=ch, fields={"dialstatus": "ANSWER", **peer_fields})
        if not self.active_app(app):
            self._destroy(ch, NORMAL_CLEARING)
            return
        self._enter_stasis(ch, app, [data])

    def _leg_audio(self, leg: AudioSocketLeg, kind: int, payload: bytes) -> None:
        ch = self.channels.get(leg.channel_id)
        if ch is None or ch.bridge is None:
            return  # not bridged yet: the Stasis loop consumes and drops it (§4.4)
        now = time.time()
        for member in ch.bridge.channels:
            call = member.call
            if call is not None and member is call.channel:
                call.heard.add(kind, payload, now)

    def _leg_ended(self, leg: AudioSocketLeg, reason: str, error: str | None) -> None:
        """The media server hung up (0x00 or close) or broke the protocol: only that leg goes (A9)."""
        ch = self.channels.get(leg.channel_id)
        if ch is None or ch.destroyed:
            return
        self.emit("ChannelHangupRequest", channel=ch, fields={"cause": NORMAL_CLEARING, "soft": True})
        self._leave_stasis(ch)
        self._destroy(ch, NORMAL_CLEARING)

    # ------------------------------------------------------------------------------------------- bridges
    def create_bridge(self, params: dict[str, str], bridge_id: str | None) -> dict[str, Any]:
        types = tuple(t.strip() for t in (params.get("type") or "mixing").split(",") if t.strip())
        if not types or any(t not in BRIDGE_TYPES for t in types) or {"mixing", "holding"} <= set(types):
            raise AriError(400, "Invalid bridge type")
        bid = bridge_id or params.get("bridgeId") or str(uuid_mod.uuid4())
        if bid in self.bridges:
            raise AriError(409, "Bridge with the given unique ID already exists")
        if len(bid) > MAX_ID_LENGTH:
            raise AriError(400, "Bridge ID must be less than 150 characters")
        br = Bridge(id=bid, types=types, name=params.get("name", ""))
        self.bridges[bid] = br
        self.emit("BridgeCreated", bridge=br)
        return br.json()

    def add_to_bridge(self, bridge_id: str, channel_ids: list[str], params: dict[str, str]) -> None:
        br = self.bridge(bridge_id)
        if not channel_ids:
            raise AriError(400, "Missing parameter channel")
        chans = []
        for cid in channel_ids:
            ch = self.channels.get(cid)
            if ch is None:
                raise AriError(400, "Channel not found")
            chans.append(ch)
        for ch in chans:
            if ch.stasis_app is None:
                raise AriError(422, "Channel not in Stasis application")
        added = []
        for ch in chans:
            if ch.bridge is br:
                continue
            if ch.bridge is not None:
                self._leave_bridge(ch)
            ch.bridge = br
            br.channels.append(ch)
            if ch.stasis_app:
                br.apps.add(ch.stasis_app)
            added.append(ch)
            self.emit("ChannelEnteredBridge", channel=ch, bridge=br)
        if not added:
            return
        if len(br.channels) >= 2:
            for member in br.channels:
                others = [c.name for c in br.channels if c is not member]
                self._varset(member, "BRIDGEPEER", ",".join(others))
            first_pair = len(br.channels) == len(added)
            for ch in br.channels if first_pair else added:
                peer = next(c for c in br.channels if c is not ch)
                ch.connected = CallerId(peer.caller.name, peer.caller.number)
                self.emit("ChannelConnectedLine", channel=ch)
        # a talking party that just joined an AudioSocket leg starts sending at once
        for member in br.channels:
            call = member.call
            if call is not None:
                for speaker in call.speakers:
                    if not speaker.done:
                        self.clock.add(speaker)
        # inspection shows every media leg a party was bridged with, with live counters
        legs = br.legs()
        for member in br.channels:
            call = member.call
            if call is not None and member is call.channel:
                call.legs.extend(leg for leg in legs if leg not in call.legs)

    def remove_from_bridge(self, bridge_id: str, channel_ids: list[str]) -> None:
        br = self.bridge(bridge_id)
        if not channel_ids:
            raise AriError(400, "Missing parameter channel")
        chans = []
        for cid in channel_ids:
            ch = self.channels.get(cid)
            if ch is None:
                raise AriError(400, "Channel not found")
            if ch.bridge is not br:
                raise AriError(422, "Channel not in this bridge")
            chans.append(ch)
        for ch in chans:
            self._leave_bridge(ch)

    def _leave_bridge(self, ch: Channel) -> None:
        br = ch.bridge
        if br is None:
            return
        self._varset(ch, "BRIDGEPEER", "")
        br.channels.remove(ch)
        ch.bridge = None
        self.emit("ChannelLeftBridge", channel=ch, bridge=br)

    def destroy_bridge(self, bridge_id: str) -> None:
        br = self.bridge(bridge_id)
        for ch in list(br.channels):
            self._leave_bridge(ch)
        br.destroyed = True
        self.bridges.pop(br.id, None)
        self._end_media_operations(f"bridge:{br.id}")
        self.emit("BridgeDestroyed", bridge=br)

    def _end_media_operations(self, target_uri: str) -> None:
        """Playbacks and recordings end with the channel or bridge they play to or record."""
        for pb in list(self.playbacks.values()):
            if pb.target_uri == target_uri and pb.task is not None:
                pb.task.cancel()
        for rec in list(self.live_recordings.values()):
            if rec.target_uri == target_uri:
                self.stop_recording(rec.name)

    # --------------------------------------------------------------------------------- playbacks, records
    def play(
        self, target: Channel | Bridge, media: list[str], playback_id: str | None, lang: str | None
    ) -> dict[str, Any]:
        if not media:
            raise AriError(400, "media is required")
        if isinstance(target, Channel):
            if target.stasis_app is None:
                raise AriError(409, "Channel not in Stasis application")
            if target.state in ("Down", "Rsrved", "Ringing", "Ring"):
                raise AriError(412, "Channel in invalid state")
            target_uri = f"channel:{target.id}"
        else:
            target_uri = f"bridge:{target.id}"
        pid = playback_id or str(uuid_mod.uuid4())
        if pid in self.playbacks:
            raise AriError(409, "Playback with the given ID already exists")
        pb = Playback(id=pid, media=list(media), target_uri=target_uri, language=lang or "en")
        self.playbacks[pid] = pb
        if isinstance(target, Channel) and target.call is not None:
            target.call.playbacks.extend(media)
        pb.task = self._spawn(self._run_playback(pb, target))
        return pb.json()

    async def _run_playback(self, pb: Playback, target: Channel | Bridge) -> None:
        apps = self._target_apps(target)
        try:
            await asyncio.sleep(0)
            pb.state = "playing"
            self.emit("PlaybackStarted", fields={"playback": pb.json()}, apps=apps)
            for i, uri in enumerate(pb.media):
                pb.index = i
                if i:
                    self.emit("PlaybackContinuing", fields={"playback": pb.json()}, apps=apps)
                scheme, _, what = uri.partition(":")
                if scheme not in MEDIA_SCHEMES or not what:
                    pb.state = "failed"
                    break
                seconds = playback_seconds(scheme, what)
                if isinstance(target, Bridge):
                    key: tuple[Any, ...] = ("playback", uri)
                    pb.speaker = Speaker(
                        key=key,
                        render=partial(render_playback, uri),
                        start=time.time(),
                        bridge=target,
                        repeat=seconds is None,
                    )
                    self.clock.add(pb.speaker)
                if seconds is None:
                    await asyncio.Future()  # tones play until stopped
                await asyncio.sleep(seconds or 0)
                if pb.speaker is not None:
                    self.clock.remove(pb.speaker)
            else:
                pb.state = "done"
        except asyncio.CancelledError:
            pb.state = "done"
            raise
        finally:
            if pb.speaker is not None:
                self.clock.remove(pb.speaker)
            self.playbacks.pop(pb.id, None)
            self.emit("PlaybackFinished", fields={"playback": pb.json()}, apps=apps)

    def _target_apps(self, target: Channel | Bridge) -> set[str]:
        if isinstance(target, Channel):
            return {target.stasis_app} if target.stasis_app else set(target.apps)
        return set(target.apps)

    def stop_playback(self, playback_id: str) -> None:
        pb = self.playbacks.get(playback_id)
        if pb is None:
            raise AriError(404, "Playback not found")
        if pb.task is not None:
            pb.task.cancel()

    def record(self, target: Channel | Bridge, params: dict[str, str]) -> dict[str, Any]:
        name = params.get("name", "")
        fmt = params.get("format", "")
        if not name:
            raise AriError(400, "Recording name is required")
        if not fmt:
            raise AriError(400, "Recording format is required")
        if isinstance(target, Channel) and target.stasis_app is None:
            raise AriError(409, "Channel not in Stasis application")
        if_exists = params.get("ifExists", "fail")
        if if_exists not in ("fail", "overwrite", "append"):
            raise AriError(400, "ifExists must be fail, overwrite or append")
        if fmt not in RECORDING_FORMATS:
            raise AriError(422, f"Recording format {fmt} not found")
        if name in self.live_recordings:
            raise AriError(409, "Recording is already in progress")
        if name in self.stored_recordings and if_exists == "fail":
            raise AriError(409, "Recording already exists")
        target_uri = f"channel:{target.id}" if isinstance(target, Channel) else f"bridge:{target.id}"
        rec = Recording(
            name=name,
            format=fmt,
            target_uri=target_uri,
            max_duration=int_param(params, "maxDurationSeconds", 0),
        )
        self.live_recordings[name] = rec
        apps = self._target_apps(target)
        self.emit("RecordingStarted", fields={"recording": rec.json()}, apps=apps)
        rec.task = self._spawn(self._run_recording(rec, apps))
        return rec.json()

    async def _run_recording(self, rec: Recording, apps: set[str]) -> None:
        if rec.max_duration > 0:
            await asyncio.sleep(rec.max_duration)
            self.stop_recording(rec.name, apps=apps)
        else:
            await asyncio.Future()

    def stop_recording(self, name: str, *, cancel: bool = False, apps: set[str] | None = None) -> None:
        rec = self.live_recordings.pop(name, None)
        if rec is None:
            raise AriError(404, "Recording not found")
        rec.ended = time.time()
        rec.state = "canceled" if cancel else "done"
        if not cancel:
            self.stored_recordings[name] = rec
        if rec.task is not None and rec.task is not asyncio.current_task():
            rec.task.cancel()
        target_id = rec.target_uri.split(":", 1)[1]
        obj: Channel | Bridge | None = self.channels.get(target_id) or self.bridges.get(target_id)
        targets = apps if apps is not None else (self._target_apps(obj) if obj is not None else set())
        self.emit("RecordingFinished", fields={"recording": rec.json()}, apps=targets)

    # ------------------------------------------------------------------------------------- inspection
    def call_by_id(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            call = next((c for c in reversed(self.ended_calls) if c.id == call_id), None)
        if call is None:
            raise AriError(404, "Call not found")
        return call

    def list_calls(self, state: str | None = None, number: str | None = None) -> list[dict[str, Any]]:
        if state not in (None, "", "all", "live", "ended"):
            raise AriError(400, "state must be live, ended or all")
        calls: list[Call] = []
        if state in (None, "", "all", "live"):
            calls.extend(self.calls.values())
        if state in (None, "", "all", "ended"):
            calls.extend(self.ended_calls)
        if number:
            bare = number.lstrip("+")
            calls = [c for c in calls if c.number.lstrip("+") == bare]
        return [c.json() for c in calls]

    def call_action(self, call_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """Make a live simulated party act now: hang up, press digits, say something."""
        call = self.call_by_id(call_id)
        if not call.live:
            raise AriError(409, "Call has ended")
        if action == "hangup":
            if call.state == "up":
                self._callee_hangup(call, int(body.get("cause") or NORMAL_CLEARING))
            else:
                self._fail_cause(call, int(body.get("cause") or 21))
        elif action == "dtmf":
            if call.state != "up":
                raise AriError(409, "Call is not answered")
            digits = str(body.get("digits") or "")
            try:
                presses = parse_behaviour({"behaviour": "answer", "dtmf": [{"at": 0, "digits": digits}]}).dtmf
            except PlanError as exc:
                raise AriError(400, str(exc)) from None
            self._spawn(self._press_now(call, presses[0].digits))
        elif action == "say":
            if call.state != "up":
                raise AriError(409, "Call is not answered")
            try:
                says = parse_behaviour({"behaviour": "answer", "say": [{"at": 0, **body}]}).say
            except PlanError as exc:
                raise AriError(400, str(exc)) from None
            self._say(call, says[0])
        else:
            raise AriError(404, f"Unknown action {action!r}")
        return call.json()

    async def _press_now(self, call: Call, digits: str) -> None:
        for k, digit in enumerate(digits):
            await asyncio.sleep(DTMF_DURATION * 2 if k == 0 else DTMF_SPACING)
            if not call.live:
                return
            self._callee_dtmf(call, digit)

    def stats(self) -> dict[str, Any]:
        live_legs = [leg for leg in self.legs.values() if not leg.ended]
        bridged = len(live_legs)
        return {
            "audiosocket_frames_out": sum(leg.frames_out for leg in live_legs),
            "audiosocket_frames_in": sum(leg.frames_in for leg in live_legs),
            "live_calls": len(self.calls),
            "ended_calls": len(self.ended_calls),
            "channels": len(self.channels),
            "bridges": len(self.bridges),
            "audiosocket_legs": bridged,
            "events_sent": self.events_sent,
            "events_dropped": self.events_dropped,
            "apps": {
                s.name: {"connected": s.connection is not None, "subscribe_all": s.subscribe_all}
                for s in self.apps.values()
            },
            "media": self.clock.stats(),
        }

    async def shutdown(self) -> None:
        for call in list(self.calls.values()):
            self._end_call_channels(call, NORMAL_CLEARING, ended_by="shutdown")
        for leg in list(self.legs.values()):
            leg.close("shutdown")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


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
