"""Inbound routing in the call controller, without sockets: each route (agent, refuse, transfer and its
fall-backs), no answer in time, an unusable answer, and reconciliation of inbound calls."""

from __future__ import annotations

from typing import Any

from telephony.events import (
    CallAnswered,
    CallBridged,
    CallEnded,
    CallInbound,
    CallTransferred,
    InboundRoute,
)
from telephony.stasis.intents import (
    AddToBridge,
    AnnounceMedia,
    AnswerChannel,
    CancelTimer,
    CreateBridge,
    DestroyBridge,
    HangUp,
    OpenMediaLeg,
    OriginateTransfer,
    PlayMedia,
    PublishReply,
    RingChannel,
    RouteInbound,
    StartTimer,
)
from tests.telephony.test_stasis_controller import Driver, destroyed, in_app, of, stasis_start

IN = "1767650400.17"  # Asterisk's own channel id
XFER = f"xfer-{IN}"


def inbound_start(did: str = "15551230000") -> dict[str, Any]:
    return {
        "type": "StasisStart",
        "args": ["inbound", did],
        "channel": {
            "id": IN,
            "state": "Up",
            "caller": {"number": "+19175551212", "name": "Pat"},
            "dialplan": {"app_name": "Stasis", "app_data": f"ai_agent,inbound,{did}", "exten": did},
        },
    }


def stasis_end(channel_id: str) -> dict[str, Any]:
    return {"type": "StasisEnd", "channel": {"id": channel_id, "state": "Up"}}


def routed(d: Driver, route: Any) -> list[Any]:
    """An inbound call through CallInbound and the route question; answers it with ``route``."""
    out = d.event(inbound_start())
    inbound = of(out, CallInbound)[0]
    assert (inbound.call_id, inbound.did, inbound.caller_number) == (IN, "15551230000", "+19175551212")
    ask = of(out, RouteInbound)[0]
    assert ask.event == inbound and ask.call_id == IN
    assert StartTimer(("inbound_route", IN), 5.0) in out
    assert not of(out, AnswerChannel)  # nothing before the route is known
    out = d.answer(ask, body=route)
    assert CancelTimer(("inbound_route", IN)) in out
    return out


def refused_with(d: Driver, out: list[Any], message: str) -> None:
    answer = of(out, AnswerChannel)[0]
    play = of(d.answer(answer, 204), PlayMedia)[0]
    assert play.media == message and play.channel_id == IN
    d.answer(play, 201)
    out = d.event({"type": "PlaybackFinished", "playback": {"id": play.playback_id}})
    assert of(out, HangUp)[0].channel_id == IN
    ended = of(d.event(stasis_end(IN)), CallEnded)[0]
    assert ended.reason == "stasis_end" and ended.call_id == IN


def test_agent_route_answers_and_bridges_to_media_like_an_outbound_call() -> None:
    d = Driver()
    out = routed(d, InboundRoute(action="agent"))
    answer = of(out, AnswerChannel)[0]
    out = d.answer(answer, 204)
    assert of(out, CallAnswered) == [CallAnswered(IN, IN, of(out, CallAnswered)[0].at)]
    create = of(out, CreateBridge)[0]
    assert create.bridge_id == f"bridge-{IN}"
    out = d.answer(create, 200)
    announce = of(out, AnnounceMedia)[0]
    assert announce.call_id == IN  # the media worker finds the brief under brief_key(<inbound channel id>)
    leg = of(d.answer(announce, value=True), OpenMediaLeg)[0]
    assert leg.channel_id.startswith(f"media-{IN}~")
    d.answer(leg, 200)
    add = of(d.event(stasis_start(leg.channel_id)), AddToBridge)[0]
    assert add.channels == (IN, leg.channel_id)
    assert of(d.answer(add, 204), CallBridged)[0].media_uuid == leg.media_uuid
    # The caller hangs up: StasisEnd ends an inbound call (A4); the media leg and the bridge go.
    out = d.event(stasis_end(IN), after=30)
    ended = of(out, CallEnded)[0]
    assert ended.reason == "stasis_end" and ended.answered
    hangup = of(out, HangUp)[0]
    assert hangup.channel_id == leg.channel_id
    assert of(d.answer(hangup, 204), DestroyBridge)[0].bridge_id == f"bridge-{IN}"


def test_refuse_route_plays_its_message_then_hangs_up() -> None:
    d = Driver()
    out = routed(d, InboundRoute(action="refuse", message="sound:custom/over-capacity"))
    refused_with(d, out, "sound:custom/over-capacity")
    assert not of(d.effects, CallAnswered)


def test_refuse_without_a_message_plays_the_configured_one() -> None:
    d = Driver(inbound_message="sound:ss-noservice")
    refused_with(d, routed(d, InboundRoute(action="refuse")), "sound:ss-noservice")


def test_no_route_in_time_refuses_politely_and_a_late_answer_changes_nothing() -> None:
    d = Driver(inbound_route_timeout_s=2.0)
    out = d.event(inbound_start())
    ask = of(out, RouteInbound)[0]
    assert StartTimer(("inbound_route", IN), 2.0) in out
    out = d.fire(("inbound_route", IN), after=2.0)
    answer = of(out, AnswerChannel)[0]
    assert d.answer(ask, body=InboundRoute(action="agent")) == []  # too late: ignored
    out = d.answer(answer, 204)
    assert of(out, PlayMedia)[0].media == "sound:ss-noservice"
    assert not of(d.effects, CreateBridge)


def test_routing_that_fails_or_answers_nonsense_refuses() -> None:
    for answer in (None, "agent", InboundRoute(action="voicemail")):  # type: ignore[arg-type]
        d = Driver()
        out = routed(d, answer)
        refused_with(d, out, "sound:ss-noservice")


def test_a_caller_gone_before_the_route_is_known_is_ended_once_and_nothing_is_done() -> None:
    d = Driver()
    out = d.event(inbound_start())
    ask = of(out, RouteInbound)[0]
    out = d.event(stasis_end(IN), after=1)
    assert of(out, CallEnded)[0].reason == "stasis_end"
    assert CancelTimer(("inbound_route", IN)) in out
    assert d.answer(ask, body=InboundRoute(action="agent")) == []


def transfer_route(**extra: Any) -> InboundRoute:
    fields: dict[str, Any] = {
        "action": "transfer",
        "endpoint": "PJSIP/+15557770000@trunk",
        "number": "+15557770000",
        "caller_id": "+15551230000",
        "timeout_s": 20.0,
        **extra,
    }
    return InboundRoute(**fields)


def test_transfer_route_rings_the_caller_dials_the_office_and_bridges_on_answer() -> None:
    d = Driver()
    d.ctl.connected = True
    out = routed(d, transfer_route())
    assert of(out, RingChannel)[0].channel_id == IN
    assert not of(out, AnswerChannel)  # the caller hears ringing until someone answers
    originate = of(out, OriginateTransfer)[0]
    params = originate.params
    assert params["channelId"] == XFER and params["endpoint"] == "PJSIP/+15557770000@trunk"
    assert params["callerId"] == "+15551230000" and params["timeout"] == "22"
    assert StartTimer(("transfer", XFER), 20.0) in out
    d.answer(originate, 200)
    out = d.event(stasis_start(XFER, "transfer", IN))
    answer = of(out, AnswerChannel)[0]
    assert answer.channel_id == IN
    create = of(d.answer(answer, 204), CreateBridge)[0]
    add = of(d.answer(create, 200), AddToBridge)[0]
    assert add.channels == (IN, XFER)
    out = d.answer(add, 204)
    assert of(out, CallTransferred)[0].number == "+15557770000"
    assert not of(d.effects, PublishReply)  # nobody listens for an inbound route's transfer
    assert not of(d.effects, AnnounceMedia)  # no agent
    # The human hangs up: the caller goes too; then its StasisEnd ends it and the bridge is destroyed.
    assert of(d.event(destroyed(XFER)), HangUp)[0].channel_id == IN
    out = d.event(stasis_end(IN))
    assert of(out, CallEnded)[0].reason == "stasis_end"
    assert of(out, DestroyBridge)[0].bridge_id == f"bridge-{IN}"


def test_transfer_route_busy_falls_back_to_the_agent() -> None:
    d = Driver()
    d.ctl.connected = True
    out = routed(d, transfer_route())
    d.answer(of(out, OriginateTransfer)[0], 200)
    d.event({"type": "Dial", "peer": {"id": XFER}, "dialstatus": "BUSY"})
    out = d.event(destroyed(XFER, cause=17))
    answer = of(out, AnswerChannel)[0]
    out = d.answer(answer, 204)
    assert of(out, CallAnswered) and of(out, CreateBridge)  # the agent takes it, like an outbound call


def test_transfer_route_not_answered_in_time_refuses_without_fallback() -> None:
    d = Driver(end_grace_s=5)
    d.ctl.connected = True
    out = routed(d, transfer_route(fallback_to_agent=False, message="sound:custom/closed"))
    d.answer(of(out, OriginateTransfer)[0], 200)
    out = d.fire(("transfer", XFER), after=20)
    hangup = of(out, HangUp)[0]
    assert hangup.channel_id == XFER
    d.answer(hangup, 204)
    out = d.event(destroyed(XFER, cause=16))
    refused_with(d, out, "sound:custom/closed")
    assert not of(d.effects, CreateBridge)


def test_transfer_route_while_disconnected_or_without_endpoint_goes_straight_to_the_fallback() -> None:
    d = Driver()  # not connected: the human leg's StasisStart could not reach us (A11)
    out = routed(d, transfer_route())
    assert not of(out, OriginateTransfer) and of(out, AnswerChannel)
    d2 = Driver()
    d2.ctl.connected = True
    out = routed(d2, transfer_route(endpoint="", fallback_to_agent=False))
    assert not of(out, OriginateTransfer)
    refused_with(d2, out, "sound:ss-noservice")


def test_transfer_route_caller_gone_while_ringing_hangs_the_human_up() -> None:
    d = Driver()
    d.ctl.connected = True
    out = routed(d, transfer_route())
    d.answer(of(out, OriginateTransfer)[0], 200)
    out = d.event(stasis_end(IN))
    assert of(out, CallEnded)[0].reason == "stasis_end"
    assert of(out, HangUp)[0].channel_id == XFER
    assert not of(out, AnswerChannel)


def test_an_inbound_call_bridged_to_media_is_closed_after_a_websocket_gap() -> None:
    d = Driver()
    out = routed(d, InboundRoute(action="agent"))
    out = d.answer(of(out, AnswerChannel)[0], 204)
    out = d.answer(of(out, CreateBridge)[0], 200)
    leg = of(d.answer(of(out, AnnounceMedia)[0], value=True), OpenMediaLeg)[0]
    d.answer(leg, 200)
    d.answer(of(d.event(stasis_start(leg.channel_id)), AddToBridge)[0], 204)
    # The caller hung up while the events websocket was down: GET /channels lists only the media leg.
    out = d.ctl.reconcile_gone({leg.channel_id}, {IN}, d.now + 60)
    d._keep(out)
    ended = of(out, CallEnded)[0]
    assert ended.call_id == IN and ended.reason == "reconciled" and ended.answered
    hangup = of(out, HangUp)[0]
    assert hangup.channel_id == leg.channel_id  # A9: the media leg stays unless we hang it up
    assert of(d.answer(hangup, 204), DestroyBridge)[0].bridge_id == f"bridge-{IN}"


def test_after_a_restart_an_inbound_call_with_its_agent_is_adopted_and_one_without_is_refused() -> None:
    d = Driver()
    leg = f"media-{IN}~0001"
    channels = {IN: in_app(IN, d, "inbound", "15551230000"), leg: in_app(leg, d)}
    out = d.ctl.reconcile_live(channels, {f"bridge-{IN}": {IN, leg}}, {IN}, d.now)
    d._keep(out)
    assert not of(out, AnswerChannel) and not of(out, HangUp)  # kept as it is
    out = d.event(stasis_end(IN), after=30)
    assert of(out, CallEnded)[0].reason == "stasis_end"
    assert of(out, HangUp)[0].channel_id == leg

    d2 = Driver()
    out = d2.ctl.reconcile_live({IN: in_app(IN, d2, "inbound", "15551230000")}, {}, {IN}, d2.now)
    d2._keep(out)
    refused_with(d2, out, "sound:ss-noservice")
