"""``python -m media``: run the media worker until SIGTERM/SIGINT (configuration: see media/config.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from media.config import ConfigError, MediaConfig
from media.worker import MediaWorker


async def serve(config: MediaConfig) -> None:
    worker = MediaWorker(config)
    await worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("media").info("media worker: stopping (drain up to %.0f s)", config.drain_s)
    await worker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m media", description=__doc__)
    parser.add_argument("--listen", help="host:port (overrides MEDIA_LISTEN)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    environ = dict(os.environ)
    if args.listen:
        environ["MEDIA_LISTEN"] = args.listen
    try:
        config = MediaConfig.from_env(environ)
    except ConfigError as exc:
        print(f"media worker: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
