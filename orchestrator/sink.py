"""The sink the Stasis app hands its call events to (``settings.TELEPHONY_EVENT_SINK``): it routes each
call's events to the domain that owns the call. An outbound call's id is its attempt id, a UUID
(``campaigns.sink.AttemptEventSink``); a call that entered from the dialplan has Asterisk's own channel
id, never a UUID, and the flows' own legs are UUIDs of version 8: both go to ``flows.sink.FlowCallSink``.
``telephony`` knows neither (DESIGN.md §3)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from campaigns.sink import AttemptEventSink
from flows.services.inbound import Route
from flows.sink import FlowCallSink
from telephony.events import CallEvent, CallInbound


def _is_attempt(call_id: str) -> bool:
    """A campaign attempt's id is a UUID of version 4; a flow leg's is version 8, an inbound call's is not a
    UUID at all (contract 1): both go to the flows sink."""
    try:
        return UUID(call_id).version == 4
    except ValueError:
        return False


class CallEventRouter:
    """A :class:`telephony.events.CallEventBatchSink` in front of the outbound and inbound sinks."""

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
        return await self.inbound.handle_many(events)

    async def route_inbound(self, event: CallInbound) -> Route:
        """Contract 2: what to do with a call that entered from the dialplan (the flows decide)."""
        return await self.inbound.route_inbound(event)

    async def live_call_ids(self) -> set[str]:
        return await self.attempts.live_call_ids() | await self.inbound.live_call_ids()

    def close(self) -> None:
        self.attempts.close()
        self.inbound.close()
