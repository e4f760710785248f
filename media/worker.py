"""The media worker process: the AudioSocket listener, its calls, and its links to Redis and Celery.

One asyncio loop serves every call (uvloop when installed). Shared per process: one Redis client (briefs,
call actions, the transcript feed), one pub/sub connection for the Stasis app's replies (subscribed per
call), and a small thread pool that hands ``media.*`` tasks to Celery (kombu publishing blocks, the loop
must not).

A connection becomes a call only when its AudioSocket UUID is claimed: one ``GETDEL media:expect:<uuid>``
(wire/brief.py) gives the call id the Stasis app announced for that leg; anything else is refused. Evidence
for reconciliation goes to ``media:seen:<call id>`` (``connected``, ``agent_audio``), and while the worker
accepts calls a heartbeat keeps it in ``media:workers`` (dispatch places calls only while some worker is
there).

Shutdown (SIGTERM): stop accepting (and leave ``media:workers``), let live calls go on for up to
``MEDIA_DRAIN_S``, then ask every agent still talking to say goodbye and hang up, and give that a few seconds
before closing what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from media import speech
from media.config import MediaConfig
from media.metrics import MediaMetrics
from media.probe import Probe
from media.session import Transcript
from wire import tasks as media_tasks
from wire.brief import (
    MEDIA_SEEN_TTL_S,
    MEDIA_WORKERS_KEY,
    REPLY_CHANNEL_PREFIX,
    Brief,
    BriefError,
    brief_key,
    media_expect_key,
    media_seen_key,
    parse_brief,
    reply_channel,
)
from wire.callids import is_attempt_call_id
from wire.live import transcript_channel

if TYPE_CHECKING:
    from celery import Celery

    from media.call import AudioSocketConnection, Call

logger = logging.getLogger(__name__)

BRIEF_READ_TIMEOUT_S = 2.0
CLAIM_TIMEOUT_S = 2.0  # Asterisk waits for the leg; a Redis that cannot answer by then refuses it
MARK_TIMEOUT_S = 5.0
HEARTBEAT_EVERY_S = 1.0
HEARTBEAT_VALID_S = 3.0  # a worker missing three beats no longer counts as accepting calls
GOODBYE_GRACE_S = 12.0
AUDIO_READ_TIMEOUT_S = 3.0
MAX_MESSAGE_AUDIO_BYTES = 48000 * 180  # a recorded voicemail message: at most 3 minutes of 24 kHz PCM


class MediaWorker:
    """See the module docstring. ``await start()``, then ``await stop()``."""

    def __init__(self, config: MediaConfig, *, celery_app: Celery | None = None) -> None:
        self.config = config
        self.calls: dict[str, Call] = {}
        self.connections: set[AudioSocketConnection] = set()
        self.reports: list[dict[str, Any]] = []  # kept for tests (bounded)
        self.accepted = 0
        self.refused = 0
        self.refused_uuids = 0  # connections whose UUID no call expected (or Redis could not say)
        self._server: asyncio.Server | None = None
        self._redis: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._pubsub_task: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._subscribed: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._celery = celery_app
        self._idle = asyncio.Event()
        self._idle.set()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="media-celery")
        self.port = config.port
        self.advertise = config.advertise
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.probe = Probe(config.stats_file)
        self.peak_calls = 0
        self.metrics = MediaMetrics(self, lambda: self.calls.values())

    # ----------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        from media.call import AudioSocketConnection

        self._redis = aioredis.Redis.from_url(
            self.config.redis_url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: AudioSocketConnection(self),
            self.config.host,
            self.config.port,
            backlog=1024,
            reuse_address=True,
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        if not self.advertise:
            host = self.config.host
            self.advertise = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self._pubsub_task = asyncio.ensure_future(self._replies())
        await loop.run_in_executor(None, speech.apology, "en")  # ready before a call needs it
        self._heartbeat_task = asyncio.ensure_future(self._heartbeat())
        logger.info(
            "media worker listening on %s:%d as %s (max %d calls)",
            self.config.host,
            self.port,
            self.advertise,
            self.config.max_calls,
        )

    async def stop(self, drain_s: float | None = None) -> None:
        drain = self.config.drain_s if drain_s is None else drain_s
        if self._server is not None:
            self._server.close()
        await self._leave_workers()
        if not await self.wait_idle(drain):
            logger.info("media worker: %d calls still live; saying goodbye", len(self.calls))
            for call in list(self.calls.values()):
                call.goodbye("shutdown")
            await self.wait_idle(GOODBYE_GRACE_S)
        for conn in list(self.connections):
            conn.close(hangup_frame=True)
        await asyncio.sleep(0.05)
        if self._pubsub_task is not None:
            self._pubsub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await self._pubsub_task
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.aclose()
        self._pool.shutdown(wait=True)
        self.probe.dump(
            {
                "accepted": self.accepted,
                "refused": self.refused,
                "refused_uuids": self.refused_uuids,
                "peak_calls": self.peak_calls,
            }
        )

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no call is live (True) or ``timeout_s`` passed (False)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return not self.calls

    # --------------------------------------------------------------------------------- heartbeat
    async def _heartbeat(self) -> None:
        """While accepting calls: ``ZADD media:workers <now + 3 s> <advertise>`` every second."""
        assert self._redis is not None  # noqa: S101
        failing = False
        while True:
            try:
                await asyncio.wait_for(
                    self._redis.zadd(MEDIA_WORKERS_KEY, {self.advertise: time.time() + HEARTBEAT_VALID_S}),
                    HEARTBEAT_EVERY_S * 2,
                )
            except (RedisError, OSError, TimeoutError) as exc:
                if not failing:  # one line per outage, not one a second
                    logger.warning("media worker: heartbeat failed (%r); retrying every second", exc)
                failing = True
            else:
                if failing:
                    logger.info("media worker: heartbeat restored")
                failing = False
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    async def _leave_workers(self) -> None:
        """No longer accepting calls: stop the heartbeat, then leave ``media:workers`` at once (dispatch
        would otherwise count this worker for up to three more seconds)."""
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert self._redis is not None  # noqa: S101
        try:
            await asyncio.wait_for(self._redis.zrem(MEDIA_WORKERS_KEY, self.advertise), MARK_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("media worker: leaving %s failed (%r); it ages out", MEDIA_WORKERS_KEY, exc)

    def call_started(self, call: Call) -> None:
        self.calls[call.call_id] = call
        self._idle.clear()
        self.peak_calls = max(self.peak_calls, len(self.calls))

    def call_ended(self, call: Call) -> None:
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
        self.metrics.call_ended(call, call.end_reason)
        if not self.calls:
            self._idle.set()

    # ---------------------------------------------------------------------------------- connections
    def admit(self, conn: AudioSocketConnection) -> bool:
        if len(self.connections) >= self.config.max_calls:
            self.refused += 1
            return False
        self.connections.add(conn)
        self.accepted += 1
        return True

    def release(self, conn: AudioSocketConnection) -> None:
        self.connections.discard(conn)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("media worker: background task failed", exc_info=task.exception())

    # ------------------------------------------------------------------------------------- Redis
    async def claim_media(self, media_uuid: str) -> str | None:
        """The call id the Stasis app announced for this media UUID, taken so that no other connection can
        (one atomic ``GETDEL``); None when no call expects it. Redis errors and timeouts are raised: the
        caller refuses the connection then (fail closed)."""
        assert self._redis is not None  # noqa: S101
        raw = await asyncio.wait_for(self._redis.getdel(media_expect_key(media_uuid)), CLAIM_TIMEOUT_S)
        if raw is None:
            return None
        call_id = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()
        return call_id or None

    def mark_seen(self, call_id: str, what: str, at: float) -> None:
        """Evidence for reconciliation, ``HSET media:seen:<call id> <what> <epoch s>``: fire-and-forget,
        never on the audio path's time."""
        self.spawn(self._mark_seen(call_id, what, at))

    async def _mark_seen(self, call_id: str, what: str, at: float) -> None:
        assert self._redis is not None  # noqa: S101
        key = media_seen_key(call_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                # The expiry with every mark: a key whose first mark was lost must not live forever.
                pipe.hset(key, what, f"{at:.6f}")
                pipe.expire(key, MEDIA_SEEN_TTL_S)
                await asyncio.wait_for(pipe.execute(), MARK_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("call %s: recording %s in %s failed: %r", call_id, what, key, exc)

    async def read_brief(self, call_id: str) -> Brief | None:
        assert self._redis is not None  # noqa: S101
        try:
            raw = await asyncio.wait_for(self._redis.get(brief_key(call_id)), BRIEF_READ_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            logger.error("call %s: reading the brief failed: %r", call_id, exc)
            return None
        if raw is None:
            return None
        try:
            return parse_brief(raw, call_id=call_id)
        except BriefError as exc:
            logger.error("call %s: unusable brief: %s", call_id, exc)
            return None

    async def read_audio(self, key: str) -> bytes | None:
        """A campaign's recorded message (raw 16-bit mono PCM at 24 kHz, written by the orchestrator with the
        brief); None when it is missing, unreadable or not PCM."""
        assert self._redis is not None  # noqa: S101
        try:
            raw = await asyncio.wait_for(self._redis.get(key), AUDIO_READ_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            logger.error("reading the recorded message %s failed: %r", key, exc)
            return None
        if not isinstance(raw, bytes) or not raw:
            logger.error("the recorded message %s is missing", key)
            return None
        if len(raw) > MAX_MESSAGE_AUDIO_BYTES:
            logger.warning("the recorded message %s is longer than 3 minutes; cut", key)
        return raw[: min(len(raw), MAX_MESSAGE_AUDIO_BYTES) & ~1]

    def machine_detected(self, source: str) -> None:
        self.metrics.machine_detections.labels(source=source).inc()

    async def command(self, key: str, command: dict[str, Any]) -> None:
        """A call action for the Stasis app that owns the call (contract: a Redis list per PBX)."""
        assert self._redis is not None  # noqa: S101
        try:
            await self._redis.rpush(key, json.dumps(command, separators=(",", ":")))
        except (RedisError, OSError) as exc:
            logger.error(
                "call %s: command %s could not be sent: %r",
                command.get("call_id"),
                command.get("action"),
                exc,
            )
            raise

    def subscribe(self, call_id: str) -> None:
        self._subscribed.add(call_id)
        self.spawn(self._pubsub_call("subscribe", call_id))

    def unsubscribe(self, call_id: str) -> None:
        if call_id in self._subscribed:
            self._subscribed.discard(call_id)
            self.spawn(self._pubsub_call("unsubscribe", call_id))
        waiter = self._waiters.pop(call_id, None)
        if waiter is not None and not waiter.done():
            waiter.cancel()

    async def _pubsub_call(self, what: str, call_id: str) -> None:
        if self._pubsub is None:
            return
        with contextlib.suppress(RedisError, OSError):
            await getattr(self._pubsub, what)(reply_channel(call_id))

    async def await_transfer(self, call_id: str, timeout_s: float) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiters[call_id] = waiter
        try:
            return await asyncio.wait_for(waiter, timeout_s)
        except (TimeoutError, asyncio.CancelledError):
            return None
        finally:
            if self._waiters.get(call_id) is waiter:
                del self._waiters[call_id]

    async def _replies(self) -> None:
        """Read the Stasis app's replies for our calls; reconnect on Redis errors."""
        assert self._redis is not None  # noqa: S101
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                # A placeholder channel keeps the connection in subscribed mode with no call live.
                await pubsub.subscribe(reply_channel("-"))
                if self._subscribed:
                    await pubsub.subscribe(*(reply_channel(c) for c in self._subscribed))
                self._pubsub = pubsub
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._on_reply(message)
            except (RedisError, OSError) as exc:
                logger.warning("media worker: reply channel failed (%r); reconnecting", exc)
                self._pubsub = None
                await asyncio.sleep(1.0)
            finally:
                self._pubsub = None
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def _on_reply(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        call_id = str(channel or "")[len(REPLY_CHANNEL_PREFIX) :]
        try:
            data = json.loads(message.get("data") or b"")
        except ValueError:
            logger.warning("call %s: reply is not JSON", call_id)
            return
        if not isinstance(data, dict):
            return
        if data.get("type") == "say":  # the product makes the agent speak (wire.brief.say_message)
            call = self.calls.get(call_id)
            text = data.get("text")
            if call is not None and isinstance(text, str) and text.strip():
                logger.info("call %s: saying %.80r on request", call_id, text)
                call.log_context.run(call.say, text)
            return
        if data.get("type") == "transfer":  # a warm transfer's state, or a request nobody could take
            call = self.calls.get(call_id)
            if call is not None:
                call.log_context.run(call.transfer_update, data)
            waiter = self._waiters.get(call_id)
            if waiter is not None and not waiter.done() and data.get("state") in ("failed", "no_answer"):
                waiter.set_result({"status": "failed", "reason": data.get("reason") or data.get("state")})
            return
        if data.get("type") == "amd":  # what Asterisk's AMD() concluded (the Stasis app, after its hop)
            call = self.calls.get(call_id)
            if call is not None:
                status, cause = data.get("status"), data.get("cause")
                status = status if isinstance(status, str) else ""
                call.log_context.run(call.amd, status, cause if isinstance(cause, str) else "")
            return
        if data.get("event") == "transfer":
            call = self.calls.get(call_id)
            if call is not None and data.get("status") == "answered":
                # Before anything else: the Stasis app deletes our leg right after this reply, and the
                # socket's close may be handled before the transfer tool's continuation runs.
                call.transferred(str(data.get("number") or "unknown"))
            waiter = self._waiters.get(call_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(data)

    def publish_transcript(self, call: Call, line: Transcript) -> None:
        brief = call.brief
        if brief is None or brief.tenant_id is None or self._redis is None:
            return
        payload = {
            "call_id": call.call_id,
            "attempt_id": brief.attempt_id,
            "role": line.role,
            "text": line.text,
            "at": datetime.fromtimestamp(call.started_wall + line.t_ms / 1000, UTC).isoformat(),
        }
        self.spawn(self._publish(transcript_channel(brief.tenant_id), json.dumps(payload)))

    async def _publish(self, channel: str, data: str) -> None:
        assert self._redis is not None  # noqa: S101
        with contextlib.suppress(RedisError, OSError):
            await self._redis.publish(channel, data)

    # ------------------------------------------------------------------------------------- Celery
    def _celery_app(self) -> Celery:
        if self._celery is None:
            from celery import Celery

            app = Celery("media", broker=self.config.broker_url, set_as_current=False)
            app.conf.update(
                task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True
            )
            self._celery = app
        return self._celery

    async def send_task(self, name: str, kwargs: dict[str, Any]) -> None:
        """Hand a ``media.*`` task to the orchestrator's Celery queue (in a thread: kombu blocks)."""
        app = self._celery_app()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._pool, lambda: app.send_task(name, kwargs=kwargs, queue=self.config.celery_queue)
        )

    def report(self, call: Call) -> None:
        """The call is over: its transcript and metrics go to the attempt (``media.call_report``)."""
        report = call.report()
        self.reports.append(report)
        del self.reports[:-200]
        logger.info(
            "call %s ended (%s): %s",
            call.call_id,
            report["end_reason"],
            {k: v for k, v in report["metrics"].items() if k != "errors"},
        )
        if call.brief is None:
            return

        # A campaign attempt's report goes to the campaigns, any other call's (inbound, on-call page) to the
        # flows: the same rule as the Stasis app's call-event router.
        task = media_tasks.CALL_REPORT if is_attempt_call_id(call.call_id) else media_tasks.FLOW_CALL_REPORT

        async def send() -> None:
            try:
                await self.send_task(task, report)
            except Exception:  # noqa: BLE001 - the broker may be down; the call itself is over anyway
                logger.exception("call %s: the call report could not be sent", call.call_id)

        self.spawn(send())
