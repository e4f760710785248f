"""The dialer's Celery tasks and the CPS limiter: the limiter against real Redis, the originate task run in
this process against the PBX simulator (over real TCP, in a thread), and one end-to-end run through a real
worker process (PostgreSQL)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import httpx
import pytest
from celery.exceptions import Retry

from campaigns import ratelimit, tasks
from campaigns.lifecycle import AttemptInput, AttemptOutcome, AttemptState
from campaigns.models import CallAttempt, Campaign, DncEntry, Lead, Pbx
from campaigns.services import originate, passes
from campaigns.services.call_events import attempt_apply
from campaigns.services.dispatch import dispatch_tenant
from campaigns.services.dnc import dnc_add
from campaigns.services.originate import ORIGINATE_MAX_ARI_RETRIES, ORIGINATE_SETTLE_S
from campaigns.services.pbx import pbx_ari_client
from campaigns.tasks import (
    dispatch_sweep,
    dispatch_tenant_task,
    originate_attempt,
    resume_stalled_attempts,
    trigger_dispatch,
)
from campaigns.windows import WEEKDAYS
from orchestrator.redis_client import get_redis
from telephony.ari import PbxConfig
from telephony.sim.plan import parse_plan
from tenants.models import Tenant
from tests.campaigns.factories import make_campaign, make_contact, make_pbx, make_tenant
from tests.conftest import database_url
from tests.e2e.stack import Stack, zone_where_it_is
from tests.health import pbxs_and_media_up
from tests.telephony.sim.conftest import APP, PASSWORD, USER, start_sim

ALL_DAY = {day: [["00:00", "24:00"]] for day in WEEKDAYS}  # still clipped to the 08:00–21:00 hard bounds
PASSWORD_ENV = "TEST_ARI_PASSWORD"
_numbers = iter(range(1000, 10000))


def open_zone() -> str:
    """A fixed-offset zone where it is about 14:00 now: the calling window is open whatever the time."""
    return zone_where_it_is(14)


@pytest.fixture(autouse=True)
def own_limiter_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # Row ids repeat across tests (and a developer's product may share this Redis): keys of our own.
    monkeypatch.setattr(ratelimit, "KEY_PREFIX", f"test:{uuid.uuid4().hex}:ratelimit:cps")
    monkeypatch.setattr(originate, "EXPECT_KEY_PREFIX", f"test:{uuid.uuid4().hex}:originate-expected")
    monkeypatch.setattr(passes, "PENDING_KEY_PREFIX", f"test:{uuid.uuid4().hex}:dispatch-pending")


# =========================================================================================== ratelimit


def test_the_limiter_grants_rate_per_window_and_says_how_long_to_wait():
    key = f"test:ratelimit:{uuid.uuid4().hex}"
    t0 = 1_000_000
    assert [ratelimit.acquire(key=key, rate_per_s=3, now_ms=t0 + i) for i in range(3)] == [0, 0, 0]
    # The 4th in the same second waits until the first leaves the window (1000 ms after it).
    assert ratelimit.acquire(key=key, rate_per_s=3, now_ms=t0 + 10) == pytest.approx(0.990)
    assert ratelimit.acquire(key=key, rate_per_s=3, now_ms=t0 + 999) == pytest.approx(0.001)
    assert ratelimit.acquire(key=key, rate_per_s=3, now_ms=t0 + 1000) == 0
    # A refusal records nothing: the next slot frees up when the second grant (t0+1) leaves.
    assert ratelimit.acquire(key=key, rate_per_s=3, now_ms=t0 + 1000) == pytest.approx(0.001)
    assert ratelimit.acquire(key=key, rate_per_s=3, now_ms=t0 + 1001) == 0


def test_a_burst_can_lower_the_window_limit_but_never_raise_it():
    key = f"test:ratelimit:{uuid.uuid4().hex}"
    assert ratelimit.acquire(key=key, rate_per_s=5, burst=1, now_ms=0) == 0
    assert ratelimit.acquire(key=key, rate_per_s=5, burst=1, now_ms=500) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="burst"):
        ratelimit.acquire(key=key, rate_per_s=5, burst=6)
    with pytest.raises(ValueError, match="rate_per_s"):
        ratelimit.acquire(key=key, rate_per_s=0)


def test_acquire_all_takes_every_key_or_none():
    tenant, pbx = f"test:rl:t:{uuid.uuid4().hex}", f"test:rl:p:{uuid.uuid4().hex}"
    assert ratelimit.acquire(key=pbx, rate_per_s=1, now_ms=0) == 0
    # The PBX is full: the tenant's slot must not be used up by the refusal.
    assert ratelimit.acquire_all([(tenant, 1), (pbx, 1)], now_ms=100) == pytest.approx(0.9)
    assert ratelimit.acquire(key=tenant, rate_per_s=1, now_ms=200) == 0


@dataclass(frozen=True)
class Grant:
    before: float  # monotonic time just before the call; the grant happened after it ...
    after: float  # ... and before this


def test_never_more_than_rate_in_any_1_s_window_under_concurrent_hammering():
    key = f"test:ratelimit:{uuid.uuid4().hex}"
    rate, threads, duration = 5, 6, 3.0
    grants: list[Grant] = []
    waits: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def redis_now() -> float:
        # The limiter's own clock (Redis TIME): the client's clock may run apart from it by milliseconds.
        seconds, micros = get_redis().time()
        return seconds + micros / 1e6

    def hammer() -> None:
        while time.monotonic() < deadline:
            before = redis_now()
            wait = ratelimit.acquire(key=key, rate_per_s=rate)
            after = redis_now()
            with lock:
                (waits.append(wait) if wait else grants.append(Grant(before, after)))
            if wait:
                time.sleep(min(wait, 0.01))

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    # The grants were spread over the whole run, close to the rate (no starvation, no excess).
    assert rate * duration <= len(grants) <= rate * (duration + 1)
    assert waits and all(0 < wait <= 1.0 for wait in waits)
    # Any rate+1 grants span at least 1 s of Redis time. Each grant's Redis time lies in [before, after]
    # (both read from Redis too),
    # so for the set starting at grant g (the earliest "before"), the tightest end is the rate-th smallest
    # "after" among the grants that started no earlier than g.
    tolerance = 0.002  # Redis TIME is truncated to whole milliseconds
    for first in grants:
        later = sorted(g.after for g in grants if g is not first and g.before >= first.before)
        if len(later) < rate:
            continue
        span = max(first.after, later[rate - 1]) - first.before
        assert span >= 1.0 - tolerance, f"{rate + 1} grants within {span:.3f} s"


# ========================================================================================== simulator


@dataclass
class ThreadedSim:
    port: int
    http: httpx.Client

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls(self, state: str = "all") -> list[dict[str, Any]]:
        resp = self.http.get("/sim/calls", params={"state": state})
        assert resp.status_code == 200, resp.text
        calls: list[dict[str, Any]] = resp.json()["calls"]
        return calls


async def _hold_stasis_app(port: int, connected: asyncio.Event) -> None:
    """Register the Stasis app on the simulator (its events websocket) and ignore the events.

    Without a registered app, an answered call fails to enter Stasis and ends at once; with it, a callee
    keeps the call up for its plan's ``hangup_after``. (The real Stasis app replaces this later.)
    """
    async with (
        aiohttp.ClientSession(
            headers={"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
        ) as session,
        session.ws_connect(f"http://127.0.0.1:{port}/ari/events", params={"app": APP}) as ws,
    ):
        connected.set()
        async for _ in ws:
            pass


def _run_sim(plan_doc: dict[str, Any], *, stasis_app: bool = False) -> Generator[ThreadedSim]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="pbx-sim", daemon=True)
    thread.start()
    runner, _pbx, port = asyncio.run_coroutine_threadsafe(start_sim(parse_plan(plan_doc)), loop).result(10)
    app_task = None
    if stasis_app:

        async def start_app() -> asyncio.Task[None]:
            connected = asyncio.Event()
            task = asyncio.create_task(_hold_stasis_app(port, connected))
            await asyncio.wait_for(connected.wait(), 5)
            return task

        app_task = asyncio.run_coroutine_threadsafe(start_app(), loop).result(10)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(USER, PASSWORD), timeout=5)
    try:
        yield ThreadedSim(port=port, http=http)
    finally:
        http.close()
        if app_task is not None:
            loop.call_soon_threadsafe(app_task.cancel)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedSim]:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    # Callees ring until the originate timeout: a placed channel stays alive for the whole test.
    yield from _run_sim({"default": "no_answer"})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def dialing_tenant(*, base_url: str, cap: int = 5, **pbx: Any) -> tuple[Tenant, Campaign, Pbx]:
    tenant = make_tenant(max_concurrent_calls=cap, calls_per_second=100)
    pbx_row = make_pbx(
        tenant,
        ari_url=base_url + "/",
        ari_user=USER,
        password_env=PASSWORD_ENV,
        app_name=APP,
        calls_per_second=100,
        **pbx,
    )
    campaign = make_campaign(tenant, calling_windows=ALL_DAY, ring_timeout=20)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.RUNNING)
    campaign.refresh_from_db()
    return tenant, campaign, pbx_row


def add_leads(campaign: Campaign, count: int) -> list[Lead]:
    zone = open_zone()
    leads = []
    for _ in range(count):
        contact = make_contact(campaign.tenant, f"+1212555{next(_numbers):04d}", timezone=zone)
        leads.append(Lead.objects.create(campaign=campaign, contact=contact, next_due_at=datetime.now(UTC)))
    return leads


def queued_attempt(*, base_url: str, **pbx: Any) -> CallAttempt:
    tenant, campaign, _ = dialing_tenant(base_url=base_url, **pbx)
    add_leads(campaign, 1)
    [attempt_id] = dispatch_tenant(tenant_id=tenant.pk)
    return CallAttempt.objects.get(pk=attempt_id)


@pytest.mark.django_db
def test_a_queued_attempt_is_originated_with_its_id_as_channel_id(sim):
    attempt = queued_attempt(base_url=sim.base)

    assert originate_attempt.run(str(attempt.pk)) == "originated"

    attempt.refresh_from_db()
    assert attempt.state == AttemptState.DIALING
    assert attempt.originated_at is not None
    [call] = sim.calls()
    assert call["id"] == str(attempt.pk)
    assert call["app"] == APP
    assert call["app_args"] == ["outbound", str(attempt.pk)]
    assert call["number"] == attempt.number
    assert call["variables"] == {
        "ATTEMPT_ID": str(attempt.pk),
        "CAMPAIGN_ID": str(attempt.campaign_id),
        "TENANT_ID": str(attempt.tenant_id),
    }


@pytest.mark.django_db
def test_running_the_task_twice_places_one_call(sim):
    attempt = queued_attempt(base_url=sim.base)

    assert originate_attempt.run(str(attempt.pk)) == "originated"
    assert originate_attempt.run(str(attempt.pk)) == "not_queued"

    assert [call["id"] for call in sim.calls()] == [str(attempt.pk)]


@pytest.mark.django_db
def test_a_copy_of_the_task_that_finds_the_send_claimed_waits_and_never_sends(sim, retries):
    attempt = queued_attempt(base_url=sim.base)
    assert originate_attempt.run(str(attempt.pk)) == "originated"
    # As if a second copy of the task had passed the re-check while the first one was sending.
    CallAttempt.objects.filter(pk=attempt.pk).update(state=AttemptState.QUEUED)

    with pytest.raises(Retry):
        originate_attempt.run(str(attempt.pk))

    # It waits until the first request has surely settled, and sent nothing.
    [asked] = retries
    assert 0 < asked["countdown"] <= ORIGINATE_SETTLE_S + 0.5
    assert [call["id"] for call in sim.calls()] == [str(attempt.pk)]
    assert _expected(attempt.pk)


def _settled(attempt: CallAttempt) -> None:
    """As if the attempt's originate had been sent long enough ago and its answer never recorded."""
    CallAttempt.objects.filter(pk=attempt.pk).update(
        state=AttemptState.QUEUED,
        originated_at=None,
        originate_sent_at=datetime.now(UTC) - timedelta(seconds=ORIGINATE_SETTLE_S + 1),
    )


@pytest.mark.django_db
def test_a_lost_answer_is_settled_by_asking_the_pbx_a_live_channel_means_placed(sim):
    attempt = queued_attempt(base_url=sim.base)
    assert originate_attempt.run(str(attempt.pk)) == "originated"
    _settled(attempt)

    assert originate_attempt.run(str(attempt.pk)) == "already"

    assert [call["id"] for call in sim.calls()] == [str(attempt.pk)]
    attempt.refresh_from_db()
    assert attempt.state == AttemptState.DIALING
    assert attempt.events.filter(type="queued->dialing", data__data__settled=True).exists()


@pytest.mark.django_db
def test_a_lost_answer_with_no_channel_left_fails_the_attempt_without_dialing_again(sim):
    attempt = queued_attempt(base_url=sim.base)
    assert originate_attempt.run(str(attempt.pk)) == "originated"
    # The call ended and nobody told the orchestrator (the Stasis app was down, say).
    assert sim.http.delete(f"/ari/channels/{attempt.pk}").status_code == 204
    deadline = time.monotonic() + 5
    while sim.calls("live") and time.monotonic() < deadline:
        time.sleep(0.02)
    _settled(attempt)

    assert originate_attempt.run(str(attempt.pk)) == "failed"

    assert [call["id"] for call in sim.calls()] == [str(attempt.pk)]  # still only the first call
    attempt.refresh_from_db()
    assert (attempt.state, attempt.outcome) == (AttemptState.ENDED, AttemptOutcome.ERROR)
    assert "not dialed again" in attempt.error


@pytest.mark.django_db
def test_the_send_is_claimed_before_the_post_and_kept_after_a_success(sim):
    attempt = queued_attempt(base_url=sim.base)
    assert attempt.originate_sent_at is None
    before = datetime.now(UTC)

    assert originate_attempt.run(str(attempt.pk)) == "originated"

    attempt.refresh_from_db()
    assert attempt.originate_sent_at is not None
    assert before <= attempt.originate_sent_at <= attempt.originated_at


@pytest.mark.django_db
def test_a_number_put_on_the_dnc_list_after_the_claim_is_not_dialed(sim):
    attempt = queued_attempt(base_url=sim.base)
    dnc_add(tenant=attempt.tenant, phone_number=attempt.number, source=DncEntry.Source.API)

    assert originate_attempt.run(str(attempt.pk)) == "dnc"

    assert sim.calls() == []
    attempt.refresh_from_db()
    assert (attempt.state, attempt.outcome) == (AttemptState.ENDED, AttemptOutcome.OPTED_OUT)
    lead = Lead.objects.get(pk=attempt.lead_id)
    assert (lead.status, lead.done_reason, lead.attempts) == (Lead.Status.SUPPRESSED, "dnc", 0)


@pytest.mark.django_db
def test_a_paused_campaign_cancels_the_attempt_without_consuming_it(sim):
    attempt = queued_attempt(base_url=sim.base)
    Campaign.objects.filter(pk=attempt.campaign_id).update(status=Campaign.Status.PAUSED)

    assert originate_attempt.run(str(attempt.pk)) == "campaign_not_running"

    assert sim.calls() == []
    attempt.refresh_from_db()
    assert (attempt.state, attempt.outcome) == (AttemptState.ENDED, AttemptOutcome.CANCELLED)
    lead = Lead.objects.get(pk=attempt.lead_id)
    assert (lead.status, lead.attempts) == (Lead.Status.WAITING, 0)


@pytest.mark.django_db
def test_an_unknown_technology_ends_the_attempt_with_an_error(sim):
    attempt = queued_attempt(base_url=sim.base, endpoint_template="NOSUCHTECH/{number}@trunk")

    assert originate_attempt.run(str(attempt.pk)) == "failed"

    assert sim.calls() == []
    attempt.refresh_from_db()
    assert (attempt.state, attempt.outcome) == (AttemptState.ENDED, AttemptOutcome.ERROR)
    assert "Allocation failed" in attempt.error


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the task asked ``self.retry`` for; the call still raises Retry, as it does in a worker."""
    asked: list[dict[str, Any]] = []
    real = originate_attempt.retry

    def record(**options: Any) -> Retry:
        asked.append(options)
        return real(**options)  # called directly, this raises Retry

    monkeypatch.setattr(originate_attempt, "retry", record)
    return asked


@pytest.mark.django_db
def test_a_pbx_that_is_down_makes_the_task_retry_and_the_attempt_stays_queued(monkeypatch, retries):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    attempt = queued_attempt(base_url=f"http://127.0.0.1:{closed_port()}")

    with pytest.raises(Retry):
        originate_attempt.run(str(attempt.pk), ari_failures=2)

    attempt.refresh_from_db()
    assert attempt.state == AttemptState.QUEUED
    # Connection refused: certainly not placed, so the claim to send is given back for the retry.
    assert attempt.originate_sent_at is None
    assert Lead.objects.get(pk=attempt.lead_id).attempts == 0
    # Exponential backoff with jitter (2 s × 2² = 8 s, half of it random), one more failure counted.
    [asked] = retries
    assert asked["args"] == (str(attempt.pk),)
    assert asked["kwargs"] == {"ari_failures": 3}
    assert 4 <= asked["countdown"] <= 8
    assert _expected(attempt.pk)


@pytest.mark.django_db
def test_a_timeout_after_sending_keeps_the_claim_so_the_retry_asks_instead_of_sending(monkeypatch, retries):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    # A server that accepts the request and never answers: the read times out after the request was sent.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        attempt = queued_attempt(base_url=f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setattr(
            "campaigns.services.pbx.pbx_ari_config",
            lambda *, pbx: PbxConfig(
                base_url=pbx.ari_url, user=USER, password=PASSWORD, app=APP,
                endpoint_template=pbx.endpoint_template, read_timeout_s=0.3,
            ),
        )  # fmt: skip
        with pytest.raises(Retry):
            originate_attempt.run(str(attempt.pk))
    finally:
        silent.close()

    attempt.refresh_from_db()
    assert attempt.state == AttemptState.QUEUED
    assert attempt.originate_sent_at is not None
    [asked] = retries
    assert asked["kwargs"] == {"ari_failures": 1}


def _expected(attempt_id: Any) -> bool:
    return bool(get_redis().exists(f"{originate.EXPECT_KEY_PREFIX}:{attempt_id}"))


@pytest.mark.django_db
def test_the_stalled_sweep_resumes_queued_attempts_nobody_expects_and_only_those(monkeypatch, settings):
    settings.ATTEMPT_STALL_S = 30
    sent: list[str] = []
    monkeypatch.setattr(originate_attempt, "delay", lambda attempt_id: sent.append(attempt_id))
    tenant, campaign, _ = dialing_tenant(base_url="http://127.0.0.1:9")
    add_leads(campaign, 3)
    lost, expected, fresh = [CallAttempt.objects.get(pk=pk) for pk in dispatch_tenant(tenant_id=tenant.pk)]
    long_ago = datetime.now(UTC) - timedelta(seconds=31)
    CallAttempt.objects.filter(pk__in=[lost.pk, expected.pk]).update(queued_at=long_ago)
    # E.g. a CPS wait or an ARI backoff in progress.
    originate.originate_expect(attempt_ids=[expected.pk], within_s=5)

    assert resume_stalled_attempts() == 1

    assert sent == [str(lost.pk)]
    assert _expected(lost.pk)  # and not again at the next sweep, while its new task is on its way
    assert resume_stalled_attempts() == 0
    assert fresh.pk not in {UUID(a) for a in sent}


@pytest.fixture
def handed_off(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The originate tasks enqueued (args, kwargs and options) instead of being sent to the broker."""
    sent: list[dict[str, Any]] = []

    def record(args: tuple[Any, ...], kwargs: dict[str, Any] | None = None, **options: Any) -> None:
        sent.append({"args": args, "kwargs": kwargs or {}, **options})

    monkeypatch.setattr(originate_attempt, "apply_async", record)
    return sent


@pytest.mark.django_db
def test_a_hand_off_to_the_originate_task_records_that_a_task_is_expected(handed_off):
    tenant, campaign, _ = dialing_tenant(base_url="http://127.0.0.1:9")
    add_leads(campaign, 2)
    claimed = dispatch_tenant(tenant_id=tenant.pk)
    assert claimed and not any(_expected(pk) for pk in claimed)

    tasks._hand_off(claimed[0])
    tasks._hand_off(claimed[1], countdown=3.0, ari_failures=2)

    assert all(_expected(pk) for pk in claimed)
    assert handed_off == [
        {"args": (str(claimed[0]),), "kwargs": {}},
        {"args": (str(claimed[1]),), "kwargs": {"ari_failures": 2}, "countdown": 3.0},
    ]


# ========================================================================== originate in the dispatch task


def claimed_attempts(tenant: Tenant) -> list[CallAttempt]:
    """Run a dispatch pass and return the attempts it hands to its ``on_commit_attempts``."""
    got: list[CallAttempt] = []
    dispatch_tenant(tenant_id=tenant.pk, on_commit_attempts=got.extend)
    return got


@pytest.mark.django_db(transaction=True)
def test_the_dispatch_task_originates_what_it_claimed_itself(sim, handed_off):
    tenant, campaign, _ = dialing_tenant(base_url=sim.base, cap=3)
    add_leads(campaign, 5)

    assert dispatch_tenant_task.run(tenant.pk) == 3

    attempts = CallAttempt.objects.filter(tenant=tenant)
    assert sorted(call["id"] for call in sim.calls()) == sorted(str(a.pk) for a in attempts)
    for attempt in attempts:
        assert attempt.state == AttemptState.DIALING
        assert attempt.originate_sent_at is not None and attempt.originated_at is not None
    assert handed_off == []  # no originate message at all


@pytest.mark.django_db(transaction=True)
def test_a_redelivered_dispatch_task_dials_nothing_twice(sim, handed_off):
    tenant, campaign, _ = dialing_tenant(base_url=sim.base, cap=2)
    add_leads(campaign, 5)

    assert dispatch_tenant_task.run(tenant.pk) == 2
    # acks_late: the same message again (the worker died after its work, before the ack). The tenant is at
    # its cap, so the pass claims nothing and nothing is originated again.
    assert dispatch_tenant_task.run(tenant.pk) == 0

    ids = [call["id"] for call in sim.calls()]
    assert len(ids) == len(set(ids)) == 2
    assert handed_off == []


@pytest.mark.django_db(transaction=True)
def test_an_inline_originate_that_finds_the_send_claimed_hands_over_and_sends_nothing(sim, handed_off):
    tenant, campaign, _ = dialing_tenant(base_url=sim.base)
    add_leads(campaign, 1)
    [attempt] = claimed_attempts(tenant)
    # The dispatch worker died after its commit; the stalled sweep's task has claimed the send meanwhile.
    CallAttempt.objects.filter(pk=attempt.pk).update(originate_sent_at=datetime.now(UTC))

    assert tasks._originate_inline(attempt) == "handed_off"

    assert sim.calls() == []
    assert [h["args"] for h in handed_off] == [(str(attempt.pk),)]
    # The task then waits until the first send has surely settled instead of sending.
    with pytest.raises(Retry):
        originate_attempt.run(str(attempt.pk))
    assert sim.calls() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("change", "reason", "outcome"),
    [
        ("dnc", "dnc", AttemptOutcome.OPTED_OUT),
        ("paused", "campaign_not_running", AttemptOutcome.CANCELLED),
        ("suspended", "campaign_not_running", AttemptOutcome.CANCELLED),
        ("window", "outside_window", AttemptOutcome.CANCELLED),
    ],
)
def test_the_inline_re_check_refuses_and_the_task_ends_the_attempt(sim, handed_off, change, reason, outcome):
    tenant, campaign, _ = dialing_tenant(base_url=sim.base)
    add_leads(campaign, 1)
    [attempt] = claimed_attempts(tenant)
    # Changed between the pass's commit and the originate.
    if change == "dnc":
        dnc_add(tenant=tenant, phone_number=attempt.number, source=DncEntry.Source.API)
    elif change == "paused":
        Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)
    elif change == "suspended":
        Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)
    else:
        # The window, evaluated at the current time from the rows in memory, is closed now.
        attempt.campaign.calling_windows = {day: [] for day in WEEKDAYS}

    assert tasks._originate_inline(attempt) == "handed_off"

    assert sim.calls() == []
    assert CallAttempt.objects.get(pk=attempt.pk).originate_sent_at is None  # nothing was sent
    [handed] = handed_off
    if change == "window":
        Campaign.objects.filter(pk=campaign.pk).update(calling_windows={day: [] for day in WEEKDAYS})
    assert originate_attempt.run(*handed["args"]) == reason
    attempt.refresh_from_db()
    assert (attempt.state, attempt.outcome) == (AttemptState.ENDED, outcome)
    assert sim.calls() == []


@pytest.mark.django_db(transaction=True)
def test_an_inline_originate_that_fails_retryably_is_handed_to_the_task_with_a_backoff(
    monkeypatch, handed_off
):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    tenant, campaign, _ = dialing_tenant(base_url=f"http://127.0.0.1:{closed_port()}")
    add_leads(campaign, 1)

    assert dispatch_tenant_task.run(tenant.pk) == 1

    attempt = CallAttempt.objects.get(tenant=tenant)
    assert attempt.state == AttemptState.QUEUED
    assert attempt.originate_sent_at is None  # connection refused: certainly not sent, the claim given back
    [handed] = handed_off
    assert handed["args"] == (str(attempt.pk),)
    assert handed["kwargs"] == {"ari_failures": 1}  # the first failure counts against the ARI budget
    assert 1 <= handed["countdown"] <= 2
    assert _expected(attempt.pk)


@pytest.mark.django_db(transaction=True)
def test_no_cps_slot_for_an_inline_originate_hands_it_over_with_the_wait(sim, handed_off):
    tenant, campaign, _ = dialing_tenant(base_url=sim.base)
    Tenant.objects.filter(pk=tenant.pk).update(calls_per_second=1)
    add_leads(campaign, 2)

    assert dispatch_tenant_task.run(tenant.pk) == 2

    assert len(sim.calls()) == 1  # one slot this second
    [handed] = handed_off
    assert handed["kwargs"] == {}  # a CPS wait is not an ARI failure
    assert 0 < handed["countdown"] <= 1
    assert _expected(handed["args"][0])


@pytest.mark.django_db(transaction=True)
def test_an_error_in_one_inline_originate_does_not_keep_the_others_from_going_out(
    sim, handed_off, monkeypatch
):
    tenant, campaign, _ = dialing_tenant(base_url=sim.base, cap=2)
    add_leads(campaign, 2)
    real = tasks._originate_inline
    calls: list[UUID] = []

    def first_breaks(attempt: CallAttempt) -> str:
        calls.append(attempt.pk)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(attempt)

    monkeypatch.setattr(tasks, "_originate_inline", first_breaks)

    assert dispatch_tenant_task.run(tenant.pk) == 2

    assert [call["id"] for call in sim.calls()] == [str(calls[1])]
    assert [h["args"] for h in handed_off] == [(str(calls[0]),)]


def test_the_originate_retries_are_counted_by_the_task_not_by_celery():
    # CPS waits must never run into Celery's default limit of 3 retries; ari_failures is the budget.
    assert originate_attempt.max_retries is None


@pytest.mark.django_db
def test_a_pbx_still_down_after_the_last_retry_fails_the_attempt(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    attempt = queued_attempt(base_url=f"http://127.0.0.1:{closed_port()}")

    assert originate_attempt.run(str(attempt.pk), ari_failures=ORIGINATE_MAX_ARI_RETRIES) == "failed"

    attempt.refresh_from_db()
    assert (attempt.state, attempt.outcome) == (AttemptState.ENDED, AttemptOutcome.ERROR)
    assert "ConnectError" in attempt.error


@pytest.mark.django_db
def test_an_unset_password_variable_fails_the_attempt(monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    attempt = queued_attempt(base_url=f"http://127.0.0.1:{closed_port()}")

    assert originate_attempt.run(str(attempt.pk)) == "failed"

    attempt.refresh_from_db()
    assert (attempt.state, attempt.outcome) == (AttemptState.ENDED, AttemptOutcome.ERROR)
    assert PASSWORD_ENV in attempt.error


@pytest.mark.django_db
def test_no_cps_slot_means_a_retry_with_the_wait_and_no_call(sim, retries):
    attempt = queued_attempt(base_url=sim.base)
    Tenant.objects.filter(pk=attempt.tenant_id).update(calls_per_second=1)
    # Someone else used the tenant's one slot of this second.
    assert ratelimit.acquire(key=ratelimit.tenant_key(attempt.tenant_id), rate_per_s=1) == 0

    with pytest.raises(Retry):
        originate_attempt.run(str(attempt.pk))

    assert sim.calls() == []
    attempt.refresh_from_db()
    assert attempt.state == AttemptState.QUEUED
    # Back when the slot frees up, with the same arguments (a CPS wait is not an ARI failure).
    [asked] = retries
    assert set(asked) == {"countdown"}
    assert 0 < asked["countdown"] <= 1


@pytest.mark.django_db
def test_the_sweep_enqueues_a_pass_per_dialing_tenant_only(monkeypatch):
    dialing, campaign, _ = dialing_tenant(base_url="http://127.0.0.1:1")
    add_leads(campaign, 1)
    idle = make_tenant()
    make_campaign(idle)  # a draft campaign: nothing to dial
    suspended, suspended_campaign, _ = dialing_tenant(base_url="http://127.0.0.1:1")
    add_leads(suspended_campaign, 1)
    Tenant.objects.filter(pk=suspended.pk).update(status=Tenant.Status.SUSPENDED)
    sent: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(
        dispatch_tenant_task, "apply_async", lambda args, **options: sent.append((args, options))
    )

    assert dispatch_sweep.run() == 1

    [(args, options)] = sent
    assert args == (dialing.pk,)
    assert 0 < options["expires"]


@pytest.fixture
def sent_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr(dispatch_tenant_task, "apply_async", lambda args, **options: sent.append(args[0]))
    return sent


@pytest.mark.django_db
def test_the_sweep_skips_tenants_with_nothing_due_or_no_room(sent_passes):
    no_leads, _, _ = dialing_tenant(base_url="http://127.0.0.1:1")
    later, later_campaign, _ = dialing_tenant(base_url="http://127.0.0.1:1")
    [lead] = add_leads(later_campaign, 1)
    Lead.objects.filter(pk=lead.pk).update(next_due_at=datetime.now(UTC) + timedelta(hours=1))
    full, full_campaign, _ = dialing_tenant(base_url="http://127.0.0.1:1", cap=1)
    add_leads(full_campaign, 2)
    assert len(dispatch_tenant(tenant_id=full.pk)) == 1  # at its cap of 1 now, one lead still due
    campaign_full, campaign_full_campaign, _ = dialing_tenant(base_url="http://127.0.0.1:1", cap=3)
    Campaign.objects.filter(pk=campaign_full_campaign.pk).update(max_concurrent_calls=1)
    add_leads(campaign_full_campaign, 2)
    assert len(dispatch_tenant(tenant_id=campaign_full.pk)) == 1  # the campaign's cap of 1 is reached
    room, room_campaign, _ = dialing_tenant(base_url="http://127.0.0.1:1", cap=2)
    Campaign.objects.filter(pk=room_campaign.pk).update(max_concurrent_calls=1)
    add_leads(room_campaign, 3)
    assert len(dispatch_tenant(tenant_id=room.pk)) == 1  # one of two slots taken: room for one more
    Campaign.objects.filter(pk=room_campaign.pk).update(max_concurrent_calls=2)

    assert dispatch_sweep.run() == 1

    assert sent_passes == [room.pk]
    assert {no_leads.pk, later.pk, full.pk, campaign_full.pk}.isdisjoint(sent_passes)


@pytest.mark.django_db
def test_a_burst_of_triggers_enqueues_one_pass_until_it_starts(sent_passes, monkeypatch):
    tenant, campaign, _ = dialing_tenant(base_url="http://127.0.0.1:1")
    add_leads(campaign, 1)

    for _ in range(5):
        trigger_dispatch(tenant.pk)
    assert dispatch_sweep.run() == 0  # the sweep finds the pass pending too
    assert sent_passes == [tenant.pk]

    # The pass clears the flag before it counts: a call that ends from then on gets a pass of its own.
    monkeypatch.setattr(tasks, "originate_claimed", lambda attempts: None)
    assert dispatch_tenant_task.run(tenant.pk) == 1
    trigger_dispatch(tenant.pk)
    assert sent_passes == [tenant.pk, tenant.pk]


@pytest.mark.django_db
def test_the_ends_of_one_commit_trigger_their_passes_a_few_tenants_per_message(monkeypatch):
    group = passes.TRIGGER_GROUP
    tenants = [dialing_tenant(base_url="http://127.0.0.1:1")[0].pk for _ in range(group + 3)]
    singles: list[Any] = []
    groups: list[Any] = []
    monkeypatch.setattr(dispatch_tenant_task, "apply_async", lambda args, **kw: singles.append(args))
    monkeypatch.setattr(tasks.dispatch_tenants_task, "apply_async", lambda args, **kw: groups.append(args))

    tasks.trigger_dispatch_many([*tenants, tenants[0]])  # a tenant twice in one commit: one pass

    assert groups == [(tenants[:group],), (tenants[group:],)]
    assert singles == []
    assert all(get_redis().exists(passes.pending_key(t)) for t in tenants)
    # A lone end is a message of its own, as before.
    tasks.trigger_dispatch_many([dialing_tenant(base_url="http://127.0.0.1:1")[0].pk])
    assert len(singles) == 1 and len(groups) == 2


@pytest.mark.django_db
def test_a_grouped_pass_message_runs_every_pass_even_when_one_fails(monkeypatch):
    ran: list[int] = []

    def one(tenant_id: int) -> int:
        ran.append(tenant_id)
        if tenant_id == 2:
            raise RuntimeError("a bug in one tenant's pass")
        return 1

    monkeypatch.setattr(dispatch_tenant_task, "run", one)
    assert tasks.dispatch_tenants_task.run([1, 2, 3]) == 2
    assert ran == [1, 2, 3]


@pytest.mark.django_db
def test_the_pending_flag_expires_with_the_message_and_is_given_back_when_enqueueing_fails(monkeypatch):
    tenant, _, _ = dialing_tenant(base_url="http://127.0.0.1:1")

    def broken(args: Any, **options: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(dispatch_tenant_task, "apply_async", broken)
    with pytest.raises(ConnectionError):
        trigger_dispatch(tenant.pk)
    key = passes.pending_key(tenant.pk)
    assert get_redis().exists(key) == 0  # the next trigger or sweep tries again

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(dispatch_tenant_task, "apply_async", lambda args, **options: sent.append(options))
    trigger_dispatch(tenant.pk)
    [options] = sent
    assert options["expires"] == passes.DISPATCH_MESSAGE_EXPIRES_S
    assert 0 < get_redis().pttl(key) <= passes.DISPATCH_MESSAGE_EXPIRES_S * 1000


@pytest.mark.django_db
def test_pbx_rows_reaching_one_asterisk_alike_share_one_ari_client(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    _, _, first = dialing_tenant(base_url="http://127.0.0.1:1")
    _, _, second = dialing_tenant(base_url="http://127.0.0.1:1")
    _, _, other = dialing_tenant(base_url="http://127.0.0.1:2")

    shared = pbx_ari_client(pbx=first)
    assert pbx_ari_client(pbx=second) is shared
    assert pbx_ari_client(pbx=other) is not shared
    # A row whose configuration changes gets a new client; the old one stays for the row still using it.
    first.ari_url = "http://127.0.0.1:3/"
    assert pbx_ari_client(pbx=first) is not shared
    assert pbx_ari_client(pbx=second) is shared


def test_the_beat_runs_the_sweep_every_second_with_a_shorter_expiry():
    from orchestrator.celery import app

    entry = app.conf.beat_schedule["dispatch-sweep"]
    assert entry["task"] == dispatch_sweep.name
    assert entry["schedule"] == timedelta(seconds=1)
    assert 0 < entry["options"]["expires"] < 1


# ============================================================================ the originate service, directly


@pytest.mark.django_db
def test_the_originate_service_returns_a_cps_wait_instead_of_raising(sim):
    attempt = queued_attempt(base_url=sim.base)
    Tenant.objects.filter(pk=attempt.tenant_id).update(calls_per_second=1)
    assert ratelimit.acquire(key=ratelimit.tenant_key(attempt.tenant_id), rate_per_s=1) == 0

    result = originate.attempt_originate(attempt_id=attempt.pk)

    assert (result.status, result.wait, result.ari_failures) == (originate.RETRY, originate.WAIT_CPS, None)
    assert 0 < result.retry_in <= 1
    assert sim.calls() == []
    assert not _expected(attempt.pk)  # recording the expected run is the task's, when it retries


@pytest.mark.django_db
def test_the_originate_service_counts_an_ari_failure_in_its_result(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    attempt = queued_attempt(base_url=f"http://127.0.0.1:{closed_port()}")

    result = originate.attempt_originate(attempt_id=attempt.pk, ari_failures=1)

    assert (result.status, result.wait, result.ari_failures) == (
        originate.RETRY,
        originate.WAIT_ARI_BACKOFF,
        2,
    )
    assert 2 <= result.retry_in <= 4
    attempt.refresh_from_db()
    assert (attempt.state, attempt.originate_sent_at) == (AttemptState.QUEUED, None)


@pytest.mark.django_db(transaction=True)
def test_the_inline_originate_service_hands_off_with_the_cps_wait_and_sends_nothing(sim, handed_off):
    tenant, campaign, _ = dialing_tenant(base_url=sim.base)
    add_leads(campaign, 1)
    [attempt] = claimed_attempts(tenant)
    Tenant.objects.filter(pk=tenant.pk).update(calls_per_second=1)
    attempt.tenant.calls_per_second = 1
    assert ratelimit.acquire(key=ratelimit.tenant_key(tenant.pk), rate_per_s=1) == 0

    result = originate.attempt_originate_claimed(attempt=attempt)

    assert (result.status, result.wait) == (originate.HANDED_OFF, originate.WAIT_CPS)
    assert 0 < result.retry_in <= 1
    assert sim.calls() == [] and handed_off == []  # enqueueing the hand-off is the task's


# ===================================================================================== end to end (worker)


@pytest.fixture
def worker(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A real worker (4 threads) of a :class:`~tests.e2e.stack.Stack`, on the stack's queue of its own, which
    is also its default queue: what it enqueues itself (originates after a pass) comes back to it and not
    to a developer's worker."""
    env = dict(subprocess_env, DATABASE_URL=database_url(), **{PASSWORD_ENV: PASSWORD})
    stack = Stack(directory=tmp_path / "stack", env=env)
    try:
        stack.start_worker(concurrency=4)
        yield stack.queue
    finally:
        stack.stop()
        print(stack.logs())  # shown by pytest only when the test failed


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.real_health
@pytest.mark.django_db(transaction=True)
def test_a_worker_dials_a_campaign_through_without_exceeding_the_tenant_cap(worker, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    # Every callee answers after 0.2 s and hangs up 1 s later.
    sims = _run_sim({"default": {"behaviour": "answer", "after": 0.2, "hangup_after": 1}}, stasis_app=True)
    try:
        _dial_through(next(sims), worker)
    finally:
        sims.close()


def _dial_through(sim: ThreadedSim, queue: str) -> None:
    tenant, campaign, pbx = dialing_tenant(base_url=sim.base, cap=2)
    with pbxs_and_media_up([pbx.pk]):  # the worker process places calls only on a PBX that can take them
        _dial_campaign_through(sim, queue, tenant, campaign)


def _dial_campaign_through(sim: ThreadedSim, queue: str, tenant: Tenant, campaign: Campaign) -> None:
    leads = add_leads(campaign, 6)
    max_live = 0
    stop = threading.Event()
    sampler_errors: list[BaseException] = []

    def sample() -> None:
        nonlocal max_live
        with httpx.Client(base_url=sim.base, auth=(USER, PASSWORD), timeout=5) as http:
            while not stop.is_set():
                try:
                    live = http.get("/sim/calls", params={"state": "live"}).json()["calls"]
                except httpx.HTTPError as exc:  # pragma: no cover - reported below
                    sampler_errors.append(exc)
                    return
                max_live = max(max_live, len(live))
                time.sleep(0.05)

    def dispatch_again(tenant_id: int) -> None:
        dispatch_tenant_task.apply_async((tenant_id,), queue=queue)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    dispatch_again(tenant.pk)
    applied: set[str] = set()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            # No Stasis app runs here: the test applies each ended call to its attempt itself, as the
            # Stasis sink does (ChannelDestroyed → ENDED, with on_ended=trigger_dispatch).
            for call in sim.calls("ended"):
                if call["id"] in applied:
                    continue
                outcome = AttemptOutcome.ANSWERED if call["answered_at"] else AttemptOutcome.FAILED
                attempt_apply(
                    attempt_id=uuid.UUID(call["id"]),
                    event=AttemptInput.ENDED,
                    outcome=outcome,
                    cause=call["cause"],
                    on_ended=dispatch_again,
                )
                applied.add(call["id"])
            if Lead.objects.filter(pk__in=[lead.pk for lead in leads], status=Lead.Status.DONE).count() == 6:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        sampler.join(5)

    assert not sampler_errors
    statuses = sorted(Lead.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert statuses == [Lead.Status.DONE] * 6, statuses
    calls = sim.calls("all")
    ids = [call["id"] for call in calls]
    assert len(ids) == len(set(ids)) == 6, ids
    assert set(ids) == {
        str(pk) for pk in CallAttempt.objects.filter(tenant=tenant).values_list("pk", flat=True)
    }
    assert 1 <= max_live <= 2, max_live
    # The callees hung up themselves after talking: the calls really were up for a while.
    assert {call["ended_by"] for call in calls} == {"callee"}, calls
