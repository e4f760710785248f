"""Operational endpoints."""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from redis.exceptions import RedisError

from orchestrator.embedded_redis import EmbeddedRedisError
from orchestrator.redis_client import get_redis

logger = logging.getLogger(__name__)

OK = "ok"
UNAVAILABLE = "unavailable"


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


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis both answer, 503 otherwise; the body says which one failed.

    Error details go to the log, not the response: this endpoint is unauthenticated.
    """
    checks = {"db": _database_status(), "redis": _redis_status()}
    healthy = all(status == OK for status in checks.values())
    return JsonResponse({"status": OK if healthy else UNAVAILABLE, **checks}, status=200 if healthy else 503)
