"""Operational endpoints."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from redis.exceptions import RedisError

from orchestrator import tasks
from orchestrator.embedded_redis import EmbeddedRedisError
from orchestrator.redis_client import get_redis

logger = logging.getLogger(__name__)

OK = "ok"
UNAVAILABLE = "unavailable"
STALE = "stale"


def _database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        logger.exception("healthz: database check failed")
        return UNAVAILABLE
    return OK


def _redis_status() -> str:
    try:
        get_redis().ping()
    except (RedisError, EmbeddedRedisError, OSError):
        logger.exception("healthz: redis check failed")
        return UNAVAILABLE
    return OK


def _celery_status() -> dict[str, str]:
    """What the heartbeats the Celery processes already write say, read from Redis:

    * ``beat``: the single-beat lock (orchestrator/beat_lock.py) is held. The running beat re-arms it every
      few seconds, so it lapses within its TTL (30 s) of beat dying;
    * ``worker``: the heartbeat task (orchestrator/tasks.py), which beat sends every 30 s and a worker runs,
      wrote its time less than three periods ago. Stale: no worker takes tasks, or beat sends none.
    """
    pipe = get_redis().pipeline(transaction=False)
    pipe.exists(settings.BEAT_LOCK_KEY)
    pipe.get(tasks.HEARTBEAT_KEY)
    beat_lock, last_heartbeat = pipe.execute()
    worker = STALE
    if last_heartbeat:
        try:
            age = (timezone.now() - datetime.fromisoformat(last_heartbeat)).total_seconds()
        except (TypeError, ValueError):
            logger.warning("healthz: unreadable heartbeat %r", last_heartbeat)
        else:
            worker = OK if age <= tasks.HEARTBEAT_STALE_S else STALE
    return {"beat": OK if beat_lock else STALE, "worker": worker}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer and Celery beat and a worker are alive, 503 otherwise; the
    body says which one failed (``unavailable``) or whose heartbeat is ``stale``, and lists the stale ones.
    Without Redis the heartbeats cannot be read: then only ``db`` and ``redis`` are reported.

    Error details go to the log, not the response: this endpoint is unauthenticated.
    """
    checks = {"db": _database_status(), "redis": _redis_status()}
    if checks["redis"] == OK:
        try:
            checks.update(_celery_status())
        except (RedisError, EmbeddedRedisError, OSError):
            logger.exception("healthz: heartbeats unreadable")
            checks["redis"] = UNAVAILABLE
    healthy = all(status == OK for status in checks.values())
    body: dict[str, object] = {"status": OK if healthy else UNAVAILABLE, **checks}
    stale = [name for name, status in checks.items() if status == STALE]
    if stale:
        body["stale"] = stale
    return JsonResponse(body, status=200 if healthy else 503)
