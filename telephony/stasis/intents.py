"""What the call controller asks its adapter to do, and what the adapter tells it back.

Each intent carries ``op``, a number the controller picked; the adapter executes the intent and hands the
:class:`Result` back with that number (:meth:`~telephony.stasis.controller.CallController.result`). The
intents of one batch are executed in order, one after the other (as one sequence of awaits would be).
Timers are intents too: the adapter starts them on its own clock and reports them fired by ``key``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from telephony.events import CallEvent, CallInbound


@dataclass(frozen=True)
class Result:
    """The answer to one intent. REST: ``status`` (None when no answer came) and the decoded ``body`` when
    one was asked for or the status is an error. Redis look-ups: ``value`` (see the intent)."""

    status: int | None = None
    body: Any = None
    value: bool | None = None


# ---------------------------------------------------------------------------------------------- REST
@dataclass(frozen=True)
class HangUp:
    """``DELETE /channels/{id}``: 204 when it existed, 404 when it was gone already."""

    op: int
    channel_id: str
    reason: str = "normal"


@dataclass(frozen=True)
class AnswerChannel:
    op: int
    channel_id: str


@dataclass(frozen=True)
class ContinueInDialplan:
    """``POST /channels/{id}/continue``: the channel leaves Stasis (StasisEnd) for this dialplan place."""

    op: int
    channel_id: str
    context: str
    extension: str = "s"
    priority: int = 1


@dataclass(frozen=True)
class RingChannel:
    """``POST /channels/{id}/ring``: the caller hears ringing while a human is dialed for it."""

    op: int
    channel_id: str


@dataclass(frozen=True)
class PlayMedia:
    op: int
    channel_id: str
    playback_id: str
    media: str


@dataclass(frozen=True)
class CreateBridge:
    """``POST /bridges`` (mixing) with our own id: 409 when it exists already."""

    op: int
    bridge_id: str


@dataclass(frozen=True)
class GetBridge:
    """``GET /bridges/{id}``, body wanted (its ``channels``)."""

    op: int
    bridge_id: str


@dataclass(frozen=True)
class GetChannel:
    op: int
    channel_id: str


@dataclass(frozen=True)
class DestroyBridge:
    op: int
    bridge_id: str


@dataclass(frozen=True)
class OpenMediaLeg:
    """``POST /channels/externalMedia``: an AudioSocket leg to ``host`` presenting ``media_uuid``, entering
    this app as ``channel_id``. Answered (200) before the leg has entered the app."""

    op: int
    channel_id: str
    host: str
    media_uuid: str


@dataclass(frozen=True)
class AddToBridge:
    op: int
    bridge_id: str
    channels: tuple[str, ...]


@dataclass(frozen=True)
class RemoveFromBridge:
    op: int
    bridge_id: str
    channel_id: str


@dataclass(frozen=True)
class RecordBridge:
    """``POST /bridges/{id}/record``: the bridge's mixed audio stored as ``name`` (never over another)."""

    op: int
    bridge_id: str
    name: str
    format: str = "wav"


@dataclass(frozen=True)
class StopRecording:
    """``POST /recordings/live/{name}/stop``: 204, or 404 when it had finished already."""

    op: int
    name: str


@dataclass(frozen=True)
class OriginateTransfer:
    """``POST /channels`` of a transfer's human leg, with these query parameters."""

    op: int
    params: Mapping[str, str] = field(hash=False)


@dataclass(frozen=True)
class StartMoh:
    """``POST /channels/{id}/moh``: the channel hears music on hold (a warm transfer's callee)."""

    op: int
    channel_id: str


@dataclass(frozen=True)
class StopMoh:
    """``DELETE /channels/{id}/moh``."""

    op: int
    channel_id: str


# --------------------------------------------------------------------------------------------- Redis
@dataclass(frozen=True)
class AnnounceMedia:
    """Tell the media workers that ``media_uuid`` is the call's (``media:expect``). ``value``: told (an
    adapter without Redis answers True: its stand-in media server takes any UUID)."""

    op: int
    media_uuid: str
    call_id: str


@dataclass(frozen=True)
class MarkMediaHostDown:
    """Asterisk could not reach this media worker: take it off the health set."""

    op: int
    host: str


@dataclass(frozen=True)
class AskAgentSpoke:
    """Whether the media worker marked that the call's agent was heard. ``value``: None when unknown."""

    op: int
    call_id: str


@dataclass(frozen=True)
class PublishReply:
    """A reply to the media worker on the call's reply channel (fire and forget)."""

    op: int
    call_id: str
    payload: Mapping[str, Any] = field(hash=False)


# ---------------------------------------------------------------------------------------------- sink
@dataclass(frozen=True)
class RouteInbound:
    """Ask the sink where an inbound call goes (``route_inbound``, bounded by the adapter). ``body``: the
    :class:`~telephony.events.InboundRoute`, or None (no answer in time, an error). A sink that does not
    route inbound calls answers a refusal with the configured message."""

    op: int
    call_id: str
    event: CallInbound = field(hash=False)


# -------------------------------------------------------------------------------------------- timers
@dataclass(frozen=True)
class StartTimer:
    """Report ``key`` fired (:meth:`~telephony.stasis.controller.CallController.timer`) after ``delay_s``."""

    key: Hashable
    delay_s: float


@dataclass(frozen=True)
class CancelTimer:
    key: Hashable


RestIntent = (
    HangUp
    | AnswerChannel
    | ContinueInDialplan
    | RingChannel
    | PlayMedia
    | CreateBridge
    | GetBridge
    | GetChannel
    | DestroyBridge
    | OpenMediaLeg
    | AddToBridge
    | RemoveFromBridge
    | OriginateTransfer
    | RecordBridge
    | StopRecording
    | StartMoh
    | StopMoh
)
RedisIntent = AnnounceMedia | MarkMediaHostDown | AskAgentSpoke | PublishReply
SinkIntent = RouteInbound
TimerIntent = StartTimer | CancelTimer
Intent = RestIntent | RedisIntent | SinkIntent | TimerIntent
#: What the controller gives out: call events for the sink, intents for its adapter.
Effect = CallEvent | Intent
