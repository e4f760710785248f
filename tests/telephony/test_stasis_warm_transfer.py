"""Warm transfers in the Stasis app's call controller, without sockets (the style of
test_stasis_controller.py): the callee on hold, the human briefed, accepted, declined, not answered."""

from __future__ import annotations

from typing import Any

from telephony.events import CallTransferred, TransferUpdated
from telephony.stasis.intents import (
    AddToBridge,
    CancelTimer,
    HangUp,
    OriginateTransfer,
    PublishReply,
    RemoveFromBridge,
    StartMoh,
    StartTimer,
    StopMoh,
)
from telephony.stasis.transfer import TransferState
from tests.telephony.test_stasis_controller import CALL, Driver, destroyed, of, stasis_start

HUMAN = f"xfer-{CALL}"
BRIDGE = f"bridge-{CALL}"


def warm_command(**extra: Any) -> dict[str, Any]:
    return {
        "action": "transfer",
        "call_id": CALL,
        "mode": "warm",
        "transfer_id": "42",
        "number": "+15550009999",
        "endpoint": "PJSIP/+15550009999@trunk",
        "timeout_s": 20,
        "summary": "wants a quote",
        **extra,
    }


def dtmf(channel_id: str, digit: str) -> dict[str, Any]:
    return {"type": "ChannelDtmfReceived", "digit": digit, "channel": {"id": channel_id, "state": "Up"}}


def updates(d: Driver) -> list[tuple[str, str]]:
    return [(u.state, u.reason) for u in of(d.effects, TransferUpdated)]


def replies(d: Driver) -> list[dict[str, Any]]:
    return [dict(r.payload) for r in of(d.effects, PublishReply)]


def on_hold_and_briefing(d: Driver) -> str:
    """A bridged call through a warm transfer's briefing; returns the media leg's channel id."""
    media_id = d.bridged()
    d.ctl.connected = True
    out = d.command(warm_command())
    originate = of(out, OriginateTransfer)[0]
    assert originate.params["channelId"] == HUMAN
    # The callee leaves the bridge (the agent's leg stays) and hears music on hold.
    remove = of(out, RemoveFromBridge)[0]
    assert (remove.bridge_id, remove.channel_id) == (BRIDGE, CALL)
    moh = of(d.answer(remove, 204), StartMoh)[0]
    assert moh.channel_id == CALL
    d.answer(moh, 204)
    d.answer(originate, 200)
    assert updates(d) == [("dialing", "")]
    # The human answers: they join the agent's leg, the media worker is told to brief them.
    out = d.event(stasis_start(HUMAN, "transfer", CALL))
    assert CancelTimer(("transfer", HUMAN)) in out
    add = of(out, AddToBridge)[0]
    assert add.channels == (HUMAN,)
    out = d.answer(add, 204)
    assert StartTimer(("transfer_decision", HUMAN), 60.0) in out
    assert replies(d)[-1] == {
        "type": "transfer",
        "state": "human_joined",
        "transfer_id": "42",
        "number": "+15550009999",
        "summary_hint": "wants a quote",
    }
    assert updates(d)[-1] == ("briefing", "")
    xfer = d.ctl.calls[CALL].transfer
    assert xfer is not None and xfer.state is TransferState.BRIEFING
    return media_id


def test_warm_transfer_accepted_by_dtmf_1_connects_callee_and_human() -> None:
    d = Driver()
    media_id = on_hold_and_briefing(d)
    out = d.event(dtmf(HUMAN, "1"))
    assert CancelTimer(("transfer_decision", HUMAN)) in out
    remove = of(out, RemoveFromBridge)[0]
    assert remove.channel_id == media_id  # the agent's leg leaves first
    stop = of(d.answer(remove, 204), StopMoh)[0]
    assert stop.channel_id == CALL
    add = of(d.answer(stop, 204), AddToBridge)[0]
    assert add.channels == (CALL,)
    hangup = of(d.answer(add, 204), HangUp)[0]
    assert hangup.channel_id == media_id
    assert not of(d.effects, CallTransferred)  # not before the agent's leg is gone
    out = d.answer(hangup, 204)
    assert of(out, CallTransferred)[0].number == "+15550009999"
    assert replies(d)[-1]["state"] == "connected"
    assert updates(d)[-1] == ("connected", "")
    xfer = d.ctl.calls[CALL].transfer
    assert xfer is not None and xfer.state is TransferState.BRIDGED
    # The human hangs up later: the callee goes too (as after a cold transfer).
    assert of(d.event(destroyed(HUMAN)), HangUp)[0].channel_id == CALL


def test_warm_transfer_accepted_by_the_agents_tool() -> None:
    d = Driver()
    media_id = on_hold_and_briefing(d)
    out = d.command({"action": "transfer_decision", "call_id": CALL, "accept": True})
    assert of(out, RemoveFromBridge)[0].channel_id == media_id


def test_warm_transfer_declined_puts_the_callee_back_with_the_agent() -> None:
    d = Driver()
    media_id = on_hold_and_briefing(d)
    out = d.event(dtmf(HUMAN, "2"))
    hangup = of(out, HangUp)[0]
    assert hangup.channel_id == HUMAN
    stop = of(d.answer(hangup, 204), StopMoh)[0]
    add = of(d.answer(stop, 204), AddToBridge)[0]
    assert add.channels == (CALL,)
    d.answer(add, 204)
    assert replies(d)[-1] == {
        "type": "transfer",
        "state": "declined",
        "transfer_id": "42",
        "reason": "declined",
    }
    assert updates(d)[-1] == ("declined", "declined")
    call = d.ctl.calls[CALL]
    assert call.transfer is None and call.media_id == media_id
    # The human leg's end arrives later: nothing more is reported.
    before = len(d.effects)
    d.event(destroyed(HUMAN))
    assert not of(d.effects[before:], PublishReply) and not of(d.effects[before:], TransferUpdated)
    assert not of(d.effects, CallTransferred)


def test_warm_transfer_no_decision_in_time_is_declined() -> None:
    d = Driver(transfer_decision_timeout_s=60)
    on_hold_and_briefing(d)
    out = d.fire(("transfer_decision", HUMAN), after=60)
    hangup = of(out, HangUp)[0]
    assert hangup.channel_id == HUMAN
    d.answer(of(d.answer(of(d.answer(hangup, 204), StopMoh)[0], 204), AddToBridge)[0], 204)
    assert updates(d)[-1] == ("declined", "no_decision")


def test_warm_transfer_not_answered_returns_the_callee_with_no_answer() -> None:
    d = Driver(end_grace_s=5)
    d.bridged()
    d.ctl.connected = True
    out = d.command(warm_command(timeout_s=10))
    d.answer(of(d.answer(of(out, RemoveFromBridge)[0], 204), StartMoh)[0], 204)
    d.answer(of(out, OriginateTransfer)[0], 200)
    hangup = of(d.fire(("transfer", HUMAN), after=10), HangUp)[0]
    d.answer(hangup, 204)
    out = d.event(destroyed(HUMAN, cause=19))
    stop = of(out, StopMoh)[0]
    add = of(d.answer(stop, 204), AddToBridge)[0]
    d.answer(add, 204)
    assert replies(d)[-1]["state"] == "no_answer" and updates(d)[-1] == ("no_answer", "timeout")


def test_the_human_hanging_up_during_the_brief_is_a_decline() -> None:
    d = Driver()
    on_hold_and_briefing(d)
    out = d.event(destroyed(HUMAN))
    hangup = of(out, HangUp)[0]  # (404 on a real PBX: it is gone; the callee goes back all the same)
    d.answer(of(d.answer(of(d.answer(hangup, 404), StopMoh)[0], 204), AddToBridge)[0], 204)
    assert updates(d)[-1] == ("declined", "hung_up")


def test_the_callee_hanging_up_on_hold_cancels_the_transfer_and_hangs_the_human_up() -> None:
    d = Driver()
    on_hold_and_briefing(d)
    out = d.event(destroyed(CALL))
    assert of(out, HangUp)[0].channel_id == HUMAN
    assert updates(d)[-1] == ("cancelled", "call_ended")


def test_decisions_outside_a_briefing_and_bad_commands_are_dropped() -> None:
    d = Driver()
    d.bridged()
    d.ctl.connected = True
    assert not d.command({"action": "transfer_decision", "call_id": CALL, "accept": True})
    out = d.command(warm_command(mode="lukewarm"))
    assert of(out, PublishReply)[0].payload["reason"] == "invalid" and not of(out, OriginateTransfer)
    on_hold = d.command(warm_command())
    assert of(on_hold, OriginateTransfer)
    # A key before the human joined the bridge decides nothing.
    assert not of(d.event(dtmf(HUMAN, "1")), RemoveFromBridge)
    assert not d.command({"action": "transfer_decision", "call_id": CALL, "accept": "yes"})


def test_a_callee_found_on_hold_after_a_restart_gets_the_music_stopped_and_the_agent_back() -> None:
    from tests.telephony.test_stasis_controller import in_app

    d = Driver()
    media_id = f"media-{CALL}~0000abcd"
    channels = {CALL: in_app(CALL, d, "outbound", CALL), media_id: in_app(media_id, d)}
    out = d.ctl.reconcile_live(channels, {BRIDGE: {media_id}}, {CALL}, d.now)
    assert of(out, StopMoh)[0].channel_id == CALL
    assert of(out, HangUp)[0].channel_id == media_id  # the old leg goes; a new one is set up


def test_a_warm_transfer_refused_before_dialing_tells_the_agent_and_the_domain() -> None:
    d = Driver()
    d.bridged()  # not connected: the human leg's StasisStart would never reach us
    out = d.command(warm_command())
    assert not of(out, OriginateTransfer) and not of(out, RemoveFromBridge)
    assert [dict(r.payload) for r in of(out, PublishReply)] == [
        {"event": "transfer", "status": "failed", "reason": "pbx_unavailable"},
        {"type": "transfer", "state": "failed", "reason": "pbx_unavailable", "transfer_id": "42"},
    ]
    assert [(u.transfer_id, u.state, u.reason) for u in of(out, TransferUpdated)] == [
        ("42", "failed", "pbx_unavailable")
    ]
