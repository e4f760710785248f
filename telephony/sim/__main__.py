"""Command line: ``python -m telephony.sim --port 8088 --ari-password ... --plan plan.yaml``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from aiohttp import web

from .core import MEDIA_START_DELAY_S
from .engine import Pbx
from .plan import Plan, PlanError, load_plan
from .server import make_app

DESCRIPTION = """\
PBX simulator: speaks Asterisk 22.10.1's ARI (REST under /ari, events websocket at /ari/events) and
AudioSocket (as the TCP client of externalMedia), with scripted callees chosen by the dialed number.
Inspection and control for tests and demos live under /sim (same credentials):
  GET  /sim/calls[?state=live|ended&number=N]   live and ended simulated calls, what each callee heard
  GET  /sim/calls/{id}                          one call
  POST /sim/calls/{id}/hangup|dtmf|say          make the simulated party act now
  POST /sim/inbound {"did", "caller_number", "app"?, "behaviour"?, "answered"?}
                                                a call arrives into Stasis(<app>,inbound,<did>); the
                                                caller follows "behaviour" (say, dtmf, hangup_after);
                                                answered=false: the app answers it (shipped dialplan)
  PUT  /sim/plan                                replace the plan (JSON body)
  GET  /sim/stats                               counters
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m telephony.sim",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--host", default=env("SIM_HOST", "127.0.0.1"), help="address to listen on (default %(default)s)"
    )
    p.add_argument(
        "--port", type=int, default=int(env("SIM_PORT", "8088")), help="HTTP port (default %(default)s)"
    )
    p.add_argument(
        "--ari-user", default=env("SIM_ARI_USER", "asterisk"), help="ARI user (default %(default)s)"
    )
    p.add_argument(
        "--ari-password", default=env("SIM_ARI_PASSWORD"), help="ARI password (required; or SIM_ARI_PASSWORD)"
    )
    p.add_argument(
        "--plan",
        default=env("SIM_PLAN"),
        help="callee plan, JSON or YAML (see README); without one every number answers",
    )
    p.add_argument("--asterisk-id", default="02:fc:00:00:00:01", help="asterisk_id put on every event")
    p.add_argument(
        "--ws-write-timeout",
        type=float,
        default=0.1,
        help="seconds an events websocket may block a write before it is closed with 1011 "
        "(Asterisk's websocket_write_timeout; 0 disables; default %(default)s)",
    )
    p.add_argument(
        "--media-start-delay",
        default=env("SIM_MEDIA_START_DELAY", ",".join(str(s) for s in MEDIA_START_DELAY_S)),
        help="MIN,MAX seconds between the answer of POST /channels/externalMedia and its leg entering the "
        "app (StasisStart), drawn per leg; as on a real Asterisk, whose dial thread does it after the "
        "request returned (default %(default)s; 0,0 for at once)",
    )
    p.add_argument("--log-level", default=env("SIM_LOG_LEVEL", "INFO"))
    args = p.parse_args(argv)
    try:
        low, high = (float(part) for part in args.media_start_delay.split(","))
        if not 0 <= low <= high:
            raise ValueError
    except ValueError:
        p.error("--media-start-delay must be MIN,MAX seconds with 0 <= MIN <= MAX")
    args.media_start_delay = (low, high)
    if not args.ari_password:
        p.error("--ari-password (or SIM_ARI_PASSWORD) is required")
    return args


async def serve(args: argparse.Namespace, plan: Plan) -> None:
    pbx = Pbx(plan, asterisk_id=args.asterisk_id, media_start_delay_s=args.media_start_delay)
    app = make_app(
        pbx, user=args.ari_user, password=args.ari_password, ws_write_timeout=args.ws_write_timeout
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=1024)
    await site.start()
    logging.getLogger("telephony.sim").info(
        "PBX simulator (Asterisk %s) listening on http://%s:%d/ari", "22.10.1", args.host, args.port
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        plan = load_plan(args.plan) if args.plan else Plan()
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args, plan))
    else:
        uvloop.run(serve(args, plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
