from __future__ import annotations

import pytest

from orchestrator import redis_client


@pytest.mark.django_db
def test_healthz_is_200_when_database_and_redis_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "db": "ok", "redis": "ok"}
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
