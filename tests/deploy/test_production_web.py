"""The production web: `manage.py check --deploy` clean on production settings from the environment, HTTPS
enforced (HSTS, redirect, secure cookies) except for the health probe, and gunicorn with uvicorn workers
(deploy/gunicorn.conf.py) serving the ASGI app and whitenoise serving collected, hashed, compressed static
files."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.test import Client

from orchestrator.redis_client import get_redis
from orchestrator.tasks import HEARTBEAT_KEY, HEARTBEAT_TTL_S
from tests.conftest import PROJECT_ROOT, database_is_postgres, database_url


def production_env(base: dict[str, str]) -> dict[str, str]:
    """What an operator sets (README "Production"): the product settings, DEBUG off, real secrets."""
    env = {k: v for k, v in base.items() if k not in ("DEBUG", "SECURE_SSL_REDIRECT", "STATIC_MANIFEST")}
    env.update(
        DJANGO_SETTINGS_MODULE="orchestrator.settings",
        DEBUG="0",
        SECRET_KEY=uuid.uuid4().hex + uuid.uuid4().hex,
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="calls.example.com",
        CSRF_TRUSTED_ORIGINS="https://calls.example.com",
    )
    return env


@pytest.mark.slow
def test_check_deploy_reports_no_issues(subprocess_env):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_ROOT,
        env=production_env(subprocess_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
def test_check_deploy_flags_debug_and_a_weak_key(subprocess_env):
    """The check is not vacuous: the settings it would flag are the environment's."""
    env = {**production_env(subprocess_env), "SECURE_HSTS_SECONDS": "0", "SECURE_SSL_REDIRECT": "0"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr, result.stderr


@pytest.mark.django_db
def test_https_is_enforced_except_for_the_health_probe_and_the_scrape(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["calls.example.com", "testserver"]
    settings.SECURE_HSTS_SECONDS = 31536000
    client = Client()  # a new client: the security middleware reads these settings when it is created
    redirect = client.get("/api/v1/campaigns", HTTP_HOST="calls.example.com")
    assert redirect.status_code == 301
    assert redirect["Location"] == "https://calls.example.com/api/v1/campaigns"
    probe = client.get("/healthz")
    assert probe.status_code in (200, 503)  # answered over plain HTTP, whatever the heartbeats say
    scrape = client.get("/metrics")
    assert scrape.status_code != 301  # Prometheus scrapes over plain HTTP (the view itself says who may)
    secure = client.get("/api/schema/", secure=True)
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _web_connections() -> int:
    """Connections to this test's database other than this process's own."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - a local test server
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a local test server
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.slow
@pytest.mark.django_db
def test_gunicorn_serves_the_asgi_app_and_whitenoise_the_static_files(subprocess_env, tmp_path):
    static_root = tmp_path / "static"
    env = {
        **subprocess_env,
        "STATIC_ROOT": str(static_root),
        "STATIC_MANIFEST": "1",
        "ALLOWED_HOSTS": "127.0.0.1",
        "BEAT_LOCK_KEY": f"test:gunicorn:beat-lock:{uuid.uuid4().hex}",
        "DATABASE_URL": database_url() if database_is_postgres() else f"sqlite:///{tmp_path}/db.sqlite3",
    }
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stdout + collected.stderr
    manifest = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    css = manifest["admin/css/base.css"]
    assert css != "admin/css/base.css" and (static_root / (css + ".gz")).exists()  # hashed, compressed

    redis = get_redis()
    redis.set(env["BEAT_LOCK_KEY"], "test-holder", ex=60)
    redis.set(HEARTBEAT_KEY, datetime.now(UTC).isoformat(), ex=HEARTBEAT_TTL_S)
    port = _free_port()
    env.update(WEB_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(gunicorn), "--config", "deploy/gunicorn.conf.py"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=out,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status, headers, body = _get(f"{base}/healthz")
                break
            except OSError:
                time.sleep(0.3)
        assert status == 200, (body, log.read_text(errors="replace"))
        assert json.loads(body)["status"] == "ok"
        assert headers.get("server") == "uvicorn" or headers.get("Server") == "uvicorn", headers

        status, headers, body = _get(f"{base}/static/{css}", **{"Accept-Encoding": "gzip"})
        assert status == 200, log.read_text(errors="replace")
        assert headers.get("Content-Encoding") == "gzip"
        assert "immutable" in headers.get("Cache-Control", "")
        assert b"body" in gzip.decompress(body)

        status, _, page = _get(f"{base}/admin/login/")
        assert status == 200
        assert f"/static/{css}".encode() in page  # pages link the hashed names

        if database_is_postgres():
            # Each ASGI request runs in a thread of its own: the web process must not keep one database
            # connection per request (it did, until PostgreSQL refused new clients under a webhook burst).
            for _ in range(40):
                assert _get(f"{base}/healthz")[0] == 200
            assert _web_connections() <= 2, log.read_text(errors="replace")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
            redis.delete(env["BEAT_LOCK_KEY"])
            print(log.read_text(errors="replace"))
    assert server.returncode == 0
    assert os.path.isdir(static_root)
