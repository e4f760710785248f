"""Faults during live calls, on real processes: the Celery worker, beat, the Stasis app and the media worker
killed with SIGKILL and restarted, Redis and PostgreSQL stopped and started again, each while calls ring,
are answered or talk to the agent. Then the calls finish, the system settles, and the simulator's record of
every call is held against the attempts (:mod:`tests.faults.judge`): nothing dialed twice, no conversation
redialed, every outcome true to what the callee did, nothing left live, the caps kept, no call placed while
the Stasis app or the media worker was known to be down.

The suite runs its own PostgreSQL and Redis (tests/faults/servers.py), so restarting them harms no one.
Each fault is injected twice per test, at points drawn from ``FAULTS_SEED`` (fixed by default: a failure
can be replayed with the same draws; the real processes' timing still varies from run to run).

Run it alone with ``DATABASE_URL=postgres://... .venv/bin/pytest -m faults`` (the URL only puts the session
in PostgreSQL mode; the suite's processes use its own servers). It takes about six minutes; one summary
line per fault is printed at the end of the run.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.stack import PASSWORD_ENV, SIM_APP, SIM_USER, Stack, wait_for, zone_where_it_is
from tests.faults.conftest import FaultServers
from tests.faults.harness import FAULTS, FaultStack, Injection, Observer, now, product_env, seed
from tests.faults.judge import Finding, count_by_outcome, describe_call, judge
from tests.faults.scenario import PLAN, seed_spec

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.faults, pytest.mark.timeout(360)]

SEED = int(os.environ.get("FAULTS_SEED", "20261203"))
INJECTIONS = 2
# A beat killed with -9 holds the beat lock until its TTL lapses (30 s), so its recovery takes that long:
# twice the contacts keep calls live for the second injection.
CAMPAIGN_SCALE = {"beat": 2}


@pytest.mark.parametrize("fault", FAULTS)
def test_calls_survive_the_fault_with_their_truth(
    fault: str, fault_servers: FaultServers, tmp_path: Path, record_summary: Callable[[str], None]
) -> None:
    postgres, redis_server = fault_servers.postgres, fault_servers.redis
    database = f"faults_{fault}"
    postgres.drop_database(database)
    postgres.create_database(database, template=fault_servers.template)
    redis_server.flush()
    stack = Stack(
        directory=tmp_path / "stack", env={**os.environ, **product_env(postgres, redis_server, database)}
    )
    rng = random.Random(f"{SEED}:{fault}")  # noqa: S311 - when and where faults land, not cryptography
    faults = FaultStack(stack, postgres, redis_server, database, rng)
    observer = Observer(stack)
    injections: list[Injection] = []
    started = time.monotonic()
    try:
        stack.start_sim(PLAN)
        setup = seed(
            stack.env,
            seed_spec(
                ari_url=stack.ari_url, ari_user=SIM_USER, password_env=PASSWORD_ENV, app=SIM_APP,
                timezone=zone_where_it_is(14), scale=CAMPAIGN_SCALE.get(fault, 1),
            ),
        )  # fmt: skip
        faults.pbx_id = setup["tenants"][0]["pbx_id"]  # one Stasis app serves both tenants' PBX rows
        # Replies long enough that a callee who talks hears more of the agent than an apology lasts.
        stack.start_realtime(extra=["--reply-ms", "2500", "--speed", "5"])
        faults.start_media()
        faults.start_stasis()
        faults.start_worker()
        faults.start_beat()
        observer.start()
        wait_for(lambda: bool(observer.latest), timeout=60, what="the first live calls")

        for phase in faults.phases(INJECTIONS):
            injections.append(faults.fault_once(fault, observer, phase=phase))
            time.sleep(rng.uniform(3.0, 6.0))
        settled = faults.wait_settled(timeout=150)
        end = now()
        observer.stop()
        died = faults.died_on_their_own()
        calls, attempts, leads = faults.sim_calls(), faults.attempts(), faults.leads()
    except BaseException:
        print(f"process logs in {stack.directory}\n{stack.logs(40)}")  # shown with the failure
        raise
    finally:
        observer.stop()
        stack.stop()

    caps = {tenant["id"]: tenant["cap"] for tenant in setup["tenants"]}
    verdict = judge(
        calls=calls,
        attempts=attempts,
        leads=leads,
        windows=[injection.window() for injection in injections],
        outages=[outage for injection in injections if (outage := injection.outage()) is not None],
        peaks=observer.peaks,
        caps=caps,
        hard_max_s=setup["hard_max_s"],
        now=end,
    )
    max_live = ",".join(f"{observer.peaks[tenant_id]}/{cap}" for tenant_id, cap in caps.items())
    summary = (
        f"fault={fault} calls={verdict.calls} conversations={verdict.conversations} "
        f"faults_injected={len(injections)} "
        f"wrong_outcomes={len(verdict.wrong_outcomes)} duplicates={len(verdict.duplicates)} "
        f"redialed_answered={len(verdict.redialed_answered)} max_live={max_live}"
    )
    record_summary(summary)
    details = (
        "  injected at: "
        + ", ".join(
            f"{i.phase} at {i.injected_at:%H:%M:%S.%f}"[:-3]
            + f", back at {i.recovered_at:%H:%M:%S} ({i.live_calls} live, "
            f"{placed_between(calls, i)} placed until back)"
            for i in injections
        )
        + "; "
        f"settled: {settled}; {time.monotonic() - started:.0f} s; seed {SEED}\n"
        f"  attempts: {dict(sorted(count_by_outcome(attempts).items()))}; stuck: {len(verdict.stuck)}, "
        f"overdue: {len(verdict.overdue)}, unrecorded calls: {len(verdict.unrecorded)}, "
        f"leads left behind: {len(verdict.stalled_leads)}, placed while known down: "
        f"{len(verdict.placed_while_down)}; died on their own: {', '.join(died) or 'none'}"
    )
    record_summary(details)
    print(summary)
    print(details)

    evidence = ""
    if verdict.failures():
        print(f"process logs in {stack.directory}\n{stack.logs(40)}")
        evidence = explain(
            faults, calls, [*verdict.wrong_outcomes, *verdict.stuck, *verdict.redialed_answered]
        )
    assert not verdict.failures(), f"{summary}\n{details}\n{verdict.report()}\n{evidence}"
    # And the run tested what it says: the caps were sampled, every fault hit live calls, and callees talked
    # with the agent (the redial rule had conversations to protect).
    assert observer.samples > 50, f"only {observer.samples} samples of the live calls"
    assert verdict.conversations > 0, f"no callee had a conversation: {details}"
    assert all(injection.live_calls for injection in injections), f"a fault hit no live call: {details}"


def placed_between(calls: list[dict[str, Any]], injection: Injection) -> int:
    """Calls the product placed between a fault and the component's recovery."""
    start, end = injection.injected_at, injection.recovered_at or now()
    return sum(1 for call in calls if start <= datetime.fromisoformat(call["created_at"]) <= end)


def explain(faults: FaultStack, calls: list[dict[str, Any]], findings: list[Finding]) -> str:
    """For each attempt found wrong: the simulator's record of its call and the attempt's event log."""
    by_id = {call["id"]: call for call in calls}
    ids = sorted({f.attempt_id for f in findings})
    try:
        events = faults.attempt_events(ids)
    except psycopg.Error as exc:
        return f"(no event logs: {exc})"
    lines = ["evidence:"]
    for attempt_id in ids:
        lines.append(f"  {attempt_id} {describe_call(by_id.get(attempt_id))}")
        lines.extend(f"      {event}" for event in events.get(attempt_id, []))
    return "\n".join(lines)
