"""Call actions from Redis: a task BLPOPs JSON commands from the app's ``command_keys``
(``stasis:commands:<pbx id>``, RPUSHed by the media worker). The short BLPOP timeout keeps the app's stop
prompt; Redis errors are logged and retried with backoff, never ending the app (calls are handled without
Redis, only commands wait). What a command does is the call controller's business."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger("telephony.stasis")


def decode_command(raw: bytes | str, app: str) -> dict[str, Any] | None:
    """The command as a JSON object, or None (logged) when it is not one."""
    try:
        command = json.loads(raw)
    except ValueError:
        command = None
    if not isinstance(command, dict):
        logger.warning("stasis %s: dropping malformed command %.200r", app, raw)
        return None
    return command


async def consume_commands(
    client: aioredis.Redis,
    keys: list[str],
    *,
    app: str,
    poll_s: float,
    stopping: asyncio.Event,
    backoff: Callable[[int], float],
    on_command: Callable[[Mapping[str, Any]], None],
) -> None:
    """BLPOP call actions until ``stopping``; each decoded one goes to ``on_command``."""
    failures = 0
    while not stopping.is_set():
        try:
            item = await client.blpop(keys, timeout=poll_s)
        except (RedisError, OSError) as exc:
            failures += 1
            delay = backoff(failures)
            if failures == 1 or failures % 20 == 0:  # one line per outage, then a reminder now and then
                logger.warning(
                    "stasis %s: command queue unavailable (%r); retrying in %.2fs", app, exc, delay
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            continue
        if failures:
            logger.info("stasis %s: command queue reachable again", app)
            failures = 0
        if item is None:
            continue
        try:
            command = decode_command(item[1], app)
            if command is not None:
                on_command(command)
        except Exception:  # one bad command must not stop the consumer; logged
            logger.exception("stasis %s: failed to handle command %.300r", app, item[1])
