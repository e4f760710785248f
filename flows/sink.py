"""The flows' side of the Stasis app's call events (contract 1 and 2): inbound calls (the caller's channel
id, not a UUID) and flow legs (page, connect and callback calls: UUIDs of version 8).

* ``route_inbound`` answers what to do with an inbound call (agent, refuse, transfer) and writes its brief.
* Inbound: ``CallInbound`` records the call, ``CallAnswered`` / ``CallTransferred`` / ``CallBridged`` note
  what happened, ``CallEnded`` closes it.
* Flow legs: ringing, answered, bridged, keys (the product decides: flows.services.responses), transferred,
  ended.

Database work runs in a thread of its own (the Stasis app's event loop must never block), one event at a
time. :meth:`FlowCallSink.close` closes that thread's database connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from uuid import UUID

from django.db import close_old_connections, connections

from flows.selectors import flow_live_call_ids
from flows.services import responses
from flows.services.inbound import (
    Route,
    inbound_call_answered,
    inbound_call_bridged_to_agent,
    inbound_call_ended,
    inbound_call_started,
    inbound_call_transferred,
    inbound_route,
)
from telephony.events import (
    CallAnswered,
    CallBridged,
    CallDtmf,
    CallEnded,
    CallEvent,
    CallInbound,
    CallRinging,
    CallTransferred,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


def is_flow_leg(call_id: str) -> bool:
    """A flow leg's id is a UUID of version 8 (inbound calls have Asterisk's channel ids)."""
    try:
        return UUID(call_id).version == 8
    except ValueError:
        return False


class FlowCallSink:
    def __init__(self, *, pbx_ids: Iterable[int] | None = None) -> None:
        self.pbx_ids = sorted(set(pbx_ids)) if pbx_ids is not None else None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow-sink")

    @property
    def pbx_id(self) -> int | None:
        return self.pbx_ids[0] if self.pbx_ids else None

    def close(self) -> None:
        self._executor.submit(connections.close_all).result()
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._in_thread, fn)

    async def route_inbound(self, event: CallInbound) -> Route:
        return await self._run(
            lambda: inbound_route(
                channel_id=event.call_id,
                did=event.did,
                caller_number=event.caller_number,
                caller_name=event.caller_name,
                at=event.at,
                pbx_id=self.pbx_id,
            )
        )

    async def handle(self, event: CallEvent) -> None:
        await self._run(lambda: self._apply(event))

    async def handle_many(self, events: Sequence[CallEvent]) -> list[BaseException | None]:
        errors: list[BaseException | None] = []
        for event in events:
            try:
                await self.handle(event)
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - each event's own error, as the protocol asks
                errors.append(exc)
        return errors

    async def live_call_ids(self) -> set[str]:
        return await self._run(lambda: flow_live_call_ids(pbx_ids=self.pbx_ids))

    def _apply(self, event: CallEvent) -> None:
        if is_flow_leg(event.call_id):
            self._apply_leg(event)
            return
        if isinstance(event, CallInbound):
            inbound_call_started(
                channel_id=event.call_id,
                did=event.did,
                caller_number=event.caller_number,
                caller_name=event.caller_name,
                message=event.message,
                at=event.at,
                pbx_id=self.pbx_id,
            )
            logger.info(
                "inbound call %s from %s to %s recorded", event.call_id, event.caller_number, event.did
            )
        elif isinstance(event, CallEnded):
            inbound_call_ended(channel_id=event.call_id, at=event.at, reason=event.reason)
        elif isinstance(event, CallAnswered):
            inbound_call_answered(channel_id=event.call_id, at=event.at)
        elif isinstance(event, CallTransferred):
            inbound_call_transferred(channel_id=event.call_id, number=event.number, at=event.at)
        elif isinstance(event, CallBridged):
            inbound_call_bridged_to_agent(channel_id=event.call_id)
        else:
            logger.debug("inbound call %s: %r", event.call_id, event)

    def _apply_leg(self, event: CallEvent) -> None:
        if isinstance(event, CallDtmf):
            responses.leg_dtmf(call_id=event.call_id, digit=event.digit, at=event.at)
        elif isinstance(event, CallAnswered):
            responses.leg_answered(call_id=event.call_id, at=event.at)
        elif isinstance(event, CallRinging):
            responses.leg_ringing(call_id=event.call_id, at=event.at)
        elif isinstance(event, CallBridged):
            responses.leg_bridged(call_id=event.call_id, at=event.at)
        elif isinstance(event, CallTransferred):
            responses.leg_transferred(call_id=event.call_id, number=event.number, at=event.at)
        elif isinstance(event, CallEnded):
            responses.leg_ended(
                call_id=event.call_id, at=event.at, outcome=str(event.outcome), reason=event.reason
            )
        else:
            logger.debug("flow leg %s: %r", event.call_id, event)

    @staticmethod
    def _in_thread(fn: Callable[[], T]) -> T:
        close_old_connections()
        try:
            return fn()
        finally:
            close_old_connections()


#: The name the router used before flows routed calls.
InboundCallSink = FlowCallSink
