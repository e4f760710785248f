"""The one way Django-side code gets a Redis client, and the URL translation Celery needs.

``settings.REDIS_URL`` is a redis-py URL (``redis://``, ``rediss://`` or ``unix://``). Celery's broker
(kombu) and result backend spell unix sockets differently (``redis+socket:///path``), so settings derive
the Celery URLs with :func:`celery_url_for` instead of asking operators for three variables.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import redis

from orchestrator import embedded_redis

# Every outbound network call has a timeout; these bound a stuck Redis to a few seconds per call.
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0

_embedded_checked = threading.Event()
_embedded_lock = threading.Lock()


def celery_url_for(redis_url: str) -> str:
    """The kombu/Celery spelling of a redis-py URL (identical except for unix sockets)."""
    parts = urlsplit(redis_url)
    if parts.scheme != "unix":
        return redis_url
    db = parse_qs(parts.query).get("db", ["0"])[0]
    return f"redis+socket://{parts.path}?virtual_host={db}"


def ensure_embedded_redis() -> None:
    """Start or attach to the embedded server when REDIS_URL is unset; a no-op otherwise.

    Checked once per process: after that, a server that went away shows up as connection errors (and in
    /healthz), rather than being silently restarted underneath a running product.
    """
    from django.conf import settings

    if not settings.REDIS_EMBEDDED or _embedded_checked.is_set():
        return
    with _embedded_lock:
        if not _embedded_checked.is_set():
            embedded_redis.ensure_running(Path(settings.EMBEDDED_REDIS_DIR))
            _embedded_checked.set()


def get_redis() -> redis.Redis:
    """A process-wide client for ``settings.REDIS_URL`` (responses decoded to str)."""
    from django.conf import settings

    ensure_embedded_redis()
    return _client_for(settings.REDIS_URL)


@functools.cache
def _client_for(url: str) -> redis.Redis:
    # redis-py clients are thread-safe (a connection pool underneath), so one per URL per process.
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=30,
    )
