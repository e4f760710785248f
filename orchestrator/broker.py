"""The Redis broker transport, with one defect of kombu 5.7.0's fixed: a Celery worker must survive a
restart of its broker.

When the connection to Redis is lost while a late-acknowledged task is unacknowledged, Celery closes the
channel and kombu tries to put the unacknowledged messages back (``QoS.restore_unacked``). By then the
transport's connection is gone (``connection.client`` is None), so building a Redis client for the restore
raises ``AttributeError: 'NoneType' object has no attribute 'hostname'``, which Celery reports as an
unrecoverable error: the worker exits (status 1) and dispatching stops until someone restarts it. Seen in
the fault suite (tests/faults) on every few Redis restarts.

Nothing is lost by not restoring there: the Redis transport keeps every unacknowledged message in Redis
itself (the ``unacked`` hash) and delivers it again after the visibility timeout, and the dispatcher's
sweeps do not depend on any one message anyway (DESIGN.md §5 rule 3). So a restore that cannot reach Redis
is logged and skipped, and the worker reconnects as it does for any other connection loss.

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


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        try:
            return super().restore_unacked(client)
        except (AttributeError, RedisError, OSError) as exc:
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


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Use :class:`Transport` for the Redis broker URLs (idempotent)."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
