"""Platform tasks that belong to no domain app."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from orchestrator.redis_client import get_redis

HEARTBEAT_KEY = "orchestrator:heartbeat"
# Beat sends the heartbeat task this often (orchestrator/celery.py), and once when it starts.
HEARTBEAT_EVERY_S = 30
# Older than three periods: beat or every worker is down (/healthz says "stale").
HEARTBEAT_STALE_S = 3 * HEARTBEAT_EVERY_S
# Long enough to outlive a couple of missed beats, short enough that a stale value means "beat is down".
HEARTBEAT_TTL_S = 300


@shared_task(name="orchestrator.tasks.heartbeat")
def heartbeat() -> str:
    """Record that beat and a worker are both alive: the time of the last run, in Redis."""
    now = timezone.now().isoformat()
    get_redis().set(HEARTBEAT_KEY, now, ex=HEARTBEAT_TTL_S)
    return now
