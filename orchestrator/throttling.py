"""API rate limits per tenant (DRF throttling, ``REST_FRAMEWORK["DEFAULT_THROTTLE_*"]``).

A tenant is one customer whatever the number of its API keys and users, so requests are counted per
tenant: every request of a tenant against the ``tenant`` rate, and a route that names a
``throttle_scope`` (the CSV import: ``import``) against that rate as well. A request over a rate is
answered 429 in the API's JSON error shape (``{"detail": "..."}``) with ``Retry-After`` (DRF's
``Throttled`` through orchestrator/api.py's exception handler).

Counts live in Django's cache (Redis). Rates are read from settings on every request, so a change of
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` applies without re-importing anything. Requests without a
tenant (the public schema and docs; an unauthenticated call is refused before throttles run) are not
counted. When Redis cannot be reached the request is let through and logged: rate limiting must not turn a
Redis outage into an API outage.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from orchestrator.embedded_redis import EmbeddedRedisError
from orchestrator.redis_client import ensure_embedded_redis

logger = logging.getLogger(__name__)


class TenantRateThrottle(SimpleRateThrottle):
    """Every request of the authenticated tenant, at the ``tenant`` rate."""

    scope = "tenant"
    cache_format = "throttle:%(scope)s:tenant:%(ident)s"

    def __init__(self) -> None:
        # The rate is resolved per request (allow_request), not here from a class attribute frozen at import.
        pass

    def get_rate(self) -> str | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        return None if rate is None else str(rate)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        tenant = getattr(request, "tenant", None)
        if tenant is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": tenant.pk}

    def allow_request(self, request: Request, view: Any) -> bool:
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            ensure_embedded_redis()
            return super().allow_request(request, view)
        except (RedisError, EmbeddedRedisError, OSError) as exc:
            logger.warning("throttle %s: not counted, the cache is unavailable: %r", self.scope, exc)
            return True


class TenantScopedRateThrottle(TenantRateThrottle):
    """A route's own rate per tenant: the view's ``throttle_scope`` (none: not counted here)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        scope = getattr(view, "throttle_scope", None)
        if not scope:
            return True
        self.scope = scope
        return super().allow_request(request, view)
