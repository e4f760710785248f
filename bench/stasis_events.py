"""Benchmark of the Stasis app's event handling: ARI events in, call events out, call attempts updated.

Requirement: *the Stasis app's event loop never blocks on the database; event handling keeps up with at
least 3,000 ARI events/s.* Run from the repository root::

    python bench/stasis_events.py                      # both phases, 3,000 events/s target
    python bench/stasis_events.py --events 60000 --rate 3000
    python bench/stasis_events.py --help

Two processes take part:

* this one (the *driver*) runs :class:`telephony.stasis.StasisApp` exactly as ``manage.py run_stasis`` does
  (``asyncio.run``, the default event loop), a loop-lag probe, and, for phase B, the real
  :class:`campaigns.sink.AttemptEventSink` against PostgreSQL;
* a fake Asterisk (this file with ``--role server``, on uvloop when installed): ``/ari/events`` (websocket)
  plus the few REST resources the app uses. It pushes realistic ARI event sequences (shapes from recorded
  Asterisk 22 traces: ``Dial``, ``ChannelStateChange``, ``StasisStart``, ``ChannelDtmfReceived``,
  ``ChannelHangupRequest``, ``StasisEnd``, ``ChannelVarset``, ``ChannelDestroyed`` with causes) for many
  interleaved outbound calls of a PJSIP trunk. Its REST resources answer at once (bridge, externalMedia,
  addChannel: 200/204; ``GET /channels`` and ``/bridges``: ``[]``); they do not generate the events a real
  Asterisk would send for the AudioSocket legs.

Phases:

A. **event loop**: a no-op sink; the server sends as fast as the socket takes it (``--rate-a``, 0 = no
   pacing). Measures ARI events/s handled by the app (websocket → ``_on_text`` → call events queued) and
   the loop's lag.
B. **end to end**: the real sink against PostgreSQL (database ``--db-name``, created and migrated by the
   benchmark). Tenants, campaigns, leads and one attempt per call are created first (attempt id = channel
   id); the attempts are moved to ``dialing`` once the app is connected (as the originate would). The
   server paces at ``--rate`` ARI events/s. Measures events/s in, call events applied/s, the delay from the
   ARI event's receipt to its commit (p50/p99/max), the sink's backlog, the loop's lag, and checks the rows.

Prints progress on stderr, a summary, and ONE JSON object on the last line of stdout. Exit code 0 when the
target is met (see ``--help`` and bench/README.md), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
USER = "bench"
PASSWORD = "bench"  # noqa: S105 - throwaway credential of a fake Asterisk on 127.0.0.1
APP = "bench_agent"
ASTERISK_ID = "02:fc:00:00:00:01"
LAG_INTERVAL_S = 0.005
SLOW_WRITE_S = 0.1  # Asterisk's websocket_write_timeout: a write blocked longer drops the connection

SCENARIOS = ("answered", "busy", "no_answer", "rejected")
# Call events the app emits per scenario, not counting CallBridged (answered: ringing, answered, dtmf, ended;
# CallBridged too when the media set-up finished before the call ended).
CALL_EVENTS = {"answered": 4, "busy": 2, "no_answer": 2, "rejected": 1}
OUTCOMES = {"answered": "answered", "busy": "busy", "no_answer": "no_answer", "rejected": "rejected"}


def log(started: float, message: str) -> None:
    print(f"[+{time.monotonic() - started:7.2f}s] {message}", file=sys.stderr, flush=True)


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))]


# ------------------------------------------------------------------------------------------ ARI events


def _ts(base: datetime, ms: int) -> str:
    return (base + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _channel(call_id: str, n: int, state: str, created: str, *, in_stasis: bool) -> dict[str, Any]:
    dialplan = (
        {"context": "default", "exten": "s", "priority": 1, "app_name": "Stasis", "app_data": ""}
        if in_stasis
        else {"context": "default", "exten": "s", "priority": 1, "app_name": "AppDial2", "app_data": ""}
    )
    if in_stasis:
        dialplan["app_data"] = f"{APP},outbound,{call_id}"
    else:
        dialplan["app_data"] = "(Outgoing Line)"
    return {
        "id": call_id,
        "name": f"PJSIP/trunk-{n:08x}",
        "state": state,
        "protocol_id": f"{n:x}-bench@10.0.0.1",
        "caller": {"name": "Acme", "number": "+14155550100"},
        "connected": {"name": "", "number": f"+1212555{n % 10000:04d}"},
        "accountcode": "",
        "dialplan": dialplan,
        "creationtime": created,
        "language": "en",
    }


def call_events(call_id: str, n: int, scenario: str) -> list[dict[str, Any]]:
    """The ARI events Asterisk 22 sends an app for one outbound PJSIP call that ends as ``scenario``."""
    base = datetime(2026, 11, 24, 5, 22, 31, tzinfo=UTC) + timedelta(seconds=n % 86400)
    created = _ts(base, 0)
    events: list[dict[str, Any]] = []

    def add(kind: str, ms: int, **fields: Any) -> None:
        event: dict[str, Any] = {"type": kind, "timestamp": _ts(base, ms)}
        event.update(fields)
        event["asterisk_id"] = ASTERISK_ID
        event["application"] = APP
        events.append(event)

    def ch(state: str, *, in_stasis: bool = False) -> dict[str, Any]:
        return _channel(call_id, n, state, created, in_stasis=in_stasis)

    dial = {"forward": "", "dialstring": f"trunk/sip:+1212555{n % 10000:04d}@carrier"}
    add("Dial", 1, dialstatus="", peer=ch("Down"), **dial)
    if scenario == "rejected":
        add("ChannelHangupRequest", 180, cause=21, tech_cause=603, channel=ch("Down"))
        add("ChannelDestroyed", 181, cause=21, cause_txt="Call Rejected", tech_cause=603, channel=ch("Down"))
        add("Dial", 182, dialstatus="NOANSWER", peer=ch("Down"), **dial)
        return events
    add("Dial", 900, dialstatus="RINGING", peer=ch("Ringing"), **dial)
    add("ChannelStateChange", 901, channel=ch("Ringing"))
    if scenario == "busy":
        add("Dial", 3000, dialstatus="BUSY", peer=ch("Busy"), **dial)
        add("ChannelHangupRequest", 3001, cause=17, tech_cause=486, channel=ch("Busy"))
        add("ChannelDestroyed", 3002, cause=17, cause_txt="User busy", tech_cause=486, channel=ch("Busy"))
        return events
    if scenario == "no_answer":
        add("ChannelDestroyed", 30000, cause=19, cause_txt="User alerting, no answer", channel=ch("Ringing"))
        return events
    add("ChannelStateChange", 6000, channel=ch("Up"))
    add("Dial", 6001, dialstatus="ANSWER", peer=ch("Up"), **dial)
    add("ChannelVarset", 6002, variable="STASISSTATUS", value="", channel=ch("Up"))
    add("StasisStart", 6003, args=["outbound", call_id], channel=ch("Up", in_stasis=True))
    add("ChannelDtmfReceived", 9000, digit="1", duration_ms=100, channel=ch("Up", in_stasis=True))
    add("ChannelHangupRequest", 40000, cause=16, channel=ch("Up", in_stasis=True))
    add("StasisEnd", 40001, channel=ch("Up", in_stasis=True))
    add("ChannelVarset", 40002, variable="STASISSTATUS", value="SUCCESS", channel=ch("Up"))
    add("ChannelDestroyed", 40003, cause=16, cause_txt="Normal Clearing", channel=ch("Up"))
    return events


EVENTS_PER_SCENARIO = {s: len(call_events("x", 0, s)) for s in SCENARIOS}


@dataclass(frozen=True)
class CallPlan:
    call_id: str
    scenario: str


def plan_calls(events: int, mix: dict[str, float], rng: random.Random) -> list[CallPlan]:
    """Calls (scenario drawn from ``mix``) until their ARI events add up to at least ``events``."""
    names = list(mix)
    weights = [mix[s] for s in names]
    calls: list[CallPlan] = []
    total = 0
    while total < events:
        scenario = rng.choices(names, weights)[0]
        calls.append(CallPlan(str(uuid.uuid4()), scenario))  # fresh ids: attempts of earlier runs stay
        total += EVENTS_PER_SCENARIO[scenario]
    return calls


def interleave(plans: Sequence[CallPlan], concurrency: int) -> Iterator[str]:
    """Each call's events in order; ``concurrency`` calls in progress at once, visited round-robin."""
    pending = iter(enumerate(plans))
    active: list[Iterator[dict[str, Any]]] = []

    def start() -> bool:
        item = next(pending, None)
        if item is None:
            return False
        n, plan = item
        active.append(iter(call_events(plan.call_id, n, plan.scenario)))
        return True

    while len(active) < concurrency and start():
        pass
    while active:
        still: list[Iterator[dict[str, Any]]] = []
        for events in active:
            event = next(events, None)
            if event is None:
                continue
            yield json.dumps(event, separators=(",", ":"))
            still.append(events)
        active = still
        while len(active) < concurrency and start():
            pass


# --------------------------------------------------------------------------------- the fake Asterisk


def run_server(args: argparse.Namespace) -> int:
    from aiohttp import WSMsgType, web  # noqa: PLC0415 - only this role needs the server side

    state: dict[str, Any] = {"ws": None, "connected": asyncio.Event()}

    async def events(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("ari",), max_msg_size=0)
        await ws.prepare(request)
        state["ws"] = ws
        state["connected"].set()
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
        if state["ws"] is ws:
            state["ws"] = None
            state["connected"] = asyncio.Event()
        return ws

    async def empty_list(_: web.Request) -> web.Response:
        return web.json_response([])

    async def ok_json(request: web.Request) -> web.Response:
        ident = request.query.get("bridgeId") or request.query.get("channelId") or str(uuid.uuid4())
        return web.json_response({"id": ident})

    async def no_content(_: web.Request) -> web.Response:
        return web.Response(status=204)

    async def stream(request: web.Request) -> web.Response:
        """Push one phase's events to the app. Body: {calls: [[id, scenario]...], rate, concurrency}.

        Answers when the last event is written: how many, how long, and how long the slowest write took."""
        body = await request.json()
        plans = [CallPlan(cid, scenario) for cid, scenario in body["calls"]]
        rate = float(body["rate"])
        built = time.perf_counter()
        messages = list(interleave(plans, int(body["concurrency"])))
        build_s = time.perf_counter() - built
        await asyncio.wait_for(state["connected"].wait(), 10)
        ws = state["ws"]
        slow_writes, max_write = 0, 0.0
        started = time.perf_counter()
        batch = max(1, int(rate * 0.002)) if rate > 0 else 1
        for i in range(0, len(messages), batch):
            if rate > 0:
                due = started + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            for message in messages[i : i + batch]:
                t0 = time.perf_counter()
                await ws.send_str(message)
                took = time.perf_counter() - t0
                max_write = max(max_write, took)
                slow_writes += took > SLOW_WRITE_S
        send_s = time.perf_counter() - started
        return web.json_response(
            {
                "sent": len(messages),
                "build_s": build_s,
                "send_s": send_s,
                "slow_writes": slow_writes,
                "max_write_ms": max_write * 1000,
                "bytes": sum(len(m) for m in messages),
            }
        )

    app = web.Application()
    app.router.add_get("/ari/events", events)
    app.router.add_get("/ari/channels", empty_list)
    app.router.add_get("/ari/bridges", empty_list)
    app.router.add_post("/ari/bridges", ok_json)
    app.router.add_post("/ari/channels/externalMedia", ok_json)
    app.router.add_post("/ari/bridges/{id}/addChannel", no_content)
    app.router.add_post("/ari/channels/{id}/answer", no_content)
    app.router.add_delete("/ari/channels/{id}", no_content)
    app.router.add_delete("/ari/bridges/{id}", no_content)
    app.router.add_post("/bench/stream", stream)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        print(f"PORT {port}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the driver goes
        await runner.cleanup()

    try:
        import uvloop  # noqa: PLC0415

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return 0


# ---------------------------------------------------------------------------------------- the driver


@dataclass
class Probe:
    """Loop lag (how late a 5 ms sleep wakes up) and the sink's backlog, sampled while a phase runs."""

    backlog_of: Any = None
    lags: list[float] = field(default_factory=list)
    backlog_max: int = 0
    backlog_samples: list[tuple[float, int]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(LAG_INTERVAL_S)
            now = time.perf_counter()
            self.lags.append(max(0.0, now - t0 - LAG_INTERVAL_S))
            if self.backlog_of is not None:
                backlog = int(self.backlog_of())
                self.backlog_max = max(self.backlog_max, backlog)
                self.backlog_samples.append((now, backlog))


class NoopSink:
    def __init__(self) -> None:
        self.count = 0
        self.by_kind: dict[str, int] = {}

    async def handle(self, event: Any) -> None:
        self.count += 1
        kind = type(event).__name__
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    async def live_call_ids(self) -> set[str]:
        return set()


class MeasuringSink:
    """Wraps the real sink: when ``handle`` returns the event is committed; records receipt-to-commit."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.count = 0
        self.delays: list[float] = []
        self.first_done = 0.0
        self.last_done = 0.0
        self.by_kind: dict[str, int] = {}

        self.handovers = 0  # handle / handle_many calls

    async def handle(self, event: Any) -> None:
        await self.inner.handle(event)
        self.handovers += 1
        self._done(event)

    def _done(self, event: Any) -> None:
        now = time.time()
        self.delays.append(now - event.at.timestamp())
        self.count += 1
        self.last_done = time.perf_counter()
        if self.count == 1:
            self.first_done = self.last_done
        kind = type(event).__name__
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    async def live_call_ids(self) -> set[str]:
        return set(await self.inner.live_call_ids())


class MeasuringBatchSink(MeasuringSink):
    """The same, also passing on ``handle_many`` (a call's waiting events applied together)."""

    async def handle_many(self, events: Any) -> Any:
        errors = await self.inner.handle_many(events)
        self.handovers += 1
        for event in events:
            self._done(event)
        return errors


def backlog_of(app: Any) -> int:
    backlog = getattr(app, "backlog", None)
    if isinstance(backlog, int):
        return backlog
    return int(app._queue._unfinished_tasks)  # noqa: SLF001 - older delivery: one queue


async def run_phase(
    *,
    name: str,
    started: float,
    base_url: str,
    plans: list[CallPlan],
    rate: float,
    concurrency: int,
    sink: Any,
    expected_call_events: int,
    timeout_s: float,
    on_connected: Any = None,
) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    from telephony.stasis import StasisApp, StasisConfig  # noqa: PLC0415

    counts = {"ari": 0}
    stamps: dict[str, float] = {}

    class CountingApp(StasisApp):
        def _on_text(self, data: str) -> bool:
            keep = super()._on_text(data)
            counts["ari"] += 1
            now = time.perf_counter()
            if counts["ari"] == 1:
                stamps["first"] = now
            stamps["last"] = now
            return keep

    config = StasisConfig(
        base_url=base_url,
        user=USER,
        password=PASSWORD,
        app=APP,
        media_hosts=("127.0.0.1:9092",),
        max_call_duration_s=3600,
    )
    app = CountingApp(config, sink)
    probe = Probe(backlog_of=lambda: backlog_of(app))
    loop = asyncio.get_running_loop()
    task = loop.create_task(app.run())
    await asyncio.wait_for(app.connected.wait(), 10)
    if on_connected is not None:
        await on_connected()
    probe_task = loop.create_task(probe.run())
    log(started, f"phase {name}: {len(plans)} calls, streaming at {'max' if rate <= 0 else rate} events/s")
    body = {"calls": [[p.call_id, p.scenario] for p in plans], "rate": rate, "concurrency": concurrency}
    auth = aiohttp.encode_basic_auth(USER, PASSWORD)
    async with (
        aiohttp.ClientSession(headers={"Authorization": auth}) as session,
        session.post(f"{base_url}/bench/stream", json=body, timeout=aiohttp.ClientTimeout(total=600)) as r,
    ):
        server = await r.json()
    log(started, f"phase {name}: server sent {server['sent']} events in {server['send_s']:.2f}s")
    deadline = time.perf_counter() + timeout_s

    def core_events() -> int:
        return int(sink.count - sink.by_kind.get("CallBridged", 0))

    def quiet() -> bool:
        """Every call event expected, none left to hand over, no media set-up or teardown running."""
        return core_events() >= expected_call_events and backlog_of(app) == 0 and not app._tasks  # noqa: SLF001

    while counts["ari"] < server["sent"] and time.perf_counter() < deadline:  # noqa: ASYNC110 - polling
        await asyncio.sleep(0.002)
    ari_done = time.perf_counter()
    while not quiet() and time.perf_counter() < deadline:  # noqa: ASYNC110 - polling a condition
        await asyncio.sleep(0.002)
    all_done = time.perf_counter()
    probe_task.cancel()
    app.stop()
    await asyncio.gather(probe_task, return_exceptions=True)
    await asyncio.wait_for(task, 30)
    ari_s = max(1e-9, stamps.get("last", 0.0) - stamps.get("first", 0.0))
    lags_ms = [lag * 1000 for lag in probe.lags]
    result: dict[str, Any] = {
        "ari_events_sent": server["sent"],
        "ari_events_handled": counts["ari"],
        "ari_events_per_s": round(counts["ari"] / ari_s, 1),
        "ari_s": round(ari_s, 3),
        "ari_events_per_s_until_quiet": round(
            counts["ari"] / max(1e-9, all_done - stamps.get("first", 0.0)), 1
        ),
        "server_send_s": round(server["send_s"], 3),
        "server_slow_writes_over_100ms": server["slow_writes"],
        "server_max_write_ms": round(server["max_write_ms"], 2),
        "mean_event_bytes": round(server["bytes"] / max(1, server["sent"]), 1),
        "call_events": sink.count,
        "call_events_without_bridged": core_events(),
        "call_events_expected_without_bridged": expected_call_events,
        "call_events_by_kind": sink.by_kind,
        "drain_s": round(all_done - ari_done, 3),
        "loop_lag_ms_p50": round(pct(lags_ms, 50), 2),
        "loop_lag_ms_p99": round(pct(lags_ms, 99), 2),
        "loop_lag_ms_max": round(max(lags_ms, default=0.0), 2),
        "backlog_max": probe.backlog_max,
        "timed_out": counts["ari"] < server["sent"] or not quiet(),
    }
    if isinstance(sink, MeasuringSink):
        span = max(1e-9, sink.last_done - stamps.get("first", 0.0))
        delays_ms = [d * 1000 for d in sink.delays]
        result.update(
            {
                "call_events_applied_per_s": round(sink.count / span, 1),
                "handovers": sink.handovers,
                "commit_delay_ms_p50": round(pct(delays_ms, 50), 1),
                "commit_delay_ms_p99": round(pct(delays_ms, 99), 1),
                "commit_delay_ms_max": round(max(delays_ms, default=0.0), 1),
            }
        )
    return result


# --------------------------------------------------------------------------------------------- database


def setup_django(args: argparse.Namespace) -> None:
    url = args.database_url.rstrip("/")
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.db_name,)).fetchone()
        if exists and args.fresh_db:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(args.db_name)))
            exists = None
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.db_name)))
    os.environ["DATABASE_URL"] = f"{url.rsplit('/', 1)[0]}/{args.db_name}"
    os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-not-for-any-deployment")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")  # never used: on_ended is a counter
    os.environ["LOG_LEVEL"] = args.log_level
    import django  # noqa: PLC0415
    from django.core.management import call_command  # noqa: PLC0415

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def create_attempts(plans: list[CallPlan], tenants: int, run_tag: str) -> list[int]:
    """Tenants (one PBX, agent, running campaign each) and, per call, a contact, a lead in attempt and a
    queued attempt whose id is the call id. Returns the PBX ids."""
    from django.contrib.auth.models import User  # noqa: PLC0415
    from django.db import transaction  # noqa: PLC0415
    from django.utils import timezone  # noqa: PLC0415

    from campaigns.lifecycle import AttemptState  # noqa: PLC0415
    from campaigns.models import CallAttempt, Campaign, Contact, Lead  # noqa: PLC0415
    from campaigns.services.agents import agent_profile_create  # noqa: PLC0415
    from campaigns.services.campaigns import campaign_create  # noqa: PLC0415
    from campaigns.services.pbx import pbx_create, pbx_place  # noqa: PLC0415
    from tenants.services import tenant_create  # noqa: PLC0415

    all_day = {"mon": [["00:00", "24:00"]], "tue": [["00:00", "24:00"]], "wed": [["00:00", "24:00"]]}
    all_day.update({d: [["00:00", "24:00"]] for d in ("thu", "fri", "sat", "sun")})
    now = timezone.now()
    pbx_ids: list[int] = []
    with transaction.atomic():
        for t in range(tenants):
            mine = plans[t::tenants]
            email = f"bench-{run_tag}-{t}@example.com"
            owner = User.objects.create_user(username=email, email=email)
            tenant = tenant_create(
                name=f"Bench {run_tag} {t}",
                slug=f"bench-{run_tag}-{t}",
                owner=owner,
                max_concurrent_calls=10000,
            )
            pbx = pbx_create(
                name=f"bench-{run_tag}-{t}",
                ari_url="http://127.0.0.1:8088/",
                ari_user=USER,
                password_env="UNUSED",  # noqa: S106
            )
            pbx_place(pbx=pbx, tenant=tenant)
            pbx_ids.append(pbx.pk)
            agent = agent_profile_create(tenant=tenant, name="Bench", instructions="Hello.")
            campaign = campaign_create(
                tenant=tenant,
                agent=agent,
                name="Bench",
                caller_id="+14155550100",
                calling_windows=all_day,
                max_concurrent_calls=10000,
                retry_delays={"busy": 600, "no_answer": 1800},
            )
            Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.RUNNING)
            contacts = Contact.objects.bulk_create(
                Contact(tenant=tenant, phone_number=f"+1212{i:07d}", timezone="America/New_York")
                for i in range(len(mine))
            )
            leads = Lead.objects.bulk_create(
                Lead(campaign=campaign, contact=c, status=Lead.Status.IN_ATTEMPT) for c in contacts
            )
            CallAttempt.objects.bulk_create(
                CallAttempt(
                    id=uuid.UUID(plan.call_id),
                    tenant=tenant,
                    campaign=campaign,
                    lead=lead,
                    pbx=pbx,
                    number=lead.contact.phone_number,
                    state=AttemptState.QUEUED,
                    queued_at=now,
                )
                for plan, lead in zip(mine, leads, strict=True)
            )
    return pbx_ids


def mark_dialing(call_ids: list[str]) -> int:
    from django.utils import timezone  # noqa: PLC0415

    from campaigns.lifecycle import AttemptState  # noqa: PLC0415
    from campaigns.models import CallAttempt  # noqa: PLC0415

    now = timezone.now()
    return CallAttempt.objects.filter(pk__in=call_ids).update(
        state=AttemptState.DIALING, originated_at=now, originate_sent_at=now
    )


def check_rows(plans: list[CallPlan]) -> dict[str, Any]:
    from django.db import connections  # noqa: PLC0415
    from django.db.models import Count  # noqa: PLC0415

    from campaigns.models import AttemptEvent, CallAttempt  # noqa: PLC0415

    ids = [p.call_id for p in plans]
    rows = dict(CallAttempt.objects.filter(pk__in=ids).values_list("pk", "outcome"))
    wrong = sum(1 for p in plans if rows.get(uuid.UUID(p.call_id)) != OUTCOMES[p.scenario])
    states = dict(
        CallAttempt.objects.filter(pk__in=ids)
        .values_list("state")
        .annotate(n=Count("pk"))
        .values_list("state", "n")
    )
    refused = AttemptEvent.objects.filter(attempt_id__in=ids, type__startswith="refused:").count()
    connections.close_all()
    return {"states": states, "wrong_outcomes": wrong, "refused_events": refused}


# ---------------------------------------------------------------------------------------------- driver


def start_server(started: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--role", "server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None  # noqa: S101
    line = proc.stdout.readline().strip()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"the fake Asterisk did not start: {line!r}")
    log(started, f"fake Asterisk on {HOST}:{line.split()[1]} (pid {proc.pid})")
    return proc, f"http://{HOST}:{line.split()[1]}"


def run_driver(args: argparse.Namespace) -> int:
    started = time.monotonic()
    sys.path.insert(0, str(REPO))
    mix = {s: float(v) for s, v in zip(SCENARIOS, args.mix.split(","), strict=True)}
    rng = random.Random(args.seed)  # noqa: S311 - a reproducible workload, not cryptography
    result: dict[str, Any] = {
        "target_events_per_s": args.target,
        "rate_b": args.rate,
        "concurrency": args.calls,
        "mix": mix,
        "max_workers": args.max_workers,
    }
    proc, base_url = start_server(started)
    try:
        if not args.skip_a:
            plans_a = plan_calls(args.events, mix, rng)
            expected_a = sum(CALL_EVENTS[p.scenario] for p in plans_a)
            sink_a = NoopSink()

            async def phase_a() -> dict[str, Any]:
                return await run_phase(
                    name="A",
                    started=started,
                    base_url=base_url,
                    plans=plans_a,
                    rate=args.rate_a,
                    concurrency=args.calls,
                    sink=sink_a,
                    expected_call_events=expected_a,
                    timeout_s=args.timeout,
                )

            result["a"] = asyncio.run(phase_a())
            log(started, f"phase A: {json.dumps(result['a'])}")
        if not args.skip_b:
            log(started, f"phase B: database {args.db_name}: create/migrate")
            setup_django(args)
            plans_b = plan_calls(args.events, mix, rng)
            expected_b = sum(CALL_EVENTS[p.scenario] for p in plans_b)
            run_tag = uuid.uuid4().hex[:8]
            t0 = time.perf_counter()
            pbx_ids = create_attempts(plans_b, args.tenants, run_tag)
            took = time.perf_counter() - t0
            log(started, f"phase B: {len(plans_b)} attempts in {args.tenants} tenants in {took:.1f}s")
            from asgiref.sync import sync_to_async  # noqa: PLC0415

            from campaigns.sink import AttemptEventSink  # noqa: PLC0415

            ended: list[int] = []
            inner = AttemptEventSink(pbx_ids=pbx_ids, on_ended=ended.append, max_workers=args.max_workers)
            sink_b = MeasuringSink(inner) if args.no_coalesce else MeasuringBatchSink(inner)

            async def phase_b() -> dict[str, Any]:
                async def on_connected() -> None:
                    n = await sync_to_async(mark_dialing, thread_sensitive=False)(
                        [p.call_id for p in plans_b]
                    )
                    log(started, f"phase B: {n} attempts now dialing")

                return await run_phase(
                    name="B",
                    started=started,
                    base_url=base_url,
                    plans=plans_b,
                    rate=args.rate,
                    concurrency=args.calls,
                    sink=sink_b,
                    expected_call_events=expected_b,
                    timeout_s=args.timeout,
                    on_connected=on_connected,
                )

            cpu_before = time.process_time()
            try:
                result["b"] = asyncio.run(phase_b())
            finally:
                inner.close()
            # The Stasis app and the sink's threads share this process, as in run_stasis.
            result["b"]["process_cpu_ms_per_call_event"] = round(
                (time.process_time() - cpu_before) * 1000 / max(1, result["b"]["call_events"]), 3
            )
            result["b"]["on_ended_calls"] = len(ended)
            result["b"]["calls"] = len(plans_b)
            result["b"]["db"] = check_rows(plans_b)
            log(started, f"phase B: {json.dumps(result['b'])}")
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
    return report(args, result)


def report(args: argparse.Namespace, result: dict[str, Any]) -> int:
    checks: dict[str, bool] = {}
    lines = []

    def lag(r: dict[str, Any]) -> str:
        return f"{r['loop_lag_ms_p50']} / {r['loop_lag_ms_p99']} / {r['loop_lag_ms_max']} ms"

    if "a" in result:
        a = result["a"]
        checks["a_rate"] = a["ari_events_per_s"] >= args.target
        checks["a_rate_with_media"] = a["ari_events_per_s_until_quiet"] >= args.target
        checks["a_lag"] = a["loop_lag_ms_p99"] < args.max_lag_ms
        checks["a_complete"] = not a["timed_out"]
        lines += [
            "Phase A (event loop, no-op sink, unpaced):",
            f"  ARI events handled      {a['ari_events_handled']} in {a['ari_s']} s "
            f"= {a['ari_events_per_s']}/s",
            f"  incl. media REST calls  {a['ari_events_per_s_until_quiet']}/s (until nothing is left to do)",
            f"  call events             {a['call_events']} {a['call_events_by_kind']}",
            f"  loop lag p50/p99/max    {lag(a)}",
            f"  server writes > 100 ms  {a['server_slow_writes_over_100ms']} "
            f"(slowest {a['server_max_write_ms']} ms)",
        ]
    if "b" in result:
        b = result["b"]
        db = b["db"]
        checks["b_rate"] = b["ari_events_per_s"] >= args.target * 0.97
        checks["b_lag"] = b["loop_lag_ms_p99"] < args.max_lag_ms
        checks["b_keeps_up"] = (
            not b["timed_out"]
            and b["drain_s"] <= args.max_drain_s
            and b["commit_delay_ms_p99"] <= args.max_delay_p99_ms
        )
        checks["b_rows"] = db["wrong_outcomes"] == 0 and db["states"] == {"ended": b["calls"]}
        lines += [
            f"Phase B (end to end, AttemptEventSink on PostgreSQL, paced at {args.rate}/s):",
            f"  ARI events in           {b['ari_events_handled']} in {b['ari_s']} s "
            f"= {b['ari_events_per_s']}/s",
            f"  call events applied     {b['call_events']} = {b['call_events_applied_per_s']}/s "
            f"(drained {b['drain_s']} s after the last ARI event)",
            f"  receipt→commit p50/p99  {b['commit_delay_ms_p50']} / {b['commit_delay_ms_p99']} ms "
            f"(max {b['commit_delay_ms_max']})",
            f"  backlog max             {b['backlog_max']} call events, handed over in "
            f"{b['handovers']} handle/handle_many calls",
            f"  app process CPU         {b['process_cpu_ms_per_call_event']} ms per call event "
            "(event loop and sink threads)",
            f"  loop lag p50/p99/max    {lag(b)}",
            f"  rows                    {db['states']}, wrong outcomes {db['wrong_outcomes']}, "
            f"refused {db['refused_events']}",
        ]
    result["checks"] = checks
    result["ok"] = bool(checks) and all(checks.values())
    failed = ", ".join(k for k, v in checks.items() if not v)
    print("\n".join(lines))
    print(f"target met: {result['ok']} ({failed or 'all checks pass'})")
    print(json.dumps(result, separators=(",", ":"), sort_keys=True))
    return 0 if result["ok"] else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Stasis app event handling: ARI events/s through StasisApp, and end to end into "
        "PostgreSQL through AttemptEventSink. See bench/README.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--events", type=int, default=30000, help="ARI events per phase (whole calls)")
    p.add_argument("--calls", type=int, default=500, help="calls in progress at once (interleaved)")
    p.add_argument("--rate", type=float, default=3000.0, help="phase B: ARI events/s the server sends")
    p.add_argument("--rate-a", type=float, default=0.0, help="phase A: ARI events/s (0: as fast as possible)")
    p.add_argument("--target", type=float, default=3000.0, help="ARI events/s the app must handle")
    p.add_argument(
        "--mix",
        default="0.3,0.2,0.35,0.15",
        help="share of answered (with DTMF), busy, no-answer, rejected calls",
    )
    p.add_argument("--tenants", type=int, default=4, help="phase B: tenants the attempts are spread over")
    p.add_argument("--max-workers", type=int, default=4, help="phase B: the sink's database threads")
    p.add_argument(
        "--no-coalesce",
        action="store_true",
        help="phase B: hand the sink one event at a time (no handle_many), as before coalescing",
    )
    p.add_argument("--max-lag-ms", type=float, default=50.0, help="loop lag p99 must stay below this")
    p.add_argument("--max-delay-p99-ms", type=float, default=1000.0, help="phase B: receipt→commit p99 limit")
    p.add_argument(
        "--max-drain-s", type=float, default=1.0, help="phase B: backlog left after the last event"
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server (its database name is replaced by --db-name)",
    )
    p.add_argument(
        "--db-name", default="bench_stasis_events", help="database created and migrated for phase B"
    )
    p.add_argument("--fresh-db", action="store_true", help="drop and re-create the database first")
    p.add_argument("--skip-a", action="store_true", help="skip phase A")
    p.add_argument("--skip-b", action="store_true", help="skip phase B (no database needed)")
    p.add_argument("--seed", type=int, default=1, help="workload seed")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a phase to finish")
    p.add_argument("--log-level", default="WARNING", help="the orchestrator's LOG_LEVEL in phase B")
    p.add_argument("--role", default="driver", choices=["driver", "server"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "server":
        return run_server(args)
    return run_driver(args)


if __name__ == "__main__":
    sys.exit(main())
