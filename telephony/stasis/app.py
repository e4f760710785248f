"""The Stasis app: one per PBX. ARI events in, call events out, media bridged, calls kept bounded.

What it does (PROTOCOLS.md part A, §1.3–1.4, §3, pitfall 9):

* Holds the app's events websocket and **reconnects forever** with jittered, capped exponential backoff.
  After every (re)connect, and before handling any event that arrived on the new connection (they wait in
  the websocket's buffer), it **reconciles**: calls the orchestrator believes are live
  (``sink.live_call_ids()``) whose channel ``GET /ari/channels`` no longer lists ended while nobody was
  listening (the app was inactive, its events were dropped) and are closed with
  ``CallEnded(reason="reconciled")``. Such an end was not seen, so the app never guesses it: the outcome is
  what was seen before the gap (answered, a final Dial status), else ``unknown``, with ``gap_started_at``
  (when the app was last known to listen, from memory or, after a restart, from its last heartbeat); the
  orchestrator refines it from what it recorded itself (an answer, media, a transcript). An answered call
  found still up but without its media leg in its bridge (the app died while setting it up) gets its
  media set up now instead of being left in silence. Channels in our app that nobody is waiting for (an
  outbound channel whose id is not live, an AudioSocket leg or bridge of a call that is gone) are hung up
  or destroyed.
* Per originated channel a :class:`~telephony.outcomes.CallEndTracker` classifies the end (A3). The channel is
  recognised as ours from its first event: ``Dial`` naming it as ``peer`` (no ``caller``: an originate), its
  dialplan app ``AppDial2`` (an originated leg), or ``StasisStart`` with ``outbound``/``inbound`` args.
  ``ChannelDestroyed`` ends an outbound call (A3); ``StasisEnd`` ends a dialplan-entered one (A4).
* ``StasisStart [outbound, id]`` → ``CallAnswered``, then, in a task of its own so the event loop keeps
  reading, a mixing bridge ``bridge-<call>`` and an externalMedia AudioSocket leg ``media-<call>``
  (``format=slin24``, the next media host round-robin; a host that refuses, 500 "Allocation failed", is
  skipped and the next one tried). **The leg is added to the bridge only once its own StasisStart has
  arrived** (DESIGN.md §6): Asterisk answers ``POST /channels/externalMedia`` as soon as the channel exists
  and its TCP connection is up, and dials it (UUID frame, answer, Stasis) on a background thread, so an
  ``addChannel`` sent at once answers 422 "Channel not in Stasis application" (seen on about 15 % of calls
  on a real 22.10.1). The wait is bounded (``media_start_timeout_s``). Then the caller and the leg go into
  the bridge → ``CallBridged``. If no media host takes it, the app emits ``MediaGone``, hangs the caller up
  (nobody is left in silence) and the call ends with outcome ``media_failed``, never ``answered``.
* **The AudioSocket UUID** (``data``, the first frame the media worker receives) is a fresh uuid4 per leg,
  never the call id (which tenant users see in the API). Right before the request the app stores
  ``media:expect:<uuid> = <call id>`` in Redis for ``MEDIA_EXPECT_TTL_S``; the media worker takes that key
  once (GETDEL) and refuses a UUID it does not find, so a connection presenting a live call's UUID a second
  time cannot take the call over.
* **Inbound calls** (``StasisStart [inbound, <DID>]``, from the dialplan): until inbound flows route them,
  the app reports ``CallInbound`` (who called which number), answers, plays ``inbound_message`` (a clear
  "this number cannot take your call" sound) and hangs up; the end follows on ``StasisEnd`` (A4).
* **Health** (:mod:`telephony.health`): while its events websocket is connected and reconciled, the app
  refreshes ``stasis:apps`` in Redis for the PBX rows it serves every second; the dispatcher places calls
  on a PBX only while that heartbeat is fresh (DESIGN.md §5 rule 9, A11).
* A9: Asterisk never hangs up the AudioSocket leg when the caller goes, so the app deletes it and destroys
  the bridge. When the AudioSocket leg goes first, the app emits ``MediaGone`` and hangs the caller up.
* A hard maximum call duration, counted from the moment the app first sees the channel: the app hangs the
  call up and its end is reported with ``reason="max_duration"``.
* **Call actions** (issue 4 contract §3). With ``redis_url`` set, a task BLPOPs JSON commands from the
  ``command_keys`` (``stasis:commands:<pbx id>``, one per PBX row this app serves; RPUSHed by the media
  worker). The short BLPOP timeout keeps :meth:`StasisApp.stop` prompt; Redis errors are logged and
  retried with backoff, never ending the app (calls are handled without Redis, only commands wait).

  - ``{"action": "hangup", "call_id"}``: ``DELETE`` the caller's channel; the normal end path follows.
  - ``{"action": "transfer", "call_id", "number", "endpoint", "caller_id", "timeout_s"}`` (A10): the human
    leg is originated into this app with ``appArgs=transfer,<call id>`` and channelId ``xfer-<call id>``.
    Its ``StasisStart`` (= answered): the AudioSocket leg is taken out of the bridge, the human leg is
    added, and only then is the AudioSocket leg deleted (had the add failed, the agent's leg goes back
    in: the caller is never left alone in the bridge). Then ``{"event": "transfer", "status": "answered",
    "number"}`` is published on ``media:call:<call id>`` and ``CallTransferred`` emitted. The human leg
    destroyed before it answered (classified like a call, :mod:`telephony.outcomes`: busy, no_answer,
    rejected, ...) or not answered within ``timeout_s`` (the app hangs it up: ``timeout``) → ``{"event":
    "transfer", "status": "failed", "reason"}`` and the call stays as it was. One transfer at a time per
    call (``transfer_in_progress``). After the transfer, whichever of the caller and the human hangs up,
    the app hangs up the other and destroys the bridge; the call's end is reported as always (the
    caller's channel). The human leg's events never count as a call of their own.
  - Malformed JSON, unknown actions and calls this app does not have: one log line, dropped. A transfer
    with unusable fields for a call it has is answered ``failed`` with reason ``invalid``.

Ids are deterministic (``bridge-<call id>``, ``media-<call id>``, ``xfer-<call id>``) so that reconciliation
after a restart of this process can still tell which bridge, AudioSocket leg and human leg belong to which
call: a human leg whose call lives on is kept (and adopted after a restart), one whose call is gone is hung
up.

Decisions:

* **Raw aiohttp, not aioari.** aioari 0.10.2 (tested against the simulator in
  tests/telephony/sim/test_aioari.py) works for REST and events, but: its ``run()`` returns when the
  websocket closes and offers no reconnect or "connected" hook to reconcile before events are handled; it
  sends the credentials as ``api_key=user:password`` in the URL query (which ends up in proxy and access
  logs) instead of an Authorization header; its requests have no per-request timeout; it re-downloads the
  swagger documents on every connect; and its listeners swallow every exception. The app needs ~8 REST calls,
  so a single ``aiohttp.ClientSession`` with Basic auth and explicit timeouts is simpler and bounded.
* **Events reach the sink through a queue**, so the websocket reader never waits on the sink (the
  orchestrator's sink does database work in threads) and Asterisk's 100 ms write timeout (§1.3) is never hit
  because of us. One dispatcher drains it into **per-call lanes**: a call's events are handed to the sink in
  order (the next only when ``handle`` of the previous returned), while the lanes of different calls run
  concurrently, at most ``delivery_concurrency`` calls at once (a new call's lane waits for its turn, first
  come first served, while its events gather in it in order). Handing events over one by one made the
  sink's latency (one database transaction each) the bound on throughput: ~80 events/s on PostgreSQL in
  bench/stasis_events.py. A slow or failing call holds up only its own lane. **Coalescing:** when several
  events of a call are waiting in its lane (the sink is behind) and the sink has ``handle_many``
  (:class:`~telephony.events.CallEventBatchSink`), they are handed over together, so a backlog costs the
  sink one transaction per call rather than one per event; with nothing waiting, ``handle`` takes one.
* **ApplicationReplaced** (another connection took our app name): the connection is closed and re-opened
  with backoff. One Stasis app per PBX is the design; a second one is a misconfiguration, and staying
  connected-but-deaf would silently lose call ends.
* Reconciliation reads the live set **before** ``GET /channels`` for "ended during the gap" (a call the
  orchestrator believes placed had its channel created before that read, so a missing channel means it
  ended), and **again after** it for "orphans to hang up" (a channel created just before the GET belongs to
  an attempt committed before it). Calls still ``queued`` (originate not accepted yet) are not in the live
  set by contract (see :class:`~telephony.events.CallEventSink`).
* **Transfer timing.** The app's own timer (``timeout_s``) decides "not answered in time"; the human leg is
  originated with ``timeout = ceil(timeout_s) + 2`` so that Asterisk ends it anyway should this process
  lose track of it (then the reason is Asterisk's: ``no_answer``). The human leg is originated with
  ``originator=<caller channel>`` (codecs and linkedid follow the caller, PROTOCOLS.md §5).
* **Replies are fire-and-forget pub/sub**: a reply published while the media worker is not subscribed, or
  while Redis is down, is lost (logged); the worker bounds its own wait.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp.abc import AbstractResolver
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from telephony import health
from telephony.events import (
    CallAnswered,
    CallBridged,
    CallDtmf,
    CallEnded,
    CallEvent,
    CallEventBatchSink,
    CallEventSink,
    CallInbound,
    CallRinging,
    CallTransferred,
    EndReason,
    MediaGone,
)
from telephony.outcomes import CallEndTracker, CallOutcome
from wire.brief import MEDIA_EXPECT_TTL_S, media_expect_key, media_seen_key, reply_channel

logger = logging.getLogger(__name__)

OUTGOING_APP = "AppDial2"  # the dialplan "app" of a channel created by originate/dial
BRIDGE_PREFIX = "bridge-"
MEDIA_PREFIX = "media-"  # an AudioSocket leg: media-<call id>~<try>
MEDIA_TRY_SEP = "~"  # in neither a UUID nor an Asterisk uniqueid
TRANSFER_PREFIX = "xfer-"  # the human leg of a transfer: xfer-<call id>
TRANSFER_ASTERISK_MARGIN_S = 2  # Asterisk's originate timeout of a human leg exceeds ours by this much
MEDIA_SHORT_LIFE_S = 3.0  # a media leg gone this soon after joining its bridge left the agent hardly heard
HEARTBEAT_SLACK_S = 0.5  # how late a heartbeat may be written (a busy loop): see _gap_start
INBOUND_PLAYBACK_PREFIX = "inbound-"  # the playback of the message an unrouted inbound caller hears
INBOUND_HANGUP_AFTER_S = 20.0  # hang up an unrouted inbound call after this long, message finished or not


def command_key(pbx_id: int | str) -> str:
    """The Redis list the media worker RPUSHes call actions to for the calls of PBX row ``pbx_id``."""
    return f"stasis:commands:{pbx_id}"


def _now() -> datetime:
    return datetime.now(UTC)


def media_owner(channel_id: str) -> str | None:
    """The call id an AudioSocket leg's channel id (``media-<call id>~<try>``) belongs to, else None."""
    if not channel_id.startswith(MEDIA_PREFIX):
        return None
    owner, sep, _ = channel_id.removeprefix(MEDIA_PREFIX).rpartition(MEDIA_TRY_SEP)
    return owner if sep and owner else None


def _seg(value: str) -> str:
    return quote(value, safe="")


def _channel_of(event: Mapping[str, Any], key: str = "channel") -> dict[str, Any] | None:
    obj = event.get(key)
    return obj if isinstance(obj, dict) else None


def _stasis_args(channel: Mapping[str, Any], app: str) -> list[str] | None:
    """The Stasis args of a channel (from its dialplan snapshot) if it is inside ``app``, else None."""
    dialplan = channel.get("dialplan")
    if not isinstance(dialplan, Mapping) or dialplan.get("app_name") != "Stasis":
        return None
    parts = str(dialplan.get("app_data") or "").split(",")
    if parts[0] != app:
        return None
    return parts[1:]


#: The ARI event types the app acts on (``_on_event``, the outcome tracker, ``ApplicationReplaced``).
HANDLED_EVENTS = frozenset(
    {
        "ApplicationReplaced",
        "ChannelDestroyed",
        "ChannelDtmfReceived",
        "ChannelHangupRequest",
        "ChannelStateChange",
        "Dial",
        "PlaybackFinished",
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


@dataclass(frozen=True)
class StasisConfig:
    """How to reach one PBX's ARI and how to run calls on it."""

    base_url: str  # http://host:8088 (plus the http.conf prefix), without /ari and without credentials
    user: str
    password: str = field(repr=False)
    app: str = "ai_agent"
    media_hosts: tuple[str, ...] = ("127.0.0.1:9092",)
    media_format: str = "slin24"
    max_call_duration_s: float = 3600.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 5.0  # externalMedia connects inside the request: up to 2 s per address
    heartbeat_s: float = 10.0
    end_grace_s: float = 5.0  # after our own hangup, how long to wait for ChannelDestroyed before reporting
    delivery_concurrency: int = 64  # calls whose events are being handed to the sink at the same time
    redis_url: str | None = field(default=None, repr=False)  # call actions come from here; None: no commands
    command_keys: tuple[str, ...] = ()  # the lists to BLPOP (command_key(pbx id) for each PBX row served)
    command_poll_s: float = 1.0  # the BLPOP timeout: how soon stop() is noticed by the command consumer
    transfer_timeout_s: float = 30.0  # when a transfer command gives none
    # The PBX rows this app serves: its heartbeat (telephony.health) says they can take calls.
    pbx_ids: tuple[str, ...] = ()
    # How long the AudioSocket leg may take to enter the app after externalMedia answered (module docstring).
    media_start_timeout_s: float = 5.0
    # What an inbound caller hears while inbound calls are not routed yet (an Asterisk sound URI).
    inbound_message: str = "sound:ss-noservice"
    # How host names of the PBX are resolved (None: aiohttp's default). A tenant's own PBX gets one that
    # refuses addresses outside the URL policy (the caller provides it: telephony knows no tenants).
    resolver: AbstractResolver | None = field(default=None, repr=False, compare=False)


@dataclass
class _Call:
    call_id: str
    channel_id: str
    inbound: bool
    tracker: CallEndTracker
    answered: bool = False
    rang: bool = False
    bridge_id: str | None = None
    media_id: str | None = None
    media_uuid: str | None = None
    ended: bool = False
    tearing_down: bool = False  # we are hanging the media leg up ourselves
    end_reason: EndReason | None = None  # set when the app itself hangs the call up for a reason
    timer: asyncio.TimerHandle | None = None
    transfer: _Transfer | None = None  # the transfer to a human pending or done
    media_failed: bool = False  # answered, and its media could not be set up: ends as media_failed
    bridged_at: float | None = None  # (monotonic) when its media leg was put in its bridge (CallBridged)
    setting_up_media: bool = False


@dataclass
class _Transfer:
    """The human leg of a transfer. ``state``: ``dialing`` (originated, not answered), ``cancelling`` (we hang
    it up: not answered in time), ``bridging`` (answered, being put in the bridge), ``bridged``, ``done``."""

    call_id: str
    channel_id: str
    number: str
    tracker: CallEndTracker
    state: str = "dialing"
    gone: bool = False  # the human leg ended while being bridged
    fail_reason: str | None = None  # why we gave up on it ourselves (reported when its end is seen)
    timer: asyncio.TimerHandle | None = None


class StasisApp:
    """The Stasis app of one PBX. ``await run()`` until ``stop()``; see the module docstring."""

    def __init__(
        self, config: StasisConfig, sink: CallEventSink, *, rng: random.Random | None = None
    ) -> None:
        if not config.media_hosts:
            raise ValueError("StasisConfig.media_hosts must name at least one host:port")
        if config.delivery_concurrency < 1:
            raise ValueError("StasisConfig.delivery_concurrency must be at least 1")
        if config.redis_url and not config.command_keys:
            raise ValueError("StasisConfig.command_keys must name at least one list when redis_url is set")
        self.config = config
        self.sink = sink
        self.connected = asyncio.Event()  # set while connected and reconciled (tests, health checks)
        self.connections = 0  # successful (re)connects so far
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._hosts = itertools.cycle(config.media_hosts)
        self._calls: dict[str, _Call] = {}  # by the caller's channel id (= call id)
        self._media: dict[str, str] = {}  # media channel id -> call id
        self._media_started: dict[str, asyncio.Future[bool]] = {}  # media channel id -> its StasisStart
        self._last_listening: float | None = None  # when this process's last connection went (epoch s)
        self._gap_started_at: datetime | None = None  # for the ends the current reconciliation reports
        self._playbacks: dict[str, asyncio.Future[None]] = {}  # inbound message playback id -> finished
        self._transfers: dict[str, _Transfer] = {}  # human leg channel id (xfer-<call id>) -> its transfer
        self._redis: aioredis.Redis | None = None  # commands and replies (while run() runs)
        self._stopping = asyncio.Event()
        self._queue: asyncio.Queue[CallEvent] = asyncio.Queue()  # emitted, not yet in a lane
        self._lanes: dict[str, collections.deque[CallEvent]] = {}  # call id -> its events not yet handed over
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._lanes_running = 0  # lanes whose task runs: at most delivery_concurrency
        self._lanes_waiting: collections.deque[str] = collections.deque()  # call ids whose lane waits to run
        self._handle_many = sink.handle_many if isinstance(sink, CallEventBatchSink) else None
        self._undelivered = 0  # emitted and not yet handled by the sink
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._base = config.base_url.rstrip("/")
        self._request_timeout = aiohttp.ClientTimeout(total=config.request_timeout_s)

    # ------------------------------------------------------------------------------------- lifecycle
    async def run(self) -> None:
        """Connect, reconcile, handle events; reconnect with backoff; until :meth:`stop`."""
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.config.connect_timeout_s, sock_connect=self.config.connect_timeout_s
        )
        auth = aiohttp.encode_basic_auth(self.config.user, self.config.password)
        connector = aiohttp.TCPConnector(resolver=self.config.resolver) if self.config.resolver else None
        self._session = aiohttp.ClientSession(
            timeout=timeout, headers={"Authorization": auth}, connector=connector
        )
        loop = asyncio.get_running_loop()
        delivery = loop.create_task(self._deliver())
        commands: asyncio.Task[None] | None = None
        if self.config.redis_url:
            self._redis = aioredis.Redis.from_url(
                self.config.redis_url,
                socket_connect_timeout=self.config.connect_timeout_s,
                socket_timeout=self.config.command_poll_s + self.config.request_timeout_s,
                retry=Retry(NoBackoff(), 1),  # one retry on a fresh connection; the backoff is ours
            )
            commands = loop.create_task(self._consume_commands(self._redis))
            if self.config.pbx_ids:
                self._spawn(self._heartbeat(self._redis))
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    connected = await self._connect_once()
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    logger.warning("stasis %s: events connection failed: %r", self.config.app, exc)
                    connected = False
                except Exception:  # e.g. the sink's database is down during reconciliation: retry, logged
                    logger.exception("stasis %s: connect/reconcile failed", self.config.app)
                    connected = False
                failures = 0 if connected else failures + 1
                if self._stopping.is_set():
                    break
                delay = self._backoff(failures)
                logger.info("stasis %s: reconnecting in %.2fs", self.config.app, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            self._stopping.set()
            self.connected.clear()
            if self._redis is not None and self.config.pbx_ids:
                await self._announce_gone()
            if commands is not None:  # it sees _stopping within one BLPOP timeout
                await asyncio.wait({commands}, timeout=self.config.command_poll_s + 1.0)
                commands.cancel()
                await asyncio.gather(commands, return_exceptions=True)
            for call in self._calls.values():
                if call.timer is not None:
                    call.timer.cancel()
            for xfer in self._transfers.values():
                if xfer.timer is not None:
                    xfer.timer.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), 5.0)  # hand over what we know
            delivery.cancel()
            for lane in list(self._lane_tasks):
                lane.cancel()
            await asyncio.gather(delivery, *self._lane_tasks, return_exceptions=True)
            await self._session.close()
            if self._redis is not None:
                await self._redis.aclose()
                self._redis = None
            logger.info("stasis %s: stopped", self.config.app)

    def stop(self) -> None:
        self._stopping.set()
        if self._ws is not None:
            asyncio.get_running_loop().create_task(self._ws.close())

    def _backoff(self, failures: int) -> float:
        """Jittered exponential backoff: the first retry after a working connection waits ~initial."""
        base = min(self.config.backoff_max_s, self.config.backoff_initial_s * (2 ** min(failures, 20)))
        return base * self._rng.uniform(0.5, 1.0)

    async def _connect_once(self) -> bool:
        """One connection: returns True if it got as far as reconciling (so backoff starts over)."""
        assert self._session is not None  # noqa: S101
        url = self._base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ari/events"
        ws = await self._session.ws_connect(
            url, params={"app": self.config.app}, protocols=("ari",), heartbeat=self.config.heartbeat_s
        )
        self._ws = ws
        try:
            # Events arriving meanwhile wait in the websocket's buffer: reconcile first (pitfall 9).
            self._gap_started_at = await self._gap_start()
            await self._reconcile()
            self.connections += 1
            self.connected.set()
            if self._redis is not None and self.config.pbx_ids:
                self._spawn(self._announce())  # at once: dispatch may place calls here again
            logger.info("stasis %s: connected and reconciled", self.config.app)
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    if not self._on_text(msg.data):
                        break
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    logger.warning("stasis %s: websocket error: %r", self.config.app, ws.exception())
                    break
            if not self._stopping.is_set():
                logger.warning("stasis %s: events websocket closed (code %s)", self.config.app, ws.close_code)
            return True
        finally:
            if self.connected.is_set():
                self._last_listening = time.time()
            self.connected.clear()
            self._ws = None
            if self._redis is not None and self.config.pbx_ids and not self._stopping.is_set():
                self._spawn(self._announce_gone())  # at once: no call may be placed here now (A11)
            await ws.close()

    def _on_text(self, data: str) -> bool:
        """One text frame of the events websocket; False when the connection must be given up.

        Most ARI events of a call change nothing here (variables, caller id, dialplan steps, bridge
        membership, ...): those are recognised from their text and dropped before JSON decoding, the
        largest cost per event (see :func:`_ignorable`)."""
        if _ignorable(data):
            return True
        try:
            event = json.loads(data)
        except ValueError:
            logger.warning("stasis %s: not JSON: %.200r", self.config.app, data)
            return True
        if not isinstance(event, dict):
            return True
        if event.get("type") == "ApplicationReplaced":
            logger.error(
                "stasis %s: another connection took the app (ApplicationReplaced); reconnecting",
                self.config.app,
            )
            return False
        try:
            self._on_event(event)
        except Exception:  # one malformed event must not drop the connection; logged
            logger.exception("stasis %s: failed to handle %.300r", self.config.app, event)
        return True

    # --------------------------------------------------------------------------------------- health
    async def _heartbeat(self, client: aioredis.Redis) -> None:
        """Refresh the app's heartbeat (telephony.health) every HEARTBEAT_S while connected."""
        failures = 0
        while not self._stopping.is_set():
            if self.connected.is_set():
                try:
                    await health.stasis_heartbeat(client, self.config.pbx_ids)
                    failures = 0
                except (RedisError, OSError) as exc:
                    failures += 1
                    if failures == 1 or failures % 60 == 0:
                        logger.warning("stasis %s: heartbeat not written: %r", self.config.app, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), health.HEARTBEAT_S)

    async def _announce(self) -> None:
        assert self._redis is not None  # noqa: S101 - the caller checked
        try:
            await health.stasis_heartbeat(self._redis, self.config.pbx_ids)
        except (RedisError, OSError) as exc:
            logger.warning("stasis %s: heartbeat not written: %r", self.config.app, exc)

    async def _announce_gone(self) -> None:
        assert self._redis is not None  # noqa: S101 - the caller checked
        try:
            await health.stasis_gone(self._redis, self.config.pbx_ids)
        except (RedisError, OSError) as exc:  # the heartbeat expires by itself within its TTL
            logger.warning("stasis %s: could not mark the app gone: %r", self.config.app, exc)

    async def _gap_start(self) -> datetime | None:
        """From when the app was surely not listening before this connection: when this process's last
        connection went, else (a restart) a heartbeat period after the last heartbeat any process of this
        app wrote (a killed process died within that period; a call placed just before it died was placed
        while it listened). None when nobody knows."""
        if self._last_listening is not None:
            return datetime.fromtimestamp(self._last_listening, UTC)
        seen = None
        if self._redis is not None and self.config.pbx_ids:
            try:
                seen = await health.stasis_last_seen(self._redis, self.config.pbx_ids)
            except (RedisError, OSError) as exc:
                logger.warning("stasis %s: last heartbeat unknown: %r", self.config.app, exc)
        if seen is None:
            return None
        margin = 0.0 if seen.exact else health.HEARTBEAT_S + HEARTBEAT_SLACK_S
        return datetime.fromtimestamp(seen.at + margin, UTC)

    # ----------------------------------------------------------------------------------------- REST
    async def _rest(
        self, method: str, path: str, params: Mapping[str, str] | None = None, *, body: bool = False
    ) -> tuple[int | None, Any]:
        """One ARI request: (status, JSON body or None); status None when no response came (logged). The
        body is decoded when asked for (``body``) or when the status is an error (for the log)."""
        assert self._session is not None  # noqa: S101
        try:
            async with self._session.request(
                method, f"{self._base}/ari{path}", params=params, timeout=self._request_timeout
            ) as resp:
                raw = await resp.read()  # to the end, so the connection is kept
                status = resp.status
                if not raw or not (body or status >= 300):
                    return status, None
                try:
                    return status, json.loads(raw)
                except ValueError:
                    return status, None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            logger.warning("stasis %s: ARI %s %s failed: %r", self.config.app, method, path, exc)
            return None, None

    async def _hangup(self, channel_id: str, reason: str = "normal") -> bool:
        """DELETE the channel; True if it existed (204) — False when already gone or unreachable."""
        status, _ = await self._rest("DELETE", f"/channels/{_seg(channel_id)}", {"reason": reason})
        if status not in (200, 204, 404):
            logger.warning("stasis %s: hangup %s answered %s", self.config.app, channel_id, status)
        return status in (200, 204)

    async def _destroy_bridge(self, bridge_id: str) -> None:
        status, _ = await self._rest("DELETE", f"/bridges/{_seg(bridge_id)}")
        if status not in (200, 204, 404):
            logger.warning("stasis %s: destroy bridge %s answered %s", self.config.app, bridge_id, status)

    # ------------------------------------------------------------------------------------- delivery
    def _emit(self, event: CallEvent) -> None:
        self._undelivered += 1
        self._queue.put_nowait(event)

    @property
    def backlog(self) -> int:
        """Call events emitted and not yet handled by the sink (queued, waiting in a lane, or in hand)."""
        return self._undelivered

    async def _deliver(self) -> None:
        """Each event joins its call's lane. A new lane runs at once when fewer than ``delivery_concurrency``
        do, else it waits its turn (first come, first served) while its call's events gather in it."""
        while True:
            event = await self._queue.get()
            lane = self._lanes.get(event.call_id)
            if lane is not None:
                lane.append(event)  # delivered by the lane's task after the events before it
                continue
            self._lanes[event.call_id] = collections.deque((event,))
            if self._lanes_running < self.config.delivery_concurrency:
                self._lanes_running += 1
                self._start_lane(event.call_id)
            else:
                self._lanes_waiting.append(event.call_id)

    def _start_lane(self, call_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run_lane(call_id, self._lanes[call_id]))
        self._lane_tasks.add(task)
        task.add_done_callback(self._lane_tasks.discard)

    async def _run_lane(self, call_id: str, lane: collections.deque[CallEvent]) -> None:
        """Hand one call's events to the sink in order until its lane is empty: one at a time, or, when
        several are waiting and the sink takes them (``handle_many``), all of them at once."""
        try:
            while lane:
                if self._handle_many is not None and len(lane) > 1:
                    events = list(lane)
                    lane.clear()
                    await self._hand_over_many(self._handle_many, events)
                    continue
                event = lane.popleft()
                try:
                    await self.sink.handle(event)
                except Exception:  # the sink's failure must not stop the app; it is logged with the event
                    logger.exception("stasis %s: sink failed on %r", self.config.app, event)
                finally:
                    self._undelivered -= 1
                    self._queue.task_done()
        finally:
            # No await between the last emptiness check and here: an event for this call that arrives later
            # finds no lane and starts a new one, after this one's events were all handed over.
            del self._lanes[call_id]
            if self._lanes_waiting:  # this lane's turn passes to the call that waited longest
                self._start_lane(self._lanes_waiting.popleft())
            else:
                self._lanes_running -= 1

    async def _hand_over_many(
        self,
        handle_many: Callable[[Sequence[CallEvent]], Awaitable[Sequence[BaseException | None]]],
        events: list[CallEvent],
    ) -> None:
        try:
            errors: Sequence[BaseException | None] = await handle_many(events)
        except Exception:  # the sink's failure must not stop the app; it is logged with the events
            logger.exception("stasis %s: sink failed on %r", self.config.app, events)
            errors = ()
        finally:
            self._undelivered -= len(events)
            for _ in events:
                self._queue.task_done()
        for event, error in zip(events, errors, strict=False):
            if error is not None:
                logger.error("stasis %s: sink failed on %r", self.config.app, event, exc_info=error)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("stasis %s: task failed", self.config.app, exc_info=task.exception())

    # --------------------------------------------------------------------------------------- events
    def _track(self, channel_id: str, *, inbound: bool = False) -> _Call:
        call = self._calls.get(channel_id)
        if call is None:
            call = _Call(
                call_id=channel_id,
                channel_id=channel_id,
                inbound=inbound,
                tracker=CallEndTracker(channel_id, ends_on_stasis_end=inbound),
            )
            self._calls[channel_id] = call
            loop = asyncio.get_running_loop()
            call.timer = loop.call_later(self.config.max_call_duration_s, self._max_duration, call)
        return call

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "PlaybackFinished":
            playback = event.get("playback")
            playback_id = playback.get("id") if isinstance(playback, dict) else None
            finished = self._playbacks.get(playback_id) if isinstance(playback_id, str) else None
            if finished is not None and not finished.done():
                finished.set_result(None)
            return
        channel = _channel_of(event)
        channel_id = channel.get("id") if channel else None
        if kind == "Dial":
            peer = _channel_of(event, "peer")
            if peer and isinstance(peer.get("id"), str) and peer["id"].startswith(TRANSFER_PREFIX):
                self._on_transfer_event(kind, peer["id"], event)
                return
            if peer and isinstance(peer.get("id"), str) and event.get("caller") is None:
                if peer["id"] not in self._media:
                    self._track(peer["id"])
            peer_id = peer.get("id") if peer else None
            call = self._calls.get(peer_id) if isinstance(peer_id, str) else None
            if call is not None:
                call.tracker.feed(event)
                if str(event.get("dialstatus") or "").upper() == "RINGING" and not call.rang:
                    call.rang = True
                    self._emit(CallRinging(call.call_id, _now()))
            return
        if not isinstance(channel_id, str) or channel is None:
            return
        if channel_id.startswith(TRANSFER_PREFIX):  # a human leg (or its Local ;2 half): never a call
            self._on_transfer_event(kind, channel_id, event)
            return
        if channel_id in self._media:
            self._on_media_event(kind, channel_id)
            return
        if channel_id.startswith(MEDIA_PREFIX):
            return  # a media leg nobody waits for any more (given up on, or of a call that is gone)
        if kind == "StasisStart":
            self._on_stasis_start(event, channel)
            return
        call = self._calls.get(channel_id)
        if call is None and kind == "ChannelDestroyed" and not channel_id.startswith(MEDIA_PREFIX):
            # (A media leg's end arrives after its teardown forgot it: not a call.)
            dialplan = channel.get("dialplan")
            if isinstance(dialplan, Mapping) and dialplan.get("app_name") == OUTGOING_APP:
                call = self._track(channel_id)  # an originated channel we had not heard of (A3 rejected)
        if call is None or call.ended:
            return
        call.tracker.feed(event)
        if kind == "ChannelDtmfReceived":
            digit = event.get("digit")
            if isinstance(digit, str):
                self._emit(CallDtmf(call.call_id, digit, _now()))
        elif kind == "ChannelStateChange" and channel.get("state") == "Ringing" and not call.rang:
            call.rang = True
            self._emit(CallRinging(call.call_id, _now()))
        elif call.tracker.ended:
            reason: EndReason = call.end_reason or ("stasis_end" if call.inbound else "destroyed")
            self._end(call, reason)

    def _on_stasis_start(self, event: Mapping[str, Any], channel: Mapping[str, Any]) -> None:
        channel_id = str(channel["id"])
        raw_args = event.get("args")
        args = [str(a) for a in raw_args] if isinstance(raw_args, list) else []
        role = args[0] if args else ""
        if role not in ("outbound", "inbound"):
            # Something we did not create (human legs, xfer-..., are routed before): not ours to run.
            logger.info("stasis %s: ignoring StasisStart of %s args=%s", self.config.app, channel_id, args)
            return
        call = self._track(channel_id, inbound=role == "inbound")
        if call.ended or call.answered:
            return
        call.tracker.feed(event)
        call.answered = True
        if call.inbound:
            caller = channel.get("caller")
            caller = caller if isinstance(caller, Mapping) else {}
            dialplan = channel.get("dialplan")
            exten = dialplan.get("exten") if isinstance(dialplan, Mapping) else ""
            did = args[1] if len(args) > 1 and args[1] else str(exten or "")
            self._emit(
                CallInbound(
                    call_id=call.call_id,
                    did=did[:64],
                    caller_number=str(caller.get("number") or "")[:64],
                    caller_name=str(caller.get("name") or "")[:200],
                    at=_now(),
                    message=self.config.inbound_message,
                )
            )
            self._spawn(self._inbound_unrouted(call))
            return
        self._emit(CallAnswered(call.call_id, channel_id, _now()))
        self._spawn(self._setup_media(call))

    def _on_media_event(self, kind: Any, media_id: str) -> None:
        started = self._media_started.get(media_id)
        if kind == "StasisStart":
            if started is not None and not started.done():
                started.set_result(True)
            return
        if kind not in ("StasisEnd", "ChannelDestroyed"):
            return
        if started is not None:  # gone before it entered the app: the leg's opener tries another host
            if not started.done():
                started.set_result(False)
            return
        call_id = self._media.pop(media_id, None)
        call = self._calls.get(call_id) if call_id else None
        if call is None or call.ended or call.tearing_down:
            return
        # A9 the other way round: the media worker went first. Don't leave the caller in silence.
        logger.warning(
            "stasis %s: media leg %s of call %s ended first", self.config.app, media_id, call.call_id
        )
        call.media_id = None
        self._emit(MediaGone(call.call_id, _now()))
        bridged_for = None if call.bridged_at is None else time.monotonic() - call.bridged_at
        self._spawn(self._media_went_first(call, bridged_for=bridged_for))

    async def _media_went_first(self, call: _Call, *, bridged_for: float | None) -> None:
        """Hang the caller up. A call whose agent was never heard is media_failed, not a success: its leg
        never made it into the bridge, or the media worker's mark says the agent never spoke (it refused the
        leg, or died first). When the mark cannot be read (Redis down), a leg that went within
        MEDIA_SHORT_LIFE_S of joining the bridge counts as never heard (the agent had hardly begun); a
        longer one stays answered (a call that talked must never be redialed on a guess)."""
        if call.transfer is None:
            spoke = await self._agent_spoke(call.call_id) if bridged_for is not None else False
            short = bridged_for is not None and bridged_for < MEDIA_SHORT_LIFE_S
            if spoke is False or (spoke is None and short):
                call.media_failed = True
        await self._hangup(call.channel_id)

    def _end(self, call: _Call, reason: EndReason) -> None:
        """Report the call's end once, and clean up its media leg and bridge (A9)."""
        if call.ended:
            return
        call.ended = True
        if call.timer is not None:
            call.timer.cancel()
        self._calls.pop(call.channel_id, None)
        tracker = call.tracker
        outcome = tracker.outcome()
        if call.media_failed:
            outcome = CallOutcome.MEDIA_FAILED
        elif reason == "reconciled" and not tracker.decisive:
            outcome = CallOutcome.UNKNOWN  # never guessed (see the module docstring)
        self._emit(
            CallEnded(
                call_id=call.call_id,
                at=_now(),
                outcome=outcome,
                cause=tracker.cause,
                cause_txt=tracker.destroyed_cause_txt,
                dialstatus=tracker.dialstatus,
                tech_cause=tracker.tech_cause,
                answered=tracker.answered,
                reason=reason,
                gap_started_at=self._gap_started_at if reason == "reconciled" else None,
            )
        )
        self._spawn(self._teardown(call))

    async def _teardown(self, call: _Call) -> None:
        call.tearing_down = True
        xfer = call.transfer
        if xfer is not None and xfer.state != "done":
            # The caller went: the human leg goes too (answered or still ringing).
            pending = xfer.state in ("dialing", "cancelling")
            self._transfer_done(xfer)
            if pending:
                self._reply(xfer.call_id, {"event": "transfer", "status": "failed", "reason": "call_ended"})
            await self._hangup(xfer.channel_id)
        if call.media_id is not None:
            media_id = call.media_id
            await self._hangup(media_id)
            self._media.pop(media_id, None)
        if call.bridge_id is not None:
            await self._destroy_bridge(call.bridge_id)

    def _max_duration(self, call: _Call) -> None:
        if call.ended:
            return
        logger.warning(
            "stasis %s: call %s reached the maximum duration (%.0fs); hanging up",
            self.config.app,
            call.call_id,
            self.config.max_call_duration_s,
        )
        call.end_reason = "max_duration"
        self._spawn(self._hangup_for_max_duration(call))

    async def _hangup_for_max_duration(self, call: _Call) -> None:
        existed = await self._hangup(call.channel_id)
        if not existed:
            self._end(call, "max_duration")
            return
        # Normally ChannelDestroyed follows at once; do not let a lost event keep the call live.
        await asyncio.sleep(self.config.end_grace_s)
        self._end(call, "max_duration")

    # --------------------------------------------------------------------------------------- media
    async def _setup_media(self, call: _Call, bridge_members: set[str] | None = None) -> None:
        """Bridge the answered caller with a new AudioSocket leg (module docstring). ``bridge_members``: the
        call's bridge exists already with these channels (a setup resumed after a restart)."""
        call.setting_up_media = True
        try:
            await self._setup_media_once(call, bridge_members)
        finally:
            call.setting_up_media = False

    async def _setup_media_once(self, call: _Call, bridge_members: set[str] | None) -> None:
        bridge_id = f"{BRIDGE_PREFIX}{call.call_id}"
        if bridge_members is None:
            status, _ = await self._rest("POST", "/bridges", {"type": "mixing", "bridgeId": bridge_id})
            if status == 409:  # left from an earlier try (a restart of this process): reuse it
                bridge_members = await self._bridge_members(bridge_id)
            elif status == 200:
                bridge_members = set()
            if bridge_members is None:
                await self._media_failed(call, f"bridge create answered {status}")
                return
        call.bridge_id = bridge_id
        if call.ended:
            await self._destroy_bridge(bridge_id)
            return
        media_id = await self._open_media_leg(call)
        if media_id is None:
            await self._media_failed(call, "no media worker took the call")
            return
        if call.ended:
            await self._teardown(call)
            return
        joining = [c for c in (call.channel_id, media_id) if c not in bridge_members]
        status, _ = await self._rest(
            "POST", f"/bridges/{_seg(bridge_id)}/addChannel", {"channel": ",".join(joining)}
        )
        if status not in (200, 204):
            if not call.ended and not await self._channel_exists(call.channel_id):
                # The callee hung up while the media leg was being set up: not a media failure. Its end
                # arrives with its own events; only our legs go now.
                logger.info("stasis %s: call %s ended during its media set-up", self.config.app, call.call_id)
                await self._teardown(call)
                return
            await self._media_failed(call, f"addChannel answered {status}")
            return
        if call.ended or call.media_id != media_id:
            return  # (the leg went while it was being added: its end is handled as media gone first)
        call.bridged_at = time.monotonic()
        self._emit(CallBridged(call.call_id, call.media_uuid or "", _now()))

    async def _open_media_leg(self, call: _Call) -> str | None:
        """An AudioSocket leg for the call that has entered the app, on the first media host that takes
        it; its channel id, or None. Each try has its own channel id and UUID, so the events of a leg given
        up on cannot be mistaken for those of the next one."""
        loop = asyncio.get_running_loop()
        for _ in range(len(self.config.media_hosts)):
            host = next(self._hosts)
            media_id = f"{MEDIA_PREFIX}{call.call_id}{MEDIA_TRY_SEP}{uuid.uuid4().hex[:8]}"
            media_uuid = str(uuid.uuid4())
            started: asyncio.Future[bool] = loop.create_future()
            # Before the request: the leg's StasisStart may arrive before its answer.
            self._media[media_id] = call.call_id
            self._media_started[media_id] = started
            try:
                if not await self._expect_media(media_uuid, call.call_id):
                    # The media worker would refuse a leg it was not told about: do not place one.
                    self._media.pop(media_id, None)
                    continue
                status, body = await self._rest(
                    "POST",
                    "/channels/externalMedia",
                    {
                        "app": self.config.app,
                        "external_host": host,
                        "encapsulation": "audiosocket",
                        "transport": "tcp",
                        "format": self.config.media_format,
                        "data": media_uuid,
                        "channelId": media_id,
                    },
                )
                if status != 200:
                    logger.warning(
                        "stasis %s: externalMedia to %s for call %s answered %s %s",
                        self.config.app,
                        host,
                        call.call_id,
                        status,
                        body,
                    )
                    if status == 500:  # Asterisk could not connect to it: no new call for it until it says
                        self._spawn(self._media_host_down(host))
                    self._media.pop(media_id, None)
                    continue
                try:
                    entered = await asyncio.wait_for(started, self.config.media_start_timeout_s)
                except TimeoutError:
                    entered = False
                    logger.warning(
                        "stasis %s: media leg %s of call %s did not enter the app within %.1fs",
                        self.config.app,
                        media_id,
                        call.call_id,
                        self.config.media_start_timeout_s,
                    )
                if not entered:
                    self._media.pop(media_id, None)
                    await self._hangup(media_id)
                    continue
            finally:
                self._media_started.pop(media_id, None)
            if call.ended:
                self._media.pop(media_id, None)
                await self._hangup(media_id)
                return None
            call.media_id, call.media_uuid = media_id, media_uuid
            return media_id
        return None

    async def _expect_media(self, media_uuid: str, call_id: str) -> bool:
        """Tell the media workers that this UUID is the call's (they take it once; module docstring).
        False when it could not be told (Redis is down): the worker would refuse the leg."""
        if self._redis is None:
            return True  # (no Redis at all: a test's stand-in media server, which takes any UUID)
        try:
            await self._redis.set(media_expect_key(media_uuid), call_id, ex=MEDIA_EXPECT_TTL_S)
        except (RedisError, OSError) as exc:
            logger.warning("stasis %s: call %s: media leg not announced: %r", self.config.app, call_id, exc)
            return False
        return True

    async def _media_host_down(self, host: str) -> None:
        """Asterisk could not reach this media worker: take it off the health set at once (its own
        heartbeat puts it back within a second if it is alive), so that dispatch does not keep placing
        calls for its heartbeat's remaining life that end as media_failed."""
        if self._redis is None:
            return
        try:
            await health.media_worker_gone(self._redis, host)
        except (RedisError, OSError) as exc:
            logger.warning("stasis %s: media worker %s not marked down: %r", self.config.app, host, exc)

    async def _agent_spoke(self, call_id: str) -> bool | None:
        """Whether the media worker recorded that the call's agent was heard (its ``media:seen`` mark);
        None when Redis cannot tell."""
        if self._redis is None:
            return None
        try:
            return bool(await self._redis.hexists(media_seen_key(call_id), "agent_audio"))
        except (RedisError, OSError):
            return None

    async def _channel_exists(self, channel_id: str) -> bool:
        """False only when the PBX says the channel is gone (404); unknown counts as there."""
        status, _ = await self._rest("GET", f"/channels/{_seg(channel_id)}")
        return status != 404

    async def _bridge_members(self, bridge_id: str) -> set[str] | None:
        status, bridge = await self._rest("GET", f"/bridges/{_seg(bridge_id)}", body=True)
        if status != 200 or not isinstance(bridge, dict):
            return None
        return {c for c in bridge.get("channels") or () if isinstance(c, str)}

    async def _media_failed(self, call: _Call, why: str) -> None:
        if call.ended:
            await self._teardown(call)
            return
        logger.error("stasis %s: call %s has no media (%s); hanging up", self.config.app, call.call_id, why)
        call.media_failed = True
        self._emit(MediaGone(call.call_id, _now()))
        await self._hangup(call.channel_id)
        await self._teardown(call)

    # ------------------------------------------------------------------------------------- inbound
    async def _inbound_unrouted(self, call: _Call) -> None:
        """Answer, play the message, hang up (module docstring); the end follows on StasisEnd."""
        channel = _seg(call.channel_id)
        status, _ = await self._rest("POST", f"/channels/{channel}/answer")
        if status not in (200, 204):
            logger.warning("stasis %s: answer %s answered %s", self.config.app, call.channel_id, status)
        playback_id = f"{INBOUND_PLAYBACK_PREFIX}{call.call_id}"
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._playbacks[playback_id] = finished
        try:
            status, _ = await self._rest(
                "POST",
                f"/channels/{channel}/play/{_seg(playback_id)}",
                {"media": self.config.inbound_message},
            )
            if status in (200, 201) and not call.ended:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished, INBOUND_HANGUP_AFTER_S)
        finally:
            self._playbacks.pop(playback_id, None)
        if not call.ended:
            logger.info("stasis %s: inbound call %s is not routed; hung up", self.config.app, call.call_id)
            await self._hangup(call.channel_id)

    # ------------------------------------------------------------------------------------ commands
    async def _consume_commands(self, client: aioredis.Redis) -> None:
        """BLPOP call actions until :meth:`stop`; Redis errors are logged and retried with backoff."""
        keys = list(self.config.command_keys)
        failures = 0
        while not self._stopping.is_set():
            try:
                item = await client.blpop(keys, timeout=self.config.command_poll_s)
            except (RedisError, OSError) as exc:
                failures += 1
                delay = self._backoff(failures)
                if failures == 1 or failures % 20 == 0:  # one line per outage, then a reminder now and then
                    logger.warning(
                        "stasis %s: command queue unavailable (%r); retrying in %.2fs",
                        self.config.app,
                        exc,
                        delay,
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                continue
            if failures:
                logger.info("stasis %s: command queue reachable again", self.config.app)
                failures = 0
            if item is None:
                continue
            try:
                self._on_command(item[1])
            except Exception:  # one bad command must not stop the consumer; logged
                logger.exception("stasis %s: failed to handle command %.300r", self.config.app, item[1])

    def _on_command(self, raw: bytes | str) -> None:
        """One call action (module docstring): dispatched to a task so the consumer keeps reading."""
        try:
            command = json.loads(raw)
        except ValueError:
            logger.warning("stasis %s: dropping malformed command %.200r", self.config.app, raw)
            return
        if not isinstance(command, dict):
            logger.warning("stasis %s: dropping malformed command %.200r", self.config.app, raw)
            return
        action, call_id = command.get("action"), command.get("call_id")
        if action not in ("hangup", "transfer") or not isinstance(call_id, str) or not call_id:
            logger.warning("stasis %s: dropping unknown command %.200r", self.config.app, command)
            return
        call = self._calls.get(call_id)
        if call is None or call.ended:
            logger.warning(
                "stasis %s: dropping %s command for call %s: no such call here",
                self.config.app,
                action,
                call_id,
            )
            return
        if action == "hangup":
            logger.info(
                "stasis %s: hanging up call %s on request (%.100s)",
                self.config.app,
                call_id,
                command.get("reason") or "no reason given",
            )
            self._spawn(self._hangup_on_request(call))
        else:
            self._on_transfer_command(call, command)

    async def _hangup_on_request(self, call: _Call) -> None:
        status, _ = await self._rest("DELETE", f"/channels/{_seg(call.channel_id)}", {"reason": "normal"})
        if status == 404 and not call.ended:  # gone already and its end never reached us
            self._end(call, "stasis_end" if call.inbound else "destroyed")
        elif status not in (200, 204, 404):
            logger.warning("stasis %s: hangup of call %s answered %s", self.config.app, call.call_id, status)

    def _reply(self, call_id: str, payload: Mapping[str, Any]) -> None:
        self._spawn(self._publish(call_id, payload))

    async def _publish(self, call_id: str, payload: Mapping[str, Any]) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.publish(reply_channel(call_id), json.dumps(payload))
        except (RedisError, OSError) as exc:
            logger.warning(
                "stasis %s: could not publish %s for call %s: %r", self.config.app, payload, call_id, exc
            )

    # ------------------------------------------------------------------------------------ transfers
    def _on_transfer_command(self, call: _Call, command: Mapping[str, Any]) -> None:
        def failed(reason: str) -> None:
            self._reply(call.call_id, {"event": "transfer", "status": "failed", "reason": reason})

        if call.transfer is not None and call.transfer.state != "done":
            logger.info(
                "stasis %s: call %s: refusing a transfer (one is %s)",
                self.config.app,
                call.call_id,
                call.transfer.state,
            )
            failed("already_transferred" if call.transfer.state == "bridged" else "transfer_in_progress")
            return
        number, endpoint = command.get("number"), command.get("endpoint")
        caller_id = command.get("caller_id")
        timeout_s = command.get("timeout_s", self.config.transfer_timeout_s)
        if (
            not isinstance(number, str)
            or not isinstance(endpoint, str)
            or not endpoint
            or not (caller_id is None or isinstance(caller_id, str))
            or isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not 0 < timeout_s <= 600
        ):
            logger.warning("stasis %s: unusable transfer command %.300r", self.config.app, command)
            failed("invalid")
            return
        if not call.answered or call.bridge_id is None or call.media_id is None:
            logger.warning("stasis %s: call %s is not bridged: no transfer", self.config.app, call.call_id)
            failed("not_bridged")
            return
        if not self.connected.is_set():  # A11: the human leg's StasisStart would never reach us
            failed("pbx_unavailable")
            return
        channel_id = f"{TRANSFER_PREFIX}{call.call_id}"
        xfer = _Transfer(call.call_id, channel_id, number, CallEndTracker(channel_id))
        call.transfer = xfer
        self._transfers[channel_id] = xfer  # before the originate: its events may come before the response
        xfer.timer = asyncio.get_running_loop().call_later(float(timeout_s), self._transfer_timeout, xfer)
        logger.info(
            "stasis %s: call %s: transferring to %s via %s", self.config.app, call.call_id, number, endpoint
        )
        params = {
            "endpoint": endpoint,
            "app": self.config.app,
            "appArgs": f"transfer,{call.call_id}",
            "channelId": channel_id,
            "timeout": str(math.ceil(timeout_s) + TRANSFER_ASTERISK_MARGIN_S),
            "originator": call.channel_id,
        }
        if caller_id:
            params["callerId"] = caller_id
        self._spawn(self._originate_transfer(xfer, params))

    async def _originate_transfer(self, xfer: _Transfer, params: Mapping[str, str]) -> None:
        status, body = await self._rest("POST", "/channels", params)
        if status == 200:
            return
        logger.warning(
            "stasis %s: call %s: originating the transfer leg answered %s %s",
            self.config.app,
            xfer.call_id,
            status,
            body,
        )
        if status is None:  # no answer: it may have been placed all the same
            xfer.state = "cancelling"
            await self._hangup(xfer.channel_id)
        self._transfer_failed(xfer, "failed")

    def _on_transfer_event(self, kind: Any, channel_id: str, event: Mapping[str, Any]) -> None:
        xfer = self._transfers.get(channel_id)
        if xfer is None:
            if kind == "StasisStart":  # a human leg nobody waits for (its call ended, or before a restart)
                logger.info("stasis %s: hanging up unexpected transfer leg %s", self.config.app, channel_id)
                self._spawn(self._hangup(channel_id))
            return
        xfer.tracker.feed(event)
        if kind == "StasisStart":
            if xfer.state == "dialing":
                xfer.state = "bridging"
                if xfer.timer is not None:
                    xfer.timer.cancel()
                self._spawn(self._bridge_transfer(xfer))
        elif kind in ("StasisEnd", "ChannelDestroyed"):
            self._transfer_leg_gone(xfer, kind)

    def _transfer_leg_gone(self, xfer: _Transfer, kind: str) -> None:
        if xfer.state in ("dialing", "cancelling"):
            if kind == "ChannelDestroyed":
                reason = xfer.fail_reason or xfer.tracker.outcome().value
                logger.info(
                    "stasis %s: call %s: transfer to %s failed (%s)",
                    self.config.app,
                    xfer.call_id,
                    xfer.number,
                    reason,
                )
                self._transfer_failed(xfer, reason)
        elif xfer.state == "bridging":
            xfer.gone = True  # _bridge_transfer sees it
        elif xfer.state == "bridged":
            self._transfer_done(xfer)
            call = self._calls.get(xfer.call_id)
            if call is not None and not call.ended:
                logger.info(
                    "stasis %s: call %s: the human hung up; hanging up the caller",
                    self.config.app,
                    xfer.call_id,
                )
                self._spawn(self._hangup(call.channel_id))

    def _transfer_timeout(self, xfer: _Transfer) -> None:
        if xfer.state != "dialing":
            return
        logger.info(
            "stasis %s: call %s: %s did not answer in time", self.config.app, xfer.call_id, xfer.number
        )
        xfer.state, xfer.fail_reason = "cancelling", "timeout"
        self._spawn(self._cancel_transfer(xfer))

    async def _cancel_transfer(self, xfer: _Transfer) -> None:
        existed = await self._hangup(xfer.channel_id)
        if existed:  # its ChannelDestroyed reports the failure; do not wait forever for it
            await asyncio.sleep(self.config.end_grace_s)
        self._transfer_failed(xfer, "timeout")

    def _transfer_done(self, xfer: _Transfer) -> None:
        """Forget the human leg: its later events are ignored (a later StasisStart hangs it up)."""
        xfer.state = "done"
        if xfer.timer is not None:
            xfer.timer.cancel()
        if self._transfers.get(xfer.channel_id) is xfer:
            del self._transfers[xfer.channel_id]

    def _transfer_failed(self, xfer: _Transfer, reason: str) -> None:
        """Report a transfer that did not happen (once); the call stays as it was, with its agent."""
        if xfer.state in ("done", "bridged"):
            return
        self._transfer_done(xfer)
        call = self._calls.get(xfer.call_id)
        if call is not None and call.transfer is xfer:
            call.transfer = None
        self._reply(xfer.call_id, {"event": "transfer", "status": "failed", "reason": reason})

    async def _bridge_transfer(self, xfer: _Transfer) -> None:
        """A10: the human answered. Media leg out of the bridge, human in, media leg deleted (docstring)."""
        call = self._calls.get(xfer.call_id)
        if call is None or call.ended or call.bridge_id is None:
            self._transfer_done(xfer)
            await self._hangup(xfer.channel_id)
            return
        bridge = _seg(call.bridge_id)
        media_id = call.media_id
        if media_id is not None:
            status, _ = await self._rest("POST", f"/bridges/{bridge}/removeChannel", {"channel": media_id})
            if status not in (200, 204):
                logger.warning(
                    "stasis %s: call %s: removing the media leg answered %s",
                    self.config.app,
                    call.call_id,
                    status,
                )
        status = None
        if not xfer.gone and not call.ended:
            status, _ = await self._rest(
                "POST", f"/bridges/{bridge}/addChannel", {"channel": xfer.channel_id}
            )
        if status not in (200, 204) or xfer.gone or call.ended:
            reason = "hung_up" if xfer.gone else "call_ended" if call.ended else "failed"
            logger.warning(
                "stasis %s: call %s: could not bridge %s (%s)",
                self.config.app,
                call.call_id,
                xfer.number,
                reason,
            )
            if media_id is not None and not call.ended and call.media_id == media_id:
                await self._rest("POST", f"/bridges/{bridge}/addChannel", {"channel": media_id})
            if xfer.state != "done":  # (done: the caller's teardown took care of it)
                xfer.state, xfer.fail_reason = "cancelling", reason
                await self._hangup(xfer.channel_id)
                self._transfer_failed(xfer, reason)
            return
        # The human is with the caller: the agent's leg goes (its end is not the media worker going first).
        if media_id is not None:
            self._media.pop(media_id, None)
            if call.media_id == media_id:
                call.media_id = None
            await self._hangup(media_id)
        if xfer.state == "done" or call.ended:  # the caller went meanwhile: its teardown took care of it
            return
        xfer.state = "bridged"
        logger.info("stasis %s: call %s: transferred to %s", self.config.app, call.call_id, xfer.number)
        self._reply(call.call_id, {"event": "transfer", "status": "answered", "number": xfer.number})
        self._emit(CallTransferred(call.call_id, xfer.number, _now()))
        if xfer.gone:  # the human hung up while we were deleting the media leg
            self._transfer_leg_gone(xfer, "ChannelDestroyed")

    # ------------------------------------------------------------------------------- reconciliation
    async def _reconcile(self) -> None:
        """Close what ended while we were not listening; hang up what nobody waits for; resume what was
        left half done (module docstring)."""
        live_before = await self.sink.live_call_ids()
        status, channels = await self._rest("GET", "/channels", body=True)
        if status != 200 or not isinstance(channels, list):
            raise aiohttp.ClientError(f"GET /ari/channels answered {status}")
        by_id: dict[str, dict[str, Any]] = {
            c["id"]: c for c in channels if isinstance(c, dict) and isinstance(c.get("id"), str)
        }
        status, bridges = await self._rest("GET", "/bridges", body=True)
        if status != 200 or not isinstance(bridges, list):
            raise aiohttp.ClientError(f"GET /ari/bridges answered {status}")
        bridge_members: dict[str, set[str]] = {
            b["id"]: {c for c in b.get("channels") or () if isinstance(c, str)}
            for b in bridges
            if isinstance(b, dict) and isinstance(b.get("id"), str)
        }
        # 1. Calls that ended during the gap: the end was not seen, so the outcome is what was seen before
        # it, or unknown (_end); never a guess.
        gone = {cid for cid in self._calls if cid not in by_id} | {
            cid for cid in live_before if cid not in by_id
        }
        for call_id in sorted(gone):
            call = self._calls.get(call_id)
            if call is None:
                call = _Call(call_id, call_id, inbound=False, tracker=CallEndTracker(call_id))
            logger.info("stasis %s: call %s ended while disconnected", self.config.app, call_id)
            self._end(call, "reconciled")
        # Media legs that vanished while their call lives on (or while being set up).
        for media_id in list(self._media):
            if media_id not in by_id:
                self._on_media_event("ChannelDestroyed", media_id)
        # Human legs that vanished: a pending transfer failed, a bridged one leaves the caller alone.
        for xfer_id, xfer in list(self._transfers.items()):
            if xfer_id not in by_id:
                self._transfer_leg_gone(xfer, "ChannelDestroyed")
        live = live_before | await self.sink.live_call_ids()
        # 2. Channels in our app that nobody waits for, and adoption of live ones we do not know yet.
        human_legs: list[tuple[str, list[str] | None]] = []
        resume_media: list[tuple[_Call, set[str] | None]] = []
        for channel_id, channel in by_id.items():
            args = _stasis_args(channel, self.config.app)
            dialplan = channel.get("dialplan")
            originated = isinstance(dialplan, Mapping) and dialplan.get("app_name") == OUTGOING_APP
            if channel_id.startswith(TRANSFER_PREFIX):
                if args is not None or originated:  # (not a Local ;2 half: it goes with its ;1)
                    human_legs.append((channel_id, args))
                continue
            if channel_id.startswith(MEDIA_PREFIX):
                continue  # below, once every call is known
            if (args is not None and args[:1] == ["outbound"]) or (args is None and originated):
                if channel_id not in live:
                    logger.info("stasis %s: hanging up orphan channel %s", self.config.app, channel_id)
                    await self._hangup(channel_id)
                elif channel_id not in self._calls:
                    call = self._track(channel_id)  # after a restart of this process
                    call.answered = call.tracker.answered = args is not None
                    if args is not None:
                        needs_media, members = self._adopt_answered(call, by_id, bridge_members)
                        if needs_media:
                            resume_media.append((call, members))
            elif args is not None and args[:1] == ["inbound"] and channel_id not in self._calls:
                call = self._track(channel_id, inbound=True)
                call.answered = call.tracker.answered = True
                self._spawn(self._inbound_unrouted(call))  # the message again, then the hang-up
        # AudioSocket legs: kept when their call uses them, else hung up (an orphan, or a leg left from a
        # setup that a restart interrupted: the call gets a new one).
        for channel_id in by_id:
            if channel_id.startswith(MEDIA_PREFIX) and channel_id not in self._media:
                logger.info("stasis %s: hanging up media leg %s nobody uses", self.config.app, channel_id)
                await self._hangup(channel_id)
        for call, members in resume_media:
            logger.warning(
                "stasis %s: call %s was answered but not bridged to media; setting it up now",
                self.config.app,
                call.call_id,
            )
            self._spawn(self._setup_media(call, members))
        # Human legs: kept while their call lives (adopted after a restart of this process), else hung up.
        for channel_id, args in human_legs:
            owner_call = self._calls.get(channel_id.removeprefix(TRANSFER_PREFIX))
            if owner_call is None or owner_call.ended:
                logger.info("stasis %s: hanging up orphan transfer leg %s", self.config.app, channel_id)
                known = self._transfers.get(channel_id)
                if known is not None:
                    self._transfer_done(known)
                await self._hangup(channel_id)
            elif channel_id not in self._transfers:
                # Known by id only: the number is lost with the old process. In Stasis = answered (bridged
                # or about to be: treated as bridged); else still ringing, and Asterisk's timeout ends it.
                adopted = _Transfer(owner_call.call_id, channel_id, "", CallEndTracker(channel_id))
                adopted.state = "bridged" if args is not None else "dialing"
                adopted.tracker.answered = args is not None
                owner_call.transfer = adopted
                self._transfers[channel_id] = adopted
        # 3. Our bridges whose call is gone.
        for bridge_id in bridge_members:
            if not bridge_id.startswith(BRIDGE_PREFIX):
                continue
            owner = bridge_id.removeprefix(BRIDGE_PREFIX)
            if owner not in by_id or owner not in live:
                logger.info("stasis %s: destroying orphan bridge %s", self.config.app, bridge_id)
                await self._destroy_bridge(bridge_id)

    def _adopt_answered(
        self, call: _Call, by_id: Mapping[str, Any], bridge_members: Mapping[str, set[str]]
    ) -> tuple[bool, set[str] | None]:
        """An answered call found after a restart: its media leg and bridge are adopted when the caller is
        in the bridge with it (or with its human, after a transfer). Otherwise its media must be set up
        anew: ``(True, the bridge's members or None when there is no bridge)``."""
        bridge_id = f"{BRIDGE_PREFIX}{call.call_id}"
        members = bridge_members.get(bridge_id)
        if members is None:
            return True, None
        call.bridge_id = bridge_id
        legs = sorted(m for m in members if media_owner(m) == call.call_id and m in by_id)
        if call.channel_id in members and legs:
            call.media_id = legs[0]
            self._media[legs[0]] = call.call_id
            return False, members
        if call.channel_id in members and f"{TRANSFER_PREFIX}{call.call_id}" in members:
            return False, members  # with its human: the transfer leg is adopted below
        return True, members


async def run_until_signalled(app: StasisApp, signals: Iterable[int] = ()) -> None:
    """Run ``app`` until one of ``signals`` (e.g. SIGTERM, SIGINT) arrives, then stop it cleanly."""
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, app.stop)
    try:
        await app.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


__all__ = ["StasisApp", "StasisConfig", "run_until_signalled"]
