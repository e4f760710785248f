"""The app's events websocket: connect, reconcile before reading, read, and reconnect forever with jittered,
capped exponential backoff.

After every (re)connect, and before handling any event that arrived on the new connection (they wait in the
websocket's buffer), the app reconciles (``on_open``; PROTOCOLS.md pitfall 9). **ApplicationReplaced**
(another connection took our app name): the connection is closed and re-opened with backoff. One Stasis app
per PBX is the design; a second one is a misconfiguration, and staying connected-but-deaf would silently
lose call ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from telephony.stasis.config import StasisConfig
from telephony.stasis.rest import AriRest

logger = logging.getLogger("telephony.stasis")

#: The ARI event types the app acts on (the call controller, the outcome tracker, ``ApplicationReplaced``).
HANDLED_EVENTS = frozenset(
    {
        "ApplicationReplaced",
        "ChannelDestroyed",
        "ChannelDtmfReceived",
        "ChannelHangupRequest",
        "ChannelStateChange",
        "Dial",
        "PlaybackFinished",
        "RecordingFailed",
        "RecordingFinished",
        "RecordingStarted",
        "StasisEnd",
        "StasisStart",
    }
)
# A "type" key with a string value. Inside a JSON string a quote is escaped (\"), so this matches keys
# only; of the ARI models only the event itself (Message) has a "type" property.
_TYPE_KEY = re.compile(r'"type"\s*:\s*"([^"\\]*)"')


def _ignorable(data: str) -> bool:
    """True when the websocket text is an event of a type the app does not act on. Decided without
    decoding: exactly one ``"type": "..."`` in the text (so it is the event's own), naming a type outside
    :data:`HANDLED_EVENTS`. Anything else (two matches, none, not JSON) is decoded and handled as usual."""
    if data.count('"type"') != 1:
        return False
    match = _TYPE_KEY.search(data)
    return match is not None and match.group(1) not in HANDLED_EVENTS


class EventsConnection:
    """Runs the events websocket until ``stopping`` is set. The hooks:

    * ``on_open()``: awaited on every new connection before any of its events is read (reconciliation);
      raising gives the connection up (retried with backoff);
    * ``on_connected()`` / ``on_disconnected()``: the connection is usable / is gone;
    * ``on_text(data)``: one text frame (see :func:`handle_text`); False gives the connection up.
    """

    def __init__(
        self,
        config: StasisConfig,
        rest: AriRest,
        *,
        rng: random.Random,
        on_open: Callable[[], Awaitable[None]],
        on_connected: Callable[[], None],
        on_disconnected: Callable[[], None],
        on_text: Callable[[str], bool],
    ) -> None:
        self.config = config
        self.rest = rest
        self.rng = rng
        self.on_open = on_open
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.on_text = on_text
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    def backoff(self, failures: int) -> float:
        """Jittered exponential backoff: the first retry after a working connection waits ~initial."""
        base = min(self.config.backoff_max_s, self.config.backoff_initial_s * (2 ** min(failures, 20)))
        return base * self.rng.uniform(0.5, 1.0)

    def close(self) -> None:
        if self.ws is not None:
            asyncio.get_running_loop().create_task(self.ws.close())

    async def run(self, stopping: asyncio.Event) -> None:
        """Connect, reconcile, handle events; reconnect with backoff; until ``stopping`` is set."""
        failures = 0
        while not stopping.is_set():
            try:
                connected = await self._connect_once(stopping)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                logger.warning("stasis %s: events connection failed: %r", self.config.app, exc)
                connected = False
            except Exception:  # e.g. the sink's database is down during reconciliation: retry, logged
                logger.exception("stasis %s: connect/reconcile failed", self.config.app)
                connected = False
            failures = 0 if connected else failures + 1
            if stopping.is_set():
                break
            delay = self.backoff(failures)
            logger.info("stasis %s: reconnecting in %.2fs", self.config.app, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)

    async def _connect_once(self, stopping: asyncio.Event) -> bool:
        """One connection: returns True if it got as far as reconciling (so backoff starts over)."""
        assert self.rest.session is not None  # noqa: S101
        base = self.rest.base
        url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ari/events"
        ws = await self.rest.session.ws_connect(
            url, params={"app": self.config.app}, protocols=("ari",), heartbeat=self.config.heartbeat_s
        )
        self.ws = ws
        usable = False
        try:
            # Events arriving meanwhile wait in the websocket's buffer: reconcile first (pitfall 9).
            await self.on_open()
            usable = True
            self.on_connected()
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    if not self.on_text(msg.data):
                        break
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    logger.warning("stasis %s: websocket error: %r", self.config.app, ws.exception())
                    break
            if not stopping.is_set():
                logger.warning("stasis %s: events websocket closed (code %s)", self.config.app, ws.close_code)
            return True
        finally:
            self.ws = None
            if usable:
                self.on_disconnected()
            await ws.close()


def handle_text(data: str, app: str, on_event: Callable[[dict[str, Any], float], None]) -> bool:
    """One text frame of the events websocket; False when the connection must be given up. A decoded event
    the app acts on goes to ``on_event`` with the time it arrived (epoch seconds).

    Most ARI events of a call change nothing here (variables, caller id, dialplan steps, bridge
    membership, ...): those are recognised from their text and dropped before JSON decoding, the
    largest cost per event (see :func:`_ignorable`)."""
    if _ignorable(data):
        return True
    try:
        event = json.loads(data)
    except ValueError:
        logger.warning("stasis %s: not JSON: %.200r", app, data)
        return True
    if not isinstance(event, dict):
        return True
    if event.get("type") == "ApplicationReplaced":
        logger.error(
            "stasis %s: another connection took the app (ApplicationReplaced); reconnecting",
            app,
        )
        return False
    try:
        on_event(event, time.time())
    except Exception:  # one malformed event must not drop the connection; logged
        logger.exception("stasis %s: failed to handle %.300r", app, event)
    return True
