"""``python -m media.localai``: run the Realtime stand-in until SIGTERM/SIGINT.

Once listening it prints one line on stdout, ``READY ws://HOST:PORT/v1/realtime``, so a parent process that
asked for ``--port 0`` learns the port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from .policy import RulesError, load_rules
from .server import RealtimeStandIn

log = logging.getLogger("media.localai")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m media.localai",
        description="A stand-in for the OpenAI Realtime API (GA): the test server or the local demo agent.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (see the READY line)")
    p.add_argument("--mode", choices=("test", "agent"), default="test")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    p.add_argument("--reply-ms", type=int, default=2000, help="test mode: audio per reply (ms)")
    p.add_argument("--delta-ms", type=int, default=100, help="audio per response.output_audio.delta (ms)")
    p.add_argument(
        "--speed", type=float, default=10.0, help="real-time factor of audio delivery; 0 = at once"
    )
    p.add_argument("--latency-ms", type=int, default=0, help="delay from response start to its first delta")
    p.add_argument(
        "--rules", default=None, help='JSON file: [{"match": str, "tool": str, "arguments": {...}}]'
    )
    p.add_argument("--drop-after-s", type=float, default=None, help="close each connection (1011) after S s")
    p.add_argument("--fail-session-update", action="store_true", help="answer session.update with an error")
    p.add_argument("--speech", choices=("auto", "espeak", "tones"), default="auto", help="agent mode voice")
    p.add_argument("--espeak-voice", default="en-us")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


async def _serve(server: RealtimeStandIn) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"READY {server.url}", flush=True)
        await stop.wait()
        log.info("stopping: %d connections served", server.connection_count)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        rules = load_rules(args.rules) if args.rules else None
        server = RealtimeStandIn(
            args.host,
            args.port,
            mode=args.mode,
            api_key=args.api_key,
            reply_ms=args.reply_ms,
            delta_ms=args.delta_ms,
            speed=args.speed,
            latency_ms=args.latency_ms,
            rules=rules,
            drop_after_s=args.drop_after_s,
            fail_session_update=args.fail_session_update,
            speech=args.speech,
            espeak_voice=args.espeak_voice,
        )
    except (RulesError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        asyncio.run(_serve(server))
    else:
        uvloop.run(_serve(server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
