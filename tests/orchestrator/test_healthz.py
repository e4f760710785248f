from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator import redis_client, tasks
from orchestrator.redis_client import get_redis


@pytest.fixture
def heartbeats(settings, monkeypatch):
    """The keys /healthz reads, private to this test (a beat or worker of this Redis never touches them).
    Returns a function writing them: the beat lock held or not, the worker heartbeat ``age_s`` old or absent.
    """
    suffix = uuid.uuid4().hex
    settings.BEAT_LOCK_KEY = f"test:healthz:beat-lock:{suffix}"
    monkeypatch.setattr(tasks, "HEARTBEAT_KEY", f"test:healthz:heartbeat:{suffix}")
    client = get_redis()

    def write(*, beat: bool = True, age_s: float | None = 0) -> None:
        client.delete(settings.BEAT_LOCK_KEY, tasks.HEARTBEAT_KEY)
        if beat:
            client.set(settings.BEAT_LOCK_KEY, "test-holder", ex=30)
        if age_s is not None:
            at = timezone.now() - timedelta(seconds=age_s)
            client.set(tasks.HEARTBEAT_KEY, at.isoformat(), ex=tasks.HEARTBEAT_TTL_S)

    yield write
    client.delete(settings.BEAT_LOCK_KEY, tasks.HEARTBEAT_KEY)


@pytest.mark.django_db
def test_healthz_is_200_when_database_and_redis_answer(client, heartbeats):
    heartbeats(beat=True, age_s=5)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "db": "ok", "redis": "ok", "beat": "ok", "worker": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_is_503_and_names_redis_when_redis_is_unreachable(client, settings, tmp_path):
    # A real, unreachable endpoint: a unix socket path nobody listens on.
    settings.REDIS_EMBEDDED = False
    settings.REDIS_URL = f"unix://{tmp_path}/nobody-listens.sock?db=0"
    redis_client._client_for.cache_clear()
    try:
        response = client.get("/healthz")
    finally:
        redis_client._client_for.cache_clear()
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "db": "ok", "redis": "unavailable"}


def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_a_dead_beat_is_unhealthy_and_named_stale(client, heartbeats):
    # Beat killed: its lock lapsed, and the heartbeat it used to send is older than three periods.
    heartbeats(beat=False, age_s=tasks.HEARTBEAT_STALE_S + 30)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "db": "ok",
        "redis": "ok",
        "beat": "stale",
        "worker": "stale",
        "stale": ["beat", "worker"],
    }


@pytest.mark.django_db
def test_a_beat_just_gone_is_unhealthy_before_its_heartbeat_ages(client, heartbeats):
    heartbeats(beat=False, age_s=10)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (body["beat"], body["worker"], body["stale"]) == ("stale", "ok", ["beat"])


@pytest.mark.django_db
def test_no_worker_running_the_heartbeat_is_unhealthy(client, heartbeats):
    heartbeats(beat=True, age_s=tasks.HEARTBEAT_STALE_S + 1)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["beat"], body["worker"], body["stale"]) == (
        "unavailable",
        "ok",
        "stale",
        ["worker"],
    )


@pytest.mark.django_db
def test_a_heartbeat_never_written_is_stale(client, heartbeats):
    heartbeats(beat=True, age_s=None)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["stale"] == ["worker"]


@pytest.mark.django_db
def test_a_heartbeat_just_inside_three_periods_is_fresh(client, heartbeats):
    heartbeats(beat=True, age_s=tasks.HEARTBEAT_STALE_S - 5)
    assert client.get("/healthz").status_code == 200
