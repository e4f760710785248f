"""Database invariants of the campaign models: they hold even for writes that bypass the services."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import IntegrityError, connections, transaction

from campaigns.lifecycle import LIVE_STATES, AttemptState
from campaigns.models import (
    AgentProfile,
    AttemptEvent,
    CallAttempt,
    Campaign,
    Contact,
    DncEntry,
    Lead,
    Pbx,
    default_calling_windows,
    default_retry_delays,
)
from tests.campaigns.factories import make_campaign, make_contact, make_lead, make_tenant

pytestmark = pytest.mark.django_db


def make_attempt(lead: Lead, state: str = AttemptState.QUEUED) -> CallAttempt:
    return CallAttempt.objects.create(
        tenant=lead.campaign.tenant,
        campaign=lead.campaign,
        lead=lead,
        number=lead.contact.phone_number,
        state=state,
    )


# -------------------------------------------------------------------------------- one live attempt/lead


@pytest.mark.parametrize("live_state", sorted(LIVE_STATES))
def test_a_lead_cannot_have_two_live_attempts(live_state):
    lead = make_lead(make_tenant())
    make_attempt(lead, state=live_state)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_attempt(lead, state=AttemptState.QUEUED)


def test_ended_attempts_do_not_count_as_live():
    lead = make_lead(make_tenant())
    make_attempt(lead, state=AttemptState.ENDED)
    make_attempt(lead, state=AttemptState.ENDED)
    live = make_attempt(lead, state=AttemptState.QUEUED)
    # The live one can end, and then the next one may start.
    CallAttempt.objects.filter(pk=live.pk).update(state=AttemptState.ENDED, outcome="busy")
    make_attempt(lead, state=AttemptState.QUEUED)
    assert lead.call_attempts.count() == 4


def test_moving_an_ended_attempt_back_to_live_is_refused_when_another_is_live():
    lead = make_lead(make_tenant())
    ended = make_attempt(lead, state=AttemptState.ENDED)
    make_attempt(lead, state=AttemptState.DIALING)
    with pytest.raises(IntegrityError), transaction.atomic():
        CallAttempt.objects.filter(pk=ended.pk).update(state=AttemptState.RINGING)


def test_other_leads_are_independent():
    tenant = make_tenant()
    campaign = make_campaign(tenant)
    first = make_lead(tenant, campaign, "+12125550123")
    second = make_lead(tenant, campaign, "+12125550124")
    make_attempt(first)
    make_attempt(second)
    assert CallAttempt.objects.filter(state=AttemptState.QUEUED).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_of_one_lead_leave_exactly_one_live_attempt():
    lead = make_lead(make_tenant())
    barrier = threading.Barrier(2)
    results: list[str] = []

    def claim() -> None:
        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                make_attempt(lead)
            results.append("created")
        except IntegrityError:
            results.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(results) == ["created", "refused"]
    assert CallAttempt.objects.filter(lead=lead).count() == 1


def test_attempt_id_is_a_uuid_usable_as_channel_id():
    attempt = make_attempt(make_lead(make_tenant()))
    assert isinstance(attempt.pk, uuid.UUID)
    assert attempt.state == "queued" and attempt.is_live
    assert str(attempt).startswith("+12125550123 queued")


# ---------------------------------------------------------------------------------------------- PBX


def pbx_fields(tenant, **overrides):
    fields = {"owner": None, "name": "pbx", "ari_url": "http://127.0.0.1:8088/", "ari_user": "asterisk"}
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    "password_fields",
    [
        {},  # neither
        {"password_env": "ARI_PASSWORD", "password_encrypted": "gAAAA..."},  # both
    ],
)
def test_pbx_needs_exactly_one_password_source(password_fields):
    tenant = make_tenant()
    with pytest.raises(IntegrityError), transaction.atomic():
        Pbx.objects.create(**pbx_fields(tenant, **password_fields))


def test_a_tenants_own_pbx_never_takes_its_password_from_the_environment():
    """The database's last word on rule 8: an environment variable is an operator-only password source."""
    with pytest.raises(IntegrityError), transaction.atomic():
        Pbx.objects.create(**pbx_fields(make_tenant(), owner=make_tenant(), password_env="SECRET_KEY"))
    Pbx.objects.create(**pbx_fields(make_tenant(), owner=make_tenant(), password_encrypted="gAAAA-token"))


@pytest.mark.parametrize(
    "password_fields", [{"password_env": "ARI_PASSWORD"}, {"password_encrypted": "gAAAA-token"}]
)
def test_pbx_with_one_password_source_is_accepted(password_fields):
    pbx = Pbx.objects.create(**pbx_fields(make_tenant(), **password_fields))
    assert (pbx.app_name, pbx.endpoint_template, pbx.max_channels, pbx.calls_per_second, pbx.enabled) == (
        "ai_agent",
        "PJSIP/{number}@trunk",
        100,
        10,
        True,
    )


# ------------------------------------------------------------------------------------- other invariants


def test_contact_number_is_unique_per_tenant_only():
    first, second = make_tenant(), make_tenant()
    Contact.objects.create(tenant=first, phone_number="+12125550123")
    Contact.objects.create(tenant=second, phone_number="+12125550123")
    with pytest.raises(IntegrityError), transaction.atomic():
        Contact.objects.create(tenant=first, phone_number="+12125550123")


def test_dnc_number_is_unique_per_tenant():
    tenant = make_tenant()
    DncEntry.objects.create(tenant=tenant, phone_number="+12125550123", source="api")
    with pytest.raises(IntegrityError), transaction.atomic():
        DncEntry.objects.create(tenant=tenant, phone_number="+12125550123", source="csv")


def test_lead_is_unique_per_campaign_and_contact():
    tenant = make_tenant()
    lead = make_lead(tenant)
    with pytest.raises(IntegrityError), transaction.atomic():
        Lead.objects.create(campaign=lead.campaign, contact=lead.contact, next_due_at=lead.next_due_at)


def test_a_waiting_lead_needs_a_due_time():
    tenant = make_tenant()
    campaign = make_campaign(tenant)
    contact = make_contact(tenant)
    with pytest.raises(IntegrityError), transaction.atomic():
        Lead.objects.create(campaign=campaign, contact=contact, status=Lead.Status.WAITING, next_due_at=None)
    # Not waiting: no due time needed.
    Lead.objects.create(campaign=campaign, contact=contact, status=Lead.Status.DONE, next_due_at=None)


@pytest.mark.parametrize(
    "update",
    [
        {"max_concurrent_calls": 0},
        {"max_attempts": 0},
        {"ring_timeout": 0},
        {"status": "exploded"},
    ],
)
def test_campaign_field_limits_are_checked_by_the_database(update):
    campaign = make_campaign(make_tenant())
    with pytest.raises(IntegrityError), transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).update(**update)


def test_campaign_must_end_after_it_starts():
    from django.utils import timezone

    campaign = make_campaign(make_tenant())
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).update(starts_at=now, ends_at=now)


def test_campaign_defaults():
    campaign = make_campaign(make_tenant())
    assert campaign.status == Campaign.Status.DRAFT
    assert campaign.calling_windows == default_calling_windows()
    assert set(campaign.calling_windows) == {"mon", "tue", "wed", "thu", "fri"}
    assert campaign.retry_delays == default_retry_delays()
    assert campaign.retry_delays == {
        "busy": 600,
        "no_answer": 3600,
        "congestion": 300,
        "failed": 900,
        "voicemail": 7200,
        "machine_detected": 7200,
        "unreachable": 3600,
        "media_failed": 300,
        "app_unavailable": 300,
        "unknown": 3600,
    }
    assert (campaign.max_attempts, campaign.ring_timeout, campaign.priority) == (3, 30, 0)


def test_attempt_events_are_kept_in_order():
    attempt = make_attempt(make_lead(make_tenant()))
    AttemptEvent.objects.create(attempt=attempt, kind="state", type="queued->dialing")
    AttemptEvent.objects.create(
        attempt=attempt, kind="ari", type="StasisStart", data={"channel": {"id": "x"}}
    )
    assert [event.type for event in attempt.events.all()] == ["queued->dialing", "StasisStart"]


def test_a_disposition_or_turn_detection_outside_the_choices_is_refused_by_the_database():
    attempt = make_attempt(make_lead(make_tenant()))
    with pytest.raises(IntegrityError), transaction.atomic():
        CallAttempt.objects.filter(pk=attempt.pk).update(disposition="maybe")
    with pytest.raises(IntegrityError), transaction.atomic():
        AgentProfile.objects.filter(pk=attempt.campaign.agent_id).update(turn_detection="loud")
    CallAttempt.objects.filter(pk=attempt.pk).update(disposition="do_not_call")
