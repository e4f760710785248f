"""The portal's campaign pages: list, create/edit, start/pause/resume, the campaign's page, its leads and
why a lead is not dialed now."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.lifecycle import AttemptOutcome, AttemptState
from campaigns.models import CallAttempt, Campaign, Lead
from tenants.models import AuditEntry
from tests.campaigns.factories import make_agent, make_campaign, make_lead

pytestmark = pytest.mark.django_db


def _attempt(lead: Lead, state: AttemptState, outcome: str = "", **fields: object) -> CallAttempt:
    campaign = lead.campaign
    return CallAttempt.objects.create(
        tenant=campaign.tenant,
        campaign=campaign,
        lead=lead,
        number=lead.contact.phone_number,
        state=state.value,
        outcome=outcome,
        **fields,
    )


def _form(agent_id: int, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Spring promo",
        "agent": agent_id,
        "caller_id": "+14155550100",
        "max_concurrent_calls": "2",
        "max_attempts": "3",
        "ring_timeout": "25",
        "priority": "5",
        "starts_at": "",
        "ends_at": "",
        "calling_windows": '{"mon": [["09:00", "17:00"]], "tue": [["10:00", "12:00"]]}',
        "retry_delays": '{"busy": 600}',
    }
    data.update(overrides)
    return data


# ------------------------------------------------------------------------------------------------ list


def test_the_list_says_what_to_do_when_there_is_no_campaign(manager, viewer):
    page = manager.get(reverse("portal:campaigns"))
    assert page.status_code == 200
    assert b'data-empty="true"' in page.content
    assert b"No campaign yet." in page.content
    assert reverse("portal:campaign-new").encode() in page.content
    # A viewer reads the same message without the button.
    seen = viewer.get(reverse("portal:campaigns"))
    assert b"No campaign yet." in seen.content
    assert reverse("portal:campaign-new").encode() not in seen.content


def test_the_list_shows_state_progress_and_live_calls(tenant, other_tenant, manager):
    campaign = make_campaign(tenant, name="Spring promo")
    leads = [make_lead(tenant, campaign, f"+121255501{n:02d}") for n in range(4)]
    Lead.objects.filter(pk=leads[0].pk).update(status=Lead.Status.DONE)
    Lead.objects.filter(pk=leads[1].pk).update(status=Lead.Status.IN_ATTEMPT)
    _attempt(leads[1], AttemptState.RINGING)
    make_campaign(other_tenant, name="Not yours")
    page = manager.get(reverse("portal:campaigns"))
    assert page.status_code == 200
    assert b"Spring promo" in page.content
    assert b"Not yours" not in page.content
    assert b'data-progress="1/4"' in page.content
    assert b'data-live="1"' in page.content
    assert b'data-status="draft"' in page.content


@pytest.mark.parametrize("count", [3, 40])
def test_the_list_reads_in_a_handful_of_queries_however_many_campaigns(
    tenant, manager, django_assert_max_num_queries, count
):
    agent = make_agent(tenant)
    for n in range(count):
        campaign = make_campaign(tenant, agent=agent, name=f"Campaign {n:03d}")
        if n < 3:
            make_lead(tenant, campaign, f"+121255501{n:02d}")
    with django_assert_max_num_queries(10):
        page = manager.get(reverse("portal:campaigns"))
    assert page.status_code == 200
    assert page.content.count(b"data-campaign=") == count


def test_hostile_campaign_names_are_escaped(tenant, manager):
    make_campaign(tenant, name="<script>alert(1)</script>")
    page = manager.get(reverse("portal:campaigns"))
    assert b"<script>alert(1)</script>" not in page.content
    assert b"&lt;script&gt;" in page.content


# ------------------------------------------------------------------------------------------------ form


def test_the_form_asks_for_an_agent_first_when_there_is_none(manager):
    page = manager.get(reverse("portal:campaign-new"))
    assert page.status_code == 200
    assert b"Create an agent first." in page.content
    assert b'id="campaign-form"' not in page.content


def test_creating_a_campaign_saves_it_through_the_service_and_audits_it(tenant, manager):
    agent = make_agent(tenant, name="Sales")
    form = manager.get(reverse("portal:campaign-new"))
    assert b'id="campaign-form"' in form.content
    assert b'name="calling_windows"' in form.content and b"Sales" in form.content
    response = manager.post(reverse("portal:campaign-new"), _form(agent.pk, starts_at="2030-01-02T09:30"))
    assert response.status_code == 302
    campaign = Campaign.objects.get(tenant=tenant)
    assert response["Location"] == reverse("portal:campaign", args=[campaign.pk])
    assert campaign.name == "Spring promo"
    assert campaign.agent == agent
    assert campaign.max_concurrent_calls == 2 and campaign.ring_timeout == 25 and campaign.priority == 5
    assert campaign.calling_windows == {"mon": [["09:00", "17:00"]], "tue": [["10:00", "12:00"]]}
    assert campaign.retry_delays == {"busy": 600}
    assert campaign.status == Campaign.Status.DRAFT
    # Read in the tenant's zone (the factory's tenants use UTC unless told otherwise).
    assert campaign.starts_at is not None and campaign.starts_at.isoformat().startswith("2030-01-02T09:30")
    entry = AuditEntry.objects.get(tenant=tenant)
    assert entry.action == "campaign.create" and entry.via == "portal"
    assert f"campaign {campaign.pk}" in entry.target
    page = manager.get(response["Location"])
    assert b"Campaign created." in page.content


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"caller_id": "not a number"}, "caller_id", b"international form"),
        ({"max_concurrent_calls": "500"}, "max_concurrent_calls", b"exceeds the tenant"),
        ({"priority": "5000"}, "priority", b"less than or equal to 1000"),
        ({"calling_windows": "{not json"}, "calling_windows", b"Not valid JSON"),
        ({"calling_windows": '{"mon": [["17:00", "09:00"]]}'}, "calling_windows", b""),
        ({"retry_delays": '{"nonsense": 5}'}, "retry_delays", b"is not an outcome"),
        ({"name": ""}, "name", b""),
        ({"ring_timeout": "abc"}, "ring_timeout", b"whole number"),
    ],
)
def test_a_bad_form_shows_the_message_beside_the_field_and_saves_nothing(
    tenant, manager, overrides, field, message
):
    agent = make_agent(tenant)
    response = manager.post(reverse("portal:campaign-new"), _form(agent.pk, **overrides))
    assert response.status_code == 400
    content = response.content
    marker = f'data-field="{field}"'.encode()
    assert marker in content
    errors = content.split(marker, 1)[1].split(b"</ul>", 1)[0]
    assert message in errors
    assert not Campaign.objects.exists()
    assert not AuditEntry.objects.exists()
    # What was typed is shown again.
    assert b"Spring promo" in content or field == "name"


def test_another_tenants_agent_is_refused_beside_the_field(tenant, other_tenant, manager):
    make_agent(tenant)
    theirs = make_agent(other_tenant)
    response = manager.post(reverse("portal:campaign-new"), _form(theirs.pk))
    assert response.status_code == 400
    assert b'data-field="agent"' in response.content
    assert not Campaign.objects.exists()


def test_editing_a_campaign_changes_it_and_audits_it(tenant, manager):
    campaign = make_campaign(tenant, name="Old name")
    form = manager.get(reverse("portal:campaign-edit", args=[campaign.pk]))
    assert form.status_code == 200
    assert b"Old name" in form.content and b'id="campaign-form"' in form.content
    response = manager.post(
        reverse("portal:campaign-edit", args=[campaign.pk]), _form(campaign.agent_id, name="New name")
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "New name" and campaign.ring_timeout == 25
    assert AuditEntry.objects.get(tenant=tenant).action == "campaign.update"


def test_a_bad_edit_changes_nothing(tenant, manager):
    campaign = make_campaign(tenant, name="Keep me")
    response = manager.post(
        reverse("portal:campaign-edit", args=[campaign.pk]),
        _form(campaign.agent_id, name="Changed", ring_timeout="9999"),
    )
    assert response.status_code == 400
    assert b'data-field="ring_timeout"' in response.content
    campaign.refresh_from_db()
    assert campaign.name == "Keep me" and campaign.ring_timeout == 30
    assert not AuditEntry.objects.exists()


# ------------------------------------------------------------------------------------------ start/pause


def test_start_pause_resume_change_the_state_through_the_service(tenant, manager):
    campaign = make_campaign(tenant)
    detail = reverse("portal:campaign", args=[campaign.pk])
    assert b'id="campaign-start"' in manager.get(detail).content

    response = manager.post(reverse("portal:campaign-start", args=[campaign.pk]))
    assert response.status_code == 302 and response["Location"] == detail
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    page = manager.get(detail)
    assert b"Campaign started." in page.content
    assert b'id="campaign-pause"' in page.content and b'id="campaign-start"' not in page.content

    manager.post(reverse("portal:campaign-pause", args=[campaign.pk]))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert b'id="campaign-resume"' in manager.get(detail).content

    manager.post(reverse("portal:campaign-resume", args=[campaign.pk]))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    actions = list(
        AuditEntry.objects.filter(tenant=tenant).order_by("at", "pk").values_list("action", flat=True)
    )
    assert actions == ["campaign.start", "campaign.pause", "campaign.resume"]


def test_a_refused_start_says_why_and_changes_nothing(tenant, manager):
    agent = make_agent(tenant, instructions="Hello {{appointment}}")
    campaign = make_campaign(tenant, agent=agent)
    make_lead(tenant, campaign)  # its contact has no "appointment"
    response = manager.post(reverse("portal:campaign-start", args=[campaign.pk]), follow=True)
    assert response.status_code == 200
    assert b"Could not start the campaign" in response.content
    assert b"appointment" in response.content
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert not AuditEntry.objects.exists()


def test_a_viewer_sees_no_write_controls_and_a_forged_post_changes_nothing(tenant, viewer):
    campaign = make_campaign(tenant, name="Read only")
    make_lead(tenant, campaign)
    page = viewer.get(reverse("portal:campaign", args=[campaign.pk]))
    assert page.status_code == 200
    for hook in (b'id="campaign-start"', b'id="campaign-edit"', b'id="campaign-import"'):
        assert hook not in page.content
    for name in ("portal:campaign-start", "portal:campaign-pause", "portal:campaign-resume"):
        assert reverse(name, args=[campaign.pk]).encode() not in page.content
    assert viewer.get(reverse("portal:campaign-new")).status_code == 200  # reading the form is harmless
    for name in ("portal:campaign-start", "portal:campaign-pause", "portal:campaign-resume"):
        assert viewer.post(reverse(name, args=[campaign.pk])).status_code == 403
    assert (
        viewer.post(reverse("portal:campaign-edit", args=[campaign.pk]), _form(campaign.agent_id)).status_code
        == 403
    )
    assert viewer.post(reverse("portal:campaign-new"), _form(campaign.agent_id)).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and campaign.name == "Read only"
    assert Campaign.objects.count() == 1
    assert not AuditEntry.objects.exists()


def test_another_tenants_campaign_is_not_found(other_tenant, manager):
    theirs = make_campaign(other_tenant)
    lead = make_lead(other_tenant, theirs)
    for name in ("portal:campaign", "portal:campaign-edit", "portal:campaign-live", "portal:campaign-leads"):
        assert manager.get(reverse(name, args=[theirs.pk])).status_code == 404
    for name in ("portal:campaign-start", "portal:campaign-pause", "portal:campaign-resume"):
        assert manager.post(reverse(name, args=[theirs.pk])).status_code == 404
    assert (
        manager.post(reverse("portal:campaign-edit", args=[theirs.pk]), _form(theirs.agent_id)).status_code
        == 404
    )
    assert manager.get(reverse("portal:lead-why", args=[lead.pk])).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Campaign.Status.DRAFT


# ---------------------------------------------------------------------------------------------- detail


def test_the_campaign_page_shows_its_figures_chart_and_leads(tenant, manager):
    campaign = make_campaign(tenant, name="Spring promo")
    leads = [make_lead(tenant, campaign, f"+121255501{n:02d}") for n in range(4)]
    Lead.objects.filter(pk=leads[0].pk).update(status=Lead.Status.DONE)
    Lead.objects.filter(pk=leads[1].pk).update(status=Lead.Status.IN_ATTEMPT)
    _attempt(leads[1], AttemptState.BRIDGED)
    _attempt(leads[0], AttemptState.ENDED, AttemptOutcome.BUSY.value, ended_at=timezone.now())
    page = manager.get(reverse("portal:campaign", args=[campaign.pk]))
    assert page.status_code == 200
    content = page.content
    assert b'id="campaign-status"' in content and b'data-status="draft"' in content
    assert b'id="campaign-progress" data-done="1" data-total="4"' in content
    assert b'<span id="campaign-live" data-live="1">1</span>' in content
    assert b'sse-connect="' + reverse("portal:live").encode() in content
    assert b'hx-trigger="sse:calls, every 10s"' in content
    assert b'id="chart-outcomes" data-chart-spec=' in content
    assert b"&quot;label&quot;:&quot;busy&quot;" in content
    assert content.count(b"data-lead=") == 4
    assert reverse("portal:lead-why", args=[leads[2].pk]).encode() in content
    assert f"/api/v1/campaigns/{campaign.pk}/export".encode() in content
    # Per day as well.
    by_day = manager.get(reverse("portal:campaign", args=[campaign.pk]) + "?by=day")
    assert by_day.status_code == 200
    assert b"Ended calls per day" in by_day.content
    assert b"&quot;label&quot;:&quot;busy&quot;" in by_day.content


def test_the_campaign_page_of_a_new_campaign_shows_empty_states(tenant, manager):
    campaign = make_campaign(tenant)
    page = manager.get(reverse("portal:campaign", args=[campaign.pk]))
    assert page.status_code == 200
    assert b"No lead yet." in page.content
    assert b"No call of this campaign has ended in this period." in page.content


def test_the_live_part_is_a_fragment_with_the_live_count(tenant, manager):
    campaign = make_campaign(tenant)
    lead = make_lead(tenant, campaign)
    Lead.objects.filter(pk=lead.pk).update(status=Lead.Status.IN_ATTEMPT)
    _attempt(lead, AttemptState.ANSWERED)
    part = manager.get(reverse("portal:campaign-live", args=[campaign.pk]))
    assert part.status_code == 200
    assert b"<html" not in part.content
    assert b'data-live="1"' in part.content


def test_leads_filter_by_status_and_paginate(tenant, manager):
    campaign = make_campaign(tenant)
    leads = [make_lead(tenant, campaign, f"+121255501{n:02d}") for n in range(55)]
    Lead.objects.filter(pk__in=[lead.pk for lead in leads[:3]]).update(status=Lead.Status.DONE)
    url = reverse("portal:campaign-leads", args=[campaign.pk])
    done = manager.get(url + "?status=done")
    assert done.status_code == 200
    assert done.content.count(b"data-lead=") == 3
    first = manager.get(url)
    assert first.content.count(b"data-lead=") == 50
    assert b"Page 1 of 2" in first.content
    second = manager.get(url + "?page=2")
    assert second.content.count(b"data-lead=") == 5
    # htmx gets the table alone.
    part = manager.get(url + "?status=done", HTTP_HX_REQUEST="true")
    assert b"<html" not in part.content and part.content.count(b"data-lead=") == 3
    none = manager.get(url + "?status=suppressed")
    assert b"No lead with this status." in none.content


@pytest.mark.parametrize("count", [3, 60])
def test_the_campaign_page_and_leads_read_in_a_handful_of_queries(
    tenant, manager, django_assert_max_num_queries, count
):
    campaign = make_campaign(tenant)
    for n in range(count):
        make_lead(tenant, campaign, f"+121255501{n:02d}")
    with django_assert_max_num_queries(14):
        assert manager.get(reverse("portal:campaign", args=[campaign.pk])).status_code == 200
    with django_assert_max_num_queries(10):
        assert manager.get(reverse("portal:campaign-leads", args=[campaign.pk])).status_code == 200


def test_why_a_lead_is_not_dialed_is_one_click_away(tenant, manager):
    campaign = make_campaign(tenant)
    lead = make_lead(tenant, campaign)
    url = reverse("portal:lead-why", args=[lead.pk])
    part = manager.get(url, HTTP_HX_REQUEST="true")
    assert part.status_code == 200
    assert b"<html" not in part.content
    assert f'data-why="{lead.pk}"'.encode() in part.content
    assert b'data-dialable="false"' in part.content
    assert b"The campaign is not dialing (campaign draft" in part.content
    page = manager.get(url)
    assert b"<html" in page.content and b"Why isn't" in page.content


def test_why_says_when_a_lead_waits_for_a_retry(tenant, manager):
    campaign = make_campaign(tenant)
    lead = make_lead(tenant, campaign)
    later = timezone.now() + timedelta(hours=2)
    Lead.objects.filter(pk=lead.pk).update(next_due_at=later, last_outcome="busy", wait_reason="busy")
    part = manager.get(reverse("portal:lead-why", args=[lead.pk]), HTTP_HX_REQUEST="true")
    assert b"Waiting before a retry after busy" in part.content


def test_the_export_link_works_with_the_portal_session(tenant, viewer):
    campaign = make_campaign(tenant)
    make_lead(tenant, campaign)
    page = viewer.get(reverse("portal:campaign", args=[campaign.pk]))
    assert b'id="campaign-export"' in page.content
    export = viewer.get(f"/api/v1/campaigns/{campaign.pk}/export")
    assert export.status_code == 200
    assert b"phone_number" in b"".join(export.streaming_content)


@pytest.mark.parametrize(
    "code",
    [
        "done",
        "suppressed",
        "in_attempt",
        "dnc",
        "attempts_exhausted",
        "campaign_not_running",
        "callback",
        "retry_delay",
        "outside_window",
        "tenant_at_cap",
        "campaign_at_cap",
        "no_pbx_capacity",
        "pbx_unavailable",
        "no_media_worker",
    ],
)
def test_every_reason_a_lead_is_not_dialed_is_said_in_words(code):
    from portal.views.campaigns import reason_text

    text = reason_text({"code": code, "next_opening": timezone.now(), "zones": ("America/New_York",)})
    assert text != code and text.endswith(".")
