"""Exactly one Celery beat: a Redis lock held (and kept fresh) by the running beat process.

Two beats would enqueue every periodic task twice. Tasks are idempotent, but doubling the dispatch sweep
doubles the load and the lock contention it creates, so we refuse to run a second beat at all:

* at ``beat_init`` the process takes a Redis lock (``SET NX`` with a TTL) or exits with status 1,
  naming the current holder;
* a daemon thread re-arms the TTL every ``ttl / 3`` seconds, so a beat that is killed with ``-9`` frees the
  slot within ``ttl`` seconds;
* if the lock is ever found to belong to someone else (TTL lapsed during a long Redis outage and another
  beat took over), this beat stops itself with SIGTERM rather than running as a second beat.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable

import redis
from redis.exceptions import LockError, LockNotOwnedError, RedisError

logger = logging.getLogger(__name__)

DEFAULT_TTL_S = 30.0


def _stop_this_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class SingleInstanceLock:
    """A lock that at most one process holds; the holder keeps it alive from a background thread."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        ttl: float = DEFAULT_TTL_S,
        on_lost: Callable[[], None] = _stop_this_process,
    ) -> None:
        self.key = key
        self.ttl = ttl
        # Identifies the holder in error messages and in Redis (GET key) for an operator.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client = client
        self._on_lost = on_lost
        self._lock = client.lock(key, timeout=ttl, blocking=False, thread_local=False)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> str | None:
        value = self._client.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def acquire(self) -> bool:
        """Take the lock without waiting and start refreshing it; False when another process holds it."""
        if not self._lock.acquire(token=self.token):
            return False
        self._stopped.clear()
        self._thread = threading.Thread(target=self._keep_alive, name=f"lock-refresh:{self.key}", daemon=True)
        self._thread.start()
        return True

    def release(self) -> None:
        """Stop refreshing and free the lock if we still hold it."""
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.ttl)
        try:
            self._lock.release()
        except LockError:
            pass  # expired or taken over: nothing of ours to free
        except RedisError:
            logger.warning("could not release %s; it expires by itself within %.0f s", self.key, self.ttl)

    def _keep_alive(self) -> None:
        while not self._stopped.wait(self.ttl / 3):
            try:
                try:
                    self._lock.reacquire()
                except LockNotOwnedError:
                    # Expired (e.g. Redis was unreachable for longer than the TTL): ours again only if
                    # nobody took it in the meantime.
                    if not self._lock.acquire(token=self.token):
                        logger.critical(
                            "lost %s to %s; stopping so that only one instance runs", self.key, self.holder()
                        )
                        self._stopped.set()
                        self._on_lost()
                        return
            except RedisError as exc:
                # Transient: keep trying; nobody else can take the lock while Redis is unreachable.
                logger.warning("could not refresh %s: %s", self.key, exc)
