"""Platform tasks that belong to no domain app."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from orchestrator.redis_client import get_redis

HEARTBEAT_KEY = "orchestrator:heartbeat"
# Long enough to outlive a couple of missed beats, short enough that a stale value means "beat is down".
HEARTBEAT_TTL_S = 300


@shared_task(name="orchestrator.tasks.heartbeat")
def heartbeat() -> str:
    """Record that beat and a worker are both alive: the time of the last run, in Redis."""
    now = timezone.now().isoformat()
    get_redis().set(HEARTBEAT_KEY, now, ex=HEARTBEAT_TTL_S)
    return now
