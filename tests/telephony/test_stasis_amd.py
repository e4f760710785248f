"""The answering-machine detection hop in the Stasis app's controller, sans I/O: StasisStart [outbound, id,
amd] → answered, media prepared, the callee kept out of the bridge and sent to ``ai-amd``; its StasisEnd is
not the end; StasisStart [amd, STATUS, CAUSE] → CallAmd, the callee joins the media leg, the media worker is
told; a callee gone during detection is found by a timer and GET; restarts in the middle."""

from __future__ import annotations

from typing import Any

from telephony.events import CallAmd, CallAnswered, CallBridged, CallEnded
from telephony.outcomes import CallOutcome
from telephony.stasis.intents import (
    AddToBridge,
    AnnounceMedia,
    ContinueInDialplan,
    CreateBridge,
    GetChannel,
    HangUp,
    OpenMediaLeg,
    PublishReply,
    StartTimer,
)

from .test_stasis_controller import CALL, Driver, destroyed, in_app, of, stasis_start


def stasis_end(channel_id: str) -> dict[str, Any]:
    return {"type": "StasisEnd", "channel": {"id": channel_id, "state": "Up", "dialplan": {}}}


def start_amd(d: Driver) -> tuple[ContinueInDialplan, OpenMediaLeg]:
    out = d.event(stasis_start(CALL, "outbound", CALL, "amd"))
    assert len(of(out, CallAnswered)) == 1
    cont = of(out, ContinueInDialplan)[0]
    assert (cont.channel_id, cont.context, cont.extension, cont.priority) == (CALL, "ai-amd", "s", 1)
    assert ("amd", CALL) in [t.key for t in of(out, StartTimer)]
    d.answer(of(out, CreateBridge)[0], 200)
    leg = of(d.answer(d.last(AnnounceMedia), value=True), OpenMediaLeg)[0]
    return cont, leg


def leg_in_bridge(d: Driver, leg: OpenMediaLeg) -> None:
    d.answer(leg, 200)
    out = d.event(stasis_start(leg.channel_id))
    add = of(out, AddToBridge)[0]
    assert add.channels == (leg.channel_id,)  # the callee waits outside during detection
    assert not of(d.answer(add, 204), CallBridged)


def test_human_joins_the_prepared_media_leg_and_the_worker_is_told() -> None:
    d = Driver()
    cont, leg = start_amd(d)
    d.answer(cont, 204)
    assert not of(d.event(stasis_end(CALL)), CallEnded)  # the hop's StasisEnd is not the end
    leg_in_bridge(d, leg)
    out = d.event(stasis_start(CALL, "amd", "HUMAN", "HUMAN-800-800"), after=1.7)
    assert of(out, CallAmd)[0].status == "HUMAN" and of(out, CallAmd)[0].cause == "HUMAN-800-800"
    add = of(out, AddToBridge)[0]
    assert add.channels == (CALL,) and add.bridge_id == f"bridge-{CALL}"
    out = d.answer(add, 204)
    assert len(of(out, CallBridged)) == 1
    reply = of(out, PublishReply)[0]
    assert reply.call_id == CALL
    assert dict(reply.payload) == {"type": "amd", "status": "HUMAN", "cause": "HUMAN-800-800"}
    ended = of(d.event(destroyed(CALL), after=20), CallEnded)[0]
    assert ended.outcome is CallOutcome.ANSWERED


def test_result_before_the_media_leg_the_callee_joins_with_it() -> None:
    d = Driver()
    cont, leg = start_amd(d)
    d.answer(cont, 204)
    d.event(stasis_end(CALL))
    out = d.event(stasis_start(CALL, "amd", "MACHINE", "MAXWORDS-2-2"))
    assert of(out, CallAmd) and not of(out, AddToBridge) and not of(out, PublishReply)
    d.answer(leg, 200)
    add = of(d.event(stasis_start(leg.channel_id)), AddToBridge)[0]
    assert set(add.channels) == {CALL, leg.channel_id}
    out = d.answer(add, 204)
    assert of(out, CallBridged)
    assert of(out, PublishReply)[0].payload["status"] == "MACHINE"


def test_result_while_the_leg_is_being_added_then_the_callee_follows() -> None:
    d = Driver()
    cont, leg = start_amd(d)
    d.answer(cont, 204)
    d.answer(leg, 200)
    add_leg = of(d.event(stasis_start(leg.channel_id)), AddToBridge)[0]
    d.event(stasis_start(CALL, "amd", "NOTSURE", "TOOLONG-5000"))
    out = d.answer(add_leg, 204)
    add_callee = of(out, AddToBridge)[0]
    assert add_callee.channels == (CALL,)
    out = d.answer(add_callee, 204)
    assert of(out, CallBridged) and of(out, PublishReply)[0].payload["cause"] == "TOOLONG-5000"


def test_a_callee_gone_during_detection_is_found_by_the_timer() -> None:
    d = Driver(amd_check_s=10.0, amd_recheck_s=2.0)
    cont, leg = start_amd(d)
    d.answer(cont, 204)
    d.event(stasis_end(CALL))
    leg_in_bridge(d, leg)
    get = of(d.fire(("amd", CALL), after=10), GetChannel)[0]
    assert get.channel_id == CALL
    out = d.answer(get, 200, {"id": CALL, "dialplan": {"context": "ai-amd", "app_name": "AMD"}})
    assert [t.delay_s for t in of(out, StartTimer) if t.key == ("amd", CALL)] == [2.0]  # still there
    get = of(d.fire(("amd", CALL), after=2), GetChannel)[0]
    out = d.answer(get, 404)
    ended = of(out, CallEnded)[0]
    assert ended.answered and ended.reason == "destroyed"
    assert leg.channel_id in [h.channel_id for h in of(out, HangUp)]  # the prepared leg goes too


def test_a_channel_stuck_in_detection_is_hung_up() -> None:
    d = Driver(amd_check_s=10.0, amd_recheck_s=10.0, amd_max_s=25.0)
    cont, _ = start_amd(d)
    d.answer(cont, 204)
    for _ in range(2):
        d.answer(of(d.fire(("amd", CALL), after=10), GetChannel)[0], 200, {"id": CALL})
    out = d.answer(of(d.fire(("amd", CALL), after=10), GetChannel)[0], 200, {"id": CALL})
    hang = of(out, HangUp)[0]
    assert hang.channel_id == CALL
    assert of(d.answer(hang, 204), CallEnded)


def test_continue_refused_goes_on_as_notsure() -> None:
    d = Driver()
    cont, leg = start_amd(d)
    d.answer(cont, 409)
    d.answer(leg, 200)
    add = of(d.event(stasis_start(leg.channel_id)), AddToBridge)[0]
    assert set(add.channels) == {CALL, leg.channel_id}
    out = d.answer(add, 204)
    assert of(out, PublishReply)[0].payload["status"] == "NOTSURE"


def test_restart_during_detection_then_the_call_comes_back() -> None:
    d = Driver()
    in_hop = {"id": CALL, "state": "Up", "dialplan": {"context": "ai-amd", "exten": "s", "app_name": "AMD"}}
    out = d._keep(d.ctl.reconcile_live({CALL: in_hop}, {f"bridge-{CALL}": set()}, {CALL}, d.now))
    assert not of(out, HangUp) and ("amd", CALL) in [t.key for t in of(out, StartTimer)]
    out = d.event(stasis_start(CALL, "amd", "HUMAN", "HUMAN-800-800"))
    assert of(out, CallAmd) and of(out, CreateBridge)
    d.answer(of(out, CreateBridge)[0], 409)
    get_bridge = d.effects[-1]
    d.answer(get_bridge, 200, {"channels": []})
    leg = of(d.answer(d.last(AnnounceMedia), value=True), OpenMediaLeg)[0]
    d.answer(leg, 200)
    add = of(d.event(stasis_start(leg.channel_id)), AddToBridge)[0]
    assert set(add.channels) == {CALL, leg.channel_id}
    out = d.answer(add, 204)
    assert of(out, CallBridged) and of(out, PublishReply)[0].payload["status"] == "HUMAN"
    assert of(d.event(destroyed(CALL), after=30), CallEnded)[0].outcome is CallOutcome.ANSWERED


def test_restart_an_orphan_in_the_hop_is_hung_up() -> None:
    d = Driver()
    in_hop = {"id": CALL, "state": "Up", "dialplan": {"context": "ai-amd", "exten": "s", "app_name": "AMD"}}
    out = d.ctl.reconcile_live({CALL: in_hop}, {}, set(), d.now)
    assert [h.channel_id for h in of(out, HangUp)] == [CALL]


def test_restart_after_the_result_without_media_repeats_it_to_the_new_worker() -> None:
    d = Driver()
    up = in_app(CALL, d, "amd", "MACHINE", "MAXWORDS-2-2")
    d._keep(d.ctl.reconcile_live({CALL: up}, {}, {CALL}, d.now))
    d.answer(d.last(CreateBridge), 200)
    leg = of(d.answer(d.last(AnnounceMedia), value=True), OpenMediaLeg)[0]
    d.answer(leg, 200)
    add = of(d.event(stasis_start(leg.channel_id)), AddToBridge)[0]
    assert set(add.channels) == {CALL, leg.channel_id}
    out = d.answer(add, 204)
    assert of(out, PublishReply)[0].payload == {"type": "amd", "status": "MACHINE", "cause": "MAXWORDS-2-2"}


def test_plain_outbound_calls_are_unchanged() -> None:
    d = Driver()
    d.bridged()
    assert not of(d.effects, ContinueInDialplan) and not of(d.effects, CallAmd)


def test_restart_before_the_hop_goes_on_as_notsure() -> None:
    d = Driver()
    up = in_app(CALL, d, "outbound", CALL, "amd")
    d._keep(d.ctl.reconcile_live({CALL: up}, {}, {CALL}, d.now))
    d.answer(d.last(CreateBridge), 200)
    leg = of(d.answer(d.last(AnnounceMedia), value=True), OpenMediaLeg)[0]
    d.answer(leg, 200)
    add = of(d.event(stasis_start(leg.channel_id)), AddToBridge)[0]
    assert set(add.channels) == {CALL, leg.channel_id}
    out = d.answer(add, 204)
    assert of(out, PublishReply)[0].payload == {"type": "amd", "status": "NOTSURE", "cause": "NOTRUN"}


def test_a_hangup_command_during_detection_ends_the_call_at_once() -> None:
    d = Driver()
    cont, _ = start_amd(d)
    d.answer(cont, 204)
    out = d.command({"action": "hangup", "call_id": CALL, "reason": "test"})
    hang = of(out, HangUp)[0]
    ended = of(d.answer(hang, 204), CallEnded)
    assert ended and ended[0].reason == "destroyed"
