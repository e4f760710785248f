"""A stand-in media worker for end-to-end tests and benchmarks: accepts AudioSocket legs and reads each one
to its end, discarding the audio. ``python -m tests.e2e.media_sink --port P``.

It stands for the media worker (``media/``) where a test is about the call flow, not the conversation:
the Stasis app's bridge flow (mixing bridge, externalMedia over AudioSocket, A9 teardown) runs for real
against it. Like the media worker it announces itself in Redis (``REDIS_URL``) while it listens, so the
dispatcher places calls (DESIGN.md §5 rule 9).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from wire.brief import MEDIA_WORKERS_KEY


async def _serve_leg(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _heartbeat(member: str, stop: asyncio.Event) -> None:
    url = os.environ.get("REDIS_URL")
    if not url:
        return
    client = aioredis.Redis.from_url(url)
    try:
        while not stop.is_set():
            try:
                await client.zadd(MEDIA_WORKERS_KEY, {member: time.time() + 3.0})
            except (RedisError, OSError) as exc:
                logging.warning("media sink: heartbeat not written: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        with contextlib.suppress(RedisError, OSError):
            await client.zrem(MEDIA_WORKERS_KEY, member)
    finally:
        await client.aclose()


async def _main(host: str, port: int) -> None:
    server = await asyncio.start_server(_serve_leg, host, port, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    heartbeat = loop.create_task(_heartbeat(f"{host}:{port}", stop))
    async with server:
        await stop.wait()
    await heartbeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
