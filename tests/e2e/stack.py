"""The product's processes, started for an end-to-end test or a benchmark: the PBX simulator, Celery workers
and beat, the Stasis app, and a stand-in media worker that accepts AudioSocket legs.

Every process is a real OS process started with this interpreter, exactly as ``make run`` starts them
(``python -m telephony.sim``, ``celery worker``/``beat``, ``manage.py run_stasis``), so a test can
``kill -9`` any of them. They share the caller's database (``DATABASE_URL``) and Redis (``REDIS_URL``), but
use a Celery queue and a beat lock of their own (``CELERY_QUEUE``, ``BEAT_LOCK_KEY``): a developer's running
product or another test session on the same Redis never takes their tasks.

Each process writes to its own log file under the stack's directory; :meth:`Stack.logs` returns their tails
(tests print them on failure).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from orchestrator.redis_client import celery_url_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SIM_USER = "asterisk"
SIM_PASSWORD = "e2e-sim-password"  # noqa: S105 - a throwaway credential of a local test simulator
SIM_APP = "orchestrator"
PASSWORD_ENV = "E2E_ARI_PASSWORD"  # the PBX rows read the simulator's password from this variable


def zone_where_it_is(hour: int) -> str:
    """A fixed-offset time zone where the local hour is ``hour`` (or ``hour + 1``) now: calling windows
    can be placed around the real clock (open, closed) without a fake one."""
    offset = (hour - datetime.now(UTC).hour + 12) % 24 - 12
    if offset == 0:
        return "Etc/GMT"
    return f"Etc/GMT-{offset}" if offset > 0 else f"Etc/GMT+{-offset}"  # POSIX signs: Etc/GMT-3 is UTC+3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL to the process: no cleanup, no acknowledgement, no goodbye."""
        if self.alive():
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    """The processes of one test run. ``env`` is the base environment (settings module, DATABASE_URL,
    REDIS_URL, ...); the stack adds its queue, beat lock and the simulator password."""

    directory: Path
    env: dict[str, str]
    queue: str = field(default_factory=lambda: f"e2e-{uuid.uuid4().hex[:12]}")
    procs: list[Proc] = field(default_factory=list)
    sim_port: int = 0
    media_port: int = 0
    realtime_port: int = 0
    sms_port: int = 0
    web_port: int = 0

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.env = dict(self.env)
        # No metrics endpoints unless a test asks for one (a fixed default port is shared by the machine).
        for listen in ("WORKER_METRICS_LISTEN", "STASIS_METRICS_LISTEN", "MEDIA_METRICS_LISTEN"):
            self.env.setdefault(listen, "off")
        self.env.update(
            CELERY_QUEUE=self.queue,
            BEAT_LOCK_KEY=f"{self.queue}:beat-lock",
            PYTHONUNBUFFERED="1",
            **{PASSWORD_ENV: SIM_PASSWORD},
        )
        paths = [str(PROJECT_ROOT), self.env.get("PYTHONPATH")]
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))

    # ------------------------------------------------------------------------------------- processes
    def spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> Proc:
        log = self.directory / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
                [sys.executable, *argv],
                cwd=PROJECT_ROOT,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = Proc(name=name, popen=popen, log=log)
        self.procs.append(proc)
        return proc

    def start_sim(self, plan: dict[str, Any], *, extra: list[str] | None = None) -> Proc:
        plan_file = self.directory / "plan.json"
        plan_file.write_text(json.dumps(plan))
        self.sim_port = free_port()
        proc = self.spawn(
            "sim",
            ["-m", "telephony.sim", "--host", "127.0.0.1", "--port", str(self.sim_port),
             "--ari-user", SIM_USER, "--ari-password", SIM_PASSWORD, "--plan", str(plan_file),
             "--log-level", "WARNING", *(extra or [])],
        )  # fmt: skip
        wait_for(self._sim_up, timeout=20, what="the simulator")
        return proc

    def _sim_up(self) -> bool:
        try:
            with self.sim() as sim:
                return sim.get("/ari/asterisk/ping").status_code == 200
        except httpx.HTTPError:
            return False

    def start_media_sink(self) -> Proc:
        """A stand-in media worker that accepts AudioSocket legs and reads them to the end."""
        self.media_port = free_port()
        proc = self.spawn("media", ["-m", "tests.e2e.media_sink", "--port", str(self.media_port)])
        wait_for(lambda: _port_open(self.media_port), timeout=20, what="the media sink")
        return proc

    def start_realtime(self, *, mode: str = "test", extra: list[str] | None = None) -> Proc:
        """The Realtime-protocol stand-in (``python -m media.localai``): the speech model of the calls."""
        self.realtime_port = free_port()
        proc = self.spawn(
            "realtime",
            ["-m", "media.localai", "--mode", mode, "--port", str(self.realtime_port), *(extra or [])],
        )
        wait_for(lambda: _port_open(self.realtime_port), timeout=20, what="the Realtime stand-in")
        return proc

    def start_media_worker(
        self, *, port: int | None = None, name: str = "media", env: dict[str, str] | None = None
    ) -> Proc:
        """The real media worker (``python -m media``) on the stack's Redis and Celery queue, talking to the
        Realtime stand-in (start that first). ``port``: listen there (a restart where the Stasis app already
        sends its legs) instead of on a new free port."""
        assert self.realtime_port, "start_realtime() first"
        self.media_port = port or free_port()
        proc = self.spawn(
            name,
            ["-m", "media"],
            env={
                "MEDIA_LISTEN": f"127.0.0.1:{self.media_port}",
                "REALTIME_URL": f"ws://127.0.0.1:{self.realtime_port}/v1/realtime",
                "REALTIME_TRANSCRIBE_MODEL": "",
                "CELERY_BROKER_URL": celery_url_for(self.env["REDIS_URL"]),
                "MEDIA_DRAIN_S": "1",
                **(env or {}),
            },
        )
        wait_for(lambda: _port_open(self.media_port), timeout=20, what="the media worker")
        return proc

    def start_worker(
        self,
        name: str = "worker",
        *,
        concurrency: int = 4,
        pool: str = "threads",
        loglevel: str = "INFO",
        env: dict[str, str] | None = None,
        interpreter_args: list[str] | None = None,
    ) -> Proc:
        """A Celery worker on the stack's queue. ``interpreter_args`` go before ``-m celery`` (e.g.
        ``["-m", "cProfile", "-o", path]`` in a benchmark)."""
        return self.spawn(
            name,
            [*(interpreter_args or []), "-m", "celery", "-A", "orchestrator", "worker", f"--pool={pool}",
             "-c", str(concurrency), "-n", f"{name}-{self.queue}@%h", "--without-gossip", "--without-mingle",
             "--without-heartbeat", f"--loglevel={loglevel}"],
            env=env,
        )  # fmt: skip

    def start_beat(self, *, loglevel: str = "INFO", name: str = "beat") -> Proc:
        """Celery beat. A ``name`` other than "beat" (a restarted beat) gets a log and schedule of its own."""
        prefix = "" if name == "beat" else f"{name}-"
        schedule = self.directory / f"{prefix}celerybeat-schedule"
        return self.spawn(
            name,
            ["-m", "celery", "-A", "orchestrator", "beat", "-s", str(schedule), f"--loglevel={loglevel}"],
        )

    def start_sms_standin(
        self,
        *,
        auth_token: str,
        inbound_url: str = "",
        script: dict[str, Any] | None = None,
        status_delay: float = 0.05,
        name: str = "sms",
        port: int | None = None,
    ) -> Proc:
        """The SMS stand-in (``python -m telephony.sim.sms``): the Twilio API the product's SDK calls, signed
        status callbacks and scripted replies to ``inbound_url``. Its address: :attr:`sms_url`. ``port``: a
        port chosen beforehand (the other processes' TWILIO_API_BASE names it)."""
        script_file = self.directory / f"{name}-script.json"
        script_file.write_text(json.dumps(script or {}))
        self.sms_port = port or free_port()
        proc = self.spawn(
            name,
            ["-m", "telephony.sim.sms", "--port", str(self.sms_port), "--auth-token", auth_token,
             "--inbound-url", inbound_url, "--script", str(script_file), "--status-delay", str(status_delay),
             "--log-level", "WARNING"],
        )  # fmt: skip
        wait_for(lambda: _port_open(self.sms_port), timeout=20, what="the SMS stand-in")
        return proc

    @property
    def sms_url(self) -> str:
        return f"http://127.0.0.1:{self.sms_port}"

    def start_web(
        self,
        *,
        workers: int = 2,
        env: dict[str, str] | None = None,
        name: str = "web",
        port: int | None = None,
    ) -> Proc:
        """The web process as production runs it (gunicorn with uvicorn workers, deploy/gunicorn.conf.py) on a
        free port (or ``port``, chosen beforehand so that PUBLIC_BASE_URL can name it): :attr:`web_url`."""
        self.web_port = port or free_port()
        proc = self.spawn(
            name,
            ["-m", "gunicorn", "--config", "deploy/gunicorn.conf.py"],
            env={"WEB_BIND": f"127.0.0.1:{self.web_port}", "WEB_CONCURRENCY": str(workers), **(env or {})},
        )
        wait_for(lambda: _port_open(self.web_port), timeout=30, what="the web process")
        return proc

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start_stasis(self, pbx_id: int, *, env: dict[str, str] | None = None, name: str = "stasis") -> Proc:
        media = {"MEDIA_WORKER_HOSTS": f"127.0.0.1:{self.media_port}"} if self.media_port else {}
        return self.spawn(
            name, ["manage.py", "run_stasis", "--pbx", str(pbx_id)], env={**media, **(env or {})}
        )

    def wait_stasis_connected(self, timeout: float = 20) -> None:
        def connected() -> bool:
            with self.sim() as sim:
                apps = sim.get("/sim/stats").json()["apps"]
            return bool(apps.get(SIM_APP, {}).get("connected"))

        wait_for(connected, timeout=timeout, what="the Stasis app's websocket")

    # ------------------------------------------------------------------------------------ simulator
    def sim(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.sim_port}", auth=(SIM_USER, SIM_PASSWORD), timeout=10
        )

    @property
    def ari_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}/"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self, lines: int = 60) -> str:
        return "\n".join(f"----- {p.name} (exit {p.popen.poll()})\n{p.tail(lines)}" for p in self.procs)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
