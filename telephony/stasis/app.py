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
* **Inbound calls** (``StasisStart [inbound, <DID>]``, from the dialplan): the app reports ``CallInbound``
  (who called which number) and asks the sink where the call goes (``route_inbound``, optional, at most
  ``inbound_route_timeout_s``): the agent (answered and bridged to media like an answered outbound call),
  a human (dialed while the caller hears ringing; bridged on answer; else the agent or a refusal), or a
  refusal: answered, told the route's message or ``inbound_message`` (a clear "this number cannot take
  your call" sound), hung up. No answer in time, an error, or a sink without ``route_inbound``: refused,
  never silent. The end follows on ``StasisEnd`` (A4).
* **Health** (:mod:`telephony.health`): while its events websocket is connected and reconciled, the app
  refreshes ``stasis:apps`` in Redis for the PBX rows it serves every second; the dispatcher places calls
  on a PBX only while that heartbeat is fresh (DESIGN.md §5 rule 9, A11).
* A9: Asterisk never hangs up the AudioSocket leg when the caller goes, so the app deletes it and destroys
  the bridge. When the AudioSocket leg goes first, the app emits ``MediaGone`` and hangs the caller up.
* A hard maximum call duration, counted from the moment the app first sees the channel: the app hangs the
  call up and its end is reported with ``reason="max_duration"``.
* **Call actions** (from the media worker, over Redis). With ``redis_url`` set, a task BLPOPs JSON commands
  from the ``command_keys`` (``stasis:commands:<pbx id>``, one per PBX row this app serves; RPUSHed by the
  media worker). The short BLPOP timeout keeps :meth:`StasisApp.stop` prompt; Redis errors are logged and
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
  - The same with ``"mode": "warm"`` (and the domain's ``transfer_id``, reported in ``TransferUpdated``):
    the callee leaves the bridge and hears music on hold (``POST /channels/{id}/moh``) while the human leg
    is dialed; answered, the human joins the agent's leg (``{"type": "transfer", "state": "human_joined"}``:
    the agent briefs them); DTMF 1 from the human or ``{"action": "transfer_decision", "call_id", "accept":
    true}`` connects them with the callee; DTMF 2, ``accept: false``, no decision in time, no answer or a
    failure hangs the human up and puts the callee back (``{"type": "transfer", "state": "declined" |
    "no_answer" | "failed", "reason"}``). See :mod:`~telephony.stasis.controller`.
  - Malformed JSON, unknown actions and calls this app does not have: one log line, dropped. A transfer
    with unusable fields for a call it has is answered ``failed`` with reason ``invalid``.

Ids are deterministic (``bridge-<call id>``, ``media-<call id>``, ``xfer-<call id>``) so that reconciliation
after a restart of this process can still tell which bridge, AudioSocket leg and human leg belong to which
call: a human leg whose call lives on is kept (and adopted after a restart), one whose call is gone is hung
up.


How the package is cut (one job per module):

* :mod:`~telephony.stasis.controller`: every call decision, sans I/O (ARI events in; call events and REST,
  Redis and timer intents out, :mod:`~telephony.stasis.intents`); the transfer's states as a table in
  :mod:`~telephony.stasis.transfer`.
* :mod:`~telephony.stasis.app` (this module): :class:`StasisApp`, the asyncio adapter that runs the others
  and executes the controller's intents.
* :mod:`~telephony.stasis.connection`: the events websocket and its reconnects;
  :mod:`~telephony.stasis.rest`: the REST calls; :mod:`~telephony.stasis.lanes`: the per-call ordered
  delivery to the sink; :mod:`~telephony.stasis.reconcile`: the reads of a reconciliation;
  :mod:`~telephony.stasis.commands`: call actions from Redis; :mod:`~telephony.stasis.heartbeat`: health.

Where to observe the app (one place each): connected / disconnected: :meth:`StasisApp._on_connected` and
:meth:`StasisApp._on_disconnected`; an ARI event arrived (with its timestamp): :meth:`StasisApp._on_event`;
a call ended with an outcome: :meth:`~telephony.stasis.controller.CallController.end` (the ``CallEnded``
it gives out passes :meth:`StasisApp._apply`).

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
import json
import logging
import random
import time
from collections.abc import Coroutine, Hashable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from telephony import health, metrics
from telephony.events import CallEnded, CallEvent, CallEventSink, InboundRoute
from telephony.stasis.commands import consume_commands
from telephony.stasis.config import StasisConfig
from telephony.stasis.connection import EventsConnection, handle_text
from telephony.stasis.controller import CallController
from telephony.stasis.heartbeat import Heartbeat
from telephony.stasis.ids import seg
from telephony.stasis.intents import (
    AddToBridge,
    AnnounceMedia,
    AnswerChannel,
    AskAgentSpoke,
    CancelTimer,
    ContinueInDialplan,
    CreateBridge,
    DestroyBridge,
    Effect,
    GetBridge,
    GetChannel,
    HangUp,
    Intent,
    MarkMediaHostDown,
    OpenMediaLeg,
    OriginateTransfer,
    PlayMedia,
    PublishReply,
    RecordBridge,
    RemoveFromBridge,
    Result,
    RingChannel,
    RouteInbound,
    StartMoh,
    StartTimer,
    StopMoh,
    StopRecording,
)
from telephony.stasis.lanes import EventLanes
from telephony.stasis.reconcile import reconcile
from telephony.stasis.rest import AriRest
from wire import logctx
from wire.brief import MEDIA_EXPECT_TTL_S, media_expect_key, media_seen_key, reply_channel

logger = logging.getLogger("telephony.stasis")


class StasisApp:
    """The Stasis app of one PBX. ``await run()`` until ``stop()``; see the module docstring."""

    def __init__(
        self, config: StasisConfig, sink: CallEventSink, *, rng: random.Random | None = None
    ) -> None:
        if config.redis_url and not config.command_keys:
            raise ValueError("StasisConfig.command_keys must name at least one list when redis_url is set")
        self.config = config
        self.sink = sink
        self.controller = CallController(config)
        self.lanes = EventLanes(sink, concurrency=config.delivery_concurrency, app=config.app)
        self.rest = AriRest(config)
        self.connected = asyncio.Event()  # set while connected and reconciled (tests, health checks)
        self.connections = 0  # successful (re)connects so far
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._events = EventsConnection(
            config,
            self.rest,
            rng=self._rng,
            on_open=self._on_open,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            on_text=self._on_text,
        )
        self._last_listening: float | None = None  # when this process's last connection went (epoch s)
        self._redis: aioredis.Redis | None = None  # commands and replies (while run() runs)
        self._heartbeat: Heartbeat | None = None
        self._stopping = asyncio.Event()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------------------------- lifecycle
    async def run(self) -> None:
        """Connect, reconcile, handle events; reconnect with backoff; until :meth:`stop`."""
        self.rest.open()
        loop = asyncio.get_running_loop()
        delivery = loop.create_task(self.lanes.deliver())
        commands: asyncio.Task[None] | None = None
        if self.config.redis_url:
            self._redis = aioredis.Redis.from_url(
                self.config.redis_url,
                socket_connect_timeout=self.config.connect_timeout_s,
                socket_timeout=self.config.command_poll_s + self.config.request_timeout_s,
                retry=Retry(NoBackoff(), 1),  # one retry on a fresh connection; the backoff is ours
            )
            commands = loop.create_task(
                consume_commands(
                    self._redis,
                    list(self.config.command_keys),
                    app=self.config.app,
                    poll_s=self.config.command_poll_s,
                    stopping=self._stopping,
                    backoff=self._events.backoff,
                    on_command=self._on_command,
                )
            )
            if self.config.pbx_ids:
                self._heartbeat = Heartbeat(self._redis, self.config.pbx_ids, self.config.app)
                self._spawn(self._heartbeat.run(self.connected, self._stopping))
        try:
            await self._events.run(self._stopping)
        finally:
            self._stopping.set()
            self.connected.clear()
            self.controller.connected = False
            if self._heartbeat is not None:
                await self._heartbeat.announce_gone()
            if commands is not None:  # it sees _stopping within one BLPOP timeout
                await asyncio.wait({commands}, timeout=self.config.command_poll_s + 1.0)
                commands.cancel()
                await asyncio.gather(commands, return_exceptions=True)
            for handle in self._timers.values():
                handle.cancel()
            self._timers.clear()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.lanes.stop(delivery)  # hand over what we know
            await self.rest.close()
            if self._redis is not None:
                await self._redis.aclose()
                self._redis = None
            logger.info("stasis %s: stopped", self.config.app)

    def stop(self) -> None:
        self._stopping.set()
        self._events.close()

    # ----------------------------------------------------------------------------------- connection
    async def _on_open(self) -> None:
        """A new events connection, before any of its events is read: reconcile (module docstring)."""
        self.controller.gap_started_at = await self._gap_start()
        await reconcile(self.rest, self.sink, self.controller, self._apply_and_wait)

    def _on_connected(self) -> None:
        """The one place the app becomes connected (and reconciled)."""
        self.connections += 1
        self.connected.set()
        self.controller.connected = True
        if self._heartbeat is not None:
            self._spawn(self._heartbeat.announce())  # at once: dispatch may place calls here again
        logger.info("stasis %s: connected and reconciled", self.config.app)

    def _on_disconnected(self) -> None:
        """The one place the app stops being connected."""
        self._last_listening = time.time()
        self.connected.clear()
        self.controller.connected = False
        if self._heartbeat is not None and not self._stopping.is_set():
            self._spawn(self._heartbeat.announce_gone())  # at once: no call may be placed here now (A11)

    def _on_text(self, data: str) -> bool:
        """One text frame of the events websocket; False when the connection must be given up."""
        return handle_text(data, self.config.app, self._on_event)

    def _on_event(self, event: dict[str, Any], received_at: float) -> None:
        """The one place an ARI event the app acts on arrives (``received_at``: epoch seconds)."""
        metrics.observe_event(self.config.app, event, now=received_at)
        self._apply(self.controller.event(event, received_at))

    async def _gap_start(self) -> datetime | None:
        """From when the app was surely not listening before this connection: when this process's last
        connection went, else (a restart) after the last heartbeat any process of this app wrote. None when
        nobody knows."""
        if self._last_listening is not None:
            return datetime.fromtimestamp(self._last_listening, UTC)
        if self._heartbeat is not None:
            return await self._heartbeat.last_seen()
        return None

    def _on_command(self, command: Mapping[str, Any]) -> None:
        self._apply(self.controller.command(command, time.time()))

    # ---------------------------------------------------------------------------------- the effects
    def _apply(self, effects: Iterable[Effect]) -> list[asyncio.Task[None]]:
        """Call events to the sink's lanes, timers on the loop, every other intent executed in a task of
        its own (its result goes back to the controller). Returns those tasks."""
        tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        for effect in effects:
            if isinstance(effect, StartTimer):
                old = self._timers.pop(effect.key, None)
                if old is not None:
                    old.cancel()
                self._timers[effect.key] = loop.call_later(effect.delay_s, self._fire, effect.key)
            elif isinstance(effect, CancelTimer):
                handle = self._timers.pop(effect.key, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(effect, CallEvent):
                self._emit(effect)
            else:
                tasks.append(self._spawn(self._execute(effect)))
        return tasks

    async def _apply_and_wait(self, effects: Sequence[Effect]) -> None:
        tasks = self._apply(effects)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self._apply(self.controller.timer(key, time.time()))

    async def _execute(self, intent: Intent) -> None:
        call_id = getattr(intent, "call_id", None)
        if call_id is not None:
            logctx.bind_call(call_id=call_id)  # this task's log lines name the call (JSON logs)
        result = await self._perform(intent)
        self._apply(self.controller.result(getattr(intent, "op"), result, time.time()))  # noqa: B009

    async def _perform(self, intent: Intent) -> Result:  # noqa: PLR0911 - one branch per intent
        rest = self.rest
        if isinstance(intent, HangUp):
            return Result(await rest.hangup(intent.channel_id, intent.reason))
        if isinstance(intent, DestroyBridge):
            return Result(await rest.destroy_bridge(intent.bridge_id))
        if isinstance(intent, RouteInbound):
            return await self._route_inbound(intent)
        if isinstance(intent, AnswerChannel):
            status, body = await rest.request("POST", f"/channels/{seg(intent.channel_id)}/answer")
        elif isinstance(intent, ContinueInDialplan):
            path = f"/channels/{seg(intent.channel_id)}/continue"
            params = {
                "context": intent.context,
                "extension": intent.extension,
                "priority": str(intent.priority),
            }
            status, body = await rest.request("POST", path, params)
        elif isinstance(intent, RingChannel):
            status, body = await rest.request("POST", f"/channels/{seg(intent.channel_id)}/ring")
        elif isinstance(intent, PlayMedia):
            path = f"/channels/{seg(intent.channel_id)}/play/{seg(intent.playback_id)}"
            status, body = await rest.request("POST", path, {"media": intent.media})
        elif isinstance(intent, CreateBridge):
            status, body = await rest.request(
                "POST", "/bridges", {"type": "mixing", "bridgeId": intent.bridge_id}
            )
        elif isinstance(intent, GetBridge):
            status, body = await rest.request("GET", f"/bridges/{seg(intent.bridge_id)}", body=True)
        elif isinstance(intent, GetChannel):
            status, body = await rest.request("GET", f"/channels/{seg(intent.channel_id)}")
        elif isinstance(intent, OpenMediaLeg):
            params = {
                "app": self.config.app,
                "external_host": intent.host,
                "encapsulation": "audiosocket",
                "transport": "tcp",
                "format": self.config.media_format,
                "data": intent.media_uuid,
                "channelId": intent.channel_id,
            }
            status, body = await rest.request("POST", "/channels/externalMedia", params)
        elif isinstance(intent, AddToBridge):
            path = f"/bridges/{seg(intent.bridge_id)}/addChannel"
            status, body = await rest.request("POST", path, {"channel": ",".join(intent.channels)})
        elif isinstance(intent, RemoveFromBridge):
            path = f"/bridges/{seg(intent.bridge_id)}/removeChannel"
            status, body = await rest.request("POST", path, {"channel": intent.channel_id})
        elif isinstance(intent, OriginateTransfer):
            status, body = await rest.request("POST", "/channels", intent.params)
        elif isinstance(intent, RecordBridge):
            path = f"/bridges/{seg(intent.bridge_id)}/record"
            params = {"name": intent.name, "format": intent.format, "ifExists": "fail"}
            status, body = await rest.request("POST", path, params)
        elif isinstance(intent, StopRecording):
            status, body = await rest.request("POST", f"/recordings/live/{seg(intent.name)}/stop")
        elif isinstance(intent, StartMoh):
            status, body = await rest.request("POST", f"/channels/{seg(intent.channel_id)}/moh")
        elif isinstance(intent, StopMoh):
            status, body = await rest.request("DELETE", f"/channels/{seg(intent.channel_id)}/moh")
        else:
            return await self._perform_redis(intent)
        return Result(status, body)

    async def _route_inbound(self, intent: RouteInbound) -> Result:
        """The sink's ``route_inbound``, bounded; a sink without it refuses (the configured message). A
        timeout or an error answers None: the controller refuses the call."""
        route = getattr(self.sink, "route_inbound", None)
        if route is None:
            return Result(body=InboundRoute(action="refuse"))
        try:
            decided = await asyncio.wait_for(route(intent.event), self.config.inbound_route_timeout_s)
        except TimeoutError:
            logger.warning(
                "stasis %s: inbound call %s: no route within %.1fs",
                self.config.app,
                intent.call_id,
                self.config.inbound_route_timeout_s,
            )
            return Result()
        except Exception:  # noqa: BLE001 - the sink's failure must not leave the caller in silence
            logger.exception("stasis %s: inbound call %s: routing failed", self.config.app, intent.call_id)
            return Result()
        return Result(body=decided)

    async def _perform_redis(self, intent: Intent) -> Result:
        client = self._redis
        if isinstance(intent, AnnounceMedia):
            # Told (or no Redis at all: a test's stand-in media server, which takes any UUID).
            if client is None:
                return Result(value=True)
            try:
                await client.set(media_expect_key(intent.media_uuid), intent.call_id, ex=MEDIA_EXPECT_TTL_S)
            except (RedisError, OSError) as exc:
                logger.warning(
                    "stasis %s: call %s: media leg not announced: %r", self.config.app, intent.call_id, exc
                )
                return Result(value=False)
            return Result(value=True)
        if client is None:
            return Result(value=None)
        if isinstance(intent, AskAgentSpoke):
            try:
                return Result(value=bool(await client.hexists(media_seen_key(intent.call_id), "agent_audio")))
            except (RedisError, OSError):
                return Result(value=None)
        if isinstance(intent, MarkMediaHostDown):
            # Asterisk could not reach this media worker: off the health set at once (its own heartbeat puts
            # it back within a second if it is alive), so dispatch stops placing calls that would fail.
            try:
                await health.media_worker_gone(client, intent.host)
            except (RedisError, OSError) as exc:
                logger.warning(
                    "stasis %s: media worker %s not marked down: %r", self.config.app, intent.host, exc
                )
        elif isinstance(intent, PublishReply):
            try:
                await client.publish(reply_channel(intent.call_id), json.dumps(intent.payload))
            except (RedisError, OSError) as exc:
                logger.warning(
                    "stasis %s: could not publish %s for call %s: %r",
                    self.config.app,
                    intent.payload,
                    intent.call_id,
                    exc,
                )
        return Result()

    # ------------------------------------------------------------------------------------- delivery
    def _emit(self, event: CallEvent) -> None:
        if isinstance(event, CallEnded):
            metrics.call_ended(self.config.app, str(event.outcome))
        self.lanes.emit(event)

    @property
    def calls_live(self) -> int:
        """The calls the app tracks now (read by the metrics endpoint)."""
        return len(self.controller.calls)

    @property
    def backlog(self) -> int:
        """Call events emitted and not yet handled by the sink (queued, waiting in a lane, or in hand)."""
        return self.lanes.undelivered

    async def _deliver(self) -> None:
        await self.lanes.deliver()

    # The lanes' state, under the names the delivery tests read.
    @property
    def _queue(self) -> asyncio.Queue[CallEvent]:
        return self.lanes.queue

    @property
    def _lanes(self) -> dict[str, collections.deque[CallEvent]]:
        return self.lanes.lanes

    @property
    def _lane_tasks(self) -> set[asyncio.Task[None]]:
        return self.lanes.tasks

    @property
    def _lanes_running(self) -> int:
        return self.lanes.running

    @property
    def _lanes_waiting(self) -> collections.deque[str]:
        return self.lanes.waiting

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("stasis %s: task failed", self.config.app, exc_info=task.exception())


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
