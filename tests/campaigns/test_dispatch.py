"""The dispatcher: capacity, fairness, windows and DNC at claim time; attempt events and the lead's retry;
the re-check before originating; "why not dialed"; and the cap under concurrent passes (PostgreSQL)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from campaigns.lifecycle import LIVE_STATES, AttemptInput, AttemptOutcome, AttemptState
from campaigns.models import AttemptEvent as AttemptLog
from campaigns.models import CallAttempt, Campaign, Lead
from campaigns.selectors import attempt_recheck, lead_why_not_dialed
from campaigns.services.call_events import (
    OVERDUE_GRACE,
    AttemptStep,
    attempt_apply,
    attempt_apply_many,
    attempts_end_overdue,
)
from campaigns.services.dispatch import dispatch_tenant
from campaigns.services.dnc import dnc_add
from campaigns.windows import WEEKDAYS
from tenants.models import Tenant
from tests.campaigns.factories import make_campaign, make_contact, make_pbx, make_tenant
from tests.health import pbxs_and_media_up
from wire.brief import STASIS_APPS_KEY

# Wednesday 2025-01-15 10:00 in New York (the callee zone used below): inside every window used here.
NOW = datetime(2025, 1, 15, 15, 0, tzinfo=UTC)
ALL_DAY = {day: [["00:00", "24:00"]] for day in WEEKDAYS}  # still clipped to the 08:00–21:00 hard bounds
LIVE = sorted(state.value for state in LIVE_STATES)

_numbers = itertools.count(100)


def tenant_with_pbx(*, cap: int = 5, reserve: int = 0, channels: int = 100) -> Tenant:
    tenant = make_tenant(max_concurrent_calls=cap, inbound_reserve=reserve)
    make_pbx(tenant, max_channels=channels)
    return tenant


def running_campaign(tenant: Tenant, *, status: str = Campaign.Status.RUNNING, **overrides: Any) -> Campaign:
    overrides.setdefault("calling_windows", ALL_DAY)
    campaign = make_campaign(tenant, **overrides)
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    campaign.refresh_from_db()
    return campaign


def due_leads(campaign: Campaign, count: int, *, timezone: str = "America/New_York") -> list[Lead]:
    """``count`` leads due before NOW, oldest first."""
    leads = []
    for i in range(count):
        contact = make_contact(campaign.tenant, f"+1212555{next(_numbers):04d}", timezone=timezone)
        lead = Lead.objects.create(
            campaign=campaign, contact=contact, next_due_at=NOW - timedelta(minutes=count - i)
        )
        leads.append(lead)
    return leads


def live_attempt(lead: Lead, *, state: str = AttemptState.DIALING, pbx: Any = None) -> CallAttempt:
    Lead.objects.filter(pk=lead.pk).update(status=Lead.Status.IN_ATTEMPT, next_due_at=None)
    return CallAttempt.objects.create(
        tenant=lead.campaign.tenant,
        campaign=lead.campaign,
        lead=lead,
        pbx=pbx,
        number=lead.contact.phone_number,
        state=state,
        queued_at=NOW - timedelta(minutes=5),
    )


def live_count(**filters: Any) -> int:
    return CallAttempt.objects.filter(state__in=LIVE, **filters).count()


def claimed_campaigns(ids: list[Any]) -> list[int]:
    by_id = dict(CallAttempt.objects.filter(pk__in=ids).values_list("pk", "campaign_id"))
    return [by_id[attempt_id] for attempt_id in ids]


# ================================================================================================ dispatch


@pytest.mark.django_db
class TestCapacity:
    def test_tenant_cap_minus_live_attempts(self):
        tenant = tenant_with_pbx(cap=5)
        campaign = running_campaign(tenant)
        busy = due_leads(campaign, 2)
        for lead in busy:
            live_attempt(lead)
        waiting = due_leads(campaign, 6)

        ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW)

        assert len(ids) == 3
        assert live_count(tenant=tenant) == 5
        attempts = CallAttempt.objects.filter(pk__in=ids)
        # The oldest due leads first; each claimed lead is in its attempt, with a "created" event.
        assert {a.lead_id for a in attempts} == {lead.pk for lead in waiting[:3]}
        for attempt in attempts:
            assert attempt.state == AttemptState.QUEUED
            assert attempt.pbx_id is not None
            assert attempt.number == attempt.lead.contact.phone_number
            assert attempt.lead.status == Lead.Status.IN_ATTEMPT
            assert list(attempt.events.values_list("kind", "type")) == [("state", "created")]
        assert Lead.objects.filter(pk__in=[lead.pk for lead in waiting[3:]], status="waiting").count() == 3

    def test_inbound_reserve_is_kept_free(self):
        tenant = tenant_with_pbx(cap=5, reserve=2)
        due_leads(running_campaign(tenant), 10)
        assert len(dispatch_tenant(tenant_id=tenant.pk, now=NOW)) == 3

    def test_campaign_cap(self):
        tenant = tenant_with_pbx(cap=5)
        campaign = running_campaign(tenant, max_concurrent_calls=3)
        live_attempt(due_leads(campaign, 1)[0])
        due_leads(campaign, 10)
        assert len(dispatch_tenant(tenant_id=tenant.pk, now=NOW)) == 2
        assert live_count(campaign=campaign) == 3

    def test_pbx_channels(self):
        tenant = tenant_with_pbx(cap=10, channels=2)
        pbx = tenant.pbxs.get()
        make_pbx(tenant, max_channels=50, enabled=False)  # a disabled PBX adds nothing
        campaign = running_campaign(tenant)
        live_attempt(due_leads(campaign, 1)[0], pbx=pbx)
        due_leads(campaign, 10)
        ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
        assert len(ids) == 1
        assert CallAttempt.objects.get(pk=ids[0]).pbx_id == pbx.pk

    def test_calls_go_to_the_pbx_with_most_free_channels(self):
        tenant = make_tenant(max_concurrent_calls=10)
        big, small = make_pbx(tenant, max_channels=3), make_pbx(tenant, max_channels=2)
        due_leads(running_campaign(tenant), 10)
        ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
        assert len(ids) == 5
        pbxs = list(CallAttempt.objects.filter(pk__in=ids).values_list("pbx_id", flat=True))
        assert sorted(pbxs) == sorted([big.pk] * 3 + [small.pk] * 2)

    def test_no_enabled_pbx_means_no_calls(self):
        tenant = make_tenant(max_concurrent_calls=5)
        make_pbx(tenant, enabled=False)
        due_leads(running_campaign(tenant), 3)
        assert dispatch_tenant(tenant_id=tenant.pk, now=NOW) == []

    def test_a_cap_lowered_below_the_live_count_claims_nothing(self):
        tenant = tenant_with_pbx(cap=5)
        campaign = running_campaign(tenant)
        for lead in due_leads(campaign, 4):
            live_attempt(lead)
        due_leads(campaign, 3)
        Tenant.objects.filter(pk=tenant.pk).update(max_concurrent_calls=2, inbound_reserve=0)
        assert dispatch_tenant(tenant_id=tenant.pk, now=NOW) == []

    def test_leads_not_yet_due_are_left_alone(self):
        tenant = tenant_with_pbx()
        campaign = running_campaign(tenant)
        (lead,) = due_leads(campaign, 1)
        Lead.objects.filter(pk=lead.pk).update(next_due_at=NOW + timedelta(seconds=1))
        assert dispatch_tenant(tenant_id=tenant.pk, now=NOW) == []

    def test_a_second_pass_claims_nothing_more_at_cap(self):
        tenant = tenant_with_pbx(cap=3)
        due_leads(running_campaign(tenant), 10)
        assert len(dispatch_tenant(tenant_id=tenant.pk, now=NOW)) == 3
        assert dispatch_tenant(tenant_id=tenant.pk, now=NOW) == []
        assert live_count(tenant=tenant) == 3


@pytest.mark.django_db
class TestFairness:
    def test_same_priority_campaigns_alternate(self):
        tenant = tenant_with_pbx(cap=4)
        first, second = running_campaign(tenant), running_campaign(tenant)
        due_leads(first, 5)
        due_leads(second, 5)
        ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
        assert claimed_campaigns(ids) == [first.pk, second.pk, first.pk, second.pk]

    def test_the_campaign_with_fewer_live_calls_goes_first(self):
        tenant = tenant_with_pbx(cap=3)
        first, second = running_campaign(tenant), running_campaign(tenant)
        live_attempt(due_leads(first, 1)[0])
        due_leads(first, 5)
        due_leads(second, 5)
        ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
        assert claimed_campaigns(ids) == [second.pk, first.pk]

    def test_a_campaign_that_runs_dry_leaves_its_share_to_the_others(self):
        tenant = tenant_with_pbx(cap=5)
        first, second = running_campaign(tenant), running_campaign(tenant)
        due_leads(first, 1)
        due_leads(second, 5)
        ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
        assert claimed_campaigns(ids) == [first.pk, second.pk, second.pk, second.pk, second.pk]

    def test_higher_priority_first(self):
        tenant = tenant_with_pbx(cap=3)
        low = running_campaign(tenant, priority=0)
        high = running_campaign(tenant, priority=5)
        due_leads(low, 5)
        due_leads(high, 2)
        ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
        assert claimed_campaigns(ids) == [high.pk, high.pk, low.pk]


@pytest.mark.django_db
class TestWhatIsNeverDialed:
    def test_a_number_on_the_dnc_list_is_suppressed_at_claim(self):
        tenant = tenant_with_pbx(cap=1)
        campaign = running_campaign(tenant)
        blocked, other = due_leads(campaign, 2)
        dnc_add(tenant=tenant, phone_number=blocked.contact.phone_number, source="api")

        ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW)

        blocked.refresh_from_db()
        assert (blocked.status, blocked.done_reason, blocked.next_due_at) == ("suppressed", "dnc", None)
        assert not blocked.call_attempts.exists()
        # The suppressed lead took no slot: the next one was claimed.
        assert claimed_campaigns(ids) == [campaign.pk]
        assert CallAttempt.objects.get(pk=ids[0]).lead_id == other.pk

    def test_outside_the_window_the_lead_is_due_at_the_next_opening(self):
        tenant = tenant_with_pbx()
        campaign = running_campaign(
            tenant, calling_windows={"mon": [["09:00", "17:00"]], "wed": [["09:00", "17:00"]]}
        )
        (lead,) = due_leads(campaign, 1)
        now = datetime(2025, 1, 15, 3, 0, tzinfo=UTC)  # Tuesday 22:00 in New York
        Lead.objects.filter(pk=lead.pk).update(next_due_at=now - timedelta(minutes=1))

        assert dispatch_tenant(tenant_id=tenant.pk, now=now) == []

        lead.refresh_from_db()
        assert lead.status == Lead.Status.WAITING
        assert lead.next_due_at == datetime(2025, 1, 15, 14, 0, tzinfo=UTC)  # Wednesday 09:00 New York
        assert not lead.call_attempts.exists()

    def test_outside_the_window_with_no_opening_in_sight_waits_a_day(self):
        tenant = tenant_with_pbx()
        campaign = running_campaign(tenant, calling_windows={"mon": []})  # never open
        (lead,) = due_leads(campaign, 1)
        assert dispatch_tenant(tenant_id=tenant.pk, now=NOW) == []
        lead.refresh_from_db()
        assert (lead.status, lead.next_due_at) == ("waiting", NOW + timedelta(days=1))

    @pytest.mark.parametrize("status", ["draft", "paused", "completed", "archived"])
    def test_a_campaign_that_is_not_running_dials_nothing(self, status):
        tenant = tenant_with_pbx()
        (lead,) = due_leads(running_campaign(tenant, status=status), 1)
        assert dispatch_tenant(tenant_id=tenant.pk, now=NOW) == []
        lead.refresh_from_db()
        assert lead.status == Lead.Status.WAITING

    @pytest.mark.parametrize(
        "bounds",
        [{"starts_at": NOW + timedelta(hours=1)}, {"ends_at": NOW, "starts_at": NOW - timedelta(days=1)}],
    )
    def test_a_campaign_outside_its_dates_dials_nothing(self, bounds):
        tenant = tenant_with_pbx()
        campaign = running_campaign(tenant)
        Campaign.objects.filter(pk=campaign.pk).update(**bounds)
        due_leads(campaign, 1)
        assert dispatch_tenant(tenant_id=tenant.pk, now=NOW) == []

    def test_a_suspended_tenant_dials_nothing(self):
        tenant = tenant_with_pbx()
        due_leads(running_campaign(tenant), 1)
        Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)
        assert dispatch_tenant(tenant_id=tenant.pk, now=NOW) == []

    def test_other_tenants_leads_are_not_claimed(self):
        tenant, other = tenant_with_pbx(), tenant_with_pbx()
        due_leads(running_campaign(other), 3)
        assert dispatch_tenant(tenant_id=tenant.pk, now=NOW) == []
        assert dispatch_tenant(tenant_id=999_999, now=NOW) == []


@pytest.mark.real_health
@pytest.mark.django_db
def test_calls_are_placed_only_on_a_pbx_whose_stasis_app_listens_while_a_media_worker_is_up():
    """DESIGN §5 rule 9 (and A11: a channel originated into an app with no websocket is dialed anyway and
    the callee who answers is dropped): with no heartbeat nothing is claimed and no lead is touched; a
    PBX whose app listens takes the calls only while a media worker is up too."""
    from campaigns.selectors import pbx_health  # noqa: PLC0415
    from orchestrator.redis_client import get_redis  # noqa: PLC0415
    from telephony.health import HEARTBEAT_TTL_S  # noqa: PLC0415

    tenant = make_tenant(max_concurrent_calls=5)
    down, up = make_pbx(tenant), make_pbx(tenant)
    campaign = running_campaign(tenant)
    due_leads(campaign, 3)
    assert dispatch_tenant(tenant_id=tenant.pk, now=NOW) == []
    assert Lead.objects.filter(campaign=campaign, status=Lead.Status.WAITING).count() == 3

    client = get_redis()
    try:
        # The Stasis app of `up` listens (a fresh heartbeat), `down`'s expired a second ago; no media worker.
        heartbeats = {str(up.pk): time.time() + HEARTBEAT_TTL_S, str(down.pk): time.time() - 1}
        client.zadd(STASIS_APPS_KEY, heartbeats)
        assert pbx_health(pbx_ids=[up.pk, down.pk]).pbx_ids_up == {up.pk}
        assert dispatch_tenant(tenant_id=tenant.pk, now=NOW) == []
        with pbxs_and_media_up([]):  # a media worker now, and still only `up`'s app
            ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
        assert len(ids) == 3
        assert set(CallAttempt.objects.filter(pk__in=ids).values_list("pbx_id", flat=True)) == {up.pk}
    finally:
        client.zrem(STASIS_APPS_KEY, str(up.pk), str(down.pk))


def without_live_hints(callbacks: list[Any]) -> list[Any]:
    """The on-commit callbacks but the portal's live hints (orchestrator/live.py), which every change of an
    attempt's state registers too."""
    return [c for c in callbacks if c.__qualname__ != "live_notify.<locals>.publish"]


@pytest.mark.django_db
def test_dispatch_on_commit_hook_runs_only_after_commit(django_capture_on_commit_callbacks):
    tenant = tenant_with_pbx(cap=2)
    due_leads(running_campaign(tenant), 3)
    received: list[list[Any]] = []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW, on_commit=received.append)
    assert received == []  # not before the commit
    hooks = without_live_hints(callbacks)
    assert len(hooks) == 1
    hooks[0]()
    assert received == [ids] and len(ids) == 2


@pytest.mark.django_db
def test_dispatch_registers_nothing_when_nothing_is_claimed(django_capture_on_commit_callbacks):
    tenant = tenant_with_pbx()
    with django_capture_on_commit_callbacks() as callbacks:
        assert dispatch_tenant(tenant_id=tenant.pk, now=NOW, on_commit=lambda ids: None) == []
    assert callbacks == []


# =========================================================================================== attempt_apply


def claimed_attempt(*, cap: int = 5, **campaign_overrides: Any) -> CallAttempt:
    tenant = tenant_with_pbx(cap=cap)
    due_leads(running_campaign(tenant, **campaign_overrides), 1)
    (attempt_id,) = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
    return CallAttempt.objects.get(pk=attempt_id)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


@pytest.mark.django_db
class TestAttemptApply:
    def test_happy_path_sets_every_timestamp_and_finishes_the_lead(self):
        attempt = claimed_attempt()
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ORIGINATE_ACCEPTED, at=at(1))
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.RINGING, at=at(2))
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ANSWERED, at=at(10))
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.BRIDGED, at=at(11), data={"bridge": "b1"})
        result = attempt_apply(
            attempt_id=attempt.pk,
            event=AttemptInput.ENDED,
            at=at(70.5),
            outcome=AttemptOutcome.ANSWERED,
            cause=16,
            cause_txt="Normal Clearing",
            dialstatus="ANSWER",
            tech_cause=200,
        )
        assert result.applied and result.new is AttemptState.ENDED
        attempt.refresh_from_db()
        assert (attempt.originated_at, attempt.ringing_at, attempt.answered_at, attempt.ended_at) == (
            at(1),
            at(2),
            at(10),
            at(70.5),
        )
        assert attempt.duration_s == pytest.approx(60.5)
        assert (attempt.state, attempt.outcome, attempt.cause, attempt.cause_txt) == (
            "ended",
            "answered",
            16,
            "Normal Clearing",
        )
        assert (attempt.dialstatus, attempt.tech_cause) == ("ANSWER", 200)
        assert list(attempt.events.values_list("type", flat=True)) == [
            "created",
            "queued->dialing",
            "dialing->ringing",
            "ringing->answered",
            "answered->bridged",
            "bridged->ended",
        ]
        lead = attempt.lead
        lead.refresh_from_db()
        assert (lead.status, lead.done_reason, lead.attempts, lead.last_outcome) == (
            "done",
            "success",
            1,
            "answered",
        )
        assert lead.next_due_at is None
        assert live_count(tenant=attempt.tenant) == 0

    def test_events_that_beat_the_originate_response(self):
        attempt = claimed_attempt()
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.BRIDGED, at=at(5))
        late = attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ORIGINATE_ACCEPTED, at=at(6))
        assert not late.applied and late.reason == "duplicate"
        attempt.refresh_from_db()
        assert attempt.state == AttemptState.BRIDGED
        assert attempt.originated_at == at(5) and attempt.answered_at == at(5)

    def test_duplicate_and_illegal_events_are_refused_and_logged(self):
        attempt = claimed_attempt()
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ORIGINATE_ACCEPTED, at=at(1))
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ANSWERED, at=at(3))
        before = CallAttempt.objects.values().get(pk=attempt.pk)

        duplicate = attempt_apply(attempt_id=attempt.pk, event=AttemptInput.RINGING, at=at(4))
        illegal = attempt_apply(
            attempt_id=attempt.pk, event=AttemptInput.ORIGINATE_FAILED, at=at(5), outcome=AttemptOutcome.ERROR
        )

        assert (duplicate.applied, duplicate.reason) == (False, "duplicate")
        assert (illegal.applied, illegal.reason) == (False, "illegal")
        assert CallAttempt.objects.values().get(pk=attempt.pk) == before
        notes = list(attempt.events.filter(kind="note").values_list("type", "data"))
        assert notes == [
            ("refused:ringing", {"state": "answered", "reason": "duplicate", "data": {}}),
            ("refused:originate_failed", {"state": "answered", "reason": "illegal", "data": {}}),
        ]
        attempt.lead.refresh_from_db()
        assert attempt.lead.status == Lead.Status.IN_ATTEMPT

    def test_a_repeated_end_is_refused_and_does_not_count_twice(self):
        attempt = claimed_attempt(max_attempts=5)
        for second in (10, 11):
            attempt_apply(
                attempt_id=attempt.pk, event=AttemptInput.ENDED, at=at(second), outcome=AttemptOutcome.BUSY
            )
        attempt.refresh_from_db()
        attempt.lead.refresh_from_db()
        assert attempt.ended_at == at(10)
        assert attempt.lead.attempts == 1
        assert attempt.events.filter(kind="note", type="refused:ended").count() == 1

    def test_busy_retries_after_the_busy_delay(self):
        attempt = claimed_attempt(retry_delays={"busy": 600})
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ENDED, at=at(30), outcome=AttemptOutcome.BUSY)
        lead = Lead.objects.get(pk=attempt.lead_id)
        assert (lead.status, lead.attempts, lead.last_outcome) == ("waiting", 1, "busy")
        assert lead.next_due_at == at(30 + 600)
        attempt.refresh_from_db()
        assert attempt.duration_s is None  # never answered

    def test_a_retry_that_would_fall_outside_the_window_waits_for_the_next_opening(self):
        attempt = claimed_attempt(retry_delays={"no_answer": 3600})
        evening = datetime(2025, 1, 16, 1, 30, tzinfo=UTC)  # 20:30 New York; +1 h is after the 21:00 bound
        attempt_apply(
            attempt_id=attempt.pk, event=AttemptInput.ENDED, at=evening, outcome=AttemptOutcome.NO_ANSWER
        )
        lead = Lead.objects.get(pk=attempt.lead_id)
        assert lead.status == Lead.Status.WAITING
        assert lead.next_due_at == datetime(2025, 1, 16, 13, 0, tzinfo=UTC)  # Thursday 08:00 New York

    @pytest.mark.parametrize(
        "outcome", [AttemptOutcome.REJECTED, AttemptOutcome.INVALID_NUMBER, AttemptOutcome.OPTED_OUT]
    )
    def test_never_retried_outcomes_finish_the_lead(self, outcome):
        attempt = claimed_attempt()
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ENDED, at=at(5), outcome=outcome, cause=21)
        lead = Lead.objects.get(pk=attempt.lead_id)
        assert (lead.status, lead.done_reason, lead.next_due_at) == ("done", "never_retry", None)

    def test_the_last_allowed_attempt_finishes_the_lead(self):
        attempt = claimed_attempt(max_attempts=2)
        Lead.objects.filter(pk=attempt.lead_id).update(attempts=1)
        attempt_apply(
            attempt_id=attempt.pk, event=AttemptInput.ENDED, at=at(5), outcome=AttemptOutcome.NO_ANSWER
        )
        lead = Lead.objects.get(pk=attempt.lead_id)
        assert (lead.status, lead.done_reason, lead.attempts) == ("done", "max_attempts", 2)

    def test_a_cancelled_attempt_does_not_consume_an_attempt(self):
        attempt = claimed_attempt(max_attempts=1)
        result = attempt_apply(
            attempt_id=attempt.pk, event=AttemptInput.CANCELLED, at=at(1), error="outside_window"
        )
        assert result.applied
        attempt.refresh_from_db()
        assert (attempt.state, attempt.outcome, attempt.originated_at) == ("ended", "cancelled", None)
        lead = Lead.objects.get(pk=attempt.lead_id)
        assert (lead.status, lead.attempts) == ("waiting", 0)
        assert lead.next_due_at == at(1 + 900)  # the default delay; the window is open then

    def test_cancelled_for_dnc_suppresses_the_lead(self):
        attempt = claimed_attempt()
        attempt_apply(
            attempt_id=attempt.pk, event=AttemptInput.CANCELLED, at=at(1), outcome=AttemptOutcome.OPTED_OUT
        )
        lead = Lead.objects.get(pk=attempt.lead_id)
        assert (lead.status, lead.done_reason, lead.attempts) == ("suppressed", "dnc", 0)

    def test_originate_failed_ends_the_attempt_and_frees_the_slot(self):
        attempt = claimed_attempt(cap=1)
        attempt_apply(
            attempt_id=attempt.pk,
            event=AttemptInput.ORIGINATE_FAILED,
            at=at(1),
            outcome=AttemptOutcome.ERROR,
            error="400 Bad Request",
        )
        attempt.refresh_from_db()
        assert (attempt.state, attempt.outcome, attempt.error) == ("ended", "error", "400 Bad Request")
        assert live_count(tenant=attempt.tenant) == 0

    def test_an_ending_event_needs_an_outcome_and_others_take_none(self):
        attempt = claimed_attempt()
        with pytest.raises(ValueError, match="needs an outcome"):
            attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ENDED)
        with pytest.raises(ValueError, match="takes no outcome"):
            attempt_apply(attempt_id=attempt.pk, event=AttemptInput.RINGING, outcome=AttemptOutcome.BUSY)
        attempt.refresh_from_db()
        assert attempt.state == AttemptState.QUEUED
        assert attempt.events.count() == 1

    def test_on_ended_runs_only_after_commit(self, django_capture_on_commit_callbacks):
        attempt = claimed_attempt()
        ended: list[int] = []
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            attempt_apply(attempt_id=attempt.pk, event=AttemptInput.RINGING, at=at(1), on_ended=ended.append)
            attempt_apply(
                attempt_id=attempt.pk,
                event=AttemptInput.ENDED,
                at=at(2),
                outcome=AttemptOutcome.NO_ANSWER,
                on_ended=ended.append,
            )
        assert ended == []
        hooks = without_live_hints(callbacks)
        assert len(hooks) == 1  # only the end registers the hook
        hooks[0]()
        assert ended == [attempt.tenant_id]

    def test_an_ended_lead_can_be_claimed_again_when_due(self):
        attempt = claimed_attempt(retry_delays={"busy": 0})
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ENDED, at=at(1), outcome=AttemptOutcome.BUSY)
        (again,) = dispatch_tenant(tenant_id=attempt.tenant_id, now=at(2))
        assert CallAttempt.objects.get(pk=again).lead_id == attempt.lead_id


def state_queries(ctx: CaptureQueriesContext) -> list[str]:
    """The statements of a captured block, without its savepoints (a test runs inside a transaction)."""
    sqls = [q["sql"] for q in ctx.captured_queries]
    return [sql.split(" ")[0] for sql in sqls if "SAVEPOINT" not in sql]


CALL_STEPS = [
    AttemptStep(event=AttemptInput.RINGING, at=at(2)),
    AttemptStep(event=AttemptInput.ANSWERED, at=at(10), data={"channel_id": "c"}),
    AttemptStep(event=AttemptInput.RINGING, at=at(10.5)),  # late: refused as a duplicate
    AttemptStep(event=AttemptInput.BRIDGED, at=at(11), data={"media_uuid": "m"}),
    AttemptStep(event=None, note="dtmf", at=at(12), data={"digit": "4"}),
    AttemptStep(
        event=AttemptInput.ENDED, at=at(40), outcome=AttemptOutcome.BUSY, cause=17, dialstatus="BUSY"
    ),
    AttemptStep(event=AttemptInput.ENDED, at=at(41), outcome=AttemptOutcome.FAILED),  # refused: terminal
]


def apply_one_by_one(attempt_id: Any, steps: list[AttemptStep]) -> None:
    for step in steps:
        if step.event is None:
            attempt_apply_many(attempt_id=attempt_id, steps=[step])
            continue
        attempt_apply(
            attempt_id=attempt_id,
            event=step.event,
            at=step.at,
            data=step.data,
            outcome=step.outcome,
            cause=step.cause,
            dialstatus=step.dialstatus,
        )


def comparable(attempt_id: Any) -> tuple[Any, ...]:
    attempt = CallAttempt.objects.select_related("lead").get(pk=attempt_id)
    fields = ["state", "outcome", "originated_at", "ringing_at", "answered_at", "ended_at", "duration_s"]
    fields += ["cause", "dialstatus"]
    lead = attempt.lead
    log = list(attempt.events.order_by("pk").values_list("kind", "type", "data", "at"))[1:]  # after "created"
    return (
        [getattr(attempt, f) for f in fields],
        (lead.status, lead.attempts, lead.last_outcome, lead.next_due_at, lead.done_reason),
        log,
    )


@pytest.mark.django_db
class TestAttemptApplyQueries:
    """One lock, one update, one insert: the sink applies several events per call on a busy PBX."""

    def test_a_progress_event_is_three_statements(self):
        attempt = claimed_attempt()
        with CaptureQueriesContext(connection) as ctx:
            attempt_apply(attempt_id=attempt.pk, event=AttemptInput.RINGING, at=at(2))
        assert state_queries(ctx) == ["SELECT", "UPDATE", "INSERT"]

    def test_an_end_reads_the_lead_campaign_and_tenant_with_the_attempt(self):
        attempt = claimed_attempt(retry_delays={"busy": 600})  # a retry: the calling window is computed
        with CaptureQueriesContext(connection) as ctx:
            attempt_apply(
                attempt_id=attempt.pk, event=AttemptInput.ENDED, at=at(30), outcome=AttemptOutcome.BUSY
            )
        assert state_queries(ctx) == ["SELECT", "UPDATE", "INSERT", "UPDATE"]
        select = ctx.captured_queries[1]["sql"]
        if connection.features.has_select_for_update_of:  # PostgreSQL; SQLite locks the whole database
            assert 'FOR NO KEY UPDATE OF "campaigns_callattempt", "campaigns_lead"' in select
        assert Lead.objects.get(pk=attempt.lead_id).next_due_at == at(30 + 600)

    def test_a_refused_event_still_logs_its_note(self):
        attempt = claimed_attempt()
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ANSWERED, at=at(1))
        with CaptureQueriesContext(connection) as ctx:
            result = attempt_apply(attempt_id=attempt.pk, event=AttemptInput.RINGING, at=at(2))
        assert not result.applied and state_queries(ctx) == ["SELECT", "INSERT"]
        assert attempt.events.filter(kind="note", type="refused:ringing").count() == 1

    def test_a_whole_call_applied_together_is_four_statements_with_the_same_result(self):
        together, alone = (
            claimed_attempt(retry_delays={"busy": 600}),
            claimed_attempt(retry_delays={"busy": 600}),
        )
        with CaptureQueriesContext(connection) as ctx:
            results = attempt_apply_many(attempt_id=together.pk, steps=CALL_STEPS)
        assert state_queries(ctx) == ["SELECT", "UPDATE", "INSERT", "UPDATE"]
        apply_one_by_one(alone.pk, CALL_STEPS)

        assert [r.reason if r else None for r in results] == [
            "applied",
            "applied",
            "duplicate",
            "applied",
            None,
            "applied",
            "terminal",
        ]
        assert comparable(together.pk) == comparable(alone.pk)
        state, lead, log = comparable(together.pk)
        assert state[:7] == ["ended", "busy", at(2), at(2), at(10), at(40), 30.0]
        assert lead[:3] == ("waiting", 1, "busy")
        assert [t for _, t, _, _ in log] == [
            "queued->ringing",
            "ringing->answered",
            "refused:ringing",
            "answered->bridged",
            "dtmf",
            "bridged->ended",
            "refused:ended",
        ]

    def test_on_ended_runs_once_after_commit(self, django_capture_on_commit_callbacks):
        attempt = claimed_attempt()
        tenants: list[int] = []
        with django_capture_on_commit_callbacks(execute=True):
            attempt_apply_many(attempt_id=attempt.pk, steps=CALL_STEPS, on_ended=tenants.append)
        assert tenants == [attempt.tenant_id]

    def test_a_misused_step_changes_nothing(self):
        attempt = claimed_attempt()
        bad = AttemptStep(event=AttemptInput.ENDED, at=at(3))  # no outcome
        with pytest.raises(ValueError, match="needs an outcome"):
            attempt_apply_many(attempt_id=attempt.pk, steps=[CALL_STEPS[0], bad])
        with pytest.raises(ValueError, match="note"):
            attempt_apply_many(attempt_id=attempt.pk, steps=[AttemptStep(event=None, at=at(3))])
        attempt.refresh_from_db()
        assert attempt.state == AttemptState.QUEUED and attempt.events.count() == 1

    def test_an_unknown_attempt_raises_does_not_exist(self):
        with pytest.raises(CallAttempt.DoesNotExist):
            attempt_apply_many(attempt_id=uuid.UUID("8c1d7c52-36a6-4d59-a3a4-4e8f3c1b9a01"), steps=CALL_STEPS)


# ========================================================================================= recheck, why-not


@pytest.mark.django_db
class TestRecheck:
    def test_ok(self):
        attempt = claimed_attempt()
        assert attempt_recheck(attempt_id=attempt.pk, now=NOW) is None

    def test_campaign_paused(self):
        attempt = claimed_attempt()
        Campaign.objects.filter(pk=attempt.campaign_id).update(status=Campaign.Status.PAUSED)
        assert attempt_recheck(attempt_id=attempt.pk, now=NOW) == "campaign_not_running"

    def test_dnc_added_after_the_claim(self):
        attempt = claimed_attempt()
        dnc_add(tenant=attempt.tenant, phone_number=attempt.number, source="agent")
        assert attempt_recheck(attempt_id=attempt.pk, now=NOW) == "dnc"

    def test_window_closed_since_the_claim(self):
        attempt = claimed_attempt()
        assert attempt_recheck(attempt_id=attempt.pk, now=datetime(2025, 1, 16, 2, 30, tzinfo=UTC)) == (
            "outside_window"
        )

    def test_not_queued(self):
        attempt = claimed_attempt()
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ORIGINATE_ACCEPTED, at=at(1))
        assert attempt_recheck(attempt_id=attempt.pk, now=NOW) == "not_queued"
        assert attempt_recheck(attempt_id=CallAttempt().pk, now=NOW) == "not_queued"


def codes(report: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in report["reasons"]]


@pytest.mark.django_db
class TestWhyNotDialed:
    def test_due_and_free_is_dialable_now(self):
        tenant = tenant_with_pbx()
        (lead,) = due_leads(running_campaign(tenant), 1)
        report = lead_why_not_dialed(tenant=tenant, lead_id=lead.pk, now=NOW)
        assert report["dialable_now"] and report["reasons"] == [] and report["next_dial_at"] == NOW

    def test_outside_window_says_when(self):
        tenant = tenant_with_pbx()
        campaign = running_campaign(tenant, calling_windows={"wed": [["09:00", "17:00"]]})
        (lead,) = due_leads(campaign, 1)
        now = datetime(2025, 1, 15, 3, 0, tzinfo=UTC)
        Lead.objects.filter(pk=lead.pk).update(next_due_at=now)
        report = lead_why_not_dialed(tenant=tenant, lead_id=lead.pk, now=now)
        assert codes(report) == ["outside_window"]
        assert (
            report["reasons"][0]["next_opening"]
            == report["next_dial_at"]
            == datetime(2025, 1, 15, 14, 0, tzinfo=UTC)
        )

    def test_retry_delay(self):
        tenant = tenant_with_pbx()
        (lead,) = due_leads(running_campaign(tenant), 1)
        Lead.objects.filter(pk=lead.pk).update(next_due_at=at(600), last_outcome="busy")
        report = lead_why_not_dialed(tenant=tenant, lead_id=lead.pk, now=NOW)
        assert codes(report) == ["retry_delay"] and report["next_dial_at"] == at(600)

    def test_dnc_paused_and_exhausted(self):
        tenant = tenant_with_pbx()
        campaign = running_campaign(tenant, status=Campaign.Status.PAUSED, max_attempts=1)
        (lead,) = due_leads(campaign, 1)
        Lead.objects.filter(pk=lead.pk).update(attempts=1)
        dnc_add(tenant=tenant, phone_number=lead.contact.phone_number, source="api")
        report = lead_why_not_dialed(tenant=tenant, lead_id=lead.pk, now=NOW)
        assert codes(report) == ["dnc", "attempts_exhausted", "campaign_not_running"]
        assert report["next_dial_at"] is None

    def test_tenant_at_cap(self):
        tenant = tenant_with_pbx(cap=1)
        campaign = running_campaign(tenant)
        busy, lead = due_leads(campaign, 2)
        live_attempt(busy)
        report = lead_why_not_dialed(tenant=tenant, lead_id=lead.pk, now=NOW)
        assert codes(report) == ["tenant_at_cap", "campaign_at_cap"]

    def test_in_attempt_and_done(self):
        attempt = claimed_attempt()
        report = lead_why_not_dialed(tenant=attempt.tenant, lead_id=attempt.lead_id, now=NOW)
        assert report["reasons"] == [{"code": "in_attempt", "attempt_id": attempt.pk, "state": "queued"}]
        attempt_apply(
            attempt_id=attempt.pk, event=AttemptInput.ENDED, at=at(1), outcome=AttemptOutcome.ANSWERED
        )
        report = lead_why_not_dialed(tenant=attempt.tenant, lead_id=attempt.lead_id, now=NOW)
        assert codes(report) == ["done"] and report["reasons"][0]["done_reason"] == "success"
        assert report["next_dial_at"] is None

    def test_a_lead_moved_to_its_window_opening_keeps_saying_so(self):
        """The reason must survive the reschedule: once dispatch has moved a never-dialed lead to the
        opening of its window, it says outside_window with that opening, not retry_delay."""
        tenant = tenant_with_pbx()
        campaign = running_campaign(tenant, calling_windows={"wed": [["09:00", "17:00"]]})
        (lead,) = due_leads(campaign, 1)
        now = datetime(2025, 1, 15, 3, 0, tzinfo=UTC)  # 22:00 in New York: closed
        Lead.objects.filter(pk=lead.pk).update(next_due_at=now)
        assert dispatch_tenant(tenant_id=tenant.pk, now=now) == []  # rescheduled to the opening
        lead.refresh_from_db()
        opening = datetime(2025, 1, 15, 14, 0, tzinfo=UTC)
        assert lead.next_due_at == opening and lead.wait_reason == "outside_window"

        report = lead_why_not_dialed(tenant=tenant, lead_id=lead.pk, now=now + timedelta(seconds=1))
        assert codes(report) == ["outside_window"]
        assert report["reasons"][0]["next_opening"] == report["next_dial_at"] == opening

    def test_a_scheduled_callback_is_explained_as_a_callback(self):
        attempt = claimed_attempt()
        CallAttempt.objects.filter(pk=attempt.pk).update(callback_at=at(7200))
        attempt_apply(
            attempt_id=attempt.pk, event=AttemptInput.ENDED, at=at(60), outcome=AttemptOutcome.ANSWERED
        )
        report = lead_why_not_dialed(tenant=attempt.tenant, lead_id=attempt.lead_id, now=at(61))
        assert codes(report) == ["callback"] and report["reasons"][0]["at"] == at(7200)
        assert report["next_dial_at"] == at(7200)

    @pytest.mark.real_health
    def test_no_stasis_app_or_no_media_worker_is_said(self):
        tenant = tenant_with_pbx()
        (lead,) = due_leads(running_campaign(tenant), 1)
        pbx_id = tenant.pbxs.get().pk
        report = lead_why_not_dialed(tenant=tenant, lead_id=lead.pk, now=NOW)
        assert codes(report) == ["pbx_unavailable", "no_media_worker"] and not report["dialable_now"]
        with pbxs_and_media_up([pbx_id]):
            assert codes(lead_why_not_dialed(tenant=tenant, lead_id=lead.pk, now=NOW)) == []

    def test_another_tenants_lead_is_not_found(self):
        tenant = tenant_with_pbx()
        (lead,) = due_leads(running_campaign(tenant_with_pbx()), 1)
        with pytest.raises(Lead.DoesNotExist):
            lead_why_not_dialed(tenant=tenant, lead_id=lead.pk, now=NOW)


# ============================================================================================ concurrency


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_passes_never_exceed_the_cap():
    tenant = tenant_with_pbx(cap=5)
    first, second = running_campaign(tenant), running_campaign(tenant)
    due_leads(first, 15)
    due_leads(second, 15)
    start = threading.Barrier(4)
    results: list[list[Any]] = []
    errors: list[BaseException] = []

    def one_pass() -> None:
        try:
            start.wait(timeout=10)
            results.append(dispatch_tenant(tenant_id=tenant.pk, now=NOW))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one_pass) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sum(len(ids) for ids in results) == 5
    assert live_count(tenant=tenant) == 5
    per_lead = CallAttempt.objects.filter(state__in=LIVE).values_list("lead_id", flat=True)
    assert len(per_lead) == len(set(per_lead))
    assert Lead.objects.filter(status=Lead.Status.IN_ATTEMPT).count() == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_shared_pbx_cap_holds_across_tenants_passing_at_once():
    """PBXs are a platform pool: several tenants placed on one PBX, their passes at the same moment, each
    with room under its own cap. The PBX's max_channels counts every tenant's calls and is never exceeded:
    each pass re-counts under the PBX's lock before it writes (the tenants' locks do not serialise them)."""
    from campaigns.services.pbx import pbx_place  # noqa: PLC0415

    tenants = [make_tenant(max_concurrent_calls=5) for _ in range(4)]
    shared = make_pbx(tenants[0], max_channels=7)
    for tenant in tenants:
        pbx_place(pbx=shared, tenant=tenant)
        due_leads(running_campaign(tenant), 5)
    start = threading.Barrier(len(tenants))
    results: list[list[Any]] = []
    errors: list[BaseException] = []

    def one_pass(tenant_id: int) -> None:
        try:
            start.wait(timeout=10)
            results.append(dispatch_tenant(tenant_id=tenant_id, now=NOW))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one_pass, args=(tenant.pk,)) for tenant in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sum(len(ids) for ids in results) == 7 == live_count(pbx=shared)
    # The claims a pass gave up left their leads waiting, as they were.
    assert Lead.objects.filter(status=Lead.Status.IN_ATTEMPT).count() == 7
    assert Lead.objects.filter(status=Lead.Status.WAITING).count() == 4 * 5 - 7


@pytest.mark.django_db
def test_a_tenants_share_of_a_pbx_bounds_its_calls_there():
    tenant = make_tenant(max_concurrent_calls=5)
    other = make_tenant(max_concurrent_calls=5)
    pbx = make_pbx(tenant, share=2, max_channels=100)
    due_leads(running_campaign(tenant), 5)
    assert len(dispatch_tenant(tenant_id=tenant.pk, now=NOW)) == 2
    # Another tenant's calls on the PBX do not count against this tenant's share.
    from campaigns.services.pbx import pbx_place  # noqa: PLC0415

    pbx_place(pbx=pbx, tenant=other, max_channels=3)
    due_leads(running_campaign(other), 5)
    assert len(dispatch_tenant(tenant_id=other.pk, now=NOW)) == 3
    assert live_count(pbx=pbx) == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_passes_and_call_ends_keep_the_cap_and_every_lead_in_one_state():
    tenant = tenant_with_pbx(cap=4)
    campaign = running_campaign(tenant, retry_delays={"busy": 0}, max_attempts=50)
    leads = due_leads(campaign, 12)
    errors: list[BaseException] = []
    stop = threading.Event()
    over_cap: list[int] = []

    def dispatcher() -> None:
        try:
            for i in range(30):
                dispatch_tenant(tenant_id=tenant.pk, now=NOW + timedelta(seconds=i))
                live = live_count(tenant=tenant)
                if live > 4:
                    over_cap.append(live)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    def ender() -> None:
        try:
            while not stop.is_set():
                for attempt_id in CallAttempt.objects.filter(state__in=LIVE).values_list("pk", flat=True)[:2]:
                    attempt_apply(
                        attempt_id=attempt_id, event=AttemptInput.ENDED, at=NOW, outcome=AttemptOutcome.BUSY
                    )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    dispatchers = [threading.Thread(target=dispatcher) for _ in range(3)]
    enders = [threading.Thread(target=ender) for _ in range(2)]
    for thread in dispatchers + enders:
        thread.start()
    for thread in dispatchers:
        thread.join(timeout=60)
    stop.set()
    for thread in enders:
        thread.join(timeout=30)
    assert errors == []
    assert over_cap == []
    assert live_count(tenant=tenant) <= 4
    for lead in Lead.objects.filter(pk__in=[lead.pk for lead in leads]):
        live = CallAttempt.objects.filter(lead=lead, state__in=LIVE).count()
        if lead.status == "done":
            # How many attempts a lead gets depends on how the threads interleave: one may run out of them.
            assert (lead.done_reason, live) == ("max_attempts", 0)
            assert CallAttempt.objects.filter(lead=lead).count() >= campaign.max_attempts
            continue
        assert (lead.status, live) in {("waiting", 0), ("in_attempt", 1)}
        assert lead.status != "waiting" or lead.next_due_at is not None
    assert AttemptLog.objects.filter(kind="state", type="created").count() == CallAttempt.objects.count()


@pytest.mark.django_db
def test_placed_attempts_past_their_hard_maximum_are_ended_and_only_those(
    settings, django_capture_on_commit_callbacks
):
    settings.MAX_CALL_DURATION_S = 600
    overdue, answered, bridged, recent = (claimed_attempt(ring_timeout=30) for _ in range(4))
    queued = claimed_attempt(ring_timeout=30)
    for attempt in (overdue, answered, bridged, recent):
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ORIGINATE_ACCEPTED, at=at(1))
    attempt_apply(attempt_id=answered.pk, event=AttemptInput.ANSWERED, at=at(5))
    attempt_apply(attempt_id=bridged.pk, event=AttemptInput.BRIDGED, at=at(5))
    CallAttempt.objects.filter(pk=recent.pk).update(queued_at=at(100))
    limit = 600 + 30 + OVERDUE_GRACE.total_seconds()  # the others were claimed at NOW
    tenants: list[int] = []

    assert attempts_end_overdue(now=at(limit - 1), on_ended=tenants.append) == []
    with django_capture_on_commit_callbacks(execute=True):
        ended = attempts_end_overdue(now=at(limit + 1), on_ended=tenants.append)

    assert sorted(ended) == sorted([overdue.pk, answered.pk, bridged.pk])
    assert CallAttempt.objects.get(pk=recent.pk).state == AttemptState.DIALING
    by_id = {a.pk: a for a in CallAttempt.objects.filter(pk__in=ended)}
    # Their ends were not seen: classified from the evidence, never guessed as a retryable failure.
    assert by_id[overdue.pk].outcome == AttemptOutcome.UNKNOWN  # nothing says it was answered
    assert by_id[answered.pk].outcome == AttemptOutcome.MEDIA_FAILED  # answered, never reached its agent
    assert by_id[bridged.pk].outcome == AttemptOutcome.ANSWERED  # it reached its agent
    assert all(a.state == AttemptState.ENDED and "hard maximum" in a.error for a in by_id.values())
    assert len(tenants) == 3
    # A queued attempt is not the overdue sweep's business (the stalled sweep resumes it).
    assert CallAttempt.objects.get(pk=queued.pk).state == AttemptState.QUEUED
    # The late real end is refused as a duplicate.
    late = attempt_apply(
        attempt_id=overdue.pk, event=AttemptInput.ENDED, at=at(limit + 2), outcome=AttemptOutcome.BUSY
    )
    assert not late.applied


def test_only_a_note_step_records_a_transfer():
    with pytest.raises(ValueError, match="only a note"):
        AttemptStep(
            event=AttemptInput.ENDED, at=at(1), outcome=AttemptOutcome.ANSWERED, transferred_to="+1"
        ).checked()
    step = AttemptStep(event=None, note="transferred", at=at(1), transferred_to="+12125550198")
    assert step.checked() is step
