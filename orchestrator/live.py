"""Tell the portal's live pages that something of a tenant changed (wire/live.py names the channels).

:func:`live_notify` publishes after the surrounding transaction commits, so a page that re-reads on the
hint sees the change; a Redis that is down loses the hint only (pages also refresh on a slow timer).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import transaction
from redis.exceptions import RedisError

from orchestrator.redis_client import get_redis
from wire.live import live_channel

logger = logging.getLogger(__name__)


def live_notify(*, tenant_id: int, kind: str, **data: Any) -> None:
    """Publish ``{"kind": kind, **data}`` on the tenant's live channel once the transaction commits."""
    payload = json.dumps({"kind": kind, **data}, default=str)

    def publish() -> None:
        try:
            get_redis().publish(live_channel(tenant_id), payload)
        except (RedisError, OSError) as exc:
            logger.debug("live hint for tenant %s not published: %s", tenant_id, exc)

    transaction.on_commit(publish)
