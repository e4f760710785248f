"""Answering-machine detection benchmark: the simulator's mix of people and machines through the whole
product, with detection accuracy and how long a person waits for the agent.

Target: answer → first agent audio p95 ≤ 2 s for people (the media leg is prepared while AMD listens).
Run::

    python bench/amd.py                       # 40 calls: 20 people, 20 machines (about two minutes)
    python bench/amd.py --calls 10 --concurrency 5

What it does:

1. drops and creates its own PostgreSQL database (``--db-name``), migrates it, flushes its own Redis
   database (``--redis-url``) and nothing else;
2. writes a plan of ``--calls`` numbers, ``--machine-share`` of them answering machines (greetings of 2 to
   7 s, three in four with a beep of 400 to 2,000 Hz) and the rest people who say a short "Hello?" (or,
   one in ``--chatty-every``, "Yes, hello, who is it?", which Asterisk's AMD takes for a machine: the media
   worker then waits for a beep that never comes), answering after 0.3 to 1.5 s;
3. starts the product with ``tests.e2e.stack.Stack``: the PBX simulator, the Realtime stand-in, the media
   worker, the Stasis app, Celery worker and beat; seeds one campaign with AMD on and
   ``voicemail_action=leave_message``;
4. waits until every attempt ended with its media report and reads what the simulator recorded and what
   the attempts say.

Figures (one JSON object on the last stdout line; exit 0 when the p95 target is met):

* ``amd_accuracy``: AMD()'s own verdict (``AMDSTATUS`` by the campaign's NOTSURE rule) against the truth;
* ``final_accuracy``: the attempt's ``answered_by`` (AMD plus the media worker's second opinion);
* ``human_answer_to_agent_ms_p50/p95/max``: for people taken for people, from the callee's answer to the
  first agent audio it heard (the simulator's own measure): the target; ``human_answer_to_any_audio_ms_p95``
  the same over every person, those taken for machines too (they hear the message once their "greeting"
  ends: a detection error, counted in the accuracy); ``amd_ms_p50/p95`` how long AMD took for people,
  and ``amd_verdict_to_agent_ms_p50/p95`` the product's own share: from AMD's verdict to the agent heard;
* ``machines_message_after_beep``: machines with a beep that got the message, all of it after the beep;
* ``machines_spoken_over``: machines whose greeting or beep the agent talked over (should be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.dispatch import migrate, percentile, recreate_database, run_in_stack  # noqa: E402
from tests.e2e.stack import PASSWORD_ENV, SIM_APP, SIM_USER, Stack, wait_for, zone_where_it_is  # noqa: E402

STARTED = time.monotonic()
NUMBER_PREFIX = "+1555018"
TARGET_P95_MS = 2000.0
MESSAGE = "Hello, this is Acme calling about your order. Please call us back. Thank you."


def log(message: str) -> None:
    print(f"[amd +{time.monotonic() - STARTED:7.2f}s] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, prog="bench/amd.py"
    )
    add = parser.add_argument
    add("--calls", type=int, default=40)
    add("--machine-share", type=float, default=0.5)
    add("--chatty-every", type=int, default=10, help="one person in N says several words (0: none)")
    add("--concurrency", type=int, default=10, help="the campaign's calls at once")
    add("--seed", type=int, default=13)
    add(
        "--amd-settings",
        type=json.loads,
        default={},
        help="the campaign's AMD thresholds, e.g. '{\"after_greeting_silence\": 600}'",
    )
    add("--pg", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    add("--db-name", default="bench_amd")
    add("--redis-url", default="redis://127.0.0.1:6379/8")
    add("--log-level", default="WARNING")
    add("--budget", type=float, default=None, help="seconds before the run is abandoned")
    add("--keep", action="store_true", help="keep the processes' logs")
    return parser


def make_plan(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The simulator's plan and, per number, the truth (person or machine, and what it does)."""
    rng = random.Random(args.seed)  # noqa: S311 - a reproducible mix, not security
    numbers: dict[str, Any] = {}
    truth: dict[str, dict[str, Any]] = {}
    machines = round(args.calls * args.machine_share)
    for i in range(args.calls):
        number = f"{NUMBER_PREFIX}{i:04d}"
        after = round(rng.uniform(0.3, 1.5), 2)
        if i < machines:
            beep = rng.random() < 0.75
            entry = {
                "behaviour": "machine",
                "after": after,
                "greeting_s": round(rng.uniform(2.0, 7.0), 1),
                "beep_hz": rng.choice([400, 440, 850, 1000, 1400, 2000]) if beep else None,
                "beep_s": round(rng.uniform(0.3, 0.8), 2),
                "hangup_after": 40,
            }
            truth[number] = {"machine": True, "beep": beep}
        else:
            chatty = args.chatty_every > 0 and i % args.chatty_every == args.chatty_every - 1
            text = "Yes, hello, who is it?" if chatty else rng.choice(["Hello?", "Hallo?", "Hello."])
            entry = {
                "behaviour": "answer",
                "after": after,
                "say": [{"at": round(rng.uniform(0.2, 0.8), 2), "text": text}],
                "hangup_after": 10,
            }
            truth[number] = {"machine": False, "chatty": chatty}
        numbers[number] = entry
    order = list(numbers)
    rng.shuffle(order)
    return {"default": {"behaviour": "busy"}, "numbers": {n: numbers[n] for n in order}}, truth


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.calls < 1 or not 0 <= args.machine_share <= 1 or args.concurrency < 1:
        raise SystemExit("--calls and --concurrency must be at least 1, --machine-share within 0..1")
    budget = args.budget or (300 + args.calls * 20 / args.concurrency)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "orchestrator.settings",
        "DATABASE_URL": f"{args.pg}/{args.db_name}",
        "REDIS_URL": args.redis_url,
        "DEBUG": "1",
        "LOG_LEVEL": args.log_level,
        "PHONE_TEST_PREFIXES": "+1555",
    }
    env.pop("PYTHONPATH", None)

    def in_stack(stack: Stack) -> dict[str, Any]:
        os.environ.update({k: v for k, v in stack.env.items() if k != "PYTHONPATH"})
        return run(args, stack)

    return run_in_stack(
        in_stack, env=env, budget=budget, prefix="bench-amd-", keep=args.keep, log=log, log_lines=30
    )


def seed(args: argparse.Namespace, stack: Stack, numbers: list[str]) -> Any:
    from campaigns.models import Campaign, Pbx
    from campaigns.services.campaigns import campaign_start
    from campaigns.services.contacts import lead_add
    from campaigns.windows import WEEKDAYS
    from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_pbx, make_tenant

    tenant = make_tenant(max_concurrent_calls=args.concurrency, calls_per_second=20)
    make_pbx(
        tenant, ari_url=stack.ari_url, ari_user=SIM_USER, password_env=PASSWORD_ENV, app_name=SIM_APP,
        endpoint_template="PJSIP/{number}@trunk", max_channels=args.concurrency * 2, calls_per_second=20,
    )  # fmt: skip
    agent = make_agent(
        tenant,
        instructions="You are Acme's assistant calling {{name}} about an order.",
        greeting="Hello {{name}}, this is Acme's assistant.",
        tools=["end_call"],
    )
    campaign: Campaign = make_campaign(
        tenant, agent=agent, ring_timeout=10, max_attempts=1, max_concurrent_calls=args.concurrency,
        calling_windows={day: [["00:00", "24:00"]] for day in WEEKDAYS},
        amd_enabled=True, voicemail_action="leave_message", voicemail_message_text=MESSAGE,
        amd_settings=args.amd_settings,
    )  # fmt: skip
    zone = zone_where_it_is(14)
    for k, number in enumerate(numbers):
        lead_add(campaign=campaign, contact=make_contact(tenant, number, name=f"Dana {k}", timezone=zone))
    campaign_start(campaign=campaign)
    return campaign, Pbx.objects.get(placements__tenant=tenant).pk


def epoch(iso: str | None) -> float | None:
    return None if not iso else datetime.fromisoformat(iso).timestamp()


def run(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    import redis

    log(f"database {args.db_name}: drop, create, migrate")
    recreate_database(args.pg, args.db_name)
    migrate(stack.env)
    redis.Redis.from_url(args.redis_url).flushdb()

    import django

    django.setup()
    from campaigns.amd import amd_answered_by
    from campaigns.models import CallAttempt

    plan, truth = make_plan(args)
    stack.start_sim(plan)
    campaign, pbx_id = seed(args, stack, list(plan["numbers"]))
    stack.start_realtime(extra=["--reply-ms", "1500", "--speed", "5"])
    stack.start_media_worker()
    stack.start_stasis(pbx_id)
    stack.wait_stasis_connected()
    stack.start_worker(concurrency=4, loglevel=args.log_level)
    began = time.monotonic()
    stack.start_beat(loglevel=args.log_level)
    log(f"{args.calls} calls, {args.concurrency} at once")

    def done() -> bool:
        attempts = CallAttempt.objects.filter(campaign=campaign)
        finished = sum(1 for a in attempts if a.ended_at and a.media_metrics)
        return attempts.count() == args.calls and finished == args.calls

    wait_for(done, timeout=120 + args.calls * 25 / args.concurrency, what="every call to end", interval=1.0)
    elapsed = time.monotonic() - began
    attempts = {a.number: a for a in CallAttempt.objects.filter(campaign=campaign)}
    with stack.sim() as sim:
        calls = {c["number"]: c for c in sim.get("/sim/calls", params={"state": "all"}).json()["calls"]}

    amd_right = final_right = 0
    waits: list[float] = []  # every person: answer -> first agent audio (the agent, or a message by mistake)
    agent_waits: list[float] = []  # the people taken for people: answer -> the agent
    amd_ms: list[float] = []
    after_amd: list[float] = []  # the product's own share: AMD's verdict -> the agent heard
    outcomes: dict[str, int] = {}
    beeps_ok = beeps_total = spoken_over = 0
    mistakes: list[dict[str, Any]] = []
    for number, facts in truth.items():
        attempt, call = attempts[number], calls[number]
        is_machine = facts["machine"]
        outcomes[attempt.outcome] = outcomes.get(attempt.outcome, 0) + 1
        amd = call.get("amd") or {}
        amd_says = amd_answered_by(amd.get("status", ""), amd.get("cause", ""), "human")
        amd_right += (amd_says == "machine") == is_machine
        final_right += (attempt.answered_by == "machine") == is_machine
        if (attempt.answered_by == "machine") != is_machine:
            mistakes.append(
                {"number": number, "truth": facts, "amd": amd.get("cause"), "by": attempt.answered_by}
            )
        spurts = call["heard"]["spurts"]
        first = spurts[0][0] if spurts else None
        answered = epoch(call["answered_at"])
        if not is_machine:
            if first is not None and answered is not None:
                waits.append((first - answered) * 1000)
                if attempt.answered_by != "machine":
                    agent_waits.append((first - answered) * 1000)
            if amd.get("decided_at") and amd.get("started_at"):
                amd_ms.append((amd["decided_at"] - amd["started_at"]) * 1000)
                if first is not None and attempt.answered_by != "machine":
                    after_amd.append((first - amd["decided_at"]) * 1000)
            continue
        m = call.get("machine") or {}
        quiet_from = m.get("beep_end") or m.get("greeting_end")
        if first is not None and quiet_from is not None and first < quiet_from - 0.05:
            spoken_over += 1
        if facts["beep"]:
            beeps_total += 1
            if attempt.outcome == "voicemail_left" and first is not None and first >= m["beep_end"]:
                beeps_ok += 1

    p95 = percentile(agent_waits, 95)
    result = {
        "calls": args.calls,
        "machines": sum(1 for t in truth.values() if t["machine"]),
        "amd_accuracy": round(amd_right / args.calls, 3),
        "final_accuracy": round(final_right / args.calls, 3),
        "human_answer_to_agent_ms_p50": _r(percentile(agent_waits, 50)),
        "human_answer_to_agent_ms_p95": _r(p95),
        "human_answer_to_agent_ms_max": _r(max(agent_waits) if agent_waits else None),
        "humans_taken_for_people": len(agent_waits),
        # Including people taken for machines (they hear the voicemail message after their "greeting").
        "human_answer_to_any_audio_ms_p95": _r(percentile(waits, 95)),
        "humans_measured": len(waits),
        "amd_ms_p50": _r(percentile(amd_ms, 50)),
        "amd_ms_p95": _r(percentile(amd_ms, 95)),
        "amd_verdict_to_agent_ms_p50": _r(percentile(after_amd, 50)),
        "amd_verdict_to_agent_ms_p95": _r(percentile(after_amd, 95)),
        "machines_message_after_beep": f"{beeps_ok}/{beeps_total}",
        "machines_spoken_over": spoken_over,
        "outcomes": outcomes,
        "mistakes": mistakes,
        "elapsed_s": round(elapsed, 1),
        "target_p95_ms": TARGET_P95_MS,
        "amd_settings": args.amd_settings,
    }
    result["ok"] = p95 is not None and p95 <= TARGET_P95_MS and spoken_over == 0
    for key, value in result.items():
        if key not in ("mistakes", "ok"):
            print(f"{key:32} {value}")
    print(json.dumps(result))
    return result


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


if __name__ == "__main__":
    raise SystemExit(main())
