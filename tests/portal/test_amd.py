"""The campaign form's answering-machine and voicemail fields (a partial of the campaign form), validated by
the API's serializer and written by the campaign service."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone

from campaigns.models import CallAttempt, Campaign
from tests.campaigns.factories import make_agent, make_campaign, make_lead
from tests.portal.test_campaigns import _form


def test_the_form_shows_and_saves_the_amd_fields(tenant, manager):
    agent = make_agent(tenant)
    page = manager.get(reverse("portal:campaign-new"))
    assert b'id="campaign-amd"' in page.content and b'name="amd_notsure_action"' in page.content
    data = _form(
        agent.pk,
        amd_enabled="true",
        amd_notsure_action="machine",
        voicemail_action="leave_message",
        voicemail_message_text="Please call us back.",
        amd_settings='{"greeting": 2000}',
    )
    response = manager.post(reverse("portal:campaign-new"), data)
    assert response.status_code == 302, response.content
    campaign = Campaign.objects.get(tenant=tenant)
    assert campaign.amd_enabled and campaign.amd_notsure_action == "machine"
    assert campaign.voicemail_action == "leave_message" and campaign.amd_settings["greeting"] == 2000
    edit = manager.get(reverse("portal:campaign-edit", args=[campaign.pk]))
    assert b"Please call us back." in edit.content
    response = manager.post(
        reverse("portal:campaign-edit", args=[campaign.pk]), _form(agent.pk, amd_enabled="false")
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert not campaign.amd_enabled


def test_bad_amd_fields_are_named_and_change_nothing(tenant, manager):
    campaign = make_campaign(tenant)
    before = dict(campaign.amd_settings)
    for field, value in (("amd_settings", '{"greeting": 1}'), ("voicemail_action", "sing")):
        response = manager.post(
            reverse("portal:campaign-edit", args=[campaign.pk]), _form(campaign.agent_id, **{field: value})
        )
        assert response.status_code == 400
        assert f'data-field="{field}"'.encode() in response.content
    campaign.refresh_from_db()
    assert campaign.amd_settings == before and campaign.voicemail_action == "hang_up"


def test_the_call_page_says_who_answered(tenant, manager):
    campaign = make_campaign(tenant)
    lead = make_lead(tenant, campaign, "+12125550123")
    attempt = CallAttempt.objects.create(
        tenant=tenant, campaign=campaign, lead=lead, number=lead.contact.phone_number, state="ended",
        outcome="voicemail_left", answered_by="machine", machine_source="beep", amd_status="HUMAN",
        amd_cause="HUMAN-800-800", voicemail_left_at=timezone.now(),
    )  # fmt: skip
    page = manager.get(reverse("portal:call", args=[attempt.pk]))
    assert page.status_code == 200
    assert b"machine (beep)" in page.content and b"HUMAN-800-800" in page.content
    assert b"Voicemail left" in page.content
