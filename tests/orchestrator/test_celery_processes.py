"""Real Celery processes (worker, beat) against this session's Redis."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings

from orchestrator.beat_lock import SingleInstanceLock
from orchestrator.redis_client import get_redis
from orchestrator.tasks import HEARTBEAT_KEY, heartbeat

pytestmark = pytest.mark.slow


def _start(argv: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def worker_queue(subprocess_env, project_root, tmp_path) -> Iterator[str]:
    # A queue of its own, so a developer's running worker cannot take the test's message.
    queue = f"test-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "worker.log"
    argv = [
        sys.executable, "-m", "celery", "-A", "orchestrator", "worker",
        "--pool=solo", "-c", "1", "-Q", queue, "-n", f"{queue}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO",
    ]  # fmt: skip
    worker = _start(argv, env=subprocess_env, cwd=project_root, log=log)
    try:
        yield queue
    finally:
        _stop(worker)
        print(log.read_text(errors="replace"))  # shown by pytest only when the test failed


def test_a_worker_process_runs_the_heartbeat_task(worker_queue):
    started = time.monotonic()
    before = datetime.now(UTC)
    result = heartbeat.apply_async(queue=worker_queue)
    stamp = result.get(timeout=20)
    assert time.monotonic() - started < 20
    written = datetime.fromisoformat(stamp)
    assert before - timedelta(seconds=1) <= written <= datetime.now(UTC)
    assert get_redis().get(HEARTBEAT_KEY) is not None
    assert result.successful()


def test_a_second_beat_exits_while_the_lock_is_held(subprocess_env, project_root, tmp_path):
    lock = SingleInstanceLock(get_redis(), settings.BEAT_LOCK_KEY)
    # If a developer's beat holds it already, that is just as good a "held" lock for this test.
    ours = lock.acquire()
    assert ours or lock.holder() is not None
    log = tmp_path / "beat.log"
    argv = [
        sys.executable, "-m", "celery", "-A", "orchestrator", "beat",
        "-s", str(tmp_path / "schedule"), "--loglevel=INFO",
    ]  # fmt: skip
    beat = _start(argv, env=subprocess_env, cwd=project_root, log=log)
    try:
        returncode = beat.wait(timeout=30)
    finally:
        _stop(beat)
        if ours:
            lock.release()
    output = log.read_text(errors="replace")
    assert returncode != 0, output
    assert "another celery beat is running" in output


def test_a_lone_beat_holds_the_lock_until_it_stops(subprocess_env, project_root, tmp_path):
    client = get_redis()
    if client.get(settings.BEAT_LOCK_KEY) is not None:
        pytest.skip("another beat holds the lock on this Redis")
    log = tmp_path / "beat.log"
    argv = [
        sys.executable, "-m", "celery", "-A", "orchestrator", "beat",
        "-s", str(tmp_path / "schedule"), "--loglevel=INFO",
    ]  # fmt: skip
    beat = _start(argv, env=subprocess_env, cwd=project_root, log=log)
    try:
        deadline = time.monotonic() + 20
        holder = None
        while holder is None and time.monotonic() < deadline and beat.poll() is None:
            holder = client.get(settings.BEAT_LOCK_KEY)
            time.sleep(0.1)
        assert holder is not None and f":{beat.pid}:" in holder, log.read_text(errors="replace")
        assert 0 < client.ttl(settings.BEAT_LOCK_KEY) <= 30
    finally:
        _stop(beat)
    assert client.get(settings.BEAT_LOCK_KEY) is None, "beat did not release its lock on shutdown"


@pytest.mark.django_db
def test_healthz_follows_a_real_beat_and_worker(client, settings, subprocess_env, project_root, tmp_path):
    """Healthy once beat and a worker run (beat's start-up heartbeat, well before its first 30 s period);
    unhealthy, naming beat, once beat is killed with -9 (its lock lapses within its TTL)."""
    from tests.conftest import database_is_postgres, database_url

    queue = f"test-{uuid.uuid4().hex[:12]}"
    lock_key = f"test:healthz:beat-lock:{queue}"
    settings.BEAT_LOCK_KEY = lock_key  # the pytest-django settings fixture restores it
    env = {**subprocess_env, "CELERY_QUEUE": queue, "BEAT_LOCK_KEY": lock_key}
    env["DATABASE_URL"] = database_url() if database_is_postgres() else f"sqlite:///{tmp_path}/db.sqlite3"
    get_redis().delete(HEARTBEAT_KEY)
    celery = [sys.executable, "-m", "celery", "-A", "orchestrator"]
    worker = _start(
        [*celery, "worker", "--pool=solo", "-c", "1", "-Q", queue, "-n", f"{queue}@%h", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "--loglevel=INFO"],
        env=env, cwd=project_root, log=tmp_path / "worker.log",
    )  # fmt: skip
    beat = _start(
        [*celery, "beat", "--loglevel=INFO", "-s", str(tmp_path / "beat-schedule")],
        env=env, cwd=project_root, log=tmp_path / "beat.log",
    )  # fmt: skip
    try:
        started = time.monotonic()
        body: dict[str, object] = {}
        while time.monotonic() - started < 25:
            response = client.get("/healthz")
            body = response.json()
            if response.status_code == 200:
                break
            time.sleep(0.5)
        assert body.get("status") == "ok", body
        beat.kill()
        beat.wait()
        killed = time.monotonic()
        while time.monotonic() - killed < 45:
            response = client.get("/healthz")
            body = response.json()
            if response.status_code == 503:
                break
            time.sleep(1)
        assert response.status_code == 503, body
        assert body["beat"] == "stale" and "beat" in body["stale"], body  # type: ignore[operator]
    finally:
        _stop(beat)
        _stop(worker)
        get_redis().delete(lock_key)
        print((tmp_path / "worker.log").read_text(errors="replace"))
        print((tmp_path / "beat.log").read_text(errors="replace"))
