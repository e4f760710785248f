"""The inbound side of the Stasis app's call events: ``CallInbound`` records the call, ``CallEnded`` closes
it; anything else about an inbound call changes nothing (logged at debug level). Database work runs in a
thread of its own (the Stasis app's event loop must never block), one event at a time: inbound calls are
few. :meth:`InboundCallSink.close` closes that thread's database connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import close_old_connections, connections

from flows.selectors import inbound_live_channel_ids
from flows.services import inbound_call_ended, inbound_call_started
from telephony.events import CallEnded, CallEvent, CallInbound

logger = logging.getLogger(__name__)

T = TypeVar("T")


class InboundCallSink:
    def __init__(self, *, pbx_ids: Iterable[int] | None = None) -> None:
        self.pbx_ids = sorted(set(pbx_ids)) if pbx_ids is not None else None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbound-sink")

    def close(self) -> None:
        self._executor.submit(connections.close_all).result()
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._in_thread, fn)

    async def handle(self, event: CallEvent) -> None:
        await self._run(lambda: self._apply(event))

    async def handle_many(self, events: Sequence[CallEvent]) -> list[Exception | None]:
        errors: list[Exception | None] = []
        for event in events:
            try:
                await self.handle(event)
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - each event's own error, as the protocol asks
                errors.append(exc)
        return errors

    async def live_call_ids(self) -> set[str]:
        return await self._run(lambda: inbound_live_channel_ids(pbx_ids=self.pbx_ids))

    def _apply(self, event: CallEvent) -> None:
        if isinstance(event, CallInbound):
            inbound_call_started(
                channel_id=event.call_id,
                did=event.did,
                caller_number=event.caller_number,
                caller_name=event.caller_name,
                message=event.message,
                at=event.at,
                pbx_id=self.pbx_ids[0] if self.pbx_ids else None,
            )
            logger.info(
                "inbound call %s from %s to %s recorded", event.call_id, event.caller_number, event.did
            )
        elif isinstance(event, CallEnded):
            inbound_call_ended(channel_id=event.call_id, at=event.at, reason=event.reason)
        else:
            logger.debug("inbound call %s: %r", event.call_id, event)

    @staticmethod
    def _in_thread(fn: Callable[[], T]) -> T:
        close_old_connections()
        try:
            return fn()
        finally:
            close_old_connections()
