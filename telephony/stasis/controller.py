"""The call decisions of the Stasis app, sans I/O: ARI events in; call events and intents out.

:class:`CallController` owns every call, media leg and transfer of one Stasis app. It is fed ARI events
(:meth:`~CallController.event`), the answers to its own intents (:meth:`~CallController.result`), its timers
firing (:meth:`~CallController.timer`), call actions (:meth:`~CallController.command`) and the
reconciliation's findings; each input returns the effects it caused: call events (for the sink) and intents
(REST, Redis, timers: :mod:`telephony.stasis.intents`). It has no sockets, no asyncio and no clock: ``now``
(epoch seconds) comes with every input. The asyncio adapter (:class:`telephony.stasis.app.StasisApp`)
executes the intents, each as soon as it is given, and feeds their results back; where order matters (hang
the human leg up, then the media leg, then destroy the bridge) the controller gives the next intent only
once the previous one was answered.

The decisions (PROTOCOLS.md part A; see also the package's app module):

* A channel is recognised as ours from its first event: ``Dial`` naming it as ``peer`` (no ``caller``: an
  originate), its dialplan app ``AppDial2``, or ``StasisStart`` with ``outbound``/``inbound`` args. Its
  :class:`~telephony.outcomes.CallEndTracker` classifies the end: ``ChannelDestroyed`` ends an outbound call
  (A3), ``StasisEnd`` a dialplan-entered one (A4). A hard maximum duration, counted from the first event.
* ``StasisStart [outbound, id]`` → ``CallAnswered``; then a mixing bridge ``bridge-<call>`` (409: left from
  an earlier process, reused with its members) and an AudioSocket leg ``media-<call>~<try>`` on the next
  media host, round robin: its UUID is announced to the media workers first (not told → next host), then
  ``externalMedia``; 500 marks the host down and tries the next. **The leg joins the bridge only once its
  own StasisStart has arrived** (DESIGN.md §6): Asterisk answers 200 before the leg has entered the app.
  That StasisStart may come before or after the 200; the wait after the 200 is bounded
  (``media_start_timeout_s``), and a leg that does not come (or ends first) is hung up and the next host
  tried. Caller and leg into the bridge → ``CallBridged``. No host took it → ``MediaGone``, the caller is
  hung up and the call ends ``media_failed``. An ``addChannel`` refused because the caller is gone (the
  channel answers 404) is the callee hanging up, not a media failure.
* ``StasisStart [outbound, id, amd]`` (the campaign asks for answering-machine detection): ``CallAnswered``,
  the bridge and the media leg are set up at once but the callee is kept out of the bridge, and the call is
  sent to the ``ai-amd`` dialplan context (``/continue``: ``AMD()`` there, deploy/asterisk). Its StasisEnd is
  not its end; nothing is heard of it while there, so a bounded timer (``amd_check_s``, then every
  ``amd_recheck_s``, at most ``amd_max_s``) and ``GET /channels/{id}`` find a callee who hung up meanwhile.
  ``StasisStart [amd, STATUS, CAUSE]`` → ``CallAmd``, the callee joins the media leg (``CallBridged``) and the
  media worker is told (``{"type": "amd", "status", "cause"}`` on the reply channel). A restart finds a call
  in the hop (its dialplan context) and watches it the same way; one that came back is adopted.
* The media leg ending first (A9 the other way round) → ``MediaGone`` and the caller is hung up; the call
  is ``media_failed`` when its agent was never heard (the media worker's mark says so, or, the mark being
  unknown, the leg went within :data:`MEDIA_SHORT_LIFE_S` of joining the bridge).
* The caller ending → ``CallEnded`` once, then the human leg, the media leg and the bridge go (A9).
* Inbound (``StasisStart [inbound, DID]``): ``CallInbound``, then the sink is asked where it goes
  (:class:`~telephony.stasis.intents.RouteInbound`, at most ``inbound_route_timeout_s``;
  :class:`~telephony.events.InboundRoute`):

  - ``agent``: answered (``CallAnswered``) and bridged to media like an answered outbound call;
  - ``refuse`` (and no answer in time, an error, an unusable answer): answered, the message played, hung up
    once it finished (or after :data:`INBOUND_HANGUP_AFTER_S`): never silent;
  - ``transfer``: the caller hears ringing while the human leg (``xfer-<call>``) is dialed; once it answers,
    the caller is answered and both go into ``bridge-<call>`` (``CallTransferred``). Not answered, busy or
    failed: the agent takes the call (``fallback_to_agent``) or it is refused.

  After a restart of this process an inbound call found bridged with its media leg (or its human) is
  adopted; one that is not is refused (its route died with the old process).
* Call actions: ``hangup``, ``transfer`` (the transfer's states: :mod:`telephony.stasis.transfer`) and
  ``record``: a mixed recording of the call's bridge (``rec-<call>``, wav, never over an existing one), only
  once the callee is bridged with the agent (refused before: the media worker is told). The orchestrator
  sends it when the campaign records every call (on ``CallBridged``) and when the callee consented (the
  agent's ``record_consent`` tool). ``RecordingStarted/Finished/Failed`` of our names become
  ``CallRecording``; they may come after the call's end (the recording finishes when the bridge goes). The
  recording is of the bridge, which stays the call's through a transfer: it goes on with the human.
* Call actions: ``hangup``, ``transfer`` and ``transfer_decision`` (the transfer's states:
  :mod:`telephony.stasis.transfer`). A ``transfer`` with ``mode: "warm"``: the callee leaves the bridge and
  hears music on hold while the human leg is dialed; the human, once answered, joins the agent's leg in the
  bridge (``{"type": "transfer", "state": "human_joined"}`` to the media worker, which briefs them). The
  human's DTMF 1 (or ``transfer_decision`` with ``accept: true``) connects them with the callee (the agent's
  leg goes: ``CallTransferred``); DTMF 2, ``accept: false``, no decision within
  ``transfer_decision_timeout_s``, no answer, busy or a failure hang the human leg up and put the callee
  back with the agent, which is told (``{"type": "transfer", "state": "declined"|"no_answer"|"failed"}``).
  A transfer that names a ``transfer_id`` has its state changes reported as ``TransferUpdated``.
"""

from __future__ import annotations

import itertools
import logging
import math
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from telephony.events import (
    CallAmd,
    CallAnswered,
    CallBridged,
    CallDtmf,
    CallEnded,
    CallInbound,
    CallRecording,
    CallRinging,
    CallTransferred,
    EndReason,
    InboundRoute,
    MediaGone,
    TransferUpdated,
)
from telephony.outcomes import CallEndTracker, CallOutcome
from telephony.stasis.config import StasisConfig
from telephony.stasis.ids import (
    BRIDGE_PREFIX,
    INBOUND_PLAYBACK_PREFIX,
    MEDIA_PREFIX,
    MEDIA_TRY_SEP,
    TRANSFER_PREFIX,
    bridge_id_of,
    channel_of,
    is_originated,
    media_owner,
    recording_of,
    recording_owner,
    stasis_args,
    transfer_leg_of,
)
from telephony.stasis.intents import (
    AddToBridge,
    AnnounceMedia,
    AnswerChannel,
    AskAgentSpoke,
    CancelTimer,
    ContinueInDialplan,
    CreateBridge,
    DestroyBridge,
    Effect,
    GetBridge,
    GetChannel,
    HangUp,
    Intent,
    MarkMediaHostDown,
    OpenMediaLeg,
    OriginateTransfer,
    PlayMedia,
    PublishReply,
    RecordBridge,
    RemoveFromBridge,
    Result,
    RingChannel,
    RouteInbound,
    StartMoh,
    StartTimer,
    StopMoh,
    StopRecording,
)
from telephony.stasis.transfer import Transfer, TransferState, TransferStep

logger = logging.getLogger("telephony.stasis")

#: A transfer's failure reason -> the state reported (TransferUpdated, the media worker's reply).
TRANSFER_FAIL_STATES: Mapping[str, str] = {
    "declined": "declined",
    "hung_up": "declined",
    "no_decision": "declined",
    "timeout": "no_answer",
    "no_answer": "no_answer",
    "busy": "no_answer",
    "call_ended": "cancelled",
}
TRANSFER_ASTERISK_MARGIN_S = 2  # Asterisk's originate timeout of a human leg exceeds ours by this much
MEDIA_SHORT_LIFE_S = 3.0  # a media leg gone this soon after joining its bridge left the agent hardly heard
INBOUND_HANGUP_AFTER_S = 20.0  # hang up an unrouted inbound call after this long, message finished or not

Then = Callable[[Result], None]

#: ARI recording events -> the state of ``CallRecording`` they report.
RECORDING_EVENTS: dict[str, Literal["started", "finished", "failed"]] = {
    "RecordingStarted": "started",
    "RecordingFinished": "finished",
    "RecordingFailed": "failed",
}


@dataclass
class MediaSetup:
    """A call's media being set up: its bridge, the bridge's members, the media hosts not tried yet."""

    bridge_id: str
    members: set[str] | None
    tries_left: int


@dataclass
class Call:
    call_id: str
    channel_id: str
    inbound: bool
    tracker: CallEndTracker
    answered: bool = False
    rang: bool = False
    bridge_id: str | None = None
    media_id: str | None = None
    media_uuid: str | None = None
    ended: bool = False
    tearing_down: bool = False  # we are hanging the media leg up ourselves
    end_reason: EndReason | None = None  # set when the app itself hangs the call up for a reason
    transfer: Transfer | None = None  # the transfer to a human pending or done
    media_failed: bool = False  # answered, and its media could not be set up: ends as media_failed
    bridged_at: float | None = None  # when its media leg was put in its bridge (CallBridged)
    # Adopted after a restart, answered, its media to be set up anew: it ends media_failed unless bridged.
    resuming_media: bool = False
    setup: MediaSetup | None = None
    routing: bool = False  # inbound: waiting for the sink to say where it goes
    route: InboundRoute | None = None  # inbound: where the sink said it goes
    route_transfer: bool = False  # inbound: its route's human leg is being dialed (failure: fall back)
    recording: str | None = None  # the name of its bridge recording, once asked for
    # Answering-machine detection: "detecting" while the call is in the ai-amd dialplan hop (the callee is
    # kept out of its bridge), "done" once it came back; AMD()'s (status, cause) until told to the media
    # worker (when the callee joins the bridge with the media leg).
    amd: Literal["", "detecting", "done"] = ""
    amd_result: tuple[str, str] | None = None
    amd_since: float = 0.0


@dataclass
class MediaLeg:
    """An AudioSocket leg being opened: answered by externalMedia yet, and entered the app (True), ended
    first (False) or not seen yet (None)."""

    call: Call
    media_id: str
    media_uuid: str
    host: str
    answered: bool = False
    entered: bool | None = None


@dataclass
class InboundPlayback:
    call: Call
    answered: bool = False  # the play request was answered
    finished: bool = False  # its PlaybackFinished arrived


class CallController:
    """Every call of one Stasis app; see the module docstring."""

    def __init__(self, config: StasisConfig, *, new_uuid: Callable[[], uuid.UUID] = uuid.uuid4) -> None:
        if not config.media_hosts:
            raise ValueError("StasisConfig.media_hosts must name at least one host:port")
        self.config = config
        self.connected = False  # the events websocket is up and reconciled (set by the adapter)
        self.gap_started_at: datetime | None = None  # for the ends the current reconciliation reports
        self.calls: dict[str, Call] = {}  # by the caller's channel id (= call id)
        self.media: dict[str, str] = {}  # media channel id -> call id
        self.transfers: dict[str, Transfer] = {}  # human leg channel id (xfer-<call id>) -> its transfer
        self._legs: dict[str, MediaLeg] = {}  # media legs being opened
        self._playbacks: dict[str, InboundPlayback] = {}  # inbound message playback id -> its state
        self._hosts = itertools.cycle(config.media_hosts)
        self._new_uuid = new_uuid
        self._ops = itertools.count(1)
        self._then: dict[int, Then] = {}
        self._timers: dict[Hashable, Callable[[], None]] = {}
        self._out: list[Effect] = []
        self._now = 0.0

    # ------------------------------------------------------------------------------------- inputs
    def event(self, event: Mapping[str, Any], now: float) -> list[Effect]:
        """One decoded ARI event."""
        self._now = now
        self._on_event(event)
        return self._take()

    def result(self, op: int, result: Result, now: float) -> list[Effect]:
        """The answer to the intent numbered ``op``."""
        self._now = now
        then = self._then.pop(op, None)
        if then is not None:
            then(result)
        return self._take()

    def timer(self, key: Hashable, now: float) -> list[Effect]:
        """The timer ``key`` fired (one not cancelled meanwhile)."""
        self._now = now
        fire = self._timers.pop(key, None)
        if fire is not None:
            fire()
        return self._take()

    def command(self, command: Mapping[str, Any], now: float) -> list[Effect]:
        """One call action: ``{"action": "hangup"|"transfer", "call_id", ...}``."""
        self._now = now
        self._on_command(command)
        return self._take()

    @property
    def pending_ops(self) -> int:
        """Intents given out whose answer is awaited."""
        return len(self._then)

    # ------------------------------------------------------------------------------------ helpers
    def _take(self) -> list[Effect]:
        out, self._out = self._out, []
        return out

    def _at(self) -> datetime:
        return datetime.fromtimestamp(self._now, UTC)

    def _send(self, kind: Callable[..., Intent], *args: Any, then: Then | None = None) -> None:
        op = next(self._ops)
        if then is not None:
            self._then[op] = then
        self._out.append(kind(op, *args))

    def _start_timer(self, key: Hashable, delay_s: float, fire: Callable[[], None]) -> None:
        self._timers[key] = fire
        self._out.append(StartTimer(key, delay_s))

    def _cancel_timer(self, key: Hashable) -> None:
        if self._timers.pop(key, None) is not None:
            self._out.append(CancelTimer(key))

    def _sequence(self, intents: Iterable[tuple[Callable[..., Intent], tuple[Any, ...]]]) -> None:
        """Give out ``intents`` one after the other, each once the previous one was answered."""
        steps = list(intents)

        def step(index: int) -> None:
            if index < len(steps):
                kind, args = steps[index]
                self._send(kind, *args, then=lambda _r: step(index + 1))

        step(0)

    def _reply(self, call_id: str, payload: Mapping[str, Any]) -> None:
        self._send(PublishReply, call_id, payload)

    # ------------------------------------------------------------------------------------- events
    def track(self, channel_id: str, *, inbound: bool = False) -> Call:
        """The call of ``channel_id``, created (and its maximum duration started) when new."""
        call = self.calls.get(channel_id)
        if call is None:
            call = Call(
                call_id=channel_id,
                channel_id=channel_id,
                inbound=inbound,
                tracker=CallEndTracker(channel_id, ends_on_stasis_end=inbound),
            )
            self.calls[channel_id] = call
            self._start_timer(
                ("max_duration", channel_id),
                self.config.max_call_duration_s,
                lambda: self._max_duration(call),
            )
        return call

    def _on_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind in RECORDING_EVENTS:
            self._on_recording_event(str(kind), event)
            return
        if kind == "PlaybackFinished":
            playback = event.get("playback")
            playback_id = playback.get("id") if isinstance(playback, dict) else None
            inbound = self._playbacks.get(playback_id) if isinstance(playback_id, str) else None
            if inbound is not None and not inbound.finished:
                inbound.finished = True
                if inbound.answered:
                    self._inbound_finished(inbound)
            return
        channel = channel_of(event)
        channel_id = channel.get("id") if channel else None
        if kind == "Dial":
            self._on_dial(event)
            return
        if not isinstance(channel_id, str) or channel is None:
            return
        if channel_id.startswith(TRANSFER_PREFIX):  # a human leg (or its Local ;2 half): never a call
            self._on_transfer_event(kind, channel_id, event)
            return
        if channel_id in self.media:
            self._on_media_event(kind, channel_id)
            return
        if channel_id.startswith(MEDIA_PREFIX):
            return  # a media leg nobody waits for any more (given up on, or of a call that is gone)
        if kind == "StasisStart":
            self._on_stasis_start(event, channel)
            return
        call = self.calls.get(channel_id)
        if call is None and kind == "ChannelDestroyed" and is_originated(channel):
            call = self.track(channel_id)  # an originated channel we had not heard of (A3 rejected)
        if call is None or call.ended:
            return
        call.tracker.feed(event)
        if kind == "ChannelDtmfReceived":
            digit = event.get("digit")
            if isinstance(digit, str):
                self._out.append(CallDtmf(call.call_id, digit, self._at()))
        elif kind == "ChannelStateChange" and channel.get("state") == "Ringing" and not call.rang:
            call.rang = True
            self._out.append(CallRinging(call.call_id, self._at()))
        elif call.tracker.ended:
            reason: EndReason = call.end_reason or ("stasis_end" if call.inbound else "destroyed")
            self.end(call, reason)

    def _on_dial(self, event: Mapping[str, Any]) -> None:
        peer = channel_of(event, "peer")
        peer_id = peer.get("id") if peer else None
        if not isinstance(peer_id, str):
            return
        if peer_id.startswith(TRANSFER_PREFIX):
            self._on_transfer_event("Dial", peer_id, event)
            return
        if event.get("caller") is None and peer_id not in self.media:
            self.track(peer_id)
        call = self.calls.get(peer_id)
        if call is not None:
            call.tracker.feed(event)
            if str(event.get("dialstatus") or "").upper() == "RINGING" and not call.rang:
                call.rang = True
                self._out.append(CallRinging(call.call_id, self._at()))

    def _on_stasis_start(self, event: Mapping[str, Any], channel: Mapping[str, Any]) -> None:
        channel_id = str(channel["id"])
        raw_args = event.get("args")
        args = [str(a) for a in raw_args] if isinstance(raw_args, list) else []
        role = args[0] if args else ""
        if role == "amd":
            self._amd_back(event, channel_id, args)
            return
        if role not in ("outbound", "inbound"):
            # Something we did not create (human legs, xfer-..., are routed before): not ours to run.
            logger.info("stasis %s: ignoring StasisStart of %s args=%s", self.config.app, channel_id, args)
            return
        call = self.track(channel_id, inbound=role == "inbound")
        if call.ended or call.answered:
            return
        call.tracker.feed(event)
        call.answered = True
        if call.inbound:
            caller = channel.get("caller")
            caller = caller if isinstance(caller, Mapping) else {}
            dialplan = channel.get("dialplan")
            exten = dialplan.get("exten") if isinstance(dialplan, Mapping) else ""
            did = args[1] if len(args) > 1 and args[1] else str(exten or "")
            inbound = CallInbound(
                call_id=call.call_id,
                did=did[:64],
                caller_number=str(caller.get("number") or "")[:64],
                caller_name=str(caller.get("name") or "")[:200],
                at=self._at(),
                message=self.config.inbound_message,
            )
            self._out.append(inbound)
            self._route_inbound(call, inbound)
            return
        self._out.append(CallAnswered(call.call_id, channel_id, self._at()))
        if args[2:3] == ["amd"]:
            self._amd_start(call)
        self.setup_media(call)

    # ------------------------------------------------------------------- answering-machine detection
    def _amd_start(self, call: Call) -> None:
        """``StasisStart [outbound, id, amd]``: the call goes through ``AMD()`` in the dialplan (the
        ``ai-amd`` context) while its bridge and media leg are set up (so the agent is ready the moment a
        person is confirmed); the callee joins the bridge only once it comes back. Its StasisEnd on the
        way out is not its end; nothing is heard of it while it is there, so a timer looks (GET)."""
        call.amd = "detecting"
        call.amd_since = self._now

        def continued(result: Result) -> None:
            if call.ended or call.amd != "detecting" or result.status in (200, 204):
                return
            # Not in the dialplan (404: the callee went, its ChannelDestroyed follows; else refused): the
            # call goes on without detection, as for a person.
            logger.warning(
                "stasis %s: call %s: continue to %s answered %s; going on without detection",
                self.config.app,
                call.call_id,
                self.config.amd_context,
                result.status,
            )
            self._cancel_timer(("amd", call.channel_id))
            if result.status != 404:
                self._amd_decided(call, "NOTSURE", "CONTINUEFAILED")

        self._send(ContinueInDialplan, call.channel_id, self.config.amd_context, then=continued)
        self._start_timer(("amd", call.channel_id), self.config.amd_check_s, lambda: self._amd_check(call))

    def _amd_watch(self, call: Call) -> None:
        """Found in the detection hop by a reconciliation: looked at like a call sent there now."""
        call.amd = "detecting"
        call.amd_since = self._now
        self._start_timer(("amd", call.channel_id), self.config.amd_check_s, lambda: self._amd_check(call))

    def _amd_check(self, call: Call) -> None:
        """The call has not come back from detection yet: is its channel still there?"""
        if call.ended or call.amd != "detecting":
            return

        def looked(result: Result) -> None:
            if call.ended or call.amd != "detecting":
                return
            if result.status == 404:
                # The callee hung up during detection: its channel went without an event to us.
                logger.info("stasis %s: call %s ended during detection", self.config.app, call.call_id)
                self.end(call, "destroyed")
                return
            if self._now - call.amd_since >= self.config.amd_max_s:
                logger.warning(
                    "stasis %s: call %s stayed in %s for %.0fs; hanging up",
                    self.config.app,
                    call.call_id,
                    self.config.amd_context,
                    self._now - call.amd_since,
                )
                self._send(HangUp, call.channel_id, then=lambda _r: self.end(call, "destroyed"))
                return
            self._start_timer(
                ("amd", call.channel_id), self.config.amd_recheck_s, lambda: self._amd_check(call)
            )

        self._send(GetChannel, call.channel_id, then=looked)

    def _amd_back(self, event: Mapping[str, Any], channel_id: str, args: list[str]) -> None:
        """``StasisStart [amd, STATUS, CAUSE]``: the call is back from ``AMD()``."""
        status = args[1].strip().upper()[:16] if len(args) > 1 else ""
        cause = args[2].strip()[:64] if len(args) > 2 else ""
        call = self.calls.get(channel_id)
        if call is None:
            # It left for detection before a restart of this process: adopted now, its media set up anew.
            call = self.track(channel_id)
            call.answered = True
            call.tracker.feed(event)
            call.resuming_media = True
        if call.ended or call.amd == "done":
            return
        call.tracker.feed(event)
        self._cancel_timer(("amd", call.channel_id))
        self._out.append(CallAmd(call.call_id, status, cause, self._at()))
        self._amd_decided(call, status, cause)

    def _amd_decided(self, call: Call, status: str, cause: str) -> None:
        call.amd = "done"
        call.amd_result = (status, cause)
        if status == "HANGUP":
            self._amd_reply(call)
            self._send(HangUp, call.channel_id)
            return
        if call.setup is None and call.media_id is not None and call.bridge_id is not None:
            self._amd_join(call, call.bridge_id)
        elif call.setup is None and call.media_id is None and not call.media_failed:
            self.setup_media(call)  # (adopted in the hop after a restart: no media prepared for it)
        # else: the media leg is still being set up; the callee joins with it (_leg_settled).

    def _amd_join(self, call: Call, bridge_id: str) -> None:
        """The callee into the bridge where the media leg waits; then the media worker is told."""
        media_id = call.media_id

        def joined(result: Result) -> None:
            if call.ended:
                return
            if result.status not in (200, 204):
                self._send(
                    GetChannel, call.channel_id, then=lambda r: self._join_refused(call, result.status, r)
                )
                return
            if call.media_id != media_id:
                return
            self._bridged(call)

        self._send(AddToBridge, bridge_id, (call.channel_id,), then=joined)

    def _amd_reply(self, call: Call) -> None:
        if call.amd_result is None:
            return
        status, cause = call.amd_result
        call.amd_result = None
        self._reply(call.call_id, {"type": "amd", "status": status, "cause": cause})

    def _bridged(self, call: Call) -> None:
        """The callee and the media leg are in the bridge together."""
        call.bridged_at = self._now
        call.setup = None
        self._out.append(CallBridged(call.call_id, call.media_uuid or "", self._at()))
        self._amd_reply(call)

    def _join_refused(self, call: Call, status: int | None, channel: Result) -> None:
        if not call.ended and channel.status == 404:
            # The callee hung up while the media leg was being set up: not a media failure. Its end
            # arrives with its own events; only our legs go now.
            logger.info("stasis %s: call %s ended during its media set-up", self.config.app, call.call_id)
            self._teardown(call)
            return
        self._media_failed(call, f"addChannel answered {status}")

    # ---------------------------------------------------------------------------------- call ends
    def end(self, call: Call, reason: EndReason) -> None:
        """Report the call's end once, and clean up its human leg, media leg and bridge (A9)."""
        if call.ended:
            return
        call.ended = True
        call.routing = False
        self._cancel_timer(("max_duration", call.channel_id))
        self._cancel_timer(("end_grace", call.channel_id))
        self._cancel_timer(("inbound_route", call.channel_id))
        self._cancel_timer(("amd", call.channel_id))
        self.calls.pop(call.channel_id, None)
        tracker = call.tracker
        outcome = tracker.outcome()
        if call.media_failed or (call.resuming_media and call.bridged_at is None):
            # (An adopted call that ends before its new media leg joins: the callee heard nobody since the
            # restart, and had not before it, or its old leg would have been in the bridge.)
            outcome = CallOutcome.MEDIA_FAILED
        elif reason == "reconciled" and not tracker.decisive:
            outcome = CallOutcome.UNKNOWN  # never guessed: the end was not seen
        # The one place a call's end (and its outcome) is decided.
        self._out.append(
            CallEnded(
                call_id=call.call_id,
                at=self._at(),
                outcome=outcome,
                cause=tracker.cause,
                cause_txt=tracker.destroyed_cause_txt,
                dialstatus=tracker.dialstatus,
                tech_cause=tracker.tech_cause,
                answered=tracker.answered,
                reason=reason,
                gap_started_at=self.gap_started_at if reason == "reconciled" else None,
            )
        )
        self._teardown(call)

    def _teardown(self, call: Call) -> None:
        """The human leg, the media leg, the recording, the bridge: hung up, stopped and destroyed in that
        order. (The recording is stopped while its bridge still exists, so that its RecordingFinished
        reaches the app subscribed to the bridge, rather than racing the bridge's end.)"""
        call.tearing_down = True
        steps: list[tuple[Callable[..., Intent], tuple[Any, ...]]] = []
        xfer = call.transfer
        if xfer is not None and not xfer.done:
            # The caller went: the human leg goes too (answered or still ringing).
            pending = xfer.pending or xfer.state in (TransferState.BRIEFING, TransferState.CONNECTING)
            self.transfer_done(xfer)
            if pending:
                self._transfer_update(xfer, "cancelled", "call_ended")
                self._reply(xfer.call_id, {"event": "transfer", "status": "failed", "reason": "call_ended"})
            steps.append((HangUp, (xfer.channel_id,)))
        if call.media_id is not None:
            self.media.pop(call.media_id, None)
            steps.append((HangUp, (call.media_id,)))
        if call.recording is not None and call.bridge_id is not None:
            steps.append((StopRecording, (call.recording,)))
        if call.bridge_id is not None:
            steps.append((DestroyBridge, (call.bridge_id,)))
        self._sequence(steps)

    def _max_duration(self, call: Call) -> None:
        if call.ended:
            return
        logger.warning(
            "stasis %s: call %s reached the maximum duration (%.0fs); hanging up",
            self.config.app,
            call.call_id,
            self.config.max_call_duration_s,
        )
        call.end_reason = "max_duration"

        def hung_up(result: Result) -> None:
            if result.status not in (200, 204):
                self.end(call, "max_duration")
                return
            # Normally ChannelDestroyed follows at once; do not let a lost event keep the call live.
            self._start_timer(
                ("end_grace", call.channel_id),
                self.config.end_grace_s,
                lambda: self.end(call, "max_duration"),
            )

        self._send(HangUp, call.channel_id, then=hung_up)

    # -------------------------------------------------------------------------------------- media
    def setup_media(self, call: Call, bridge_members: set[str] | None = None) -> None:
        """Bridge the answered caller with a new AudioSocket leg. ``bridge_members``: the call's bridge
        exists already with these channels (a setup resumed after a restart)."""
        setup = MediaSetup(bridge_id_of(call.call_id), bridge_members, len(self.config.media_hosts))
        call.setup = setup
        if bridge_members is not None:
            self._bridge_ready(call, setup)
            return

        def created(result: Result) -> None:
            if result.status == 200:
                setup.members = set()
                self._bridge_ready(call, setup)
            elif result.status == 409:  # left from an earlier try (a restart of this process): reuse it
                self._send(GetBridge, setup.bridge_id, then=lambda r: read(r, result.status))
            else:
                self._media_failed(call, f"bridge create answered {result.status}")

        def read(result: Result, create_status: int | None) -> None:
            body = result.body
            if result.status != 200 or not isinstance(body, dict):
                self._media_failed(call, f"bridge create answered {create_status}")
                return
            setup.members = {c for c in body.get("channels") or () if isinstance(c, str)}
            self._bridge_ready(call, setup)

        self._send(CreateBridge, setup.bridge_id, then=created)

    def _bridge_ready(self, call: Call, setup: MediaSetup) -> None:
        call.bridge_id = setup.bridge_id
        if call.ended:
            self._send(DestroyBridge, setup.bridge_id)
            return
        self._try_next_host(call, setup)

    def _try_next_host(self, call: Call, setup: MediaSetup) -> None:
        """An AudioSocket leg on the next media host. Each try has its own channel id and UUID, so the
        events of a leg given up on cannot be mistaken for those of the next one."""
        if setup.tries_left <= 0:
            self._media_failed(call, "no media worker took the call")
            return
        setup.tries_left -= 1
        host = next(self._hosts)
        media_id = f"{MEDIA_PREFIX}{call.call_id}{MEDIA_TRY_SEP}{self._new_uuid().hex[:8]}"
        leg = MediaLeg(call, media_id, str(self._new_uuid()), host)
        # Before any request: the leg's StasisStart may arrive before externalMedia's answer.
        self.media[media_id] = call.call_id
        self._legs[media_id] = leg

        def announced(result: Result) -> None:
            if not result.value:  # the media worker would refuse a leg it was not told about
                self._drop_leg(leg)
                self._try_next_host(call, setup)
                return
            self._send(OpenMediaLeg, media_id, host, leg.media_uuid, then=opened)

        def opened(result: Result) -> None:
            if result.status != 200:
                logger.warning(
                    "stasis %s: externalMedia to %s for call %s answered %s %s",
                    self.config.app,
                    host,
                    call.call_id,
                    result.status,
                    result.body,
                )
                if result.status == 500:  # Asterisk could not connect to it: no new call for it until it says
                    self._send(MarkMediaHostDown, host)
                self._drop_leg(leg)
                self._try_next_host(call, setup)
                return
            leg.answered = True
            if leg.entered is not None:
                self._leg_settled(leg, setup)
            else:
                self._start_timer(
                    ("media_start", media_id), self.config.media_start_timeout_s, lambda: timed_out()
                )

        def timed_out() -> None:
            if leg.entered is None:
                logger.warning(
                    "stasis %s: media leg %s of call %s did not enter the app within %.1fs",
                    self.config.app,
                    media_id,
                    call.call_id,
                    self.config.media_start_timeout_s,
                )
                leg.entered = False
                self._leg_settled(leg, setup)

        self._send(AnnounceMedia, leg.media_uuid, call.call_id, then=announced)

    def _drop_leg(self, leg: MediaLeg) -> None:
        self.media.pop(leg.media_id, None)
        self._legs.pop(leg.media_id, None)

    def _leg_seen(self, leg: MediaLeg, entered: bool) -> None:
        """The leg's StasisStart (True) or its end before that (False)."""
        if leg.entered is not None:
            return
        leg.entered = entered
        if leg.answered:
            self._cancel_timer(("media_start", leg.media_id))
            setup = leg.call.setup
            if setup is not None:
                self._leg_settled(leg, setup)

    def _leg_settled(self, leg: MediaLeg, setup: MediaSetup) -> None:
        call = leg.call
        self._legs.pop(leg.media_id, None)
        if not leg.entered:
            self.media.pop(leg.media_id, None)
            self._send(HangUp, leg.media_id, then=lambda _r: self._try_next_host(call, setup))
            return
        if call.ended:
            self.media.pop(leg.media_id, None)
            self._send(
                HangUp,
                leg.media_id,
                then=lambda _r: self._media_failed(call, "no media worker took the call"),
            )
            return
        media_id = call.media_id = leg.media_id
        call.media_uuid = leg.media_uuid
        members = setup.members or set()
        # During detection the callee stays out: the leg waits in the bridge alone (_amd_decided).
        callee_waits = call.amd == "detecting" and call.channel_id not in members
        joining = tuple(
            c
            for c in (call.channel_id, media_id)
            if c not in members and not (callee_waits and c == call.channel_id)
        )

        def joined(result: Result) -> None:
            if result.status not in (200, 204):
                if call.ended:
                    self._media_failed(call, f"addChannel answered {result.status}")
                else:
                    self._send(
                        GetChannel, call.channel_id, then=lambda r: self._join_refused(call, result.status, r)
                    )
                return
            if call.ended or call.media_id != media_id:
                return  # (the leg went while it was being added: its end is handled as media gone first)
            if callee_waits:
                call.setup = None
                if call.amd == "done":  # (detection ended while the leg was being added)
                    self._amd_join(call, setup.bridge_id)
                return
            self._bridged(call)

        if not joining:
            joined(Result(204))
            return
        self._send(AddToBridge, setup.bridge_id, joining, then=joined)

    def _media_failed(self, call: Call, why: str) -> None:
        call.setup = None
        if call.ended:
            self._teardown(call)
            return
        logger.error("stasis %s: call %s has no media (%s); hanging up", self.config.app, call.call_id, why)
        call.media_failed = True
        self._out.append(MediaGone(call.call_id, self._at()))
        self._send(HangUp, call.channel_id, then=lambda _r: self._teardown(call))

    def _on_media_event(self, kind: Any, media_id: str) -> None:
        leg = self._legs.get(media_id)
        if kind == "StasisStart":
            if leg is not None:
                self._leg_seen(leg, True)
            return
        if kind not in ("StasisEnd", "ChannelDestroyed"):
            return
        if leg is not None:  # gone before it entered the app: the next host is tried
            self._leg_seen(leg, False)
            return
        call_id = self.media.pop(media_id, None)
        call = self.calls.get(call_id) if call_id else None
        if call is None or call.ended or call.tearing_down:
            return
        # A9 the other way round: the media worker went first. Don't leave the caller in silence.
        logger.warning(
            "stasis %s: media leg %s of call %s ended first", self.config.app, media_id, call.call_id
        )
        call.media_id = None
        self._out.append(MediaGone(call.call_id, self._at()))
        bridged_for = None if call.bridged_at is None else self._now - call.bridged_at
        self._media_went_first(call, bridged_for=bridged_for)

    def _media_went_first(self, call: Call, *, bridged_for: float | None) -> None:
        """Hang the caller up. A call whose agent was never heard is media_failed, not a success: its leg
        never made it into the bridge, or the media worker's mark says the agent never spoke (it refused the
        leg, or died first). When the mark cannot be read (Redis down), a leg that went within
        MEDIA_SHORT_LIFE_S of joining the bridge counts as never heard (the agent had hardly begun); a
        longer one stays answered (a call that talked must never be redialed on a guess)."""
        if call.transfer is not None:
            self._send(HangUp, call.channel_id)
            return

        def decide(spoke: bool | None) -> None:
            short = bridged_for is not None and bridged_for < MEDIA_SHORT_LIFE_S
            if spoke is False or (spoke is None and short):
                call.media_failed = True
            self._send(HangUp, call.channel_id)

        if bridged_for is None:
            decide(False)
        else:
            self._send(AskAgentSpoke, call.call_id, then=lambda r: decide(r.value))

    # ------------------------------------------------------------------------------------ inbound
    def _route_inbound(self, call: Call, event: CallInbound) -> None:
        """Ask the sink where the call goes, for at most ``inbound_route_timeout_s``."""
        call.routing = True
        self._start_timer(
            ("inbound_route", call.call_id),
            self.config.inbound_route_timeout_s,
            lambda: self._routed(call, None, "no route in time"),
        )
        self._send(
            RouteInbound, call.call_id, event, then=lambda r: self._routed(call, r.body, "routing failed")
        )

    def _routed(self, call: Call, route: Any, why: str) -> None:
        if not call.routing:
            return  # (decided already: a late answer after the timeout, or the timeout after the answer)
        call.routing = False
        self._cancel_timer(("inbound_route", call.call_id))
        if call.ended:
            return
        usable = isinstance(route, InboundRoute) and route.action in ("agent", "refuse", "transfer")
        if not usable:
            logger.warning(
                "stasis %s: inbound call %s: %s (%.200r); refusing it",
                self.config.app,
                call.call_id,
                why,
                route,
            )
            route = InboundRoute(action="refuse")
        call.route = route
        logger.info("stasis %s: inbound call %s: %s", self.config.app, call.call_id, route.action)
        if route.action == "agent":
            self._inbound_agent(call)
        elif route.action == "transfer":
            self._inbound_transfer(call, route)
        else:
            self.inbound_unrouted(call, route.message)

    def _inbound_agent(self, call: Call) -> None:
        """Answer, then bridge to media exactly like an answered outbound call."""

        def answered(result: Result) -> None:
            if call.ended:
                return
            if result.status not in (200, 204):
                # (404: the caller went meanwhile, its StasisEnd ends it; else media set-up says more)
                logger.warning(
                    "stasis %s: answer %s answered %s", self.config.app, call.channel_id, result.status
                )
            self._out.append(CallAnswered(call.call_id, call.channel_id, self._at()))
            self.setup_media(call)

        self._send(AnswerChannel, call.channel_id, then=answered)

    def _inbound_transfer(self, call: Call, route: InboundRoute) -> None:
        """Ring the caller and dial the human; the rest is the transfer's (see _bridge_transfer)."""
        timeout_s = route.timeout_s
        if (
            not route.endpoint
            or isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not 0 < timeout_s <= 600
        ):
            logger.warning(
                "stasis %s: inbound call %s: unusable transfer route %r", self.config.app, call.call_id, route
            )
            self._inbound_fallback(call, "invalid")
            return
        if not self.connected:  # A11: the human leg's StasisStart would never reach us
            self._inbound_fallback(call, "pbx_unavailable")
            return
        call.route_transfer = True
        self._send(RingChannel, call.channel_id)
        self._dial_human(
            call,
            number=route.number or route.endpoint,
            endpoint=route.endpoint,
            caller_id=route.caller_id or None,
            timeout_s=float(timeout_s),
        )

    def _inbound_fallback(self, call: Call, reason: str) -> None:
        """The route's human did not take the call: the agent does (fallback_to_agent), else refuse it."""
        call.route_transfer = False
        if call.ended:
            return
        route = call.route
        if route is not None and route.fallback_to_agent:
            logger.info(
                "stasis %s: inbound call %s: transfer failed (%s); the agent takes it",
                self.config.app,
                call.call_id,
                reason,
            )
            self._inbound_agent(call)
        else:
            logger.info(
                "stasis %s: inbound call %s: transfer failed (%s); refusing it",
                self.config.app,
                call.call_id,
                reason,
            )
            self.inbound_unrouted(call, route.message if route is not None else "")

    def inbound_unrouted(self, call: Call, message: str = "") -> None:
        """Answer, play ``message`` (empty: the configured one), hang up once it finished; the end follows
        on StasisEnd."""
        playback_id = f"{INBOUND_PLAYBACK_PREFIX}{call.call_id}"
        message = message or self.config.inbound_message

        def answered(result: Result) -> None:
            if result.status not in (200, 204):
                logger.warning(
                    "stasis %s: answer %s answered %s", self.config.app, call.channel_id, result.status
                )
            self._playbacks[playback_id] = playback
            self._send(PlayMedia, call.channel_id, playback_id, message, then=playing)

        def playing(result: Result) -> None:
            playback.answered = True
            if result.status not in (200, 201) or call.ended or playback.finished:
                self._inbound_finished(playback)
            else:
                self._start_timer(
                    ("inbound", playback_id), INBOUND_HANGUP_AFTER_S, lambda: self._inbound_finished(playback)
                )

        playback = InboundPlayback(call)
        self._send(AnswerChannel, call.channel_id, then=answered)

    def _inbound_finished(self, playback: InboundPlayback) -> None:
        call = playback.call
        playback_id = f"{INBOUND_PLAYBACK_PREFIX}{call.call_id}"
        if self._playbacks.get(playback_id) is not playback:
            return  # (finished already)
        del self._playbacks[playback_id]
        self._cancel_timer(("inbound", playback_id))
        if not call.ended:
            logger.info("stasis %s: inbound call %s was refused; hung up", self.config.app, call.call_id)
            self._send(HangUp, call.channel_id)

    # ----------------------------------------------------------------------------------- commands
    def _on_command(self, command: Mapping[str, Any]) -> None:
        action, call_id = command.get("action"), command.get("call_id")
        if (
            action not in ("hangup", "transfer", "transfer_decision", "record")
            or not isinstance(call_id, str)
            or not call_id
        ):
            logger.warning("stasis %s: dropping unknown command %.200r", self.config.app, command)
            return
        call = self.calls.get(call_id)
        if call is None or call.ended:
            logger.warning(
                "stasis %s: dropping %s command for call %s: no such call here",
                self.config.app,
                action,
                call_id,
            )
            return
        if action == "hangup":
            logger.info(
                "stasis %s: hanging up call %s on request (%.100s)",
                self.config.app,
                call_id,
                command.get("reason") or "no reason given",
            )

            def hung_up(result: Result) -> None:
                if result.status == 404 and not call.ended:  # gone already and its end never reached us
                    self.end(call, "stasis_end" if call.inbound else "destroyed")
                elif result.status in (200, 204) and call.amd == "detecting" and not call.ended:
                    self.end(call, "destroyed")  # in the detection hop: no event of its end will come
                elif result.status not in (200, 204, 404):
                    logger.warning(
                        "stasis %s: hangup of call %s answered %s", self.config.app, call_id, result.status
                    )

            self._send(HangUp, call.channel_id, then=hung_up)
        elif action == "record":
            self._on_record_command(call)
        elif action == "transfer_decision":
            self._on_transfer_decision(call, command)
        else:
            self._on_transfer_command(call, command)

    # --------------------------------------------------------------------------------- recordings
    def _on_record_command(self, call: Call) -> None:
        """Record the call's bridge (its mix: callee, agent, a human after a transfer). Refused unless the
        callee is bridged with the agent; asked once per call."""

        def refused(reason: str) -> None:
            logger.info("stasis %s: call %s: not recording (%s)", self.config.app, call.call_id, reason)
            self._reply(call.call_id, {"type": "recording", "state": "refused", "reason": reason})

        if call.recording is not None:
            refused("already_recording")
            return
        if call.bridge_id is None or call.bridged_at is None or call.media_id is None:
            refused("not_bridged")
            return
        name = recording_of(call.call_id)
        call.recording = name

        def answered(result: Result) -> None:
            if result.status in (200, 201):
                return  # RecordingStarted follows
            logger.warning(
                "stasis %s: call %s: recording refused: %s %s",
                self.config.app,
                call.call_id,
                result.status,
                result.body,
            )
            cause = f"http_{result.status}" if result.status is not None else "no_answer"
            self._out.append(CallRecording(call.call_id, name, "failed", self._at(), cause=cause))
            self._reply(call.call_id, {"type": "recording", "state": "failed", "reason": cause})

        logger.info("stasis %s: call %s: recording as %s", self.config.app, call.call_id, name)
        self._send(RecordBridge, call.bridge_id, name, "wav", then=answered)

    def _on_recording_event(self, kind: str, event: Mapping[str, Any]) -> None:
        recording = event.get("recording")
        name = recording.get("name") if isinstance(recording, Mapping) else None
        call_id = recording_owner(name) if isinstance(name, str) else None
        if call_id is None or not isinstance(recording, Mapping) or not isinstance(name, str):
            return  # not one of ours
        state = RECORDING_EVENTS[kind]
        duration = recording.get("duration")
        self._out.append(
            CallRecording(
                call_id=call_id,
                name=name,
                state=state,
                at=self._at(),
                duration=duration if isinstance(duration, int) and not isinstance(duration, bool) else 0,
                cause=str(recording.get("cause") or "")[:200],
            )
        )
        if state == "started" and call_id in self.calls:
            self._reply(call_id, {"type": "recording", "state": "started"})

    # ---------------------------------------------------------------------------------- transfers
    def _on_transfer_command(self, call: Call, command: Mapping[str, Any]) -> None:
        def failed(reason: str) -> None:
            self._reply(call.call_id, {"event": "transfer", "status": "failed", "reason": reason})
            # Refused before anything was dialed: the domain's row and a warm transfer's agent (which did not
            # wait for this answer) are told too; never for a second request while one is under way.
            transfer_id = command.get("transfer_id")
            if reason in ("already_transferred", "transfer_in_progress"):
                return
            if isinstance(transfer_id, str) and transfer_id and len(transfer_id) <= 64:
                self._out.append(TransferUpdated(call.call_id, transfer_id, "failed", self._at(), reason))
            if command.get("mode") == "warm":
                payload = {
                    "type": "transfer",
                    "state": "failed",
                    "reason": reason,
                    "transfer_id": transfer_id or "",
                }
                self._reply(call.call_id, payload)

        if call.transfer is not None and not call.transfer.done:
            state = call.transfer.state
            logger.info(
                "stasis %s: call %s: refusing a transfer (one is %s)", self.config.app, call.call_id, state
            )
            failed("already_transferred" if state is TransferState.BRIDGED else "transfer_in_progress")
            return
        number, endpoint = command.get("number"), command.get("endpoint")
        caller_id = command.get("caller_id")
        mode, transfer_id = command.get("mode", "cold"), command.get("transfer_id", "")
        timeout_s = command.get("timeout_s", self.config.transfer_timeout_s)
        if (
            not isinstance(number, str)
            or not isinstance(endpoint, str)
            or not endpoint
            or not (caller_id is None or isinstance(caller_id, str))
            or isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not 0 < timeout_s <= 600
            or mode not in ("cold", "warm")
            or not isinstance(transfer_id, str)
            or len(transfer_id) > 64
        ):
            logger.warning("stasis %s: unusable transfer command %.300r", self.config.app, command)
            failed("invalid")
            return
        if not call.answered or call.bridge_id is None or call.media_id is None:
            logger.warning("stasis %s: call %s is not bridged: no transfer", self.config.app, call.call_id)
            failed("not_bridged")
            return
        if not self.connected:  # A11: the human leg's StasisStart would never reach us
            failed("pbx_unavailable")
            return
        xfer = self._dial_human(
            call,
            number=number,
            endpoint=endpoint,
            caller_id=caller_id,
            timeout_s=float(timeout_s),
            mode=mode,
            transfer_id=transfer_id,
        )
        summary = command.get("summary")
        xfer.summary = summary[:1000] if isinstance(summary, str) else ""
        self._transfer_update(xfer, "dialing")
        if xfer.warm:
            self._hold_callee(call, xfer)

    def _dial_human(
        self,
        call: Call,
        *,
        number: str,
        endpoint: str,
        caller_id: str | None,
        timeout_s: float,
        mode: str = "cold",
        transfer_id: str = "",
    ) -> Transfer:
        """Originate the human leg ``xfer-<call>`` into this app; its StasisStart is the answer."""
        channel_id = transfer_leg_of(call.call_id)
        xfer = Transfer(
            call.call_id, channel_id, number, CallEndTracker(channel_id), mode=mode, transfer_id=transfer_id
        )
        call.transfer = xfer
        self.transfers[channel_id] = xfer  # before the originate: its events may come before the response
        self._start_timer(("transfer", channel_id), float(timeout_s), lambda: self._transfer_timeout(xfer))
        logger.info(
            "stasis %s: call %s: transferring to %s via %s", self.config.app, call.call_id, number, endpoint
        )
        params = {
            "endpoint": endpoint,
            "app": self.config.app,
            "appArgs": f"transfer,{call.call_id}",
            "channelId": channel_id,
            "timeout": str(math.ceil(timeout_s) + TRANSFER_ASTERISK_MARGIN_S),
            "originator": call.channel_id,
        }
        if caller_id:
            params["callerId"] = caller_id

        def originated(result: Result) -> None:
            if result.status == 200:
                return
            logger.warning(
                "stasis %s: call %s: originating the transfer leg answered %s %s",
                self.config.app,
                xfer.call_id,
                result.status,
                result.body,
            )
            if result.status is None:  # no answer: it may have been placed all the same
                xfer.move(TransferStep.GIVE_UP)
                self._send(HangUp, xfer.channel_id, then=lambda _r: self._transfer_failed(xfer, "failed"))
            else:
                self._transfer_failed(xfer, "failed")

        self._send(OriginateTransfer, params, then=originated)
        return xfer

    def _transfer_update(self, xfer: Transfer, state: str, reason: str = "") -> None:
        """Report a state of a transfer the domain named (TransferUpdated); warm: tell the media worker."""
        if xfer.transfer_id:
            self._out.append(TransferUpdated(xfer.call_id, xfer.transfer_id, state, self._at(), reason))
        if xfer.warm and state not in ("dialing", "briefing", "connected"):
            payload: dict[str, Any] = {"type": "transfer", "state": state, "transfer_id": xfer.transfer_id}
            if reason:
                payload["reason"] = reason
            self._reply(xfer.call_id, payload)

    def _hold_callee(self, call: Call, xfer: Transfer) -> None:
        """Warm: the callee leaves the bridge (the agent's leg stays) and hears music on hold."""
        xfer.held = True
        bridge_id = call.bridge_id

        def removed(result: Result) -> None:
            if result.status not in (200, 204):
                logger.warning(
                    "stasis %s: call %s: taking the callee out of the bridge answered %s",
                    self.config.app,
                    call.call_id,
                    result.status,
                )
            if not call.ended and xfer.held:
                self._send(StartMoh, call.channel_id)

        if bridge_id is not None:
            self._send(RemoveFromBridge, bridge_id, call.channel_id, then=removed)

    def _unhold_callee(self, call: Call, xfer: Transfer, then: Callable[[], None]) -> None:
        """Warm: music off, the callee back in the bridge with the agent's leg; then ``then``."""
        xfer.held = False
        bridge_id = call.bridge_id
        if call.ended or bridge_id is None:
            then()
            return

        def back(result: Result) -> None:
            if result.status not in (200, 204):
                logger.warning(
                    "stasis %s: call %s: putting the callee back answered %s",
                    self.config.app,
                    call.call_id,
                    result.status,
                )
            then()

        self._send(
            StopMoh,
            call.channel_id,
            then=lambda _r: self._send(AddToBridge, bridge_id, (call.channel_id,), then=back),
        )

    def _on_transfer_decision(self, call: Call, command: Mapping[str, Any]) -> None:
        xfer, accept = call.transfer, command.get("accept")
        if not isinstance(accept, bool) or xfer is None or xfer.state is not TransferState.BRIEFING:
            logger.info(
                "stasis %s: call %s: transfer decision %.100r dropped (%s)",
                self.config.app,
                call.call_id,
                accept,
                xfer.state if xfer is not None else "no transfer",
            )
            return
        if accept:
            self._transfer_accept(xfer)
        else:
            self._transfer_decline(xfer, "declined")

    def _brief_human(self, xfer: Transfer, call: Call) -> None:
        """Warm: the human answered. They join the agent's leg in the bridge (the callee is on hold) and the
        media worker is told, to brief them; then the decision timer runs."""
        bridge_id = call.bridge_id
        assert bridge_id is not None  # noqa: S101 - checked by _bridge_transfer

        def added(result: Result) -> None:
            if xfer.done or call.ended:
                return
            if result.status not in (200, 204) or xfer.gone:
                self._transfer_decline(xfer, "hung_up" if xfer.gone else "failed")
                return
            xfer.move(TransferStep.BRIEF)
            logger.info("stasis %s: call %s: briefing %s", self.config.app, call.call_id, xfer.number)
            self._transfer_update(xfer, "briefing")
            self._reply(
                call.call_id,
                {
                    "type": "transfer",
                    "state": "human_joined",
                    "transfer_id": xfer.transfer_id,
                    "number": xfer.number,
                    "summary_hint": xfer.summary,
                },
            )
            self._start_timer(
                ("transfer_decision", xfer.channel_id),
                self.config.transfer_decision_timeout_s,
                lambda: self._transfer_decline(xfer, "no_decision"),
            )

        self._send(AddToBridge, bridge_id, (xfer.channel_id,), then=added)

    def _transfer_accept(self, xfer: Transfer) -> None:
        """Warm: the human accepted. The agent's leg leaves, the music stops, the callee joins the human;
        only then is the agent's leg hung up."""
        call = self.calls.get(xfer.call_id)
        if call is None or call.ended or not xfer.move(TransferStep.ACCEPT):
            return
        self._cancel_timer(("transfer_decision", xfer.channel_id))
        bridge_id, media_id = call.bridge_id, call.media_id
        assert bridge_id is not None  # noqa: S101 - a briefed call has its bridge

        def removed(_r: Result | None) -> None:
            xfer.held = False
            self._send(StopMoh, call.channel_id, then=lambda _r2: add_callee())

        def add_callee() -> None:
            if xfer.gone or call.ended:
                joined(None)
                return
            self._send(AddToBridge, bridge_id, (call.channel_id,), then=lambda r: joined(r.status))

        def joined(status: int | None) -> None:
            if call.ended:
                return
            if status not in (200, 204) or xfer.gone:
                reason = "hung_up" if xfer.gone else "failed"
                if media_id is not None and call.media_id == media_id:
                    xfer.held = True  # the callee goes back in with the agent (failed: _transfer_failed)
                    self._send(
                        AddToBridge,
                        bridge_id,
                        (media_id,),
                        then=lambda _r: self._transfer_decline(xfer, reason),
                    )
                else:
                    self._transfer_decline(xfer, reason)
                return
            if media_id is not None:
                self.media.pop(media_id, None)
                if call.media_id == media_id:
                    call.media_id = None
                self._send(HangUp, media_id, then=lambda _r: connected())
            else:
                connected()

        def connected() -> None:
            if xfer.done or call.ended:
                return
            xfer.move(TransferStep.JOINED)
            logger.info("stasis %s: call %s: warm transfer to %s", self.config.app, call.call_id, xfer.number)
            self._reply(
                call.call_id,
                {
                    "type": "transfer",
                    "state": "connected",
                    "transfer_id": xfer.transfer_id,
                    "number": xfer.number,
                },
            )
            self._transfer_update(xfer, "connected")
            self._out.append(CallTransferred(call.call_id, xfer.number, self._at()))
            if xfer.gone:
                self.transfer_leg_gone(xfer, "ChannelDestroyed")

        if media_id is not None:
            self._send(RemoveFromBridge, bridge_id, media_id, then=removed)
        else:
            removed(None)

    def _transfer_decline(self, xfer: Transfer, reason: str) -> None:
        """Warm: the human said no (or hung up, or never decided, or the bridging failed): their leg is hung
        up, then the callee goes back to the agent (_transfer_failed)."""
        if xfer.done or not xfer.move(TransferStep.GIVE_UP):
            return
        self._cancel_timer(("transfer_decision", xfer.channel_id))
        xfer.fail_reason = reason
        logger.info(
            "stasis %s: call %s: transfer to %s %s", self.config.app, xfer.call_id, xfer.number, reason
        )
        self._send(HangUp, xfer.channel_id, then=lambda _r: self._transfer_failed(xfer, reason))

    def _on_transfer_event(self, kind: Any, channel_id: str, event: Mapping[str, Any]) -> None:
        xfer = self.transfers.get(channel_id)
        if xfer is None:
            if kind == "StasisStart":  # a human leg nobody waits for (its call ended, or before a restart)
                logger.info("stasis %s: hanging up unexpected transfer leg %s", self.config.app, channel_id)
                self._send(HangUp, channel_id)
            return
        xfer.tracker.feed(event)
        if kind == "StasisStart":
            if xfer.state is TransferState.DIALING:
                xfer.move(TransferStep.ANSWERED)
                self._cancel_timer(("transfer", channel_id))
                self._bridge_transfer(xfer)
        elif kind == "ChannelDtmfReceived" and xfer.state is TransferState.BRIEFING:
            digit = event.get("digit")
            if digit == "1":
                self._transfer_accept(xfer)
            elif digit == "2":
                self._transfer_decline(xfer, "declined")
        elif kind in ("StasisEnd", "ChannelDestroyed"):
            self.transfer_leg_gone(xfer, kind)

    def transfer_leg_gone(self, xfer: Transfer, kind: str) -> None:
        """The human leg ended (``StasisEnd`` or ``ChannelDestroyed``)."""
        if xfer.pending:
            if kind == "ChannelDestroyed":
                reason = xfer.fail_reason or xfer.tracker.outcome().value
                logger.info(
                    "stasis %s: call %s: transfer to %s failed (%s)",
                    self.config.app,
                    xfer.call_id,
                    xfer.number,
                    reason,
                )
                self._transfer_failed(xfer, reason)
        elif xfer.state in (TransferState.BRIDGING, TransferState.CONNECTING):
            xfer.gone = True  # the bridging sees it
        elif xfer.state is TransferState.BRIEFING:
            xfer.gone = True
            self._transfer_decline(xfer, "hung_up")
        elif xfer.state is TransferState.BRIDGED:
            self.transfer_done(xfer)
            call = self.calls.get(xfer.call_id)
            if call is not None and not call.ended:
                logger.info(
                    "stasis %s: call %s: the human hung up; hanging up the caller",
                    self.config.app,
                    xfer.call_id,
                )
                self._send(HangUp, call.channel_id)

    def _transfer_timeout(self, xfer: Transfer) -> None:
        if xfer.state is not TransferState.DIALING:
            return
        logger.info(
            "stasis %s: call %s: %s did not answer in time", self.config.app, xfer.call_id, xfer.number
        )
        xfer.move(TransferStep.GIVE_UP)
        xfer.fail_reason = "timeout"

        def hung_up(result: Result) -> None:
            if result.status in (200, 204):  # its ChannelDestroyed reports the failure; do not wait forever
                self._start_timer(
                    ("transfer_grace", xfer.channel_id),
                    self.config.end_grace_s,
                    lambda: self._transfer_failed(xfer, "timeout"),
                )
            else:
                self._transfer_failed(xfer, "timeout")

        self._send(HangUp, xfer.channel_id, then=hung_up)

    def transfer_done(self, xfer: Transfer) -> None:
        """Forget the human leg: its later events are ignored (a later StasisStart hangs it up)."""
        if xfer.done:
            return
        xfer.move(TransferStep.FINISH)
        if self.transfers.get(xfer.channel_id) is xfer:
            self._cancel_timer(("transfer", xfer.channel_id))
            del self.transfers[xfer.channel_id]

    def _transfer_failed(self, xfer: Transfer, reason: str) -> None:
        """Report a transfer that did not happen (once); the call stays as it was, with its agent."""
        if xfer.state in (TransferState.DONE, TransferState.BRIDGED):
            return
        self.transfer_done(xfer)
        call = self.calls.get(xfer.call_id)
        if call is not None and call.transfer is xfer:
            call.transfer = None
        if call is not None and call.route_transfer:  # an inbound call's route: nobody waits for a reply
            self._inbound_fallback(call, reason)
            return
        state = TRANSFER_FAIL_STATES.get(reason, "failed")
        if xfer.warm and call is not None and xfer.held:
            self._unhold_callee(call, xfer, lambda: self._transfer_update(xfer, state, reason))
            return
        if xfer.warm:
            self._transfer_update(xfer, state, reason)
            return
        self._transfer_update(xfer, state, reason)
        self._reply(xfer.call_id, {"event": "transfer", "status": "failed", "reason": reason})

    def _bridge_inbound_transfer(self, xfer: Transfer, call: Call) -> None:
        """The human of an inbound call's route answered: answer the caller (it heard ringing until now),
        put both in the call's bridge. Any step failing: the human is hung up and the call falls back."""
        bridge_id = bridge_id_of(call.call_id)

        def fail(why: str) -> None:
            logger.warning(
                "stasis %s: inbound call %s: could not bridge %s (%s)",
                self.config.app,
                call.call_id,
                xfer.number,
                why,
            )
            reason = "hung_up" if xfer.gone else "failed"
            if not xfer.done:
                xfer.move(TransferStep.GIVE_UP)
                xfer.fail_reason = reason
                self._send(HangUp, xfer.channel_id, then=lambda _r: self._transfer_failed(xfer, reason))

        def gone() -> bool:
            if call.ended:  # its teardown hangs the human up
                return True
            if xfer.gone or xfer.done:
                fail("the human hung up")
                return True
            return False

        def answered(result: Result) -> None:
            if gone():
                return
            if result.status not in (200, 204):
                fail(f"answer answered {result.status}")
                return
            self._send(CreateBridge, bridge_id, then=created)

        def created(result: Result) -> None:
            if result.status in (200, 409):  # (409: left from an earlier try: reused)
                call.bridge_id = bridge_id
            if gone():
                return
            if result.status not in (200, 409):
                fail(f"bridge create answered {result.status}")
                return
            self._send(AddToBridge, bridge_id, (call.channel_id, xfer.channel_id), then=added)

        def added(result: Result) -> None:
            if gone():
                return
            if result.status not in (200, 204):
                fail(f"addChannel answered {result.status}")
                return
            call.route_transfer = False
            xfer.move(TransferStep.JOINED)
            logger.info(
                "stasis %s: inbound call %s: connected to %s", self.config.app, call.call_id, xfer.number
            )
            self._out.append(CallTransferred(call.call_id, xfer.number, self._at()))

        self._send(AnswerChannel, call.channel_id, then=answered)

    def _bridge_transfer(self, xfer: Transfer) -> None:
        """A10: the human answered. Media leg out of the bridge, human in, and only then the media leg
        deleted (had the add failed, the agent's leg goes back in: the caller is never left alone)."""
        call = self.calls.get(xfer.call_id)
        if call is not None and not call.ended and call.route_transfer:
            self._bridge_inbound_transfer(xfer, call)
            return
        if call is None or call.ended or call.bridge_id is None:
            self.transfer_done(xfer)
            self._send(HangUp, xfer.channel_id)
            return
        if xfer.warm:
            self._brief_human(xfer, call)
            return
        bridge_id = call.bridge_id
        media_id = call.media_id

        def removed(result: Result | None) -> None:
            if result is not None and result.status not in (200, 204):
                logger.warning(
                    "stasis %s: call %s: removing the media leg answered %s",
                    self.config.app,
                    call.call_id,
                    result.status,
                )
            if not xfer.gone and not call.ended:
                self._send(AddToBridge, bridge_id, (xfer.channel_id,), then=lambda r: added(r.status))
            else:
                added(None)

        def added(status: int | None) -> None:
            if status not in (200, 204) or xfer.gone or call.ended:
                reason = "hung_up" if xfer.gone else "call_ended" if call.ended else "failed"
                logger.warning(
                    "stasis %s: call %s: could not bridge %s (%s)",
                    self.config.app,
                    call.call_id,
                    xfer.number,
                    reason,
                )

                def give_up(_r: Result | None = None) -> None:
                    if not xfer.done:  # (done: the caller's teardown took care of it)
                        xfer.move(TransferStep.GIVE_UP)
                        xfer.fail_reason = reason
                        self._send(
                            HangUp, xfer.channel_id, then=lambda _r2: self._transfer_failed(xfer, reason)
                        )

                if media_id is not None and not call.ended and call.media_id == media_id:
                    self._send(AddToBridge, bridge_id, (media_id,), then=give_up)
                else:
                    give_up()
                return
            # The human is with the caller: the agent's leg goes (not the media worker going first).
            if media_id is not None:
                self.media.pop(media_id, None)
                if call.media_id == media_id:
                    call.media_id = None
                self._send(HangUp, media_id, then=lambda _r: joined())
            else:
                joined()

        def joined() -> None:
            if xfer.done or call.ended:  # the caller went meanwhile: its teardown took care of it
                return
            xfer.move(TransferStep.JOINED)
            logger.info("stasis %s: call %s: transferred to %s", self.config.app, call.call_id, xfer.number)
            self._reply(call.call_id, {"event": "transfer", "status": "answered", "number": xfer.number})
            self._transfer_update(xfer, "connected")
            self._out.append(CallTransferred(call.call_id, xfer.number, self._at()))
            if xfer.gone:  # the human hung up while we were deleting the media leg
                self.transfer_leg_gone(xfer, "ChannelDestroyed")

        if media_id is not None:
            self._send(RemoveFromBridge, bridge_id, media_id, then=removed)
        else:
            removed(None)

    # ----------------------------------------------------------------------------- reconciliation
    def reconcile_gone(self, channel_ids: set[str], live_before: set[str], now: float) -> list[Effect]:
        """After a (re)connect: calls, media legs and human legs whose channel ``GET /channels`` no longer
        lists ended while nobody was listening. The end was not seen, so a call's outcome is what was seen
        before the gap, or unknown (:meth:`end`); never a guess."""
        self._now = now
        gone = {cid for cid in self.calls if cid not in channel_ids} | {
            cid for cid in live_before if cid not in channel_ids
        }
        for call_id in sorted(gone):
            call = self.calls.get(call_id)
            if call is None:
                call = Call(call_id, call_id, inbound=False, tracker=CallEndTracker(call_id))
            logger.info("stasis %s: call %s ended while disconnected", self.config.app, call_id)
            self.end(call, "reconciled")
        # Media legs that vanished while their call lives on (or while being set up).
        for media_id in list(self.media):
            if media_id not in channel_ids:
                self._on_media_event("ChannelDestroyed", media_id)
        # Human legs that vanished: a pending transfer failed, a bridged one leaves the caller alone.
        for xfer_id, xfer in list(self.transfers.items()):
            if xfer_id not in channel_ids:
                self.transfer_leg_gone(xfer, "ChannelDestroyed")
        return self._take()

    def reconcile_live(
        self,
        channels: Mapping[str, Mapping[str, Any]],
        bridge_members: Mapping[str, set[str]],
        live: set[str],
        now: float,
    ) -> list[Effect]:
        """After :meth:`reconcile_gone`: channels in our app that nobody waits for are hung up, bridges
        whose call is gone destroyed; live calls this process does not know yet (it restarted) are adopted,
        and an answered one whose media leg is not in its bridge gets its media set up anew."""
        self._now = now
        orphans: list[str] = []
        human_legs: list[tuple[str, list[str] | None]] = []
        resume_media: list[tuple[Call, set[str] | None]] = []
        for channel_id, channel in channels.items():
            args = stasis_args(channel, self.config.app)
            originated = is_originated(channel)
            if channel_id.startswith(TRANSFER_PREFIX):
                if args is not None or originated:  # (not a Local ;2 half: it goes with its ;1)
                    human_legs.append((channel_id, args))
                continue
            if channel_id.startswith(MEDIA_PREFIX):
                continue  # below, once every call is known
            in_amd = args is None and self._in_amd_hop(channel)
            if (
                (args is not None and args[:1] in (["outbound"], ["amd"]))
                or (args is None and originated)
                or in_amd
            ):
                if channel_id not in live:
                    logger.info("stasis %s: hanging up orphan channel %s", self.config.app, channel_id)
                    orphans.append(channel_id)
                elif in_amd:
                    # In the detection hop (before a restart of this process, or while we were away): it comes
                    # back with StasisStart [amd, ...]; until then, looked at like any call there.
                    hop_call = self.calls.get(channel_id)
                    if hop_call is None:
                        hop_call = self.track(channel_id)
                        hop_call.answered = hop_call.tracker.answered = True
                        hop_call.resuming_media = True
                    if hop_call.amd != "detecting":
                        self._amd_watch(hop_call)
                elif channel_id not in self.calls:
                    call = self.track(channel_id)  # after a restart of this process
                    call.answered = call.tracker.answered = args is not None
                    if args is not None:
                        needs_media, members = self._adopt_answered(call, channels, bridge_members)
                        if args[:1] == ["amd"]:
                            call.amd = "done"
                        if needs_media:
                            call.resuming_media = True
                            if args[:1] == ["amd"]:  # the media worker may not have heard the result
                                call.amd_result = (
                                    args[1] if len(args) > 1 else "",
                                    args[2] if len(args) > 2 else "",
                                )
                            elif args[2:3] == ["amd"]:
                                # Answered for detection, but the old process died before sending it to
                                # the dialplan: it goes on without, by the campaign's rule for a NOTSURE
                                # (the media worker waits for a result; it must not wait in vain).
                                call.amd = "done"
                                call.amd_result = ("NOTSURE", "NOTRUN")
                            resume_media.append((call, members))
            elif args is not None and args[:1] == ["inbound"] and channel_id not in self.calls:
                call = self.track(channel_id, inbound=True)
                call.answered = call.tracker.answered = True
                # With the agent (or a human) in its bridge: adopted as it is. Otherwise its route died
                # with the old process: the message, then the hang-up (never left in silence).
                needs_media, _members = self._adopt_answered(call, channels, bridge_members)
                if needs_media:
                    self.inbound_unrouted(call)
        # AudioSocket legs: kept when their call uses them, else hung up (an orphan, or a leg left from a
        # setup that a restart interrupted: the call gets a new one).
        for channel_id in channels:
            if channel_id.startswith(MEDIA_PREFIX) and channel_id not in self.media:
                logger.info("stasis %s: hanging up media leg %s nobody uses", self.config.app, channel_id)
                orphans.append(channel_id)
        for call, members in resume_media:
            logger.warning(
                "stasis %s: call %s was answered but not bridged to media; setting it up now",
                self.config.app,
                call.call_id,
            )
            # It may be a warm transfer's callee, on hold when the old process went: music off first.
            self._send(StopMoh, call.channel_id)
            self.setup_media(call, members)
        # Human legs: kept while their call lives (adopted after a restart of this process), else hung up.
        for channel_id, args in human_legs:
            owner_call = self.calls.get(channel_id.removeprefix(TRANSFER_PREFIX))
            if owner_call is None or owner_call.ended:
                logger.info("stasis %s: hanging up orphan transfer leg %s", self.config.app, channel_id)
                known = self.transfers.get(channel_id)
                if known is not None:
                    self.transfer_done(known)
                orphans.append(channel_id)
            elif channel_id not in self.transfers:
                # Known by id only: the number is lost with the old process. In Stasis = answered (bridged
                # or about to be: treated as bridged); else still ringing, and Asterisk's timeout ends it.
                state = TransferState.BRIDGED if args is not None else TransferState.DIALING
                adopted = Transfer(
                    owner_call.call_id, channel_id, "", CallEndTracker(channel_id), state=state
                )
                adopted.tracker.answered = args is not None
                owner_call.transfer = adopted
                self.transfers[channel_id] = adopted
        for channel_id in orphans:
            self._send(HangUp, channel_id)
        # Our bridges whose call is gone.
        for bridge_id in bridge_members:
            if not bridge_id.startswith(BRIDGE_PREFIX):
                continue
            owner = bridge_id.removeprefix(BRIDGE_PREFIX)
            if owner not in channels or owner not in live:
                logger.info("stasis %s: destroying orphan bridge %s", self.config.app, bridge_id)
                self._send(DestroyBridge, bridge_id)
        return self._take()

    def _in_amd_hop(self, channel: Mapping[str, Any]) -> bool:
        """A channel in the answering-machine detection context (sent there by this app)."""
        dialplan = channel.get("dialplan")
        return isinstance(dialplan, Mapping) and dialplan.get("context") == self.config.amd_context

    def _adopt_answered(
        self, call: Call, channels: Mapping[str, Any], bridge_members: Mapping[str, set[str]]
    ) -> tuple[bool, set[str] | None]:
        """An answered call found after a restart: its media leg and bridge are adopted when the caller is
        in the bridge with it (or with its human, after a transfer). Otherwise its media must be set up
        anew: ``(True, the bridge's members or None when there is no bridge)``."""
        bridge_id = bridge_id_of(call.call_id)
        members = bridge_members.get(bridge_id)
        if members is None:
            return True, None
        call.bridge_id = bridge_id
        legs = sorted(m for m in members if media_owner(m) == call.call_id and m in channels)
        if call.channel_id in members and legs:
            call.media_id = legs[0]
            self.media[legs[0]] = call.call_id
            return False, members
        if call.channel_id in members and transfer_leg_of(call.call_id) in members:
            return False, members  # with its human: the transfer leg is adopted below
        return True, members
