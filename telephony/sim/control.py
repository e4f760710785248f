"""The simulator's own resources under /sim: inspecting calls, making a party act, counters, shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

from .causes import NORMAL_CLEARING
from .core import PbxCore
from .errors import AriError
from .model import Call
from .plan import PlanError, parse_behaviour


class Control(PbxCore):
    def call_by_id(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            call = next((c for c in reversed(self.ended_calls) if c.id == call_id), None)
        if call is None:
            raise AriError(404, "Call not found")
        return call

    def list_calls(self, state: str | None = None, number: str | None = None) -> list[dict[str, Any]]:
        if state not in (None, "", "all", "live", "ended"):
            raise AriError(400, "state must be live, ended or all")
        calls: list[Call] = []
        if state in (None, "", "all", "live"):
            calls.extend(self.calls.values())
        if state in (None, "", "all", "ended"):
            calls.extend(self.ended_calls)
        if number:
            bare = number.lstrip("+")
            calls = [c for c in calls if c.number.lstrip("+") == bare]
        return [c.json() for c in calls]

    def call_action(self, call_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """Make a live simulated party act now: hang up, press digits, say something."""
        call = self.call_by_id(call_id)
        if not call.live:
            raise AriError(409, "Call has ended")
        if action == "hangup":
            if call.state == "up":
                self._callee_hangup(call, int(body.get("cause") or NORMAL_CLEARING))
            else:
                self._fail_cause(call, int(body.get("cause") or 21))
        elif action == "dtmf":
            if call.state != "up":
                raise AriError(409, "Call is not answered")
            digits = str(body.get("digits") or "")
            try:
                presses = parse_behaviour({"behaviour": "answer", "dtmf": [{"at": 0, "digits": digits}]}).dtmf
            except PlanError as exc:
                raise AriError(400, str(exc)) from None
            self._spawn(self._press_now(call, presses[0].digits))
        elif action == "say":
            if call.state != "up":
                raise AriError(409, "Call is not answered")
            try:
                says = parse_behaviour({"behaviour": "answer", "say": [{"at": 0, **body}]}).say
            except PlanError as exc:
                raise AriError(400, str(exc)) from None
            self._say(call, says[0])
        else:
            raise AriError(404, f"Unknown action {action!r}")
        return call.json()

    def stats(self) -> dict[str, Any]:
        live_legs = [leg for leg in self.legs.values() if not leg.ended]
        bridged = len(live_legs)
        return {
            "audiosocket_frames_out": sum(leg.frames_out for leg in live_legs),
            "audiosocket_frames_in": sum(leg.frames_in for leg in live_legs),
            "live_calls": len(self.calls),
            "ended_calls": len(self.ended_calls),
            "channels": len(self.channels),
            "bridges": len(self.bridges),
            "audiosocket_legs": bridged,
            "events_sent": self.events_sent,
            "events_dropped": self.events_dropped,
            "apps": {
                s.name: {"connected": s.connection is not None, "subscribe_all": s.subscribe_all}
                for s in self.apps.values()
            },
            "media": self.clock.stats(),
        }

    async def shutdown(self) -> None:
        for call in list(self.calls.values()):
            self._end_call_channels(call, NORMAL_CLEARING, ended_by="shutdown")
        for leg in list(self.legs.values()):
            leg.close("shutdown")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
