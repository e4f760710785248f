"""Placing calls: originate (``POST /channels``) and the callee's side of call set-up, and inbound arrivals.

Every event sequence here reproduces what Asterisk 22.10.1 sent in the recorded traces
(`tests/data/asterisk-22.10.1/traces`), per endpoint technology:

- `Local/<n>@<ctx>` is a pair of channels. The app originates `;1`; the callee's "dialplan" runs on `;2`.
  Busy and congestion arrive as `Dial BUSY/CONGESTION` with cause 0 on `;1` (the cause is on `;2`), a
  rejection as `ChannelHangupRequest 21`, `Dial NOANSWER`, `ChannelDestroyed 21` (PROTOCOLS.md A3).
- `PJSIP/<n>@<trunk>` (and SIP, IAX2, DAHDI) is one channel that carries the cause and the SIP status
  (`tech_cause`) itself.
- StasisStart comes only after answer (A2); a channel originated into an app with no websocket is dialed
  anyway (A11).
- An inbound call arrives from a trunk and the dialplan runs `Stasis(<app>,inbound,<DID>)` (A4).

The callee is chosen by the dialed number from the plan; what it does once answered is in `parties`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .causes import NORMAL_CLEARING, SIP_STATUS_FOR_CAUSE, dialstatus_for_cause
from .core import MAX_ID_LENGTH, PbxCore
from .errors import AriError, allocation_failed, int_param
from .model import OUTGOING_APP, Call, CallerId, Channel, Dialplan
from .plan import Behaviour, PlanError, parse_behaviour

TRUNK_TECHS = ("PJSIP", "SIP", "IAX2", "DAHDI")
KNOWN_TECHS = ("Local", *TRUNK_TECHS)


class Calls(PbxCore):
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

    def inbound(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A call arrives from a trunk and the dialplan runs `Stasis(<app>,inbound,<DID>)` (A4).

        ``answered`` (default true, as the dialplan that recorded the reference trace: ``Answer()`` before
        ``Stasis()``): false is the product's shipped dialplan, which leaves answering to the app; the
        channel enters Stasis in state ``Ring`` and the caller's script (``say``, ``dtmf``, ``hangup_after``)
        starts once the app has answered it."""
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
        answered = spec.get("answered", True)
        if not isinstance(answered, bool):
            raise AriError(400, "answered must be true or false")
        trunk = str(spec.get("trunk") or "trunk")
        channel_id = str(spec.get("channel_id") or self._unique_id())
        if channel_id in self.channels:
            raise AriError(409, "Channel with given unique ID already exists")
        ch = Channel(
            id=channel_id,
            name=f"PJSIP/{trunk}-{self._name_suffix()}",
            kind="inbound",
            state="Up" if answered else "Ring",
            originated=False,
            caller=CallerId(str(spec.get("caller_name") or ""), caller_number),
            connected=CallerId(str(spec.get("caller_name") or ""), caller_number),
            dialplan=Dialplan(
                context=str(spec.get("context") or "inbound"), exten=did, priority=3 if answered else 2
            ),
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
        if call.channel.state != "Up":
            while call.channel.state != "Up":  # the app answers it (or it ends first)
                if not call.live:
                    return
                await asyncio.sleep(0.02)
            call.answered = time.time()
        await self._answered_script(call)
