"""Dispatch benchmark: many tenants dialing at their caps against the PBX simulator, end to end.

Target: 1,000 tenants × cap 5 against the simulator, calls of a few seconds; at least 200
originates/s sustained, slot freed → next originate latency p99 ≤ 250 ms, zero cap violations. Run::

    python bench/dispatch.py                      # the defaults are the target's scenario
    python bench/dispatch.py --tenants 100 --measure 20 --warmup 10   # a quick look

What it does (see bench/README.md for every figure):

1. drops and creates its own PostgreSQL database (``--db-name``, default ``bench_dispatch``) and migrates it
   (``manage.py migrate``); flushes its own Redis database (``--redis-url``, default db 9) and nothing else;
2. starts the product's processes with ``tests.e2e.stack.Stack``: the PBX simulator (every number answers
   after ``--answer-after`` s and hangs up ``--talk`` s later), the stand-in media worker (swallows the
   AudioSocket legs), the Stasis app (one, for the one PBX),
   ``--workers`` Celery workers and beat;
3. seeds ``--tenants`` tenants (cap ``--cap``), all placed on one platform PBX (the simulator), each with one
   running campaign and ``--leads`` due leads (numbers ``+1555TTTTLLL``: tenant T, lead L), so that the
   tenant of every simulated call is known from its number;
4. lets the tenants dial (beat's sweep, then the on-end triggers), waits ``--warmup`` s, measures for
   ``--measure`` s: samples ``/sim/calls?state=live`` and the processes' CPU from ``/proc`` every
   ``--sample-interval`` s; afterwards reads every call from the simulator and every attempt from the
   database and computes the figures;
5. prints progress on stderr, a summary, and ONE JSON object on the last line of stdout; exits 0 when the
   targets are met, 1 otherwise. Every wait is bounded; the processes are stopped on every exit path.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.stack import PASSWORD_ENV, SIM_APP, SIM_USER, Proc, Stack, zone_where_it_is  # noqa: E402

NUMBER_PREFIX = "+1555"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ALL_DAY = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[dispatch +{time.monotonic() - STARTED:7.2f}s] {message}", file=sys.stderr, flush=True)


def number_for(tenant_index: int, lead_index: int) -> str:
    return f"{NUMBER_PREFIX}{tenant_index:04d}{lead_index:03d}"


def tenant_index_of(number: str) -> int | None:
    digits = number.lstrip("+")
    if not digits.startswith(NUMBER_PREFIX[1:]) or len(digits) != 11:
        return None
    return int(digits[4:8])


def open_zone() -> str:
    """A fixed-offset zone where it is about 14:00 now: the calling window is open for the whole run."""
    return zone_where_it_is(14)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def parse_ts(value: str | None) -> float | None:
    return None if not value else datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------------------------------------ /proc


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of one process, in seconds (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_tree(pid: int) -> list[int]:
    """The process and its descendants (prefork pool children)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children[ppid].append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def pids_matching(fragment: bytes) -> list[int]:
    """Processes whose command line contains ``fragment`` (PostgreSQL backends name their database)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if fragment in cmdline:
            pids.append(int(entry))
    return pids


def machine_busy_s() -> float:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / CLK_TCK


@dataclass
class CpuMeter:
    """CPU seconds per group of processes between :meth:`start` and :meth:`stop`, sampled in between so
    that processes which exit during the window (short-lived database backends) still count up to their
    last sample."""

    groups: dict[str, Any]  # name -> callable returning the pids of the group now
    first: dict[str, dict[int, float]] = field(default_factory=dict)
    last: dict[str, dict[int, float]] = field(default_factory=dict)
    machine: list[float] = field(default_factory=list)

    def sample(self) -> None:
        for name, pids_of in self.groups.items():
            seen = self.last.setdefault(name, {})
            base = self.first.setdefault(name, {})
            for pid in pids_of():
                cpu = proc_cpu_s(pid)
                if cpu is None:
                    continue
                if pid not in seen and pid not in base:
                    # Born during the window: it starts from zero (its CPU before the first sample counts).
                    base[pid] = 0.0 if self.machine else cpu
                seen[pid] = cpu
        self.machine.append(machine_busy_s())

    def totals(self) -> dict[str, float]:
        return {
            name: round(sum(cpu - self.first[name].get(pid, 0.0) for pid, cpu in self.last[name].items()), 3)
            for name in self.groups
        }

    def machine_busy(self) -> float:
        return self.machine[-1] - self.machine[0] if len(self.machine) > 1 else 0.0


# --------------------------------------------------------------------------------------------- database


def recreate_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def migrate(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{result.stdout}\n{result.stderr}")


def seed(args: argparse.Namespace, ari_url: str) -> tuple[int, dict[int, int]]:
    """Tenants, PBX rows, campaigns, contacts and due leads in bulk; returns (a PBX id, tenant id → index)."""
    from campaigns.models import AgentProfile, Campaign, Contact, Lead, Pbx, PbxPlacement
    from tenants.models import Tenant

    zone = open_zone()
    now = datetime.now(UTC)
    tenants = Tenant.objects.bulk_create(
        [
            Tenant(
                name=f"Bench tenant {i}",
                slug=f"bench-{i}",
                max_concurrent_calls=args.cap,
                calls_per_second=args.tenant_cps,
            )
            for i in range(args.tenants)
        ],
        batch_size=1000,
    )
    index_of = {tenant.pk: i for i, tenant in enumerate(tenants)}
    # One Asterisk (the simulator) as a platform PBX with every tenant placed on it, as a deployment has it.
    pbx = Pbx.objects.create(
        name="sim",
        ari_url=ari_url,
        ari_user=SIM_USER,
        password_env=PASSWORD_ENV,
        app_name=SIM_APP,
        endpoint_template="PJSIP/{number}@trunk",
        max_channels=args.cap * 10 * len(tenants),
        calls_per_second=args.pbx_cps,
    )
    PbxPlacement.objects.bulk_create(
        [PbxPlacement(tenant=tenant, pbx=pbx) for tenant in tenants], batch_size=1000
    )
    agents = AgentProfile.objects.bulk_create(
        [AgentProfile(tenant=tenant, name="agent", instructions="Hi.") for tenant in tenants], batch_size=1000
    )
    campaigns = Campaign.objects.bulk_create(
        [
            Campaign(
                tenant=tenant,
                agent=agent,
                name="bench",
                caller_id="+14155550100",
                status=Campaign.Status.RUNNING,
                calling_windows=ALL_DAY,
                max_concurrent_calls=args.cap,
                max_attempts=1,
                ring_timeout=30,
            )
            for tenant, agent in zip(tenants, agents, strict=True)
        ],
        batch_size=1000,
    )
    for first in range(0, len(tenants), 100):
        chunk = list(zip(tenants[first : first + 100], campaigns[first : first + 100], strict=True))
        contacts = Contact.objects.bulk_create(
            [
                Contact(tenant=tenant, phone_number=number_for(index_of[tenant.pk], k), timezone=zone)
                for tenant, _ in chunk
                for k in range(args.leads)
            ],
            batch_size=5000,
        )
        campaign_of = {campaign.tenant_id: campaign for _, campaign in chunk}
        Lead.objects.bulk_create(
            [
                # Due in lead order, so each tenant dials its leads oldest-due first, as in production.
                Lead(
                    campaign=campaign_of[contact.tenant_id],
                    contact=contact,
                    next_due_at=now - timedelta(seconds=args.leads - k % args.leads),
                )
                for k, contact in enumerate(contacts)
            ],
            batch_size=5000,
        )
    return pbx.pk, index_of


# --------------------------------------------------------------------------------------------- analysis


def cap_overlaps(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t)."""
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, delta in points:
        current += delta
        most = max(most, current)
    return most


def slot_latencies(
    ends: list[float], starts: list[float], window: tuple[float, float]
) -> tuple[list[float], int]:
    """Pair every call end of a tenant with the tenant's next originate (first in, first out); returns the
    latencies of the ends inside ``window`` and how many of those were never followed by an originate."""
    events = sorted([(t, 0) for t in ends] + [(t, 1) for t in starts])
    pending: list[float] = []
    latencies: list[float] = []
    head = 0
    for t, kind in events:
        if kind == 0:
            pending.append(t)
        elif head < len(pending):
            ended = pending[head]
            head += 1
            if window[0] <= ended <= window[1]:
                latencies.append(t - ended)
    unfilled = sum(1 for t in pending[head:] if window[0] <= t <= window[1])
    return latencies, unfilled


# ------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, prog="bench/dispatch.py"
    )
    add = parser.add_argument
    add("--tenants", type=int, default=1000, help="tenants (default 1000; at most 10000)")
    add("--cap", type=int, default=5, help="concurrent calls per tenant and per campaign (default 5)")
    add("--leads", type=int, default=0, help="due leads per tenant (default: enough for the whole run)")
    add("--answer-after", type=float, default=1.0, help="seconds each callee rings before answering (1.0)")
    add("--talk", type=float, default=3.0, help="seconds from answer until the callee hangs up (3.0)")
    add("--workers", type=int, default=2, help="Celery worker processes (default 2)")
    add("--concurrency", type=int, default=8, help="threads (or processes) per worker (default 8)")
    add("--pool", default="threads", help="Celery pool: threads, prefork, solo, ... (default threads)")
    add("--warmup", type=float, default=30.0, help="seconds of dialing before the measurement (30)")
    add("--measure", type=float, default=60.0, help="seconds of measurement (60)")
    add("--sample-interval", type=float, default=2.0, help="seconds between live-call samples (2)")
    add("--tenant-cps", type=int, default=50, help="calls_per_second of each tenant (50)")
    add("--pbx-cps", type=int, default=1000, help="calls_per_second of the (one, shared) PBX (1000)")
    add("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server (no database part)")
    add("--db-name", default="bench_dispatch", help="database to drop, create and use (bench_dispatch)")
    add("--redis-url", default="redis://127.0.0.1:6379/9", help="Redis database to FLUSH and use (db 9)")
    add("--log-level", default="WARNING", help="LOG_LEVEL of the product's processes (WARNING)")
    add("--worker-log-level", default="WARNING", help="celery worker/beat --loglevel (WARNING)")
    add(
        "--profile-dir",
        default="",
        help="cProfile each worker (main thread only: use --pool solo) into this dir",
    )
    add("--min-rate", type=float, default=200.0, help="target: sustained originates/s (200)")
    add("--max-p99-ms", type=float, default=250.0, help="target: slot freed → originate p99, ms (250)")
    add("--keep", action="store_true", help="keep the stack's directory (logs) after the run")
    add("--budget", type=float, default=0.0, help="hard deadline of the run in s (default: 600 + phases)")
    return parser


class Deadline(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.tenants <= 10000 or args.cap < 1:
        raise SystemExit("--tenants must be 1..10000 and --cap at least 1")
    call_s = args.answer_after + args.talk
    if args.leads <= 0:
        # Each slot places a call every ~call_s at most, and the whole system no more than ~500/s (far
        # above this machine): 1.5 times the smaller of the two, plus a margin, never runs dry.
        per_tenant_rate = min(args.cap / max(call_s, 0.5), 500 / args.tenants)
        args.leads = min(999, int(1.5 * per_tenant_rate * (args.warmup + args.measure + 30)) + 10)
    budget = args.budget or (600 + args.warmup + args.measure)
    db_url = f"{args.pg}/{args.db_name}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "orchestrator.settings",
        "DATABASE_URL": db_url,
        "REDIS_URL": args.redis_url,
        "DEBUG": "1",
        "LOG_LEVEL": args.log_level,
        "PHONE_TEST_PREFIXES": NUMBER_PREFIX,
    }
    env.pop("PYTHONPATH", None)
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "DEBUG")})
    os.environ.update(PHONE_TEST_PREFIXES=NUMBER_PREFIX, LOG_LEVEL=args.log_level)
    return run_in_stack(
        lambda stack: run(args, stack, db_url),
        env=env, budget=budget, prefix="bench-dispatch-", keep=args.keep, log=log, log_lines=20,
    )  # fmt: skip


def run_in_stack(
    run: Callable[[Stack], dict[str, Any]],
    *,
    env: dict[str, str],
    budget: float,
    prefix: str,
    keep: bool,
    log: Callable[[str], None],
    log_lines: int,
) -> int:
    """Run a benchmark against product processes of its own (a :class:`Stack` in a temporary directory),
    within ``budget`` seconds: SIGTERM or the deadline interrupt it, the processes are stopped on every
    path, and an interrupted run prints ``{"ok": false, ...}`` as its last line. The exit code: 0 when the
    result is ``ok``."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Deadline(f"the run exceeded its budget of {budget:.0f} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.alarm(int(budget))
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    stack = Stack(directory=directory, env=env)
    result: dict[str, Any] | None
    try:
        result = run(stack)
    except (KeyboardInterrupt, Deadline) as exc:
        log(f"interrupted: {exc!r}")
        print(stack.logs(log_lines), file=sys.stderr)
        result = None
    finally:
        signal.alarm(0)
        log("stopping the processes")
        stack.stop()
        if not keep:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)
        else:
            log(f"logs kept in {directory}")
    if result is None:
        print(json.dumps({"ok": False, "error": "interrupted"}))
        return 1
    return 0 if result["ok"] else 1


def run(args: argparse.Namespace, stack: Stack, db_url: str) -> dict[str, Any]:
    import redis

    log(f"database {args.db_name}: drop, create, migrate")
    recreate_database(args.pg, args.db_name)
    migrate(stack.env)
    redis.Redis.from_url(args.redis_url).flushdb()

    import django

    django.setup()
    from django.db import connection

    plan = {"default": {"behaviour": "answer", "after": args.answer_after, "hangup_after": args.talk}}
    stack.start_sim(plan)
    log(f"simulator on port {stack.sim_port}")
    seeded = time.monotonic()
    pbx_id, index_of = seed(args, stack.ari_url)
    log(
        f"seeded {args.tenants} tenants × {args.leads} leads in {time.monotonic() - seeded:.1f} s "
        f"(cap {args.cap}, calls of {args.answer_after:g} s ring + {args.talk:g} s talk)"
    )
    connection.close()

    stack.start_media_sink()
    stasis = stack.start_stasis(pbx_id)
    stack.wait_stasis_connected(timeout=60)
    workers: list[Proc] = []
    for k in range(args.workers):
        profile: list[str] = []
        if args.profile_dir:
            Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
            profile = ["-m", "cProfile", "-o", str(Path(args.profile_dir).resolve() / f"worker{k}.prof")]
        workers.append(
            stack.start_worker(
                f"worker{k}",
                concurrency=args.concurrency,
                pool=args.pool,
                loglevel=args.worker_log_level,
                interpreter_args=profile,
            )
        )
    beat = stack.start_beat(loglevel=args.worker_log_level)
    dial_started = time.time()
    log(f"{args.workers} worker(s) ({args.pool} × {args.concurrency}), beat and Stasis app started")

    groups: dict[str, Any] = {
        "workers": lambda: [pid for w in workers for pid in proc_tree(w.popen.pid)],
        "beat": lambda: proc_tree(beat.popen.pid),
        "stasis": lambda: proc_tree(stasis.popen.pid),
        "postgres": lambda: pids_matching(f" {args.db_name} ".encode()),
        "redis": lambda: pids_matching(b"redis-server"),
        "sim": lambda: [p.popen.pid for p in stack.procs if p.name == "sim"],
        "media": lambda: [p.popen.pid for p in stack.procs if p.name == "media"],
    }
    meter = CpuMeter(groups)
    live_peak: dict[int, int] = defaultdict(int)
    samples = violations = 0
    sample_ms: list[float] = []
    with stack.sim() as sim:
        warm_until = time.monotonic() + args.warmup
        while time.monotonic() < warm_until:
            time.sleep(min(5.0, max(0.0, warm_until - time.monotonic())))
            check_alive(stack)
            stats = sim.get("/sim/stats").json()
            log(f"warm-up: {stats['live_calls']} live calls, {stats['ended_calls']} ended")
        window_start = time.time()
        meter.sample()
        end_at = time.monotonic() + args.measure
        next_log = time.monotonic() + 10
        while time.monotonic() < end_at:
            t0 = time.monotonic()
            calls = sim.get("/sim/calls", params={"state": "live"}).json()["calls"]
            sample_ms.append((time.monotonic() - t0) * 1000)
            per_tenant: dict[int, int] = defaultdict(int)
            for call in calls:
                index = tenant_index_of(call.get("number") or "")
                if index is not None:
                    per_tenant[index] += 1
            samples += 1
            for index, n in per_tenant.items():
                live_peak[index] = max(live_peak[index], n)
                if n > args.cap:
                    violations += 1
            meter.sample()
            if time.monotonic() >= next_log:
                next_log += 10
                log(f"measuring: {len(calls)} live calls in the last sample")
                check_alive(stack)
            time.sleep(
                max(0.0, min(args.sample_interval - (time.monotonic() - t0), end_at - time.monotonic()))
            )
        meter.sample()
        window_end = time.time()
        cpu = meter.totals()
        machine_busy = meter.machine_busy()
        # Let the originates of ends near the window's end happen before reading everything.
        time.sleep(2.0)
        t0 = time.monotonic()
        all_calls = sim.get("/sim/calls", params={"state": "all"}, timeout=60).json()["calls"]
        log(f"read {len(all_calls)} calls from the simulator in {time.monotonic() - t0:.1f} s")
        final_stats = sim.get("/sim/stats").json()

    result = analyse(
        args,
        all_calls=all_calls,
        index_of=index_of,
        window=(window_start, window_end),
        dial_started=dial_started,
        cpu=cpu,
        machine_busy=machine_busy,
        live_samples=samples,
        live_violations=violations,
        live_peak=max(live_peak.values(), default=0),
        sample_ms=sample_ms,
        sim_stats=final_stats,
    )
    print_summary(result)
    print(json.dumps(result, sort_keys=False))
    return result


def check_alive(stack: Stack) -> None:
    dead = [p.name for p in stack.procs if not p.alive()]
    if dead:
        raise RuntimeError(f"process(es) exited: {', '.join(dead)}\n{stack.logs(30)}")


def analyse(
    args: argparse.Namespace,
    *,
    all_calls: list[dict[str, Any]],
    index_of: dict[int, int],
    window: tuple[float, float],
    dial_started: float,
    cpu: dict[str, float],
    machine_busy: float,
    live_samples: int,
    live_violations: int,
    live_peak: int,
    sample_ms: list[float],
    sim_stats: dict[str, Any],
) -> dict[str, Any]:
    from django.db.models import Count, Q

    from campaigns.models import CallAttempt, Lead

    w0, w1 = window
    length = w1 - w0

    # --- the simulator's view: originates (channel created) and ends, per tenant
    sim_starts: dict[int, list[float]] = defaultdict(list)
    sim_ends: dict[int, list[float]] = defaultdict(list)
    sim_intervals: dict[int, list[tuple[float, float]]] = defaultdict(list)
    oldest_ended = min((parse_ts(c.get("ended_at")) or 1e18 for c in all_calls), default=1e18)
    for call in all_calls:
        index = tenant_index_of(call.get("number") or "")
        created = parse_ts(call.get("created_at"))
        if index is None or created is None:
            continue
        ended = parse_ts(call.get("ended_at"))
        sim_starts[index].append(created)
        if ended is not None:
            sim_ends[index].append(ended)
        sim_intervals[index].append((created, ended if ended is not None else 1e18))
    originates = sum(1 for starts in sim_starts.values() for t in starts if w0 <= t < w1)
    history_complete = oldest_ended < w0 - (args.answer_after + args.talk) * 2

    # --- tenants that still had due leads at the end never ran dry during the window
    now = datetime.now(UTC)
    tenant_by_index = {i: pk for pk, i in index_of.items()}
    with_due = set(
        Lead.objects.filter(status=Lead.Status.WAITING, next_due_at__lte=now)
        .values("campaign__tenant")
        .annotate(n=Count("pk"))
        .values_list("campaign__tenant", flat=True)
    )
    latencies: list[float] = []
    unfilled = 0
    dry = 0
    sim_violations = 0
    for index in sim_starts.keys() | sim_ends.keys():
        if cap_overlaps(sim_intervals[index]) > args.cap:
            sim_violations += 1
        if tenant_by_index.get(index) not in with_due:
            dry += 1
            continue
        values, missing = slot_latencies(sim_ends[index], sim_starts[index], (w0, w1 - 1.0))
        latencies.extend(values)
        unfilled += missing

    # --- the database's view: [originate sent, end recorded] per tenant, and the same latency
    db_intervals: dict[int, list[tuple[float, float]]] = defaultdict(list)
    db_starts: dict[int, list[float]] = defaultdict(list)
    db_ends: dict[int, list[float]] = defaultdict(list)
    rows = CallAttempt.objects.filter(originate_sent_at__isnull=False).values_list(
        "tenant_id", "originate_sent_at", "ended_at"
    )
    db_originates = 0
    for tenant_id, sent_at, ended_at in rows.iterator(chunk_size=5000):
        assert sent_at is not None  # noqa: S101 - filtered above
        start = sent_at.timestamp()
        db_originates += w0 <= start < w1
        end = ended_at.timestamp() if ended_at is not None else 1e18
        db_intervals[tenant_id].append((start, end))
        db_starts[tenant_id].append(start)
        if ended_at is not None:
            db_ends[tenant_id].append(end)
    db_violations = sum(1 for spans in db_intervals.values() if cap_overlaps(spans) > args.cap)
    db_latencies: list[float] = []
    for tenant_id in db_starts.keys() & with_due:
        values, _ = slot_latencies(db_ends[tenant_id], db_starts[tenant_id], (w0, w1 - 1.0))
        db_latencies.extend(values)
    states = dict(
        CallAttempt.objects.values("state").annotate(n=Count("pk")).values_list("state", "n").order_by()
    )
    errors = CallAttempt.objects.filter(Q(outcome="error") | ~Q(error="")).count()
    duplicates = len(all_calls) - len({c.get("id") for c in all_calls})

    rate = originates / length if length > 0 else 0.0
    p50 = percentile(latencies, 50)
    p99 = percentile(latencies, 99)
    orchestrator_cpu = cpu["workers"] + cpu["beat"] + cpu["stasis"]

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    def per(value: float) -> float | None:
        return round(value / originates * 1000, 3) if originates else None

    ok = (
        rate >= args.min_rate
        and p99 is not None
        and p99 * 1000 <= args.max_p99_ms
        and unfilled == 0
        and live_violations == 0
        and sim_violations == 0
        and db_violations == 0
        and duplicates == 0
    )
    return {
        "ok": ok,
        "tenants": args.tenants,
        "cap": args.cap,
        "call_s": args.answer_after + args.talk,
        "offered_originates_per_s": round(args.tenants * args.cap / (args.answer_after + args.talk), 1),
        "workers": args.workers,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "window_s": round(length, 1),
        "originates": originates,
        "originates_per_s": round(rate, 1),
        "db_originates_per_s": round(db_originates / length, 1) if length > 0 else 0.0,
        "slot_to_originate_ms_p50": ms(p50),
        "slot_to_originate_ms_p99": ms(p99),
        "slot_to_originate_ms_max": ms(max(latencies, default=None) if latencies else None),
        "slot_samples": len(latencies),
        "slots_unfilled": unfilled,
        "db_slot_to_originate_ms_p50": ms(percentile(db_latencies, 50)),
        "db_slot_to_originate_ms_p99": ms(percentile(db_latencies, 99)),
        "tenants_without_due_leads": dry,
        "cap_violations": live_violations + sim_violations + db_violations,
        "cap_violation_live_samples": live_violations,
        "cap_violation_tenants_sim": sim_violations,
        "cap_violation_tenants_db": db_violations,
        "live_samples": live_samples,
        "live_peak_per_tenant": live_peak,
        "live_sample_ms_p50": round(percentile(sample_ms, 50) or 0, 1),
        "duplicate_channel_ids": duplicates,
        "attempt_errors": errors,
        "attempts_by_state": states,
        "sim_history_complete": history_complete,
        "cpu_ms_per_originate": per(orchestrator_cpu),
        "cpu_ms_per_originate_workers": per(cpu["workers"]),
        "cpu_ms_per_originate_beat": per(cpu["beat"]),
        "cpu_ms_per_originate_stasis": per(cpu["stasis"]),
        "cpu_ms_per_originate_postgres": per(cpu["postgres"]),
        "cpu_ms_per_originate_redis": per(cpu["redis"]),
        "cpu_ms_per_originate_sim": per(cpu["sim"]),
        "cpu_ms_per_originate_media": per(cpu["media"]),
        "cpu_cores": {name: round(value / length, 2) for name, value in cpu.items()} if length else {},
        "machine_busy_cores": round(machine_busy / length, 2) if length else None,
        "dial_to_window_s": round(w0 - dial_started, 1),
        "sim_events_dropped": sim_stats.get("events_dropped"),
    }


def print_summary(r: dict[str, Any]) -> None:
    lines = [
        "",
        f"dispatch benchmark: {r['tenants']} tenants × cap {r['cap']}, calls of {r['call_s']:g} s "
        f"(offered {r['offered_originates_per_s']}/s), {r['workers']} × {r['pool']} × {r['concurrency']}",
        f"  window                       {r['window_s']} s, after {r['dial_to_window_s']} s of dialing",
        f"  sustained originates/s       {r['originates_per_s']} (database: {r['db_originates_per_s']})",
        f"  slot freed → originate p50   {r['slot_to_originate_ms_p50']} ms   "
        f"p99 {r['slot_to_originate_ms_p99']} ms   max {r['slot_to_originate_ms_max']} ms  "
        f"({r['slot_samples']} slots, {r['slots_unfilled']} unfilled)",
        f"    (database times)     p50   {r['db_slot_to_originate_ms_p50']} ms   p99 "
        f"{r['db_slot_to_originate_ms_p99']} ms",
        f"  cap violations               {r['cap_violations']} "
        f"(live samples {r['cap_violation_live_samples']} of {r['live_samples']}, "
        f"sim tenants {r['cap_violation_tenants_sim']}, db tenants "
        f"{r['cap_violation_tenants_db']}; peak live per tenant {r['live_peak_per_tenant']})",
        f"  CPU per originate            {r['cpu_ms_per_originate']} ms orchestrator (workers "
        f"{r['cpu_ms_per_originate_workers']}, beat {r['cpu_ms_per_originate_beat']}, Stasis "
        f"{r['cpu_ms_per_originate_stasis']}); PostgreSQL {r['cpu_ms_per_originate_postgres']}, Redis "
        f"{r['cpu_ms_per_originate_redis']}; simulator {r['cpu_ms_per_originate_sim']}, media "
        f"{r['cpu_ms_per_originate_media']}",
        f"  CPU cores                    {r['cpu_cores']}; machine busy {r['machine_busy_cores']}",
        f"  attempts                     {r['attempts_by_state']}, errors {r['attempt_errors']}, duplicate "
        f"channel ids {r['duplicate_channel_ids']}",
        f"  targets met                  {r['ok']}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
