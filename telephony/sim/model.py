"""Channels, bridges and the other objects the simulated Asterisk holds, with their ARI JSON shapes.

The JSON mirrors what Asterisk 22.10.1 put on the wire in the recorded traces (field names, the
`2026-11-24T05:22:59.752+0000` timestamp format, `AppDial2`/`(Outgoing Line)` for originated channels).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .audio import HeardMeter

if TYPE_CHECKING:
    from .media import AudioSocketLeg, Speaker
    from .plan import Behaviour
    from .recorder import Mixdown


def ari_timestamp(epoch: float | None = None) -> str:
    """Asterisk's event timestamp: millisecond precision, numeric UTC offset without a colon."""
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC).isoformat()


@dataclass(slots=True)
class CallerId:
    name: str = ""
    number: str = ""

    def json(self) -> dict[str, str]:
        return {"name": self.name, "number": self.number}

    @classmethod
    def parse(cls, value: str | None) -> CallerId:
        """`"Name" <number>`, `Name <number>` or a bare number, as ast_callerid_parse accepts."""
        if not value:
            return cls()
        value = value.strip()
        if "<" in value and value.endswith(">"):
            name, _, number = value[:-1].partition("<")
            return cls(name=name.strip().strip('"'), number=number.strip())
        if value.startswith('"') and value.count('"') >= 2:
            return cls(name=value.split('"')[1])
        return cls(number=value)


@dataclass(slots=True)
class Dialplan:
    context: str = "default"
    exten: str = "s"
    priority: int = 1
    app_name: str = ""
    app_data: str = ""

    def json(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "exten": self.exten,
            "priority": self.priority,
            "app_name": self.app_name,
            "app_data": self.app_data,
        }


OUTGOING_APP = ("AppDial2", "(Outgoing Line)")


@dataclass(eq=False, slots=True)
class Channel:
    id: str
    name: str
    kind: str  # local1 | local2 | trunk | inbound | audiosocket | snoop
    state: str = "Down"
    caller: CallerId = field(default_factory=CallerId)
    connected: CallerId = field(default_factory=CallerId)
    dialplan: Dialplan = field(default_factory=Dialplan)
    created: float = field(default_factory=time.time)
    language: str = "en"
    variables: dict[str, str] = field(default_factory=dict)
    apps: set[str] = field(default_factory=set)  # apps subscribed to this channel's events
    stasis_app: str | None = None  # set between StasisStart and StasisEnd
    stasis_args: list[str] = field(default_factory=list)
    originated: bool = True  # created by ARI (ends with ChannelDestroyed) vs entered from the dialplan
    bridge: Bridge | None = None
    call: Call | None = None  # the simulated party behind this channel, if any
    leg: AudioSocketLeg | None = None  # for AudioSocket channels
    snoops: list[Channel] = field(default_factory=list)
    snoop_target: Channel | None = None
    snoop_spy: str = "none"
    destroyed: bool = False
    hangup_cause: int | None = None
    channelvars: dict[str, str] | None = None
    _created_txt: str = ""

    def json(self) -> dict[str, Any]:
        if not self._created_txt:
            self._created_txt = ari_timestamp(self.created)
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "protocol_id": "",
            "caller": self.caller.json(),
            "connected": self.connected.json(),
            "accountcode": "",
            "dialplan": self.dialplan.json(),
            "creationtime": self._created_txt,
            "language": self.language,
        }
        if self.channelvars is not None:
            out["channelvars"] = dict(self.channelvars)
        return out


@dataclass(eq=False, slots=True)
class Bridge:
    id: str
    types: tuple[str, ...] = ("mixing",)
    name: str = ""
    created: float = field(default_factory=time.time)
    channels: list[Channel] = field(default_factory=list)
    apps: set[str] = field(default_factory=set)
    destroyed: bool = False
    recordings: list[Recording] = field(default_factory=list)  # live recordings of the bridge's mix

    @property
    def bridge_type(self) -> str:
        return "holding" if "holding" in self.types else "mixing"

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "technology": "holding_bridge" if self.bridge_type == "holding" else "simple_bridge",
            "bridge_type": self.bridge_type,
            "bridge_class": "stasis",
            "creator": "Stasis",
            "name": self.name,
            "channels": [c.id for c in self.channels],
            "creationtime": ari_timestamp(self.created),
            "video_mode": "talker",
        }

    def legs(self) -> list[AudioSocketLeg]:
        return [c.leg for c in self.channels if c.leg is not None]


@dataclass(eq=False, slots=True)
class Playback:
    id: str
    media: list[str]
    target_uri: str
    language: str = "en"
    state: str = "queued"
    index: int = 0
    task: asyncio.Task[None] | None = None
    speaker: Speaker | None = None

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "media_uri": self.media[min(self.index, len(self.media) - 1)],
            "target_uri": self.target_uri,
            "language": self.language,
            "state": self.state,
        }
        if self.index + 1 < len(self.media):
            out["next_media_uri"] = self.media[self.index + 1]
        return out


@dataclass(eq=False, slots=True)
class Recording:
    name: str
    format: str
    target_uri: str
    state: str = "recording"
    started: float = field(default_factory=time.time)
    ended: float | None = None
    max_duration: int = 0
    task: asyncio.Task[None] | None = None
    mix: Mixdown | None = None  # a bridge recording's audio (None: a channel recording, not simulated)
    data: bytes = b""  # the stored file, once finished

    @property
    def duration(self) -> int:
        return int((self.ended or time.time()) - self.started)

    def json(self) -> dict[str, Any]:
        talking = int(self.mix.voiced_samples / self.mix.rate) if self.mix is not None else 0
        return {
            "name": self.name,
            "format": self.format,
            "target_uri": self.target_uri,
            "state": self.state,
            "duration": self.duration,
            "talking_duration": min(talking, self.duration),
            "silence_duration": max(self.duration - talking, 0),
        }


@dataclass(eq=False, slots=True)
class Call:
    """One simulated party (a callee of an originate, or an inbound caller) and what happened to it."""

    id: str
    direction: str  # outbound | inbound
    endpoint: str
    number: str
    behaviour: Behaviour
    channel: Channel  # the channel the app controls (Local ;1, the trunk channel, the inbound channel)
    far: Channel | None = None  # Local ;2 half, which runs the callee's "dialplan"
    app: str | None = None
    app_args: list[str] = field(default_factory=list)
    timeout: float | None = 30.0
    variables: dict[str, str] = field(default_factory=dict)
    state: str = "dialing"  # dialing | ringing | up | ended
    created: float = field(default_factory=time.time)
    answered: float | None = None
    ended: float | None = None
    cause: int | None = None
    cause_txt: str | None = None
    dialstatus: str = ""
    tech_cause: int | None = None
    ended_by: str | None = None  # callee | app | timeout | stasis_failed | shutdown
    heard: HeardMeter = field(default_factory=HeardMeter)
    dtmf_sent: list[dict[str, Any]] = field(default_factory=list)
    dtmf_received: list[dict[str, Any]] = field(default_factory=list)
    said: list[dict[str, Any]] = field(default_factory=list)
    playbacks: list[str] = field(default_factory=list)
    legs: list[AudioSocketLeg] = field(default_factory=list)  # media legs it was bridged with
    # Music on hold it heard: {"class", "started_at", "stopped_at"} (seconds since answer; stopped_at None
    # while it plays).
    moh: list[dict[str, Any]] = field(default_factory=list)
    # Every change of the bridge its channel is in: {"at" (since answer), "bridge" (None: out of any),
    # "members": the channel ids in that bridge then, its own included}.
    bridged: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    speakers: list[Speaker] = field(default_factory=list)
    recordings: list[str] = field(default_factory=list)  # bridge recordings started while it was bridged
    # AMD() in the ai-amd dialplan hop (telephony.sim.amd): its arguments, when it ran (epoch seconds),
    # what it read and set. Empty when the call never went there.
    amd: dict[str, Any] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.state != "ended"

    def since_answer(self) -> float | None:
        return None if self.answered is None else round(time.time() - self.answered, 3)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "endpoint": self.endpoint,
            "number": self.number,
            "behaviour": self.behaviour.name,
            "app": self.app,
            "app_args": self.app_args,
            "state": self.state,
            "channel": self.channel.name,
            "created_at": iso(self.created),
            "answered_at": iso(self.answered),
            "ended_at": iso(self.ended),
            "duration_s": None
            if self.answered is None
            else round((self.ended or time.time()) - self.answered, 3),
            "cause": self.cause,
            "cause_txt": self.cause_txt,
            "dialstatus": self.dialstatus,
            "tech_cause": self.tech_cause,
            "ended_by": self.ended_by,
            "heard": self.heard.snapshot(),
            "dtmf_sent": list(self.dtmf_sent),
            "dtmf_received": list(self.dtmf_received),
            "said": list(self.said),
            "playbacks": list(self.playbacks),
            "media": [leg.stats() for leg in self.legs],
            "moh": [dict(m) for m in self.moh],
            "bridged": [dict(b) for b in self.bridged],
            "variables": dict(self.variables),
            "recordings": list(self.recordings),
            "amd": dict(self.amd),
            "machine": self.machine_json(),
        }

    def machine_json(self) -> dict[str, Any] | None:
        """An answering machine's greeting and beep as epoch seconds (None before answer or for a person),
        to compare with ``heard.spurts``: what the agent said, and when."""
        from .plan import machine_timeline  # noqa: PLC0415 - plan imports nothing of the model

        if not self.behaviour.is_machine or self.answered is None:
            return None
        t = machine_timeline(self.behaviour)
        at = self.answered
        return {
            "greeting_start": at + t.greeting_at,
            "greeting_end": at + t.greeting_end,
            "beep_start": None if t.beep_at is None else at + t.beep_at,
            "beep_end": None if t.beep_end is None else at + t.beep_end,
            "beep_hz": self.behaviour.beep_hz,
            "hangup_at": at + t.hangup_at,
        }
