"""The Redis broker transport, with one defect of kombu 5.7.0's fixed: a Celery worker must survive a
restart of its broker.

When the connection to Redis is lost while a late-acknowledged task is unacknowledged, Celery closes the
channel and kombu tries to put the unacknowledged messages back (``QoS.restore_unacked``), and a task that
finishes afterwards acknowledges on that closed channel (``QoS.ack``). By then the transport's connection
is gone, so building a Redis client for either raises ``AttributeError`` (``'NoneType' object has no
attribute 'hostname'`` / ``'client'``), which Celery reports as an unrecoverable error: the worker exits
(status 1) and dispatching stops until someone restarts it. Seen in the fault suite (tests/faults) on
every few Redis restarts.

Nothing is lost by not restoring or acknowledging there: the Redis transport keeps every unacknowledged
message in Redis itself (the ``unacked`` hash) and delivers it again after the visibility timeout (every
task is safe to run twice, DESIGN.md §5 rule 2), and the dispatcher's sweeps do not depend on any one
message anyway (rule 3). So either is logged and skipped, and the worker reconnects as it does for any
other connection loss.

Registered for ``redis://``, ``rediss://`` and ``redis+socket://`` URLs by :func:`install` (called by the
Celery app), through kombu's transport registry.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


#: What using a channel whose broker connection is gone raises: the transport's connection already None
#: (AttributeError, kombu 5.7.0), or the connection to Redis itself failing.
_GONE = (AttributeError, RedisError, OSError)


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        try:
            return super().restore_unacked(client)
        except _GONE as exc:
            delivered = self._delivered
            count = len(delivered) if delivered is not None else 0
            if delivered is not None:
                delivered.clear()
            logger.warning(
                "broker connection lost: %d unacknowledged message(s) not restored now (%r); Redis keeps "
                "them and delivers them again after the visibility timeout",
                count,
                exc,
            )
            return None

    def ack(self, delivery_tag: Any) -> None:
        """A task that finished after the broker connection was lost acks on a channel that is gone: the
        message stays unacknowledged in Redis and comes again after the visibility timeout (tasks are safe
        to run twice, DESIGN.md §5 rule 2); the worker goes on."""
        try:
            super().ack(delivery_tag)
        except _GONE as exc:
            self._forget(delivery_tag, "acknowledged", exc)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)
        except _GONE as exc:
            self._forget(delivery_tag, "rejected", exc)

    def _forget(self, delivery_tag: Any, what: str, exc: BaseException) -> None:
        delivered = self._delivered
        if delivered is not None:
            delivered.pop(delivery_tag, None)
        logger.warning(
            "broker connection lost: message %s not %s (%r); it is delivered again after the visibility "
            "timeout",
            delivery_tag,
            what,
            exc,
        )


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Use :class:`Transport` for the Redis broker URLs (idempotent)."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
