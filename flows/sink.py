"""The inbound side of the Stasis app's call events: ``CallInbound`` records the call, ``CallEnded`` closes
it; anything else about an inbound call changes nothing (logged at debug level). Database work runs in a
thread (the Stasis app's event loop must never block), one event at a time: inbound calls are few."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from django.db import close_old_connections

from flows.selectors import inbound_live_channel_ids
from flows.services import inbound_call_ended, inbound_call_started
from telephony.events import CallEnded, CallEvent, CallInbound

logger = logging.getLogger(__name__)

T = TypeVar("T")


class InboundCallSink:
    def __init__(self, *, pbx_ids: Iterable[int] | None = None) -> None:
        self.pbx_ids = sorted(set(pbx_ids)) if pbx_ids is not None else None

    async def handle(self, event: CallEvent) -> None:
        await asyncio.to_thread(self._apply, event)

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
        return await asyncio.to_thread(
            self._in_thread, lambda: inbound_live_channel_ids(pbx_ids=self.pbx_ids)
        )

    def _apply(self, event: CallEvent) -> None:
        if isinstance(event, CallInbound):
            inbound = event
            self._in_thread(
                lambda: inbound_call_started(
                    channel_id=inbound.call_id,
                    did=inbound.did,
                    caller_number=inbound.caller_number,
                    caller_name=inbound.caller_name,
                    message=inbound.message,
                    at=inbound.at,
                    pbx_id=self.pbx_ids[0] if self.pbx_ids else None,
                )
            )
            logger.info(
                "inbound call %s from %s to %s recorded", inbound.call_id, inbound.caller_number, inbound.did
            )
        elif isinstance(event, CallEnded):
            ended = event
            self._in_thread(
                lambda: inbound_call_ended(channel_id=ended.call_id, at=ended.at, reason=ended.reason)
            )
        else:
            logger.debug("inbound call %s: %r", event.call_id, event)

    @staticmethod
    def _in_thread(fn: Callable[[], T]) -> T:
        close_old_connections()
        try:
            return fn()
        finally:
            close_old_connections()
