"""A stand-in media worker for end-to-end tests and benchmarks: accepts AudioSocket legs and reads each one
to its end, discarding the audio. ``python -m tests.e2e.media_sink --port P``.

It stands for the media worker (``media/``) until that exists: the Stasis app's bridge flow (mixing bridge,
externalMedia over AudioSocket, A9 teardown) then runs for real against it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal


async def _serve_leg(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _main(host: str, port: int) -> None:
    server = await asyncio.start_server(_serve_leg, host, port, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
