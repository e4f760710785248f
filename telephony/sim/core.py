"""The core of the simulated Asterisk: the state every ARI resource shares, ids, background tasks, lookups.

`engine.Pbx` is this core plus one mixin per resource (channels, bridges, playbacks, externalMedia, the
dial plan, the simulated parties, the /sim control resources). A resource's life cycle sometimes ends
another's (a destroyed channel leaves its bridge and stops its playbacks): those few operations are
declared at the bottom of this class and defined by the mixin that owns them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import deque
from typing import Any

from .causes import NORMAL_CLEARING
from .errors import AriError
from .events import AppState, EventFanout
from .media import AudioSocketLeg, MediaClock
from .model import Bridge, Call, Channel, Playback, Recording
from .plan import Plan, Say

log = logging.getLogger("telephony.sim")

ASTERISK_VERSION = "22.10.1"
MAX_ID_LENGTH = 149  # AST_MAX_PUBLIC_UNIQUEID

#: Seconds between the 200 of ``POST /channels/externalMedia`` and its AudioSocket leg being dialed,
#: answered and entering the app (StasisStart), drawn uniformly per leg. On a real Asterisk 22.10.1 the
#: request returns as soon as the channel exists and the TCP connection is up; the dial (UUID frame, answer,
#: Stasis) runs on a background thread, so adding the leg to a bridge at once answers 422 "Channel not in
#: Stasis application" (seen in about 15 % of calls). The simulator makes that race the rule, not the
#: exception, so a Stasis app that does not wait for the leg's own StasisStart fails its tests.
MEDIA_START_DELAY_S: tuple[float, float] = (0.01, 0.15)


class PbxCore(EventFanout):
    def __init__(
        self,
        plan: Plan | None = None,
        *,
        asterisk_id: str = "02:fc:00:00:00:01",
        ended_history: int = 20000,
        media_start_delay_s: tuple[float, float] = MEDIA_START_DELAY_S,
        rng: random.Random | None = None,
    ) -> None:
        low, high = media_start_delay_s
        if not 0 <= low <= high:
            raise ValueError("media_start_delay_s must be (low, high) with 0 <= low <= high")
        super().__init__(asterisk_id)
        self.plan = plan or Plan()
        self.media_start_delay_s = (low, high)
        self._rng = rng or random.Random()  # noqa: S311 - timing jitter, not cryptography
        self.started = time.time()
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.calls: dict[str, Call] = {}
        self.ended_calls: deque[Call] = deque(maxlen=ended_history)
        self.playbacks: dict[str, Playback] = {}
        self.live_recordings: dict[str, Recording] = {}
        self.stored_recordings: dict[str, Recording] = {}
        self.legs: dict[str, AudioSocketLeg] = {}
        self.clock = MediaClock()
        self._name_seq = itertools.count(1)
        self._uniq_seq = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------------------------ ids
    def _unique_id(self) -> str:
        return f"{int(self.started)}.{next(self._uniq_seq)}"

    def _name_suffix(self) -> str:
        return f"{next(self._name_seq):08x}"

    # ------------------------------------------------------------------------------------------------ tasks
    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator task failed", exc_info=task.exception())

    # ----------------------------------------------------------------------------------------- lookups
    def channel(self, channel_id: str) -> Channel:
        ch = self.channels.get(channel_id)
        if ch is None:
            raise AriError(404, "Channel not found")
        return ch

    def stasis_channel(self, channel_id: str) -> Channel:
        ch = self.channel(channel_id)
        if ch.stasis_app is None:
            raise AriError(409, "Channel not in Stasis application")
        return ch

    def bridge(self, bridge_id: str) -> Bridge:
        br = self.bridges.get(bridge_id)
        if br is None:
            raise AriError(404, "Bridge not found")
        return br

    def application_json(self, state: AppState) -> dict[str, Any]:
        return {
            "name": state.name,
            "channel_ids": [c.id for c in self.channels.values() if state.name in c.apps],
            "bridge_ids": [b.id for b in self.bridges.values() if state.name in b.apps],
            "endpoint_ids": [],
            "device_names": [],
            "events_allowed": [],
            "events_disallowed": [],
        }

    # ----------------------------------------------------------------------------- channel state, shared
    def _set_state(self, ch: Channel, state: str) -> None:
        if ch.state != state:
            ch.state = state
            self.emit("ChannelStateChange", channel=ch)

    def _varset(self, ch: Channel, name: str, value: str) -> None:
        ch.variables[name] = value
        self.emit("ChannelVarset", channel=ch, fields={"variable": name, "value": value})

    def _far_app(self, call: Call, app_name: str, app_data: str) -> None:
        """The callee's dialplan on the `;2` half of a Local call runs an application."""
        far = call.far
        if far is None or far.destroyed:
            return
        far.dialplan.priority += 1 if far.dialplan.app_name else 0
        far.dialplan.app_name, far.dialplan.app_data = app_name, app_data
        self.emit(
            "ChannelDialplan", channel=far, fields={"dialplan_app": app_name, "dialplan_app_data": app_data}
        )

    # ------------------------------------------------------------------ what one resource asks of another
    # Defined by the mixin named on each; `engine.Pbx` puts every mixin before this class.
    def _leave_bridge(self, ch: Channel) -> None:  # bridges.Bridges
        raise NotImplementedError

    def _end_media_operations(self, target_uri: str) -> None:  # playbacks.Playbacks
        raise NotImplementedError

    def _enter_stasis(self, ch: Channel, app: str, args: list[str]) -> None:  # channels.Channels
        raise NotImplementedError

    def _leave_stasis(self, ch: Channel) -> None:  # channels.Channels
        raise NotImplementedError

    def _destroy(
        self, ch: Channel, cause: int, *, tech_cause: int | None = None, ended_by: str | None = None
    ) -> None:  # channels.Channels
        raise NotImplementedError

    def _end_call_channels(self, call: Call, cause: int, *, ended_by: str) -> None:  # channels.Channels
        raise NotImplementedError

    def _fail_cause(self, call: Call, cause: int) -> None:  # calls.Calls
        raise NotImplementedError

    async def _answered_script(self, call: Call) -> None:  # parties.Parties
        raise NotImplementedError

    def _say(self, call: Call, say: Say) -> None:  # parties.Parties
        raise NotImplementedError

    def _callee_hangup(self, call: Call, cause: int = NORMAL_CLEARING) -> None:  # parties.Parties
        raise NotImplementedError

    async def _press_now(self, call: Call, digits: str) -> None:  # parties.Parties
        raise NotImplementedError

    def _stop_speaking(self, call: Call) -> None:  # parties.Parties
        raise NotImplementedError

    def callee_audio(self, call: Call, rate: int = 8000) -> bytes:  # parties.Parties
        raise NotImplementedError

    def callee_hangup_at(self, call: Call) -> float | None:  # parties.Parties
        raise NotImplementedError
