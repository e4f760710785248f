"""Outbound campaigns end to end, on real processes: the PBX simulator, Celery workers and beat, the Stasis
app and a stand-in media worker, all sharing this test's PostgreSQL database and Redis.

The clock is the real one; the calling windows are placed around it (a zone where it is about 14:00 for
the open ones, one where it is about 03:00 for a closed one, and a window that closes at a minute boundary
during the run), so "nothing is dialed outside its window" is checked against real instants.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from campaigns.lifecycle import AttemptOutcome, AttemptState
from campaigns.models import CallAttempt, Campaign, DncEntry, Lead, Pbx
from campaigns.services.campaigns import campaign_start
from campaigns.services.contacts import lead_add
from campaigns.services.dnc import dnc_add
from campaigns.windows import WEEKDAYS
from tenants.models import Tenant
from tests.campaigns.factories import make_campaign, make_contact, make_pbx, make_tenant
from tests.e2e.stack import PASSWORD_ENV, SIM_APP, SIM_USER, Stack, wait_for, zone_where_it_is

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(420),
]

ALL_DAY = {day: [["00:00", "24:00"]] for day in WEEKDAYS}  # still clipped to the 08:00–21:00 hard bounds
RETRY_DELAY_S = 2


# Numbers: +1 212 555 G T NN — G the callee behaviour (the simulator's plan matches the prefix), T the tenant.
ANSWERS, BUSY, NO_ANSWER, REJECTS, ON_DNC, CLOSED_ZONE, WINDOW_CLOSES = "1234567"
PLAN = {
    "default": {"behaviour": "answer", "after": 0.1, "hangup_after": 0.2},
    "prefixes": {
        f"+1212555{ANSWERS}": {"behaviour": "answer", "after": 0.1, "hangup_after": 0.2},
        f"+1212555{BUSY}": {"behaviour": "busy", "after": 0.1},
        f"+1212555{NO_ANSWER}": "no_answer",  # rings until the originate timeout (the ring timeout, 1 s)
        f"+1212555{REJECTS}": {"behaviour": "reject", "after": 0.1},
        f"+1212555{WINDOW_CLOSES}": {"behaviour": "answer", "after": 0.2, "hangup_after": 3.0},
    },
}
# Per tenant: 100 leads of the main campaign.
MIX = {ANSWERS: 50, BUSY: 15, NO_ANSWER: 10, REJECTS: 15, ON_DNC: 5, CLOSED_ZONE: 5}
EXPECTED_OUTCOME = {
    ANSWERS: AttemptOutcome.ANSWERED,
    BUSY: AttemptOutcome.BUSY,
    NO_ANSWER: AttemptOutcome.NO_ANSWER,
    REJECTS: AttemptOutcome.REJECTED,
}
EXPECTED_ATTEMPTS = {ANSWERS: 1, BUSY: 2, NO_ANSWER: 2, REJECTS: 1, ON_DNC: 0, CLOSED_ZONE: 0}


def number(group: str, tenant_index: int, n: int) -> str:
    return f"+1212555{group}{tenant_index}{n:02d}"


def group_of(e164: str) -> str:
    return e164[8]


def tenant_index_of(e164: str) -> int:
    return int(e164[9])


def tenant_of(e164: str) -> int:
    """The index of the tenant that calls this number (the closing campaign's numbers are all tenant 0's)."""
    return 0 if group_of(e164) == WINDOW_CLOSES else tenant_index_of(e164)


@dataclass
class LiveSampler:
    """Samples the simulator's live calls as fast as it answers; keeps the largest count per key."""

    stack: Stack
    key: Callable[[dict[str, Any]], Any]
    peak: Counter[Any] = field(default_factory=Counter)
    samples: int = 0
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="live-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        assert not self.errors, self.errors
        assert self.samples > 50, f"only {self.samples} samples"

    def _run(self) -> None:
        with self.stack.sim() as sim:
            while not self._stop.is_set():
                try:
                    live = sim.get("/sim/calls", params={"state": "live"}).json()["calls"]
                except httpx.HTTPError as exc:  # pragma: no cover - reported by stop()
                    self.errors.append(exc)
                    return
                counts = Counter(self.key(call) for call in live if call["direction"] == "outbound")
                for key, count in counts.items():
                    self.peak[key] = max(self.peak[key], count)
                self.samples += 1
                time.sleep(0.01)


def max_overlap(intervals: Iterable[tuple[datetime, datetime]]) -> tuple[int, datetime | None]:
    """The largest number of intervals open at one instant (an end frees before a start takes), and when."""
    points = sorted(itertools.chain.from_iterable(((a, 1), (b, -1)) for a, b in intervals))
    live = peak = 0
    when = None
    for instant, step in points:
        live += step
        if live > peak:
            peak, when = live, instant
    return peak, when


def sim_pbx(stack: Stack, tenant: Tenant) -> Pbx:
    """The tenant's PBX row: the stack's simulator, as a SIP trunk (causes and SIP codes on every end)."""
    return make_pbx(
        tenant, ari_url=stack.ari_url, ari_user=SIM_USER, password_env=PASSWORD_ENV, app_name=SIM_APP,
        endpoint_template="PJSIP/{number}@trunk", max_channels=100, calls_per_second=100,
    )  # fmt: skip


def dialing_setup(stack: Stack, *, caps: list[int]) -> list[tuple[Tenant, Campaign]]:
    """Tenants with the given caps, each with a PBX row on the simulator and a main campaign of 100 leads."""
    open_zone, closed_zone = zone_where_it_is(14), zone_where_it_is(3)
    made = []
    for index, cap in enumerate(caps):
        tenant = make_tenant(max_concurrent_calls=cap, calls_per_second=50)
        sim_pbx(stack, tenant)
        campaign = make_campaign(
            tenant,
            calling_windows=ALL_DAY,
            ring_timeout=1,
            max_attempts=2,
            retry_delays={AttemptOutcome.BUSY: RETRY_DELAY_S, AttemptOutcome.NO_ANSWER: RETRY_DELAY_S},
        )
        for group, count in MIX.items():
            for n in range(count):
                e164 = number(group, index, n)
                zone = closed_zone if group == CLOSED_ZONE else open_zone
                lead_add(campaign=campaign, contact=make_contact(tenant, e164, timezone=zone))
                if group == ON_DNC:
                    dnc_add(tenant=tenant, phone_number=e164, source=DncEntry.Source.API)
        made.append((tenant, campaign))
    return made


def start_processes(stack: Stack, *, workers: int = 2) -> None:
    stack.start_media_sink()
    first_pbx = Pbx.objects.order_by("pk").values_list("pk", flat=True)[0]
    stack.start_stasis(first_pbx)  # serves every PBX row on this ARI URL + app
    stack.wait_stasis_connected()
    for i in range(workers):
        stack.start_worker(f"worker{i + 1}", concurrency=4)
    stack.start_beat()


def wait_until_settled(campaigns: list[Campaign], *, timeout: float) -> None:
    """Until no lead of these campaigns is in an attempt or due (waiting leads due later are settled)."""

    def settled() -> bool:
        soon = datetime.now(UTC) + timedelta(minutes=30)
        return (
            not Lead.objects.filter(campaign__in=campaigns)
            .exclude(status__in=[Lead.Status.DONE, Lead.Status.SUPPRESSED])
            .exclude(status=Lead.Status.WAITING, next_due_at__gt=soon)
            .exists()
        )

    wait_for(settled, timeout=timeout, what="every lead to reach a final state", interval=0.5)


def test_three_tenants_with_caps_5_2_1_run_their_campaigns_to_completion(stack: Stack) -> None:
    stack.start_sim(PLAN)
    caps = [5, 2, 1]
    setup = dialing_setup(stack, caps=caps)

    # Tenant 0 also runs a campaign whose window closes at a minute boundary during the run.
    tenant0 = setup[0][0]
    open_zone = ZoneInfo(zone_where_it_is(14))
    # The next minute boundary at least 30 s away: while the main campaigns are still dialing.
    closes_at = (datetime.now(UTC) + timedelta(seconds=90)).replace(second=0, microsecond=0)
    local_close = closes_at.astimezone(open_zone)
    closing = make_campaign(
        tenant0,
        calling_windows={WEEKDAYS[local_close.weekday()]: [["08:00", local_close.strftime("%H:%M")]]},
        ring_timeout=5,
    )
    # More than it can call before the close (at most 5 slots, ≈ 3.5 s a call, ≤ 90 s).
    for e164 in [number(WINDOW_CLOSES, t, n) for t in range(3) for n in range(100)][:250]:
        lead_add(campaign=closing, contact=make_contact(tenant0, e164, timezone=str(open_zone)))
    campaigns = [campaign for _, campaign in setup]
    for campaign in [*campaigns, closing]:
        campaign_start(campaign=campaign)

    sampler = LiveSampler(stack, key=lambda call: tenant_of(call["number"]))
    sampler.start()
    start_processes(stack)
    try:
        wait_until_settled(campaigns, timeout=240)
        after_close = closes_at + timedelta(seconds=5)  # see the window close, then a little more
        if datetime.now(UTC) < after_close:
            time.sleep((after_close - datetime.now(UTC)).total_seconds())
    finally:
        sampler.stop()

    with stack.sim() as sim:
        calls = sim.get("/sim/calls", params={"state": "all"}).json()["calls"]
    attempts = list(CallAttempt.objects.select_related("lead__contact").order_by("queued_at"))

    # The caps were never exceeded, neither on the PBX (sampled) nor in the database (every instant).
    assert all(sampler.peak[i] <= cap for i, cap in enumerate(caps)), sampler.peak
    assert sampler.peak[2] == 1 and sampler.peak[1] == 2, sampler.peak  # and they were used
    by_tenant: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
    for attempt in attempts:
        assert attempt.state == AttemptState.ENDED or attempt.campaign_id == closing.pk, attempt
        if attempt.ended_at is not None:
            by_tenant[attempt.tenant_id].append((attempt.queued_at, attempt.ended_at))
    for (tenant, _), cap in zip(setup, caps, strict=True):
        peak, at = max_overlap(by_tenant[tenant.pk])
        assert peak <= cap, "\n".join(
            f"{a.number} {a.outcome} queued {a.queued_at:%T.%f} sent {a.originate_sent_at} "
            f"ended {a.ended_at:%T.%f} {a.error}"
            for a in attempts
            if a.tenant_id == tenant.pk and a.ended_at and at and a.queued_at <= at < a.ended_at
        )

    # No channel id was ever originated twice, and every call is an attempt.
    ids = [call["id"] for call in calls if call["direction"] == "outbound"]
    assert len(ids) == len(set(ids))
    assert set(ids) == {str(a.pk) for a in attempts if a.originated_at is not None}

    # DNC numbers and the closed-zone leads were never dialed.
    dialed = {call["number"] for call in calls}
    assert not {n for n in dialed if group_of(n) in (ON_DNC, CLOSED_ZONE)}

    # Every lead of the main campaigns ended as its callee behaves, with the right number of attempts.
    for index, (_, campaign) in enumerate(setup):
        for lead in Lead.objects.filter(campaign=campaign).select_related("contact"):
            group = group_of(lead.contact.phone_number)
            mine = [a for a in attempts if a.lead_id == lead.pk]
            assert len(mine) == EXPECTED_ATTEMPTS[group], (lead.contact.phone_number, mine)
            assert tenant_index_of(lead.contact.phone_number) == index
            if group in EXPECTED_OUTCOME:
                outcomes = {a.outcome for a in mine}
                assert outcomes == {EXPECTED_OUTCOME[group]}, (lead.contact.phone_number, mine)
                assert lead.status == Lead.Status.DONE
            if group == ANSWERS:
                assert all(a.answered_at is not None and a.duration_s for a in mine)
            if group == ON_DNC:
                assert (lead.status, lead.done_reason) == (Lead.Status.SUPPRESSED, "dnc")
            if group == CLOSED_ZONE:
                # Waiting for the next opening: 08:00 callee-local time.
                assert lead.status == Lead.Status.WAITING
                assert lead.next_due_at is not None and lead.next_due_at > datetime.now(UTC)
                local = lead.next_due_at.astimezone(ZoneInfo(lead.contact.timezone))
                assert (local.hour, local.minute) == (8, 0), local
            # Retries waited at least their delay after the previous attempt ended.
            for first, second in itertools.pairwise(mine):
                assert first.ended_at is not None
                assert second.queued_at >= first.ended_at + timedelta(seconds=RETRY_DELAY_S)
            if group in (BUSY, NO_ANSWER):
                assert [a.cause for a in mine] == [17, 17] if group == BUSY else [19, 19]

    # The closing window: calls were placed until it closed and none after it.
    closing_calls = [call for call in calls if group_of(call["number"]) == WINDOW_CLOSES]
    assert closing_calls, "the closing campaign never dialed"
    late = [call for call in closing_calls if datetime.fromisoformat(call["created_at"]) >= closes_at]
    assert not late, (closes_at, [(call["created_at"], call["id"]) for call in late])
    assert all(
        a.originate_sent_at is None or a.originate_sent_at < closes_at
        for a in attempts
        if a.campaign_id == closing.pk
    )
    left = Lead.objects.filter(campaign=closing).exclude(status=Lead.Status.DONE)
    assert left.exists(), "every closing-campaign lead was done before the window closed: nothing tested"
    for lead in left:
        assert lead.status == Lead.Status.WAITING
        assert lead.next_due_at is not None and lead.next_due_at > closes_at + timedelta(hours=6)
