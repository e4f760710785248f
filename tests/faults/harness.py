"""The moving parts of a fault test: the product's processes on the suite's own PostgreSQL and Redis, an
observer of the simulator's live calls, the faults themselves, and reads of the attempts.

Each fault is ``inject`` (the component dies or stops, at once) then ``recover`` (it comes back, as a
supervisor or an operator would bring it back, and the test waits until it is really back). The window
between the two, plus a grace for events in flight, is what :mod:`tests.faults.judge` calls a fault window.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from tests.e2e.stack import PROJECT_ROOT, Proc, Stack, wait_for
from tests.faults.judge import LIVE_STATES, AttemptRow, FaultWindow, LeadRow, media_served
from tests.faults.servers import PostgresServer, RedisServer

FAULTS = ("worker", "beat", "stasis", "media", "redis", "postgres")
PHASES = ("ringing", "answered", "bridged")
# After a component is back, events it delayed may still be landing.
WINDOW_GRACE = timedelta(seconds=5)
# Events a process had received but not yet acted on die with it: a fault window starts this much earlier.
IN_FLIGHT = timedelta(seconds=1)
# Seconds a component stays down. The Stasis app and the media worker stay down longer than the product
# needs to notice (DETECTION_GRACE), so that "no call placed while it is known down" is put to the test.
DOWNTIME_S: dict[str, tuple[float, float]] = {"stasis": (6.0, 8.0), "media": (6.0, 8.0)}
DEFAULT_DOWNTIME_S = (1.0, 3.0)
# DESIGN.md §5.9: calls are placed only while the PBX's Stasis app listens and a media worker is up. Both
# announce themselves with a heartbeat valid for 3 s, so a process killed with -9 counts as down at most
# 3 s later; 2 s more for a dispatch pass or an originate already under way.
DETECTION_GRACE = timedelta(seconds=5)
DISPATCH_NEEDS = frozenset({"stasis", "media"})


def now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------------------ observer
@dataclass
class Observer:
    """Polls the simulator's live calls as fast as it answers: the latest snapshot (for injecting a fault
    while some call is in a given phase) and the peak of live outbound calls per tenant (the caps), the
    tenant read from the channel variable the originate sets."""

    stack: Stack
    peaks: Counter[int] = field(default_factory=Counter)
    samples: int = 0
    errors: int = 0
    latest: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-observer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        with self.stack.sim() as sim:
            while not self._stop.is_set():
                try:
                    live = sim.get("/sim/calls", params={"state": "live"}).json()["calls"]
                except (httpx.HTTPError, ValueError, KeyError):
                    self.errors += 1
                    time.sleep(0.1)
                    continue
                outbound = [call for call in live if call["direction"] == "outbound"]
                per_tenant = Counter(int(call["variables"].get("TENANT_ID", -1)) for call in outbound)
                for tenant_id, count in per_tenant.items():
                    self.peaks[tenant_id] = max(self.peaks[tenant_id], count)
                self.latest = outbound
                self.samples += 1
                time.sleep(0.01)

    def calls_in(self, phase: str) -> list[dict[str, Any]]:
        """Live calls ringing, answered and not yet served by a media worker, or bridged to one."""
        calls = self.latest
        if phase == "ringing":
            return [c for c in calls if c["state"] == "ringing"]
        if phase == "answered":
            return [c for c in calls if c["state"] == "up" and not c.get("media")]
        if phase == "bridged":
            return [c for c in calls if c["state"] == "up" and media_served(c)]
        raise ValueError(phase)

    def wait_for_phase(self, phase: str, *, timeout: float) -> str:
        """Wait until a live call is in ``phase``; returns what was found. After the timeout the fault goes
        in anyway, and the record says so: "any" (calls were live, none in that phase) or "none"."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.calls_in(phase):
                return phase
            time.sleep(0.005)
        return "any" if self.latest else "none"


# -------------------------------------------------------------------------------------------------- faults
@dataclass
class Injection:
    fault: str
    phase: str  # the phase a live call was in when the fault went in (see Observer.wait_for_phase)
    live_calls: int
    injected_at: datetime
    recovered_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.fault}@{self.injected_at:%H:%M:%S.%f}"[:-3]

    def window(self) -> FaultWindow:
        """When calls may end without the product seeing it: from the fault to a little after recovery."""
        end = (self.recovered_at or now()) + WINDOW_GRACE
        return FaultWindow(self.name, self.injected_at - IN_FLIGHT, end, witness_lost=self.fault == "stasis")

    def outage(self) -> FaultWindow | None:
        """When no call may be placed (DESIGN.md §5.9): from the moment the product could know the Stasis
        app or the media worker is gone to the moment it is back. None for the other faults."""
        if self.fault not in DISPATCH_NEEDS or self.recovered_at is None:
            return None
        start = self.injected_at + DETECTION_GRACE
        return (
            FaultWindow(f"{self.name} outage", start, self.recovered_at)
            if start < self.recovered_at
            else None
        )


@dataclass
class FaultStack:
    """The product on the suite's servers: simulator, Realtime stand-in, media worker, Stasis app, one
    Celery worker and beat; and the faults on each of them."""

    stack: Stack
    postgres: PostgresServer
    redis: RedisServer
    database: str
    rng: random.Random
    pbx_id: int = 0
    restarts: Counter[str] = field(default_factory=Counter)
    expected_exits: set[str] = field(default_factory=set)  # beats that found the lock held, as designed

    # ------------------------------------------------------------------------------------ processes
    def proc(self, role: str) -> Proc:
        """The latest process started for ``role`` (its restarts are named ``<role>-2``, ...)."""
        named = [p for p in self.stack.procs if p.name == role or p.name.startswith(f"{role}-")]
        return named[-1]

    def _name(self, role: str) -> str:
        self.restarts[role] += 1
        return role if self.restarts[role] == 1 else f"{role}-{self.restarts[role]}"

    def start_worker(self) -> None:
        proc = self.stack.start_worker(self._name("worker"), concurrency=4)
        wait_for(lambda: " ready." in proc.log.read_text(errors="replace") or not proc.alive(),
                 timeout=60, what=f"{proc.name} to be ready", interval=0.1)  # fmt: skip
        assert proc.alive(), proc.tail()

    def start_beat(self) -> None:
        """A beat that holds the beat lock. A beat killed with -9 keeps the lock until its TTL lapses
        (orchestrator.beat_lock, 30 s); a new one exits with status 1 meanwhile, so it is started again,
        as its supervisor would, until one holds the lock."""
        deadline = time.monotonic() + 60
        while True:
            proc = self.stack.start_beat(name=self._name("beat"))
            wait_for(lambda p=proc: "holding " in p.log.read_text(errors="replace") or not p.alive(),
                     timeout=30, what=f"{proc.name} to take the beat lock or exit", interval=0.1)  # fmt: skip
            if proc.alive():
                return
            self.expected_exits.add(proc.name)
            if time.monotonic() > deadline:
                raise AssertionError(f"no beat could take the lock within 60 s:\n{proc.tail()}")
            time.sleep(1)

    def start_stasis(self) -> None:
        self.stack.start_stasis(self.pbx_id, name=self._name("stasis"))
        self.stack.wait_stasis_connected(timeout=30)

    def start_media(self) -> None:
        port = self.stack.media_port or None  # a restart listens where the Stasis app sends its legs
        self.stack.start_media_worker(port=port, name=self._name("media"))

    # ---------------------------------------------------------------------------------------- faults
    def died_on_their_own(self) -> list[str]:
        """Processes that exited though nobody killed or stopped them (call before stopping the stack)."""
        return [
            f"{proc.name} (exit {proc.popen.returncode})"
            for proc in self.stack.procs
            if not proc.alive() and proc.popen.returncode != -9 and proc.name not in self.expected_exits
        ]

    def inject(self, fault: str) -> None:
        if fault in ("worker", "beat", "stasis", "media"):
            self.proc(fault).kill9()
        elif fault == "redis":
            self.redis.stop()
        elif fault == "postgres":
            self.postgres.stop()
        else:
            raise ValueError(fault)

    def recover(self, fault: str) -> None:
        starts: dict[str, Callable[[], None]] = {
            "worker": self.start_worker,
            "beat": self.start_beat,
            "stasis": self.start_stasis,
            "media": self.start_media,
            "redis": self.redis.start,
            "postgres": self.postgres.start,
        }
        starts[fault]()

    def phases(self, count: int) -> list[str]:
        """The phases ``count`` injections aim at: drawn in a random order, all different while they last."""
        order = list(PHASES)
        self.rng.shuffle(order)
        return [order[i % len(order)] for i in range(count)]

    def fault_once(self, fault: str, observer: Observer, *, phase: str) -> Injection:
        """While a live call is in ``phase`` (ringing, answered or bridged), the fault; a few seconds later
        (DOWNTIME_S), the recovery."""
        found = observer.wait_for_phase(phase, timeout=15)
        injection = Injection(fault, found, len(observer.latest), now())
        self.inject(fault)
        time.sleep(self.rng.uniform(*DOWNTIME_S.get(fault, DEFAULT_DOWNTIME_S)))
        self.recover(fault)
        injection.recovered_at = now()
        return injection

    # ------------------------------------------------------------------------------------------ reads
    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        with self.postgres.connect(self.database) as conn:
            return list(conn.execute(sql.encode()).fetchall())

    def attempts(self) -> list[AttemptRow]:
        rows = self._query(
            "SELECT id::text, lead_id, tenant_id, number, state, outcome, queued_at, originate_sent_at,"
            " answered_at, ended_at, callback_at, error FROM campaigns_callattempt"
        )
        return [AttemptRow(*row) for row in rows]

    def leads(self) -> list[LeadRow]:
        rows = self._query(
            "SELECT l.id, c.phone_number, l.status, l.next_due_at"
            " FROM campaigns_lead l JOIN campaigns_contact c ON c.id = l.contact_id"
        )
        return [LeadRow(*row) for row in rows]

    def attempt_events(self, attempt_ids: list[str]) -> dict[str, list[str]]:
        """Each attempt's event log in short: state changes with their data, notes, ARI event types."""
        with self.postgres.connect(self.database) as conn:
            rows = conn.execute(
                b"SELECT attempt_id::text, at, kind, type, data FROM campaigns_attemptevent"
                b" WHERE attempt_id = ANY(%s::uuid[]) ORDER BY at, id",
                (attempt_ids,),
            ).fetchall()
        events: dict[str, list[str]] = {}
        for attempt_id, at, kind, type_, data in rows:
            attempt_id = str(attempt_id)
            shown = "" if kind == "ari" or not data else " " + json.dumps(data, default=str)[:300]
            events.setdefault(attempt_id, []).append(f"{at:%H:%M:%S.%f}"[:-3] + f" {kind} {type_}{shown}")
        return events

    def sim_calls(self) -> list[dict[str, Any]]:
        with self.stack.sim() as sim:
            calls: list[dict[str, Any]] = sim.get("/sim/calls", params={"state": "all"}).json()["calls"]
        return calls

    def wait_settled(self, *, timeout: float, quiet_s: float = 15) -> bool:
        """Until nothing is live (on the PBX and in the database) and every lead is done or waiting for a
        time past the run (a callback tomorrow): True. Or, when that does not come, until nothing has moved
        for ``quiet_s`` (no live call, no new attempt, no attempt ending): False, and the judge says what
        is stuck. Database errors (it may just have restarted) count as "not yet"."""
        deadline = time.monotonic() + timeout
        last_change, last_seen = time.monotonic(), None
        while time.monotonic() < deadline:
            try:
                attempts, leads = self.attempts(), self.leads()
                live_calls = [c for c in self.sim_calls() if c["state"] != "ended"]
            except (psycopg.Error, httpx.HTTPError):
                time.sleep(0.5)
                continue
            later = now() + timedelta(minutes=5)
            live = [a for a in attempts if a.state in LIVE_STATES]
            open_leads = [
                lead
                for lead in leads
                if lead.status not in ("done", "suppressed")
                and not (lead.status == "waiting" and lead.next_due_at and lead.next_due_at > later)
            ]
            if not live_calls and not live and not open_leads:
                return True
            seen = (len(attempts), len(live), len(live_calls), sum(1 for a in attempts if a.ended_at))
            if seen != last_seen:
                last_change, last_seen = time.monotonic(), seen
            elif not live_calls and time.monotonic() - last_change > quiet_s:
                return False
            time.sleep(0.5)
        return False


# ----------------------------------------------------------------------------------------------- set-up
def product_env(postgres: PostgresServer, redis_server: RedisServer, database: str) -> dict[str, str]:
    """What every product process of a fault test gets: the suite's servers, short call limits."""
    return {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": postgres.url(database),
        "REDIS_URL": redis_server.url,
        "DJANGO_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        # A placed attempt whose end never comes is bounded by ring timeout + this.
        "MAX_CALL_DURATION_S": "40",
        # Queued attempts whose originate task died with a killed worker get a new one after 5 s.
        "ATTEMPT_STALL_S": "5",
    }


def run_python(argv: list[str], *, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def migrate(env: dict[str, str]) -> None:
    run_python(["manage.py", "migrate", "--noinput"], env=env, timeout=300)


def seed(env: dict[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    out = run_python(["-m", "tests.faults.seed", json.dumps(spec)], env=env)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result
