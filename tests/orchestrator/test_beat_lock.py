"""The single-beat lock, against the real Redis of this test session."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from orchestrator.beat_lock import SingleInstanceLock
from orchestrator.redis_client import get_redis


@pytest.fixture
def key():
    name = f"test:beat-lock:{uuid.uuid4().hex}"
    yield name
    get_redis().delete(name)


def test_only_one_holder_at_a_time(key):
    first = SingleInstanceLock(get_redis(), key, ttl=5)
    second = SingleInstanceLock(get_redis(), key, ttl=5)
    assert first.acquire() is True
    try:
        assert second.acquire() is False
        assert second.holder() == first.token
    finally:
        first.release()
    assert first.holder() is None
    assert second.acquire() is True
    second.release()


def test_the_holder_keeps_the_lock_past_its_ttl(key):
    lock = SingleInstanceLock(get_redis(), key, ttl=1.0)
    assert lock.acquire()
    try:
        time.sleep(2.5)  # two and a half TTLs: only the refresher keeps it alive
        assert lock.holder() == lock.token
        contender = SingleInstanceLock(get_redis(), key, ttl=1.0)
        assert contender.acquire() is False
    finally:
        lock.release()


def test_a_lock_left_by_a_dead_holder_expires(key):
    lock = SingleInstanceLock(get_redis(), key, ttl=0.5)
    assert lock.acquire()
    lock._stopped.set()  # the refresher stops as it would with its process gone
    time.sleep(1.0)
    assert lock.holder() is None
    successor = SingleInstanceLock(get_redis(), key, ttl=0.5)
    assert successor.acquire() is True
    successor.release()


def test_a_holder_that_finds_another_owner_stops_itself(key):
    lost = threading.Event()
    lock = SingleInstanceLock(get_redis(), key, ttl=0.6, on_lost=lost.set)
    assert lock.acquire()
    get_redis().set(key, "someone-else", ex=10)
    assert lost.wait(timeout=3), "on_lost was not called"
    assert get_redis().get(key) == "someone-else"
    lock.release()
    assert get_redis().get(key) == "someone-else", "release must not free someone else's lock"
