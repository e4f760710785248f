"""Channels (``/channels``): entering and leaving Stasis, hanging up, and how a channel's life ends.

A channel ends in `_destroy`: it leaves its bridge, its playbacks and recordings stop, ChannelDestroyed goes
out, its snoops and AudioSocket leg go with it, and a call's own channel ends the call. Per the traces:
DELETE gives `ChannelHangupRequest cause=32 soft` (A5); a channel that entered Stasis from the dialplan (an
inbound call) ends for the app with StasisEnd and is no longer subscribed (A4).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .amd import RATE as AMD_RATE
from .amd import AmdParams, detect
from .causes import HANGUP_REASONS, NORMAL_CLEARING, SOFT_HANGUP_FLAG, cause_text
from .core import PbxCore
from .errors import AriError
from .model import OUTGOING_APP, Call, Channel, Dialplan

AMD_CONTEXT = "ai-amd"  # the one dialplan context the simulator runs (deploy/asterisk ships the same)


class Channels(PbxCore):
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
        self._moh_stopped(ch)
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

    def start_moh(self, channel_id: str, moh_class: str | None) -> None:
        """``POST /channels/{id}/moh``: 204, recorded in the party's call record (Asterisk sends no event)."""
        ch = self.stasis_channel(channel_id)
        call = ch.call
        if call is not None and ch is call.channel:
            if call.moh and call.moh[-1]["stopped_at"] is None:
                return  # already playing: Asterisk restarts it, the record keeps one span
            call.moh.append(
                {"class": moh_class or "default", "started_at": call.since_answer(), "stopped_at": None}
            )

    def stop_moh(self, channel_id: str) -> None:
        ch = self.stasis_channel(channel_id)
        self._moh_stopped(ch)

    def _moh_stopped(self, ch: Channel) -> None:
        call = ch.call
        if call is not None and ch is call.channel and call.moh and call.moh[-1]["stopped_at"] is None:
            call.moh[-1]["stopped_at"] = call.since_answer()

    def answer(self, channel_id: str) -> None:
        ch = self.stasis_channel(channel_id)
        self._set_state(ch, "Up")

    def ring(self, channel_id: str, start: bool) -> None:
        self.stasis_channel(channel_id)

    def continue_in_dialplan(self, channel_id: str, params: dict[str, str]) -> None:
        ch = self.stasis_channel(channel_id)
        if ch.state != "Up" and ch.kind == "inbound":
            raise AriError(412, "Channel in invalid state")
        app = ch.stasis_app
        self._leave_stasis(ch)
        call = ch.call
        if (
            params.get("context") == AMD_CONTEXT
            and params.get("extension", "s") == "s"
            and str(params.get("priority", "1")) == "1"
            and call is not None
            and ch is call.channel
            and app is not None
        ):
            self._enter_amd(call, app)
            return
        # The simulator has no other dialplan: after Stasis the channel runs off the end and hangs up.
        if call is not None and ch is call.channel:
            self._end_call_channels(call, NORMAL_CLEARING, ended_by="continue")
        else:
            self._destroy(ch, NORMAL_CLEARING)

    def _enter_amd(self, call: Call, app: str) -> None:
        """The ``ai-amd`` context: ``AMD(${AI_AMD_ARGS})``, ``Stasis(${AI_STASIS_APP},amd,${AMDSTATUS},
        ${AMDCAUSE})``, ``Hangup()``. While in the dialplan the app hears nothing of the channel (taken as
        unsubscribed: the harder case for the app, which must poll to see a callee who hung up)."""
        ch = call.channel
        ch.apps.discard(app)
        if call.far is not None:
            call.far.apps.discard(app)
        args = ch.variables.get("AI_AMD_ARGS", "")
        ch.dialplan = Dialplan(AMD_CONTEXT, "s", 1, "AMD", args)
        self.emit("ChannelDialplan", channel=ch, fields={"dialplan_app": "AMD", "dialplan_app_data": args})
        call.amd = {"args": args, "started_at": time.time()}
        self._spawn(self._run_amd(call, app))

    async def _run_amd(self, call: Call, app: str) -> None:
        ch = call.channel
        params = AmdParams.parse(ch.variables.get("AI_AMD_ARGS", ""))
        started = call.amd["started_at"]
        since_answer = started - (call.answered or started)
        pcm = self.callee_audio(call, AMD_RATE)[round(since_answer * AMD_RATE) * 2 :]
        hangup_at = self.callee_hangup_at(call)
        hangup_ms = None if hangup_at is None else max(0, round((hangup_at - since_answer) * 1000))
        result = detect(pcm, params, hangup_ms=hangup_ms)
        call.amd.update(params=params.args(), status=result.status, cause=result.cause, analysed_ms=result.ms)
        delay = started + result.ms / 1000 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if not call.live or ch.destroyed:
            return  # the callee hung up during the analysis: the channel is gone, nothing re-enters
        call.amd["decided_at"] = time.time()
        self._varset(ch, "AMDSTATUS", result.status)
        self._varset(ch, "AMDCAUSE", result.cause)
        target = ch.variables.get("AI_STASIS_APP") or app
        ch.dialplan.priority = 2
        if not self.active_app(target):
            # Stasis() fails (STASISSTATUS=FAILED), the dialplan goes on to Hangup().
            self._varset(ch, "STASISSTATUS", "FAILED")
            ch.dialplan.priority, ch.dialplan.app_name, ch.dialplan.app_data = 3, "Hangup", ""
            self._end_call_channels(call, NORMAL_CLEARING, ended_by="stasis_failed")
            return
        self._enter_stasis(ch, target, ["amd", result.status, result.cause])

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
