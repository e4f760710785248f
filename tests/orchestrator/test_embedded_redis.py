"""The embedded Redis server, started for real in a temporary directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchestrator import embedded_redis


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def redis_dir() -> Iterator[Path]:
    # Not tmp_path: pytest's per-test directories can push the socket path past the unix socket limit.
    with tempfile.TemporaryDirectory(prefix="emb-redis-") as directory:
        try:
            yield Path(directory)
        finally:
            embedded_redis.stop(directory)


@pytest.mark.slow
def test_start_ping_then_attach_to_the_same_server(redis_dir):
    server, started = embedded_redis.ensure_running(redis_dir)
    assert started is True
    assert server.ping()
    pid = server.pid()
    assert pid is not None and _alive(pid)

    client = redis.Redis.from_url(server.url)
    assert client.set("greeting", "hello")

    again, started_again = embedded_redis.ensure_running(redis_dir)
    assert started_again is False
    assert again == server
    assert again.pid() == pid
    assert redis.Redis.from_url(again.url).get("greeting") == b"hello"


@pytest.mark.slow
def test_no_tcp_listener_and_socket_is_private(redis_dir):
    server, _ = embedded_redis.ensure_running(redis_dir)
    assert server.client().config_get("port")["port"] == "0"
    assert oct(server.socket_path.stat().st_mode & 0o777) == oct(0o700)


@pytest.mark.slow
def test_stop_shuts_the_server_down(redis_dir):
    server, _ = embedded_redis.ensure_running(redis_dir)
    pid = server.pid()
    assert embedded_redis.stop(redis_dir) is True
    assert not server.ping()
    assert pid is not None
    deadline = time.monotonic() + 5
    while _alive(pid):
        assert time.monotonic() < deadline, "redis-server still running after stop()"
        time.sleep(0.05)
    assert embedded_redis.stop(redis_dir) is False


@pytest.mark.slow
def test_a_killed_server_leaves_a_stale_socket_that_the_next_start_replaces(redis_dir):
    server, _ = embedded_redis.ensure_running(redis_dir)
    old_pid = server.pid()
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while server.ping():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert server.socket_path.exists(), "SIGKILL should leave the socket file behind"

    restarted, started = embedded_redis.ensure_running(redis_dir)
    assert started is True
    assert restarted.pid() != old_pid
    assert restarted.ping()


@pytest.mark.slow
def test_concurrent_starters_share_one_server(redis_dir):
    code = (
        "import json, sys\n"
        "from orchestrator import embedded_redis\n"
        "server, started = embedded_redis.ensure_running(sys.argv[1])\n"
        "print(json.dumps({'started': started, 'pid': server.pid()}))\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, str(redis_dir)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [json.loads(process.communicate(timeout=30)[0]) for process in processes]
    assert [r["started"] for r in results].count(True) == 1
    assert len({r["pid"] for r in results}) == 1


def test_socket_path_too_long_is_a_clear_error():
    with tempfile.TemporaryDirectory() as directory:
        deep = Path(directory) / ("d" * 120)
        with pytest.raises(embedded_redis.EmbeddedRedisError, match="too long"):
            embedded_redis.ensure_running(deep)
