"""``python -m media``: run the media worker until SIGTERM/SIGINT (configuration: see media/config.py).

Besides media/config.py's variables: ``LOG_LEVEL`` [INFO]; ``LOG_FORMAT`` [``json``, or ``text`` when
``DEBUG`` is on] (JSON lines carry ``call_id`` and ``tenant_id``, see wire/logctx.py); ``SENTRY_DSN``
[unset: no Sentry] reports errors to Sentry.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping

from media.config import ConfigError, MediaConfig
from media.metrics import MetricsServer
from media.worker import MediaWorker
from wire import logctx

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s %(call_id)s %(tenant_id)s"
JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}
_TRUE = ("1", "true", "yes", "on")


def log_format(environ: Mapping[str, str]) -> str:
    """``LOG_FORMAT`` (``json`` or ``text``); by default JSON, unless DEBUG is on (``make run``)."""
    value = environ.get("LOG_FORMAT", "").strip().lower()
    if value:
        return value
    return "text" if environ.get("DEBUG", "").strip().lower() in _TRUE else "json"


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(JSON_FORMAT, rename_fields=JSON_RENAMES))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(logctx.CallContextFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def init_sentry(environ: Mapping[str, str]) -> bool:
    """Sentry when ``SENTRY_DSN`` is set (a plain init: no Django here); nothing otherwise."""
    dsn = environ.get("SENTRY_DSN", "").strip()
    if not dsn:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn,
        environment=environ.get("SENTRY_ENVIRONMENT") or None,
        send_default_pii=False,  # callers' numbers and words stay out of error reports
    )
    return True


async def serve(config: MediaConfig) -> None:
    worker = MediaWorker(config)
    await worker.start()
    metrics_server = None
    if config.metrics_listen is not None:
        metrics_server = MetricsServer(worker.metrics, *config.metrics_listen)
        await metrics_server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("media").info("media worker: stopping (drain up to %.0f s)", config.drain_s)
    await worker.stop()
    if metrics_server is not None:
        await metrics_server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m media", description=__doc__)
    parser.add_argument("--listen", help="host:port (overrides MEDIA_LISTEN)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    configure_logging(args.log_level, log_format(environ))
    init_sentry(environ)
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
