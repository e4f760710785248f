"""A PostgreSQL and a Redis server of the fault suite's own, on free ports in a temporary directory.

The fault tests stop and restart them in the middle of live calls, so they must not be the machine's
servers that other tests (and other people) use. Everything the product's processes need reaches them
through ``DATABASE_URL`` and ``REDIS_URL``.

PostgreSQL's ``initdb`` refuses to run as root, and CI runs as root: then every PostgreSQL command runs as
the ``postgres`` OS user (``runuser``), which owns the data directory. The server is tuned for a throwaway
test cluster (no fsync): a restart here is about dropped connections, not about durability.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from orchestrator.embedded_redis import redis_server_executable
from tests.e2e.stack import free_port, wait_for


class ServerUnavailable(RuntimeError):
    """This machine cannot run the server (no binaries, no unprivileged user to run PostgreSQL as)."""


def _postgres_bin_dir() -> Path:
    """The directory of initdb and pg_ctl: on PATH, else the newest Debian-style install."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    raise ServerUnavailable("no initdb: install PostgreSQL's server binaries")


def _unprivileged_user() -> str | None:
    """None when this process may run PostgreSQL itself; else the OS user to run it as."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServerUnavailable(
            "running as root and there is no 'postgres' OS user to run initdb as"
        ) from None
    return "postgres"


@dataclass
class PostgresServer:
    """A PostgreSQL cluster of its own: ``start``, ``restart`` (connections dropped), ``stop``."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orch-faults-pg-")))
    port: int = field(default_factory=free_port)
    user: str = "postgres"  # the database superuser, trusted on 127.0.0.1

    def __post_init__(self) -> None:
        self.bin_dir = _postgres_bin_dir()
        self.run_as = _unprivileged_user()
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        if self.run_as is not None:
            # The data directory must belong to the user the server runs as (and mkdtemp made it 0700).
            owner = pwd.getpwnam(self.run_as)
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)

    def _run(self, *argv: str, timeout: float = 60) -> None:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                      "--no-sync", "--locale=C")  # fmt: skip
            options = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": "''",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "max_connections": "200",
            }
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.writelines(f"{name} = {value}\n" for name, value in options.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is dropped, in-flight transactions roll back."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-m", "fast",
                  "restart")  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-m", "fast", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            dbname=database,
            autocommit=True,
            connect_timeout=5,
        )

    def create_database(self, name: str, *, template: str | None = None) -> None:
        with self.connect() as conn:
            # Identifiers cannot be parameters; the names are our own ([a-z0-9_]).
            sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
            conn.execute(sql.encode())

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@dataclass
class RedisServer:
    """A redis-server of its own on 127.0.0.1. ``restart`` is a clean stop (snapshot saved, as a packaged
    Redis does on ``systemctl restart``) and a start on the same port, which loads the snapshot back:
    every client connection is dropped and refused while it is down."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orch-faults-redis-")))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def ping(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def start(self) -> None:
        argv = [
            redis_server_executable(), "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no",
            "--dir", str(self.directory), "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        wait_for(self.ping, timeout=20, what="the fault suite's Redis")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            with self.client() as client:
                client.shutdown(save=True)
        except (redis.ConnectionError, OSError):
            pass  # the server closes our connection as it exits: the success path
        except redis.RedisError:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def flush(self) -> None:
        with self.client() as client:
            client.flushall()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
