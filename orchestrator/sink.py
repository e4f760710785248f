"""The sink the Stasis app hands its call events to (``settings.TELEPHONY_EVENT_SINK``): it routes each
call's events to the domain that owns the call, by the call id alone (:mod:`wire.callids`). A campaign
attempt's id is a UUID of version 4 (``campaigns.sink.AttemptEventSink``); everything else belongs to the
flows: a flow's outbound leg (a UUID of version 8) and a call that entered from the dialplan (Asterisk's own
channel id, never a UUID) (``flows.sink``). ``telephony`` knows neither (DESIGN.md §3).

Inbound routing (:meth:`CallEventRouter.route_inbound`) is the flows' decision."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from campaigns.sink import AttemptEventSink
from flows.sink import FlowCallSink
from telephony.events import CallEvent, CallInbound, InboundRoute
from wire.callids import is_attempt_call_id


def _is_attempt(call_id: str) -> bool:
    return is_attempt_call_id(call_id)


class CallEventRouter:
    """A :class:`telephony.events.CallEventBatchSink` (and :class:`telephony.events.InboundRouter`) in front
    of the campaigns' and the flows' sinks."""

    def __init__(self, *, pbx_ids: Iterable[int] | None = None, **attempt_options: Any) -> None:
        ids = list(pbx_ids) if pbx_ids is not None else None
        self.attempts = AttemptEventSink(pbx_ids=ids, **attempt_options)
        self.inbound = FlowCallSink(pbx_ids=ids)

    async def handle(self, event: CallEvent) -> None:
        if _is_attempt(event.call_id):
            await self.attempts.handle(event)
        else:
            await self.inbound.handle(event)

    async def handle_many(self, events: Sequence[CallEvent]) -> Sequence[BaseException | None]:
        if events and _is_attempt(events[0].call_id):
            return await self.attempts.handle_many(events)
        result: Sequence[BaseException | None] = await self.inbound.handle_many(events)
        return result

    async def route_inbound(self, event: CallInbound) -> InboundRoute:
        """What to do with a call that entered from the dialplan: the flows decide."""
        return await self.inbound.route_inbound(event)

    async def live_call_ids(self) -> set[str]:
        attempts: set[str] = await self.attempts.live_call_ids()
        flows: set[str] = await self.inbound.live_call_ids()
        return attempts | flows

    def close(self) -> None:
        self.attempts.close()
        self.inbound.close()
