"""Call events: what the Stasis app tells the rest of the system about a call, and the sink that hears them.

``telephony`` knows nothing of campaigns (DESIGN.md §3). The Stasis app (:mod:`telephony.stasis`) turns ARI
events into the small vocabulary below and hands each one to a :class:`CallEventSink`, an object named in
settings (``TELEPHONY_EVENT_SINK``) and provided by the orchestrator side (``campaigns.sink``).

The call id is the id the orchestrator chose for the call: for an outbound call it is the attempt id, which
is also the ARI ``channelId`` (``appArgs=outbound,<id>``; DESIGN.md §5 rule 2). For a call that entered the
app from the dialplan it is the caller's channel id.

Times are timezone-aware UTC datetimes taken when the Stasis app handled the ARI event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from telephony.outcomes import CallOutcome

EndReason = Literal["destroyed", "stasis_end", "reconciled", "max_duration"]


@dataclass(frozen=True, slots=True)
class CallRinging:
    """The far end is alerting (``Dial RINGING`` on the originated channel)."""

    call_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """``StasisStart`` of the call's channel: answered and controllable (PROTOCOLS.md A2)."""

    call_id: str
    channel_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CallBridged:
    """The call is in a mixing bridge with an AudioSocket leg; ``media_uuid`` is the UUID the media worker
    receives as the first AudioSocket frame (and finds the call brief by). It is the call id itself when the
    call id is a canonical UUID string (outbound calls: the attempt id), else a fresh uuid4 (a call that
    entered from the dialplan, whose channel id is Asterisk's own)."""

    call_id: str
    media_uuid: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CallDtmf:
    """``ChannelDtmfReceived`` on the call's channel (one digit)."""

    call_id: str
    digit: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over. ``reason`` says how we know:

    * ``destroyed``: ``ChannelDestroyed`` of an originated channel (outbound; PROTOCOLS.md A3),
    * ``stasis_end``: ``StasisEnd`` of a call that entered from the dialplan (A4: no ChannelDestroyed comes),
    * ``reconciled``: after an events-websocket gap ``GET /channels`` no longer lists it (DESIGN.md §5 r. 5),
    * ``max_duration``: the app hung it up at the hard maximum call duration.

    ``outcome`` is :func:`telephony.outcomes.classify` of what was seen; ``answered`` whether StasisStart was.
    A ``reconciled`` end was not seen: its outcome is what was seen before (``UNKNOWN`` when that says
    nothing), and ``gap_started_at`` is when the app was last known to be listening (None: unknown). An
    answered call whose media never came up ends with ``MEDIA_FAILED``.
    """

    call_id: str
    at: datetime
    outcome: CallOutcome
    cause: int | None = None
    cause_txt: str = ""
    dialstatus: str = ""
    tech_cause: int | None = None
    answered: bool = False
    reason: EndReason = "destroyed"
    gap_started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CallInbound:
    """A call entered the app from the dialplan (``Stasis(app,inbound,<DID>)``): who called which number.
    The app then asks the sink where it goes (:class:`InboundRouter`); a sink that does not route inbound
    calls has it answered, told ``message`` (a sound URI) and hung up. Its end follows as ``CallEnded``
    (``stasis_end``)."""

    call_id: str
    did: str
    caller_number: str
    caller_name: str
    at: datetime
    message: str = ""


@dataclass(frozen=True, slots=True)
class InboundRoute:
    """Where an inbound call goes: the answer of :meth:`InboundRouter.route_inbound`.

    * ``agent``: the AI agent takes it. The domain has already written the call brief under
      ``wire.brief.brief_key(<call id>)`` (the call id is the inbound channel id); the app answers and bridges
      the call to media like an answered outbound call (``CallBridged`` ...).
    * ``refuse``: answered, told ``message`` (a sound URI; empty: the app's configured message), hung up.
      Never silent: used over the tenant's cap and for numbers nobody owns.
    * ``transfer``: ``endpoint`` (an ARI endpoint, e.g. ``PJSIP/+15551230000@trunk``) is dialed with
      ``caller_id`` for at most ``timeout_s``; answered, the caller and the human are bridged
      (``CallTransferred``, ``number`` as dialed). Not answered (busy, no answer, failure): the call goes
      to the agent when ``fallback_to_agent`` (the domain writes the brief in that case too), else it is
      refused.
    """

    action: Literal["agent", "refuse", "transfer"]
    message: str = ""
    endpoint: str = ""
    number: str = ""
    caller_id: str = ""
    timeout_s: float = 30.0
    fallback_to_agent: bool = True


@dataclass(frozen=True, slots=True)
class MediaGone:
    """The AudioSocket leg of the call could not be set up or ended before the caller."""

    call_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CallTransferred:
    """The call was handed to a human (PROTOCOLS.md A10): the leg dialed to ``number`` answered and is now
    in the call's bridge in place of the AudioSocket leg, which the app has hung up. The call goes on;
    its end is reported as usual (``CallEnded`` of the caller's channel)."""

    call_id: str
    number: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CallRecording:
    """The call's mixed bridge recording (``POST /bridges/{id}/record``) ``started``, ``finished`` (stored on
    the PBX under ``name``, ``duration`` seconds as Asterisk counts them) or ``failed`` (``cause``, when
    Asterisk gives one, or the REST status that refused it)."""

    call_id: str
    name: str
    state: Literal["started", "finished", "failed"]
    at: datetime
    duration: int = 0
    cause: str = ""


@dataclass(frozen=True, slots=True)
class TransferUpdated:
    """A transfer the domain asked for (its ``transfer_id``) changed state: ``dialing`` (the human leg is
    being dialed; warm: the callee hears music on hold), ``briefing`` (warm: the human is with the agent),
    ``connected`` (the callee is with the human), ``declined`` / ``no_answer`` / ``failed`` (the callee is
    back with the agent) or ``cancelled`` (the callee hung up first). ``reason``: why it did not happen."""

    call_id: str
    transfer_id: str
    state: str  # one of the states above
    at: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CallAmd:
    """Asterisk's ``AMD()`` decided (the ``ai-amd`` dialplan hop; the call came back into Stasis with
    ``amd,<status>,<cause>``): ``status`` is ``AMDSTATUS`` (``HUMAN``, ``MACHINE``, ``NOTSURE``, ``HANGUP``)
    and ``cause`` ``AMDCAUSE`` (e.g. ``MAXWORDS-2-2``, ``TOOLONG-5000``; empty for ``HANGUP``)."""

    call_id: str
    status: str
    cause: str
    at: datetime


CallEvent = (
    CallRinging
    | CallAnswered
    | CallAmd
    | CallBridged
    | CallDtmf
    | CallEnded
    | MediaGone
    | CallTransferred
    | CallInbound
    | CallRecording
    | TransferUpdated
)


@runtime_checkable
class CallEventSink(Protocol):
    """Where the Stasis app delivers call events. Implementations live outside ``telephony``.

    ``handle`` is awaited in the Stasis app's event loop: for one call, one event at a time, in order; the
    events of different calls concurrently (a bounded number of calls at once). It must not block the loop
    (do blocking work in a thread). It should not raise; if it does, the app logs and goes on.

    ``live_call_ids`` answers which calls the orchestrator believes are placed on this PBX and not yet
    ended (for outbound calls: originate accepted or later). The app compares it with ``GET /channels``
    after every (re)connect to close calls that ended while it was not listening and to hang up channels
    nobody is waiting for.
    """

    async def handle(self, event: CallEvent) -> None: ...

    async def live_call_ids(self) -> set[str]: ...


@runtime_checkable
class InboundRouter(Protocol):
    """A sink that routes inbound calls (optional: the app checks for ``route_inbound``).

    ``route_inbound`` is awaited once per inbound call, right after its ``CallInbound`` was emitted (the
    sink's ``handle`` of that event may run before, during or after it: both must be idempotent about the
    call's record). The app waits a bounded time (``StasisConfig.inbound_route_timeout_s``); an answer that
    does not come in time, an exception or an unusable answer refuses the call with the configured message.
    It must not block the event loop.
    """

    async def route_inbound(self, event: CallInbound) -> InboundRoute: ...


@runtime_checkable
class CallEventBatchSink(CallEventSink, Protocol):
    """A sink that can also take several events of one call at once (the Stasis app uses it when it has one).

    When a call's events pile up while an earlier one of that call is being handled (the sink is behind),
    the app hands everything of that call that is waiting, in order, to one ``handle_many``. The result must
    be what awaiting ``handle`` for each in turn would give — a sink may apply them together (one
    transaction instead of one each) as long as every event's effect is kept. It returns, per event, None
    or the exception ``handle`` would have raised for it; one failing event must not lose the others. With
    nothing piled up the app calls ``handle``, one event at a time.
    """

    async def handle_many(self, events: Sequence[CallEvent]) -> Sequence[BaseException | None]: ...
