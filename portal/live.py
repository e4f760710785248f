"""Live updates for the portal: one server-sent-event stream per open page (``GET /live``), fed from the
tenant's Redis pub/sub channels (wire/live.py). Served by the ASGI web process; each stream holds no
database connection (its tenant is looked up once, then the connection is given back).

Events (``event:`` names; htmx's SSE extension triggers ``sse:<name>`` on the page):

* ``calls``: some call of the tenant changed state (at most one every :data:`COALESCE_S`, and always one
  after the last change); ``call-<call id>`` for that call;
* ``incidents`` and ``incident-<id>``: an incident's timeline grew;
* ``import-<id>``: a contact import progressed;
* ``transcript-<call id>``: a transcript line as it was spoken, as HTML
  (``portal/calls/_transcript_line.html``) to append to the call page's transcript.

A hint makes a page re-read what it shows through the same selectors; it is never the data itself (except
the transcript line, which the media worker publishes as it is spoken and stores at the end of the call).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.utils.dateparse import parse_datetime
from redis.exceptions import RedisError

from orchestrator.redis_client import get_redis
from portal.access import resolve_membership
from wire.live import LIVE_CHANNEL_PREFIX, live_channel, transcript_channel

logger = logging.getLogger(__name__)

#: Call changes come in bursts (a dial pass claims many leads at once): one ``calls`` event per this long.
COALESCE_S = 0.5
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0
#: How long the browser waits before reconnecting a dropped stream.
RETRY_MS = 2000


def sse_event(name: str, data: str) -> str:
    """One event in the text/event-stream format (every line of ``data`` prefixed)."""
    lines = "".join(f"data: {line}\n" for line in (data.splitlines() or [""]))
    return f"event: {name}\n{lines}\n"


def _tenant_id_for(request: HttpRequest) -> int | None:
    try:
        if not request.user.is_authenticated:
            return None
        membership, _ = resolve_membership(request)
        get_redis()  # starts (or attaches to) the embedded Redis when REDIS_URL is unset
        return membership.tenant_id if membership is not None else None
    finally:
        # The stream may stay open for hours: it must not keep this request's database connection.
        connection.close()
        close_old_connections()


def _hints(message: dict[str, Any]) -> list[str]:
    """The event names a message on the tenant's live channel stands for."""
    try:
        body = json.loads(message["data"])
    except (TypeError, ValueError):
        return []
    kind = body.get("kind")
    if kind == "call":
        names = ["calls"]
        if body.get("call_id"):
            names.append(f"call-{body['call_id']}")
        return names
    if kind == "incident":
        return ["incidents", f"incident-{body.get('incident_id')}"]
    if kind == "import":
        return ["imports", f"import-{body.get('import_id')}"]
    return [str(kind)] if kind else []


def _transcript_event(message: dict[str, Any]) -> str | None:
    try:
        line = json.loads(message["data"])
    except (TypeError, ValueError):
        return None
    call_id = line.get("attempt_id") or line.get("call_id")
    if not call_id:
        return None
    html = render_to_string(
        "portal/calls/_transcript_line.html",
        {
            "line": {
                "role": line.get("role", ""),
                "text": line.get("text", ""),
                "at": parse_datetime(line.get("at") or ""),
            }
        },
    )
    return sse_event(f"transcript-{call_id}", html)


async def _stream(tenant_id: int) -> AsyncGenerator[str, None]:
    client = aioredis.from_url(settings.REDIS_URL, socket_connect_timeout=5, health_check_interval=30)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(live_channel(tenant_id), transcript_channel(tenant_id))
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        pending: dict[str, None] = {}
        last_flush = 0.0
        last_sent = time.monotonic()
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            now = time.monotonic()
            if message is not None:
                channel = message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else channel
                if channel.startswith(LIVE_CHANNEL_PREFIX):
                    pending.update(dict.fromkeys(_hints(message)))
                else:
                    event = _transcript_event(message)
                    if event:
                        last_sent = now
                        yield event
            if pending and now - last_flush >= COALESCE_S:
                chunk = "".join(sse_event(name, "") for name in pending)
                pending.clear()
                last_flush = last_sent = now
                yield chunk
            elif now - last_sent >= KEEPALIVE_S:
                last_sent = now
                yield ": keep-alive\n\n"
    except (RedisError, OSError) as exc:
        logger.info("live stream of tenant %s ended: %s", tenant_id, exc)
    except asyncio.CancelledError:
        raise  # the browser went away
    finally:
        try:
            await pubsub.aclose()
            await client.aclose()
        except (RedisError, OSError):
            pass


async def events(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """``GET /live``: the signed-in user's tenant's events (see the module docstring)."""
    tenant_id = await sync_to_async(_tenant_id_for)(request)
    if tenant_id is None:
        return HttpResponse("Sign in first.", status=403, content_type="text/plain")
    response = StreamingHttpResponse(_stream(tenant_id), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
