"""Escalation benchmark: many incidents escalating at once on durable timers, with a worker killed mid-run.

Target: 1,000 concurrent incidents with staggered deadlines on this machine, real Celery workers and beat,
a worker killed once mid-run: step lateness p99 ≤ 1,000 ms, no step fired twice, none missed. Run::

    python bench/escalation.py                                  # the target's scenario
    python bench/escalation.py --incidents 100 --wait 10        # a quick look

What it does (see bench/README.md):

1. drops and creates its own PostgreSQL database (``--db-name``) and migrates it; flushes its own Redis
   database (``--redis-url``) and nothing else;
2. starts the SMS stand-in (the Twilio API the product's SDK calls, with signed status callbacks), the
   web process (gunicorn + uvicorn workers, as in production), ``--workers`` Celery workers and beat;
3. seeds one tenant with a Twilio account pointed at the stand-in, ``--steps`` on-call people and one policy
   of ``--steps`` SMS steps waiting ``--wait`` s each (SMS only: the page calls of 1,000 incidents at once
   would measure the tenant's call cap, not the timers);
4. opens ``--incidents`` incidents spread evenly over ``--spread`` s (step 1 fires at once, in the opening
   transaction; the later steps are durable timers, so their deadlines are staggered over the spread too);
   kills one worker with SIGKILL ``--kill-at`` s after the first opening and starts a replacement
   ``--restart-after`` s later (as a supervisor would);
5. waits until every incident has run out of steps, then reads the timeline (``step_fired`` rows, each with
   the deadline it fired for) and what the stand-in really received, and computes:
   ``step_late_ms_p50/p99/max`` (fired − deadline, steps 2.. only: step 1 has no deadline),
   ``steps_fired_twice`` (a step with more than one ``step_fired`` row), ``steps_missed`` (a step that
   never fired); and, from what the stand-in really received, ``sms_missing`` (a fired step whose SMS never
   reached it), ``sms_sent_twice`` (a person texted twice for one step: SMS sends are at least once, so a
   worker killed during a provider request sends that message again) and the time from a step firing to
   its SMS being handed to the provider;
6. posts ``--webhooks`` signed inbound-SMS webhooks (Twilio's signature) to the web process,
   ``--webhook-concurrency`` at a time, and reports ``webhooks_per_s`` (accepted: 200 answered) and
   ``webhooks_processed_per_s`` (until the workers had processed every one).

Progress goes to stderr; the last stdout line is ONE JSON object. Exit 0 when the targets are met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.dispatch import migrate, percentile, recreate_database, run_in_stack  # noqa: E402
from tests.e2e.stack import Proc, Stack, _port_open, free_port, wait_for  # noqa: E402

STARTED = time.monotonic()
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-escalation-token"  # noqa: S105 - a throwaway credential of a local stand-in
PRODUCT_NUMBER = "+15550160000"
PERSON_PREFIX = "+1555016"  # people +15550161000, +15550161001, ...
TARGET_LATE_P99_MS = 1000.0


def log(message: str) -> None:
    print(f"[escalation +{time.monotonic() - STARTED:7.2f}s] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, prog="bench/escalation.py"
    )
    add = parser.add_argument
    add("--incidents", type=int, default=1000)
    add("--steps", type=int, default=3, help="SMS steps per policy (one person each)")
    add("--wait", type=int, default=60, help="seconds each step waits (the minimum allowed is lowered to it)")
    add("--spread", type=float, default=60.0, help="seconds over which the incidents are opened")
    add("--open-threads", type=int, default=8, help="threads opening the incidents")
    add("--workers", type=int, default=2)
    add("--concurrency", type=int, default=8, help="threads per worker")
    add("--kill-at", type=float, default=None, help="s after the first opening (default: spread + wait/2)")
    add("--restart-after", type=float, default=2.0, help="s after the kill a replacement worker starts")
    add("--sweep-s", type=float, default=None, help="TIMERS_SWEEP_S for the run (default: the product's)")
    add("--webhooks", type=int, default=2000)
    add("--webhook-concurrency", type=int, default=32)
    add("--web-workers", type=int, default=2)
    add("--pg", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    add("--db-name", default="bench_escalation")
    add("--redis-url", default="redis://127.0.0.1:6379/8")
    add("--log-level", default="WARNING")
    add("--budget", type=float, default=None, help="seconds before the run is abandoned")
    add("--keep", action="store_true", help="keep the processes' logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.incidents < 1 or args.steps < 1 or args.wait < 1:
        raise SystemExit("--incidents, --steps and --wait must be at least 1")
    if args.kill_at is None:
        args.kill_at = args.spread + args.wait / 2
    budget = args.budget or (300 + args.spread + args.wait * args.steps * 2)
    db_url = f"{args.pg}/{args.db_name}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "orchestrator.settings",
        "DATABASE_URL": db_url,
        "REDIS_URL": args.redis_url,
        "DEBUG": "1",
        "LOG_LEVEL": args.log_level,
        "PHONE_TEST_PREFIXES": "+1555",
        "FLOWS_MIN_STEP_WAIT_S": str(min(args.wait, 30)),
    }
    if args.sweep_s is not None:
        env["TIMERS_SWEEP_S"] = str(args.sweep_s)
    env.pop("PYTHONPATH", None)

    def in_stack(stack: Stack) -> dict[str, Any]:
        # This process opens the incidents: same settings and Celery queue as the stack's processes.
        os.environ.update({k: v for k, v in stack.env.items() if k != "PYTHONPATH"})
        return run(args, stack)

    return run_in_stack(
        in_stack, env=env, budget=budget, prefix="bench-escalation-", keep=args.keep, log=log, log_lines=30
    )


def seed(args: argparse.Namespace) -> tuple[Any, Any]:
    from flows.models import EscalationPolicy, EscalationStep, OnCallPerson
    from messaging.services.accounts import sms_account_create
    from tenants.models import Tenant

    tenant = Tenant.objects.create(name="Bench on-call", slug="bench-oncall", max_concurrent_calls=50)
    account = sms_account_create(
        tenant=tenant,
        kind="twilio",
        username=ACCOUNT_SID,
        secret=AUTH_TOKEN,
        from_numbers=[PRODUCT_NUMBER],
        by_tenant=False,
    )
    policy = EscalationPolicy.objects.create(tenant=tenant, name="bench", repeat=0, fallback_callback=False)
    for k in range(args.steps):
        person = OnCallPerson.objects.create(
            tenant=tenant, name=f"Tech {k + 1}", phone=f"{PERSON_PREFIX}{1000 + k}",
            sms_number=f"{PERSON_PREFIX}{1000 + k}",
        )  # fmt: skip
        EscalationStep.objects.create(
            policy=policy, position=k, target_kind="person", person=person,
            notify_call=False, notify_sms=True, wait_s=args.wait,
        )  # fmt: skip
    return tenant, (account, policy)


def run(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    import redis

    log(f"database {args.db_name}: drop, create, migrate")
    recreate_database(args.pg, args.db_name)
    migrate(stack.env)
    redis.Redis.from_url(args.redis_url).flushdb()

    import django

    django.setup()
    from django.db import connection

    tenant, (account, policy) = seed(args)
    inbound_url = f"/webhooks/sms/twilio/{account.webhook_id}/inbound"
    # The web's address is needed by the stand-in (its inbound URL) and by the product (the status callback
    # URLs it gives the provider, and the exact URL a signature is checked over).
    web_port = free_port()
    public = f"http://127.0.0.1:{web_port}"
    stack.env.update(PUBLIC_BASE_URL=public)
    os.environ["PUBLIC_BASE_URL"] = public
    stack.start_sms_standin(auth_token=AUTH_TOKEN, inbound_url=public + inbound_url, status_delay=0.05)
    stack.env.update(TWILIO_API_BASE=stack.sms_url)
    os.environ["TWILIO_API_BASE"] = stack.sms_url
    stack.spawn(
        "web",
        ["-m", "gunicorn", "--config", "deploy/gunicorn.conf.py"],
        env={"WEB_BIND": f"127.0.0.1:{web_port}", "WEB_CONCURRENCY": str(args.web_workers)},
    )
    stack.web_port = web_port
    wait_for(lambda: _port_open(web_port), timeout=60, what="the web process")
    workers: list[Proc] = [
        stack.start_worker(f"worker{k}", concurrency=args.concurrency, loglevel=args.log_level)
        for k in range(args.workers)
    ]
    stack.start_beat(loglevel=args.log_level)
    log(f"stand-in, web ({args.web_workers}), {args.workers} worker(s) × {args.concurrency} and beat started")
    time.sleep(2.0)  # the workers connect to the broker

    incident_ids = open_incidents(args, tenant, policy, stack, workers)
    connection.close()

    log("waiting for every incident to run out of steps")
    from flows.models import Incident

    last_deadline = args.spread + args.wait * args.steps + 30
    wait_for(
        lambda: not Incident.objects.filter(pk__in=incident_ids, status="open").exists(),
        timeout=last_deadline + 120,
        what="every incident exhausted",
        interval=1.0,
    )
    from messaging.models import Message

    # Every page's SMS handed to the provider (the stand-in), those whose send task died with the worker
    # included (the messaging sweep sends them again).
    wait_for(
        lambda: not Message.objects.filter(direction="out", status="queued").exists(),
        timeout=180,
        what="every SMS sent",
        interval=1.0,
    )
    escalation = analyse_steps(args, incident_ids, stack)
    webhooks = post_webhooks(args, stack, public + inbound_url, account)
    result = {**escalation, **webhooks}
    result["ok"] = (
        result["step_late_ms_p99"] is not None
        and result["step_late_ms_p99"] <= TARGET_LATE_P99_MS
        and result["steps_fired_twice"] == 0
        and result["steps_missed"] == 0
        and result["webhooks_failed"] == 0
    )
    print_summary(result)
    print(json.dumps(result))
    return result


def open_incidents(
    args: argparse.Namespace, tenant: Any, policy: Any, stack: Stack, workers: list[Proc]
) -> list[int]:
    """Open the incidents on schedule (a pool of threads, each with its own database connection, so a slow
    opening does not push the later ones back), then kill a worker and start its replacement."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from flows.services.incidents import incident_open

    first = time.monotonic()
    interval = args.spread / args.incidents

    def open_one(i: int) -> int:
        target = first + i * interval
        while time.monotonic() < target:
            time.sleep(min(0.01, max(0.0, target - time.monotonic())))
        try:
            incident = incident_open(
                tenant_id=tenant.pk, flow=None, policy=policy, caller_number=f"+1555017{i:04d}",
                summary=f"bench incident {i}",
            )  # fmt: skip
            return int(incident.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=args.open_threads) as pool:
        ids = list(pool.map(open_one, range(args.incidents)))
    log(f"opened {len(ids)} incidents in {time.monotonic() - first:.1f} s")
    killed = restarted = False
    kill_at = first + args.kill_at
    while not (killed and restarted):
        now = time.monotonic()
        if not killed and now >= kill_at:
            workers[0].kill9()
            killed = True
            log(f"worker0 killed with SIGKILL at +{now - first:.1f} s")
        elif killed and not restarted and now >= kill_at + args.restart_after:
            workers.append(stack.start_worker("worker-restarted", concurrency=args.concurrency))
            restarted = True
            log("a replacement worker started")
        time.sleep(0.05)
    return ids


def analyse_steps(args: argparse.Namespace, incident_ids: list[int], stack: Stack) -> dict[str, Any]:
    from flows.models import Incident, IncidentEvent

    fired: Counter[tuple[int, int | None, int | None]] = Counter()
    late_ms: list[float] = []
    for incident_id, round_, step, at, detail in IncidentEvent.objects.filter(
        incident_id__in=incident_ids, kind="step_fired"
    ).values_list("incident_id", "round", "step", "at", "detail"):
        fired[(incident_id, round_, step)] += 1
        due = (detail or {}).get("due_at")
        if step and due:
            late_ms.append((at - datetime.fromisoformat(due)).total_seconds() * 1000)
    expected = {(i, 0, s) for i in incident_ids for s in range(args.steps)}
    db_twice = sum(1 for n in fired.values() if n > 1)
    db_missed = len(expected - set(fired))

    # What really happened: the texts the stand-in received, by (incident short code, person).
    import httpx

    codes = dict(Incident.objects.filter(pk__in=incident_ids).values_list("short_code", "pk"))
    sent = httpx.get(f"{stack.sms_url}/sim/sms/messages", timeout=60).json()
    messages = sent["messages"] if isinstance(sent, dict) else sent
    texted: Counter[tuple[int, str]] = Counter()
    for message in messages:
        body = message.get("body") or ""
        incident = next((pk for code, pk in codes.items() if code and code in body), None)
        if incident is not None:
            texted[(incident, message.get("to") or "")] += 1
    people = [f"{PERSON_PREFIX}{1000 + k}" for k in range(args.steps)]
    sms_twice = sum(1 for n in texted.values() if n > 1)
    sms_missing = sum(1 for i in incident_ids for number in people if texted[(i, number)] == 0)
    # How long a fired step's SMS took to be handed to the provider (the page's send task, then the
    # message's): the queue behind the timers.
    fired_at = {
        (i, s): at
        for i, s, at in IncidentEvent.objects.filter(
            incident_id__in=incident_ids, kind="step_fired"
        ).values_list("incident_id", "step", "at")
    }
    lag_ms = [
        (at - fired_at[(i, s)]).total_seconds() * 1000
        for i, s, at in IncidentEvent.objects.filter(incident_id__in=incident_ids, kind="texted").values_list(
            "incident_id", "step", "at"
        )
        if (i, s) in fired_at
    ]
    return {
        "incidents": len(incident_ids),
        "steps_expected": len(expected),
        "steps_fired": len(fired),
        "timer_steps_measured": len(late_ms),
        "step_late_ms_p50": _round(percentile(late_ms, 50)),
        "step_late_ms_p99": _round(percentile(late_ms, 99)),
        "step_late_ms_max": _round(max(late_ms) if late_ms else None),
        "steps_fired_twice": db_twice,
        "steps_missed": db_missed,
        "sms_to_provider_lag_ms_p50": _round(percentile(lag_ms, 50)),
        "sms_to_provider_lag_ms_p99": _round(percentile(lag_ms, 99)),
        "sms_received_by_standin": sum(texted.values()),
        "sms_sent_twice": sms_twice,
        "sms_missing": sms_missing,
        "worker_killed": True,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def post_webhooks(args: argparse.Namespace, stack: Stack, url: str, account: Any) -> dict[str, Any]:
    """Signed inbound SMS (replies nobody is waiting for), posted concurrently as Twilio would."""
    import httpx

    from messaging.models import WebhookReceipt
    from telephony.sim.sms import twilio_signature

    before = WebhookReceipt.objects.filter(kind="inbound").count()
    replies = ("ok", "thanks", "on my way")
    bodies = [
        {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "Body": replies[k % len(replies)],
            "From": f"+1555018{k:04d}",
            "To": PRODUCT_NUMBER,
            "MessageSid": f"SM{k:032x}",
            "SmsMessageSid": f"SM{k:032x}",
            "NumMedia": "0",
            "NumSegments": "1",
        }  # fmt: skip
        for k in range(args.webhooks)
    ]
    statuses: Counter[int] = Counter()

    async def post_all() -> float:
        limits = httpx.Limits(max_connections=args.webhook_concurrency)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
            for body in bodies:
                queue.put_nowait(body)

            async def poster() -> None:
                while not queue.empty():
                    params = queue.get_nowait()
                    headers = {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url, params)}
                    try:
                        response = await client.post(url, data=params, headers=headers)
                        statuses[response.status_code] += 1
                    except httpx.HTTPError:
                        statuses[0] += 1

            started = time.monotonic()
            await asyncio.gather(*(poster() for _ in range(args.webhook_concurrency)))
            return time.monotonic() - started

    log(f"posting {args.webhooks} signed webhooks, {args.webhook_concurrency} at a time")
    started = time.monotonic()
    elapsed = asyncio.run(post_all())
    wait_for(
        lambda: (
            WebhookReceipt.objects.filter(kind="inbound", processed_at__isnull=False).count() - before
            >= statuses[200]
        ),
        timeout=300,
        what="every webhook processed",
        interval=0.2,
    )
    processed_elapsed = time.monotonic() - started
    return {
        "webhooks": args.webhooks,
        "webhooks_accepted": statuses[200],
        "webhooks_failed": args.webhooks - statuses[200],
        "webhooks_per_s": round(statuses[200] / elapsed, 1) if elapsed else None,
        "webhooks_processed_per_s": (
            round(statuses[200] / processed_elapsed, 1) if processed_elapsed else None
        ),
    }


def print_summary(r: dict[str, Any]) -> None:
    lines = [
        f"incidents {r['incidents']}, steps fired {r['steps_fired']} of {r['steps_expected']}",
        f"step lateness (ms) p50 {r['step_late_ms_p50']}  p99 {r['step_late_ms_p99']}"
        f"  max {r['step_late_ms_max']}  (over {r['timer_steps_measured']} timer-driven steps;"
        f" target p99 ≤ {TARGET_LATE_P99_MS:.0f})",
        f"steps fired twice {r['steps_fired_twice']}, missed {r['steps_missed']}",
        f"page SMS at the stand-in {r['sms_received_by_standin']} (twice {r['sms_sent_twice']}, missing "
        f"{r['sms_missing']}); step fired -> SMS handed to the provider p50 "
        f"{r['sms_to_provider_lag_ms_p50']} ms, p99 {r['sms_to_provider_lag_ms_p99']} ms",
        f"webhooks: {r['webhooks_accepted']}/{r['webhooks']} accepted, {r['webhooks_per_s']}/s answered, "
        f"{r['webhooks_processed_per_s']}/s processed",
        "OK" if r["ok"] else "TARGET NOT MET",
    ]
    for line in lines:
        print(line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
