"""The app's health in Redis (:mod:`telephony.health`): while its events websocket is connected and
reconciled, the app refreshes ``stasis:apps`` for the PBX rows it serves; the dispatcher places calls on a
PBX only while that heartbeat is fresh (A11)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from telephony import health

logger = logging.getLogger("telephony.stasis")

HEARTBEAT_SLACK_S = 0.5  # how late a heartbeat may be written (a busy loop): see gap_start


class Heartbeat:
    def __init__(self, client: aioredis.Redis, pbx_ids: tuple[str, ...], app: str) -> None:
        self.client = client
        self.pbx_ids = pbx_ids
        self.app = app

    async def run(self, connected: asyncio.Event, stopping: asyncio.Event) -> None:
        """Refresh the heartbeat every HEARTBEAT_S while connected, until ``stopping``."""
        failures = 0
        while not stopping.is_set():
            if connected.is_set():
                try:
                    await health.stasis_heartbeat(self.client, self.pbx_ids)
                    failures = 0
                except (RedisError, OSError) as exc:
                    failures += 1
                    if failures == 1 or failures % 60 == 0:
                        logger.warning("stasis %s: heartbeat not written: %r", self.app, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), health.HEARTBEAT_S)

    async def announce(self) -> None:
        try:
            await health.stasis_heartbeat(self.client, self.pbx_ids)
        except (RedisError, OSError) as exc:
            logger.warning("stasis %s: heartbeat not written: %r", self.app, exc)

    async def announce_gone(self) -> None:
        try:
            await health.stasis_gone(self.client, self.pbx_ids)
        except (RedisError, OSError) as exc:  # the heartbeat expires by itself within its TTL
            logger.warning("stasis %s: could not mark the app gone: %r", self.app, exc)

    async def last_seen(self) -> datetime | None:
        """A heartbeat period after the last heartbeat any process of this app wrote (a killed process
        died within that period), or None when unknown."""
        try:
            seen = await health.stasis_last_seen(self.client, self.pbx_ids)
        except (RedisError, OSError) as exc:
            logger.warning("stasis %s: last heartbeat unknown: %r", self.app, exc)
            return None
        if seen is None:
            return None
        margin = 0.0 if seen.exact else health.HEARTBEAT_S + HEARTBEAT_SLACK_S
        return datetime.fromtimestamp(seen.at + margin, UTC)
