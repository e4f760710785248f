"""The Stasis app's call controller without sockets: ARI event sequences in, call events and intents out."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from typing import Any

import pytest

from telephony.events import (
    CallAnswered,
    CallBridged,
    CallDtmf,
    CallEnded,
    CallRinging,
    CallTransferred,
    MediaGone,
)
from telephony.outcomes import CallOutcome
from telephony.stasis.config import StasisConfig
from telephony.stasis.controller import MEDIA_SHORT_LIFE_S, CallController
from telephony.stasis.intents import (
    AddToBridge,
    AnnounceMedia,
    AskAgentSpoke,
    CancelTimer,
    CreateBridge,
    DestroyBridge,
    Effect,
    GetChannel,
    HangUp,
    MarkMediaHostDown,
    OpenMediaLeg,
    OriginateTransfer,
    PublishReply,
    RemoveFromBridge,
    Result,
    StartTimer,
)
from telephony.stasis.transfer import TRANSITIONS, Transfer, TransferState, TransferStep

CALL = "call-1"
HOSTS = ("10.0.0.1:9092", "10.0.0.2:9092")
T0 = 1_700_000_000.0


def channel(channel_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": channel_id, "state": "Up", "dialplan": {"app_name": "AppDial2"}, **extra}


def stasis_start(channel_id: str, *args: str) -> dict[str, Any]:
    return {"type": "StasisStart", "args": list(args), "channel": channel(channel_id)}


def destroyed(channel_id: str, cause: int = 16) -> dict[str, Any]:
    return {
        "type": "ChannelDestroyed",
        "cause": cause,
        "cause_txt": "Normal Clearing",
        "channel": channel(channel_id),
    }


def of(effects: Iterable[Effect], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


class Driver:
    """Feeds a controller and keeps every effect; answers intents by type on request."""

    def __init__(self, **config: Any) -> None:
        counter = itertools.count(1)
        self.ctl = CallController(
            StasisConfig(base_url="http://pbx:8088", user="u", password="p", media_hosts=HOSTS, **config),
            new_uuid=lambda: uuid.UUID(int=next(counter) << 96),  # its first 8 hex digits differ
        )
        self.now = T0
        self.effects: list[Effect] = []

    def _keep(self, effects: list[Effect]) -> list[Effect]:
        self.effects += effects
        return effects

    def event(self, event: dict[str, Any], after: float = 0.0) -> list[Effect]:
        self.now += after
        return self._keep(self.ctl.event(event, self.now))

    def answer(
        self, intent: Any, status: int | None = None, body: Any = None, value: bool | None = None
    ) -> list[Effect]:
        return self._keep(self.ctl.result(intent.op, Result(status, body, value), self.now))

    def fire(self, key: Any, after: float = 0.0) -> list[Effect]:
        self.now += after
        return self._keep(self.ctl.timer(key, self.now))

    def command(self, command: dict[str, Any]) -> list[Effect]:
        return self._keep(self.ctl.command(command, self.now))

    def last(self, kind: type) -> Any:
        found = of(self.effects, kind)
        assert found, f"no {kind.__name__} among {self.effects}"
        return found[-1]

    def answered_call(self) -> list[Effect]:
        """Through StasisStart [outbound]: the bridge is created; returns the effects of the bridge's 200."""
        out = self.event(stasis_start(CALL, "outbound", CALL))
        assert of(out, CallAnswered) == [CallAnswered(CALL, CALL, of(out, CallAnswered)[0].at)]
        create = of(out, CreateBridge)[0]
        assert create.bridge_id == f"bridge-{CALL}"
        return self.answer(create, 200)

    def leg_opened(self) -> OpenMediaLeg:
        """From the bridge's 200: the leg is announced (told) and externalMedia asked for."""
        announce = self.last(AnnounceMedia)
        out = self.answer(announce, value=True)
        return of(out, OpenMediaLeg)[0]

    def bridged(self) -> str:
        """A call all the way to CallBridged; returns its media leg's channel id."""
        self.answered_call()
        leg = self.leg_opened()
        self.answer(leg, 200)
        out = self.event(stasis_start(leg.channel_id))
        add = of(out, AddToBridge)[0]
        out = self.answer(add, 204)
        assert len(of(out, CallBridged)) == 1
        return leg.channel_id


def test_answer_bridge_media_leg_in_order_when_the_leg_enters_after_the_200() -> None:
    d = Driver()
    d.event({"type": "Dial", "peer": channel(CALL), "dialstatus": "RINGING"})
    assert len(of(d.effects, CallRinging)) == 1
    assert of(d.effects, StartTimer)[0].key == ("max_duration", CALL)
    d.answered_call()
    leg = d.leg_opened()
    assert leg.host == HOSTS[0] and leg.channel_id.startswith(f"media-{CALL}~")
    assert leg.media_uuid != CALL  # never the call id
    out = d.answer(leg, 200)
    assert of(out, StartTimer) == [StartTimer(("media_start", leg.channel_id), 5.0)]
    assert not of(out, AddToBridge)  # not before the leg's own StasisStart
    out = d.event(stasis_start(leg.channel_id))
    assert CancelTimer(("media_start", leg.channel_id)) in out
    add = of(out, AddToBridge)[0]
    assert add.channels == (CALL, leg.channel_id)
    out = d.answer(add, 204)
    assert of(out, CallBridged)[0].media_uuid == leg.media_uuid


def test_the_externalmedia_race_a_leg_in_the_app_before_its_200_is_bridged_at_once() -> None:
    d = Driver()
    d.answered_call()
    leg = d.leg_opened()
    assert not of(d.event(stasis_start(leg.channel_id)), AddToBridge)  # 200 not there yet
    out = d.answer(leg, 200)
    assert not of(out, StartTimer)  # nothing to wait for
    assert of(out, AddToBridge)[0].channels == (CALL, leg.channel_id)


def test_a_leg_that_never_arrives_is_hung_up_and_the_next_host_tried() -> None:
    d = Driver()
    d.answered_call()
    first = d.leg_opened()
    d.answer(first, 200)
    out = d.fire(("media_start", first.channel_id), after=5.0)
    hangup = of(out, HangUp)[0]
    assert hangup.channel_id == first.channel_id
    out = d.answer(hangup, 204)
    second_announce = of(out, AnnounceMedia)[0]
    second = of(d.answer(second_announce, value=True), OpenMediaLeg)[0]
    assert second.host == HOSTS[1] and second.channel_id != first.channel_id
    # The late StasisStart of the first leg is nobody's: no bridging on it.
    assert not of(d.event(stasis_start(first.channel_id)), AddToBridge)


def test_no_host_takes_the_leg_media_failed_never_answered() -> None:
    d = Driver()
    d.answered_call()
    leg = d.leg_opened()
    out = d.answer(leg, 500, {"message": "Allocation failed"})
    assert of(out, MarkMediaHostDown)[0].host == HOSTS[0]
    second = of(d.answer(of(out, AnnounceMedia)[0], value=True), OpenMediaLeg)[0]
    d.answer(second, 200)
    d.event(destroyed(second.channel_id))  # gone before it entered the app
    hangup_leg = d.last(HangUp)
    assert hangup_leg.channel_id == second.channel_id
    out = d.answer(hangup_leg, 204)
    assert len(of(out, MediaGone)) == 1
    hangup_caller = of(out, HangUp)[0]
    assert hangup_caller.channel_id == CALL
    out = d.event(destroyed(CALL))
    ended = of(out, CallEnded)[0]
    assert ended.outcome is CallOutcome.MEDIA_FAILED and ended.reason == "destroyed"
    assert of(out, DestroyBridge)[0].bridge_id == f"bridge-{CALL}"


def test_a_leg_not_announced_is_never_placed() -> None:
    d = Driver()
    d.answered_call()
    out = d.answer(d.last(AnnounceMedia), value=False)
    assert not of(out, OpenMediaLeg)
    assert of(out, AnnounceMedia)  # the next host


def test_dtmf_and_ringing_become_call_events() -> None:
    d = Driver()
    d.bridged()
    d.event({"type": "ChannelDtmfReceived", "digit": "5", "channel": channel(CALL)}, after=1.0)
    dtmf = d.last(CallDtmf)
    assert dtmf.digit == "5" and dtmf.at.timestamp() == d.now


def test_the_caller_hanging_up_ends_answered_and_tears_down_in_order() -> None:
    d = Driver()
    media_id = d.bridged()
    out = d.event(destroyed(CALL), after=30)
    ended = of(out, CallEnded)[0]
    assert ended.outcome is CallOutcome.ANSWERED and ended.answered and ended.reason == "destroyed"
    assert CancelTimer(("max_duration", CALL)) in out
    hangup = of(out, HangUp)[0]
    assert hangup.channel_id == media_id and not of(out, DestroyBridge)  # one after the other
    out = d.answer(hangup, 204)
    assert of(out, DestroyBridge)[0].bridge_id == f"bridge-{CALL}"
    assert not of(d.event(destroyed(media_id)), MediaGone)  # our own hang-up: not media gone first


def test_busy_before_answer() -> None:
    d = Driver()
    d.event({"type": "Dial", "peer": channel(CALL), "dialstatus": "BUSY"})
    out = d.event(destroyed(CALL, cause=17))
    assert of(out, CallEnded)[0].outcome is CallOutcome.BUSY


@pytest.mark.parametrize(
    ("spoke", "after", "outcome"),
    [
        (True, 1.0, "answered"),
        (False, 60.0, "media_failed"),
        (None, 1.0, "media_failed"),
        (None, 60.0, "answered"),
    ],
)
def test_the_media_leg_going_first(spoke: bool | None, after: float, outcome: str) -> None:
    d = Driver()
    media_id = d.bridged()
    out = d.event(destroyed(media_id), after=after)
    assert len(of(out, MediaGone)) == 1
    ask = of(out, AskAgentSpoke)[0]
    out = d.answer(ask, value=spoke)
    assert of(out, HangUp)[0].channel_id == CALL
    out = d.event(destroyed(CALL))
    assert of(out, CallEnded)[0].outcome.value == outcome
    assert (after < MEDIA_SHORT_LIFE_S) == (after == 1.0)


def test_max_duration_hangs_up_and_reports_after_the_grace() -> None:
    d = Driver(max_call_duration_s=60, end_grace_s=5)
    d.bridged()
    out = d.fire(("max_duration", CALL), after=60)
    out = d.answer(of(out, HangUp)[0], 204)
    assert of(out, StartTimer) == [StartTimer(("end_grace", CALL), 5)]
    out = d.fire(("end_grace", CALL), after=5)
    ended = of(out, CallEnded)[0]
    assert ended.reason == "max_duration"


def test_hangup_command_of_a_call_already_gone_ends_it() -> None:
    d = Driver()
    d.bridged()
    out = d.command({"action": "hangup", "call_id": CALL})
    out = d.answer(of(out, HangUp)[0], 404)
    assert of(out, CallEnded)[0].reason == "destroyed"
    assert d.command({"action": "hangup", "call_id": CALL}) == []  # no such call any more


def transfer_command(**extra: Any) -> dict[str, Any]:
    return {
        "action": "transfer",
        "call_id": CALL,
        "number": "+15550009999",
        "endpoint": "PJSIP/human",
        **extra,
    }


def test_transfer_answered_swaps_the_agent_for_the_human() -> None:
    d = Driver()
    media_id = d.bridged()
    d.ctl.connected = True
    out = d.command(transfer_command(timeout_s=20))
    originate = of(out, OriginateTransfer)[0]
    assert originate.params["channelId"] == f"xfer-{CALL}" and originate.params["timeout"] == "22"
    assert StartTimer(("transfer", f"xfer-{CALL}"), 20.0) in out
    d.answer(originate, 200)
    out = d.event(stasis_start(f"xfer-{CALL}", "transfer", CALL))
    assert CancelTimer(("transfer", f"xfer-{CALL}")) in out
    remove = of(out, RemoveFromBridge)[0]
    assert remove.channel_id == media_id
    add = of(d.answer(remove, 204), AddToBridge)[0]
    assert add.channels == (f"xfer-{CALL}",)
    hangup_agent = of(d.answer(add, 204), HangUp)[0]
    assert hangup_agent.channel_id == media_id
    out = d.answer(hangup_agent, 204)
    assert of(out, CallTransferred)[0].number == "+15550009999"
    assert of(out, PublishReply)[0].payload == {
        "event": "transfer",
        "status": "answered",
        "number": "+15550009999",
    }
    xfer = d.ctl.calls[CALL].transfer
    assert xfer is not None and xfer.state is TransferState.BRIDGED
    assert of(d.command(transfer_command()), PublishReply)[0].payload["reason"] == "already_transferred"
    # The human hangs up: the caller goes too.
    out = d.event(destroyed(f"xfer-{CALL}"))
    assert of(out, HangUp)[0].channel_id == CALL


def test_transfer_not_answered_in_time_fails_and_the_agent_stays() -> None:
    d = Driver(end_grace_s=5)
    d.bridged()
    d.ctl.connected = True
    d.answer(of(d.command(transfer_command(timeout_s=10)), OriginateTransfer)[0], 200)
    assert of(d.command(transfer_command()), PublishReply)[0].payload["reason"] == "transfer_in_progress"
    out = d.fire(("transfer", f"xfer-{CALL}"), after=10)
    hangup = of(out, HangUp)[0]
    assert hangup.channel_id == f"xfer-{CALL}"
    d.answer(hangup, 204)
    out = d.event(destroyed(f"xfer-{CALL}"))
    assert of(out, PublishReply)[0].payload == {"event": "transfer", "status": "failed", "reason": "timeout"}
    assert d.ctl.calls[CALL].transfer is None and d.ctl.calls[CALL].media_id is not None


def test_transfer_refused_while_disconnected_or_invalid() -> None:
    d = Driver()
    d.bridged()
    assert of(d.command(transfer_command()), PublishReply)[0].payload["reason"] == "pbx_unavailable"
    d.ctl.connected = True
    assert of(d.command(transfer_command(timeout_s=0)), PublishReply)[0].payload["reason"] == "invalid"


def test_a_refused_add_of_a_caller_that_hung_up_is_not_a_media_failure() -> None:
    d = Driver()
    d.answered_call()
    leg = d.leg_opened()
    d.answer(leg, 200)
    add = of(d.event(stasis_start(leg.channel_id)), AddToBridge)[0]
    get = of(d.answer(add, 422), GetChannel)[0]
    out = d.answer(get, 404)
    assert not of(out, MediaGone)
    assert of(out, HangUp)[0].channel_id == leg.channel_id  # only our legs go


def test_the_transfer_table_refuses_illegal_steps() -> None:
    xfer = Transfer(CALL, f"xfer-{CALL}", "1", tracker=None)  # type: ignore[arg-type]
    assert not xfer.move(TransferStep.JOINED)  # not answered yet
    assert xfer.state is TransferState.DIALING
    assert xfer.move(TransferStep.ANSWERED) and xfer.move(TransferStep.JOINED)
    assert not xfer.move(TransferStep.GIVE_UP)
    assert xfer.move(TransferStep.FINISH) and xfer.done
    assert all(state is not TransferState.DONE for state, _ in TRANSITIONS)  # done is absorbing


def in_app(channel_id: str, d: Driver, *args: str) -> dict[str, Any]:
    """A channel as GET /channels shows it inside the app (dialplan Stasis(app,args...))."""
    data = ",".join((d.ctl.config.app, *args))
    return {"id": channel_id, "state": "Up", "dialplan": {"app_name": "Stasis", "app_data": data}}


def test_an_answered_call_adopted_after_a_restart_that_ends_before_its_media_joins_is_media_failed() -> None:
    d = Driver()
    up = in_app(CALL, d, "outbound", CALL)
    out = d.ctl.reconcile_live({CALL: up}, {}, {CALL}, d.now)  # answered, no bridge: media set up anew
    d._keep(out)
    assert of(out, CreateBridge)
    ended = of(d.event(destroyed(CALL), after=1), CallEnded)[0]
    assert ended.outcome is CallOutcome.MEDIA_FAILED and ended.answered and ended.reason == "destroyed"


def test_an_adopted_call_whose_old_media_leg_is_in_its_bridge_stays_answered() -> None:
    d = Driver()
    leg = f"media-{CALL}~0001"
    channels = {CALL: in_app(CALL, d, "outbound", CALL), leg: in_app(leg, d)}
    d._keep(d.ctl.reconcile_live(channels, {f"bridge-{CALL}": {CALL, leg}}, {CALL}, d.now))
    ended = of(d.event(destroyed(CALL), after=30), CallEnded)[0]
    assert ended.outcome is CallOutcome.ANSWERED
