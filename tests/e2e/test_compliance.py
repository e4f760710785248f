"""Compliance end to end, on real processes (the PBX simulator, Celery workers and beat, the Stasis app, a
stand-in media worker): a campaign that requires prior express consent dials only the contacts that hold
one, and a Florida number is not dialed after 20:00 its time while a New York number in the same zone is.
Judged by the simulator's own record of the calls it was asked to place."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from campaigns.models import Lead
from campaigns.services.campaigns import campaign_start
from campaigns.services.consent import consent_create, consent_revoke
from campaigns.services.contacts import lead_add
from tests.campaigns.factories import make_campaign, make_contact, make_tenant
from tests.e2e.stack import Stack, wait_for, zone_where_it_is
from tests.e2e.test_campaigns import ALL_DAY, sim_pbx, start_processes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

PLAN = {"default": {"behaviour": "answer", "after": 0.1, "hangup_after": 0.3}}


def dialed_numbers(stack: Stack) -> list[str]:
    with stack.sim() as sim:
        calls = sim.get("/sim/calls", params={"state": "all"}).json()["calls"]
    return sorted(call["number"] for call in calls if call["direction"] == "outbound")


def test_a_consent_required_campaign_dials_only_consented_contacts(stack: Stack) -> None:
    stack.start_sim(PLAN)
    tenant = make_tenant(max_concurrent_calls=3, calls_per_second=50)
    sim_pbx(stack, tenant)
    campaign = make_campaign(tenant, calling_windows=ALL_DAY, ring_timeout=2, requires_prior_consent=True)
    open_zone = zone_where_it_is(14)
    given = datetime.now(UTC) - timedelta(days=3)
    numbers = {
        "express": "+12125550801",
        "written": "+12125550802",
        "revoked": "+12125550803",
        "none": "+12125550804",
    }
    contacts = {key: make_contact(tenant, e164, timezone=open_zone) for key, e164 in numbers.items()}
    for contact in contacts.values():
        lead_add(campaign=campaign, contact=contact)
    consent_create(contact=contacts["express"], source="web form", captured_at=given)
    consent_create(
        contact=contacts["written"], source="signed", captured_at=given, kind="prior_express_written"
    )
    revoked = consent_create(contact=contacts["revoked"], source="web form", captured_at=given)
    consent_revoke(consent=revoked)

    # State hours: in a zone where it is 20:xx now, a Florida number is out of its state's hours (8 pm);
    # a New York number in the same zone is still inside the federal 21:00. Another campaign, no consent.
    evening = zone_where_it_is(20)
    plain = make_campaign(tenant, calling_windows=ALL_DAY, ring_timeout=2)
    florida, new_york = "+13055550805", "+12125550806"
    for e164 in (florida, new_york):
        lead_add(campaign=plain, contact=make_contact(tenant, e164, timezone=evening))

    campaign_start(campaign=campaign)
    campaign_start(campaign=plain)
    start_processes(stack)

    consented = Lead.objects.filter(
        campaign=campaign, contact__phone_number__in=[numbers["express"], numbers["written"]]
    )
    new_york_done = Lead.objects.filter(
        campaign=plain, contact__phone_number=new_york, status=Lead.Status.DONE
    )

    def evening_now() -> bool:
        return datetime.now(ZoneInfo(evening)).hour == 20

    wait_for(
        lambda: (
            consented.filter(status=Lead.Status.DONE).count() == 2
            and (new_york_done.exists() or not evening_now())
        ),
        timeout=120,
        what="the consented leads and the New York lead to be called",
        interval=0.5,
    )
    time.sleep(6)  # a few more sweeps: nothing else may be dialed meanwhile

    dialed = dialed_numbers(stack)
    # (At 21:00 the New York number closes too: then it may not have been reached, which is not the point.)
    expected = sorted(
        [numbers["express"], numbers["written"], *([new_york] if new_york_done.exists() else [])]
    )
    assert dialed == expected, dialed
    assert florida not in dialed
    # The others wait, untouched by the dispatcher, until a consent is recorded.
    for key in ("revoked", "none"):
        lead = Lead.objects.get(campaign=campaign, contact=contacts[key])
        assert (lead.status, lead.attempts) == (Lead.Status.WAITING, 0)
    lead = Lead.objects.get(campaign=plain, contact__phone_number=florida)
    assert lead.status == Lead.Status.WAITING and lead.attempts == 0
    if evening_now():
        # Due at 08:00 its time tomorrow (the next opening the dispatcher found), for its state.
        assert lead.next_due_at is not None
        local = lead.next_due_at.astimezone(ZoneInfo(evening))
        assert (local.hour, local.minute) == (8, 0), local


def test_the_agent_opens_the_call_with_the_ai_disclosure(stack: Stack) -> None:
    """The real media worker and the Realtime stand-in: the agent's first words are the disclosure."""
    from campaigns.models import CallAttempt, Pbx  # noqa: PLC0415
    from tests.campaigns.factories import make_agent  # noqa: PLC0415

    stack.start_sim({"default": {"behaviour": "answer", "after": 0.1, "hangup_after": 8}})
    tenant = make_tenant(name="Acme Solar", max_concurrent_calls=1, calls_per_second=10)
    sim_pbx(stack, tenant)
    agent = make_agent(tenant, instructions="You are the test agent.", greeting="Hi, this is Sam.")
    campaign = make_campaign(tenant, agent=agent, calling_windows=ALL_DAY, ring_timeout=5, max_attempts=1)
    lead_add(campaign=campaign, contact=make_contact(tenant, "+12125550807", timezone=zone_where_it_is(14)))
    campaign_start(campaign=campaign)

    stack.start_realtime(extra=["--speed", "5"])
    stack.start_media_worker()
    stack.start_stasis(Pbx.objects.get(placements__tenant=tenant).pk)
    stack.wait_stasis_connected()
    stack.start_worker(concurrency=2)
    stack.start_beat()

    def reported() -> bool:
        attempt = CallAttempt.objects.filter(campaign=campaign).first()
        return attempt is not None and attempt.ended_at is not None and bool(attempt.media_metrics)

    wait_for(reported, timeout=120, what="the call to end with its media report")
    attempt = CallAttempt.objects.get(campaign=campaign)
    said = [line["text"] for line in attempt.transcript if line["role"] == "agent"]
    assert said and said[0].startswith("This is an AI assistant calling on behalf of Acme Solar."), said
    with stack.sim() as sim:
        [call] = sim.get("/sim/calls", params={"state": "all"}).json()["calls"]
    assert call["heard"]["heard_ms"] > 0  # the callee heard it
