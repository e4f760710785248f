"""Heartbeats for tests whose processes dispatch for real (DESIGN.md §5 rule 9): the PBX's Stasis app and a
media worker announced in the test session's Redis, as the real processes do, for as long as a test needs."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Iterator

import redis
from django.conf import settings

from wire.brief import MEDIA_WORKERS_KEY, STASIS_APPS_KEY


@contextlib.contextmanager
def pbxs_and_media_up(pbx_ids: Iterable[int], *, seconds: float = 3600.0) -> Iterator[None]:
    """The Stasis app of each PBX listening and one media worker up, for ``seconds`` or until the end."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    members = [str(pbx_id) for pbx_id in pbx_ids]
    worker = f"test-media-{uuid.uuid4().hex[:8]}:9092"
    expiry = time.time() + seconds
    try:
        if members:
            client.zadd(STASIS_APPS_KEY, dict.fromkeys(members, expiry))
        client.zadd(MEDIA_WORKERS_KEY, {worker: expiry})
        yield
    finally:
        if members:
            client.zrem(STASIS_APPS_KEY, *members)
        client.zrem(MEDIA_WORKERS_KEY, worker)
        client.close()
